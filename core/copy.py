"""``finops db copy``: move export tables and their load state from one backend to another.

Each billing period is streamed as Arrow record batches from the source and written with the destination's
own atomic :meth:`~core.backends.base.DatabaseBackend.replace_period`, carrying the source's current state
record, so the destination ends up exactly as if it had imported the same versions itself. After each period the
row count and cost sum are compared on both sides. A period whose current version is already in the
destination with the same row count is skipped, which makes an interrupted copy resumable: run it again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import pyarrow as pa

from core.backends.base import (
    ColumnSpec,
    DatabaseBackend,
    ExportTable,
    FilePlan,
    LoadRecord,
    PeriodLoad,
    SourceColumn,
    SourceFile,
)
from core.backends.readers import Boto3DataReader
from core.errors import ConfigError, LoadError
from core.state import LoadStateTracker

log = logging.getLogger(__name__)


class _TableReader(Boto3DataReader):
    """Feeds one source period to the destination through the same typing path as an import."""

    def __init__(self, source: DatabaseBackend, dataset: str, table: str) -> None:
        super().__init__(store=None)  # type: ignore[arg-type]
        self.source, self.dataset, self.table = source, dataset, table

    def describe(self, key: str, *, size: int = 0) -> SourceFile:  # pragma: no cover - plans are built directly
        raise LoadError("table copies are planned from the source table, not described")

    def _raw(self, plan: FilePlan) -> Iterator[pa.RecordBatch]:
        yield from self.source.read_period(self.dataset, self.table, plan.file.key.rsplit("/", 1)[-1])


@dataclass
class CopyOutcome:
    table: str
    billing_period: str
    version_id: str | None
    status: Literal["copied", "skipped", "failed"]
    rows: int = 0
    source_cost: float | None = None
    destination_cost: float | None = None
    error: str | None = None


@dataclass
class CopyReport:
    source: str
    destination: str
    outcomes: list[CopyOutcome] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if any(o.status == "failed" for o in self.outcomes) else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "copied": sum(o.status == "copied" for o in self.outcomes),
            "skipped": sum(o.status == "skipped" for o in self.outcomes),
            "failed": sum(o.status == "failed" for o in self.outcomes),
            "periods": [asdict(o) for o in self.outcomes],
            "exit_code": self.exit_code,
        }


def _same_cost(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def copy_exports(
    source: DatabaseBackend,
    destination: DatabaseBackend,
    *,
    source_dataset: str,
    destination_dataset: str,
    export_name: str | None = None,
    vendor: str = "aws",
    cost_column: str | Sequence[str] | None = None,
    lock_timeout: float = 900.0,
) -> CopyReport:
    """Copy every export table (or one) with its load state; see the module docstring.

    Raises:
        ConfigError: source and destination are the same place, or the named export is not in the source.
    """
    if source.name == destination.name and source.config.describe() == destination.config.describe():
        raise ConfigError("Source and destination are the same database; nothing to copy.")
    if not source.exists():
        raise ConfigError(f"The source database {source.config.describe()} does not exist.")
    report = CopyReport(source.config.describe(), destination.config.describe())
    with source, destination:
        src_state = LoadStateTracker(source.state_manager(source_dataset), vendor=vendor)
        dst_state = LoadStateTracker(destination.state_manager(destination_dataset), vendor=vendor)
        dst_state.ensure()
        try:  # the source is only read: a source without a state table has its tables copied without history
            history = src_state.history(export_name)
        except LoadError:
            history = []
        exports = {destination.table_name(r.export_name): r.export_name
                   for r in history}
        tables = source.list_tables(source_dataset, cost_column=cost_column)
        if export_name is not None:
            wanted = source.table_name(export_name)
            tables = [t for t in tables if t.table == wanted]
            if not tables:
                raise ConfigError(f"Export {export_name!r} has no table in {source.config.describe()}.")
        for table in tables:
            name = exports.get(table.table, table.table)
            # The destination's import lock: a copy and an import of the same export never interleave.
            with destination.lock(name, timeout=lock_timeout):
                for record in history:  # every earlier version, so the destination keeps the whole history
                    if record.export_name == name and not record.is_current:
                        dst_state.store.upsert(replace(record))
                src_current = {r.billing_period: r for r in history if r.export_name == name and r.is_current}
                report.outcomes.extend(_copy_table(source, destination, source_dataset, destination_dataset, table,
                                                   name, src_current, src_state.vendor, dst_state, cost_column))
    return report


def _copy_table(
    source: DatabaseBackend,
    destination: DatabaseBackend,
    source_dataset: str,
    destination_dataset: str,
    table: ExportTable,
    export_name: str,
    src_current: dict[str, LoadRecord],
    vendor: str,
    dst_state: LoadStateTracker,
    cost_column: str | Sequence[str] | None,
) -> list[CopyOutcome]:
    columns = source.table_columns(source_dataset, table.table)
    kinds = {name: source.kind_of(type_name) for name, type_name in columns.items()}
    specs = tuple(ColumnSpec(source=n, target=n, kind=k, source_kind="string" if k == "json" else k)
                  for n, k in kinds.items())
    dst_current = dst_state.current(export_name)
    dst_periods = {t.table: {p.billing_period: p for p in t.periods} for t in destination.list_tables(destination_dataset, cost_column=cost_column)}
    reader = _TableReader(source, source_dataset, table.table)
    outcomes = []
    for period in table.periods:
        record = src_current.get(period.billing_period) or LoadRecord(
            vendor=vendor, export_name=export_name, billing_period=period.billing_period,
            version_id="unknown", data_format_version="unknown", source_location=source.config.describe(),
        )
        there = dst_periods.get(table.table, {}).get(period.billing_period)
        done = dst_current.get(period.billing_period)
        if done and done.version_id == record.version_id and done.status == "completed" and there \
                and there.rows == period.rows and _same_cost(there.cost, period.cost):
            outcomes.append(CopyOutcome(table.table, period.billing_period, record.version_id, "skipped",
                                        period.rows, period.cost, there.cost))
            continue
        plan = FilePlan(
            SourceFile(key=f"{table.table}/{period.billing_period}", format="parquet", compression=None,
                       columns=tuple(SourceColumn(n, s.source_kind) for n, s in zip(kinds, specs, strict=True))),
            specs,
        )
        outcome = CopyOutcome(table.table, period.billing_period, record.version_id, "copied",
                              source_cost=period.cost)
        started = dst_state.begin(replace(record, is_current=False))
        try:
            outcome.rows = destination.replace_period(PeriodLoad(
                dataset=destination_dataset, table=table.table, billing_period=period.billing_period,
                files=[plan], record=started, reader=reader,
            ))
            summary = destination.summarise(destination_dataset, table.table, cost_column=cost_column)  # this table only, not all of them
            landed = next((p for p in summary.periods if p.billing_period == period.billing_period), None)
            outcome.destination_cost = landed.cost if landed else None
            if landed is not None and landed.rows == period.rows and _same_cost(landed.cost,
                                                                                period.cost):
                # The state row as the source had it (file count, timings), not as the copy's one stream.
                dst_state.store.upsert(replace(record, status="completed", row_count=outcome.rows, is_current=True))
            else:
                raise LoadError(
                    f"{table.table} {period.billing_period}: verification failed (source {period.rows} rows, "
                    f"cost {period.cost}; destination {landed.rows if landed else 0} rows, cost "
                    f"{outcome.destination_cost})"
                )
        except LoadError as exc:
            outcome.status, outcome.error = "failed", exc.message
            dst_state.fail(started, exc.message)
            log.error("%s", exc.message)
        outcomes.append(outcome)
    return outcomes
