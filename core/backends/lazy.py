"""Engine packages export their backend class without importing it: ``import core.backends.duckdb`` (the
settings model, for ``core.config``) loads no engine code; ``from core.backends.duckdb import DuckDBBackend`` does."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(module: str, *names: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names`` from ``module`` on first use."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(module), name)
        raise AttributeError(name)

    return __getattr__
