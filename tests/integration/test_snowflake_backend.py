"""Snowflake through the CLI, beyond the conformance suite: ``db copy`` into and out of it (the shared
``read_period``/``replace_period``) and ``backends check`` (exit 0 with what it proved, exit 4 with the reason).
Against the session's fakesnow emulator; what it cannot run is pinned in tests/unit/test_snowflake_unit.py.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import closed_port, run_cli
from tests.integration.conftest import S3
from tests.integration.targets import DuckDBTarget, SnowflakeTarget

pytestmark = pytest.mark.snowflake


def _matches(totals: dict[str, tuple[int, float]], truth: Any) -> bool:
    return totals.keys() == truth.periods.keys() and all(
        totals[p][0] == t.rows and Decimal(str(totals[p][1])) == pytest.approx(t.unblended_cost, abs=Decimal("1e-6"))
        for p, t in truth.periods.items())


def test_db_copy_into_and_out_of_snowflake(s3: S3, gen: Any, tmp_path: Path, snowflake_emulator: Any,
                                           snowflake_schema: str) -> None:
    root = tmp_path / "bucket"
    bucket = s3.new_bucket()
    truths = {
        "legacy_cur": gen.write_cur1_export(root, prefix="cur", export_name="legacy-cur", periods=["2024-01", "2024-02"],
                                            rows_per_period=200, parts=2, seed=31),
        "cur2_daily": gen.write_cur2_export(root, prefix="exports", export_name="cur2-daily",
                                            periods=["2024-01", "2024-02"], rows_per_period=250, seed=32),
    }
    s3.sync_tree(root, bucket)
    duck = DuckDBTarget(tmp_path)
    snow = SnowflakeTarget(snowflake_emulator, snowflake_schema, tmp_path / "work")
    env = {**s3.env(), **snow.env(), "OPEN_FINOPS_DATABASE_BACKEND": "duckdb",
           "OPEN_FINOPS_DATABASE_DUCKDB_DATABASE_PATH": str(duck.path), "OPEN_FINOPS_AWS_BUCKET": bucket}
    imported = run_cli("aws", "import-cur", "--json", env=env)
    assert imported.code == 0, imported.stderr

    into = run_cli("db", "copy", "--from", "duckdb", "--to", "snowflake", "--json", env=env)
    assert into.code == 0, into.stdout + into.stderr
    assert into.json()["copied"] == 4 and into.json()["failed"] == 0
    for table, truth in truths.items():
        assert _matches(snow.period_totals(table), truth), table
    state = snow.query(f'SELECT export_name, billing_period, status, is_current FROM "{snowflake_schema}".'
                       '"_finops_load_state" ORDER BY 1, 2')
    assert [tuple(r) for r in state] == [(e, p, "completed", True) for e in ("cur2-daily", "legacy-cur")
                                         for p in ("2024-01", "2024-02")]
    again = run_cli("aws", "import-cur", "--backend", "snowflake", "--json", env=env)
    assert again.code == 0 and again.json()["summary"]["skipped"] == 4, again.stdout + again.stderr

    back = tmp_path / "back.duckdb"
    out = run_cli("db", "copy", "--from", "snowflake", "--to", "duckdb", "--to-config", f"database_path={back}",
                  "--json", env=env)
    assert out.code == 0 and out.json()["copied"] == 4, out.stdout + out.stderr
    returned = DuckDBTarget(tmp_path)
    returned.path = back
    returned.table = lambda name, dataset="": f'"{snowflake_schema}"."{name}"'  # type: ignore[method-assign]
    for table, truth in truths.items():  # the dataset keeps its name (the env's dataset_name)
        assert _matches(returned.period_totals(table), truth), table
    assert returned.column_types("cur2_daily", snowflake_schema)["product"] == "json"


def test_backends_check(snowflake_emulator: Any, snowflake_schema: str, tmp_path: Path) -> None:
    snow = SnowflakeTarget(snowflake_emulator, snowflake_schema, tmp_path / "work")
    ok = run_cli("backends", "check", "--json", env=snow.env())
    assert ok.code == 0, ok.stdout + ok.stderr
    report = ok.json()
    assert report["ok"] is True and report["backend"] == "snowflake" and report["error"] is None, report
    assert report["details"]["can_create_table"] is True and report["details"]["database"] == "FINOPS", report

    down = run_cli("backends", "check", "--json",
                   env={**snow.env(), "OPEN_FINOPS_DATABASE_SNOWFLAKE_PORT": str(closed_port())})
    assert down.code == 4, down.stdout + down.stderr
    assert down.json()["ok"] is False and "Could not connect to Snowflake" in down.json()["error"]
    assert snowflake_emulator.password not in down.stdout + down.stderr

    no_database = run_cli("backends", "check", "--json",
                          env={**snow.env(), "OPEN_FINOPS_DATABASE_SNOWFLAKE_DATABASE": ""})
    assert no_database.code == 2, no_database.stdout + no_database.stderr  # a missing setting, not the server
    assert "needs a database" in no_database.stdout + no_database.stderr


def test_a_schema_written_upper_case_by_an_earlier_release_is_refused(snowflake_emulator: Any, snowflake_schema: str,
                                                                       tmp_path: Path) -> None:
    """Releases that stored every name upper case left ``AWS_BILLING._FINOPS_LOAD_STATE``; an import next to it
    would load every period again into lower-case tables. It stops first (exit 2), naming the upgrade."""
    from tests.integration.backend_targets import SAMPLES

    legacy = snowflake_schema.upper()
    snowflake_emulator.query(f"CREATE SCHEMA {legacy}")  # unquoted, as that release's names were stored
    snowflake_emulator.query(f"CREATE TABLE {legacy}._FINOPS_LOAD_STATE (VENDOR TEXT, BILLING_PERIOD TEXT)")
    snow = SnowflakeTarget(snowflake_emulator, snowflake_schema, tmp_path / "work")
    env = {**snow.env(), "OPEN_FINOPS_AWS_SOURCE_DIR": str(SAMPLES)}
    for command in (["aws", "import-cur"], ["aws", "list-exports"]):
        refused = run_cli(*command, "--json", env=env)
        assert refused.code == 2, refused.stdout + refused.stderr
        assert f"{legacy} holds _FINOPS_LOAD_STATE" in refused.stderr and "docs/BACKENDS.md" in refused.stderr
    assert snowflake_emulator.query("SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
                                    [snowflake_schema]) == []  # nothing created beside it
