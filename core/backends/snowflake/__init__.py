"""Snowflake. ``SnowflakeBackend`` is imported on first use (:mod:`core.backends.lazy`)."""

from core.backends.lazy import lazy_exports
from core.backends.snowflake.config import SnowflakeConfig

__all__ = ["SnowflakeBackend", "SnowflakeConfig"]
__getattr__ = lazy_exports("core.backends.snowflake.backend", "SnowflakeBackend")
