"""Engine differences of the generic SQL backend, as data: dialects, capabilities, value conversions.

Type names come from :mod:`core.backends.sqlengine.types` like every other engine's."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from core.backends.base import Capabilities

#: SQLAlchemy backend name → sqlglot dialect (identifier quoting)
SQLGLOT_DIALECTS = {
    "sqlite": "sqlite", "mysql": "mysql", "mariadb": "mysql", "postgresql": "postgres", "mssql": "tsql",
    "oracle": "oracle", "duckdb": "duckdb", "snowflake": "snowflake", "bigquery": "bigquery",
    "redshift": "redshift", "trino": "trino", "databricks": "databricks", "clickhouse": "clickhouse",
}
#: what each engine reached through SQLAlchemy can do; others get :data:`DEFAULT_CAPABILITIES`
CAPABILITIES: dict[str, Capabilities] = {
    # a dataset is an attached database file, as dlt lays it out; no CREATE OR REPLACE VIEW
    "sqlite": Capabilities(schemas=False, view_replace="drop"),
    # CREATE OR REPLACE VIEW cannot change a view's columns; a dependent view blocks a DROP without CASCADE
    "postgres": Capabilities(json_text_needs_cast=True, view_replace="drop_cascade"),
    "mysql": Capabilities(ddl="implicit_commit"),  # MySQL and MariaDB commit the open transaction on DDL
    "oracle": Capabilities(ddl="implicit_commit"),
}
DEFAULT_CAPABILITIES = Capabilities()
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
