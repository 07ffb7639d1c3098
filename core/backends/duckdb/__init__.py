"""DuckDB, the embedded default. ``DuckDBBackend`` is imported on first use (:mod:`core.backends.lazy`)."""

from core.backends.duckdb.config import DuckDBConfig
from core.backends.lazy import lazy_exports

__all__ = ["DuckDBBackend", "DuckDBConfig"]
__getattr__ = lazy_exports("core.backends.duckdb.backend", "DuckDBBackend")
