"""The FOCUS 1.2 view of one CUR export table, ``<table>_focus``, generated from the table's current columns.

Regenerated from the catalogue every time (not stored), so a table widened by a later month (a column AWS added)
gets a view that reads the new column, and one that lacks a column gets a typed NULL instead of an error.
"""

from __future__ import annotations

from core.backends.base import DatabaseBackend
from core.errors import LoadError
from vendors.aws.focus.mapping import cur_focus_select

SUFFIX = "_focus"


def view_name(table: str) -> str:
    return f"{table}{SUFFIX}"


def cur_view(backend: DatabaseBackend, dataset: str, table: str) -> tuple[str, str]:
    """(``<table>_focus``, its SELECT rendered for ``backend``) over the CUR table ``dataset.table``.

    Raises:
        LoadError: the table does not exist (nothing to map).
    """
    backend.open_dataset(dataset, create=False)  # type: ignore[attr-defined]  # SQLite: attach its file
    columns = backend.table_columns(dataset, table)
    if not columns:
        raise LoadError(f"No table {dataset}.{table} to build a FOCUS view over.")
    select = cur_focus_select(columns, backend.table_expression(dataset, table), backend.dialect)
    return view_name(table), backend.render(select)
