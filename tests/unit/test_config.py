"""Configuration precedence (flag > env > file > default) in every combination, sources, masking, errors."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest

from core.config import Config
from core.errors import ConfigError

SOURCES = ("flag", "env", "file")


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    "present", [combo for n in range(4) for combo in itertools.combinations(SOURCES, n)], ids=lambda c: "+".join(c) or "none"
)
@pytest.mark.parametrize(
    "setting",
    [
        # (section path, env name, file snippet template, default)
        (("aws", "bucket"), "OPEN_FINOPS_AWS_BUCKET", '[aws]\nbucket = "{v}"\n', None),
        (("database", "backend"), "OPEN_FINOPS_DATABASE_BACKEND", '[database]\nbackend = "{v}"\n', "duckdb"),
        (
            ("database", "duckdb", "database_path"),
            "OPEN_FINOPS_DATABASE_DUCKDB_DATABASE_PATH",
            '[database.duckdb]\ndatabase_path = "{v}"\n',
            Path("data/finops.duckdb"),
        ),
        (("project", "name"), "OPEN_FINOPS_PROJECT_NAME", '[project]\nname = "{v}"\n', "open-finops"),
    ],
    ids=lambda s: ".".join(s[0]),
)
def test_precedence_every_combination(tmp_path: Path, setting, present) -> None:
    path_keys, env_name, snippet, default = setting
    values = {"flag": "from-flag", "env": "from-env", "file": "from-file"}
    overrides: dict = {}
    if "flag" in present:
        target = overrides
        for key in path_keys[:-1]:
            target = target.setdefault(key, {})
        target[path_keys[-1]] = values["flag"]
    environ = {env_name: values["env"]} if "env" in present else {}
    config_path = _write(tmp_path, snippet.format(v=values["file"]) if "file" in present else "")
    config = Config.load(config_path, overrides=overrides, environ=environ)
    value = config
    for key in path_keys:
        value = getattr(value, key)
    winner = next((s for s in SOURCES if s in present), None)
    expected = default if winner is None else values[winner]
    if isinstance(default, Path) and winner is not None:
        expected = Path(expected)
    assert value == expected
    source = {s.path: s.source for s in config.settings()}[".".join(path_keys)]
    assert source == {None: "default", "flag": "flag", "env": f"env {env_name}", "file": f"file {config_path}"}[winner]


def test_legacy_database_path_env_alias(tmp_path: Path) -> None:
    config = Config.load(_write(tmp_path, ""), environ={"OPEN_FINOPS_DATABASE_PATH": "/x/legacy.duckdb"})
    assert config.database.duckdb.database_path == Path("/x/legacy.duckdb")
    # the canonical name wins over the alias
    config = Config.load(
        _write(tmp_path, ""),
        environ={"OPEN_FINOPS_DATABASE_PATH": "/x/legacy.duckdb", "OPEN_FINOPS_DATABASE_DUCKDB_DATABASE_PATH": "/y.duckdb"},
    )
    assert config.database.duckdb.database_path == Path("/y.duckdb")


def test_secrets_are_masked_and_keys_in_file_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path, '[aws]\naccess_key_id = "AKIAEXAMPLE"\nsecret_access_key = "very-secret-value"\n')
    with caplog.at_level(logging.WARNING):
        config = Config.load(path, environ={})
    assert config.aws.secret_access_key.get_secret_value() == "very-secret-value"
    shown = {s.path: s for s in config.settings()}
    assert shown["aws.secret_access_key"].value == "********"
    assert shown["aws.access_key_id"].value == "********"
    assert "very-secret-value" not in repr(config.settings())
    assert "prefer the AWS credential chain" in caplog.text
    assert "very-secret-value" not in caplog.text


def test_unknown_keys_warn_not_fail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path, '[aws]\nbucket = "b"\ncolour = "blue"\n[nonsense]\nx = 1\n[azure]\ntenant = "t"\n')
    with caplog.at_level(logging.WARNING):
        config = Config.load(path, environ={})
    assert config.aws.bucket == "b"
    assert "Unknown setting aws.colour" in caplog.text
    assert "Unknown setting nonsense.x" in caplog.text
    assert "azure" not in caplog.text  # reserved by the earlier releases


def test_bad_value_names_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '[aws]\nstart_date = "January"\n')
    with pytest.raises(ConfigError) as info:
        Config.load(path, environ={})
    assert "aws.start_date" in info.value.message and str(path) in info.value.message
    assert info.value.exit_code == 2


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Config.load(_write(tmp_path, ""), environ={"OPEN_FINOPS_PROJECT_LOCK_TIMEOUT": "soon"})
    assert "OPEN_FINOPS_PROJECT_LOCK_TIMEOUT" in info.value.message


def test_invalid_toml_and_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(_write(tmp_path, "[aws\n"), environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(tmp_path / "nope.toml", environ={})


def test_periods_and_versions_are_normalised(tmp_path: Path) -> None:
    path = _write(tmp_path, '[aws]\nstart_date = "2024-01-01"\nend_date = "2024-03"\ncur_version = "2"\nprefix = "/cur/"\n')
    config = Config.load(path, environ={})
    assert (config.aws.start_date, config.aws.end_date, config.aws.cur_version, config.aws.prefix) == (
        "2024-01", "2024-03", "v2", "cur"
    )


def test_earlier_release_config_loads_unchanged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The config.toml example of the DuckDB-only Open FinOps Stack, verbatim keys."""
    body = (Path(__file__).parent.parent / "fixtures" / "legacy-config.toml").read_text()
    with caplog.at_level(logging.WARNING):
        config = Config.load(_write(tmp_path, body), environ={})
    assert config.database.backend == "duckdb"
    assert config.database.duckdb.database_path == Path("./data/finops.duckdb")
    assert config.aws.export_format == "parquet"
    assert config.aws.cur_version == "v1"
    assert "table_strategy" in caplog.text
