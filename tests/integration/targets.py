"""Backends under test, seen from the outside: how to point ``finops`` at one, and how to read it back.

The conformance suite (test_multi_backend.py) runs the same scenarios against every target here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Target:
    """One database the suite imports into."""

    name: str

    def env(self) -> dict[str, str]:
        """Environment that selects and configures this backend for a ``finops`` process."""
        raise NotImplementedError

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query (portable SQL; tables through :meth:`table`)."""
        raise NotImplementedError

    def table(self, name: str, dataset: str = "aws_billing") -> str:
        return f"{dataset}.{name}"

    def column_types(self, name: str, dataset: str = "aws_billing") -> dict[str, str]:
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            (dataset, name),
        )
        return {column: str(kind).lower() for column, kind in rows}

    def period_totals(self, table: str) -> dict[str, tuple[int, float]]:
        rows = self.query(
            f"SELECT billing_period, COUNT(*), SUM(line_item_unblended_cost) FROM {self.table(table)} "
            "GROUP BY billing_period ORDER BY billing_period"
        )
        return {period: (int(count), float(cost or 0)) for period, count, cost in rows}


class DuckDBTarget(Target):
    name = "duckdb"

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "db" / "finops.duckdb"

    def env(self) -> dict[str, str]:
        return {"OPEN_FINOPS_DATABASE_BACKEND": "duckdb", "OPEN_FINOPS_DATABASE_DUCKDB_DATABASE_PATH": str(self.path)}

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import duckdb

        conn = duckdb.connect(str(self.path), read_only=True)
        try:
            return conn.execute(sql, list(params)).fetchall()
        finally:
            conn.close()
