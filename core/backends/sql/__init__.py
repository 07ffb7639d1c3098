"""Any SQLAlchemy database through dlt. ``GenericSQLBackend`` is imported on first use, so that reading the
settings model (:mod:`core.backends.sql.config`) loads no engine code."""

from __future__ import annotations

from typing import Any

from core.backends.sql.config import GenericSQLConfig

__all__ = ["GenericSQLBackend", "GenericSQLConfig"]


def __getattr__(name: str) -> Any:
    if name == "GenericSQLBackend":
        from core.backends.sql.backend import GenericSQLBackend

        return GenericSQLBackend
    raise AttributeError(name)
