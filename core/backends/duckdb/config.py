"""``[database.duckdb]`` settings, apart from the engine so that ``core.config`` imports no backend code."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.backends.base import BackendConfig


class DuckDBConfig(BackendConfig):
    """``[database.duckdb]``"""

    database_path: Path = Field(Path("./data/finops.duckdb"), description="The DuckDB file (created if missing).")
    memory_limit: str | None = Field(None, description="DuckDB memory_limit, e.g. '2GB' (default: DuckDB's).")
    threads: int | None = Field(None, ge=1, description="DuckDB worker threads (default: one per core).")

    def describe(self) -> str:
        return str(self.database_path)
