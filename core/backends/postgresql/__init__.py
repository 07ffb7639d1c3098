"""PostgreSQL. ``PostgreSQLBackend`` is imported on first use, so that reading the settings model
(:mod:`core.backends.postgresql.config`) loads no engine code."""

from __future__ import annotations

from typing import Any

from core.backends.postgresql.config import PostgreSQLConfig

__all__ = ["PostgreSQLBackend", "PostgreSQLConfig"]


def __getattr__(name: str) -> Any:
    if name == "PostgreSQLBackend":
        from core.backends.postgresql.backend import PostgreSQLBackend

        return PostgreSQLBackend
    raise AttributeError(name)
