"""Exact SQL per server engine and SQLite, on real engines: PostgreSQL (the session's server), SQLite and MariaDB
(the generic backend). The recorder and the state statements are those of ``tests/unit/test_exact_sql.py``.

PostgreSQL's rows go through ``COPY … FROM STDIN`` on the client, not through ``execute``: the recorder takes
the COPY from ``client.copy_in``. Its transaction is begun and committed by the client too, and so is the generic
backend's: both record BEGIN/COMMIT at the transaction's edges.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.backends.postgresql import PostgreSQLBackend
from core.backends.sql import GenericSQLBackend, GenericSQLConfig
from tests.integration.backend_targets import HEADER, Loader, line, write_csv_gz
from tests.unit.test_exact_sql import recording, replace, state_calls


def pg_recorder(pg_server: Any) -> Any:
    from tests.integration.test_postgresql_backend import pg_config

    backend = recording(PostgreSQLBackend, boundaries=True)(pg_config(pg_server))
    copy_in = backend.client.copy_in

    def recorded_copy(sql: str, stream: Any, *, what: str) -> int:
        backend.record(sql, ["<csv stream>"])
        return copy_in(sql, stream, what=what)

    backend.client.copy_in = recorded_copy
    return backend


def sql_recorder(url: str, tmp_path: Path) -> Any:
    backend = recording(GenericSQLBackend, boundaries=True)(
        GenericSQLConfig(credentials=SecretStr(url)), data_dir=tmp_path / "data")
    execute_qmark = backend.client.execute_qmark

    def recorded_state(sql: str, params: Any) -> Any:  # the state store's own path (see the bypass test below)
        backend.record(sql, params)
        backend.bypassed.append(sql)
        return execute_qmark(sql, params)

    backend.client.execute_qmark = recorded_state
    backend.bypassed = []
    return backend



@pytest.fixture()
def pg(pg_server: Any) -> Iterator[Any]:
    backend = pg_recorder(pg_server)
    yield backend
    backend.close()


@pytest.fixture()
def sqlite(tmp_path: Path) -> Iterator[Any]:
    backend = sql_recorder(f"sqlite:///{tmp_path}/db/finops.db", tmp_path)
    yield backend
    backend.close()


@pytest.fixture()
def maria(maria_server: Any, tmp_path: Path) -> Iterator[Any]:
    backend = sql_recorder(maria_server.url(), tmp_path)
    yield backend
    backend.close()


def tag_file(root: Path) -> str:
    return write_csv_gz(root, "b.csv.gz", [[*line(2, "2"), "x"]], [*HEADER, "resourceTags/user:Team"])


COLUMNS = ["billing_period", "identity_line_item_id", "line_item_usage_account_id", "line_item_unblended_cost",
           "line_item_usage_start_date", "product_product_name"]


def names(quote: str, extra: tuple[str, ...] = ()) -> str:
    return ", ".join(f"{quote}{c}{quote}" for c in [*COLUMNS, *extra])


# ---------------------------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgresql
def test_postgresql_first_import(pg: Any, pg_schema: str, tmp_path: Path) -> None:
    loader = Loader(pg, tmp_path / "bucket", pg_schema)
    key = write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])
    t = f'"{pg_schema}"."cur_test"'
    assert replace(pg, loader, "2024-01", [key], "v1") == [
        ("SELECT 1 FROM pg_namespace WHERE nspname = ?", [pg_schema]),
        ("BEGIN", []),
        (("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
         "ORDER BY ordinal_position"), [pg_schema, "cur_test"]),
        ((f'CREATE TABLE {t} ("billing_period" TEXT, "identity_line_item_id" TEXT, "line_item_usage_account_id" TEXT, '
         '"line_item_unblended_cost" DOUBLE PRECISION, "line_item_usage_start_date" TIMESTAMPTZ, '
         '"product_product_name" TEXT)'), []),
        (f'DELETE FROM {t} WHERE "billing_period" = ?', ["2024-01"]),
        (f"COPY {t} ({names(chr(34))}) FROM STDIN WITH (FORMAT csv)", ["<csv stream>"]),
        (f'SELECT COUNT(*) FROM {t} WHERE "billing_period" = ?', ["2024-01"]),  # reconciled before COMMIT
        (f'CREATE INDEX "cur_test_billing_period_idx" ON {t} ("billing_period")', []),  # after the rows: cheaper
        *state_calls(pg_schema, "v1", rows=1),
        ("COMMIT", []),
    ]


@pytest.mark.postgresql
def test_postgresql_drift_and_zero_file_period(pg: Any, pg_schema: str, tmp_path: Path) -> None:
    loader = Loader(pg, tmp_path / "bucket", pg_schema)
    replace(pg, loader, "2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])], "v1")
    t = f'"{pg_schema}"."cur_test"'
    catalogue = ("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
                 "AND table_name = ? ORDER BY ordinal_position")
    assert [sql for sql, _ in replace(pg, loader, "2024-01", [tag_file(loader.root)], "v2")] == [
        "SELECT 1 FROM pg_namespace WHERE nspname = ?",
        "BEGIN",
        catalogue,
        f'ALTER TABLE {t} ADD COLUMN "resource_tags_user_team" TEXT',
        f'DELETE FROM {t} WHERE "billing_period" = ?',
        f"COPY {t} ({names(chr(34), ('resource_tags_user_team',))}) FROM STDIN WITH (FORMAT csv)",
        f'SELECT COUNT(*) FROM {t} WHERE "billing_period" = ?',
        *[sql for sql, _ in state_calls(pg_schema, "v2", rows=1)],
        "COMMIT",
    ]
    assert replace(pg, loader, "2024-01", [], "v3") == [
        ("SELECT 1 FROM pg_namespace WHERE nspname = ?", [pg_schema]),
        ("BEGIN", []),
        (catalogue, [pg_schema, "cur_test"]),
        (f'DELETE FROM {t} WHERE "billing_period" = ?', ["2024-01"]),
        *state_calls(pg_schema, "v3", rows=0, files=0),
        ("COMMIT", []),
    ]


@pytest.mark.postgresql
def test_postgresql_rejected_copy_rolls_back_after_the_delete(pg: Any, pg_schema: str, tmp_path: Path) -> None:
    from core.errors import LoadError

    loader = Loader(pg, tmp_path / "bucket", pg_schema)
    header = [*HEADER, "lineItem/BlendedCost"]
    first = write_csv_gz(loader.root, "a.csv.gz", [[*line(1, "1"), "0.5"]], header)
    typed = {"lineItem/BlendedCost": "OptionalBigDecimal"}
    record = loader.begin("2024-01", [first], "v1")
    pg.replace_period(loader.period_load("2024-01", [first], record, typed))
    second = write_csv_gz(loader.root, "b.csv.gz", [[*line(2, "2"), "nan?"]], header)
    record = loader.begin("2024-01", [second], "v2")
    load = loader.period_load("2024-01", [second], record, {"lineItem/BlendedCost": "String"})
    pg.calls.clear()
    with pytest.raises(LoadError):
        pg.replace_period(load)
    statements = [sql.split(" (")[0] for sql in pg.statements]
    t = f'"{pg_schema}"."cur_test"'
    assert statements[-3:] == [f'DELETE FROM {t} WHERE "billing_period" = ?', f"COPY {t}", "ROLLBACK"]


# ------------------------------------------------------------------------------------------------- SQLite


@pytest.mark.sql
def test_sqlite_first_import_and_drift(sqlite: Any, tmp_path: Path) -> None:
    loader = Loader(sqlite, tmp_path / "bucket", "ds")
    key = write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])
    stage = '"ds_finops_dlt"."_finops_stage_cur_test"'
    assert replace(sqlite, loader, "2024-01", [key], "v1") == [
        ("BEGIN", []),
        (('CREATE TABLE "ds"."cur_test" ("billing_period" TEXT, "identity_line_item_id" TEXT, '
         '"line_item_usage_account_id" TEXT, "line_item_unblended_cost" REAL, "line_item_usage_start_date" TIMESTAMP, '
         '"product_product_name" TEXT)'), []),
        ('DELETE FROM "ds"."cur_test" WHERE "billing_period" = ?', ["2024-01"]),
        (f'INSERT INTO "ds"."cur_test" ({names(chr(34))}) SELECT "c_0", "c_1", "c_2", "c_3", "c_4", "c_5" FROM {stage}',
         []),
        ('SELECT COUNT(*) FROM "ds"."cur_test" WHERE "billing_period" = ?', ["2024-01"]),
        ('CREATE INDEX "ds"."cur_test_billing_period_idx" ON "cur_test" ("billing_period")', []),
        *state_calls("ds", "v1", rows=1),
        ("COMMIT", []),
        (f"DROP TABLE IF EXISTS {stage}", []),  # after the transaction, success or not
    ]
    assert [sql for sql, _ in replace(sqlite, loader, "2024-01", [tag_file(loader.root)], "v2")] == [
        "BEGIN",
        'ALTER TABLE "ds"."cur_test" ADD COLUMN "resource_tags_user_team" TEXT',  # SQLite: DDL is transactional
        'DELETE FROM "ds"."cur_test" WHERE "billing_period" = ?',
        (f'INSERT INTO "ds"."cur_test" ({names(chr(34), ("resource_tags_user_team",))}) SELECT "c_0", "c_1", "c_2", '
        f'"c_3", "c_4", "c_5", "c_6" FROM {stage}'),
        'SELECT COUNT(*) FROM "ds"."cur_test" WHERE "billing_period" = ?',
        *[sql for sql, _ in state_calls("ds", "v2", rows=1)],
        "COMMIT",
        f"DROP TABLE IF EXISTS {stage}",
    ]


# ------------------------------------------------------------------------------------------------ MariaDB


@pytest.mark.sql
@pytest.mark.mariadb
def test_mariadb_ddl_runs_before_the_transaction(maria: Any, maria_dataset: str, tmp_path: Path) -> None:
    """MySQL commits the open transaction on DDL (capability ``ddl="implicit_commit"``): CREATE and ALTER go
    just before BEGIN, and no index (TEXT cannot be indexed without a prefix length)."""
    assert maria.capabilities.ddl == "implicit_commit"
    loader = Loader(maria, tmp_path / "bucket", maria_dataset)
    key = write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])
    t, stage = f"`{maria_dataset}`.`cur_test`", f"`{maria_dataset}_finops_dlt`.`_finops_stage_cur_test`"
    assert replace(maria, loader, "2024-01", [key], "v1") == [
        ((f"CREATE TABLE {t} (`billing_period` TEXT, `identity_line_item_id` TEXT, `line_item_usage_account_id` TEXT, "
         "`line_item_unblended_cost` DOUBLE, `line_item_usage_start_date` DATETIME(6), `product_product_name` TEXT)"),
         []),
        ("BEGIN", []),
        (f"DELETE FROM {t} WHERE `billing_period` = ?", ["2024-01"]),
        (f"INSERT INTO {t} ({names('`')}) SELECT `c_0`, `c_1`, `c_2`, `c_3`, `c_4`, `c_5` FROM {stage}", []),
        (f"SELECT COUNT(*) FROM {t} WHERE `billing_period` = ?", ["2024-01"]),
        *state_calls(maria_dataset, "v1", rows=1, quote="`"),
        ("COMMIT", []),
        (f"DROP TABLE IF EXISTS {stage}", []),
    ]
    assert [sql for sql, _ in replace(maria, loader, "2024-01", [tag_file(loader.root)], "v2")][:3] == [
        f"ALTER TABLE {t} ADD COLUMN `resource_tags_user_team` TEXT",
        "BEGIN",
        f"DELETE FROM {t} WHERE `billing_period` = ?",
    ]


# ------------------------------------------------------------------------------------------ the choke point


@pytest.mark.sql
def test_sql_state_statements_pass_through_execute(sqlite: Any, tmp_path: Path) -> None:
    loader = Loader(sqlite, tmp_path / "bucket", "ds")
    replace(sqlite, loader, "2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])], "v1")
    assert sqlite.bypassed == []
