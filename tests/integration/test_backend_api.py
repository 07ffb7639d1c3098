"""The backend API, one suite over every engine (``backend_targets.TARGETS``): replace, drift, failures, state,
catalogue, check, the sample exports through the pipeline, and dlt.

Every test takes ``target`` and is generated once per declared target, with that target's marker and, where the
target declares a known gap for the test, ``xfail(raises=..., strict=True)``. No test asks which engine it runs
on: what differs is read from the declaration (type names, how a timestamp comes back) or from the backend's own
capabilities. Files are written to a folder read through :class:`LocalStore`, planned as the pipeline plans them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from core.backends.base import LoadRecord
from core.backends.sqlengine.state import SqlStateManager
from core.errors import LoadError
from tests.integration.backend_targets import (
    HEADER,
    SAMPLES,
    TARGETS,
    TRUTH,
    BackendTarget,
    Loader,
    Made,
    as_named,
    line,
    write_corrupt_gz,
    write_csv_gz,
    write_parquet,
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames:
        metafunc.parametrize("target", [t.param(metafunc.function.__name__) for t in TARGETS])


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture()
def make_backend(target: BackendTarget, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Made]]:
    """Builds backends of the target on the test's dataset (one per call, closed at the end)."""
    for module in target.requires:  # a missing driver is a failure of the target, never a skip
        importlib.import_module(module)
    made: list[Made] = []

    def build(**overrides: Any) -> Made:
        made.append(target.build(request, tmp_path, overrides))
        return made[-1]

    yield build
    for instance in made:
        instance.backend.close()


@pytest.fixture()
def made(make_backend: Callable[..., Made]) -> Made:
    return make_backend()


@pytest.fixture()
def backend(made: Made) -> Any:
    return made.backend


@pytest.fixture()
def loader(made: Made, tmp_path: Path) -> Loader:
    root = tmp_path / "bucket"
    root.mkdir()
    return Loader(made.backend, root, made.dataset)


def names(columns: str | Sequence[str]) -> list[str]:
    return [c.strip() for c in columns.split(",")] if isinstance(columns, str) else list(columns)


def select(loader: Loader, columns: str | Sequence[str], order: str | Sequence[str] = "identity_line_item_id",
           table: str | None = None, period: str | None = None) -> list[tuple[Any, ...]]:
    """Rows of the loader's table through the backend's own ``execute``: every name quoted by the engine (as
    stored, case and all), the period bound with ``?``."""
    backend = loader.backend
    backend.open_dataset(loader.dataset)  # SQLite: the dataset's file is attached on this connection
    q = backend.quote
    target = backend.qualified(loader.dataset, table or loader.table)
    where = f"WHERE {q('billing_period')} = ? " if period is not None else ""
    return backend.execute(f"SELECT {', '.join(map(q, names(columns)))} FROM {target} {where}"
                           f"ORDER BY {', '.join(map(q, names(order)))}", [] if period is None else [period]).rows


def period_rows(loader: Loader, period: str) -> list[tuple[Any, ...]]:
    return select(loader, "identity_line_item_id, line_item_unblended_cost", period=period)


def expected_column(name: str, limit: int | None) -> str:
    """The stored name of a long column, computed here: 54 bytes + ``_`` + 8 hex digits of its SHA-1."""
    if limit is None or len(name.encode()) <= limit:
        return name
    return name.encode()[: limit - 9].decode() + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]


# ------------------------------------------------------------------------------------------ replace_period


def test_replace_period_values_types_and_state(target: BackendTarget, loader: Loader, backend: Any) -> None:
    a = write_csv_gz(loader.root, "p1/a.csv.gz", [line(1, "0.1234567890123456789"), line(2, "9.984E-7", "000000000007")])
    b = write_csv_gz(loader.root, "p1/b.csv.gz", [["li-3", "001234567890", "-1.5", "2024-01-31T23:00:00Z", "NA"]])
    rows, state, seen = loader.load("2024-01", [a, b])
    assert (rows, seen) == (3, [(a, 2), (b, 1)])
    columns = backend.table_columns(loader.dataset, loader.table)
    assert list(columns) == ["billing_period", "identity_line_item_id", "line_item_usage_account_id",
                             "line_item_unblended_cost", "line_item_usage_start_date", "product_product_name"]
    t = target.types
    assert columns["billing_period"] == t["string"] and columns["line_item_usage_account_id"] == t["string"]
    assert columns["line_item_unblended_cost"] == t["double"]
    assert columns["line_item_usage_start_date"] == t["timestamp"]
    values = select(loader, "identity_line_item_id, line_item_usage_account_id, line_item_unblended_cost, "
                    "line_item_usage_start_date, product_product_name")
    assert values[0] == ("li-1", "001234567890", float("0.1234567890123456789"),
                         target.stamp(datetime(2024, 1, 1, tzinfo=UTC)), "product 1")
    assert values[1][1:3] == ("000000000007", 9.984e-7)  # leading zeros kept, full precision
    assert values[2][3:] == (target.stamp(datetime(2024, 1, 31, 23, tzinfo=UTC)), "NA")  # "NA" is a value
    assert (state.status, state.is_current, state.row_count, state.file_count) == ("completed", True, 3, 2)
    assert state.error_message is None and state.finished_at is not None and state.finished_at.tzinfo is not None
    # nothing but the export table and the state table in the dataset (no staging, no dlt bookkeeping)
    assert [t.table for t in backend.list_tables(loader.dataset)] == [loader.table]
    assert backend.table_columns(loader.dataset, "_finops_load_state")


def test_json_from_parquet_maps(target: BackendTarget, loader: Loader, backend: Any) -> None:
    table = pa.table({
        "identity_line_item_id": ["a", "b"],
        "line_item_usage_account_id": ["000111222333", "000111222333"],
        "line_item_unblended_cost": [1.25, 2.5],
        "product": pa.array([[("region", "eu-west-1"), ("quote", 'say "hi"')], None], pa.map_(pa.string(), pa.string())),
    })
    assert loader.load("2024-03", [write_parquet(loader.root, "p/cur2.parquet", table)])[0] == 2
    assert backend.table_columns(loader.dataset, loader.table)["product"] == target.types["json"]
    products = [value if value is None or isinstance(value, dict) else json.loads(value)
                for (value,) in select(loader, "product")]
    assert products == [{"region": "eu-west-1", "quote": 'say "hi"'}, None]  # one JSON value, not encoded twice


def test_reload_replaces_without_duplicates_and_keeps_other_periods(target: BackendTarget, loader: Loader) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "jan/v1.csv.gz", [line(1, "1"), line(2, "2")])], "v1")
    loader.load("2024-02", [write_csv_gz(loader.root, "feb/v1.csv.gz", [line(10, "10")])], "v1")
    jan2 = write_csv_gz(loader.root, "jan/v2.csv.gz", [line(1, "1.5"), line(3, "3"), line(4, "4")])
    assert loader.load("2024-01", [jan2], "v2")[0] == 3
    assert period_rows(loader, "2024-01") == [("li-1", 1.5), ("li-3", 3.0), ("li-4", 4.0)]
    assert period_rows(loader, "2024-02") == [("li-10", 10.0)]
    history = {r.version_id: r for r in loader.history("2024-01")}
    assert (history["v2"].is_current, history["v2"].status) == (True, "completed")
    assert not history["v1"].is_current  # history is kept, only the flag moves
    loader.load("2024-01", [jan2], "v2")  # the same version again (a reset): still one copy
    assert len(period_rows(loader, "2024-01")) == 3
    assert [(r.version_id, r.is_current) for r in loader.history("2024-01")] == [("v1", False), ("v2", True)]


def test_new_column_is_added(target: BackendTarget, loader: Loader, backend: Any) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])])
    key = write_csv_gz(loader.root, "b.csv.gz", [[*line(2, "2"), "0042"]], [*HEADER, "resourceTags/user:Owner Team"])
    loader.load("2024-02", [key])
    assert backend.table_columns(loader.dataset, loader.table)["resource_tags_user_owner_team"] == target.types["string"]
    assert select(loader, "billing_period, resource_tags_user_owner_team", order="billing_period") == [
        ("2024-01", None), ("2024-02", "0042")]


def test_files_of_one_period_with_different_columns(target: BackendTarget, loader: Loader) -> None:
    a = write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])
    b = write_csv_gz(loader.root, "b.csv.gz", [[*line(2, "2"), "blue"]], [*HEADER, "resourceTags/user:team"])
    assert loader.load("2024-01", [a, b])[0] == 2
    assert select(loader, "identity_line_item_id, resource_tags_user_team") == [("li-1", None), ("li-2", "blue")]


def test_long_column_names_are_shortened_stably(target: BackendTarget, loader: Loader, backend: Any) -> None:
    long_a, long_b = "resource_tags_user_" + "a" * 60 + "_one", "resource_tags_user_" + "a" * 60 + "_two"
    key = write_csv_gz(loader.root, "a.csv.gz", [[*line(1, "1"), "x", "y"]], [*HEADER, long_a, long_b])
    loader.load("2024-01", [key])
    loader.load("2024-02", [key], "v2")  # the same names map to the same columns the second time
    stored_a, stored_b = (expected_column(n, target.identifier_limit) for n in (long_a, long_b))
    columns = [c for c in backend.table_columns(loader.dataset, loader.table) if c.startswith("resource_tags")]
    assert columns == [stored_a, stored_b]
    assert select(loader, ["billing_period", stored_a, stored_b], order="billing_period") == [
        ("2024-01", "x", "y"), ("2024-02", "x", "y")]


# ------------------------------------------------------------------------------------------------ failures


def test_corrupt_file_fails_and_keeps_the_previous_version(target: BackendTarget, loader: Loader) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "v1/a.csv.gz", [line(1, "1"), line(2, "2")])], "v1")
    new_good = write_csv_gz(loader.root, "v2/a.csv.gz", [line(7, "7")])
    bad = write_corrupt_gz(loader.root, "v2/b.csv.gz")
    with pytest.raises(LoadError) as error:
        loader.load("2024-01", [new_good, bad], "v2")
    assert "v2/b.csv.gz" in error.value.message
    assert period_rows(loader, "2024-01") == [("li-1", 1.0), ("li-2", 2.0)]
    history = {r.version_id: r for r in loader.history("2024-01")}
    assert (history["v1"].status, history["v1"].is_current) == ("completed", True)
    assert (history["v2"].status, history["v2"].is_current) == ("running", False)  # the pipeline marks it failed
    assert loader.load("2024-01", [new_good], "v3")[0] == 1  # nothing of v2 left behind
    assert period_rows(loader, "2024-01") == [("li-7", 7.0)]


def test_failure_after_many_rows_were_copied_rolls_back(target: BackendTarget, loader: Loader) -> None:
    """Thousands of rows of v2 have reached the engine when its last file turns out corrupt: none stay."""
    loader.load("2024-01", [write_csv_gz(loader.root, "v1.csv.gz", [line(1, "1")])], "v1")
    big = write_csv_gz(loader.root, "v2/a.csv.gz", [line(i, "0.5") for i in range(12_000)])  # 2 COPY chunks
    with pytest.raises(LoadError) as error:
        loader.load("2024-01", [big, write_corrupt_gz(loader.root, "v2/b.csv.gz")], "v2")
    assert "v2/b.csv.gz" in error.value.message
    assert period_rows(loader, "2024-01") == [("li-1", 1.0)]
    rows, _, seen = loader.load("2024-01", [big, big], "v3")  # the same file twice, in order
    assert rows == 24_000 and seen == [(big, 12_000), (big, 12_000)]


def test_value_rejected_inside_the_transaction_rolls_back(target: BackendTarget, loader: Loader) -> None:
    """A column the table stores as a double gets text that is no number: the period keeps its old rows."""
    header = [*HEADER, "lineItem/BlendedCost"]
    first = write_csv_gz(loader.root, "v1.csv.gz", [[*line(1, "1"), "0.5"]], header)
    loader.load("2024-01", [first], "v1", {"lineItem/BlendedCost": "OptionalBigDecimal"})
    second = write_csv_gz(loader.root, "v2.csv.gz", [[*line(2, "2"), "not-a-number"]], header)
    with pytest.raises(LoadError) as error:
        loader.load("2024-01", [second], "v2", {"lineItem/BlendedCost": "String"})
    assert "not-a-number" in error.value.message or "line_item_blended_cost" in error.value.message, error.value.message
    assert period_rows(loader, "2024-01") == [("li-1", 1.0)]
    assert {r.version_id: r.is_current for r in loader.history("2024-01")} == {"v1": True, "v2": False}


def test_failure_while_marking_state_rolls_back_data(
    target: BackendTarget, loader: Loader, backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "v1.csv.gz", [line(1, "1")])], "v1")

    def boom(self: SqlStateManager, record: LoadRecord) -> None:
        raise LoadError("state update failed")

    monkeypatch.setattr(SqlStateManager, "mark_current", boom)
    key = write_csv_gz(loader.root, "v2.csv.gz", [[*line(2, "2"), "x"]], [*HEADER, "resourceTags/user:Team"])
    with pytest.raises(LoadError, match="state update failed"):
        loader.load("2024-01", [key], "v2")
    monkeypatch.undo()
    assert period_rows(loader, "2024-01") == [("li-1", 1.0)]
    assert {r.version_id: r.status for r in loader.history("2024-01")} == {"v1": "completed", "v2": "running"}
    # the new column went with the transaction where DDL is transactional; elsewhere it ran (and stays) before it
    added = "resource_tags_user_team" in backend.table_columns(loader.dataset, loader.table)
    assert added is not backend.capabilities.transactional_ddl


def test_readers_see_the_old_version_until_commit(
    target: BackendTarget, made: Made, loader: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "v1.csv.gz", [line(1, "1")])], "v1")
    seen_by_reader: list[Any] = []
    original = SqlStateManager.mark_current
    table = made.backend.qualified(loader.dataset, loader.table)
    query = f"SELECT {made.backend.quote('identity_line_item_id')} FROM {table} ORDER BY 1"

    def spy(self: SqlStateManager, record: LoadRecord) -> None:
        seen_by_reader.append(made.other_session(query))
        original(self, record)

    monkeypatch.setattr(SqlStateManager, "mark_current", spy)
    loader.load("2024-01", [write_csv_gz(loader.root, "v2.csv.gz", [line(2, "2"), line(3, "3")])], "v2")
    assert seen_by_reader == [[("li-1",)]]  # the old rows: not a gap, not a mix
    assert [r[0] for r in period_rows(loader, "2024-01")] == ["li-2", "li-3"]
    assert made.other_session(query) == [("li-2",), ("li-3",)]


# ------------------------------------------------------------------------------------------- empty periods


def test_zero_file_period_deletes_its_rows(target: BackendTarget, loader: Loader, backend: Any) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1"), line(2, "2")])], "v1")
    loader.load("2024-02", [write_csv_gz(loader.root, "b.csv.gz", [line(3, "3")])], "v1")
    rows, state, seen = loader.load("2024-01", [], "v2")
    assert (rows, seen) == (0, [])
    assert period_rows(loader, "2024-01") == []
    assert period_rows(loader, "2024-02") == [("li-3", 3.0)]
    assert (state.status, state.row_count, state.file_count, state.is_current) == ("completed", 0, 0, True)
    # a zero-file period of a new export still creates its table
    empty = Loader(backend, loader.root, loader.dataset, "empty_export")
    assert empty.load("2024-01", [])[0] == 0
    assert [t.table for t in backend.list_tables(loader.dataset)] == ["cur_test", "empty_export"]


def test_header_only_file_empties_the_period(target: BackendTarget, loader: Loader, backend: Any) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])], "v1")
    empty = write_csv_gz(loader.root, "b.csv.gz", [], [*HEADER, "resourceTags/user:Team"])
    rows, state, seen = loader.load("2024-01", [empty], "v2")
    assert (rows, seen, state.status, state.row_count) == (0, [(empty, 0)], "completed", 0)
    assert period_rows(loader, "2024-01") == []
    assert "resource_tags_user_team" in backend.table_columns(loader.dataset, loader.table)


def test_columns_empty_in_every_row_still_load(target: BackendTarget, loader: Loader, backend: Any) -> None:
    key = write_csv_gz(loader.root, "a.csv.gz", [["a", "", "", "", ""], ["b", "", "", "", ""]])
    assert loader.load("2024-01", [key])[0] == 2
    assert select(loader, "identity_line_item_id, line_item_unblended_cost, line_item_usage_start_date, "
                  "product_product_name") == [("a", None, None, None), ("b", None, None, None)]
    assert backend.table_columns(loader.dataset, loader.table)["line_item_unblended_cost"] == target.types["double"]


# --------------------------------------------------------------------------------------------------- state


def test_state_records_round_trip(target: BackendTarget, made: Made) -> None:
    store = made.backend.state_manager(made.dataset)
    store.ensure()
    store.ensure()  # idempotent
    started = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    first = LoadRecord("aws", "cur-x", "2024-02", "ver-1", "v2", "s3://bucket/x?y", status="completed", file_count=3,
                       row_count=42, started_at=started, finished_at=started)
    second = LoadRecord("aws", "cur-x", "2024-02", "ver-2", "v2", "s3://bucket/x", status="failed", file_count=1,
                        started_at=started.replace(hour=13), error_message="100% broken? 'quoted' \"double\" :colon")
    third = LoadRecord("aws", "cur-x", "2024-03", "ver-3", "v2", "s3://bucket/y", status="interrupted",
                       started_at=started.replace(hour=14), finished_at=started.replace(hour=15),
                       error_message="interrupted: SIGTERM")
    for record in (first, second, third):
        store.upsert(record)
    store.mark_current(first)
    records = store.records(vendor="aws", export_name="cur-x")
    assert [r.version_id for r in records] == ["ver-1", "ver-2", "ver-3"]
    assert records[0] == LoadRecord(**{**first.as_dict(), "is_current": True})
    assert records[1] == second and records[1].started_at.tzinfo is not None
    assert records[2] == third  # the status of a stopped import is kept as such
    second.status = "completed"
    store.upsert(second)  # update in place, never a second row
    store.mark_current(second)
    assert [(r.version_id, r.status, r.is_current) for r in store.records(
        vendor="aws", export_name="cur-x", billing_period="2024-02")] == [
        ("ver-1", "completed", False), ("ver-2", "completed", True)]
    assert store.records(vendor="aws", export_name="other") == []
    assert store.records(vendor="gcp") == []


def test_interrupted_attempt_is_recovered(target: BackendTarget, loader: Loader) -> None:
    """An attempt left ``running`` by a process that died is marked ``interrupted``; the current version stays."""
    loader.load("2024-01", [write_csv_gz(loader.root, "v1.csv.gz", [line(1, "1")])], "v1")
    loader.begin("2024-01", ["v2.csv.gz"], "v2")  # … and the process died here
    [recovered] = loader.tracker.recover_interrupted(loader.export)
    assert recovered.version_id == "v2"
    history = {r.version_id: r for r in loader.history("2024-01")}
    assert (history["v2"].status, history["v2"].is_current) == ("interrupted", False)
    assert history["v2"].error_message.startswith("interrupted: ")
    assert (history["v1"].status, history["v1"].is_current) == ("completed", True)
    assert loader.tracker.recover_interrupted(loader.export) == []


# ------------------------------------------------------------------------------------------------ reading


def test_list_tables_with_cost_sums(target: BackendTarget, loader: Loader, backend: Any) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "0.1"), line(2, "0.2")])])
    loader.load("2024-02", [write_csv_gz(loader.root, "b.csv.gz", [line(3, "1E-7")])])
    Loader(backend, loader.root, loader.dataset, "cur_other").load(
        "2024-01", [write_csv_gz(loader.root, "c.csv.gz", [line(4, "4")])])
    tables = backend.list_tables(loader.dataset, cost_column="line_item_unblended_cost")
    assert [(t.dataset, t.table) for t in tables] == [(loader.dataset, "cur_other"), (loader.dataset, "cur_test")]
    periods = {p.billing_period: p for p in tables[1].periods}
    assert periods["2024-01"].rows == 2 and math.isclose(periods["2024-01"].cost, 0.3)
    assert (periods["2024-02"].rows, periods["2024-02"].cost) == (1, 1e-7)
    no_cost = backend.list_tables(loader.dataset)
    assert [(p.rows, p.cost) for p in no_cost[1].periods] == [(2, None), (1, None)]
    # reading the catalogue leaves no transaction open: the next replace still runs in its own
    assert loader.load("2024-01", [write_csv_gz(loader.root, "d.csv.gz", [line(5, "5")])], "v2")[0] == 1


def test_list_tables_of_a_dataset_not_created_yet(target: BackendTarget, made: Made) -> None:
    """``list-exports`` before the first import: nothing, not an error (and nothing created)."""
    assert made.backend.list_tables(made.dataset, cost_column="line_item_unblended_cost") == []
    assert made.backend.list_tables(made.dataset) == []


def test_read_period_round_trip(target: BackendTarget, loader: Loader, backend: Any) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "0.5"), line(2, "", start="")])])
    loader.load("2024-02", [write_csv_gz(loader.root, "b.csv.gz", [line(3, "3")])])
    table = backend.read_period(loader.dataset, loader.table, "2024-01").read_all()
    assert table.column_names == list(backend.table_columns(loader.dataset, loader.table))
    rows = sorted(table.to_pylist(), key=lambda r: r["identity_line_item_id"])
    assert [r["identity_line_item_id"] for r in rows] == ["li-1", "li-2"]
    assert {r["billing_period"] for r in rows} == {"2024-01"}
    assert float(rows[0]["line_item_unblended_cost"]) == 0.5 and rows[1]["line_item_unblended_cost"] is None
    assert rows[0]["line_item_usage_account_id"] == "001234567890"
    assert str(rows[0]["line_item_usage_start_date"]).startswith("2024-01-01")
    assert rows[1]["line_item_usage_start_date"] is None


def test_read_period_of_a_period_without_rows(target: BackendTarget, loader: Loader, backend: Any) -> None:
    """A period emptied by a zero-file version (or never loaded) reads as no rows, with the table's columns."""
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])])
    loader.load("2024-01", [], "v2")
    table = backend.read_period(loader.dataset, loader.table, "2024-01").read_all()
    assert (table.num_rows, table.column_names) == (0, list(backend.table_columns(loader.dataset, loader.table)))


def test_table_columns(target: BackendTarget, loader: Loader, backend: Any) -> None:
    assert backend.table_columns(loader.dataset, loader.table) == {}
    table = pa.table({"identity_line_item_id": ["a"], "line_item_unblended_cost": [1.0],
                      "line_item_usage_start_date": pa.array([datetime(2024, 1, 1, tzinfo=UTC)], pa.timestamp("us", "UTC")),
                      "product": pa.array([[("k", "v")]], pa.map_(pa.string(), pa.string()))})
    loader.load("2024-01", [write_parquet(loader.root, "a.parquet", table)])
    t = target.types
    assert backend.table_columns(loader.dataset, loader.table) == {
        "billing_period": t["string"], "identity_line_item_id": t["string"], "line_item_unblended_cost": t["double"],
        "line_item_usage_start_date": t["timestamp"], "product": t["json"]}
    assert backend.table_columns(loader.dataset, "no_such_table") == {}


# ------------------------------------------------------------------------ names as written; views are no exports


def focus_loader(made: Made, tmp_path: Path) -> Loader:
    """A loader that keeps every column's name as the file writes it, as a native FOCUS export is loaded."""
    root = tmp_path / "focus-bucket"
    root.mkdir(exist_ok=True)
    return Loader(made.backend, root, made.dataset, "focus_test", columns=as_named)


def focus_file(loader: Loader, key: str, ids: list[str], costs: list[float], **extra: list[Any]) -> str:
    """A Parquet file with FOCUS's mixed-case names: a double, a timestamp, text, a map (JSON) and ``Id``."""
    count = len(ids)
    return write_parquet(loader.root, key, pa.table({
        "Id": ids,
        "BilledCost": pa.array(costs, pa.float64()),
        "ChargePeriodStart": pa.array([datetime(2024, 1, 1 + i, tzinfo=UTC) for i in range(count)],
                                      pa.timestamp("us", "UTC")),
        "x_ServiceCode": [f"AmazonEC2-{i}" for i in range(count)],
        "Tags": pa.array([[("Team", "FinOps")], *([None] * (count - 1))], pa.map_(pa.string(), pa.string())),
        **extra,
    }))


def test_mixed_case_names_are_stored_and_read_as_written(target: BackendTarget, made: Made, tmp_path: Path) -> None:
    loader, backend = focus_loader(made, tmp_path), made.backend
    key = focus_file(loader, "focus/2024-01.parquet", ["b", "a"], [2.5, 1.25])
    rows, state, _ = loader.load("2024-01", [key], sum_columns=("BilledCost",))
    assert (rows, state.source_row_count, json.loads(state.source_sums or "{}")) == (2, 2, {"BilledCost": 3.75})
    t = target.types
    columns = backend.table_columns(made.dataset, "focus_test")  # the engine's catalogue, names as stored
    assert list(columns.items()) == [
        ("billing_period", t["string"]), ("Id", t["string"]), ("BilledCost", t["double"]),
        ("ChargePeriodStart", t["timestamp"]), ("x_ServiceCode", t["string"]), ("Tags", t["json"])]
    values = select(loader, ["Id", "BilledCost", "ChargePeriodStart", "x_ServiceCode", "Tags"], order="Id",
                    period="2024-01")
    assert [v[:2] for v in values] == [("a", 1.25), ("b", 2.5)]
    assert values[1][2] == target.stamp(datetime(2024, 1, 1, tzinfo=UTC)) and values[0][3] == "AmazonEC2-1"
    tags = [v[4] if v[4] is None or isinstance(v[4], dict) else json.loads(v[4]) for v in values]
    assert tags == [None, {"Team": "FinOps"}]
    [summary] = backend.list_tables(made.dataset, cost_column="BilledCost")
    assert summary.table == "focus_test"
    assert [(p.billing_period, p.rows, p.cost) for p in summary.periods] == [("2024-01", 2, 3.75)]
    # a dashboard's own session finds the column by its exact name too
    q = backend.quote
    assert made.other_session(f"SELECT {q('x_ServiceCode')} FROM {backend.qualified(made.dataset, 'focus_test')} "
                              f"ORDER BY 1") == [("AmazonEC2-0",), ("AmazonEC2-1",)]


def test_mixed_case_column_of_a_later_period_widens_the_table(target: BackendTarget, made: Made,
                                                              tmp_path: Path) -> None:
    loader, backend = focus_loader(made, tmp_path), made.backend
    loader.load("2024-01", [focus_file(loader, "focus/2024-01.parquet", ["a"], [1.0])], sum_columns=("BilledCost",))
    later = focus_file(loader, "focus/2024-02.parquet", ["b", "c"], [2.0, 0.5], x_Discounts=["10%", None])
    assert loader.load("2024-02", [later], sum_columns=("BilledCost",))[0] == 2
    columns = backend.table_columns(made.dataset, "focus_test")
    assert "x_Discounts" in columns and columns["x_Discounts"] == target.types["string"]
    assert [c for c in columns if c.lower() == "x_discounts"] == ["x_Discounts"]  # widened once, not twice
    assert select(loader, ["billing_period", "Id", "x_Discounts"], order=["billing_period", "Id"]) == [
        ("2024-01", "a", None), ("2024-02", "b", "10%"), ("2024-02", "c", None)]
    [summary] = backend.list_tables(made.dataset, cost_column="BilledCost")
    assert [(p.billing_period, p.rows, p.cost) for p in summary.periods] == [("2024-01", 1, 1.0), ("2024-02", 2, 2.5)]


def test_views_are_never_export_tables(target: BackendTarget, loader: Loader, backend: Any) -> None:
    """A view of the dataset that has a ``billing_period`` column (a FOCUS view) is not listed, copied or verified
    as an export."""
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1"), line(2, "2")])])
    q = backend.quote
    view = backend.qualified(loader.dataset, "cur_test_focus")
    backend.execute(f"CREATE VIEW {view} AS SELECT {q('billing_period')}, {q('line_item_unblended_cost')} AS "
                    f"{q('BilledCost')} FROM {backend.qualified(loader.dataset, loader.table)}")
    [(count, total)] = backend.execute(
        f"SELECT COUNT(*), SUM({q('BilledCost')}) FROM {view} WHERE {q('billing_period')} = ?", ["2024-01"]).rows
    assert (int(count), float(total)) == (2, 3.0)  # the view is there, and has the column
    assert backend.table_names(loader.dataset) == [loader.table]
    assert [t.table for t in backend.list_tables(loader.dataset, cost_column="BilledCost")] == [loader.table]


# ------------------------------------------------------------------------------------------------- check


def test_check_ok(target: BackendTarget, made: Made) -> None:
    result = made.backend.check(made.dataset)
    assert result.ok, result.error
    assert result.error is None and result.latency_ms is not None and result.backend == made.backend.name
    assert result.target == made.backend.config.describe()
    assert result.details["can_create_table"] is True and result.details["version"]
    assert not made.backend.schema_exists("_finops_check")  # the probe leaves nothing behind
    assert made.backend.check(made.dataset).ok  # nor anything that would make the next check fail


def test_check_probes_the_dataset_an_import_uses(target: BackendTarget, made: Made, loader: Loader) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])])
    result = made.backend.check(made.dataset)
    assert result.ok, result.error
    schemas = made.backend.capabilities.schemas  # SQLite has none: its probe never looks for one
    assert result.details.get("schema_exists") == (made.dataset if schemas else None)
    assert [t.table for t in made.backend.list_tables(made.dataset)] == [loader.table]


def test_check_unreachable_reports_the_reason(target: BackendTarget, request: pytest.FixtureRequest,
                                              tmp_path: Path) -> None:
    backend = target.unreachable(request, tmp_path)
    try:
        result = backend.check()
    finally:
        backend.close()
    assert not result.ok and result.latency_ms is None
    assert target.unreachable_reason in (result.error or ""), result.error


# ------------------------------------------------------------------------------------------- end to end, dlt


def test_sample_exports_end_to_end(target: BackendTarget, made: Made, tmp_path: Path) -> None:
    """The bundled CUR v1 (CSV) and CUR 2.0 (Parquet with maps) exports, through the real pipeline."""
    from core.config import Config
    from vendors.aws.pipeline import run_aws_pipeline

    empty = tmp_path / "config.toml"
    empty.write_text("")
    config = Config.load(empty, environ={
        "OPEN_FINOPS_AWS_SOURCE_DIR": str(SAMPLES), "OPEN_FINOPS_AWS_DATASET_NAME": made.dataset,
        "OPEN_FINOPS_PROJECT_DATA_DIR": str(tmp_path / "data"),
    })
    backend = made.backend
    report = run_aws_pipeline(config, backend=backend)
    assert report.exit_code == 0 and report.to_dict()["summary"]["loaded"] == 4
    with backend:
        found = {(t.table, p.billing_period): (p.rows, p.cost)
                 for t in backend.list_tables(made.dataset, cost_column="line_item_unblended_cost") for p in t.periods}
        assert backend.table_columns(made.dataset, "cur2_daily")["product"] == target.types["json"]
    assert found.keys() == TRUTH.keys()
    for key, (rows, cost) in TRUTH.items():
        assert found[key][0] == rows and math.isclose(found[key][1], cost, abs_tol=1e-6), key
    again = run_aws_pipeline(config, backend=backend)  # everything current: nothing reloaded
    assert again.to_dict()["summary"]["skipped"] == 4


def test_get_dlt_destination_loads_with_any_dlt_pipeline(target: BackendTarget, made: Made, tmp_path: Path) -> None:
    import dlt

    backend = made.backend
    backend.connect()
    pipeline = dlt.pipeline(
        pipeline_name=f"user_{tmp_path.name[-8:].replace('-', '_')}", pipelines_dir=str(tmp_path / "dlt"),
        destination=backend.get_dlt_destination(), dataset_name=made.dataset, progress=None,
    )
    pipeline.run([{"id": 1, "name": "tiny"}, {"id": 2, "name": "table"}], table_name="tiny")
    backend.open_dataset(made.dataset)
    rows = backend.execute(f"SELECT id, name FROM {backend.qualified(made.dataset, 'tiny')} ORDER BY id").rows
    assert rows == [(1, "tiny"), (2, "table")]


class _Lossy:
    """A load strategy that loses what its engine was given — the failure reconciliation exists for (a bulk path
    dropping a row, a value changed on the way) — test-only, wrapped around the engine's own strategy."""

    def __init__(self, inner: Any, damage: str) -> None:
        self.inner, self.damage = inner, damage

    def staged(self, backend: Any, load: Any, kinds: Any) -> Any:
        return self.inner.staged(backend, load, kinds)

    def insert(self, backend: Any, load: Any, kinds: Any, columns: Any, staged: Any) -> int:
        rows = self.inner.insert(backend, load, kinds, columns, staged)
        q = backend.quote
        backend.execute(self.damage.format(t=backend.qualified(load.dataset, load.table), id=q("identity_line_item_id"),
                                           cost=q("line_item_unblended_cost")), ["li-2"])
        return rows


@pytest.mark.parametrize(
    ("damage", "named"),
    [("DELETE FROM {t} WHERE {id} = ?", "rows: source 2, inserted 2, table 1"),
     ("UPDATE {t} SET {cost} = {cost} + 0.5 WHERE {id} = ?", "line_item_unblended_cost: source 3.0, table 3.5")],
    ids=["a-row-lost", "a-cost-changed"],
)
def test_a_period_that_does_not_reconcile_is_not_committed(
    target: BackendTarget, loader: Loader, damage: str, named: str
) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "v1.csv.gz", [line(1, "1")])], "v1")
    backend = loader.backend
    strategy = backend.load_strategy
    backend.load_strategy = lambda load: _Lossy(strategy(load), damage)  # type: ignore[method-assign]
    keys = [write_csv_gz(loader.root, "v2.csv.gz", [line(1, "1"), line(2, "2")])]
    load = loader.period_load("2024-01", keys, loader.begin("2024-01", keys, "v2"))
    load.sum_columns = ("line_item_unblended_cost",)
    with pytest.raises(LoadError) as error:
        backend.replace_period(load)
    assert "does not reconcile" in error.value.message and named in error.value.message
    assert period_rows(loader, "2024-01") == [("li-1", 1.0)]  # the previous version, untouched
    history = {r.version_id: r for r in loader.history("2024-01")}
    assert (history["v1"].status, history["v1"].is_current) == ("completed", True)
    assert not history["v2"].is_current
