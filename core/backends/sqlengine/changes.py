"""What a restatement changed: the cost per key (account, product, line item type…) of the version a load
replaces against the version it brings, computed inside the replace transaction and stored in
``<dataset>._finops_restatements`` (one row per changed key), so that "what did AWS change in March?" has an
answer that commits, or rolls back, with the data.

Only aggregates pass through Python: one row per key, never per line item.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.base import PeriodLoad
    from core.backends.sqlengine.backend import SqlBackend

CHANGES_TABLE = "_finops_restatements"
#: changed keys per INSERT statement
INSERT_ROWS = 50
Key = tuple[str, ...]
Snapshot = dict[Key, tuple[float, int]]


@dataclass
class Restatement:
    """The changed keys of one replaced period, and the totals the import summary prints."""

    old_version: str | None
    new_version: str
    keys: tuple[str, ...]
    rows: list[tuple[Key, float, float, int, int]] = field(default_factory=list)

    @property
    def delta(self) -> float:
        return sum(new - old for _, old, new, _, _ in self.rows)

    def distinct(self, position: int) -> int:
        return len({key[position] for key, *_ in self.rows})


def snapshot(backend: SqlBackend, load: PeriodLoad) -> Snapshot | None:
    """Cost and rows per key of what the table holds for the period now (None: the table lacks a key column)."""
    columns = backend.table_columns(load.dataset, load.table)
    names = [*load.change_keys, load.change_cost]
    if not load.change_keys or not load.change_cost or any(backend.column(n) not in columns for n in names):
        return None
    keys = ", ".join(backend.quote(backend.column(k)) for k in load.change_keys)
    cost = backend.quote(backend.column(load.change_cost))
    rows = backend.execute(
        f"SELECT {keys}, SUM({cost}), COUNT(*) FROM {backend.qualified(load.dataset, load.table)} "
        f"WHERE {backend.quote('billing_period')} = ? GROUP BY {keys}", [load.billing_period],
        what=f"summing {load.table} {load.billing_period} by {', '.join(load.change_keys)}",
    ).rows
    width = len(load.change_keys)
    return {tuple("" if v is None else str(v) for v in row[:width]): (float(row[width] or 0.0), int(row[width + 1]))
            for row in rows}


def differences(before: Snapshot, after: Snapshot, old: str | None, new: str, keys: Sequence[str]) -> Restatement:
    change = Restatement(old, new, tuple(keys))
    for key in sorted(set(before) | set(after)):
        (old_cost, old_rows), (new_cost, new_rows) = before.get(key, (0.0, 0)), after.get(key, (0.0, 0))
        if old_rows != new_rows or not math.isclose(old_cost, new_cost, rel_tol=1e-9, abs_tol=1e-9):
            change.rows.append((key, old_cost, new_cost, old_rows, new_rows))
    return change


def store(backend: SqlBackend, load: PeriodLoad, change: Restatement, vendor: str) -> None:
    """Insert the changed keys (bound values) into ``_finops_restatements``, creating it on first use."""
    if not change.rows:
        return
    t, q = backend.types, backend.quote
    table = backend.qualified(load.dataset, CHANGES_TABLE)
    fixed = {"vendor": "string", "export_name": "string", "billing_period": "string", "old_version": "string",
             "new_version": "string"}
    tail = {"old_cost": "double", "new_cost": "double", "old_rows": "bigint", "new_rows": "bigint",
            "recorded_at": "timestamp"}
    columns = {**fixed, **{k: "string" for k in change.keys}, **tail}
    existing = backend.table_columns(load.dataset, CHANGES_TABLE)
    if not existing:
        body = ", ".join(f"{q(backend.column(n))} {t[k]}" for n, k in columns.items())
        backend.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})", what=f"creating {CHANGES_TABLE}")
    else:
        for name, kind in columns.items():
            if backend.column(name) not in existing:
                backend.execute(f"ALTER TABLE {table} ADD COLUMN {q(backend.column(name))} {t[kind]}")
    names = ", ".join(q(backend.column(n)) for n in columns)
    row_marks = "(" + ", ".join("?" for _ in columns) + ")"
    now = datetime.now(UTC)
    values = [[vendor, load.record.export_name, load.billing_period, change.old_version, change.new_version, *key,
               old_cost, new_cost, old_rows, new_rows, now]
              for key, old_cost, new_cost, old_rows, new_rows in change.rows]
    # one statement per INSERT_ROWS keys, not per key: a warehouse runs each DML statement as a job of its own,
    # and INSERT_ROWS × the columns stays under SQLite's oldest bound-parameter limit (999)
    for start in range(0, len(values), INSERT_ROWS):
        chunk = values[start:start + INSERT_ROWS]
        backend.execute(f"INSERT INTO {table} ({names}) VALUES {', '.join(row_marks for _ in chunk)}",
                        [value for row in chunk for value in row], what=f"recording what {load.billing_period} restated")


def summary(change: Restatement, currency: str = "") -> str:
    """``+412.18, 3 accounts, 5 services`` (the first two keys: account, product)."""
    parts = [f"{change.delta:+,.2f}{(' ' + currency) if currency else ''}"]
    labels = {0: "account", 1: "service"}
    for position, label in labels.items():
        if position < len(change.keys):
            count = change.distinct(position)
            parts.append(f"{count} {label}{'s' if count != 1 else ''}")
    return ", ".join(parts)


def read(
    execute: Callable[[str, Sequence[Any]], Any], backend: SqlBackend, dataset: str, vendor: str,
    export_name: str | None, billing_period: str | None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Every stored change (column names, rows), oldest first; nothing when the table does not exist yet."""
    columns = list(backend.table_columns(dataset, CHANGES_TABLE))
    if not columns:
        return [], []
    where, params = [f"{backend.quote('vendor')} = ?"], [vendor]
    for name, value in (("export_name", export_name), ("billing_period", billing_period)):
        if value is not None:
            where.append(f"{backend.quote(name)} = ?")
            params.append(value)
    select = ", ".join(backend.quote(c) for c in columns)
    rows = execute(f"SELECT {select} FROM {backend.qualified(dataset, CHANGES_TABLE)} WHERE {' AND '.join(where)} "
                   f"ORDER BY {backend.quote('recorded_at')}, {backend.quote('export_name')}, "
                   f"{backend.quote('billing_period')}", params)
    return columns, rows
