"""Views, the same way on every SQL engine: render a sqlglot query for the engine, replace a list of views in
order, drop one, list them. What differs is data: ``capabilities.view_replace`` (how a view is replaced) and
``capabilities.ddl`` (whether the replacement can be one transaction).

Mixed into :class:`core.backends.sqlengine.SqlBackend`; an engine overrides :meth:`ViewsMixin.view_names` where
its catalogue is not ``information_schema.views``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sqlglot import exp

log = logging.getLogger(__name__)


class ViewsMixin:
    """``render``, ``table_expression``, ``replace_views``, ``drop_view`` and ``view_names`` of a SQL engine."""

    # provided by SqlBackend
    dialect: str
    capabilities: Any
    execute: Any
    transaction: Any
    qualified: Any
    quote: Any
    open_dataset: Any
    ensure_schema: Any

    def render(self, expression: exp.Expression) -> str:
        """``expression`` as this engine's SQL, every identifier quoted (names keep their case)."""
        quoted = expression.copy()
        from sqlglot import exp as e

        for identifier in quoted.find_all(e.Identifier):
            identifier.set("quoted", True)
        return quoted.sql(dialect=self.dialect)

    def table_expression(self, dataset: str, table: str) -> exp.Table:
        """``dataset.table`` as a sqlglot table, named as :meth:`qualified` names it (BigQuery: with its project)."""
        from sqlglot import exp

        return exp.to_table(self.qualified(dataset, table), dialect=self.dialect)

    def replace_views(self, dataset: str, views: Sequence[tuple[str, str]]) -> None:
        """Create each (name, SELECT in this engine's SQL) of ``views`` in ``dataset``, in order, replacing a view of
        that name. In one transaction where the engine's DDL is transactional (readers see the old views or the new
        ones); elsewhere one statement per view, each replacing its view in place.

        Where the engine cannot replace a view whose columns change (``view_replace = "drop_cascade"``:
        PostgreSQL), the old view is dropped first with its dependants: list those after it in ``views``.

        Raises:
            LoadError: the engine refused a view (its SELECT names a missing column, …); where DDL is
                transactional, none of ``views`` changed.
        """
        if not views:
            return
        self.ensure_schema(dataset)
        mode = self.capabilities.view_replace
        context = self.transaction() if self.capabilities.transactional_ddl else nullcontext()
        with context:
            for name, select in views:
                target = self.qualified(dataset, name)
                if mode == "or_replace":
                    self.execute(f"CREATE OR REPLACE VIEW {target} AS {select}", what=f"creating the view {name}")
                else:
                    self._drop(dataset, name, cascade=mode == "drop_cascade")
                    self.execute(f"CREATE VIEW {target} AS {select}", what=f"creating the view {name}")
                log.info("%s.%s: view created", dataset, name)

    def drop_view(self, dataset: str, name: str) -> None:
        """Drop the view ``name`` of ``dataset`` if it exists (with its dependants where the engine needs that)."""
        if not self.open_dataset(dataset, create=False):
            return
        self._drop(dataset, name, cascade=self.capabilities.view_replace == "drop_cascade")

    def _drop(self, dataset: str, name: str, *, cascade: bool) -> None:
        suffix = " CASCADE" if cascade else ""
        self.execute(f"DROP VIEW IF EXISTS {self.qualified(dataset, name)}{suffix}", what=f"dropping the view {name}")

    def view_names(self, dataset: str) -> list[str]:
        """The views of ``dataset``, sorted; empty when it does not exist."""
        if not self.open_dataset(dataset, create=False):
            return []
        rows = self.execute("SELECT table_name FROM information_schema.views WHERE table_schema = ? "
                            "ORDER BY table_name", [dataset], what=f"listing the views of {dataset}").rows
        return [name for (name,) in rows]
