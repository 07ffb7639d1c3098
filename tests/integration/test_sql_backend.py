"""GenericSQLBackend on SQLite (dlt's ``sqlalchemy`` destination), plus the same code path against PostgreSQL.

SQLite has no schemas: dlt maps a dataset to ``<stem>__<dataset><suffix>`` attached under the dataset's name, and
so do we — these tests prove the three views (ours, dlt's, a plain sqlite3 connection doing the same ATTACH)
agree on where ``<dataset>._finops_load_state`` and ``<dataset>.<table>`` live.
"""

from __future__ import annotations

import math
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr

from core.backends.base import LoadRecord
from core.backends.sql import GenericSQLBackend
from core.backends.sql.config import GenericSQLConfig
from core.errors import ConfigError, DestinationError, LoadError, LockTimeoutError
from core.backends.sqlengine.state import SqlStateManager
from tests.integration.test_postgresql_backend import (
    HEADER,
    SAMPLES,
    TRUTH,
    Loader,
    line,
    write_corrupt_gz,
    write_csv_gz,
    write_parquet,
)

pytestmark = pytest.mark.sql

DATASET = "aws_billing"


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "finops.db"


@pytest.fixture()
def backend(db_path: Path, tmp_path: Path) -> Iterator[GenericSQLBackend]:
    instance = GenericSQLBackend(GenericSQLConfig(credentials=SecretStr(f"sqlite:///{db_path}")), data_dir=tmp_path / "data")
    yield instance
    instance.close()


@pytest.fixture()
def loader(backend: GenericSQLBackend, tmp_path: Path) -> Loader:
    root = tmp_path / "bucket"
    root.mkdir()
    return Loader(backend, root, DATASET)


def dataset_file(db_path: Path, dataset: str = DATASET) -> Path:
    return db_path.parent / f"{db_path.stem}__{dataset}{db_path.suffix}"


def reader(db_path: Path, dataset: str = DATASET) -> sqlite3.Connection:
    """A plain sqlite3 connection doing the same ATTACH, as any other tool would."""
    conn = sqlite3.connect(db_path)
    conn.execute("ATTACH DATABASE ? AS ?", (str(dataset_file(db_path, dataset)), dataset))
    return conn


def period_rows(db_path: Path, period: str, table: str = "cur_test") -> list[tuple[Any, ...]]:
    with reader(db_path) as conn:
        return conn.execute(
            f'SELECT identity_line_item_id, line_item_unblended_cost FROM "{DATASET}"."{table}" '
            "WHERE billing_period = ? ORDER BY identity_line_item_id",
            [period],
        ).fetchall()


def test_dialect_and_capabilities_follow_the_url(tmp_path: Path) -> None:
    sqlite = GenericSQLBackend(GenericSQLConfig(credentials=SecretStr(f"sqlite:///{tmp_path}/x.db")))
    assert (sqlite.dialect, sqlite.types["json"], sqlite.quote("a b")) == ("sqlite", "TEXT", '"a b"')
    mysql = GenericSQLBackend(GenericSQLConfig(credentials=SecretStr("mysql+pymysql://u:pw@h/db")))
    assert (mysql.dialect, mysql.capabilities.transactional_ddl, mysql.quote("a`b")) == ("mysql", False, "`a``b`")
    assert GenericSQLBackend.dialect == "sqlite"  # the class default is untouched


def test_replace_period_values_state_and_layout(loader: Loader, backend: GenericSQLBackend, db_path: Path) -> None:
    a = write_csv_gz(loader.root, "p1/a.csv.gz", [line(1, "0.1234567890123456789"), line(2, "9.984E-7", "000000000007")])
    b = write_csv_gz(loader.root, "p1/b.csv.gz", [["li-3", "001234567890", "-1.5", "2024-01-31T23:00:00Z", "NA"]])
    rows, record, seen = loader.load("2024-01", [a, b])
    assert (rows, seen) == (3, [(a, 2), (b, 1)])
    with reader(db_path) as conn:
        values = conn.execute(
            f'SELECT identity_line_item_id, line_item_usage_account_id, line_item_unblended_cost, '
            f'line_item_usage_start_date, product_product_name FROM "{DATASET}".cur_test ORDER BY 1'
        ).fetchall()
        columns = {r[1]: r[2] for r in conn.execute(f'PRAGMA "{DATASET}".table_info(cur_test)')}
        tables = {r[0] for r in conn.execute(f'SELECT name FROM "{DATASET}".sqlite_master WHERE type = ?', ["table"])}
        main_tables = {r[0] for r in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")}
        plan = " ".join(str(r) for r in conn.execute(
            f'EXPLAIN QUERY PLAN DELETE FROM "{DATASET}".cur_test WHERE billing_period = ?', ["2024-01"]))
    assert values[0] == ("li-1", "001234567890", float("0.1234567890123456789"), "2024-01-01 00:00:00.000000", "product 1")
    assert values[1][1:3] == ("000000000007", 9.984e-7)
    assert values[2][3:] == ("2024-01-31 23:00:00.000000", "NA")  # UTC, as ISO text
    assert columns["line_item_unblended_cost"] == "REAL" and columns["line_item_usage_account_id"] == "TEXT"
    assert not [c for c in columns if c.startswith("_dlt")]
    # the state and the export table live in the dataset's file; dlt's tables and staging stay out of it
    assert tables == {"cur_test", "_finops_load_state"}
    assert main_tables == set()
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan
    assert dataset_file(db_path, f"{DATASET}_finops_dlt").exists()
    [state] = loader.history("2024-01")
    assert (state.status, state.is_current, state.row_count, state.file_count) == ("completed", True, 3, 2)
    assert isinstance(state.started_at, datetime) and state.started_at.tzinfo is not None
    assert record.status == "completed"


def test_json_from_parquet_maps_is_text(loader: Loader, db_path: Path) -> None:
    table = pa.table({
        "identity_line_item_id": ["a", "b"],
        "line_item_unblended_cost": [1.25, 2.5],
        "product": pa.array([[("region", "eu-west-1"), ("quote", 'say "hi"')], None], pa.map_(pa.string(), pa.string())),
    })
    assert loader.load("2024-03", [write_parquet(loader.root, "p/cur2.parquet", table)])[0] == 2
    with reader(db_path) as conn:
        got = conn.execute(
            f"SELECT json_extract(product, '$.region'), json_extract(product, '$.quote'), product IS NULL "
            f'FROM "{DATASET}".cur_test ORDER BY identity_line_item_id'
        ).fetchall()
    assert got == [("eu-west-1", 'say "hi"', 0), (None, None, 1)]  # one JSON text, not encoded twice


def test_reload_replaces_without_duplicates_and_keeps_other_periods(loader: Loader, db_path: Path) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "jan/v1.csv.gz", [line(1, "1"), line(2, "2")])], "v1")
    loader.load("2024-02", [write_csv_gz(loader.root, "feb/v1.csv.gz", [line(10, "10")])], "v1")
    jan2 = write_csv_gz(loader.root, "jan/v2.csv.gz", [line(1, "1.5"), line(3, "3"), line(4, "4")])
    assert loader.load("2024-01", [jan2], "v2")[0] == 3
    assert period_rows(db_path, "2024-01") == [("li-1", 1.5), ("li-3", 3.0), ("li-4", 4.0)]
    assert period_rows(db_path, "2024-02") == [("li-10", 10.0)]
    assert {r.version_id: r.is_current for r in loader.history("2024-01")} == {"v1": False, "v2": True}
    loader.load("2024-01", [jan2], "v2")
    assert len(period_rows(db_path, "2024-01")) == 3


def test_new_column_is_added(loader: Loader, db_path: Path) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])])
    key = write_csv_gz(loader.root, "b.csv.gz", [[*line(2, "2"), "0042"]], [*HEADER, "resourceTags/user:Owner Team"])
    loader.load("2024-02", [key])
    with reader(db_path) as conn:
        tags = conn.execute(
            f'SELECT billing_period, resource_tags_user_owner_team FROM "{DATASET}".cur_test ORDER BY 1'
        ).fetchall()
    assert tags == [("2024-01", None), ("2024-02", "0042")]


def test_corrupt_file_fails_and_keeps_the_previous_version(loader: Loader, db_path: Path) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "v1/a.csv.gz", [line(1, "1"), line(2, "2")])], "v1")
    new_good = write_csv_gz(loader.root, "v2/a.csv.gz", [line(7, "7")])
    bad = write_corrupt_gz(loader.root, "v2/b.csv.gz")
    with pytest.raises(LoadError) as error:
        loader.load("2024-01", [new_good, bad], "v2")
    assert "b.csv.gz" in error.value.message
    assert period_rows(db_path, "2024-01") == [("li-1", 1.0), ("li-2", 2.0)]
    history = {r.version_id: r for r in loader.history("2024-01")}
    assert history["v1"].is_current and history["v2"].status == "running" and not history["v2"].is_current
    assert loader.load("2024-01", [new_good], "v3")[0] == 1
    assert period_rows(db_path, "2024-01") == [("li-7", 7.0)]


def test_failure_inside_the_transaction_rolls_back_ddl_and_data(
    loader: Loader, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "v1.csv.gz", [line(1, "1")])], "v1")
    seen_by_reader: list[Any] = []

    def fail(self: SqlStateManager, record: LoadRecord) -> None:
        with reader(db_path) as conn:  # another connection while our transaction is open
            seen_by_reader.append(conn.execute(f'SELECT identity_line_item_id FROM "{DATASET}".cur_test').fetchall())
        raise LoadError("state update failed")

    monkeypatch.setattr(SqlStateManager, "mark_current", fail)
    key = write_csv_gz(loader.root, "v2.csv.gz", [[*line(2, "2"), "x"]], [*HEADER, "resourceTags/user:Team"])
    with pytest.raises(LoadError):
        loader.load("2024-01", [key], "v2")
    monkeypatch.undo()
    assert seen_by_reader == [[("li-1",)]]  # the old version until the end, never a gap
    assert period_rows(db_path, "2024-01") == [("li-1", 1.0)]
    with reader(db_path) as conn:  # the ALTER TABLE was rolled back too
        columns = {r[1] for r in conn.execute(f'PRAGMA "{DATASET}".table_info(cur_test)')}
    assert "resource_tags_user_team" not in columns
    assert {r.version_id: r.status for r in loader.history("2024-01")} == {"v1": "completed", "v2": "running"}


def test_zero_file_period_deletes_its_rows(loader: Loader, backend: GenericSQLBackend, db_path: Path) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])], "v1")
    loader.load("2024-02", [write_csv_gz(loader.root, "b.csv.gz", [line(3, "3")])], "v1")
    rows, record, _ = loader.load("2024-01", [], "v2")
    assert rows == 0 and (record.status, record.row_count) == ("completed", 0)
    assert period_rows(db_path, "2024-01") == [] and period_rows(db_path, "2024-02") == [("li-3", 3.0)]


def test_header_only_file_empties_the_period(loader: Loader, backend: GenericSQLBackend, db_path: Path) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])], "v1")
    empty = write_csv_gz(loader.root, "b.csv.gz", [], [*HEADER, "resourceTags/user:Team"])
    rows, record, seen = loader.load("2024-01", [empty], "v2")
    assert (rows, seen, record.status) == (0, [(empty, 0)], "completed")
    assert period_rows(db_path, "2024-01") == []
    assert "resource_tags_user_team" in backend.table_columns(DATASET, "cur_test")


def test_state_records_round_trip(backend: GenericSQLBackend) -> None:
    store = backend.state_manager(DATASET)
    store.ensure()
    store.ensure()
    started = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    first = LoadRecord("aws", "cur-x", "2024-02", "ver-1", "v2", "s3://b/x?y", status="completed", file_count=3,
                       row_count=42, started_at=started, finished_at=started)
    second = LoadRecord("aws", "cur-x", "2024-02", "ver-2", "v2", "s3://b/x", status="failed", file_count=1,
                        started_at=started.replace(hour=13), error_message="100% broken? 'q' \"d\" :colon")
    store.upsert(first)
    store.upsert(second)
    store.mark_current(first)
    records = store.records(vendor="aws", export_name="cur-x")
    assert records[0] == LoadRecord(**{**first.as_dict(), "is_current": True})
    assert records[1].error_message == second.error_message and records[1].finished_at is None
    assert records[1].started_at == started.replace(hour=13)
    store.mark_current(second)
    assert [r.is_current for r in store.records(vendor="aws", export_name="cur-x", billing_period="2024-02")] == [False, True]


def test_list_tables(loader: Loader, backend: GenericSQLBackend) -> None:
    assert backend.list_tables(DATASET, cost_column="line_item_unblended_cost") == []  # nothing attached or created yet
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "0.1"), line(2, "0.2")])])
    Loader(backend, loader.root, DATASET, "cur_other").load("2024-02", [write_csv_gz(loader.root, "b.csv.gz", [line(3, "3")])])
    tables = backend.list_tables(DATASET, cost_column="line_item_unblended_cost")
    assert [t.table for t in tables] == ["cur_other", "cur_test"]
    assert tables[1].periods[0].rows == 2 and math.isclose(tables[1].periods[0].cost, 0.3)
    # reading the catalogue leaves no transaction open: the next replace still runs in its own
    assert loader.load("2024-01", [write_csv_gz(loader.root, "d.csv.gz", [line(5, "5")])], "v2")[0] == 1


def test_dlt_sees_the_same_dataset(loader: Loader, backend: GenericSQLBackend, tmp_path: Path) -> None:
    """A dlt pipeline on get_dlt_destination() with the same dataset reads our tables and writes next to them."""
    import dlt

    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1"), line(2, "2")])])
    pipeline = dlt.pipeline(
        pipeline_name=f"user_{uuid.uuid4().hex[:8]}", pipelines_dir=str(tmp_path / "dlt-user"),
        destination=backend.get_dlt_destination(), dataset_name=DATASET, progress=None,
    )
    pipeline.run([{"id": 1, "name": "tiny"}], table_name="tiny")
    with pipeline.sql_client() as client:
        assert client.execute_sql(f"SELECT COUNT(*) FROM {DATASET}.cur_test")[0][0] == 2
        assert client.execute_sql(f"SELECT COUNT(*) FROM {DATASET}._finops_load_state")[0][0] == 1
    assert [r[0] for r in backend.execute(f'SELECT name FROM "{DATASET}".tiny').rows] == ["tiny"]


def test_check_ok_and_unreachable(backend: GenericSQLBackend, tmp_path: Path) -> None:
    result = backend.check()
    assert result.ok and result.details["dialect"] == "sqlite"
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    broken = GenericSQLBackend(GenericSQLConfig(credentials=SecretStr(f"sqlite:///{blocked}/sub/finops.db")))
    result = broken.check()
    assert not result.ok and result.error


def test_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        GenericSQLBackend(GenericSQLConfig()).connect()
    assert "OPEN_FINOPS_DATABASE_SQL_CREDENTIALS" in error.value.hint
    with pytest.raises(ConfigError):
        GenericSQLBackend(GenericSQLConfig(credentials=SecretStr("sqlite://"))).connect()
    with pytest.raises(ConfigError):
        GenericSQLBackend(GenericSQLConfig(credentials=SecretStr("not a url"))).connect()


def test_file_lock_blocks_a_second_holder(tmp_path: Path, db_path: Path) -> None:
    url = SecretStr(f"sqlite:///{db_path}")
    first = GenericSQLBackend(GenericSQLConfig(credentials=url), data_dir=tmp_path / "data")
    second = GenericSQLBackend(GenericSQLConfig(credentials=url), data_dir=tmp_path / "data")
    with first.lock("cur-x", timeout=1):
        with pytest.raises(LockTimeoutError):
            with second.lock("cur-x", timeout=0.3):
                pass
    with second.lock("cur-x", timeout=0):
        pass


def test_sample_exports_end_to_end(backend: GenericSQLBackend, tmp_path: Path) -> None:
    from core.config import Config
    from vendors.aws.pipeline import run_aws_pipeline

    empty = tmp_path / "config.toml"
    empty.write_text("")
    config = Config.load(empty, environ={"OPEN_FINOPS_AWS_SOURCE_DIR": str(SAMPLES), "OPEN_FINOPS_PROJECT_DATA_DIR": str(tmp_path / "data")})
    report = run_aws_pipeline(config, backend=backend)
    assert report.exit_code == 0 and report.to_dict()["summary"]["loaded"] == 4
    with backend:
        found = {(t.table, p.billing_period): (p.rows, p.cost) for t in backend.list_tables(DATASET, cost_column="line_item_unblended_cost") for p in t.periods}
    assert found.keys() == TRUTH.keys()
    for key, (rows, cost) in TRUTH.items():
        assert found[key][0] == rows and math.isclose(found[key][1], cost, abs_tol=1e-6), key
    assert run_aws_pipeline(config, backend=backend).to_dict()["summary"]["skipped"] == 4


@pytest.mark.parametrize("destination", ["sqlalchemy", "postgres"])
def test_same_code_path_on_postgresql(pg_server: Any, pg_schema: str, tmp_path: Path, destination: str) -> None:
    """The generic backend over a server engine (CREATE SCHEMA, JSONB cast, timestamptz state), with dlt's
    sqlalchemy destination or any other dlt destination named in the settings."""
    url = f"postgresql+psycopg2://{pg_server.user}:{pg_server.password}@{pg_server.host}:{pg_server.port}/{pg_server.database}"
    config = GenericSQLConfig(credentials=SecretStr(url), destination=destination)
    backend = GenericSQLBackend(config, data_dir=tmp_path / "data")
    assert backend.config.describe().startswith("postgresql+psycopg2://finops:***@")
    root = tmp_path / "bucket"
    root.mkdir()
    loader = Loader(backend, root, pg_schema)
    table = pa.table({
        "identity_line_item_id": ["a"], "line_item_unblended_cost": [1.5],
        "product": pa.array([[("region", "eu-west-1")]], pa.map_(pa.string(), pa.string())),
    })
    try:
        assert loader.load("2024-01", [write_parquet(root, "a.parquet", table)])[0] == 1
        assert loader.load("2024-01", [write_parquet(root, "a.parquet", table)], "v2")[0] == 1
        rows = backend.execute(f"SELECT product ->> 'region', line_item_unblended_cost FROM \"{pg_schema}\".cur_test").rows
        assert rows == [("eu-west-1", 1.5)]
        assert [r.is_current for r in loader.history("2024-01")] == [False, True]
        assert backend.check().ok
    finally:
        backend.close()


def test_long_column_names_on_a_server_engine(pg_server: Any, pg_schema: str, tmp_path: Path) -> None:
    """A tag column past the server's 63-byte limit: shortened stably, so the second load finds it again
    (PostgreSQL would cut it silently and the next ALTER TABLE would fail; MySQL would refuse it)."""
    url = f"postgresql+psycopg2://{pg_server.user}:{pg_server.password}@{pg_server.host}:{pg_server.port}/{pg_server.database}"
    backend = GenericSQLBackend(GenericSQLConfig(credentials=SecretStr(url)), data_dir=tmp_path / "data")
    root = tmp_path / "bucket"
    long_name = "resourceTags/user:" + "k" * 60 + "Owner"
    key = write_csv_gz(root, "a.csv.gz", [[*line(1, "1"), "team-a"]], [*HEADER, long_name])
    loader = Loader(backend, root, pg_schema)
    try:
        assert loader.load("2024-01", [key])[0] == 1
        assert loader.load("2024-02", [key])[0] == 1  # the same column, found again
        columns = [c for c in backend.table_columns(pg_schema, "cur_test") if c.startswith("resource_tags")]
        assert len(columns) == 1 and len(columns[0]) <= 63
        rows = backend.execute(f'SELECT "{columns[0]}" FROM "{pg_schema}".cur_test ORDER BY billing_period').rows
        assert rows == [("team-a",), ("team-a",)]
    finally:
        backend.close()


def test_unreachable_server_is_a_destination_error(pg_server: Any) -> None:
    url = f"postgresql+psycopg2://{pg_server.secure_user}:Wr0ng-Secret@{pg_server.host}:{pg_server.port}/{pg_server.database}"
    backend = GenericSQLBackend(GenericSQLConfig(credentials=SecretStr(url)))
    with pytest.raises(DestinationError) as error:
        backend.connect()
    assert error.value.exit_code == 4 and "Wr0ng-Secret" not in error.value.message
    assert "password authentication failed" in error.value.message


def test_dry_run_on_sqlite_creates_no_file(tmp_path: Path) -> None:
    """Neither the database file nor a dataset's attached file appears before the first real import."""
    from tests.conftest import run_cli

    db = tmp_path / "db" / "finops.db"
    env = {"OPEN_FINOPS_DATABASE_BACKEND": "sql", "OPEN_FINOPS_DATABASE_SQL_CREDENTIALS": f"sqlite:///{db}",
           "OPEN_FINOPS_PROJECT_DATA_DIR": str(tmp_path / "work"), "OPEN_FINOPS_AWS_SOURCE_DIR": str(SAMPLES)}
    plan = run_cli("aws", "import-cur", "--dry-run", "--json", env=env, cwd=tmp_path)
    assert plan.code == 0, plan.stderr
    assert {p["status"] for p in plan.json()["periods"]} == {"planned"}
    assert not db.exists() and not db.parent.exists()
    assert run_cli("aws", "import-cur", "--json", env=env, cwd=tmp_path).code == 0
    before = sorted(p.name for p in db.parent.iterdir())
    other = run_cli("aws", "import-cur", "--dry-run", "--json", env={**env, "OPEN_FINOPS_AWS_DATASET_NAME": "other"},
                    cwd=tmp_path)
    assert other.code == 0, other.stderr
    assert {p["status"] for p in other.json()["periods"]} == {"planned"}
    assert sorted(p.name for p in db.parent.iterdir()) == before  # no finops__other.db


def test_check_on_mariadb_survives_a_leftover_probe(maria_server: Any) -> None:
    """MariaDB commits DDL at once: the check drops its probe database even after an earlier check died midway."""
    conn = maria_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS _finops_check")
            cur.execute("CREATE TABLE IF NOT EXISTS _finops_check.probe (id INTEGER)")
        backend = GenericSQLBackend(GenericSQLConfig(credentials=SecretStr(maria_server.url())))
        result = backend.check()
        backend.close()
        assert result.ok, result.error
        assert result.details["dialect"] == "mysql"
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '_finops_check'")
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()
