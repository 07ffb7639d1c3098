"""``create_backend(config.database)`` over a lazy registry.

The registry is a plain dict of import paths: nothing here imports a driver, so ``finops backends list`` and
``--help`` work with no optional extra installed. A backend appears here only when it is finished.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.base import DatabaseBackend
    from core.config import DatabaseSettings


@dataclass(frozen=True)
class BackendSpec:
    name: str
    #: "module:Class"
    target: str
    #: pip extra that installs the driver, None when always installed
    extra: str | None
    #: top-level modules the backend needs at run time
    modules: tuple[str, ...]
    description: str

    def missing_modules(self) -> list[str]:
        return [m for m in self.modules if not _installed(m)]


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported; a dotted name whose parent package is missing is simply not installed
    (``find_spec`` raises instead of returning None there)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


REGISTRY: dict[str, BackendSpec] = {
    "duckdb": BackendSpec(
        "duckdb", "core.backends.duckdb.backend:DuckDBBackend", None, ("duckdb",), "Embedded DuckDB file (the default)"
    ),
    "postgresql": BackendSpec(
        "postgresql", "core.backends.postgresql.backend:PostgreSQLBackend", "postgresql", ("psycopg2", "dlt"),
        "PostgreSQL server (Arrow batches streamed into COPY)",
    ),
    "sql": BackendSpec(
        "sql", "core.backends.sql.backend:GenericSQLBackend", "sql", ("sqlalchemy", "dlt"),
        "Any SQLAlchemy database through dlt (SQLite, MySQL, …)",
    ),
    "snowflake": BackendSpec(
        "snowflake", "core.backends.snowflake.backend:SnowflakeBackend", "snowflake", ("snowflake.connector", "dlt"),
        "Snowflake (COPY INTO from S3 by Snowflake itself, one transaction per period)",
    ),
    "bigquery": BackendSpec(
        "bigquery", "core.backends.bigquery.backend:BigQueryBackend", "bigquery", ("google.cloud.bigquery", "dlt"),
        "Google BigQuery (load jobs or LOAD DATA from S3 into staging, one transaction per period)",
    ),
}

ALIASES: dict[str, str] = {
    "duck": "duckdb",
    "ddb": "duckdb",
    "postgres": "postgresql",
    "pg": "postgresql",
    "sqlalchemy": "sql",
    "bq": "bigquery",
}


def canonical_name(name: str) -> str:
    """The registry name for ``name`` or an alias of it.

    Raises:
        ConfigError: unknown backend; the message lists the known ones.
    """
    key = (name or "").strip().lower()
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        aliases = ", ".join(f"{a} → {t}" for a, t in sorted(ALIASES.items()))
        raise ConfigError(f"Unknown backend {name!r}. Known backends: {known} (aliases: {aliases}).")
    return key


def backend_class(name: str) -> type[DatabaseBackend]:
    spec = REGISTRY[canonical_name(name)]
    missing = spec.missing_modules()
    if missing:
        raise MissingExtraError(spec.name, spec.extra or spec.name, missing[0])
    module_name, _, class_name = spec.target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_backend(database: DatabaseSettings, *, name: str | None = None) -> DatabaseBackend:
    """The configured backend (``database.backend``, or ``name``), not yet connected.

    Raises:
        ConfigError: unknown backend (exit 2).
        MissingExtraError: its driver is not installed; the message has the exact pip line (exit 2).
    """
    key = canonical_name(name or database.backend)
    cls = backend_class(key)
    settings: Any = database.backend_settings(key)
    if settings is None:
        settings = cls.config_model()
    return cls(settings, data_dir=database.data_dir)


def available() -> list[dict[str, Any]]:
    """Every registered backend with whether its driver is installed (``finops backends list``)."""
    rows = []
    for spec in REGISTRY.values():
        missing = spec.missing_modules()
        rows.append(
            {
                "name": spec.name,
                "aliases": sorted(a for a, t in ALIASES.items() if t == spec.name),
                "description": spec.description,
                "installed": not missing,
                "missing": missing,
                "install": None if not missing else f"pip install 'open-finops[{spec.extra or spec.name}]'",
            }
        )
    return rows
