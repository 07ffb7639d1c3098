"""Expressions whose SQL differs by engine beyond what sqlglot's dialects translate, as data: reading one key of a
JSON column as text, building a JSON object, and a typed NULL or CAST in the type an engine stores a kind as.

Vendor code builds its queries from sqlglot expressions and asks here for these few pieces; each entry says which
engine quirk it answers. Keys of JSON lookups are restricted to plain names (letters, digits, ``_``), so a JSON
path never needs quoting in any engine's path syntax.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


def _merged(function: str) -> Callable[[list[exp.Expression]], exp.Expression]:
    """``function('{}', part1)`` then ``function(that, part2)`` …: a JSON merge patch (RFC 7396) of every part onto
    ``{}``, which also removes the members whose value is null (MySQL/MariaDB, SQLite, DuckDB)."""

    def combine(parts: list[exp.Expression]) -> exp.Expression:
        merged = _lit("{}")
        for part in parts:
            merged = _func(function, merged, part)
        return merged

    return combine


def _jsonb_concat(parts: list[exp.Expression]) -> exp.Expression:
    from sqlglot import exp

    joined = parts[0]
    for part in parts[1:]:
        joined = exp.DPipe(this=joined, expression=part)
    return _func("JSONB_STRIP_NULLS", joined)


@dataclass(frozen=True)
class _ObjectRecipe:
    #: the function building one object of (key, value) arguments
    build: str
    #: how the objects of consecutive chunks become one, NULL members left out
    combine: Callable[[list[exp.Expression]], exp.Expression]
    #: pairs per call: PostgreSQL takes at most 100 arguments per function call, SQLite 127
    chunk: int | None = 40


#: a JSON object of (key, value) pairs whose NULL values are left out, per dialect
_JSON_OBJECT: dict[str, _ObjectRecipe] = {
    # PostgreSQL: jsonb_build_object keeps NULLs; the chunks concatenated (||), then jsonb_strip_nulls
    "postgres": _ObjectRecipe("JSONB_BUILD_OBJECT", _jsonb_concat),
    # MySQL/MariaDB, SQLite, DuckDB: merge patches onto {} (which drop null members)
    "mysql": _ObjectRecipe("JSON_OBJECT", _merged("JSON_MERGE_PATCH")),
    "sqlite": _ObjectRecipe("JSON_OBJECT", _merged("JSON_PATCH")),
    "duckdb": _ObjectRecipe("JSON_OBJECT", _merged("JSON_MERGE_PATCH")),
    # Snowflake: OBJECT_CONSTRUCT leaves NULL values out by itself, and has no small argument limit
    "snowflake": _ObjectRecipe("OBJECT_CONSTRUCT", lambda parts: parts[0], chunk=None),
    # BigQuery: JSON_STRIP_NULLS over one JSON_OBJECT
    "bigquery": _ObjectRecipe("JSON_OBJECT", lambda parts: _func("JSON_STRIP_NULLS", parts[0]), chunk=None),
}


def json_object(pairs: Sequence[tuple[str, exp.Expression]], dialect: str) -> exp.Expression | None:
    """A JSON object of ``pairs`` (key, text value), members whose value is NULL left out; None where this module
    knows no way to build one in ``dialect``. Built in chunks where the engine limits a call's arguments."""
    recipe = _JSON_OBJECT.get(dialect)
    if recipe is None or not pairs:
        return None
    size = recipe.chunk or len(pairs)
    parts = []
    for start in range(0, len(pairs), size):
        args: list[exp.Expression] = []
        for key, value in pairs[start:start + size]:
            args += [_lit(key), value]
        parts.append(_func(recipe.build, *args))
    return recipe.combine(parts)


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
