"""``finops aws focus --check``: the FOCUS relations tested against FOCUS 1.2 with rules SQL can check.

* **columns** — ``focus`` and each CUR ``_focus`` view have every FOCUS 1.2 column, each of its kind (as the
  catalogue reports it; a column whose type the engine does not report, such as an expression in a SQLite view,
  is not judged; a key-value column may be JSON or text, as MariaDB's catalogue reports JSON);
* **not-null** — the mandatory columns (``mandatory`` in :mod:`~vendors.aws.focus.columns`) hold no NULL;
* **allowed values** — ChargeCategory, ChargeClass, PricingCategory, CommitmentDiscountStatus, ChargeFrequency;
* **EffectiveCost ≥ 0** — outside ChargeCategory Credit/Adjustment and corrections (ChargeClass Correction);
* **BilledCost = source** — per export and billing period (a native table's ``billing_period``, a CUR view's
  ``BillingPeriodStart``), ``SUM(BilledCost)`` equals the source's sum recorded
  in the load state when the period was imported and reconciled (CUR: net unblended where the state has it,
  else unblended; native FOCUS: BilledCost), to 1e-9 relative.

Every member is tested whole (rows the union leaves out as well): the value rules run as one aggregate query
grouped by export over the members' union without deduplication, the sums as one GROUP BY per member. Values
are bound (``?``); nothing is read row by row into Python.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from vendors.aws.focus.columns import FOCUS_COLUMNS
from vendors.aws.focus.relations import EXPORT_COLUMN, KINDS, UNION, FocusMember, month, union_select

if TYPE_CHECKING:  # pragma: no cover
    from sqlglot import exp

    from core.backends.sqlengine import SqlBackend

__all__ = ["ALLOWED", "CheckReport", "Failure", "check"]

#: FOCUS 1.2's allowed values of the columns checked (NULL allowed where ``None`` is listed)
ALLOWED: dict[str, tuple[str | None, ...]] = {
    "ChargeCategory": ("Usage", "Purchase", "Tax", "Credit", "Adjustment"),
    "ChargeClass": ("Correction", None),
    "PricingCategory": ("Standard", "Dynamic", "Committed", "Other", None),
    "CommitmentDiscountStatus": ("Used", "Unused", None),
    "ChargeFrequency": ("One-Time", "Recurring", "Usage-Based", None),
}
MANDATORY = tuple(c.name for c in FOCUS_COLUMNS if c.mandatory)
#: the state's source sum BilledCost is compared with, in order of preference (CUR net first)
SOURCE_SUMS = ("billedcost", "line_item_net_unblended_cost", "line_item_unblended_cost")
REL_TOL = 1e-9


@dataclass
class Failure:
    rule: str
    #: the export (or ``focus`` for the union's columns) that fails it
    relation: str
    count: int
    sample: Any
    message: str


@dataclass
class CheckReport:
    relations: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    #: what could not be judged (no source sums recorded, an engine that reports no view column types)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "relations": self.relations, "rules": self.rules,
                "failures": [asdict(f) for f in self.failures], "notes": self.notes}


def check(backend: SqlBackend, dataset: str, chosen: list[FocusMember], state: list[Any]) -> CheckReport:
    """Test the relations :func:`vendors.aws.focus.relations.refresh` created. ``state``: the load records.

    Raises:
        LoadError / DestinationError: a query failed.
    """
    report = CheckReport(relations=[UNION] + [m.relation for m in chosen])
    if not chosen or not backend.open_dataset(dataset, create=False):
        return report
    _columns(backend, dataset, [UNION] + [m.relation for m in chosen if not m.native], report)
    _values(backend, dataset, chosen, report)
    _sums(backend, dataset, chosen, state, report)
    return report


# ------------------------------------------------------------------------------------------------ columns


def _columns(backend: SqlBackend, dataset: str, relations: list[str], report: CheckReport) -> None:
    report.rules.append("columns")
    for relation in relations:
        stored = {name.lower(): kind for name, kind in backend.table_columns(dataset, relation).items()}
        if not stored:
            report.failures.append(Failure("columns", relation, 0, None, f"{relation}: not found in the catalogue"))
            continue
        missing = [name for name in KINDS if name.lower() not in stored]
        wrong, unknown = [], 0
        for name, kind in KINDS.items():
            type_name = stored.get(name.lower())
            if type_name is None:
                continue
            if not str(type_name).strip() or str(type_name).upper() in {"NULL", "NULLTYPE"}:
                unknown += 1
                continue
            have = backend.kind_of(type_name)
            if have != backend.kind_of(backend.types[kind]) and not (kind == "json" and have == "string"):
                wrong.append(f"{name} ({type_name}, FOCUS: {kind})")
        if missing:
            report.failures.append(Failure("columns", relation, len(missing), missing[0],
                                           f"{relation}: missing {', '.join(missing)}"))
        if wrong:
            report.failures.append(Failure("column kinds", relation, len(wrong), wrong[0],
                                           f"{relation}: {', '.join(wrong)}"))
        if unknown:
            report.notes.append(f"{relation}: the engine reports no type for {unknown} column(s); kinds not judged")


# ------------------------------------------------------------------------------------------------ values


def _rules() -> list[tuple[str, str, Any]]:
    """(rule name, column whose value is the sample, builder of the failing-row condition with its params)."""
    from sqlglot import exp

    def col(name: str) -> exp.Column:
        return exp.column(name, table="a", quoted=True)

    def param(values: list[Any], value: Any) -> exp.Expression:
        values.append(value)
        return exp.Var(this="?")

    rules: list[tuple[str, str, Any]] = []
    for name in MANDATORY:
        rules.append((f"{name} not null", "BillingPeriodStart",
                      lambda values, n=name: col(n).is_(exp.null())))
    for name, allowed in ALLOWED.items():
        listed = [v for v in allowed if v is not None]

        def bad(values: list[Any], n: str = name, listed: list[str] = listed, nullable: bool = None in allowed) -> Any:
            outside = exp.not_(col(n).isin(*(param(values, v) for v in listed)))
            return exp.and_(exp.not_(col(n).is_(exp.null())), outside) if nullable else exp.or_(
                col(n).is_(exp.null()), outside)

        rules.append((f"{name} allowed values", name, bad))

    def negative(values: list[Any]) -> Any:
        below = exp.LT(this=col("EffectiveCost"), expression=exp.Literal.number(0))
        category = exp.or_(col("ChargeCategory").is_(exp.null()), exp.not_(
            col("ChargeCategory").isin(param(values, "Credit"), param(values, "Adjustment"))))
        correction = exp.or_(col("ChargeClass").is_(exp.null()), exp.NEQ(
            this=col("ChargeClass"), expression=param(values, "Correction")))
        return exp.and_(below, category, correction)

    rules.append(("EffectiveCost >= 0 outside credits and corrections", "EffectiveCost", negative))
    return rules


def _values(backend: SqlBackend, dataset: str, chosen: list[FocusMember], report: CheckReport) -> None:
    """One aggregate query: per export, per rule, the failing rows and a sample (the smallest failing value)."""
    from sqlglot import exp

    from core.backends.sqlengine import sqlexpr

    dialect = backend.dialect
    params: list[Any] = []
    projection: list[exp.Expression] = [exp.column(EXPORT_COLUMN, table="a", quoted=True)]
    rules = _rules()
    for _name, sample, condition in rules:
        projection.append(exp.func("SUM", exp.Case().when(condition(params), exp.Literal.number(1))
                                   .else_(exp.Literal.number(0))))
        value = sqlexpr.typed(exp.column(sample, table="a", quoted=True), "string", dialect)
        projection.append(exp.func("MIN", exp.Case().when(condition(params), value)))
    members = exp.Subquery(this=union_select(backend, dataset, chosen, dedup=False), alias=exp.to_identifier("a"))
    query = exp.select(*projection).from_(members).group_by(exp.column(EXPORT_COLUMN, table="a", quoted=True))
    rows = backend.execute(backend.render(query), params, what="checking the FOCUS rules").rows
    report.rules.extend(name for name, _, _ in rules)
    for row in sorted(rows, key=lambda r: str(r[0])):
        for index, (name, sample, _) in enumerate(rules):
            count, value = int(row[1 + 2 * index] or 0), row[2 + 2 * index]
            if count:
                where = f"in billing period {str(value)[:10]}" if sample == "BillingPeriodStart" else f"e.g. {value!r}"
                report.failures.append(Failure(name, str(row[0]), count, value,
                                               f"{row[0]}: {count:,} row(s) break '{name}' ({where})"))


# ------------------------------------------------------------------------------------------------ sums


def _sums(backend: SqlBackend, dataset: str, chosen: list[FocusMember], state: list[Any],
          report: CheckReport) -> None:
    """Per export and period: SUM(BilledCost) of its relation against the source's sum in the state."""
    from sqlglot import exp

    report.rules.append("BilledCost = source")
    current = {(r.export_name, r.billing_period): r for r in state if r.is_current and r.status == "completed"}
    for member in chosen:
        # a native table has the import's own billing_period (the state's key); a CUR view, BillingPeriodStart
        period = exp.column("billing_period" if member.native else "BillingPeriodStart", quoted=True)
        query = (exp.select(period, exp.func("SUM", exp.column("BilledCost", quoted=True)))
                 .from_(backend.table_expression(dataset, member.relation)).group_by(period))
        sums: dict[str, float] = {}
        for value, total in backend.execute(backend.render(query), what=f"summing {member.relation}").rows:
            sums[month(value)] = sums.get(month(value), 0.0) + float(total or 0.0)
        periods = sorted({p for (e, p) in current if e == member.export_name} | set(sums))
        for period in periods:
            record = current.get((member.export_name, period))
            source = _source_sum(record)
            if source is None:
                report.notes.append(f"{member.export_name} {period}: no source sum recorded; BilledCost not compared")
                continue
            table = sums.get(period, 0.0)
            if not math.isclose(table, source[1], rel_tol=REL_TOL, abs_tol=1e-6):
                report.failures.append(Failure(
                    "BilledCost = source", member.export_name, 1, table,
                    f"{member.export_name} {period}: SUM(BilledCost) {table!r} but the source's {source[0]} "
                    f"was {source[1]!r}"))


def _source_sum(record: Any) -> tuple[str, float] | None:
    if record is None or not record.source_sums:
        return None
    try:
        sums = {str(k).lower(): (str(k), float(v)) for k, v in json.loads(record.source_sums).items()}
    except (ValueError, TypeError, AttributeError):
        return None
    return next((sums[name] for name in SOURCE_SUMS if name in sums), None)
