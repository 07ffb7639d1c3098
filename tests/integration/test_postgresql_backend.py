"""PostgreSQLBackend against a real server (``pg_server``): replace, drift, failures, state, lock, COPY.

No S3 here: files are written to a folder read through :class:`LocalStore`, planned the way the pipeline plans
them (``Boto3DataReader.describe`` + ``column_specs``). The helpers at the top are shared with
``test_sql_backend.py``.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from core.backends.base import DatabaseBackend, FilePlan, LoadRecord, PeriodLoad
from core.backends.postgresql import PostgreSQLBackend
from core.backends.postgresql.config import PostgreSQLConfig
from core.errors import DestinationError, LoadError, LockTimeoutError
from core.backends.sqlengine.state import SqlStateManager
from core.state import LoadStateTracker
from core.storage import LocalStore
from tests.conftest import run_cli
from vendors.aws.columns import column_specs

pytestmark = pytest.mark.postgresql

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


# ------------------------------------------------------------------------------------------ shared helpers


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


class Loader:
    """Drives a backend the way ``vendors.aws.pipeline`` does, minus manifests and S3."""

    def __init__(self, backend: DatabaseBackend, root: Path, dataset: str, table: str = "cur_test") -> None:
        self.backend, self.root, self.dataset, self.table = backend, root, dataset, table
        self.export = table.replace("_", "-")

    @property
    def tracker(self) -> LoadStateTracker:
        return LoadStateTracker(self.backend.state_manager(self.dataset), vendor="aws")

    def plans(self, period: str, keys: Sequence[str], manifest_types: Mapping[str, str] | None = None) -> list[FilePlan]:
        reader = self.backend.data_reader(LocalStore(self.root))
        plans = []
        for key in keys:
            source = reader.describe(key)
            plans.append(FilePlan(source, column_specs(source, manifest_types or {}), (("billing_period", period),)))
        return plans

    def load(
        self, period: str, keys: Sequence[str], version: str = "v1", manifest_types: Mapping[str, str] | None = None
    ) -> tuple[int, LoadRecord, list[tuple[str, int]]]:
        tracker = self.tracker
        tracker.ensure()
        record = tracker.begin(LoadRecord("aws", self.export, period, version, "v1", f"file://{self.root}", file_count=len(keys)))
        seen: list[tuple[str, int]] = []
        rows = self.backend.replace_period(
            PeriodLoad(
                dataset=self.dataset, table=self.table, billing_period=period,
                files=self.plans(period, keys, manifest_types), record=record,
                reader=self.backend.data_reader(LocalStore(self.root)),
                on_file_done=lambda source, n: seen.append((source.key, n)),
            )
        )
        stored = next(r for r in self.history(period) if r.version_id == version)  # as the state holds it
        return rows, stored, seen

    def history(self, period: str | None = None) -> list[LoadRecord]:
        return self.tracker.history(self.export, period)


# ------------------------------------------------------------------------------------------------ fixtures


def pg_config(pg_server: Any, **overrides: Any) -> PostgreSQLConfig:
    values: dict[str, Any] = {
        "host": pg_server.host, "port": pg_server.port, "user": pg_server.user, "database": pg_server.database,
        "password": SecretStr(pg_server.password),
    }
    values.update(overrides)
    return PostgreSQLConfig(**values)


@pytest.fixture()
def backend(pg_server: Any, tmp_path: Path) -> Iterator[PostgreSQLBackend]:
    instance = PostgreSQLBackend(pg_config(pg_server), data_dir=tmp_path / "data")
    yield instance
    instance.close()


@pytest.fixture()
def loader(backend: PostgreSQLBackend, pg_schema: str, tmp_path: Path) -> Loader:
    root = tmp_path / "bucket"
    root.mkdir()
    return Loader(backend, root, pg_schema)


def fetch(backend: PostgreSQLBackend, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    return backend.client.run(sql, params)[0]


def period_rows(loader: Loader, period: str) -> list[tuple[Any, ...]]:
    return fetch(
        loader.backend,  # type: ignore[arg-type]
        f'SELECT identity_line_item_id, line_item_unblended_cost FROM "{loader.dataset}"."{loader.table}" '
        "WHERE billing_period = %s ORDER BY identity_line_item_id",
        [period],
    )


# --------------------------------------------------------------------------------------------------- tests


def test_replace_period_types_values_and_state(loader: Loader, backend: PostgreSQLBackend) -> None:
    a = write_csv_gz(loader.root, "p1/a.csv.gz", [line(1, "0.1234567890123456789"), line(2, "9.984E-7", "000000000007")])
    b = write_csv_gz(loader.root, "p1/b.csv.gz", [["li-3", "001234567890", "-1.5", "2024-01-31T23:00:00Z", "NA"]])
    rows, record, seen = loader.load("2024-01", [a, b])
    assert rows == 3
    assert seen == [(a, 2), (b, 1)]
    types = dict(fetch(
        backend, "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        [loader.dataset, loader.table],
    ))
    assert types["line_item_unblended_cost"] == "double precision"
    assert types["line_item_usage_account_id"] == "text"
    assert types["identity_line_item_id"] == "text"
    assert types["line_item_usage_start_date"] == "timestamp with time zone"
    assert types["billing_period"] == "text"
    assert not [c for c in types if c.startswith("_dlt")]
    indexes = fetch(backend, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                    [loader.dataset, loader.table])
    assert [i for (i,) in indexes if "(billing_period)" in i]  # DELETE of one period does not scan them all
    values = fetch(backend, f'SELECT identity_line_item_id, line_item_usage_account_id, line_item_unblended_cost, '
                   f'line_item_usage_start_date, product_product_name FROM "{loader.dataset}"."{loader.table}" ORDER BY 1')
    assert values[0] == ("li-1", "001234567890", float("0.1234567890123456789"),
                         datetime(2024, 1, 1, tzinfo=UTC), "product 1")
    assert values[1][1:3] == ("000000000007", 9.984e-7)  # leading zeros kept, full precision
    assert values[2][3:] == (datetime(2024, 1, 31, 23, tzinfo=UTC), "NA")  # "NA" is a value, not NULL
    [state] = loader.history("2024-01")
    assert (state.status, state.is_current, state.row_count, state.file_count) == ("completed", True, 3, 2)
    assert record.status == "completed"
    # nothing but the export table and the state table, and no other schema (no staging, no dlt bookkeeping)
    tables = {t for (t,) in fetch(backend, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                                  [loader.dataset])}
    assert tables == {loader.table, "_finops_load_state"}
    schemas = fetch(backend, "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", [f"{loader.dataset}%"])
    assert schemas == [(loader.dataset,)]


def test_json_from_parquet_maps_is_jsonb(loader: Loader, backend: PostgreSQLBackend) -> None:
    table = pa.table({
        "identity_line_item_id": ["a", "b"],
        "line_item_usage_account_id": ["000111222333", "000111222333"],
        "line_item_unblended_cost": [1.25, 2.5],
        "product": pa.array([[("region", "eu-west-1"), ("quote", 'say "hi"')], None], pa.map_(pa.string(), pa.string())),
    })
    key = write_parquet(loader.root, "p/cur2.parquet", table)
    assert loader.load("2024-03", [key])[0] == 2
    [(data_type,)] = fetch(backend, "SELECT data_type FROM information_schema.columns WHERE table_schema = %s "
                           "AND table_name = %s AND column_name = 'product'", [loader.dataset, loader.table])
    assert data_type == "jsonb"
    products = fetch(backend, f'SELECT product ->> \'region\', product ->> \'quote\', product IS NULL '
                     f'FROM "{loader.dataset}"."{loader.table}" ORDER BY identity_line_item_id')
    assert products == [("eu-west-1", 'say "hi"', False), (None, None, True)]


def test_reload_replaces_without_duplicates_and_keeps_other_periods(loader: Loader) -> None:
    jan = write_csv_gz(loader.root, "jan/v1.csv.gz", [line(1, "1"), line(2, "2")])
    feb = write_csv_gz(loader.root, "feb/v1.csv.gz", [line(10, "10")])
    loader.load("2024-01", [jan], "v1")
    loader.load("2024-02", [feb], "v1")
    jan2 = write_csv_gz(loader.root, "jan/v2.csv.gz", [line(1, "1.5"), line(3, "3"), line(4, "4")])
    rows, _, _ = loader.load("2024-01", [jan2], "v2")
    assert rows == 3
    assert period_rows(loader, "2024-01") == [("li-1", 1.5), ("li-3", 3.0), ("li-4", 4.0)]
    assert period_rows(loader, "2024-02") == [("li-10", 10.0)]
    history = {r.version_id: r for r in loader.history("2024-01")}
    assert history["v2"].is_current and history["v2"].status == "completed"
    assert not history["v1"].is_current  # history is kept, only the flag moves
    # the same version loaded again (a reset) still leaves one copy
    loader.load("2024-01", [jan2], "v2")
    assert len(period_rows(loader, "2024-01")) == 3


def test_new_column_is_added(loader: Loader, backend: PostgreSQLBackend) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])])
    header = [*HEADER, "resourceTags/user:Owner Team"]
    key = write_csv_gz(loader.root, "b.csv.gz", [[*line(2, "2"), "0042"]], header)
    loader.load("2024-02", [key])
    tags = fetch(backend, f'SELECT billing_period, resource_tags_user_owner_team FROM "{loader.dataset}"."{loader.table}" '
                 "ORDER BY billing_period")
    assert tags == [("2024-01", None), ("2024-02", "0042")]


def test_files_of_one_period_with_different_columns(loader: Loader, backend: PostgreSQLBackend) -> None:
    a = write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])
    b = write_csv_gz(loader.root, "b.csv.gz", [[*line(2, "2"), "blue"]], [*HEADER, "resourceTags/user:team"])
    assert loader.load("2024-01", [a, b])[0] == 2
    teams = fetch(backend, f'SELECT identity_line_item_id, resource_tags_user_team FROM "{loader.dataset}"."{loader.table}" ORDER BY 1')
    assert teams == [("li-1", None), ("li-2", "blue")]


def test_long_column_names_are_shortened_stably(loader: Loader, backend: PostgreSQLBackend) -> None:
    long_a = "resourceTags/user:" + "a" * 60 + "One"
    long_b = "resourceTags/user:" + "a" * 60 + "Two"
    key = write_csv_gz(loader.root, "a.csv.gz", [[*line(1, "1"), "x", "y"]], [*HEADER, long_a, long_b])
    loader.load("2024-01", [key])
    loader.load("2024-01", [key], "v2")  # the same names map to the same columns the second time
    columns = [c for (c,) in fetch(backend, "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                                   "AND table_name = %s AND column_name LIKE 'resource_tags%%'", [loader.dataset, loader.table])]
    assert len(columns) == 2 and all(len(c) <= 63 for c in columns)
    values = fetch(backend, f'SELECT {", ".join(chr(34) + c + chr(34) for c in sorted(columns))} FROM "{loader.dataset}"."{loader.table}"')
    assert sorted(values[0]) == ["x", "y"]


def test_corrupt_file_fails_and_keeps_the_previous_version(loader: Loader, backend: PostgreSQLBackend) -> None:
    good = write_csv_gz(loader.root, "v1/a.csv.gz", [line(1, "1"), line(2, "2")])
    loader.load("2024-01", [good], "v1")
    new_good = write_csv_gz(loader.root, "v2/a.csv.gz", [line(7, "7")])
    bad = write_corrupt_gz(loader.root, "v2/b.csv.gz")
    with pytest.raises(LoadError) as error:
        loader.load("2024-01", [new_good, bad], "v2")
    assert "b.csv.gz" in error.value.message
    assert period_rows(loader, "2024-01") == [("li-1", 1.0), ("li-2", 2.0)]
    history = {r.version_id: r for r in loader.history("2024-01")}
    assert history["v1"].is_current and history["v1"].status == "completed"
    assert history["v2"].status == "running" and not history["v2"].is_current  # the pipeline then marks it failed
    # nothing of v2 left behind, and a later load works
    assert loader.load("2024-01", [new_good], "v3")[0] == 1
    assert period_rows(loader, "2024-01") == [("li-7", 7.0)]


def test_failure_after_many_chunks_were_copied_rolls_back(loader: Loader) -> None:
    """Thousands of rows of v2 have reached the server when its last file turns out corrupt: none stay."""
    loader.load("2024-01", [write_csv_gz(loader.root, "v1.csv.gz", [line(1, "1")])], "v1")
    big = write_csv_gz(loader.root, "v2/a.csv.gz", [line(i, "0.5") for i in range(30_000)])  # several COPY chunks
    with pytest.raises(LoadError) as error:
        loader.load("2024-01", [big, write_corrupt_gz(loader.root, "v2/b.csv.gz")], "v2")
    assert "v2/b.csv.gz" in error.value.message and "corrupt" in error.value.message
    assert period_rows(loader, "2024-01") == [("li-1", 1.0)]
    rows, _, seen = loader.load("2024-01", [big, big], "v3")  # the same file twice: 60,000 rows, in order
    assert rows == 60_000 and seen == [(big, 30_000), (big, 30_000)]


def test_connection_lost_in_the_middle_of_copy(loader: Loader, backend: PostgreSQLBackend, pg_server: Any) -> None:
    """The server ends the session after the first file's rows went in: exit-4 error, the old version intact."""
    loader.load("2024-01", [write_csv_gz(loader.root, "v1.csv.gz", [line(1, "1")])], "v1")
    first = write_csv_gz(loader.root, "v2/a.csv.gz", [line(i, "2") for i in range(20_000)])
    second = write_csv_gz(loader.root, "v2/b.csv.gz", [line(i, "3") for i in range(20_000, 40_000)])
    pid = backend.client.connection.get_backend_pid()
    admin = pg_server.connect()
    admin.autocommit = True

    def kill(source: Any, rows: int) -> None:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", [pid])

    tracker = loader.tracker
    record = tracker.begin(LoadRecord("aws", loader.export, "2024-01", "v2", "v1", "file://x", file_count=2))
    with pytest.raises(DestinationError) as error:
        backend.replace_period(PeriodLoad(
            dataset=loader.dataset, table=loader.table, billing_period="2024-01", files=loader.plans("2024-01", [first, second]),
            record=record, reader=backend.data_reader(LocalStore(loader.root)), on_file_done=kill,
        ))
    admin.close()
    assert error.value.exit_code == 4 and "connection" in error.value.message.lower(), error.value.message
    backend.close()  # the next statement reconnects
    assert period_rows(loader, "2024-01") == [("li-1", 1.0)]
    assert {r.version_id: (r.status, r.is_current) for r in loader.history("2024-01")} == {
        "v1": ("completed", True), "v2": ("running", False)}  # the pipeline marks it failed, or the next run does


def test_value_rejected_inside_the_transaction_rolls_back(loader: Loader) -> None:
    """The DELETE has run when the INSERT fails: the rollback must bring the old rows back."""
    header = [*HEADER, "lineItem/BlendedCost"]
    first = write_csv_gz(loader.root, "v1.csv.gz", [[*line(1, "1"), "0.5"]], header)
    loader.load("2024-01", [first], "v1", {"lineItem/BlendedCost": "OptionalBigDecimal"})
    second = write_csv_gz(loader.root, "v2.csv.gz", [[*line(2, "2"), "not-a-number"]], header)
    with pytest.raises(LoadError) as error:
        loader.load("2024-01", [second], "v2", {"lineItem/BlendedCost": "String"})
    assert "double precision" in error.value.message
    assert "line_item_blended_cost" in error.value.message  # the server's context names the column
    assert period_rows(loader, "2024-01") == [("li-1", 1.0)]
    assert {r.version_id: r.is_current for r in loader.history("2024-01")} == {"v1": True, "v2": False}


def test_readers_see_the_old_version_until_commit(loader: Loader, pg_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "v1.csv.gz", [line(1, "1")])], "v1")
    seen_by_reader: list[Any] = []
    original = SqlStateManager.mark_current

    def spy(self: SqlStateManager, record: LoadRecord) -> None:
        conn = pg_server.connect()  # another session, as a dashboard would be
        try:
            with conn.cursor() as cur:
                cur.execute(f'SELECT identity_line_item_id FROM "{loader.dataset}"."{loader.table}" ORDER BY 1')
                seen_by_reader.append(cur.fetchall())
        finally:
            conn.close()
        original(self, record)

    monkeypatch.setattr(SqlStateManager, "mark_current", spy)
    loader.load("2024-01", [write_csv_gz(loader.root, "v2.csv.gz", [line(2, "2"), line(3, "3")])], "v2")
    assert seen_by_reader == [[("li-1",)]]  # old rows, not a gap, not a mix
    assert [r[0] for r in period_rows(loader, "2024-01")] == ["li-2", "li-3"]


def test_failure_while_marking_state_rolls_back_data(loader: Loader, monkeypatch: pytest.MonkeyPatch) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "v1.csv.gz", [line(1, "1")])], "v1")

    def boom(self: SqlStateManager, record: LoadRecord) -> None:
        raise LoadError("state update failed")

    monkeypatch.setattr(SqlStateManager, "mark_current", boom)
    with pytest.raises(LoadError):
        loader.load("2024-01", [write_csv_gz(loader.root, "v2.csv.gz", [line(2, "2")])], "v2")
    monkeypatch.undo()
    assert period_rows(loader, "2024-01") == [("li-1", 1.0)]
    assert {r.version_id: r.status for r in loader.history("2024-01")} == {"v1": "completed", "v2": "running"}


def test_zero_file_period_deletes_its_rows(loader: Loader, backend: PostgreSQLBackend) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1"), line(2, "2")])], "v1")
    loader.load("2024-02", [write_csv_gz(loader.root, "b.csv.gz", [line(3, "3")])], "v1")
    rows, record, seen = loader.load("2024-01", [], "v2")
    assert (rows, seen) == (0, [])
    assert period_rows(loader, "2024-01") == []
    assert period_rows(loader, "2024-02") == [("li-3", 3.0)]
    assert (record.status, record.row_count, record.is_current) == ("completed", 0, True)
    # a zero-file period of a new export still creates its table
    empty = Loader(backend, loader.root, loader.dataset, "empty_export")
    assert empty.load("2024-01", [])[0] == 0
    assert [t.table for t in backend.list_tables(loader.dataset)] == ["cur_test", "empty_export"]


def test_header_only_file_empties_the_period(loader: Loader, backend: PostgreSQLBackend) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])], "v1")
    empty = write_csv_gz(loader.root, "b.csv.gz", [], [*HEADER, "resourceTags/user:Team"])
    rows, record, seen = loader.load("2024-01", [empty], "v2")
    assert (rows, seen, record.status) == (0, [(empty, 0)], "completed")
    assert period_rows(loader, "2024-01") == []
    assert "resource_tags_user_team" in backend.table_columns(loader.dataset, loader.table)


def test_columns_empty_in_every_row_still_load(loader: Loader, backend: PostgreSQLBackend) -> None:
    key = write_csv_gz(loader.root, "a.csv.gz", [["a", "", "", "", ""], ["b", "", "", "", ""]])
    assert loader.load("2024-01", [key])[0] == 2
    assert fetch(backend, f'SELECT line_item_unblended_cost, product_product_name FROM "{loader.dataset}".cur_test') == [
        (None, None), (None, None)]


def test_a_second_machine_loads_the_same_export(pg_server: Any, pg_schema: str, tmp_path: Path) -> None:
    """Two machines (two data folders) take turns loading one export: all the state lives in the server."""
    root = tmp_path / "bucket"
    key = write_csv_gz(root, "a.csv.gz", [line(1, "1"), line(2, "2")])
    for attempt, machine in enumerate(["a", "b", "a", "b"]):
        backend = PostgreSQLBackend(pg_config(pg_server), data_dir=tmp_path / f"machine-{machine}")
        try:
            assert Loader(backend, root, pg_schema).load("2024-01", [key], f"v{attempt}")[0] == 2
            assert len(fetch(backend, f'SELECT 1 FROM "{pg_schema}".cur_test')) == 2
        finally:
            backend.close()


def test_state_records_round_trip(backend: PostgreSQLBackend, pg_schema: str) -> None:
    store = backend.state_manager(pg_schema)
    store.ensure()
    store.ensure()  # idempotent
    started = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    first = LoadRecord("aws", "cur-x", "2024-02", "ver-1", "v2", "s3://bucket/x?y", status="completed", file_count=3,
                       row_count=42, started_at=started, finished_at=started, error_message=None)
    second = LoadRecord("aws", "cur-x", "2024-02", "ver-2", "v2", "s3://bucket/x", status="failed", file_count=1,
                        started_at=started.replace(hour=13), finished_at=started.replace(hour=14),
                        error_message="100% broken? 'quoted' \"double\" :colon")
    for record in (first, second):
        store.upsert(record)
    store.mark_current(first)
    records = store.records(vendor="aws", export_name="cur-x")
    assert [r.version_id for r in records] == ["ver-1", "ver-2"]
    assert records[0] == LoadRecord(**{**first.as_dict(), "is_current": True})
    assert records[1].error_message == second.error_message
    assert records[1].started_at == started.replace(hour=13) and records[1].started_at.tzinfo is not None
    second.status = "completed"
    store.upsert(second)  # update in place, never a second row
    store.mark_current(second)
    records = store.records(vendor="aws", export_name="cur-x", billing_period="2024-02")
    assert [(r.version_id, r.status, r.is_current) for r in records] == [
        ("ver-1", "completed", False), ("ver-2", "completed", True)]
    assert store.records(vendor="aws", export_name="other") == []


def test_list_tables(loader: Loader, backend: PostgreSQLBackend) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "0.1"), line(2, "0.2")])])
    loader.load("2024-02", [write_csv_gz(loader.root, "b.csv.gz", [line(3, "1E-7")])])
    other = Loader(backend, loader.root, loader.dataset, "cur_other")
    other.load("2024-01", [write_csv_gz(loader.root, "c.csv.gz", [line(4, "4")])])
    tables = backend.list_tables(loader.dataset, cost_column="line_item_unblended_cost")
    assert [t.table for t in tables] == ["cur_other", "cur_test"]
    periods = {p.billing_period: p for p in tables[1].periods}
    assert periods["2024-01"].rows == 2 and math.isclose(periods["2024-01"].cost, 0.3)
    assert periods["2024-02"].cost == 1e-7
    assert backend.list_tables("no_such_schema") == []


def test_sample_exports_end_to_end(backend: PostgreSQLBackend, pg_schema: str, tmp_path: Path) -> None:
    """The bundled CUR v1 (CSV) and CUR 2.0 (Parquet with maps) exports, through the real pipeline."""
    from core.config import Config
    from vendors.aws.pipeline import run_aws_pipeline

    empty = tmp_path / "config.toml"
    empty.write_text("")
    config = Config.load(empty, environ={
        "OPEN_FINOPS_AWS_SOURCE_DIR": str(SAMPLES), "OPEN_FINOPS_AWS_DATASET_NAME": pg_schema,
        "OPEN_FINOPS_PROJECT_DATA_DIR": str(tmp_path / "data"),
    })
    report = run_aws_pipeline(config, backend=backend)
    assert report.exit_code == 0 and report.to_dict()["summary"]["loaded"] == 4
    with backend:
        found = {(t.table, p.billing_period): (p.rows, p.cost) for t in backend.list_tables(pg_schema, cost_column="line_item_unblended_cost") for p in t.periods}
    assert found.keys() == TRUTH.keys()
    for key, (rows, cost) in TRUTH.items():
        assert found[key][0] == rows and math.isclose(found[key][1], cost, abs_tol=1e-6), key
    with backend:
        [(product_type,)] = fetch(backend, "SELECT data_type FROM information_schema.columns WHERE table_schema = %s "
                                  "AND table_name = 'cur2_daily' AND column_name = 'product'", [pg_schema])
    assert product_type == "jsonb"
    again = run_aws_pipeline(config, backend=backend)  # everything current: nothing reloaded
    assert again.to_dict()["summary"]["skipped"] == 4


def test_loads_use_copy_into_the_table_inside_the_replace_transaction(loader: Loader, pg_server: Any) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "old.csv.gz", [line(1, "1")])])
    offset = pg_server.log_offset()
    key = write_csv_gz(loader.root, "a.csv.gz", [line(i, str(i)) for i in range(50)])
    loader.load("2024-01", [key], "v2")
    statements = [s.split("statement: ", 1)[1] for s in pg_server.log_since(offset).splitlines() if "statement: " in s]
    table = f'"{loader.dataset}"."{loader.table}"'
    begin = statements.index("BEGIN")
    delete = next(i for i, s in enumerate(statements) if s.startswith(f"DELETE FROM {table}"))
    copy = next(i for i, s in enumerate(statements) if s.startswith(f"COPY {table} ("))
    complete = next(i for i, s in enumerate(statements) if "UPDATE" in s and "_finops_load_state" in s)
    commit = statements.index("COMMIT", begin)
    assert begin < delete < copy < complete < commit  # one transaction: readers never see a half-replaced period
    assert statements[copy].endswith("FROM STDIN WITH (FORMAT csv)")
    assert not [s for s in statements if s.startswith("INSERT INTO") and "_finops_load_state" not in s]  # no row inserts
    assert not [s for s in statements if "_finops_dlt" in s or "_finops_stage_" in s]  # no staging, written once
    assert len(period_rows(loader, "2024-01")) == 50


def test_check_ok_and_failures(backend: PostgreSQLBackend, pg_server: Any, tmp_path: Path) -> None:
    result = backend.check()
    assert result.ok and result.error is None and result.latency_ms is not None
    assert result.target == f"postgresql://finops@{pg_server.host}:{pg_server.port}/finops"
    wrong = PostgreSQLBackend(pg_config(pg_server, user=pg_server.secure_user, password=SecretStr("Wr0ng-Secret")))
    result = wrong.check()
    assert not result.ok and "password authentication failed" in result.error
    assert "Wr0ng-Secret" not in result.error
    closed_port = PostgreSQLBackend(pg_config(pg_server, port=1))
    result = closed_port.check()
    assert not result.ok and "refused" in result.error.lower()
    right = PostgreSQLBackend(pg_config(pg_server, user=pg_server.secure_user, password=SecretStr(pg_server.secure_password)))
    assert right.check().ok
    right.close()


def test_a_role_limited_to_a_schema_the_dba_created(pg_server: Any, pg_schema: str, tmp_path: Path) -> None:
    """No CREATE on the database, only USAGE and CREATE on a pre-created schema: check and import both work."""
    role = f"narrow_{uuid.uuid4().hex[:8]}"
    admin = pg_server.connect(user="postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE ROLE "{role}" LOGIN')
        without_schema = PostgreSQLBackend(pg_config(pg_server, user=role, schema=f"{pg_schema}_absent"))
        result = without_schema.check()
        without_schema.close()
        assert not result.ok and "permission denied" in result.error
        with admin.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{pg_schema}" AUTHORIZATION finops')
            cur.execute(f'GRANT USAGE, CREATE ON SCHEMA "{pg_schema}" TO "{role}"')
        narrow = PostgreSQLBackend(pg_config(pg_server, user=role, schema=pg_schema), data_dir=tmp_path / "data")
        try:
            result = narrow.check()
            assert result.ok, result.error
            assert result.details["schema_exists"] == pg_schema and "can_create_schema" not in result.details
            root = tmp_path / "bucket"
            key = write_csv_gz(root, "a.csv.gz", [line(1, "1"), line(2, "2")])
            assert Loader(narrow, root, pg_schema).load("2024-01", [key])[0] == 2
            assert Loader(narrow, root, pg_schema).load("2024-01", [key], "v2")[0] == 2
            # the CLI probes the schema an import would use, here [aws] dataset_name with no `schema` key
            env = {"OPEN_FINOPS_DATABASE_POSTGRESQL_HOST": pg_server.host, "OPEN_FINOPS_AWS_DATASET_NAME": pg_schema,
                   "OPEN_FINOPS_DATABASE_POSTGRESQL_PORT": str(pg_server.port), "OPEN_FINOPS_DATABASE_POSTGRESQL_USER": role,
                   "OPEN_FINOPS_DATABASE_POSTGRESQL_DATABASE": pg_server.database}
            checked = run_cli("backends", "check", "--backend", "postgresql", "--json", env=env, cwd=tmp_path)
            assert checked.code == 0, checked.stderr
            assert checked.json()["details"]["schema_exists"] == pg_schema
        finally:
            narrow.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{pg_schema}" CASCADE')
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()


def test_connection_errors_are_destination_errors(pg_server: Any) -> None:
    for config in (
        pg_config(pg_server, user=pg_server.secure_user, password=SecretStr("Wr0ng-Secret")),
        pg_config(pg_server, database="no_such_database"),
    ):
        with pytest.raises(DestinationError) as error:
            PostgreSQLBackend(config).connect()
        assert error.value.exit_code == 4
        assert "Wr0ng-Secret" not in error.value.message and "Wr0ng-Secret" not in str(error.value)
    assert "does not exist" in error.value.message


def test_advisory_lock_serialises_and_times_out(pg_server: Any) -> None:
    first, second = PostgreSQLBackend(pg_config(pg_server)), PostgreSQLBackend(pg_config(pg_server))
    name = f"export-{uuid.uuid4().hex}"
    with first.lock(name, timeout=1):
        with pytest.raises(LockTimeoutError) as error:
            with second.lock(name, timeout=0.6):
                pass
        assert error.value.exit_code == 1 and name in error.value.message
        with second.lock(f"{name}-other", timeout=0):  # another export is not blocked
            pass
    with second.lock(name, timeout=0):  # released on exit
        pass


def test_lock_is_released_when_its_session_dies(pg_server: Any) -> None:
    name = f"export-{uuid.uuid4().hex}"
    holder = PostgreSQLBackend(pg_config(pg_server))
    conn = pg_server.connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", [holder.advisory_key(name)])
    with pytest.raises(LockTimeoutError):
        with holder.lock(name, timeout=0.2):
            pass
    conn.close()  # a crashed importer's session ends: the server drops its locks
    with holder.lock(name, timeout=2):
        pass


def test_get_dlt_destination_loads_with_any_dlt_pipeline(backend: PostgreSQLBackend, pg_schema: str, tmp_path: Path) -> None:
    import dlt

    pipeline = dlt.pipeline(
        pipeline_name=f"user_{uuid.uuid4().hex[:8]}", pipelines_dir=str(tmp_path / "dlt"),
        destination=backend.get_dlt_destination(), dataset_name=pg_schema, progress=None,
    )
    pipeline.run([{"id": 1, "name": "tiny"}, {"id": 2, "name": "table"}], table_name="tiny")
    assert fetch(backend, f'SELECT id, name FROM "{pg_schema}".tiny ORDER BY id') == [(1, "tiny"), (2, "table")]
