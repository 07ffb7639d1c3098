"""Identifier handling shared by every SQL engine: quoting through sqlglot, table names from export names."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache


@lru_cache(maxsize=4096)
def quote_identifier(name: str, dialect: str) -> str:
    """``name`` quoted for ``dialect`` (sqlglot knows each engine's quote character and escaping)."""
    from sqlglot import exp

    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


def fit_identifier(name: str, max_length: int) -> str:
    """``name`` shortened deterministically (prefix + digest) when an engine would truncate it silently."""
    if len(name.encode()) <= max_length:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name.encode()[: max_length - 9].decode(errors='ignore')}_{digest}"


def table_name_for_export(export_name: str, max_length: int = 63) -> str:
    """The contract's table name: the export name in snake_case (``cur2-daily`` → ``cur2_daily``)."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", export_name).strip("_").lower() or "export"
    if len(name) > max_length:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: max_length - 9]}_{digest}"
    return name
