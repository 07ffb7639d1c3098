"""Logical column kinds ↔ engine types, once for every engine, through sqlglot's ``DataType`` per dialect.

A logical kind (``string``, ``double``, ``bigint``, ``boolean``, ``timestamp``, ``date``, ``json``) is rendered
by sqlglot in the engine's dialect; :data:`OVERRIDES` lists the few places where we store something else than
sqlglot's rendering, each with its reason. The reverse (an engine type as a catalogue prints it → a kind) parses
the type with sqlglot too, so ``double precision``, ``FLOAT64``, ``REAL`` and ``DOUBLE`` are one kind.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.base import ColumnKind

KINDS: tuple[ColumnKind, ...] = ("string", "double", "bigint", "boolean", "timestamp", "date", "json")

#: sqlglot type of each logical kind (by name: sqlglot is imported only when a type is rendered)
_SQLGLOT_TYPE = {
    "string": "TEXT", "double": "DOUBLE", "bigint": "BIGINT", "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ", "date": "DATE", "json": "JSON",
}

#: where an engine stores a kind differently from sqlglot's rendering, and why
OVERRIDES: dict[str, dict[str, str]] = {
    # DuckDB: TEXT is an alias; VARCHAR is what its catalogue prints, so created and reported types agree
    "duckdb": {"string": "VARCHAR"},
    # PostgreSQL: jsonb is indexable and compares by value; json keeps the text verbatim
    "postgres": {"json": "JSONB"},
    # MySQL/MariaDB: TIMESTAMP ends in 2038 and converts with the session zone; DATETIME(6) keeps UTC microseconds
    "mysql": {"timestamp": "DATETIME(6)"},
    # SQLite: no JSON, timestamp or boolean types; the declared names keep the intent (JSON functions read TEXT)
    "sqlite": {"json": "TEXT", "timestamp": "TIMESTAMP", "boolean": "BOOLEAN"},
    # SQL Server: Unicode text; JSON is stored as text
    "tsql": {"string": "NVARCHAR(MAX)", "json": "NVARCHAR(MAX)"},
    # Oracle: no 8-byte DOUBLE keyword in DDL older than 21c; CLOB holds any JSON
    "oracle": {"double": "BINARY_DOUBLE", "json": "CLOB"},
}


@lru_cache(maxsize=64)
def type_map(dialect: str) -> dict[str, str]:
    """Kind → the engine's type name for ``dialect`` (a sqlglot dialect name)."""
    from sqlglot import exp

    rendered = {kind: exp.DataType.build(name).sql(dialect=dialect) for kind, name in _SQLGLOT_TYPE.items()}
    return {**rendered, **OVERRIDES.get(dialect, {})}


def engine_type(kind: str, dialect: str) -> str:
    return type_map(dialect)[kind]


@lru_cache(maxsize=1024)
def kind_of(type_name: str, dialect: str | None = None) -> str:
    """The logical kind of an engine type as its catalogue prints it; ``map`` for nested types (maps, structs,
    lists), ``string`` for anything unknown. Used to read source files (DuckDB's DESCRIBE), to copy tables
    between backends, and to compare a table with the columns a load brings."""
    from sqlglot import exp
    from sqlglot.errors import ParseError

    T = exp.DataType.Type
    try:
        parsed = exp.DataType.build(type_name, dialect=dialect, udt=True).this
    except (ParseError, ValueError):
        return "string"
    if parsed in {T.JSON, T.JSONB, T.VARIANT, T.OBJECT}:
        return "json"
    if parsed in {T.MAP, T.STRUCT, T.ARRAY, T.LIST}:
        return "map"
    if parsed in exp.DataType.REAL_TYPES:
        return "double"
    if parsed in exp.DataType.INTEGER_TYPES:
        # MySQL spells BOOLEAN as TINYINT(1)
        return "boolean" if type_name.replace(" ", "").lower() == "tinyint(1)" else "bigint"
    if parsed == T.BOOLEAN:
        return "boolean"
    if parsed in {T.DATE, T.DATE32}:
        return "date"
    if parsed in {T.TIME, T.TIMETZ}:
        return "string"  # a time of day is no instant
    if parsed in exp.DataType.TEMPORAL_TYPES:
        return "timestamp"
    return "string"
