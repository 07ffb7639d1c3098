"""What only BigQuery has, against bqemulator (marker ``bigquery``): the month partitioning and clustering read back
from the tables' metadata, ``db copy`` to and from BigQuery through the CLI, ``backends check`` through the CLI.
Everything every engine does is in the two conformance suites; what the emulator cannot run is pinned by
``tests/unit/test_bigquery_sql.py``.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.conftest import run_cli
from tests.integration.backend_targets import SAMPLES, TRUTH, Loader, line, write_csv_gz, write_parquet
from tests.integration.targets import BigQueryTarget, DuckDBTarget

pytestmark = pytest.mark.bigquery


@pytest.fixture()
def backend(bq_emulator: Any, bq_dataset: str, tmp_path: Path) -> Any:
    from core.backends.bigquery import BigQueryBackend, BigQueryConfig

    made = BigQueryBackend(BigQueryConfig(project_id=bq_emulator.project, dataset=bq_dataset), data_dir=tmp_path)
    yield made
    made.close()


def test_export_tables_are_partitioned_by_month_and_clustered(backend: Any, bq_dataset: str, tmp_path: Path) -> None:
    loader = Loader(backend, tmp_path / "bucket", bq_dataset)
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1"), line(2, "2")])])
    loader.load("2024-02", [write_csv_gz(loader.root, "b.csv.gz", [line(3, "3")])])
    table = backend.client.client.get_table(backend.table_ref(bq_dataset, "cur_test"))
    assert (table.time_partitioning.type_, table.time_partitioning.field) == ("MONTH", "billing_period_date")
    assert table.clustering_fields == ["line_item_usage_account_id", "line_item_usage_start_date"]
    assert {f.name: f.field_type for f in table.schema}["billing_period_date"] == "DATE"
    partitions = backend.execute(
        f"SELECT partition_id, total_rows FROM {backend.information_schema(bq_dataset, 'PARTITIONS')} "
        "WHERE table_name = ? ORDER BY partition_id", ["cur_test"]).rows
    assert partitions == [("202401", 2), ("202402", 1)]  # one partition per month
    dates = backend.execute(f"SELECT DISTINCT billing_period, billing_period_date FROM "
                            f"{backend.qualified(bq_dataset, 'cur_test')} ORDER BY 1").rows
    assert dates == [("2024-01", date(2024, 1, 1)), ("2024-02", date(2024, 2, 1))]
    # the partition column is the engine's: not one of the export's columns, not read back by db copy
    assert "billing_period_date" not in backend.table_columns(bq_dataset, "cur_test")
    assert "billing_period_date" not in backend.read_period(bq_dataset, "cur_test", "2024-01").schema.names


def test_exports_without_the_clustering_columns_are_partitioned_only(backend: Any, bq_dataset: str,
                                                                    tmp_path: Path) -> None:
    loader = Loader(backend, tmp_path / "bucket", bq_dataset, "focus_like")
    table = pa.table({"identity_line_item_id": ["a"], "product": pa.array([[("k", "v")]], pa.map_(pa.string(), pa.string()))})
    loader.load("2024-03", [write_parquet(loader.root, "a.parquet", table)])
    meta = backend.client.client.get_table(backend.table_ref(bq_dataset, "focus_like"))
    assert meta.time_partitioning.field == "billing_period_date" and not meta.clustering_fields
    assert {f.name: f.field_type for f in meta.schema}["product"] == "JSON"


def test_db_copy_to_and_from_bigquery(bq_emulator: Any, bq_dataset: str, tmp_path: Path) -> None:
    """The sample exports imported into DuckDB (dataset: the test's), copied to BigQuery (verified by rows and cost sums, state carried),
    then copied back into another DuckDB file."""
    duck = DuckDBTarget(tmp_path)
    bq = BigQueryTarget(bq_emulator, bq_dataset, tmp_path / "work")
    env = {**duck.env(), **bq.env(), "OPEN_FINOPS_DATABASE_BACKEND": "duckdb", "OPEN_FINOPS_AWS_SOURCE_DIR": str(SAMPLES)}
    assert run_cli("aws", "import-cur", env=env).code == 0
    copy = run_cli("db", "copy", "--from", "duckdb", "--to", "bigquery", "--json", env=env)
    assert copy.code == 0, copy.stderr
    assert {(p["table"], p["status"]) for p in copy.json()["periods"]} == {
        ("cur2_daily", "copied"), ("legacy_cur", "copied")}
    for table in ("cur2_daily", "legacy_cur"):
        found = bq.period_totals(table)
        for (name, period), (rows, cost) in TRUTH.items():
            if name == table:
                assert found[period][0] == rows and math.isclose(found[period][1], cost, abs_tol=1e-6)
    state = run_cli("aws", "show-state", "--json", env={**env, "OPEN_FINOPS_DATABASE_BACKEND": "bigquery"})
    assert state.code == 0, state.stderr
    assert len(state.json()["records"]) == 4 and all(r["is_current"] for r in state.json()["records"])
    again = run_cli("db", "copy", "--from", "duckdb", "--to", "bigquery", "--json", env=env)
    assert {p["status"] for p in again.json()["periods"]} == {"skipped"}  # resumable: nothing to do
    back = tmp_path / "back.duckdb"
    home = run_cli("db", "copy", "--from", "bigquery", "--to", "duckdb", "--to-config", f"database_path={back}",
                   "--json", env=env)
    assert home.code == 0, home.stderr
    import duckdb

    conn = duckdb.connect(str(back), read_only=True)
    try:
        totals = {(t, p): (n, c) for t in ("cur2_daily", "legacy_cur") for p, n, c in conn.execute(
            f'SELECT billing_period, COUNT(*), SUM(line_item_unblended_cost) FROM "{bq_dataset}".{t} GROUP BY 1'
        ).fetchall()}
        columns = [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                              "WHERE table_name = 'cur2_daily'").fetchall()]
    finally:
        conn.close()
    assert totals.keys() == TRUTH.keys()
    assert all(totals[k][0] == TRUTH[k][0] and math.isclose(totals[k][1], TRUTH[k][1], abs_tol=1e-6) for k in TRUTH)
    assert "billing_period_date" not in columns


def test_backends_check_through_the_cli(bq_emulator: Any, bq_dataset: str, tmp_path: Path) -> None:
    target = BigQueryTarget(bq_emulator, bq_dataset, tmp_path / "work")
    fresh = run_cli("backends", "check", "--json", env=target.env())
    assert fresh.code == 0, fresh.stderr
    assert fresh.json()["details"]["can_create_schema"] is True  # the dataset does not exist yet: may be created
    wrong = run_cli("backends", "check", "--json", env={**target.env(), "OPEN_FINOPS_DATABASE_BIGQUERY_LOCATION": "EU"})
    assert wrong.code == 0  # nothing exists yet: a dataset would be created in EU
    assert run_cli("aws", "import-cur", env={**target.env(), "OPEN_FINOPS_AWS_SOURCE_DIR": str(SAMPLES)}).code == 0
    found = run_cli("backends", "check", "--json", env=target.env())
    assert found.code == 0 and found.json()["details"]["schema_exists"] == bq_dataset
    elsewhere = run_cli("backends", "check", "--json", env={**target.env(), "OPEN_FINOPS_DATABASE_BIGQUERY_LOCATION": "EU"})
    assert elsewhere.code == 4
    assert "is in US, not in the configured location EU" in elsewhere.stdout + elsewhere.stderr
    no_project = run_cli("backends", "check", env={**target.env(), "OPEN_FINOPS_DATABASE_BIGQUERY_PROJECT_ID": ""})
    assert no_project.code == 2 and "project_id" in no_project.stderr
