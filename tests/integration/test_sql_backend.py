"""What only the generic SQL backend does: the dialect and capabilities a URL brings, SQLite's attached-file
layout as dlt and any other tool see it, the file lock, configuration errors, a dry run that creates no file,
MariaDB's check after a leftover probe, and the same code path on PostgreSQL through SQLAlchemy.

Everything the backend API promises on every engine runs on SQLite and MariaDB in the conformance suite,
``test_backend_api.py``; it is not repeated here.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr

from core.backends.sql import GenericSQLBackend
from core.backends.sql.config import GenericSQLConfig
from core.errors import ConfigError, DestinationError, LockTimeoutError
from tests.integration.backend_targets import HEADER, SAMPLES, Loader, line, write_csv_gz, write_parquet

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


def test_sqlite_layout_one_file_per_dataset(loader: Loader, db_path: Path) -> None:
    """The state and the export table live in the dataset's file; dlt's staging and bookkeeping in their own."""
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1"), line(2, "2")])])
    with reader(db_path) as conn:
        tables = {r[0] for r in conn.execute(f'SELECT name FROM "{DATASET}".sqlite_master WHERE type = ?', ["table"])}
        main_tables = {r[0] for r in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")}
        plan = " ".join(str(r) for r in conn.execute(
            f'EXPLAIN QUERY PLAN DELETE FROM "{DATASET}".cur_test WHERE billing_period = ?', ["2024-01"]))
    assert tables == {"cur_test", "_finops_load_state"}
    assert main_tables == set()
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan
    assert dataset_file(db_path, f"{DATASET}_finops_dlt").exists()


def test_dialect_and_capabilities_follow_the_url(tmp_path: Path) -> None:
    sqlite = GenericSQLBackend(GenericSQLConfig(credentials=SecretStr(f"sqlite:///{tmp_path}/x.db")))
    assert (sqlite.dialect, sqlite.types["json"], sqlite.quote("a b")) == ("sqlite", "TEXT", '"a b"')
    mysql = GenericSQLBackend(GenericSQLConfig(credentials=SecretStr("mysql+pymysql://u:pw@h/db")))
    assert (mysql.dialect, mysql.capabilities.transactional_ddl, mysql.quote("a`b")) == ("mysql", False, "`a``b`")
    assert GenericSQLBackend.dialect == "sqlite"  # the class default is untouched



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

