"""The FOCUS relations of a dataset: ``<table>_focus`` over each CUR table, and ``focus``, the union of the
selected exports with no (billing period, billing account) counted twice.

Members of the union are ranked FOCUS 1.2 > FOCUS 1.0 > CUR 2.0 > CUR v1 (then by export name, so two exports of
one kind are ordered too). Each member's rows are left out where a higher-ranked member has any row of the same
``BillingPeriodStart`` and ``BillingAccountId`` — an anti-join written into the view (``NOT EXISTS``), so a later
load of either export is deduplicated without recreating anything. Native FOCUS tables join as they are,
projected onto :data:`~vendors.aws.focus.columns.FOCUS_NAMES` (a column the table lacks, such as a FOCUS 1.0
table's ``InvoiceId``, becomes a NULL of its kind); CUR tables through their ``_focus`` view
(:func:`vendors.aws.focus.views.cur_view`). ``x_ExportName`` says which export a row came from.

Every statement is a sqlglot expression rendered in the engine's dialect; the only constants in a view are the
export names (as sqlglot literals), never a value read from the data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError
from vendors.aws.focus.columns import FOCUS_COLUMNS, FOCUS_NAMES, VERSION_1_2_ONLY, X_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from sqlglot import exp

    from core.backends.base import LoadRecord
    from core.backends.sqlengine import SqlBackend
    from core.config import FocusSettings

log = logging.getLogger(__name__)

__all__ = ["EXPORT_COLUMN", "UNION", "FocusMember", "FocusReport", "member_select", "members", "refresh"]

#: the union relation's name
UNION = "focus"
#: the column of the union naming the export a row came from
EXPORT_COLUMN = "x_ExportName"
#: data_format_version → rank (higher wins a (billing period, billing account)) and label
RANKS: dict[str, tuple[int, str]] = {
    "focus-1.2": (4, "FOCUS 1.2"), "focus-1.0": (3, "FOCUS 1.0"), "v2": (2, "CUR 2.0"), "v1": (1, "CUR v1"),
}
FOCUS_FORMATS = ("focus-1.0", "focus-1.2")
KINDS: dict[str, str] = {c.name: c.kind for c in FOCUS_COLUMNS + X_COLUMNS}
#: the dedup key: a higher-ranked member covering it hides a lower-ranked member's rows
KEY = ("BillingPeriodStart", "BillingAccountId")


@dataclass
class FocusMember:
    """One export in the FOCUS union."""

    export_name: str
    table: str
    #: ``data_format_version``: ``focus-1.2``, ``focus-1.0``, ``v2`` or ``v1``
    format: str
    #: the relation the union reads: the native table, or the CUR table's ``_focus`` view
    relation: str
    #: FOCUS columns a native table lacks (NULL in the union)
    missing: list[str] = field(default_factory=list)
    #: native columns stored with another kind than FOCUS's (cast in the union): name → stored kind
    recast: dict[str, str] = field(default_factory=dict)
    #: billing periods (``YYYY-MM``) with rows in the union, wholly left out, and partly left out (some accounts)
    months_included: list[str] = field(default_factory=list)
    months_left_out: list[str] = field(default_factory=list)
    months_partly_left_out: list[str] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return RANKS[self.format][0]

    @property
    def kind(self) -> str:
        return RANKS[self.format][1]

    @property
    def native(self) -> bool:
        return self.format in FOCUS_FORMATS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind, "rank": self.rank}


@dataclass
class FocusReport:
    dataset: str
    union: str | None
    members: list[FocusMember] = field(default_factory=list)
    #: every view (re)created, members first
    views: list[str] = field(default_factory=list)
    #: exports in the dataset not selected by ``[focus] exports``
    not_selected: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "union": self.union, "views": self.views,
                "not_selected": self.not_selected, "members": [m.to_dict() for m in self.members]}


# ------------------------------------------------------------------------------------------------ members


def members(backend: SqlBackend, dataset: str, settings: FocusSettings | None,
            state: Sequence[LoadRecord], *, strict: bool = True) -> tuple[list[FocusMember], list[str]]:
    """The selected exports of ``dataset`` (kinds from the load ``state``, else from the columns), highest rank
    first, and the names of those not selected. ``strict`` off: a selected export not in the dataset (yet) is
    logged and skipped (an import of one export while ``[focus] exports`` names one still to be imported).

    Raises:
        ConfigError: ``strict``, and ``[focus] exports`` names an export the dataset does not hold (exit 2).
    """
    views = set(backend.view_names(dataset))  # never an export, whatever its columns
    tables = [t for t in backend.table_names(dataset) if t not in views]
    formats: dict[str, tuple[str, str]] = {}  # table → (export name, format) from the latest current period
    for record in sorted(state, key=lambda r: r.billing_period):
        if record.is_current and record.status == "completed":
            table = backend.table_name(record.export_name)
            formats[table] = (record.export_name, record.data_format_version)
    found: list[FocusMember] = []
    for table in tables:
        columns = backend.table_columns(dataset, table)
        export, fmt = formats.get(table, (table, _format_from_columns(columns)))
        if fmt not in RANKS:
            fmt = _format_from_columns(columns)
        if fmt is None:
            log.info("%s.%s is neither a CUR nor a FOCUS table: not in the FOCUS union", dataset, table)
            continue
        found.append(FocusMember(export, table, fmt, table if fmt in FOCUS_FORMATS else f"{table}_focus"))
    wanted = list(settings.exports or []) if settings is not None else []
    if wanted:
        known = {name: m for m in found for name in (m.export_name, m.table)}
        unknown = [name for name in wanted if name not in known]
        if unknown and not strict:
            log.warning("[focus] exports names %s, not (yet) an export of %s: left out of the FOCUS union",
                        ", ".join(unknown), dataset)
            wanted = [name for name in wanted if name in known]
        elif unknown:
            raise ConfigError(
                f"[focus] exports names {', '.join(repr(u) for u in unknown)}, not an export of the dataset "
                f"{dataset} (its exports: {', '.join(sorted(m.export_name for m in found)) or 'none'}).",
                hint="Fix [focus] exports (or OPEN_FINOPS_FOCUS_EXPORTS), or leave it unset for every export.")
        chosen = {id(known[name]) for name in wanted}
        left = sorted(m.export_name for m in found if id(m) not in chosen)
        found = [m for m in found if id(m) in chosen]
    else:
        left = []
    found.sort(key=lambda m: (-m.rank, m.export_name))
    return found, left


def _format_from_columns(columns: dict[str, str]) -> str | None:
    """The kind of a table the state says nothing about (copied by hand, or loaded by an older release)."""
    lower = {c.lower() for c in columns}
    if {"billedcost", "chargeperiodstart"} <= lower:
        return "focus-1.2" if lower & {n.lower() for n in VERSION_1_2_ONLY} else "focus-1.0"
    if "line_item_unblended_cost" in lower:
        return "v2" if "product" in lower else "v1"
    return None


# ------------------------------------------------------------------------------------------------ SQL


def _table(backend: SqlBackend, dataset: str, name: str) -> exp.Table:
    return backend.table_expression(dataset, name)


def _col(name: str, alias: str) -> exp.Column:
    from sqlglot import exp

    return exp.column(name, table=alias, quoted=True)


def _native_projection(backend: SqlBackend, dataset: str, member: FocusMember) -> list[exp.Expression]:
    """A native table's columns as FOCUS 1.2 has them: present ones by name (cast where stored as another kind),
    missing ones as NULL of their kind."""
    from sqlglot import exp

    from core.backends.sqlengine import sqlexpr

    stored = {name.lower(): kind for name, kind in
              ((n, backend.kind_of(t)) for n, t in backend.table_columns(dataset, member.table).items())}
    out: list[exp.Expression] = []
    member.missing, member.recast = [], {}
    for name in FOCUS_NAMES:
        kind = KINDS[name]
        have = stored.get(name.lower())
        if have is None:
            member.missing.append(name)
            value: exp.Expression = sqlexpr.typed_null(kind, backend.dialect)
        elif have != backend.kind_of(backend.types[kind]):
            member.recast[name] = have
            value = sqlexpr.typed(_col(name, "m"), kind, backend.dialect)
        else:
            value = _col(name, "m")
        out.append(exp.alias_(value, name, quoted=True))
    return out


def member_select(backend: SqlBackend, dataset: str, member: FocusMember,
                  above: Sequence[FocusMember] = ()) -> exp.Select:
    """``member`` projected onto FOCUS 1.2 plus ``x_ExportName``, without the rows a member of ``above`` covers."""
    from sqlglot import exp

    if member.native:
        projection = _native_projection(backend, dataset, member)
    else:
        projection = [exp.alias_(_col(name, "m"), name, quoted=True) for name in FOCUS_NAMES]
    projection.append(exp.alias_(exp.Literal.string(member.export_name), EXPORT_COLUMN, quoted=True))
    select = exp.select(*projection).from_(_table(backend, dataset, member.relation).as_("m"))
    for index, higher in enumerate(above):
        alias = f"h{index}"
        match = exp.and_(*(exp.EQ(this=_col(k, alias), expression=_col(k, "m")) for k in KEY))
        covered = exp.select(exp.Literal.number(1)).from_(_table(backend, dataset, higher.relation).as_(alias))
        select = select.where(exp.not_(exp.Exists(this=covered.where(match))))
    return select


def union_select(backend: SqlBackend, dataset: str, chosen: Sequence[FocusMember], *,
                 dedup: bool = True) -> exp.Query:
    """The union of ``chosen`` (ranked, highest first); ``dedup=False`` keeps every member's rows (``--check``
    tests each member whole)."""
    from sqlglot import exp

    selects = [member_select(backend, dataset, m, chosen[:i] if dedup else ()) for i, m in enumerate(chosen)]
    query: exp.Query = selects[0]
    for select in selects[1:]:
        query = exp.union(query, select, distinct=False)
    return query


# ------------------------------------------------------------------------------------------------ refresh


def refresh(backend: SqlBackend, dataset: str, settings: FocusSettings | None, *,
            state: Sequence[LoadRecord] | None = None, count_months: bool = True, strict: bool = True) -> FocusReport:
    """(Re)create every selected CUR table's ``<table>_focus`` view and the union ``focus`` in ``dataset``.

    ``state``: the load records (read here when not given). ``strict``: see :func:`members`. ``count_months``:
    also read which billing periods of each member the union includes and leaves out (one GROUP BY per member and
    one over the union; off for the refresh an import does).

    Raises:
        ConfigError: ``strict``, and ``[focus] exports`` names an export the dataset does not hold.
        LoadError / DestinationError: the engine refused a view or went away.
    """
    from vendors.aws.pipeline import read_state

    report = FocusReport(dataset, None)
    if not backend.exists():  # an embedded database not written yet: create nothing
        return report
    if state is None:
        state = read_state(backend, dataset)  # first: it opens and closes its own connection
    if not backend.open_dataset(dataset, create=False):
        return report
    chosen, report.not_selected = members(backend, dataset, settings, state, strict=strict)
    report.members = chosen
    if not chosen:
        return report
    views: list[tuple[str, str]] = []
    for member in chosen:
        if not member.native:
            from vendors.aws.focus.views import cur_view

            name, sql = cur_view(backend, dataset, member.table)
            member.relation = name
            views.append((name, sql))
    views.append((UNION, backend.render(union_select(backend, dataset, chosen))))
    backend.replace_views(dataset, views)
    report.views = [name for name, _ in views]
    report.union = UNION
    log.info("FOCUS relations of %s: %s", dataset, ", ".join(report.views))
    if count_months:
        _count_months(backend, dataset, chosen)
    return report


def _count_months(backend: SqlBackend, dataset: str, chosen: Sequence[FocusMember]) -> None:
    """Per member: the periods the union holds rows of, and those it leaves out wholly or in part."""
    from sqlglot import exp

    def grouped(relation: exp.Expression, *keys: str) -> list[tuple[Any, ...]]:
        cols = [exp.column(k, quoted=True) for k in keys]
        query = exp.select(*cols, exp.func("COUNT", exp.Star())).from_(relation).group_by(*cols)
        return backend.execute(backend.render(query), what=f"counting the FOCUS rows of {dataset}").rows

    kept: dict[tuple[str, str], int] = {}
    for export, start, rows in grouped(_table(backend, dataset, UNION), EXPORT_COLUMN, "BillingPeriodStart"):
        kept[(export, month(start))] = kept.get((export, month(start)), 0) + int(rows)
    for member in chosen:
        total: dict[str, int] = {}
        for start, rows in grouped(_table(backend, dataset, member.relation), "BillingPeriodStart"):
            total[month(start)] = total.get(month(start), 0) + int(rows)
        for period in sorted(total):
            included = kept.get((member.export_name, period), 0)
            bucket = (member.months_left_out if not included else
                      member.months_partly_left_out if included < total[period] else member.months_included)
            bucket.append(period)
            if included and included < total[period]:
                member.months_included.append(period)


def month(value: Any) -> str:
    """``YYYY-MM`` of a BillingPeriodStart as a driver returns it (a datetime, or ISO text on SQLite)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC)  # a driver may hand back the session's zone
    if isinstance(value, datetime | date):
        return value.strftime("%Y-%m")
    return "?" if value is None else str(value)[:7]
