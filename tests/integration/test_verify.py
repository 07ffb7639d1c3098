"""``finops aws verify``: the source re-read against the database, on every conformance target.

Ground truth is the generator's (rows and exact cost sums per period); a tampered table or a tampered source is
found, named, and exits 1.
"""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.integration.conftest import S3
from tests.integration.targets import DuckDBTarget, MariaDBTarget, PostgreSQLTarget, SQLiteTarget, Target

V2, V2_TABLE = "cur2-daily", "cur2_daily"

TARGETS = [
    pytest.param("duckdb", marks=pytest.mark.duckdb),
    pytest.param("postgresql", marks=pytest.mark.postgresql),
    pytest.param("sql", marks=pytest.mark.sql),
    pytest.param("mariadb", marks=[pytest.mark.sql, pytest.mark.mariadb]),
]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "postgresql":
        return PostgreSQLTarget(request.getfixturevalue("pg_server"), request.getfixturevalue("pg_schema"),
                                tmp_path / "work")
    if request.param == "mariadb":
        return MariaDBTarget(request.getfixturevalue("maria_server"), request.getfixturevalue("maria_dataset"),
                             tmp_path / "work")
    if request.param == "sql":
        return SQLiteTarget(tmp_path)
    return DuckDBTarget(tmp_path)


def _write(target: Target, sql: str) -> None:
    """A change made behind finops's back (what verify exists to find)."""
    if isinstance(target, DuckDBTarget):
        import duckdb

        with duckdb.connect(str(target.path)) as conn:
            conn.execute(sql.replace("{t}", target.table(V2_TABLE)))
    elif isinstance(target, SQLiteTarget):
        with sqlite3.connect(target.path) as conn:
            conn.execute("ATTACH DATABASE ? AS aws_billing",
                         (str(target.path.with_name(f"{target.path.stem}__aws_billing{target.path.suffix}")),))
            conn.execute(sql.replace("{t}", target.table(V2_TABLE)))
    else:
        conn = target.server.connect()  # type: ignore[attr-defined]
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql.replace("{t}", target.table(V2_TABLE)))
            conn.commit()
        finally:
            conn.close()


@pytest.fixture()
def loaded(s3: S3, tmp_path: Path, gen: Any, target: Target) -> tuple[dict[str, str], Any, Path, str, Target]:
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    truth = gen.write_cur2_export(root, prefix="exports", export_name=V2, periods=["2024-01", "2024-02"],
                                  rows_per_period=200, files_per_period=2, seed=21)
    s3.upload_tree(root, bucket)
    env = {**s3.env(), **target.env(), "OPEN_FINOPS_AWS_BUCKET": bucket}
    result = run_cli("aws", "import-cur", "--json", env=env)
    assert result.code == 0, result.stderr
    return env, truth, root, bucket, target


def _verify(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    result = run_cli("aws", "verify", "--json", *args, env=env)
    assert "Traceback" not in result.stderr
    return result.code, result.json(), result.stderr


def test_verify_matches_the_generators_truth(loaded: Any) -> None:
    env, truth, _, _, _ = loaded
    code, doc, stderr = _verify(env)
    assert code == 0 and doc["exit_code"] == 0, (doc, stderr)
    assert {(p["billing_period"], p["status"]) for p in doc["periods"]} == {("2024-01", "match"), ("2024-02", "match")}
    for period in doc["periods"]:
        expected = truth.periods[period["billing_period"]]
        for side in ("source", "table"):
            assert period[side]["rows"] == expected.rows
            assert Decimal(str(period[side]["sums"]["line_item_unblended_cost"])) == pytest.approx(
                expected.unblended_cost, abs=Decimal("1e-6"))
        assert period["source"]["by_key"].keys() == period["table"]["by_key"].keys()
    one = _verify(env, "--billing-period", "2024-02")[1]
    assert [p["billing_period"] for p in one["periods"]] == ["2024-02"]


def test_verify_finds_a_changed_table(loaded: Any) -> None:
    env, _, _, _, target = loaded
    _write(target, "UPDATE {t} SET line_item_unblended_cost = line_item_unblended_cost + 0.01 "
           "WHERE billing_period = '2024-02' AND line_item_product_code = 'AmazonEC2'")
    code, doc, stderr = _verify(env)
    assert code == 1 and doc["exit_code"] == 1
    status = {p["billing_period"]: p for p in doc["periods"]}
    assert status["2024-01"]["status"] == "match" and status["2024-02"]["status"] == "mismatch"
    differences = " ".join(status["2024-02"]["differences"])
    assert "line_item_unblended_cost: source" in differences and "/AmazonEC2" in differences
    assert "rows" not in differences  # the rows are all there; their costs changed


def test_verify_finds_a_changed_source(loaded: Any, s3: S3) -> None:
    """The bytes under a loaded version changed (a re-export over the same manifest): the source side differs."""
    import pyarrow.parquet as pq

    env, truth, root, bucket, _ = loaded
    key = truth.periods["2024-01"].data_keys[0]
    table = pq.read_table(root / key)
    pq.write_table(table.slice(0, table.num_rows - 5), root / key)
    s3.client.upload_file(str(root / key), bucket, key)  # type: ignore[attr-defined]
    code, doc, _ = _verify(env)
    assert code == 1
    january = next(p for p in doc["periods"] if p["billing_period"] == "2024-01")
    assert january["status"] == "mismatch"
    assert january["source"]["rows"] == truth.periods["2024-01"].rows - 5
    assert january["table"]["rows"] == truth.periods["2024-01"].rows
    assert any(d.startswith("rows: source") for d in january["differences"])



def test_state_records_the_source_figures_and_estimated_or_final(loaded: Any, s3: S3, gen: Any) -> None:
    env, truth, root, bucket, _ = loaded
    records = {r["billing_period"]: r for r in run_cli("aws", "show-state", "--json", env=env).json()["records"]}
    for period, record in records.items():  # what the reconciliation saw of the source, kept in the state
        assert record["source_row_count"] == truth.periods[period].rows
        sums = json.loads(record["source_sums"])
        assert Decimal(str(sums["line_item_unblended_cost"])) == pytest.approx(truth.periods[period].unblended_cost,
                                                                               abs=Decimal("1e-6"))
    # the generator leaves the last month without an invoice, as AWS does until the invoice is issued
    assert records["2024-01"]["period_status"] == "final" and records["2024-01"]["invoice_ids"]
    assert records["2024-02"]["period_status"] == "estimated" and records["2024-02"]["invoice_ids"] is None

    # AWS restates the invoiced month: loud, and the summary still names the months that are estimates
    restated = gen.write_cur2_export(root, prefix="exports", export_name=V2, periods=["2024-01"], rows_per_period=150,
                                     files_per_period=1, seed=22, execution_ids={"2024-01": "restated-after-invoice"})
    s3.sync_tree(root, bucket)
    result = run_cli("aws", "import-cur", env=env)
    assert result.code == 0, result.stderr
    assert "2024-01 was FINAL" in " ".join(result.stderr.split()) and "closed invoice changed" in result.stderr
    assert "Still estimated (no invoice yet): cur2-daily 2024-01" in " ".join(result.stdout.split())
    january = run_cli("aws", "show-state", "--billing-period", "2024-01", "--json", env=env).json()["records"]
    assert [(r["version_id"] == "restated-after-invoice", r["period_status"]) for r in january if r["is_current"]] \
        == [(True, "estimated")]

    # what the restatement changed, per account, product and line item type, adds up to the generator's truth
    changes = run_cli("aws", "show-changes", "--billing-period", "2024-01", "--json", env=env).json()["changes"]
    assert changes and {c["new_version"] for c in changes} == {"restated-after-invoice"}
    delta = sum(Decimal(str(c["new_cost"])) - Decimal(str(c["old_cost"])) for c in changes)
    expected = restated.periods["2024-01"].unblended_cost - truth.periods["2024-01"].unblended_cost
    assert delta == pytest.approx(expected, abs=Decimal("1e-6"))
    assert sum(c["new_rows"] - c["old_rows"] for c in changes) == 150 - truth.periods["2024-01"].rows
    assert "restated: " in " ".join(result.stdout.split())  # the summary's one line per restated period
