"""One load, one set of sources: provenance, ``-D`` and error messages come from the sources the settings were
built from, and the TOML file is read once."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from core.config import Config
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ``tomllib.load`` call (the only way a config file is parsed)."""
    calls: list[Any] = []
    real = tomllib.load

    def counting(handle: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(getattr(handle, "name", handle))
        return real(handle, **kwargs)

    monkeypatch.setattr(tomllib, "load", counting)
    return calls


@pytest.fixture
def inits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every construction of the settings (a full load through all the sources)."""
    calls: list[int] = []
    real = Config.__init__

    def counting(self: Config, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(Config, "__init__", counting)
    return calls


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body)
    return path


def _sources(config: Config) -> dict[str, str]:
    return {s.path: s.source for s in config.settings()}


def test_importing_config_loads_no_backend_engine() -> None:
    code = (
        "import sys, core.config\n"
        "heavy = ('core.backends.duckdb.backend', 'core.backends.postgresql.backend', 'core.backends.sql.backend',"
        " 'duckdb', 'psycopg2', 'sqlalchemy', 'dlt')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_toml_file_is_read_once_per_load(tmp_path: Path, reads: list[Any], inits: list[int]) -> None:
    path = _write(tmp_path, '[aws]\nbucket = "b"\n[database.duckdb]\nthreads = 3\n')
    config = Config.load(path, overrides={"project": {"name": "p"}}, environ={"OPEN_FINOPS_AWS_PREFIX": "x"})
    assert (config.aws.bucket, config.database.duckdb.threads, config.aws.prefix) == ("b", 3, "x")
    assert len(reads) == 1 and len(inits) == 1


def test_provenance_comes_from_the_sources_used(tmp_path: Path, reads: list[Any]) -> None:
    path = _write(tmp_path, '[aws]\nbucket = "file-bucket"\nregion = "eu-west-1"\n[project]\nname = "file-name"\n')
    environ = {"OPEN_FINOPS_AWS_BUCKET": "env-bucket", "OPEN_FINOPS_PROJECT_NAME": "env-name",
               "OPEN_FINOPS_AWS_PREFIX": "env-prefix"}
    config = Config.load(path, overrides={"aws": {"bucket": "flag-bucket"}}, environ=environ)
    sources = _sources(config)
    assert config.aws.bucket == "flag-bucket" and sources["aws.bucket"] == "flag"  # all three places
    assert config.project.name == "env-name" and sources["project.name"] == "env OPEN_FINOPS_PROJECT_NAME"
    assert sources["aws.prefix"] == "env OPEN_FINOPS_AWS_PREFIX"  # env only
    assert config.aws.region == "eu-west-1" and sources["aws.region"] == f"file {path}"  # file only
    assert sources["aws.dataset_name"] == "default"
    assert len(reads) == 1


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("flag", "from the command line"),
        ("env", "from env OPEN_FINOPS_PROJECT_LOCK_TIMEOUT"),
        ("file", "from file {path}"),
    ],
)
def test_bad_value_names_key_and_origin(tmp_path: Path, reads: list[Any], where: str, expected: str) -> None:
    path = _write(tmp_path, "[project]\nlock_timeout = 'soon'\n" if where == "file" else "[aws]\nbucket = 'b'\n")
    overrides = {"project": {"lock_timeout": "soon"}} if where == "flag" else {}
    environ = {"OPEN_FINOPS_PROJECT_LOCK_TIMEOUT": "soon"} if where == "env" else {}
    with pytest.raises(ConfigError) as info:
        Config.load(path, overrides=overrides, environ=environ)
    message = info.value.message
    assert "project.lock_timeout = 'soon'" in message and expected.format(path=path) in message
    assert info.value.exit_code == 2
    assert len(reads) == 1  # the explanation uses the origins recorded by the load, not a second reading


# ------------------------------------------------------------------------------------------- -D KEY=VALUE


def test_database_config_loads_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reads: list[Any],
                                     inits: list[int]) -> None:
    from core.cli.common import load_config

    monkeypatch.delenv("OPEN_FINOPS_DATABASE_BACKEND", raising=False)
    path = _write(tmp_path, '[database]\nbackend = "duckdb"\n')
    config = load_config(path, database_config=["threads=2", "database_path=/tmp/x.duckdb"])
    assert config.database.duckdb.threads == 2
    assert _sources(config)["database.duckdb.threads"] == "flag"
    assert len(inits) == 1 and len(reads) == 1


@pytest.mark.parametrize(
    ("flag", "env", "file", "selected"),
    [
        (None, None, None, "duckdb"),
        (None, None, "sql", "sql"),
        (None, "sql", "duckdb", "sql"),
        ("postgres", "sql", "duckdb", "postgresql"),
    ],
)
def test_database_config_targets_the_selected_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      reads: list[Any], flag: str | None, env: str | None,
                                                      file: str | None, selected: str) -> None:
    """flag > env > file > default decides which sub-table -D fills, from the sources the load reads anyway."""
    from core.cli.common import load_config

    if env:
        monkeypatch.setenv("OPEN_FINOPS_DATABASE_BACKEND", env)
    else:
        monkeypatch.delenv("OPEN_FINOPS_DATABASE_BACKEND", raising=False)
    path = _write(tmp_path, f'[database]\nbackend = "{file}"\n' if file else "")
    key, value = ("threads", 4) if selected == "duckdb" else ("schema", "s1")
    config = load_config(path, backend=flag, database_config=[f"{key}={value}"])
    assert getattr(config.database.backend_settings(selected), key) == value
    assert _sources(config)[f"database.{selected}.{key}"] == "flag"
    assert len(reads) == 1


def test_database_config_secret_is_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          reads: list[Any]) -> None:
    from core.cli.common import load_config

    monkeypatch.setenv("OPEN_FINOPS_DATABASE_BACKEND", "sql")
    config = load_config(_write(tmp_path, ""), database_config=["credentials=sqlite:////tmp/a.db"])
    shown = {s.path: s for s in config.settings()}["database.sql.credentials"]
    assert (shown.value, shown.source, shown.secret) == ("********", "flag", True)
    assert config.database.sql.url() == "sqlite:////tmp/a.db"
    assert len(reads) == 1


def test_database_config_unknown_key_names_key_and_known_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              reads: list[Any]) -> None:
    from core.cli.common import load_config

    monkeypatch.setenv("OPEN_FINOPS_DATABASE_BACKEND", "sql")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, ""), database_config=["nosuchkey=1"])
    assert info.value.exit_code == 2
    assert "nosuchkey is not a setting of the 'sql' backend" in info.value.message
    assert "credentials, destination, schema" in info.value.message
    assert len(reads) == 1


def test_database_config_bad_value_is_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            reads: list[Any]) -> None:
    from core.cli.common import load_config

    monkeypatch.delenv("OPEN_FINOPS_DATABASE_BACKEND", raising=False)
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, ""), database_config=["threads=many"])
    assert "database.duckdb.threads = 'many' (from the command line)" in info.value.message
    assert len(reads) == 1


def test_db_copy_overrides_still_checked_per_side() -> None:
    from core.cli.common import backend_overrides

    assert backend_overrides("duckdb", ["database_path=./old.duckdb"], "--from-config") == {
        "database_path": "./old.duckdb"
    }
    assert backend_overrides("sql", None, "--to-config") == {}
    with pytest.raises(ConfigError, match="--to-config: colour is not a setting of the 'postgresql' backend"):
        backend_overrides("postgresql", ["colour=blue"], "--to-config")


def test_config_show_json_shape(tmp_path: Path) -> None:
    from tests.conftest import run_cli  # a process of its own: the console binds stdout when first imported

    result = run_cli("config", "show", "--json", "-D", "database_path=/tmp/x.duckdb", cwd=tmp_path)
    assert result.code == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"config_file", "settings"}
    rows = {row["key"]: row for row in document["settings"]}
    assert all(set(row) == {"key", "value", "source", "secret"} for row in rows.values())
    assert rows["database.duckdb.database_path"] == {
        "key": "database.duckdb.database_path", "value": "/tmp/x.duckdb", "source": "flag", "secret": False
    }


def test_database_config_reports_each_file_warning_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from core.cli.common import load_config

    monkeypatch.delenv("OPEN_FINOPS_DATABASE_BACKEND", raising=False)
    path = _write(tmp_path, '[aws]\ncolour = "blue"\n')
    with caplog.at_level(logging.WARNING):
        load_config(path, database_config=["threads=2"])
    assert caplog.text.count("Unknown setting aws.colour") == 1
