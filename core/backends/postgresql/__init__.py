"""PostgreSQL. ``PostgreSQLBackend`` is imported on first use (:mod:`core.backends.lazy`)."""

from core.backends.lazy import lazy_exports
from core.backends.postgresql.config import PostgreSQLConfig

__all__ = ["PostgreSQLBackend", "PostgreSQLConfig"]
__getattr__ = lazy_exports("core.backends.postgresql.backend", "PostgreSQLBackend")
