"""Shared SQL behaviour of every engine: the :class:`SqlBackend` base, types, names, state, load strategies."""

from core.backends.sqlengine.backend import Result, SqlBackend
from core.backends.sqlengine.strategy import LoadStrategy

__all__ = ["LoadStrategy", "Result", "SqlBackend"]
