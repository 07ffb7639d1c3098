"""Load state rules: what needs loading, and how each attempt is recorded, over any state store.

The store itself (``_finops_load_state`` in the destination) is a :class:`~core.backends.base.StateManager`;
every SQL engine uses :class:`core.backends.sqlengine.state.SqlStateManager`. Status values: ``running`` while
an attempt is under way, then ``completed``, ``failed`` or ``interrupted`` (Ctrl-C, SIGTERM, or a process that
died and whose row a later run found still ``running``). History is never deleted.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

from core.backends.base import LoadRecord, StateManager

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        recovered = []
        for record in stale:
            recovered.append(self.interrupted(record, "the importing process stopped before finishing"))
            log.warning("%s %s version %s was left running by an import that died; marked interrupted",
                        export_name, record.billing_period, record.version_id)
        return recovered

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

    def interrupted(self, record: LoadRecord, why: str) -> LoadRecord:
        """The attempt stopped on the user's or the system's request (the data is untouched)."""
        stopped = replace(record, status="interrupted", finished_at=utcnow(), error_message=f"interrupted: {why}")
        self.store.upsert(stopped)
        return stopped

    def history(self, export_name: str | None = None, billing_period: str | None = None) -> list[LoadRecord]:
        return self.store.records(vendor=self.vendor, export_name=export_name, billing_period=billing_period)
