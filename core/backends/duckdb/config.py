"""``[database.duckdb]`` settings, apart from the engine so that ``core.config`` imports no backend code."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from core.backends.base import BackendConfig


_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*([KMGT]i?B)\s*$", re.IGNORECASE)


class DuckDBConfig(BackendConfig):
    """``[database.duckdb]``"""

    database_path: Path = Field(Path("./data/finops.duckdb"), description="The DuckDB file (created if missing).")
    memory_limit: str | None = Field(
        None, description="DuckDB memory_limit, e.g. '2GB' (default: half the machine's memory, at most 2 GB)."
    )
    threads: int | None = Field(None, ge=1, description="DuckDB worker threads (default: one per core).")

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(value):
            raise ValueError("a size such as 2GB, 1.5GB or 512MiB (units: KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
        return value

    def describe(self) -> str:
        return str(self.database_path)
