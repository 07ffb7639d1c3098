"""The backends the API conformance suite (``test_backend_api.py``) runs against, declared as data.

Each :class:`BackendTarget` says how to build a backend on a fresh dataset, which pytest marker selects it, what
its engine reports (type names, how a timestamp comes back), what it needs installed, and its known gaps: test
name → (the exception that test raises on this engine, why). A gap becomes ``xfail(raises=..., strict=True)``, so
the day it is fixed the suite says so. Adding an engine is adding one declaration to :data:`TARGETS`.

The file helpers and :class:`Loader` (a backend driven the way ``vendors.aws.pipeline`` drives it, minus
manifests and S3) are shared by the suite and by the per-engine modules.
"""

from __future__ import annotations

import csv
import gzip
import io
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from core.backends.base import ColumnSpec, DatabaseBackend, FilePlan, LoadRecord, PeriodLoad, SourceFile
from core.state import LoadStateTracker
from core.storage import LocalStore
from vendors.aws.columns import column_specs

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "examples" / "sample-exports"
HEADER = [
    "identity/LineItemId",
    "lineItem/UsageAccountId",
    "lineItem/UnblendedCost",
    "lineItem/UsageStartDate",
    "product/ProductName",
]
#: the sample exports' ground truth (examples/sample-exports/README.md)
TRUTH = {
    ("legacy_cur", "2024-01"): (1500, 2126.1652953245),
    ("legacy_cur", "2024-02"): (1500, 1013.2912570523),
    ("cur2_daily", "2024-01"): (2000, 5707.1251579181),
    ("cur2_daily", "2024-02"): (2000, 6257.7751146662),
}


# ------------------------------------------------------------------------------------------------ files


def write_csv_gz(root: Path, key: str, rows: Sequence[Sequence[Any]], header: Sequence[str] = HEADER) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(buffer.getvalue().encode()))
    return key


def write_corrupt_gz(root: Path, key: str) -> str:
    """A gzip CSV whose header reads fine but whose body is cut in the middle of the stream."""
    rows = [[f"id-{i}", "000000000042", str(i / 7), "2024-01-01T00:00:00Z", "x" * 40] for i in range(5000)]
    write_csv_gz(root, key, rows)
    path = root / key
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return key


def write_parquet(root: Path, key: str, table: pa.Table) -> str:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return key


def line(i: int, cost: str, account: str = "001234567890", start: str = "2024-01-01T00:00:00Z") -> list[str]:
    return [f"li-{i}", account, cost, start, f"product {i}"]


def as_named(source: SourceFile, manifest_types: Mapping[str, str]) -> tuple[ColumnSpec, ...]:
    """Every column under its own name, typed as the file types it: how a native FOCUS export is planned
    (``BilledCost``, ``x_ServiceCode`` kept as the spec spells them; maps as JSON)."""
    return tuple(ColumnSpec(c.name, c.name, "json" if c.kind == "map" else c.kind, c.kind)  # type: ignore[arg-type]
                 for c in source.columns)


class Loader:
    """Drives a backend the way ``vendors.aws.pipeline`` does, minus manifests and S3. ``columns`` plans a file's
    columns (CUR's snake_case by default; :func:`as_named` for names kept as written)."""

    def __init__(self, backend: DatabaseBackend, root: Path, dataset: str, table: str = "cur_test",
                 columns: Callable[[SourceFile, Mapping[str, str]], tuple[ColumnSpec, ...]] = column_specs) -> None:
        self.backend, self.root, self.dataset, self.table = backend, root, dataset, table
        self.export = table.replace("_", "-")
        self.columns = columns

    @property
    def tracker(self) -> LoadStateTracker:
        return LoadStateTracker(self.backend.state_manager(self.dataset), vendor="aws")

    def plans(self, period: str, keys: Sequence[str], manifest_types: Mapping[str, str] | None = None) -> list[FilePlan]:
        reader = self.backend.data_reader(LocalStore(self.root))
        plans = []
        for key in keys:
            source = reader.describe(key)
            plans.append(FilePlan(source, self.columns(source, manifest_types or {}), (("billing_period", period),)))
        return plans

    def period_load(self, period: str, keys: Sequence[str], record: LoadRecord,
                    manifest_types: Mapping[str, str] | None = None, seen: list[tuple[str, int]] | None = None,
                    sum_columns: tuple[str, ...] = ()) -> PeriodLoad:
        return PeriodLoad(
            dataset=self.dataset, table=self.table, billing_period=period,
            files=self.plans(period, keys, manifest_types), record=record,
            reader=self.backend.data_reader(LocalStore(self.root)),
            on_file_done=(lambda source, n: seen.append((source.key, n))) if seen is not None else None,
            sum_columns=sum_columns,
        )

    def begin(self, period: str, keys: Sequence[str], version: str = "v1") -> LoadRecord:
        tracker = self.tracker
        tracker.ensure()
        return tracker.begin(LoadRecord("aws", self.export, period, version, "v1", f"file://{self.root}",
                                        file_count=len(keys)))

    def load(
        self, period: str, keys: Sequence[str], version: str = "v1", manifest_types: Mapping[str, str] | None = None,
        sum_columns: tuple[str, ...] = (),
    ) -> tuple[int, LoadRecord, list[tuple[str, int]]]:
        """Returns the rows, the record as the state table now holds it, and the (key, rows) of each file done
        (``sum_columns``: reconciled against the source before COMMIT)."""
        record = self.begin(period, keys, version)
        seen: list[tuple[str, int]] = []
        rows = self.backend.replace_period(self.period_load(period, keys, record, manifest_types, seen, sum_columns))
        assert record.status == "running"  # complete() stores a copy: the caller's record is the attempt as it was
        stored = next(r for r in self.history(period) if r.version_id == version)
        return rows, stored, seen

    def history(self, period: str | None = None) -> list[LoadRecord]:
        return self.tracker.history(self.export, period)


# ------------------------------------------------------------------------------------------------ targets


@dataclass
class Made:
    """One backend built by a target's factory, on the test's own dataset."""

    backend: Any
    dataset: str
    #: a connection of another session: ``query(sql) -> rows`` (no parameters), as a dashboard would read
    other_session: Callable[[str], list[tuple[Any, ...]]]


Build = Callable[[pytest.FixtureRequest, Path, dict[str, Any]], Made]


@dataclass(frozen=True)
class BackendTarget:
    """One engine the conformance suite runs against."""

    name: str
    #: pytest markers of every test of this target (``-m <marker>`` selects it)
    marks: tuple[str, ...]
    #: python modules the target needs (its driver); a missing one is an error, never a skip
    requires: tuple[str, ...]
    #: ``build(request, tmp_path, config_overrides)``: a backend on a fresh dataset of this test
    build: Build
    #: ``unreachable(request, tmp_path)``: a backend whose destination cannot be reached, and the reason's text
    unreachable: Callable[[pytest.FixtureRequest, Path], Any]
    unreachable_reason: str
    #: type names as ``table_columns`` reports them, per logical kind
    types: dict[str, str]
    #: the value a ``timestamp`` column returns for an instant (as the engine's driver gives it back)
    stamp: Callable[[datetime], Any]
    #: longest column name kept whole (None: any length)
    identifier_limit: int | None
    #: test name → (exception it raises on this engine, why)
    known_gaps: dict[str, tuple[type[BaseException], str]] = field(default_factory=dict)

    def param(self, test_name: str) -> Any:
        marks = [getattr(pytest.mark, m) for m in self.marks]
        if test_name in self.known_gaps:
            raises, reason = self.known_gaps[test_name]
            marks.append(pytest.mark.xfail(raises=raises, strict=True, reason=reason))
        return pytest.param(self, id=self.name, marks=marks)


def _conn_session(connect: Callable[[], Any]) -> Callable[[str], list[tuple[Any, ...]]]:
    def query(sql: str) -> list[tuple[Any, ...]]:
        conn = connect()
        try:
            cursor = conn.cursor()
            cursor.execute(sql)
            return [tuple(r) for r in cursor.fetchall()]
        finally:
            conn.close()

    return query


# -- DuckDB: a file of the test's own, dataset ``aws_billing`` ------------------------------------------------


def _duckdb(request: pytest.FixtureRequest, tmp_path: Path, overrides: dict[str, Any]) -> Made:
    from core.backends.duckdb import DuckDBBackend, DuckDBConfig

    config = DuckDBConfig(**{"database_path": tmp_path / "db" / "finops.duckdb", **overrides})
    backend = DuckDBBackend(config, data_dir=tmp_path / "data")
    # another connection to the same database instance: its own transactions, as a second client has
    return Made(backend, "aws_billing", _conn_session(lambda: backend.connection.cursor()))


def _duckdb_unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from core.backends.duckdb import DuckDBBackend, DuckDBConfig

    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    return DuckDBBackend(DuckDBConfig(database_path=blocked / "sub" / "finops.duckdb"))


DUCKDB = BackendTarget(
    name="duckdb",
    marks=("duckdb",),
    requires=("duckdb",),
    build=_duckdb,
    unreachable=_duckdb_unreachable,
    unreachable_reason="Cannot create the folder for the DuckDB file",
    types={"string": "VARCHAR", "double": "DOUBLE", "timestamp": "TIMESTAMP WITH TIME ZONE", "json": "JSON"},
    stamp=lambda value: value,
    identifier_limit=None,
)


# -- PostgreSQL: the session's server, a fresh schema per test ------------------------------------------------


def _pg_config(server: Any, **overrides: Any) -> Any:
    from core.backends.postgresql.config import PostgreSQLConfig

    values: dict[str, Any] = {
        "host": server.host, "port": server.port, "user": server.user, "database": server.database,
        "password": SecretStr(server.password),
    }
    values.update(overrides)
    return PostgreSQLConfig(**values)


def _postgresql(request: pytest.FixtureRequest, tmp_path: Path, overrides: dict[str, Any]) -> Made:
    from core.backends.postgresql import PostgreSQLBackend

    server = request.getfixturevalue("pg_server")
    schema = request.getfixturevalue("pg_schema")
    backend = PostgreSQLBackend(_pg_config(server, **overrides), data_dir=tmp_path / "data")
    return Made(backend, schema, _conn_session(server.connect))


def _postgresql_unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from core.backends.postgresql import PostgreSQLBackend
    from tests.conftest import closed_port

    return PostgreSQLBackend(_pg_config(request.getfixturevalue("pg_server"), port=closed_port()))


POSTGRESQL = BackendTarget(
    name="postgresql",
    marks=("postgresql",),
    requires=("psycopg2",),
    build=_postgresql,
    unreachable=_postgresql_unreachable,
    unreachable_reason="Connection refused",
    types={"string": "text", "double": "double precision", "timestamp": "timestamp with time zone", "json": "jsonb"},
    stamp=lambda value: value,
    identifier_limit=63,
)


# -- SQLite: the generic backend on a file; a dataset is an attached file ------------------------------------


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path, overrides: dict[str, Any]) -> Made:
    from core.backends.sql import GenericSQLBackend, GenericSQLConfig

    db = tmp_path / "db" / "finops.db"
    dataset = "aws_billing"
    backend = GenericSQLBackend(
        GenericSQLConfig(**{"credentials": SecretStr(f"sqlite:///{db}"), **overrides}), data_dir=tmp_path / "data"
    )

    def connect() -> sqlite3.Connection:  # any other tool doing the same ATTACH as dlt and we do
        conn = sqlite3.connect(db, timeout=5)
        conn.execute("ATTACH DATABASE ? AS ?", (str(db.with_name(f"{db.stem}__{dataset}{db.suffix}")), dataset))
        return conn

    return Made(backend, dataset, _conn_session(connect))


def _sqlite_unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from core.backends.sql import GenericSQLBackend, GenericSQLConfig

    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    return GenericSQLBackend(GenericSQLConfig(credentials=SecretStr(f"sqlite:///{blocked}/sub/finops.db")))


SQLITE = BackendTarget(
    name="sqlite",
    marks=("sql",),
    requires=("sqlalchemy", "dlt"),
    build=_sqlite,
    unreachable=_sqlite_unreachable,
    unreachable_reason="Cannot create the folder of sqlite:///",
    types={"string": "TEXT", "double": "REAL", "timestamp": "TIMESTAMP", "json": "TEXT"},
    # SQLite has no timestamp type: UTC as ISO text
    stamp=lambda value: value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
    identifier_limit=63,
    known_gaps={
        "test_value_rejected_inside_the_transaction_rolls_back": (
            pytest.fail.Exception,
            (
                "SQLite's type affinity keeps the text 'not-a-number' in the REAL column: nothing rejects it, the "
                "period is replaced and the cost column holds text"
            ),
        ),
    },
)


# -- MariaDB: the generic backend on the session's server, a fresh database per test --------------------------


def _mariadb(request: pytest.FixtureRequest, tmp_path: Path, overrides: dict[str, Any]) -> Made:
    from core.backends.sql import GenericSQLBackend, GenericSQLConfig

    server = request.getfixturevalue("maria_server")
    dataset = request.getfixturevalue("maria_dataset")
    backend = GenericSQLBackend(
        GenericSQLConfig(**{"credentials": SecretStr(server.url()), **overrides}), data_dir=tmp_path / "data"
    )
    return Made(backend, dataset, _conn_session(lambda: server.connect(autocommit=False)))


def _mariadb_unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from core.backends.sql import GenericSQLBackend, GenericSQLConfig
    from tests.conftest import closed_port

    server = request.getfixturevalue("maria_server")
    url = f"mysql+pymysql://{server.user}:{server.password}@127.0.0.1:{closed_port()}/{server.database}"
    return GenericSQLBackend(GenericSQLConfig(credentials=SecretStr(url)))


MARIADB = BackendTarget(
    name="mariadb",
    marks=("sql", "mariadb"),
    requires=("sqlalchemy", "dlt", "pymysql"),
    build=_mariadb,
    unreachable=_mariadb_unreachable,
    unreachable_reason="Can't connect to MySQL server",
    types={"string": "TEXT", "double": "DOUBLE", "timestamp": "DATETIME", "json": "LONGTEXT"},
    # DATETIME(6) has no zone: UTC, naive
    stamp=lambda value: value.astimezone(UTC).replace(tzinfo=None),
    identifier_limit=63,
)

# -- BigQuery: the session's bqemulator, a fresh dataset per test ----------------------------------------------


def _bigquery(request: pytest.FixtureRequest, tmp_path: Path, overrides: dict[str, Any]) -> Made:
    from core.backends.bigquery import BigQueryBackend, BigQueryConfig

    emulator = request.getfixturevalue("bq_emulator")
    dataset = request.getfixturevalue("bq_dataset")
    # the emulator cannot read dlt's gzip load files (dlt's own setting, for get_dlt_destination's pipelines)
    request.getfixturevalue("monkeypatch").setenv("DATA_WRITER__DISABLE_COMPRESSION", "true")
    backend = BigQueryBackend(BigQueryConfig(**{"project_id": emulator.project, **overrides}),
                              data_dir=tmp_path / "data")

    def other_session(sql: str) -> list[tuple[Any, ...]]:  # a client of its own, as a dashboard would have
        return [tuple(row.values()) for row in emulator.client().query(sql).result()]

    return Made(backend, dataset, other_session)


def _bigquery_unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from core.backends.bigquery import BigQueryBackend, BigQueryConfig
    from tests.conftest import closed_port

    emulator = request.getfixturevalue("bq_emulator")
    backend = BigQueryBackend(BigQueryConfig(project_id=emulator.project,
                                             api_endpoint=f"http://127.0.0.1:{closed_port()}"))
    backend.client.retry_deadline = 3.0  # the client retries a refused connection; not for minutes here
    return backend


_BQ_DRIFT = ("bqemulator's catalogue does not record ALTER TABLE … ADD COLUMN (its DuckDB table gets the column), so "
             "table_columns misses a column added by a later month")

BIGQUERY = BackendTarget(
    name="bigquery",
    marks=("bigquery",),
    requires=("google.cloud.bigquery", "dlt"),
    build=_bigquery,
    unreachable=_bigquery_unreachable,
    unreachable_reason="Cannot reach BigQuery",
    types={"string": "STRING", "double": "FLOAT64", "timestamp": "TIMESTAMP", "json": "JSON"},
    stamp=lambda value: value,
    identifier_limit=300,
    known_gaps={
        # The ALTER TABLE … ADD COLUMN reaches the emulator's DuckDB table, but its catalogue (tables.get and
        # INFORMATION_SCHEMA.COLUMNS) never records it; the statement is pinned by tests/unit/test_bigquery_sql.py.
        "test_new_column_is_added": (KeyError, _BQ_DRIFT),
        "test_header_only_file_empties_the_period": (AssertionError, _BQ_DRIFT),
        "test_failure_while_marking_state_rolls_back_data": (AssertionError, _BQ_DRIFT),
        # test_focus_views: the view is regenerated from table_columns, which misses April's new column here
        "test_widened_table_regenerates_a_working_view": (AssertionError, _BQ_DRIFT),
        "test_mixed_case_column_of_a_later_period_widens_the_table": (AssertionError, _BQ_DRIFT),
        "test_readers_see_the_old_version_until_commit": (
            AssertionError,
            ("bqemulator runs the jobs of every session on one DuckDB connection: a reader outside the session "
             "sees the open transaction's DELETE (BigQuery gives snapshot isolation; the statements are pinned by "
             "tests/unit/test_bigquery_sql.py)"),
        ),
    },
)

# -- Snowflake: the session's fakesnow emulator, a fresh schema per test ------------------------------------------


_NULL_TIMESTAMP = "fakesnow returns a NULL TIMESTAMP_TZ as 1970-01-01 00:00:00 UTC (Snowflake returns None)"


def _sf_config(emulator: Any, **overrides: Any) -> Any:
    from core.backends.snowflake import SnowflakeConfig

    values: dict[str, Any] = {
        "account": "emulator", "user": emulator.user, "password": SecretStr(emulator.password),
        "host": emulator.host, "port": emulator.port, "protocol": "http", "database": emulator.database,
    }
    values.update(overrides)
    return SnowflakeConfig(**values)


def _snowflake(request: pytest.FixtureRequest, tmp_path: Path, overrides: dict[str, Any]) -> Made:
    from core.backends.snowflake import SnowflakeBackend

    emulator = request.getfixturevalue("snowflake_emulator")
    schema = request.getfixturevalue("snowflake_schema")
    backend = SnowflakeBackend(_sf_config(emulator, **overrides), data_dir=tmp_path / "data")
    return Made(backend, schema, _conn_session(emulator.connect))


def _snowflake_unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from core.backends.snowflake import SnowflakeBackend
    from tests.conftest import closed_port

    return SnowflakeBackend(_sf_config(request.getfixturevalue("snowflake_emulator"), port=closed_port()))


SNOWFLAKE = BackendTarget(
    name="snowflake",
    marks=("snowflake",),
    requires=("snowflake.connector", "dlt"),
    build=_snowflake,
    unreachable=_snowflake_unreachable,
    unreachable_reason="Could not connect to Snowflake",  # the connector's words for a refused connection
    types={"string": "TEXT", "double": "FLOAT", "timestamp": "TIMESTAMP_TZ", "json": "VARIANT"},
    stamp=lambda value: value,
    identifier_limit=255,
    known_gaps={
        # fakesnow's result conversion turns a NULL TIMESTAMP_TZ into 1970-01-01 (what is stored is NULL: a
        # comparison `IS NULL` in SQL finds it); Snowflake returns None
        "test_columns_empty_in_every_row_still_load": (AssertionError, _NULL_TIMESTAMP),
        "test_state_records_round_trip": (AssertionError, _NULL_TIMESTAMP),
        "test_read_period_round_trip": (AssertionError, _NULL_TIMESTAMP),
        # dlt's snowflake destination PUTs files to an internal stage and COPYs from it; fakesnow cannot COPY
        # from an internal stage (and rejects dlt's DESCRIBE of a CREATE TABLE)
        "test_get_dlt_destination_loads_with_any_dlt_pipeline": (
            Exception, "fakesnow cannot run dlt's snowflake loader (PUT + COPY from an internal stage)"),
    },
)

#: every target of the conformance suite; a new engine is one more declaration here
TARGETS: tuple[BackendTarget, ...] = (DUCKDB, POSTGRESQL, SQLITE, MARIADB, BIGQUERY, SNOWFLAKE)
