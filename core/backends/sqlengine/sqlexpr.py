"""Expressions whose SQL differs by engine beyond what sqlglot's dialects translate, as data: reading one key of a
JSON column as text, building a JSON object, and a typed NULL or CAST in the type an engine stores a kind as.

Vendor code builds its queries from sqlglot expressions and asks here for these few pieces; each entry says which
engine quirk it answers. Keys of JSON lookups are restricted to plain names (letters, digits, ``_``), so a JSON
path never needs quoting in any engine's path syntax.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from core.backends.sqlengine import types

if TYPE_CHECKING:  # pragma: no cover
    from sqlglot import exp

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _json_path(key: str) -> str:
    if not _PLAIN_KEY.match(key):
        raise ValueError(f"a JSON key for a lookup must be a plain name, not {key!r}")
    return f"$.{key}"


def _func(name: str, *args: exp.Expression) -> exp.Expression:
    from sqlglot import exp

    return exp.Anonymous(this=name, expressions=list(args))


def _lit(text: str) -> exp.Expression:
    from sqlglot import exp

    return exp.Literal.string(text)


def _text(expression: exp.Expression, dialect: str) -> exp.Expression:
    from sqlglot import exp

    return exp.Cast(this=expression, to=exp.DataType.build(types.engine_type("string", dialect), dialect=dialect))


#: one key of a JSON column as text, per dialect (the default: ``json_extract_string``, DuckDB's)
_JSON_TEXT: dict[str, Callable[[exp.Expression, str], exp.Expression]] = {
    # PostgreSQL: the column is jsonb (sqlglot's JSON_EXTRACT_PATH_TEXT is for json)
    "postgres": lambda col, key: _arrow(col, key),
    # MySQL and MariaDB: MariaDB has no ->> operator; JSON_UNQUOTE(JSON_EXTRACT(…)) works on both
    "mysql": lambda col, key: _func("JSON_UNQUOTE", _func("JSON_EXTRACT", col, _lit(_json_path(key)))),
    # SQLite: JSON_EXTRACT returns a string member as plain text
    "sqlite": lambda col, key: _func("JSON_EXTRACT", col, _lit(_json_path(key))),
    # Snowflake: GET_PATH (what ``col:key`` means) cast to text is the member's value without JSON quotes
    "snowflake": lambda col, key: _text(_func("GET_PATH", col, _lit(key)), "snowflake"),
    # BigQuery: JSON_VALUE reads a scalar of a JSON value as STRING
    "bigquery": lambda col, key: _func("JSON_VALUE", col, _lit(_json_path(key))),
}


def _arrow(col: exp.Expression, key: str) -> exp.Expression:
    _json_path(key)
    return _func("JSONB_EXTRACT_PATH_TEXT", col, _lit(key))


def json_text(column: exp.Expression, key: str, dialect: str) -> exp.Expression:
    """``column``'s member ``key`` as text (NULL when absent), ``column`` being of the engine's JSON type."""
    build = _JSON_TEXT.get(dialect, lambda col, k: _func("JSON_EXTRACT_STRING", col, _lit(_json_path(k))))
    return build(column, key)


#: a JSON object of (key, value) pairs whose NULL values are left out, per dialect
_JSON_OBJECT: dict[str, Callable[[list[exp.Expression]], exp.Expression]] = {
    # PostgreSQL: jsonb_build_object keeps NULLs; jsonb_strip_nulls drops them
    "postgres": lambda args: _func("JSONB_STRIP_NULLS", _func("JSONB_BUILD_OBJECT", *args)),
    # Snowflake: OBJECT_CONSTRUCT leaves NULL values out by itself
    "snowflake": lambda args: _func("OBJECT_CONSTRUCT", *args),
    # MySQL/MariaDB, SQLite, DuckDB: a merge patch (RFC 7396) onto {} removes the members whose value is null
    "mysql": lambda args: _func("JSON_MERGE_PATCH", _lit("{}"), _func("JSON_OBJECT", *args)),
    "sqlite": lambda args: _func("JSON_PATCH", _lit("{}"), _func("JSON_OBJECT", *args)),
    "duckdb": lambda args: _func("JSON_MERGE_PATCH", _lit("{}"), _func("JSON_OBJECT", *args)),
    # BigQuery: JSON_STRIP_NULLS over JSON_OBJECT
    "bigquery": lambda args: _func("JSON_STRIP_NULLS", _func("JSON_OBJECT", *args)),
}


def json_object(pairs: Sequence[tuple[str, exp.Expression]], dialect: str) -> exp.Expression | None:
    """A JSON object of ``pairs`` (key, text value), members whose value is NULL left out; None where this module
    knows no way to build one in ``dialect``."""
    build = _JSON_OBJECT.get(dialect)
    if build is None:
        return None
    args: list[exp.Expression] = []
    for key, value in pairs:
        args += [_lit(key), value]
    return build(args)


def data_type(kind: str, dialect: str) -> exp.DataType:
    """The type a column of logical ``kind`` has in this engine (as :mod:`types` creates it), for a CAST. Where
    the engine's CAST accepts fewer type names than its DDL (MySQL/MariaDB: no TEXT, DATETIME(6) yes), sqlglot's
    dialect renders the CAST's own spelling."""
    from sqlglot import exp

    return exp.DataType.build(_CAST_TYPES.get(dialect, {}).get(kind) or types.engine_type(kind, dialect),
                              dialect=dialect)


#: where a CAST needs another type name than the column's DDL
_CAST_TYPES: dict[str, dict[str, str]] = {
    # MariaDB cannot CAST to JSON (JSON is LONGTEXT there): text it is
    "mysql": {"json": "CHAR"},
    # SQLite: CAST to a name without a known affinity is NUMERIC, which turns '2024-01-01 …' into 2024; a
    # timestamp stays ISO text
    "sqlite": {"timestamp": "TEXT", "json": "TEXT"},
}


def typed(expression: exp.Expression, kind: str, dialect: str) -> exp.Expression:
    """``CAST(expression AS <the engine's type of kind>)``."""
    from sqlglot import exp

    return exp.Cast(this=expression, to=data_type(kind, dialect))


def typed_null(kind: str, dialect: str) -> exp.Expression:
    from sqlglot import exp

    return typed(exp.null(), kind, dialect)
