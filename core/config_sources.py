"""The settings sources of :class:`core.config.Config`: command-line flags, the environment, ``config.toml``.

Each source reads its input once, when it is built, and records where every value it produces came from
(``origins``: setting path → ``"flag"``, ``"env NAME"``, ``"file PATH"``). ``finops config show`` and the error
messages use those records, so provenance is never derived a second time. The order of the sources — the
precedence — is declared in one place, :meth:`core.config.Config.settings_customise_sources`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from core.errors import ConfigError

ENV_PREFIX = "OPEN_FINOPS_"
#: sections the earlier releases reserved; accepted in a file and ignored
RESERVED_SECTIONS = ("azure", "gcp")

Key = tuple[str, ...]


@dataclass
class LoadContext:
    """What one :meth:`Config.load` hands its sources, and the sources it was built from."""

    path: Path | None
    environ: Mapping[str, str]
    #: ``-D KEY=VALUE`` pairs for whichever backend the load selects
    backend_pairs: Mapping[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sources: Sequence[RecordingSource] = ()


CURRENT_LOAD: ContextVar[LoadContext] = ContextVar("finops_config_context")


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def walk_fields(model: type[BaseModel], path: Key = ()) -> Iterator[tuple[Key, Any]]:
    """Every leaf setting of ``model`` as (path, FieldInfo), nested models flattened."""
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("internal"):
            continue
        if _is_model(info.annotation):
            yield from walk_fields(info.annotation, (*path, name))
        else:
            yield (*path, name), info


def env_names(path: Key, info: Any) -> list[str]:
    """Environment variables for one setting, most specific first."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    names = [] if extra.get("env_only_names") else [ENV_PREFIX + "_".join(path).upper()]
    names.extend(extra.get("env", []))
    return names


class RecordingSource(PydanticBaseSettingsSource):
    """A source whose values are produced once, each recorded with its origin."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.values: dict[str, Any] = {}
        self.origins: dict[Key, str] = {}

    def _put(self, path: Key, value: Any, origin: str) -> None:
        _set_path(self.values, path, value)
        self.origins[path] = origin

    def value_at(self, path: Key) -> tuple[bool, Any]:
        data: Any = self.values
        for key in path:
            if not isinstance(data, Mapping) or key not in data:
                return False, None
            data = data[key]
        return True, data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.values


class FlagSource(RecordingSource):
    """Command-line flags: the settings' init kwargs (nested dicts), plus values placed by :meth:`add`."""

    def __init__(self, settings_cls: type[BaseSettings], init_kwargs: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        for path, value in _flatten(init_kwargs):
            self._put(path, value, "flag")

    def add(self, prefix: Key, values: Mapping[str, Any]) -> None:
        for path, value in _flatten(values, prefix):
            self._put(path, value, "flag")


class ContractEnvSource(RecordingSource):
    """Environment variables named as the contract says (no ambiguous nested-delimiter splitting)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        for path, info in walk_fields(settings_cls):
            for env_name in env_names(path, info):
                if environ.get(env_name, "") != "":
                    self._put(path, environ[env_name], f"env {env_name}")
                    break
        # The earlier DuckDB-only releases read the database file from OPEN_FINOPS_DATABASE_PATH.
        legacy = environ.get("OPEN_FINOPS_DATABASE_PATH")
        if legacy and ("database", "duckdb", "database_path") not in self.origins:
            self._put(("database", "duckdb", "database_path"), legacy, "env OPEN_FINOPS_DATABASE_PATH")


class FinOpsTomlSource(RecordingSource):
    """``config.toml``, read once, with unknown keys reported (not fatal) and env-only secrets refused."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None, warnings: list[str]) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.warnings = warnings
        data: dict[str, Any] = {}
        if path is not None and path.exists():
            try:
                with path.open("rb") as handle:
                    data = tomllib.load(handle)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
            except UnicodeDecodeError as exc:  # TOML is UTF-8 by definition
                raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8.") from None
            except OSError as exc:
                raise ConfigError(f"Cannot read {path}: {exc}") from exc
        for key_path, value in self._check_keys(data):
            self._put(key_path, value, f"file {path}")

    def _check_keys(self, data: Mapping[str, Any]) -> Iterable[tuple[Key, Any]]:
        """The values to use; a warning for each key that is unknown, obsolete, or a secret kept in a file."""
        known = dict(walk_fields(self.settings_cls))
        sections = {p[:1] for p in known} | {p[:2] for p in known if len(p) > 2}
        for path, value in _flatten(data):
            dotted = ".".join(path)
            if path in sections:  # `aws = "…"`: a table given a value
                raise ConfigError(f"[{dotted}] in {self.path} must be a table of settings, not a value "
                                  f"({dotted} = {short_value(value)}).")
            if path[0] in RESERVED_SECTIONS:
                continue
            extra = known[path].json_schema_extra if path in known else None
            if path[-1] == "table_strategy":
                self.warnings.append(
                    f"{dotted} in {self.path} is ignored: every export is loaded into one table, with a "
                    "billing_period column."
                )
            elif path not in known:
                self.warnings.append(f"Unknown setting {dotted} in {self.path} (ignored).")
            elif isinstance(extra, dict) and extra.get("env_only_names"):
                names = " or ".join(extra.get("env", []))
                self.warnings.append(f"{dotted} in {self.path} is ignored: this secret is read only from {names}.")
                continue
            elif path in (("aws", "access_key_id"), ("aws", "secret_access_key")):
                self.warnings.append(
                    f"{dotted} is set in {self.path}; it still works, but prefer the AWS credential chain "
                    "(AWS_PROFILE, SSO, instance roles) so that no key sits in a file."
                )
            yield path, value


def short_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def first_value(sources: Sequence[RecordingSource], path: Key) -> tuple[bool, Any]:
    """The value the highest-priority source holds for ``path`` (sources in precedence order)."""
    for source in sources:
        found, value = source.value_at(path)
        if found:
            return True, value
    return False, None


def recorded_origins(sources: Sequence[RecordingSource]) -> dict[Key, str]:
    """Where each value came from: the first source (in precedence order) that recorded it."""
    origins: dict[Key, str] = {}
    for source in sources:
        for path, origin in source.origins.items():
            origins.setdefault(path, origin)
    return origins


def _flatten(data: Mapping[str, Any], path: Key = ()) -> Iterator[tuple[Key, Any]]:
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, (*path, key))
        else:
            yield (*path, key), value


def _set_path(target: dict[str, Any], path: Key, value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
