"""DuckDB, the embedded default. ``DuckDBBackend`` is imported on first use, so that reading the settings model
(:mod:`core.backends.duckdb.config`) loads no engine code."""

from __future__ import annotations

from typing import Any

from core.backends.duckdb.config import DuckDBConfig

__all__ = ["DuckDBBackend", "DuckDBConfig"]


def __getattr__(name: str) -> Any:
    if name == "DuckDBBackend":
        from core.backends.duckdb.backend import DuckDBBackend

        return DuckDBBackend
    raise AttributeError(name)
