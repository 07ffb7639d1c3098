"""``<dataset>._finops_load_state`` in any SQL engine: one store, bound values, the engine's own types.

Every SQL backend gets it from :meth:`core.backends.sqlengine.SqlBackend.state_manager`; the rules on top of it
(what needs loading, how an attempt is recorded) are :class:`core.state.LoadStateTracker`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from core.backends.base import STATE_TABLE, LoadRecord, StateManager

log = logging.getLogger(__name__)

Execute = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

_KEY = ("vendor", "export_name", "billing_period", "version_id")
_MAX_ERROR = 4000


class SqlStateManager(StateManager):
    """``<dataset>._finops_load_state`` in a SQL engine; values are always bound parameters.

    Args:
        execute: runs one statement with ``?`` placeholders and returns the fetched rows (``[]`` for DML).
        quote: the backend's identifier quoting helper.
        types: engine type names for ``text``, ``bigint``, ``timestamp`` and ``boolean``.
        ensure_schema: the backend's own way of making sure ``dataset`` exists (``DatabaseBackend.ensure_schema``).
        existing_columns: the state table's columns as stored, so that a table made by an earlier release gains
            the columns added since (``ALTER TABLE … ADD COLUMN``); history is kept.
    """

    def __init__(
        self,
        execute: Execute,
        quote: Callable[[str], str],
        dataset: str,
        *,
        types: dict[str, str],
        ensure_schema: Callable[[str], None],
        existing_columns: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self._existing_columns = existing_columns
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
            "source_row_count": t["bigint"],
            "source_sums": t["text"],
            "period_status": t["text"],
            "invoice_ids": t["text"],
            "quality_findings": t["text"],
        }
        body = ", ".join(f"{self._quote(name)} {decl}" for name, decl in columns.items())
        self._ensure_schema(self.dataset)
        self._execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({body})", [])
        if self._existing_columns is not None:  # a state table from an earlier release: add what it lacks
            existing = set(self._existing_columns())
            for name, decl in columns.items():
                if name not in existing:
                    log.info("%s: new column %s", self.table, name)
                    self._execute(f"ALTER TABLE {self.table} ADD COLUMN {self._quote(name)} {decl}", [])

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
            self._execute(f"INSERT INTO {self.table} ({names}) VALUES ({marks})",
                          [values[c] for c in LoadRecord.COLUMNS])

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
        if isinstance(value, str):  # SQLite has no timestamp type: ISO text
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            values[name] = value.replace(tzinfo=UTC)
        elif isinstance(value, datetime):
            values[name] = value.astimezone(UTC)
    values["is_current"] = bool(values["is_current"])
    return LoadRecord(**values)


