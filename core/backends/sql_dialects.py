"""Engine differences of the generic SQL backend, as data: type names, DDL behaviour, value conversions."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

#: SQLAlchemy backend name → sqlglot dialect (identifier quoting)
SQLGLOT_DIALECTS = {
    "sqlite": "sqlite", "mysql": "mysql", "mariadb": "mysql", "postgresql": "postgres", "mssql": "tsql",
    "oracle": "oracle", "duckdb": "duckdb", "snowflake": "snowflake", "bigquery": "bigquery",
    "redshift": "redshift", "trino": "trino", "databricks": "databricks", "clickhouse": "clickhouse",
}
ANSI_TYPES = {
    "string": "TEXT", "double": "DOUBLE PRECISION", "bigint": "BIGINT", "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP", "date": "DATE", "json": "TEXT",
}
TYPE_MAPS: dict[str, dict[str, str]] = {
    # SQLite: REAL is an 8-byte IEEE double (full precision); no JSON type, so JSON is TEXT
    "sqlite": {**ANSI_TYPES, "double": "REAL", "bigint": "INTEGER"},
    "mysql": {**ANSI_TYPES, "double": "DOUBLE", "timestamp": "DATETIME(6)", "json": "JSON"},
    "postgres": {**ANSI_TYPES, "timestamp": "TIMESTAMPTZ", "json": "JSONB"},
    "duckdb": {**ANSI_TYPES, "timestamp": "TIMESTAMPTZ", "json": "JSON"},
    "tsql": {**ANSI_TYPES, "string": "NVARCHAR(MAX)", "double": "FLOAT", "boolean": "BIT",
             "timestamp": "DATETIMEOFFSET", "json": "NVARCHAR(MAX)"},
}
#: engines whose JSON column refuses text in INSERT … SELECT without an explicit CAST
JSON_TEXT_NEEDS_CAST = {"postgres"}
#: engines whose DDL commits the open transaction implicitly
IMPLICIT_COMMIT_DDL = {"mysql", "oracle"}
#: engines that understand CREATE SCHEMA IF NOT EXISTS (SQLite attaches a file instead)
CREATE_SCHEMA = {"postgres", "mysql", "duckdb", "snowflake", "databricks", "redshift"}
TIMESTAMP_COLUMNS = {"started_at", "finished_at"}


def url_dialect(url: str | None) -> str:
    """The sqlglot dialect of a SQLAlchemy URL (``mysql+pymysql://…`` → ``mysql``), without importing SQLAlchemy."""
    backend = (url or "sqlite://").split("://", 1)[0].split("+", 1)[0].lower()
    return SQLGLOT_DIALECTS.get(backend, backend)


def bind_value(value: Any, dialect: str) -> Any:
    """A state value as the engine stores it: timestamps in UTC, naive where the column type has no zone
    (ISO text on SQLite, which has no timestamp type)."""
    if not isinstance(value, datetime) or dialect in ("postgres", "duckdb"):
        return value
    naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return naive.isoformat(sep=" ", timespec="microseconds") if dialect == "sqlite" else naive


def parse_stamp(value: Any) -> Any:
    """A timestamp SQLite returned as ISO text, back as an aware (UTC) datetime."""
    if isinstance(value, str):
        with suppress(ValueError):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value
