"""``finops aws verify``: re-read the source of every loaded current version and compare it with the table.

Independent of the import path: the files are read by the universal Arrow reader (never the engine's own
scan or bulk path) and summed batch by batch — rows, the cost columns, and per (usage account, product code) —
so memory stays flat however large the month; the table side is aggregated by the engine in SQL. A period
matches when the row counts are equal and every sum agrees to 1e-9 relative. Data-quality findings (duplicated
line items, several currencies, split cost allocation rows, one payer in two exports) are computed again by the
implementation the import runs before COMMIT (:mod:`core.backends.sqlengine.quality`) and reported beside the
figures, with those the import recorded in the load state; they do not make a period mismatch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.backends.base import FilePlan
from core.errors import FinOpsError
from vendors.aws.columns import QUALITY_RULES, RECONCILED_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from core.backends.sqlengine import SqlBackend
    from core.ingest import PeriodSource
    from core.storage import ObjectStore

log = logging.getLogger(__name__)

#: the sums compared, where the export has the column
COST_COLUMNS = RECONCILED_COLUMNS
ACCOUNT, PRODUCT = "line_item_usage_account_id", "line_item_product_code"
#: (sums, account, product, cost) a period is verified by: CUR's unless the period brings its own (FOCUS:
#: BilledCost… per SubAccountId / ServiceName)
Figures = tuple[tuple[str, ...], str, str, str]
CUR_FIGURES: Figures = (COST_COLUMNS, ACCOUNT, PRODUCT, COST_COLUMNS[0])


def figures_of(period: PeriodSource) -> Figures:
    """The period's own reconciled columns and change keys (its first two: account, product), else CUR's."""
    checks = period.checks
    if checks is None or len(checks.change_keys) < 2 or not checks.change_cost:
        return CUR_FIGURES
    return checks.sum_columns, checks.change_keys[0], checks.change_keys[1], checks.change_cost
REL_TOL, ABS_TOL = 1e-9, 1e-6


@dataclass
class Side:
    """What one side holds for a period: rows, the sums, and the unblended cost per (account, product)."""

    rows: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    by_key: dict[str, float] = field(default_factory=dict)


@dataclass
class PeriodCheck:
    export_name: str
    billing_period: str
    version_id: str
    status: str  # "match", "mismatch", "not verified"
    source: Side | None = None
    table: Side | None = None
    differences: list[str] = field(default_factory=list)
    #: the data-quality findings as of now (``kind``, ``count``, ``message``), and as the import recorded them
    #: (None: not recorded, e.g. a period loaded by an earlier release)
    findings: list[dict[str, Any]] = field(default_factory=list)
    recorded_findings: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def read_source(store: ObjectStore, period: PeriodSource) -> Side:
    """The period's files re-read through the Arrow reader and summed batch by batch (flat memory).

    Raises:
        LoadError: a file is unreadable.
    """
    from core.backends.readers import Boto3DataReader

    reader = Boto3DataReader(store)
    side = Side()
    for key in period.data_keys:
        plan: FilePlan = period.plan(reader.describe(key))
        for batch in reader.batches(plan):
            _add_batch(side, batch, figures_of(period))
    return side


def _add_batch(side: Side, batch: pa.RecordBatch, figures: Figures = CUR_FIGURES) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    sum_columns, account, product, cost_column = figures
    side.rows += batch.num_rows
    names = set(batch.schema.names)
    for column in sum_columns:
        if column in names:
            total = pc.sum(batch.column(column)).as_py()
            side.sums[column] = side.sums.get(column, 0.0) + (total or 0.0)
    if {account, product, cost_column} <= names and batch.num_rows:
        grouped = pa.Table.from_batches([batch]).group_by([account, product]).aggregate([(cost_column, "sum")])
        for account, product, cost in zip(*(grouped.column(i).to_pylist() for i in range(3)), strict=True):
            key = f"{account or ''}/{product or ''}"
            side.by_key[key] = side.by_key.get(key, 0.0) + (cost or 0.0)


def read_table(backend: SqlBackend, dataset: str, table: str, billing_period: str,
               figures: Figures = CUR_FIGURES) -> Side:
    """The same figures, aggregated by the engine over what the table holds for the period."""
    sum_columns, *keys = figures
    columns = backend.table_columns(dataset, table)
    present = [c for c in sum_columns if backend.column(c) in columns]
    q, target = backend.quote, backend.qualified(dataset, table)
    sums = ", ".join(f"SUM({q(backend.column(c))})" for c in present)
    period = q("billing_period")
    row = backend.execute(f"SELECT COUNT(*){', ' + sums if sums else ''} FROM {target} WHERE {period} = ?",
                          [billing_period], what=f"summing {table} {billing_period}").rows[0]
    side = Side(rows=int(row[0]), sums={c: float(v or 0.0) for c, v in zip(present, row[1:], strict=True)})
    if all(backend.column(c) in columns for c in keys):
        account, product, cost = (q(backend.column(c)) for c in keys)
        rows = backend.execute(
            f"SELECT {account}, {product}, SUM({cost}) FROM {target} WHERE {period} = ? GROUP BY {account}, "
            f"{product}", [billing_period], what=f"summing {table} {billing_period} by account and product",
        ).rows
        side.by_key = {f"{a or ''}/{p or ''}": float(c or 0.0) for a, p, c in rows}
    return side


def compare(source: Side, table: Side) -> list[str]:
    """What differs, in words a finance team reads (empty: the period matches)."""
    differences = []
    if source.rows != table.rows:
        differences.append(f"rows: source {source.rows:,}, table {table.rows:,}")
    for column in sorted(set(source.sums) | set(table.sums)):
        if not _close(source.sums.get(column), table.sums.get(column)):
            differences.append(f"{column}: source {source.sums.get(column)}, table {table.sums.get(column)}")
    keys = set(source.by_key) | set(table.by_key)
    wrong = sorted(k for k in keys if not _close(source.by_key.get(k, 0.0), table.by_key.get(k, 0.0)))
    for key in wrong[:20]:
        differences.append(f"cost of account/product {key}: source {source.by_key.get(key)}, "
                           f"table {table.by_key.get(key)}")
    if len(wrong) > 20:
        differences.append(f"… and {len(wrong) - 20} more account/product pairs")
    return differences


def verify(
    backend: SqlBackend, store: ObjectStore, dataset: str, periods: list[PeriodSource],
    current: dict[tuple[str, str], str], recorded: dict[tuple[str, str], str | None] | None = None,
) -> list[PeriodCheck]:
    """Compare every period the source holds with what is loaded.

    Args:
        periods: the source's current manifests, as the import sees them.
        current: (export, period) → the version loaded and completed.
        recorded: (export, period) → the findings its import recorded (the state's ``quality_findings``).
    """
    from core.backends.sqlengine.quality import from_json, period_findings

    checks = []
    backend.open_dataset(dataset, create=False)  # SQLite: the dataset's attached file
    for period in periods:
        loaded = current.get((period.export_name, period.billing_period))
        check = PeriodCheck(period.export_name, period.billing_period, period.version_id, "not verified")
        checks.append(check)
        if loaded is None:
            check.differences.append("not loaded")
            continue
        if loaded != period.version_id:
            check.differences.append(f"the source's current version is {period.version_id}; {loaded} is loaded")
            continue
        table = backend.table_name(period.export_name)
        check.recorded_findings = from_json((recorded or {}).get((period.export_name, period.billing_period)))
        try:
            check.source = read_source(store, period)
            check.table = read_table(backend, dataset, table, period.billing_period, figures_of(period))
            check.findings = [f.to_dict() for f in period_findings(backend, dataset, table, period.billing_period,
                                                                   QUALITY_RULES)]
        except FinOpsError as exc:
            check.differences.append(exc.message)
            continue
        check.differences = compare(check.source, check.table)
        check.status = "mismatch" if check.differences else "match"
    return checks
