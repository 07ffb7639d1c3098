"""One conformance suite: the same import scenarios against every backend (markers duckdb, postgresql, sql).

Each scenario drives ``finops`` as a separate process against a real S3 API server on loopback and reads the
result back from the real database. Ground truth (rows, exact cost sums) comes from the generator that wrote
the exports.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli_env, run_cli
from tests.integration.conftest import S3
from tests.integration.targets import (
    BigQueryTarget,
    DuckDBTarget,
    MariaDBTarget,
    PostgreSQLTarget,
    SnowflakeTarget,
    SQLiteTarget,
    Target,
)

V1, V2 = "legacy-cur", "cur2-daily"
V1_TABLE, V2_TABLE = "legacy_cur", "cur2_daily"


BACKENDS = [
    pytest.param("duckdb", marks=pytest.mark.duckdb),
    pytest.param("postgresql", marks=pytest.mark.postgresql),
    pytest.param("sql", marks=pytest.mark.sql),
    pytest.param("mariadb", marks=[pytest.mark.sql, pytest.mark.mariadb]),
    pytest.param("bigquery", marks=pytest.mark.bigquery),
    pytest.param("snowflake", marks=pytest.mark.snowflake),
]


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "postgresql":
        server = request.getfixturevalue("pg_server")
        return PostgreSQLTarget(server, request.getfixturevalue("pg_schema"), tmp_path / "work")
    if request.param == "sql":
        return SQLiteTarget(tmp_path)
    if request.param == "mariadb":
        server = request.getfixturevalue("maria_server")
        return _gaps(request, MariaDBTarget(server, request.getfixturevalue("maria_dataset"), tmp_path / "work"))
    if request.param == "snowflake":
        emulator = request.getfixturevalue("snowflake_emulator")
        schema = request.getfixturevalue("snowflake_schema")
        return _gaps(request, SnowflakeTarget(emulator, schema, tmp_path / "work"))
    if request.param == "bigquery":
        emulator = request.getfixturevalue("bq_emulator")
        return _gaps(request, BigQueryTarget(emulator, request.getfixturevalue("bq_dataset"), tmp_path / "work"))
    return DuckDBTarget(tmp_path)


def _gaps(request: pytest.FixtureRequest, target: Target) -> Target:
    """The target's known gap for this test, if any, as a strict xfail (the day it is fixed, the suite says so)."""
    gap = target.known_gaps.get(request.node.originalname)
    if gap:
        request.applymarker(pytest.mark.xfail(raises=gap[0], strict=True, reason=gap[1]))
    return target


@dataclass
class Source:
    s3: S3
    bucket: str
    root: Path
    gen: Any
    truth: dict[str, Any]

    def env(self, target: Target, **extra: str) -> dict[str, str]:
        return {**self.s3.env(), **target.env(), "OPEN_FINOPS_AWS_BUCKET": self.bucket, **extra}

    def write_v2(self, periods: list[str], rows: int, **kwargs: Any) -> Any:
        truth = self.gen.write_cur2_export(
            self.root, prefix="exports", export_name=V2, periods=periods, rows_per_period=rows, **kwargs
        )
        self.s3.sync_tree(self.root, self.bucket)
        return truth

    def write_v1(self, periods: list[str], rows: int, **kwargs: Any) -> Any:
        truth = self.gen.write_cur1_export(
            self.root, prefix="cur", export_name=V1, periods=periods, rows_per_period=rows, **kwargs
        )
        self.s3.sync_tree(self.root, self.bucket)
        return truth


@pytest.fixture()
def source(s3: S3, tmp_path: Path, gen: Any) -> Source:
    root = tmp_path / "bucket"
    bucket = s3.new_bucket()
    src = Source(s3, bucket, root, gen, {})
    src.truth[V1] = src.write_v1(["2024-01", "2024-02"], 300, parts=2, seed=11)
    src.truth[V2] = src.write_v2(["2024-01", "2024-02"], 400, files_per_period=2, seed=12)
    return src


def _import(source: Source, target: Target, *args: str, **env: str) -> Any:
    result = run_cli("aws", "import-cur", "--json", *args, env=source.env(target, **env))
    assert result.stdout.strip(), result.stderr
    return result


def _assert_matches(target: Target, table: str, truth: Any, periods: list[str] | None = None) -> None:
    totals = target.period_totals(table)
    for period in periods or list(truth.periods):
        expected = truth.periods[period]
        rows, cost = totals[period]
        assert rows == expected.rows, (table, period)
        assert Decimal(str(cost)) == pytest.approx(expected.unblended_cost, abs=Decimal("1e-6")), (table, period)


def test_import_v1_and_v2_match_the_source(source: Source, target: Target) -> None:
    result = _import(source, target)
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["summary"]["loaded"] == 4 and report["summary"]["failed"] == 0
    assert report["summary"]["rows"] == 2 * 300 + 2 * 400
    _assert_matches(target, V1_TABLE, source.truth[V1])
    _assert_matches(target, V2_TABLE, source.truth[V2])

    types = target.column_types(V1_TABLE)
    assert "line_item_unblended_cost" in types and "resource_tags_user_cost_center" in types
    assert "savings_plan_savings_plan_a_r_n" in types
    assert not any("/" in column or ":" in column for column in types)
    assert any(word in types["bill_payer_account_id"] for word in ("char", "text", "string"))
    assert any(word in types["line_item_unblended_cost"] for word in ("double", "float", "real"))  # 8-byte IEEE
    assert any(word in types["line_item_usage_start_date"] for word in ("timestamp", "datetime"))  # MySQL: DATETIME
    # account ids keep their leading zeros
    ids = {row[0] for row in target.query(f"SELECT DISTINCT line_item_usage_account_id FROM {target.table(V1_TABLE)}")}
    assert any(str(i).startswith("0") for i in ids) and all(len(str(i)) == 12 for i in ids)

    v2_types = target.column_types(V2_TABLE)
    for map_column in ("product", "resource_tags", "cost_category", "discount"):
        assert target.json_type in v2_types[map_column], (map_column, v2_types[map_column])
    tags = target.query(f"SELECT resource_tags FROM {target.table(V2_TABLE)} WHERE resource_tags IS NOT NULL LIMIT 5")
    assert tags and all(isinstance(json.loads(t) if isinstance(t, str) else t, dict) for (t,) in tags)
    assert not any(column.startswith("resource_tags_") for column in v2_types)  # maps are never exploded
    # Hive-style folders (BILLING_PERIOD=2024-01/) are not columns.
    assert not any("b_i_l_l" in column or column.startswith("billing_period_") for column in v2_types)

    state = run_cli("aws", "show-state", "--json", env=source.env(target))
    assert state.code == 0, state.stderr
    records = state.json()["records"]
    assert len(records) == 4
    assert all(r["status"] == "completed" and r["is_current"] for r in records)
    assert {(r["export_name"], r["billing_period"]): r["row_count"] for r in records} == {
        (V1, "2024-01"): 300, (V1, "2024-02"): 300, (V2, "2024-01"): 400, (V2, "2024-02"): 400,
    }
    assert {r["data_format_version"] for r in records} == {"v1", "v2"}
    assert all(r["file_count"] == 2 for r in records)


def test_rerun_is_idempotent(source: Source, target: Target) -> None:
    assert _import(source, target).code == 0
    again = _import(source, target)
    assert again.code == 0, again.stderr
    statuses = {(p["export_name"], p["billing_period"]): p["status"] for p in again.json()["periods"]}
    assert set(statuses.values()) == {"skipped"}
    _assert_matches(target, V1_TABLE, source.truth[V1])
    _assert_matches(target, V2_TABLE, source.truth[V2])


def test_restatement_replaces_the_period(source: Source, target: Target) -> None:
    assert _import(source, target).code == 0
    # AWS re-delivers February of both exports with new versions and different rows.
    new_v2 = source.write_v2(["2024-02"], 250, seed=99, execution_ids={"2024-02": "exec-restated-0002"})
    new_v1 = source.write_v1(["2024-02"], 180, parts=1, seed=98, assembly_ids={"2024-02": "asm-restated-0002"})
    result = _import(source, target)
    assert result.code == 0, result.stderr
    loaded = {(p["export_name"], p["billing_period"]) for p in result.json()["periods"] if p["status"] == "loaded"}
    assert loaded == {(V1, "2024-02"), (V2, "2024-02")}
    _assert_matches(target, V2_TABLE, new_v2)
    _assert_matches(target, V1_TABLE, new_v1)
    _assert_matches(target, V2_TABLE, source.truth[V2], ["2024-01"])  # untouched
    _assert_matches(target, V1_TABLE, source.truth[V1], ["2024-01"])

    history = run_cli("aws", "show-state", "--billing-period", "2024-02", "--export-name", V2, "--json",
                      env=source.env(target)).json()["records"]
    assert len(history) == 2
    current = [r for r in history if r["is_current"]]
    assert [r["version_id"] for r in current] == ["exec-restated-0002"]
    assert all(r["status"] == "completed" for r in history)


def test_new_column_in_a_later_month_is_added(source: Source, target: Target) -> None:
    assert _import(source, target).code == 0
    truth = source.write_v2(["2024-03"], 120, seed=5, extra_columns=["line_item_new_feature_flag"])
    result = _import(source, target)
    assert result.code == 0, result.stderr
    assert "line_item_new_feature_flag" in target.column_types(V2_TABLE)
    _assert_matches(target, V2_TABLE, truth)
    filled = target.query(
        f"SELECT billing_period, COUNT(line_item_new_feature_flag) FROM {target.table(V2_TABLE)} "
        "GROUP BY billing_period ORDER BY billing_period"
    )
    assert [(period, count > 0) for period, count in filled] == [
        ("2024-01", False), ("2024-02", False), ("2024-03", True)
    ]


def test_reset_reloads_without_duplicates(source: Source, target: Target) -> None:
    assert _import(source, target).code == 0
    result = _import(source, target, "--reset", "--export-name", V1)
    assert result.code == 0, result.stderr
    assert {p["status"] for p in result.json()["periods"]} == {"loaded"}
    _assert_matches(target, V1_TABLE, source.truth[V1])
    _assert_matches(target, V2_TABLE, source.truth[V2])


def test_corrupt_file_fails_its_period_and_keeps_the_previous_version(source: Source, target: Target) -> None:
    assert _import(source, target).code == 0
    # A restated February whose second file is cut short, plus a healthy new March.
    bad = source.write_v2(["2024-02"], 200, files_per_period=2, seed=7, execution_ids={"2024-02": "exec-bad"})
    march = source.write_v2(["2024-03"], 90, seed=8)
    victim = source.root / bad.periods["2024-02"].data_keys[-1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    source.s3.upload_tree(source.root, source.bucket)

    result = _import(source, target)
    assert result.code == 1
    periods = {(p["export_name"], p["billing_period"]): p for p in result.json()["periods"]}
    assert periods[(V2, "2024-02")]["status"] == "failed"
    assert bad.periods["2024-02"].data_keys[-1].rsplit("/", 1)[-1] in periods[(V2, "2024-02")]["error"]
    assert periods[(V2, "2024-03")]["status"] == "loaded"
    assert "failed" in result.stderr
    # Readers still see the complete previous February, and March.
    _assert_matches(target, V2_TABLE, source.truth[V2], ["2024-01", "2024-02"])
    _assert_matches(target, V2_TABLE, march, ["2024-03"])

    history = run_cli("aws", "show-state", "--billing-period", "2024-02", "--export-name", V2, "--json",
                      env=source.env(target)).json()["records"]
    by_version = {r["version_id"]: r for r in history}
    assert by_version["exec-bad"]["status"] == "failed" and not by_version["exec-bad"]["is_current"]
    assert by_version["exec-bad"]["error_message"]
    previous = source.truth[V2].periods["2024-02"].version_id
    assert by_version[previous]["is_current"] and by_version[previous]["status"] == "completed"

    overview = run_cli("aws", "show-state", "--export-name", V2, "--json", env=source.env(target)).json()["records"]
    feb = sorted((r["version_id"], r["status"], r["is_current"]) for r in overview if r["billing_period"] == "2024-02")
    assert feb == sorted([(previous, "completed", True), ("exec-bad", "failed", False)])

    # Fixing the file and rerunning loads the new version.
    shutil.rmtree(source.root / "exports" / V2 / "data" / "BILLING_PERIOD=2024-02")
    fixed = source.write_v2(["2024-02"], 200, files_per_period=2, seed=7, execution_ids={"2024-02": "exec-fixed"})
    assert _import(source, target).code == 0
    _assert_matches(target, V2_TABLE, fixed, ["2024-02"])


def test_missing_data_file_fails_its_period_only(source: Source, target: Target) -> None:
    """The manifest names a file S3 does not have: that month fails and keeps its previous version; the run goes on."""
    assert _import(source, target).code == 0
    gone = source.write_v2(["2024-02"], 200, files_per_period=2, seed=17, execution_ids={"2024-02": "exec-gone"})
    march = source.write_v2(["2024-03"], 90, seed=18)
    missing = gone.periods["2024-02"].data_keys[-1]
    source.s3.delete_prefix(source.bucket, missing)
    result = _import(source, target)
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr and "Unexpected" not in result.stderr
    periods = {(p["export_name"], p["billing_period"]): p for p in result.json()["periods"]}
    assert periods[(V2, "2024-02")]["status"] == "failed"
    assert missing.rsplit("/", 1)[-1] in periods[(V2, "2024-02")]["error"]
    assert periods[(V2, "2024-03")]["status"] == "loaded"
    _assert_matches(target, V2_TABLE, source.truth[V2], ["2024-01", "2024-02"])
    _assert_matches(target, V2_TABLE, march, ["2024-03"])
    history = {r["version_id"]: r for r in run_cli("aws", "show-state", "--billing-period", "2024-02", "--export-name",
                                                      V2, "--json", env=source.env(target)).json()["records"]}
    assert history["exec-gone"]["status"] == "failed" and not history["exec-gone"]["is_current"]


def test_json_outputs_parse(source: Source, target: Target) -> None:
    env = source.env(target)
    assert _import(source, target).code == 0
    for args in (
        ("aws", "list-manifests"),
        ("aws", "show-state"),
        ("aws", "list-exports"),
        ("config", "show"),
        ("backends", "list"),
        ("aws", "import-cur", "--dry-run"),
    ):
        result = run_cli(*args, "--json", env=env)
        assert result.code == 0, (args, result.stderr)
        document = result.json()  # one JSON document, nothing else on stdout
        assert isinstance(document, dict), args
    manifests = run_cli("aws", "list-manifests", "--json", env=env).json()["manifests"]
    assert len(manifests) == 4 and all(m["loaded"] for m in manifests)
    exports = run_cli("aws", "list-exports", "--json", env=env).json()["exports"]
    assert {e["table"]: sum(p["rows"] for p in e["periods"]) for e in exports} == {V1_TABLE: 600, V2_TABLE: 800}

    truth = {(name, period): t for name in (V1, V2) for period, t in source.truth[name].periods.items()}
    records = run_cli("aws", "show-state", "--json", env=env).json()["records"]
    assert {(r["export_name"], r["billing_period"]): (r["version_id"], r["status"], r["is_current"], r["row_count"],
                                                      r["data_format_version"], r["vendor"]) for r in records} == {
        key: (t.version_id, "completed", True, t.rows, "v1" if key[0] == V1 else "v2", "aws") for key, t in truth.items()}
    for r in records:
        assert r["file_count"] == 2 and r["error_message"] is None
        assert r["started_at"] <= r["finished_at"] and r["started_at"].endswith("+00:00")  # UTC
        assert source.bucket in r["source_location"]

    shown = run_cli("config", "show", "--json", env=env).json()
    settings = {s["key"]: s for s in shown["settings"]}
    assert shown["config_file"] is None  # none named, no ./config.toml in the repository root
    backend = target.env()["OPEN_FINOPS_DATABASE_BACKEND"]
    assert (settings["database.backend"]["value"], settings["database.backend"]["source"]) == (
        backend, "env OPEN_FINOPS_DATABASE_BACKEND")
    assert (settings["aws.bucket"]["value"], settings["aws.bucket"]["source"]) == (
        source.bucket, "env OPEN_FINOPS_AWS_BUCKET")
    assert (settings["project.lock_timeout"]["value"], settings["project.lock_timeout"]["source"]) == (900.0, "default")
    secrets = {k: s for k, s in settings.items() if s["secret"]}
    assert all(s["value"] in (None, "********") for s in secrets.values()), secrets
    for key, value in target.env().items():
        if key.endswith("CREDENTIALS") and "@" in value:  # a URL holding a password: never shown whole
            assert value not in json.dumps(shown) and value.split("@")[0].rsplit(":", 1)[1] not in json.dumps(shown)

    listed = {b["name"]: b for b in run_cli("backends", "list", "--json", env=env).json()["backends"]}
    assert set(listed) == {"duckdb", "postgresql", "sql", "snowflake", "bigquery"}
    assert all(b["installed"] and b["missing"] == [] for b in listed.values())  # the dev install has every extra
    assert {"pg", "postgres"} <= set(listed["postgresql"]["aliases"]) and "sqlalchemy" in listed["sql"]["aliases"]
    assert listed["bigquery"]["aliases"] == ["bq"]

    plan = run_cli("aws", "import-cur", "--dry-run", "--json", env=env).json()
    assert plan["dry_run"] is True and plan["backend"] == backend
    assert plan["summary"] == {"loaded": 0, "skipped": 4, "failed": 0, "planned": 0, "rows": 0}  # nothing loads
    assert {(p["export_name"], p["billing_period"]): (p["status"], p["version_id"], p["files"], p["table"])
            for p in plan["periods"]} == {
        key: ("skipped", t.version_id, len(t.data_keys), V1_TABLE if key[0] == V1 else V2_TABLE)
        for key, t in truth.items()}


def test_zero_file_manifest_empties_the_period(source: Source, target: Target) -> None:
    assert _import(source, target).code == 0
    key = source.truth[V2].periods["2024-02"].manifest_key
    manifest = json.loads((source.root / key).read_text())
    manifest.update(executionId="exec-empty", dataFiles=[])
    (source.root / key).write_text(json.dumps(manifest))
    source.s3.upload_tree(source.root, source.bucket)
    result = _import(source, target, "--export-name", V2)
    assert result.code == 0, result.json()["periods"]
    assert [(p["billing_period"], p["status"], p["rows"]) for p in result.json()["periods"]] == [
        ("2024-01", "skipped", 400), ("2024-02", "loaded", 0)]
    assert set(target.period_totals(V2_TABLE)) == {"2024-01"}


@pytest.mark.parametrize(("signum", "code", "word"), [(2, 130, "Interrupted"), (15, 143, "Terminated")],
                         ids=["sigint", "sigterm"])
def test_ctrl_c_during_a_load_leaves_the_previous_version(
    source: Source, target: Target, signum: int, code: int, word: str
) -> None:
    """SIGINT (Ctrl-C) or SIGTERM (cron wrappers, CI, ``timeout``) while a restated month loads: exit 130 / 143,
    the month as before, the attempt recorded ``interrupted`` (never left ``running``), and the next run loads it."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    assert _import(source, target, "--export-name", V2).code == 0
    restated = source.write_v2(["2024-02"], 100_000, seed=31, execution_ids={"2024-02": "exec-big"})
    env = cli_env(source.env(target))
    proc = subprocess.Popen([sys.executable, str(ROOT / "finops"), "aws", "import-cur", "--export-name", V2, "--verbose"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in proc.stderr:  # type: ignore[union-attr]
            seen.append(line)
            if "Loading cur2-daily 2024-02" in line:
                break
        else:
            raise AssertionError(f"the load never started: {''.join(seen)}")
        time.sleep(0.3)  # into the load itself (100,000 rows take seconds on every backend)
        proc.send_signal(signal.Signals(signum))
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(seen) + rest
    assert proc.returncode == code, stderr
    assert word in stderr and "Traceback" not in stderr
    _assert_matches(target, V2_TABLE, source.truth[V2], ["2024-01", "2024-02"])  # nothing of the new version
    history = {r["version_id"]: r for r in run_cli("aws", "show-state", "--billing-period", "2024-02", "--export-name",
                                                      V2, "--json", env=source.env(target)).json()["records"]}
    assert not history["exec-big"]["is_current"] and history["exec-big"]["status"] == "interrupted"
    assert history["exec-big"]["error_message"].startswith("interrupted: ")
    # the next run loads it
    result = _import(source, target, "--export-name", V2)
    assert result.code == 0, result.stderr
    _assert_matches(target, V2_TABLE, restated, ["2024-02"])
