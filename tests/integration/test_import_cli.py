"""End to end through the CLI on the default backend: layouts, formats, failures, exit codes, concurrency."""

from __future__ import annotations

import csv
import fcntl
import gzip
import json
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, cli_env, closed_port, run_cli
from tests.integration.conftest import S3
from tests.integration.targets import DuckDBTarget

FIXTURES = ROOT / "tests" / "fixtures"
pytestmark = pytest.mark.duckdb  # every test here imports into a DuckDB file


def _env(s3: S3, target: DuckDBTarget, bucket: str, **extra: str) -> dict[str, str]:
    return {**s3.env(), **target.env(), "OPEN_FINOPS_AWS_BUCKET": bucket, **extra}


@pytest.fixture()
def target(tmp_path: Path) -> DuckDBTarget:
    return DuckDBTarget(tmp_path)


def _matches(target: DuckDBTarget, table: str, truth: Any) -> None:
    totals = target.period_totals(table)
    assert set(totals) == set(truth.periods)
    for period, expected in truth.periods.items():
        rows, cost = totals[period]
        assert rows == expected.rows
        assert Decimal(str(cost)) == pytest.approx(expected.unblended_cost, abs=Decimal("1e-6"))


@pytest.mark.parametrize(
    ("layout", "compression", "fmt"),
    [
        ("create-new", "zip", "csv"),
        ("create-new", "none", "csv"),
        ("overwrite", "gzip", "csv"),
        ("create-new", "none", "parquet"),
    ],
)
def test_cur_v1_layouts_and_formats(s3: S3, target: DuckDBTarget, tmp_path: Path, gen: Any, layout: str,
                                     compression: str, fmt: str) -> None:
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    truth = gen.write_cur1_export(root, prefix="billing/cur", export_name="acme", periods=["2024-05", "2024-06"],
                                  rows_per_period=150, parts=2, layout=layout, compression=compression, fmt=fmt)
    s3.upload_tree(root, bucket)
    result = run_cli("aws", "import-cur", "--prefix", "billing/cur", "--json", env=_env(s3, target, bucket))
    assert result.code == 0, result.stderr
    _matches(target, "acme", truth)
    types = target.column_types("acme")
    assert types["line_item_usage_start_date"].startswith("timestamp")
    assert types["line_item_unblended_cost"] == "double"
    assert types["bill_payer_account_id"] == "varchar"


def test_real_cur_v1_csv_from_the_field(s3: S3, target: DuckDBTarget, tmp_path: Path) -> None:
    """The anonymised real CUR (MIT, finopsfoundation/focus_converters): E notation, quoted commas, ms timestamps."""
    source = FIXTURES / "cur1-csv-real" / "sample-anonymous-aws-export-dataset.csv"
    with source.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        rows = list(reader)
    expected = sum(Decimal(r["lineItem/UnblendedCost"] or "0") for r in rows)
    typed = {"UnblendedCost", "BlendedCost", "UsageAmount", "UnblendedRate", "BlendedRate", "publicOnDemandCost"}
    columns = [
        {"category": h.split("/", 1)[0], "name": h.split("/", 1)[1],
         "type": "OptionalBigDecimal" if h.split("/", 1)[1] in typed else
                 "DateTime" if h.endswith(("Date", "StartDate", "EndDate")) else "OptionalString"}
        for h in header
    ]
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    period = root / "cur" / "anon" / "20231101-20231201"
    (period / "asm-1").mkdir(parents=True)
    (period / "asm-1" / "anon-1.csv.gz").write_bytes(gzip.compress(source.read_bytes()))
    manifest = {
        "assemblyId": "asm-1", "reportName": "anon", "compression": "GZIP", "contentType": "text/csv",
        "billingPeriod": {"start": "20231101T000000.000Z", "end": "20231201T000000.000Z"},
        "reportKeys": ["/cur/anon/20231101-20231201/asm-1/anon-1.csv.gz"], "columns": columns, "bucket": bucket,
    }
    (period / "anon-Manifest.json").write_text(json.dumps(manifest))
    s3.upload_tree(root, bucket)

    result = run_cli("aws", "import-cur", "--json", env=_env(s3, target, bucket))
    assert result.code == 0, result.stderr
    count, cost = target.query("SELECT COUNT(*), SUM(line_item_unblended_cost) FROM aws_billing.anon")[0]
    assert count == len(rows) == 1281
    assert Decimal(str(cost)) == pytest.approx(expected, abs=Decimal("1e-9"))
    tiny = target.query("SELECT COUNT(*) FROM aws_billing.anon WHERE line_item_unblended_cost > 0 "
                        "AND line_item_unblended_cost < 0.000001")[0][0]
    assert tiny > 0  # E-notation values such as 9.984E-7 parsed, not truncated
    assert target.query("SELECT COUNT(*) FROM aws_billing.anon WHERE bill_invoice_id IS NULL")[0][0] == 1281
    assert target.query("SELECT MIN(line_item_usage_start_date) FROM aws_billing.anon")[0][0].isoformat() == \
        "2023-11-01T00:00:00+00:00"


def test_malformed_manifest_fails_only_its_period(s3: S3, target: DuckDBTarget, tmp_path: Path, gen: Any) -> None:
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    truth = gen.write_cur2_export(root, prefix="exp", export_name="daily", periods=["2024-01", "2024-02"],
                                  rows_per_period=100)
    bad = root / truth.periods["2024-02"].manifest_key
    bad.write_text('{"executionId": "x", "dataFiles": ')  # cut short
    s3.upload_tree(root, bucket)
    result = run_cli("aws", "import-cur", "--json", env=_env(s3, target, bucket))
    assert result.code == 1
    periods = {p["billing_period"]: p for p in result.json()["periods"]}
    assert periods["2024-01"]["status"] == "loaded"
    assert periods["2024-02"]["status"] == "failed"
    assert truth.periods["2024-02"].manifest_key in periods["2024-02"]["error"]
    assert truth.periods["2024-02"].manifest_key in result.stderr
    assert target.period_totals("daily").keys() == {"2024-01"}
    assert "Traceback" not in result.stderr


def test_export_names_are_anchored(s3: S3, target: DuckDBTarget, tmp_path: Path, gen: Any) -> None:
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    prod = gen.write_cur2_export(root, prefix="cur", export_name="prod", periods=["2024-01"], rows_per_period=50)
    gen.write_cur2_export(root, prefix="cur", export_name="prod-eu", periods=["2024-01"], rows_per_period=70)
    s3.upload_tree(root, bucket)
    result = run_cli("aws", "import-cur", "--prefix", "cur", "--export-name", "prod", "--json",
                     env=_env(s3, target, bucket))
    assert result.code == 0, result.stderr
    assert {p["export_name"] for p in result.json()["periods"]} == {"prod"}
    _matches(target, "prod", prod)
    tables = {t for (t,) in target.query("SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                                         ("aws_billing",))}
    assert "prod_eu" not in tables

    missing = run_cli("aws", "import-cur", "--prefix", "cur", "--export-name", "pro", env=_env(s3, target, bucket))
    assert missing.code == 2 and "No export named 'pro'" in missing.stderr and "prod-eu" in missing.stderr


def test_dry_run_changes_nothing(s3: S3, target: DuckDBTarget, tmp_path: Path, gen: Any) -> None:
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    gen.write_cur2_export(root, prefix="", export_name="daily", periods=["2024-01", "2024-02"], rows_per_period=40)
    s3.upload_tree(root, bucket)
    result = run_cli("aws", "import-cur", "--dry-run", "--json", env=_env(s3, target, bucket))
    assert result.code == 0, result.stderr
    plan = result.json()
    assert plan["dry_run"] and [p["status"] for p in plan["periods"]] == ["planned", "planned"]
    assert all(p["bytes"] > 0 and p["files"] == 1 for p in plan["periods"])
    assert not target.path.exists()  # not even an empty database file
    # and on an existing database, nothing is written either
    assert run_cli("aws", "import-cur", "--json", "--end-date", "2024-01", env=_env(s3, target, bucket)).code == 0
    before = target.path.read_bytes()
    again = run_cli("aws", "import-cur", "--dry-run", "--json", env=_env(s3, target, bucket))
    assert again.code == 0, again.stderr
    assert {p["billing_period"]: p["status"] for p in again.json()["periods"]} == {"2024-01": "skipped", "2024-02": "planned"}
    assert target.path.read_bytes() == before


def test_looking_commands_create_nothing(target: DuckDBTarget) -> None:
    """list-manifests and show-state only read: no database file appears, and they answer from an empty state."""
    env = {**target.env(), "OPEN_FINOPS_AWS_SOURCE_DIR": str(ROOT / "examples" / "sample-exports")}
    listed = run_cli("aws", "list-manifests", "--json", env=env)
    assert listed.code == 0, listed.stderr
    assert len(listed.json()["manifests"]) == 4 and not any(m["loaded"] for m in listed.json()["manifests"])
    shown = run_cli("aws", "show-state", "--json", env=env)
    assert shown.code == 0, shown.stderr
    assert shown.json()["records"] == []
    assert not target.path.exists()
    assert run_cli("aws", "import-cur", "--json", env=env).code == 0
    listed = run_cli("aws", "list-manifests", "--json", env=env)
    assert all(m["loaded"] for m in listed.json()["manifests"])
    assert len(run_cli("aws", "show-state", "--json", env=env).json()["records"]) == 4


def test_source_dir_reads_a_local_copy_without_s3(target: DuckDBTarget, tmp_path: Path, gen: Any) -> None:
    root = tmp_path / "copy"
    truth = gen.write_cur1_export(root, prefix="cur", export_name="local", periods=["2024-03"], rows_per_period=80)
    result = run_cli("aws", "import-cur", "--source-dir", str(root), "--json", env=target.env())
    assert result.code == 0, result.stderr
    _matches(target, "local", truth)


def test_start_and_end_dates_filter_periods(s3: S3, target: DuckDBTarget, tmp_path: Path, gen: Any) -> None:
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    gen.write_cur2_export(root, prefix="", export_name="daily", periods=["2024-01", "2024-02", "2024-03", "2024-04"],
                          rows_per_period=20)
    s3.upload_tree(root, bucket)
    result = run_cli("aws", "import-cur", "--start-date", "2024-02", "--end-date", "2024-03", "--json",
                     env=_env(s3, target, bucket))
    assert result.code == 0, result.stderr
    assert target.period_totals("daily").keys() == {"2024-02", "2024-03"}
    bad = run_cli("aws", "import-cur", "--start-date", "Feb", env=_env(s3, target, bucket))
    assert bad.code == 2 and "start_date" in bad.stderr and "Traceback" not in bad.stderr


def _lock_file(target: DuckDBTarget) -> Path:
    """docs/BACKENDS.md: imports into one DuckDB file are serialised by ``<database_path>.finops-lock``."""
    return target.path.with_name(target.path.name + ".finops-lock")


def test_concurrent_imports_never_double_load(s3: S3, target: DuckDBTarget, tmp_path: Path, gen: Any) -> None:
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    truth = gen.write_cur2_export(root, prefix="", export_name="daily", periods=["2024-01", "2024-02", "2024-03"],
                                  rows_per_period=3000, files_per_period=2)
    s3.upload_tree(root, bucket)
    env = cli_env(_env(s3, target, bucket))
    # Both imports start while the lock is held (as by a third import), so they certainly run at the same time:
    # each must say it is waiting before we let go.
    target.path.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_file(target), "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        procs = [
            subprocess.Popen([sys.executable, str(ROOT / "finops"), "aws", "import-cur", "--json"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        errors: list[list[str]] = [[], []]
        readers = [threading.Thread(target=lambda p=p, e=e: e.extend(p.stderr), daemon=True)
                   for p, e in zip(procs, errors)]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + 120
        while not all(any("waiting" in line for line in e) for e in errors):
            assert time.monotonic() < deadline, errors
            assert all(p.poll() is None for p in procs), errors
            time.sleep(0.1)
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    outputs = [p.stdout.read() for p in procs]  # type: ignore[union-attr]
    for p in procs:
        p.wait(timeout=300)
    for reader in readers:
        reader.join(timeout=30)
    assert [p.returncode for p in procs] == [0, 0], errors
    statuses = sorted(p["status"] for out in outputs for p in json.loads(out)["periods"])
    assert statuses == ["loaded"] * 3 + ["skipped"] * 3  # one loaded; the other waited, then found nothing to do
    _matches(target, "daily", truth)
    state = target.query("SELECT billing_period, COUNT(*) FROM aws_billing._finops_load_state GROUP BY 1")
    assert sorted(state) == [("2024-01", 1), ("2024-02", 1), ("2024-03", 1)]


def test_interrupted_run_is_recovered(s3: S3, target: DuckDBTarget, tmp_path: Path, gen: Any) -> None:
    import duckdb

    root, bucket = tmp_path / "bucket", s3.new_bucket()
    truth = gen.write_cur2_export(root, prefix="", export_name="daily", periods=["2024-01"], rows_per_period=30)
    s3.upload_tree(root, bucket)
    assert run_cli("aws", "import-cur", "--json", env=_env(s3, target, bucket)).code == 0
    # A process killed mid-load leaves its row 'running'; the next run (holding the lock) marks it failed.
    conn = duckdb.connect(str(target.path))
    conn.execute("UPDATE aws_billing._finops_load_state SET status = 'running', is_current = false")
    conn.close()
    result = run_cli("aws", "import-cur", "--json", env=_env(s3, target, bucket))
    assert result.code == 0, result.stderr
    assert [p["status"] for p in result.json()["periods"]] == ["loaded"]
    _matches(target, "daily", truth)
    row = target.query("SELECT status, is_current FROM aws_billing._finops_load_state")
    assert row == [("completed", True)]


def test_exit_codes_and_messages(s3: S3, target: DuckDBTarget, tmp_path: Path, gen: Any) -> None:
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    gen.write_cur2_export(root, prefix="", export_name="daily", periods=["2024-01"], rows_per_period=10)
    s3.upload_tree(root, bucket)
    env = _env(s3, target, bucket)

    unknown = run_cli("aws", "import-cur", "--backend", "oracle9i", env=env)  # exit 2 names the value and the choices
    assert unknown.code == 2 and "oracle9i" in unknown.stderr and "duckdb" in unknown.stderr

    no_source = run_cli("aws", "import-cur", env=target.env())
    assert no_source.code == 2 and "--bucket" in no_source.stderr

    no_bucket = run_cli("aws", "import-cur", "--bucket", "no-such-bucket-here", env=env)
    assert no_bucket.code == 3 and "no-such-bucket-here" in no_bucket.stderr, no_bucket.stderr

    port = closed_port()
    closed = run_cli("aws", "import-cur", env={**env, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
                                               "AWS_MAX_ATTEMPTS": "1"})
    assert closed.code == 3 and "Cannot reach the S3 endpoint" in closed.stderr, closed.stderr

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    bad_db = run_cli("aws", "import-cur", "-D", f"database_path={blocker}/x.duckdb", env=env)
    assert bad_db.code == 4 and str(blocker) in bad_db.stderr, bad_db.stderr

    for result in (unknown, no_source, no_bucket, closed, bad_db):
        assert "Traceback" not in result.stderr and result.stdout == ""
    debug = run_cli("aws", "import-cur", "--bucket", "no-such-bucket-here", "--debug", env=env)
    assert debug.code == 3 and "Traceback" in debug.stderr


def test_secrets_never_reach_output_or_state(s3: S3, target: DuckDBTarget, tmp_path: Path, gen: Any) -> None:
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    gen.write_cur2_export(root, prefix="", export_name="daily", periods=["2024-01"], rows_per_period=10)
    s3.upload_tree(root, bucket)
    secret = "Sup3rSecretValue-do-not-print"
    config = tmp_path / "config.toml"
    config.write_text(f'[aws]\nsecret_access_key = "{secret}"\naccess_key_id = "testing"\n')
    env = {**_env(s3, target, bucket), "AWS_SECRET_ACCESS_KEY": secret}
    outputs = [
        run_cli("aws", "import-cur", "--config", str(config), "--debug", "--verbose", env=env),
        run_cli("config", "show", "--config", str(config), env=env),
        run_cli("config", "show", "--config", str(config), "--json", env=env),
        run_cli("aws", "show-state", "--config", str(config), "--json", env=env),
    ]
    assert outputs[0].code == 0, outputs[0].stderr
    for result in outputs:
        assert secret not in result.stdout and secret not in result.stderr
    shown = {s["key"]: s for s in outputs[2].json()["settings"]}
    assert shown["aws.secret_access_key"]["value"] == "********"
    assert shown["aws.secret_access_key"]["source"] == f"file {config}"
    dump = json.dumps(target.query("SELECT * FROM aws_billing._finops_load_state"), default=str)
    assert secret not in dump
    duck_secrets = target.query("SELECT COUNT(*) FROM duckdb_secrets()")
    assert duck_secrets == [(0,)]  # temporary secrets die with the importing process


def test_earlier_release_config_runs_end_to_end(s3: S3, target: DuckDBTarget, tmp_path: Path, gen: Any) -> None:
    """The old DuckDB-only config.toml, unchanged but for where its bucket lives: export_format is only a hint."""
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    truth = gen.write_cur2_export(root, prefix="cur-reports", export_name="my-cur-export",
                                  periods=["2024-01", "2024-02"], rows_per_period=60)
    s3.upload_tree(root, bucket)
    body = (FIXTURES / "legacy-config.toml").read_text()
    body = body.replace('bucket = "my-cur-bucket"', f'bucket = "{bucket}"')
    body = body.replace('cur_version = "v1"', 'cur_version = "v2"').replace('export_format = "parquet"',
                                                                            'export_format = "csv"')
    body = body.replace('./data/finops.duckdb', str(target.path))
    config = tmp_path / "config.toml"
    config.write_text(body)
    env = {k: v for k, v in s3.env().items()}
    result = run_cli("aws", "import-cur", "--config", str(config), "--json", env=env, cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "table_strategy" in result.stderr  # accepted with a warning
    _matches(target, "my_cur_export", truth)


def test_programmatic_use(s3: S3, tmp_path: Path, gen: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract's Python API: Config.from_file, create_backend, get_dlt_destination, run_aws_pipeline."""
    import dlt

    from core.backends.factory import create_backend
    from core.config import Config
    from vendors.aws.pipeline import run_aws_pipeline

    root, bucket = tmp_path / "bucket", s3.new_bucket()
    truth = gen.write_cur2_export(root, prefix="", export_name="daily", periods=["2024-01"], rows_per_period=25)
    s3.upload_tree(root, bucket)
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    db_path = tmp_path / "api.duckdb"
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'[aws]\nbucket = "{bucket}"\n[database.duckdb]\ndatabase_path = "{db_path}"\n'
                           f'[project]\ndata_dir = "{tmp_path / "data"}"\n')

    config = Config.from_file(config_file)
    backend = create_backend(config.database)
    destination = backend.get_dlt_destination()
    pipeline = dlt.pipeline("api_check", destination=destination, dataset_name="scratch",
                            pipelines_dir=str(tmp_path / "dlt"))
    pipeline.run([{"id": 1, "note": "hello"}, {"id": 2, "note": "world"}], table_name="notes")

    report = run_aws_pipeline(config, backend=backend)
    assert report.exit_code == 0 and [o.status for o in report.outcomes] == ["loaded"]
    with backend:
        tables = {t.table: t for t in backend.list_tables("aws_billing")}
        assert tables["daily"].periods[0].rows == truth.periods["2024-01"].rows
        assert backend.execute("SELECT COUNT(*) FROM scratch.notes").rows == [(2,)]


def test_a_held_lock_times_out_with_a_clear_message(s3: S3, target: DuckDBTarget, tmp_path: Path, gen: Any) -> None:
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    gen.write_cur2_export(root, prefix="", export_name="daily", periods=["2024-01"], rows_per_period=10)
    s3.upload_tree(root, bucket)
    target.path.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_file(target), "a+") as held:  # as if another import were running
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_cli("aws", "import-cur", env=_env(s3, target, bucket, OPEN_FINOPS_PROJECT_LOCK_TIMEOUT="1"))
    assert result.code == 1
    assert "Another import" in result.stderr and "Traceback" not in result.stderr
    after = run_cli("aws", "import-cur", "--json", env=_env(s3, target, bucket))
    assert after.code == 0 and [p["status"] for p in after.json()["periods"]] == ["loaded"]
