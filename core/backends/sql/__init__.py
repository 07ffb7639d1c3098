"""Any SQLAlchemy database through dlt. ``GenericSQLBackend`` is imported on first use (:mod:`core.backends.lazy`)."""

from core.backends.lazy import lazy_exports
from core.backends.sql.config import GenericSQLConfig

__all__ = ["GenericSQLBackend", "GenericSQLConfig"]
__getattr__ = lazy_exports("core.backends.sql.backend", "GenericSQLBackend")
