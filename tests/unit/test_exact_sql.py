"""Exact SQL per engine, in the style of sqlmesh's engine-adapter tests: DuckDB (embedded, a real file).

A :func:`recording` backend appends every statement that passes through ``execute`` — the one choke point of
:class:`~core.backends.sqlengine.SqlBackend` — to a list before running it for real. Each test pins the whole
ordered list an import of a tiny one-file period sends (whitespace normalised, nothing else), so any change in
what the engine receives fails here. The server engines' lists are in ``tests/integration/test_exact_sql.py``.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from core.backends.duckdb import DuckDBBackend, DuckDBConfig
from tests.integration.backend_targets import HEADER, Loader, line, write_csv_gz

pytestmark = pytest.mark.duckdb

NOW = "<now>"


def normalise(sql: str) -> str:
    return " ".join(sql.split())


class Recording:
    """Mixed in before an engine's backend: ``calls`` gets ``(sql, params)`` of every statement it executes.

    ``boundaries``: the engine's ``transaction()`` does not go through ``execute`` (its driver begins and
    commits), so BEGIN/COMMIT/ROLLBACK are recorded where the transaction starts and ends.
    """

    boundaries = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, list[Any]]] = []
        self.root = ""

    def record(self, sql: str, params: Any = ()) -> None:
        values = [NOW if isinstance(v, datetime) else v for v in params]
        values = [v.replace(self.root, "<root>") if isinstance(v, str) and self.root else v for v in values]
        self.calls.append((normalise(sql), values))

    def execute(self, sql: str, params: Any = (), **kwargs: Any) -> Any:
        self.record(sql, params)
        return super().execute(sql, params, **kwargs)  # type: ignore[misc]

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[None]:
        if not self.boundaries:
            with super().transaction(commit=commit):  # type: ignore[misc]
                yield
            return
        self.record("BEGIN")
        try:
            with super().transaction(commit=commit):  # type: ignore[misc]
                yield
        except BaseException:
            self.record("ROLLBACK")
            raise
        self.record("COMMIT" if commit else "ROLLBACK")

    @property
    def statements(self) -> list[str]:
        return [sql for sql, _ in self.calls]


def recording(cls: type, **attributes: Any) -> type:
    return type(f"Recording{cls.__name__}", (Recording, cls), attributes)


def replace(backend: Any, loader: Loader, period: str, keys: list[str], version: str) -> list[tuple[str, list[Any]]]:
    """What ``replace_period`` of one period sends, and only that (the reader's DESCRIBE and the state row
    ``begin`` writes happen before)."""
    backend.root = str(loader.root)
    record = loader.begin(period, keys, version)
    load = loader.period_load(period, keys, record)
    backend.calls.clear()
    backend.replace_period(load)
    return list(backend.calls)


# The state statements of ``complete()``, inside the transaction, after the rows (quoting: ANSI).
STATE_EXISTS = (
    'SELECT COUNT(*) FROM "{ds}"."_finops_load_state" WHERE "vendor" = ? AND "export_name" = ? '
    'AND "billing_period" = ? AND "version_id" = ?'
)
STATE_UPDATE = (
    'UPDATE "{ds}"."_finops_load_state" SET "data_format_version" = ?, "source_location" = ?, "status" = ?, '
    '"file_count" = ?, "row_count" = ?, "started_at" = ?, "finished_at" = ?, "error_message" = ?, "is_current" = ?, '
    '"source_row_count" = ?, "source_sums" = ?, "period_status" = ?, "invoice_ids" = ?, "quality_findings" = ? '
    'WHERE "vendor" = ? AND "export_name" = ? AND "billing_period" = ? AND "version_id" = ?'
)
STATE_CURRENT = (
    'UPDATE "{ds}"."_finops_load_state" SET "is_current" = CASE WHEN "version_id" = ? THEN TRUE ELSE FALSE END '
    'WHERE "vendor" = ? AND "export_name" = ? AND "billing_period" = ?'
)


def state_calls(ds: str, version: str, *, rows: int, files: int = 1, quote: str = '"',
                source_rows: int | None = None) -> list[tuple[str, list[Any]]]:
    """``source_rows``: what the reconciliation recorded of the source (rows of a period that has files)."""
    source_rows = rows if source_rows is None and files else source_rows
    key = ["aws", "cur-test", "2024-01", version]
    return [
        (STATE_EXISTS.format(ds=ds).replace('"', quote), key),
        (STATE_UPDATE.format(ds=ds).replace('"', quote),
         ["v1", "file://<root>", "completed", files, rows, NOW, NOW, None, True, source_rows, None, None, None,
          None, *key]),
        (STATE_CURRENT.format(ds=ds).replace('"', quote), [version, *key[:3]]),
    ]


# ------------------------------------------------------------------------------------------------- DuckDB

DS = "ds"
CATALOGUE = ("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
             "AND table_name = ? ORDER BY ordinal_position")
DUCKDB_CREATE = (
    'CREATE TABLE "ds"."cur_test" ("billing_period" VARCHAR, "identity_line_item_id" VARCHAR, '
    '"line_item_usage_account_id" VARCHAR, "line_item_unblended_cost" DOUBLE, '
    '"line_item_usage_start_date" TIMESTAMPTZ, "product_product_name" VARCHAR)'
)
READ_CSV = ("read_csv(?, header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"', "
            "compression = 'none', hive_partitioning = false)")
DUCKDB_SELECT = (
    'SELECT CAST("identity/LineItemId" AS VARCHAR) AS "identity_line_item_id", '
    'CAST("lineItem/UsageAccountId" AS VARCHAR) AS "line_item_usage_account_id", '
    "CAST(NULLIF(TRIM(\"lineItem/UnblendedCost\"), '') AS DOUBLE) AS \"line_item_unblended_cost\", "
    "CAST(NULLIF(TRIM(\"lineItem/UsageStartDate\"), '') AS TIMESTAMPTZ) AS \"line_item_usage_start_date\", "
    'CAST("product/ProductName" AS VARCHAR) AS "product_product_name", CAST(? AS VARCHAR) AS "billing_period" '
    f"FROM {READ_CSV}"
)
DUCKDB_INSERT = f'INSERT INTO "ds"."cur_test" BY NAME {DUCKDB_SELECT}'
#: the source side of the reconciliation: DuckDB aggregates the very SELECT it inserts
DUCKDB_TALLY = f"SELECT COUNT(*) FROM ({DUCKDB_SELECT}) AS source"
#: the table side, inside the transaction, before COMMIT
RECONCILE = 'SELECT COUNT(*) FROM "ds"."cur_test" WHERE "billing_period" = ?'


@pytest.fixture()
def duckdb(tmp_path: Path) -> Iterator[Any]:
    backend = recording(DuckDBBackend)(DuckDBConfig(database_path=tmp_path / "finops.duckdb"))
    yield backend
    backend.close()


@pytest.fixture()
def duck_loader(duckdb: Any, tmp_path: Path) -> Loader:
    return Loader(duckdb, tmp_path / "bucket", DS)


def plain_csv(root: Path, key: str, rows: list[list[str]], header: list[str] = HEADER) -> str:
    """An uncompressed CSV: DuckDB reads it itself (a ``.gz`` one goes through Arrow batches)."""
    gz = write_csv_gz(root, key + ".gz", rows, header)
    (root / key).write_bytes(gzip.decompress((root / gz).read_bytes()))
    return key


def test_duckdb_first_import_creates_inside_the_transaction(duckdb: Any, duck_loader: Loader) -> None:
    key = plain_csv(duck_loader.root, "a.csv", [line(1, "1")])
    assert replace(duckdb, duck_loader, "2024-01", [key], "v1") == [
        ("SELECT 1 FROM information_schema.schemata WHERE schema_name = ?", [DS]),
        ("BEGIN TRANSACTION", []),
        (CATALOGUE, [DS, "cur_test"]),
        (DUCKDB_CREATE, []),
        ('DELETE FROM "ds"."cur_test" WHERE "billing_period" = ?', ["2024-01"]),
        (DUCKDB_TALLY, ["2024-01", "<root>/a.csv"]),
        (DUCKDB_INSERT, ["2024-01", "<root>/a.csv"]),
        (RECONCILE, ["2024-01"]),
        *state_calls(DS, "v1", rows=1),
        ("COMMIT", []),
    ]


def test_duckdb_drift_adds_the_column_inside_the_transaction(duckdb: Any, duck_loader: Loader) -> None:
    replace(duckdb, duck_loader, "2024-01", [plain_csv(duck_loader.root, "a.csv", [line(1, "1")])], "v1")
    key = plain_csv(duck_loader.root, "b.csv", [[*line(2, "2"), "x"]], [*HEADER, "resourceTags/user:Team"])
    statements = [sql for sql, _ in replace(duckdb, duck_loader, "2024-01", [key], "v2")]
    select = DUCKDB_SELECT.replace(
        'CAST(? AS VARCHAR) AS "billing_period"',
        'CAST("resourceTags/user:Team" AS VARCHAR) AS "resource_tags_user_team", CAST(? AS VARCHAR) AS "billing_period"')
    insert, tally = f'INSERT INTO "ds"."cur_test" BY NAME {select}', f"SELECT COUNT(*) FROM ({select}) AS source"
    assert statements == [
        "SELECT 1 FROM information_schema.schemata WHERE schema_name = ?",
        "BEGIN TRANSACTION",
        CATALOGUE,
        'ALTER TABLE "ds"."cur_test" ADD COLUMN "resource_tags_user_team" VARCHAR',
        'DELETE FROM "ds"."cur_test" WHERE "billing_period" = ?',
        tally,
        insert,
        RECONCILE,
        *[sql for sql, _ in state_calls(DS, "v2", rows=1)],
        "COMMIT",
    ]


def test_duckdb_compressed_file_is_scanned_from_arrow_batches(duckdb: Any, duck_loader: Loader) -> None:
    key = write_csv_gz(duck_loader.root, "a.csv.gz", [line(1, "1")])
    calls = replace(duckdb, duck_loader, "2024-01", [key], "v1")
    assert calls[5] == ('INSERT INTO "ds"."cur_test" BY NAME SELECT * FROM "_finops_batches"', [])


def test_duckdb_zero_file_period_deletes_and_records(duckdb: Any, duck_loader: Loader) -> None:
    replace(duckdb, duck_loader, "2024-01", [plain_csv(duck_loader.root, "a.csv", [line(1, "1")])], "v1")
    assert replace(duckdb, duck_loader, "2024-01", [], "v2") == [
        ("SELECT 1 FROM information_schema.schemata WHERE schema_name = ?", [DS]),
        ("BEGIN TRANSACTION", []),
        (CATALOGUE, [DS, "cur_test"]),
        ('DELETE FROM "ds"."cur_test" WHERE "billing_period" = ?', ["2024-01"]),
        *state_calls(DS, "v2", rows=0, files=0),
        ("COMMIT", []),
    ]


def test_duckdb_state_table_and_first_state_row(duckdb: Any, duck_loader: Loader) -> None:
    duckdb.root = str(duck_loader.root)
    duck_loader.begin("2024-01", ["a.csv"], "v1")
    assert duckdb.calls == [
        ("SELECT 1 FROM information_schema.schemata WHERE schema_name = ?", [DS]),
        ("CREATE SCHEMA IF NOT EXISTS \"ds\"", []),
        (('CREATE TABLE IF NOT EXISTS "ds"."_finops_load_state" ("vendor" VARCHAR NOT NULL, '
         '"export_name" VARCHAR NOT NULL, "billing_period" VARCHAR NOT NULL, "version_id" VARCHAR NOT NULL, '
         '"data_format_version" VARCHAR, "source_location" VARCHAR, "status" VARCHAR NOT NULL, '
         '"file_count" BIGINT, "row_count" BIGINT, "started_at" TIMESTAMPTZ, "finished_at" TIMESTAMPTZ, '
         '"error_message" VARCHAR, "is_current" BOOLEAN NOT NULL, "source_row_count" BIGINT, "source_sums" VARCHAR, '
         '"period_status" VARCHAR, "invoice_ids" VARCHAR, "quality_findings" VARCHAR)'), []),
        (CATALOGUE, [DS, "_finops_load_state"]),  # a state table of an earlier release gains the new columns
        (('SELECT "vendor", "export_name", "billing_period", "version_id", "data_format_version", "source_location", '
         '"status", "file_count", "row_count", "started_at", "finished_at", "error_message", "is_current", '
         '"source_row_count", "source_sums", "period_status", "invoice_ids", "quality_findings" '
         'FROM "ds"."_finops_load_state" WHERE "vendor" = ? AND "export_name" = ? AND "billing_period" = ? '
         'ORDER BY "export_name", "billing_period", "started_at", "version_id"'), ["aws", "cur-test", "2024-01"]),
        (STATE_EXISTS.format(ds=DS), ["aws", "cur-test", "2024-01", "v1"]),
        (('INSERT INTO "ds"."_finops_load_state" ("vendor", "export_name", "billing_period", "version_id", '
         '"data_format_version", "source_location", "status", "file_count", "row_count", "started_at", '
         '"finished_at", "error_message", "is_current", "source_row_count", "source_sums", "period_status", '
         '"invoice_ids", "quality_findings") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
         ["aws", "cur-test", "2024-01", "v1", "v1", "file://<root>", "running", 1, None, NOW, None, None, False,
          None, None, None, None, None]),
    ]


def test_duckdb_failed_insert_rolls_back_after_the_delete(duckdb: Any, duck_loader: Loader) -> None:
    from core.errors import LoadError

    replace(duckdb, duck_loader, "2024-01", [plain_csv(duck_loader.root, "a.csv", [line(1, "1")])], "v1")
    bad = plain_csv(duck_loader.root, "b.csv", [line(2, "not-a-number")])
    with pytest.raises(LoadError):
        replace(duckdb, duck_loader, "2024-01", [bad], "v2")
    statements = duckdb.statements
    # the tally counts rows only (no cost reconciled here: DuckDB casts nothing it does not need); the insert fails
    assert statements[-3:] == ['DELETE FROM "ds"."cur_test" WHERE "billing_period" = ?', DUCKDB_TALLY, DUCKDB_INSERT]
    assert "COMMIT" not in statements  # rolled back on the driver (not through execute): the DELETE is undone
    assert duckdb.execute('SELECT identity_line_item_id FROM "ds"."cur_test"').rows == [("li-1",)]
