"""Load state: what was loaded, from where, when, and which version of each billing period is current.

:class:`SqlStateManager` stores :class:`~core.backends.base.LoadRecord` rows in any SQL engine through a DB-API
style ``execute`` (used by DuckDB and the server backends); :class:`LoadStateTracker` holds the rules the
pipeline follows on top of any :class:`~core.backends.base.StateManager`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from core.backends.base import STATE_TABLE, LoadRecord, StateManager

log = logging.getLogger(__name__)

Execute = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

_KEY = ("vendor", "export_name", "billing_period", "version_id")
_MAX_ERROR = 4000


def utcnow() -> datetime:
    return datetime.now(UTC)


class SqlStateManager(StateManager):
    """``<dataset>._finops_load_state`` in a SQL engine; values are always bound parameters.

    Args:
        execute: runs one statement with ``?`` placeholders and returns the fetched rows (``[]`` for DML).
        quote: the backend's identifier quoting helper.
        types: engine type names for ``text``, ``bigint``, ``timestamp`` and ``boolean``.
        ensure_schema: the backend's own way of making sure ``dataset`` exists (``DatabaseBackend.ensure_schema``).
    """

    def __init__(
        self,
        execute: Execute,
        quote: Callable[[str], str],
        dataset: str,
        *,
        types: dict[str, str],
        ensure_schema: Callable[[str], None],
    ) -> None:
        self._execute = execute
        self._quote = quote
        self.dataset = dataset
        self._types = types
        self._ensure_schema = ensure_schema
        self.table = f"{quote(dataset)}.{quote(STATE_TABLE)}"

    def ensure(self) -> None:
        t = self._types
        columns = {
            "vendor": t["text"] + " NOT NULL",
            "export_name": t["text"] + " NOT NULL",
            "billing_period": t["text"] + " NOT NULL",
            "version_id": t["text"] + " NOT NULL",
            "data_format_version": t["text"],
            "source_location": t["text"],
            "status": t["text"] + " NOT NULL",
            "file_count": t["bigint"],
            "row_count": t["bigint"],
            "started_at": t["timestamp"],
            "finished_at": t["timestamp"],
            "error_message": t["text"],
            "is_current": t["boolean"] + " NOT NULL",
        }
        body = ", ".join(f"{self._quote(name)} {decl}" for name, decl in columns.items())
        self._ensure_schema(self.dataset)
        self._execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({body})", [])

    def _where_key(self) -> str:
        return " AND ".join(f"{self._quote(k)} = ?" for k in _KEY)

    def upsert(self, record: LoadRecord) -> None:
        values = record.as_dict()
        if values["error_message"] and len(values["error_message"]) > _MAX_ERROR:
            values["error_message"] = values["error_message"][:_MAX_ERROR] + "…"
        key_params = [values[k] for k in _KEY]
        exists = self._execute(f"SELECT COUNT(*) FROM {self.table} WHERE {self._where_key()}", key_params)
        if exists and exists[0][0]:
            others = [c for c in LoadRecord.COLUMNS if c not in _KEY]
            assignments = ", ".join(f"{self._quote(c)} = ?" for c in others)
            self._execute(
                f"UPDATE {self.table} SET {assignments} WHERE {self._where_key()}",
                [values[c] for c in others] + key_params,
            )
        else:
            names = ", ".join(self._quote(c) for c in LoadRecord.COLUMNS)
            marks = ", ".join("?" for _ in LoadRecord.COLUMNS)
            self._execute(f"INSERT INTO {self.table} ({names}) VALUES ({marks})", [values[c] for c in LoadRecord.COLUMNS])

    def mark_current(self, record: LoadRecord) -> None:
        q = self._quote
        self._execute(
            f"UPDATE {self.table} SET {q('is_current')} = "
            f"CASE WHEN {q('version_id')} = ? THEN TRUE ELSE FALSE END "
            f"WHERE {q('vendor')} = ? AND {q('export_name')} = ? AND {q('billing_period')} = ?",
            [record.version_id, record.vendor, record.export_name, record.billing_period],
        )
        record.is_current = True

    def records(
        self, *, vendor: str, export_name: str | None = None, billing_period: str | None = None
    ) -> list[LoadRecord]:
        q = self._quote
        where, params = [f"{q('vendor')} = ?"], [vendor]
        if export_name is not None:
            where.append(f"{q('export_name')} = ?")
            params.append(export_name)
        if billing_period is not None:
            where.append(f"{q('billing_period')} = ?")
            params.append(billing_period)
        names = ", ".join(q(c) for c in LoadRecord.COLUMNS)
        rows = self._execute(
            f"SELECT {names} FROM {self.table} WHERE {' AND '.join(where)} "
            f"ORDER BY {q('export_name')}, {q('billing_period')}, {q('started_at')}, {q('version_id')}",
            params,
        )
        return [_record(row) for row in rows]


def _record(row: Sequence[Any]) -> LoadRecord:
    values = dict(zip(LoadRecord.COLUMNS, row, strict=True))
    for name in ("started_at", "finished_at"):
        value = values[name]
        if isinstance(value, datetime) and value.tzinfo is None:
            values[name] = value.replace(tzinfo=UTC)
        elif isinstance(value, datetime):
            values[name] = value.astimezone(UTC)
    values["is_current"] = bool(values["is_current"])
    return LoadRecord(**values)


class LoadStateTracker:
    """The pipeline's rules over a :class:`StateManager`: what needs loading and how each attempt is recorded."""

    def __init__(self, store: StateManager, *, vendor: str = "aws") -> None:
        self.store = store
        self.vendor = vendor

    def ensure(self) -> None:
        self.store.ensure()

    def current(self, export_name: str) -> dict[str, LoadRecord]:
        """The current (loaded) version of each period of an export."""
        return {
            r.billing_period: r for r in self.store.records(vendor=self.vendor, export_name=export_name) if r.is_current
        }

    def needs_load(self, current: LoadRecord | None, version_id: str, *, reset: bool) -> bool:
        return reset or current is None or current.version_id != version_id or current.status != "completed"

    def recover_interrupted(self, export_name: str) -> list[LoadRecord]:
        """Rows left ``running`` by a process that died: we hold the lock, so nobody is running them."""
        stale = [
            r for r in self.store.records(vendor=self.vendor, export_name=export_name) if r.status == "running"
        ]
        for record in stale:
            record.status = "failed"
            record.finished_at = utcnow()
            record.error_message = "interrupted: the importing process stopped before finishing"
            self.store.upsert(record)
            log.warning("%s %s version %s was left running by an interrupted import; marked failed",
                        export_name, record.billing_period, record.version_id)
        return stale

    def begin(self, record: LoadRecord) -> LoadRecord:
        """Record an attempt as ``running`` (keeping the current flag of an earlier run of the same version)."""
        previous = self.store.records(
            vendor=record.vendor, export_name=record.export_name, billing_period=record.billing_period
        )
        same = next((r for r in previous if r.version_id == record.version_id), None)
        started = replace(
            record,
            status="running",
            started_at=utcnow(),
            finished_at=None,
            error_message=None,
            # a reload of the loaded version keeps its counts until it succeeds: the table still holds them
            row_count=same.row_count if same else None,
            is_current=same.is_current if same else False,
        )
        self.store.upsert(started)
        return started

    @staticmethod
    def completed(record: LoadRecord, *, rows: int, files: int) -> LoadRecord:
        return replace(record, status="completed", row_count=rows, file_count=files, finished_at=utcnow(),
                       error_message=None)

    def fail(self, record: LoadRecord, error: str) -> LoadRecord:
        failed = replace(record, status="failed", finished_at=utcnow(), error_message=error)
        self.store.upsert(failed)
        return failed

    def history(self, export_name: str | None = None, billing_period: str | None = None) -> list[LoadRecord]:
        return self.store.records(vendor=self.vendor, export_name=export_name, billing_period=billing_period)
