"""Configuration: ``config.toml`` + environment + command-line flags, resolved once.

Precedence (highest first): command-line flag, environment variable, ``config.toml``, built-in default. It is
implemented once, as pydantic-settings sources (:meth:`Config.settings_customise_sources`, sources in
:mod:`core.config_sources`). Each source records where every value it produced came from, and those records —
of the one load — are what ``finops config show`` and the error messages report.

Environment names follow the contract: ``OPEN_FINOPS_<SECTION>_<KEY>`` for ``[project]``/``[aws]``,
``OPEN_FINOPS_DATABASE_BACKEND``, and ``OPEN_FINOPS_DATABASE_<BACKEND>_<KEY>`` for backend keys. Secrets that
must never live in a file (``POSTGRESQL_PASSWORD``…) are fields marked ``env_only``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.backends.base import dataset_name
from core.backends.bigquery.config import BigQueryConfig
from core.backends.duckdb.config import DuckDBConfig
from core.backends.postgresql.config import PostgreSQLConfig
from core.backends.snowflake.config import SnowflakeConfig
from core.backends.sql.config import GenericSQLConfig
from core.config_sources import (
    CURRENT_LOAD,
    ENV_PREFIX,
    ContractEnvSource,
    FinOpsTomlSource,
    FlagSource,
    LoadContext,
    env_names,
    first_value,
    recorded_origins,
    walk_fields,
)
from core.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["ENV_PREFIX", "AwsSettings", "Config", "DatabaseSettings", "FocusSettings", "ProjectSettings", "SettingValue",
           "check_backend_pairs", "env_names", "normalise_period"]

DEFAULT_CONFIG_PATH = Path("config.toml")
_PERIOD = re.compile(r"^(\d{4})-(\d{2})(?:-\d{2})?$")


def normalise_period(value: str | None) -> str | None:
    """``YYYY-MM`` (a ``YYYY-MM-DD`` from an older config is cut to its month)."""
    if value in (None, ""):
        return None
    match = _PERIOD.match(str(value).strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"{value!r} is not a billing period; use YYYY-MM, e.g. 2024-01")
    return f"{match.group(1)}-{match.group(2)}"


class ProjectSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = "open-finops"
    data_dir: Path = Field(Path("./data"), description="Working folder: DuckDB file, dlt working folders, locks.")
    lock_timeout: float = Field(
        900.0, ge=0, description="Seconds an import waits for another import of the same export before giving up."
    )


class QualitySettings(BaseModel):
    """``[quality]``: what the data-quality findings of an import do (docs/TRUSTING_THE_NUMBERS.md)."""

    model_config = ConfigDict(extra="ignore")

    strict: bool = Field(
        False, description="A period with data-quality findings fails (the previous version stays) instead of "
                           "loading with warnings.",
    )


class DatabaseSettings(BaseModel):
    """``[database]``: which backend, and one sub-table of settings per backend."""

    model_config = ConfigDict(extra="ignore")

    backend: str = Field("duckdb", description="duckdb, postgresql, sql, … (`finops backends list`).")
    duckdb: DuckDBConfig = Field(default_factory=DuckDBConfig)
    postgresql: PostgreSQLConfig = Field(default_factory=PostgreSQLConfig)
    sql: GenericSQLConfig = Field(default_factory=GenericSQLConfig)
    snowflake: SnowflakeConfig = Field(default_factory=SnowflakeConfig)
    bigquery: BigQueryConfig = Field(default_factory=BigQueryConfig)

    # Filled in by Config (the data directory is a [project] setting every backend needs).
    data_dir: Path = Field(Path("./data"), exclude=True, json_schema_extra={"internal": True})

    def backend_settings(self, name: str) -> Any:
        return getattr(self, name, None)


class AwsSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    dataset_name: str = Field("aws_billing", description="Schema / dataset holding the export tables and state.")

    _dataset_name = field_validator("dataset_name")(lambda cls, value: dataset_name(value))
    bucket: str | None = None
    prefix: str = ""
    export_name: str | None = Field(None, description="Only this export (default: every export under prefix).")
    cur_version: Literal["v1", "v2"] | None = Field(None, description="v1, v2, or unset to detect per export.")
    export_format: Literal["csv", "parquet"] | None = Field(
        None, description="Hint only: the real format of each file (extension and magic bytes) wins."
    )
    start_date: str | None = None
    end_date: str | None = None
    reset: bool = False
    source_dir: Path | None = Field(None, description="Read a local folder laid out like the bucket instead of S3.")
    region: str | None = None
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (also AWS_ENDPOINT_URL_S3).")
    profile: str | None = None
    access_key_id: str | None = Field(None, json_schema_extra={"secret": True})
    secret_access_key: SecretStr | None = None

    @field_validator("cur_version", mode="before")
    @classmethod
    def _cur_version(cls, value: Any) -> Any:
        if value is None:
            return None
        text = str(value).strip().lower()
        aliases = {"1": "v1", "cur1": "v1", "legacy": "v1", "2": "v2", "2.0": "v2", "cur2": "v2", "auto": None, "": None}
        return aliases.get(text, text)

    @field_validator("export_format", mode="before")
    @classmethod
    def _export_format(cls, value: Any) -> Any:
        return None if value in (None, "", "auto") else str(value).strip().lower()

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _period(cls, value: Any) -> Any:
        return normalise_period(value)

    @field_validator("prefix", mode="before")
    @classmethod
    def _prefix(cls, value: Any) -> Any:
        return "" if value is None else str(value).strip("/")


class FocusSettings(BaseModel):
    """``[focus]``: which exports make up the FOCUS relation ``focus`` (``finops aws focus``, refreshed on import)."""

    model_config = ConfigDict(extra="ignore")

    exports: list[str] | None = Field(
        None, description="Export names (or tables) in the FOCUS union; unset or empty = every export in the dataset."
    )

    @field_validator("exports", mode="before")
    @classmethod
    def _exports(cls, value: Any) -> Any:
        """``a,b`` from the environment (``OPEN_FINOPS_FOCUS_EXPORTS``) or a TOML list."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value if str(v).strip()]
        return value


# --------------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SettingValue:
    path: str
    value: Any
    source: str
    secret: bool


class Config(BaseSettings):
    """The resolved configuration of one run."""

    model_config = SettingsConfigDict(extra="ignore", validate_default=True)

    project: ProjectSettings = Field(default_factory=ProjectSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    focus: FocusSettings = Field(default_factory=FocusSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        ctx = CURRENT_LOAD.get(None) or LoadContext(path=DEFAULT_CONFIG_PATH, environ=os.environ)
        flags = FlagSource(settings_cls, getattr(init_settings, "init_kwargs", {}))
        # The precedence, highest first: declared here and nowhere else.
        sources = (
            flags,
            ContractEnvSource(settings_cls, ctx.environ),
            FinOpsTomlSource(settings_cls, ctx.path, ctx.warnings),
        )
        if ctx.backend_pairs:  # -D KEY=VALUE: flags of whichever backend these same sources select
            found, backend = first_value(sources, ("database", "backend"))
            selected = _canonical_backend(backend if found else DatabaseSettings.model_fields["backend"].default)
            flags.add(("database", selected), check_backend_pairs(selected, ctx.backend_pairs, "--database-config"))
        ctx.sources = sources
        return sources

    def model_post_init(self, __context: Any) -> None:
        self.database.data_dir = self.project.data_dir

    # -- loading ---------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        backend_pairs: Mapping[str, str] | None = None,
    ) -> Config:
        """Resolve flags (``overrides``, nested dicts) > environment > ``path`` > defaults, reading each once.

        ``backend_pairs`` (``--database-config KEY=VALUE``) are flags of the backend this load selects.

        Raises:
            ConfigError: an explicit ``path`` that does not exist, invalid TOML, an unknown backend or backend key,
                or a bad value (the message names the key and where it came from).
        """
        explicit = path is not None
        config_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
        if explicit and not config_path.exists():
            raise ConfigError(f"Config file {config_path} does not exist.")
        environ = os.environ if environ is None else environ
        ctx = LoadContext(path=config_path, environ=environ, backend_pairs=dict(backend_pairs or {}))
        token = CURRENT_LOAD.set(ctx)
        try:
            try:
                config = cls(**_prune_none(dict(overrides or {})))
            except ValidationError as exc:
                raise ConfigError(_explain(exc, recorded_origins(ctx.sources))) from None
            for message in ctx.warnings:
                log.warning("%s", message)
            config._provenance = recorded_origins(ctx.sources)
            config._path = config_path if config_path.exists() else None
            return config
        finally:
            CURRENT_LOAD.reset(token)

    @classmethod
    def from_file(cls, path: str | Path) -> Config:
        """The contract's programmatic entry point: a file plus the environment, no flags."""
        return cls.load(path)

    # -- reporting -------------------------------------------------------------------------------------------
    def settings(self) -> list[SettingValue]:
        """Every setting with its value and source, secrets masked (``finops config show``)."""
        provenance: dict[tuple[str, ...], str] = getattr(self, "_provenance", {})
        rows = []
        secret_paths = _secret_paths()
        for path, _info in walk_fields(type(self)):
            value: Any = self
            for key in path:
                value = getattr(value, key)
            secret = path in secret_paths
            if secret and value not in (None, ""):
                shown: Any = "********"
            elif isinstance(value, Path):
                shown = str(value)
            else:
                shown = value
            rows.append(SettingValue(".".join(path), shown, provenance.get(path, "default"), secret))
        return rows

    @property
    def path(self) -> Path | None:
        return getattr(self, "_path", None)


def check_backend_pairs(backend: str, pairs: Mapping[str, str], flag: str) -> dict[str, str]:
    """``pairs`` if each key is a setting of ``backend``: a typo must not silently fall back to a default.

    Raises:
        ConfigError: an unknown key; the message names it and the backend's settings (exit 2).
    """
    field_info = DatabaseSettings.model_fields.get(backend)
    known = set(getattr(field_info.annotation, "model_fields", {})) if field_info else set()
    unknown = sorted(set(pairs) - known)
    if unknown:
        raise ConfigError(
            f"{flag}: {', '.join(unknown)} is not a setting of the {backend!r} backend "
            f"(its settings: {', '.join(sorted(known))})."
        )
    return dict(pairs)


def _canonical_backend(name: Any) -> str:
    from core.backends.factory import canonical_name  # a registry of import paths: loads no backend

    return canonical_name(str(name))


def _prune_none(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = _prune_none(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def _secret_paths() -> set[tuple[str, ...]]:
    return {
        path
        for path, info in walk_fields(Config)
        if info.annotation in (SecretStr, SecretStr | None)
        or (isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("secret"))
    }


def _explain(exc: ValidationError, origins: Mapping[tuple[str, ...], str]) -> str:
    """The validation errors, each naming the key and where its value came from (the load's recorded origins)."""
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"] if not isinstance(part, int))
        key = ".".join(loc)
        origin = origins.get(loc) or next((o for p, o in origins.items() if p[: len(loc)] == loc), "default")
        where = {"flag": "from the command line"}.get(origin, f"from {origin}")
        value = error.get("input")
        secret = loc in _secret_paths()
        shown = "" if isinstance(value, dict) else (" = ********" if secret else f" = {value!r}")
        lines.append(f"{key}{shown} ({where}): {error['msg']}")
    return "Invalid configuration:\n  " + "\n  ".join(lines)
