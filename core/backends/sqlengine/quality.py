"""Data-quality findings of one period of one export table, computed by the engine (aggregate SQL only).

One implementation for the import (inside the replace transaction, before COMMIT, over the period just inserted)
and for ``finops aws verify`` (afterwards, over what the table holds). Four kinds:

* ``duplicate_line_items``: the same line item (the vendor's identity columns) more than once in the period;
* ``currencies``: more than one currency in the period (a sum across them means nothing);
* ``split_cost_allocation``: split cost allocation rows (``EKSPod-*``, ``ECSTask-*`` usage types) beside the
  instance rows they split (a sum over both counts that cost twice);
* ``payer_in_two_exports``: the period's payer account is also in another export table of the dataset for the
  same period (a CUR v1 and a CUR 2.0 of one account: summing both counts it twice).

Which columns each check reads is the vendor's data (:class:`QualityRules`), each given as alternatives (a CUR
name, a FOCUS name); a check runs only where the table has one of them, so a table without them (another vendor,
a FOCUS export without a line item identity) is skipped, never an error. Findings are warnings: the import
records them in the load state and, with ``[quality] strict = true``, fails the period.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from core.backends.base import QualityRules

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.sqlengine.backend import SqlBackend

KINDS = ("duplicate_line_items", "currencies", "split_cost_allocation", "payer_in_two_exports")


@dataclass(frozen=True)
class Finding:
    kind: str
    count: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_json(findings: Sequence[Finding]) -> str:
    """The state's ``quality_findings`` text: ``[]`` when the period was checked and nothing was found."""
    return json.dumps([f.to_dict() for f in findings], sort_keys=True)


def from_json(text: str | None) -> list[dict[str, Any]] | None:
    """``quality_findings`` as stored (None: the period was not checked, e.g. loaded by an earlier release)."""
    return None if text in (None, "") else list(json.loads(text))  # type: ignore[arg-type]


def period_findings(
    backend: SqlBackend, dataset: str, table: str, billing_period: str, rules: QualityRules,
    columns: Mapping[str, str] | None = None,
) -> list[Finding]:
    """The findings of ``billing_period`` in ``table``, in the order of :data:`KINDS`.

    Raises:
        LoadError / DestinationError: a statement failed (as any statement of the backend).
    """
    columns = backend.table_columns(dataset, table) if columns is None else columns
    if not columns:
        return []
    q, target, found = (lambda name: backend.quote(backend.column(name))), backend.qualified(dataset, table), []
    period = backend.quote("billing_period")
    what = f"checking the data quality of {table} {billing_period}"

    key = next((k for k in rules.line_item if all(backend.column(c) in columns for c in k)), None)
    if key:
        names = ", ".join(q(c) for c in key)
        groups, rows = backend.execute(
            f"SELECT COUNT(*), SUM(copies) FROM (SELECT COUNT(*) AS copies FROM {target} WHERE {period} = ? "
            f"AND {q(key[0])} IS NOT NULL GROUP BY {names} HAVING COUNT(*) > 1) d", [billing_period], what=what,
        ).rows[0]
        if groups:
            found.append(Finding("duplicate_line_items", int(groups),
                                 f"{int(groups):,} line item(s) appear more than once ({int(rows or 0):,} rows; same "
                                 f"{' and '.join(key)})"))

    currency, usage = _pick(backend, columns, rules.currency), _pick(backend, columns, rules.usage_type)
    parts, params = [], []
    if currency:  # MIN and MAX, not COUNT(DISTINCT): no sort of the period; the list only when they differ
        parts.append(f"MIN({q(currency)}), MAX({q(currency)})")
    if usage and rules.split_patterns and rules.instance_patterns:
        for patterns in (rules.split_patterns, rules.instance_patterns):
            parts.append(f"SUM(CASE WHEN {' OR '.join(f'{q(usage)} LIKE ?' for _ in patterns)} THEN 1 ELSE 0 END)")
            params.extend(patterns)
    if parts:
        row = list(backend.execute(f"SELECT {', '.join(parts)} FROM {target} WHERE {period} = ?",
                                   [*params, billing_period], what=what).rows[0])
        if currency:
            low, high = row.pop(0), row.pop(0)
            if low is not None and low != high:
                codes = sorted(str(c) for (c,) in backend.execute(
                    f"SELECT DISTINCT {q(currency)} FROM {target} WHERE {period} = ? AND {q(currency)} IS NOT "
                    "NULL", [billing_period], what=what).rows)
                found.append(Finding("currencies", len(codes), f"{len(codes)} currencies in one period "
                                                               f"({', '.join(codes)}): sums across them mean nothing"))
        if row:
            split, instances = int(row[0] or 0), int(row[1] or 0)
            if split and instances:
                found.append(Finding(
                    "split_cost_allocation", split,
                    f"{split:,} split cost allocation row(s) ({', '.join(p.strip('%') + '*' for p in rules.split_patterns)}) "
                    f"beside {instances:,} instance row(s) they split: a sum over both counts that cost twice"))

    found.extend(_payer_twice(backend, dataset, table, billing_period, rules, columns))
    return found


def _pick(backend: SqlBackend, columns: Mapping[str, str], names: Sequence[str]) -> str | None:
    return next((n for n in names if backend.column(n) in columns), None)


def _payer_twice(
    backend: SqlBackend, dataset: str, table: str, billing_period: str, rules: QualityRules,
    columns: Mapping[str, str],
) -> list[Finding]:
    """The period's payers found, for the same period, in the other export tables of the dataset."""
    payer = _pick(backend, columns, rules.payer)
    if not payer:
        return []
    q, found, period = (lambda name: backend.quote(backend.column(name))), [], backend.quote("billing_period")
    for other in backend.table_names(dataset):
        if other == table:
            continue
        theirs = _pick(backend, backend.table_columns(dataset, other), rules.payer)
        if not theirs:
            continue
        payers = sorted(str(p) for (p,) in backend.execute(
            f"SELECT DISTINCT a.{q(payer)} FROM {backend.qualified(dataset, table)} a WHERE a.{period} = ? "
            f"AND a.{q(payer)} IN (SELECT b.{q(theirs)} FROM {backend.qualified(dataset, other)} b "
            f"WHERE b.{period} = ?)", [billing_period, billing_period],
            what=f"comparing the payers of {table} and {other} {billing_period}").rows if p not in (None, ""))
        if payers:
            found.append(Finding("payer_in_two_exports", len(payers),
                                 f"payer account(s) {', '.join(payers)} also loaded in table {other} for this period: "
                                 "summing both exports counts them twice"))
    return found
