"""Configuration and destination errors: their documented exit code, the key or file named, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

SAMPLES = ROOT / "examples" / "sample-exports"

pytestmark = pytest.mark.duckdb


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = run_cli("aws", "import-cur", "--source-dir", str(SAMPLES), *args, env=env, cwd=tmp_path)
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "Unexpected error" not in out, out
    return result.code, out


@pytest.mark.parametrize("value", ["lots", "100", "80%", "-1GB"])
def test_a_bad_memory_limit_is_a_configuration_error_naming_the_key(tmp_path: Path, value: str) -> None:
    code, out = _run(tmp_path, "-D", f"database_path={tmp_path / 'x.duckdb'}", "-D", f"memory_limit={value}")
    assert code == 2 and "memory_limit" in out and value in out
    assert not (tmp_path / "x.duckdb").exists()


def test_a_config_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes('[aws]\nbucket = "café"\n'.encode("latin-1"))
    code, out = _run(tmp_path, "--config", str(config), "-D", f"database_path={tmp_path / 'x.duckdb'}")
    assert code == 2 and "latin1.toml" in out and "UTF-8" in out


@pytest.mark.parametrize("name", ['bad"name', "a.b", "x y", "1starts_with_a_digit", "a" * 64, ""])
def test_a_dataset_name_no_engine_accepts_is_refused(tmp_path: Path, name: str) -> None:
    code, out = _run(tmp_path, "-D", f"database_path={tmp_path / 'x.duckdb'}",
                     env={"OPEN_FINOPS_AWS_DATASET_NAME": name} if name else {"OPEN_FINOPS_AWS_DATASET_NAME": " "})
    assert code == 2 and "dataset_name" in out


def test_a_file_that_is_not_a_duckdb_database_is_exit_4_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "truncated.duckdb"
    bad.write_bytes(b"DUCK" + bytes(5000))
    code, out = _run(tmp_path, "-D", f"database_path={bad}")
    assert code == 4 and "truncated.duckdb" in out
    assert bad.read_bytes() == b"DUCK" + bytes(5000)  # opened, never replaced


@pytest.mark.sql
def test_a_file_that_is_not_a_sqlite_database_is_exit_4_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "notes.db"
    bad.write_text("these are my notes, not a database\n")
    code, out = _run(tmp_path, "--backend", "sql",
                     env={"OPEN_FINOPS_DATABASE_SQL_CREDENTIALS": f"sqlite:///{bad}"})
    assert code == 4 and "notes.db" in out and "not a database" in out
    assert bad.read_text() == "these are my notes, not a database\n"
