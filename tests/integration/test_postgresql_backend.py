"""What only the PostgreSQL backend does, against the session's real server (``pg_server``): COPY inside the
replace transaction (from the server's statement log), a connection lost mid-COPY, a role limited to a schema a
DBA created, the advisory lock, two machines sharing one server, password rejection.

Everything the backend API promises on every engine (replace, drift, failures, state, catalogue, check, the
sample exports, dlt) is in the conformance suite, ``test_backend_api.py``; it is not repeated here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.backends.base import LoadRecord, PeriodLoad
from core.backends.postgresql import PostgreSQLBackend
from core.backends.postgresql.config import PostgreSQLConfig
from core.errors import DestinationError, LockTimeoutError
from core.storage import LocalStore
from tests.conftest import run_cli
from tests.integration.backend_targets import Loader, line, write_csv_gz

pytestmark = pytest.mark.postgresql


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


def fetch(backend: PostgreSQLBackend, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return backend.client.run(sql, params or [])[0]


def period_rows(loader: Loader, period: str) -> list[tuple[Any, ...]]:
    return fetch(
        loader.backend,  # type: ignore[arg-type]
        f'SELECT identity_line_item_id, line_item_unblended_cost FROM "{loader.dataset}"."{loader.table}" '
        "WHERE billing_period = %s ORDER BY identity_line_item_id",
        [period],
    )


def test_the_period_index_and_nothing_else_in_the_database(loader: Loader, backend: PostgreSQLBackend) -> None:
    loader.load("2024-01", [write_csv_gz(loader.root, "a.csv.gz", [line(1, "1")])])
    indexes = fetch(backend, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                    [loader.dataset, loader.table])
    assert [i for (i,) in indexes if i.endswith("(billing_period)")]  # DELETE of one period does not scan them all
    # no staging schema, no dlt bookkeeping: the export table and the state table only
    tables = {t for (t,) in fetch(backend, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                                  [loader.dataset])}
    assert tables == {loader.table, "_finops_load_state"}
    schemas = fetch(backend, "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", [loader.dataset])
    assert schemas == [(loader.dataset,)]


def test_check_rejects_a_wrong_password_without_leaking_it(pg_server: Any) -> None:
    wrong = PostgreSQLBackend(pg_config(pg_server, user=pg_server.secure_user, password=SecretStr("Wr0ng-Secret")))
    result = wrong.check()
    assert not result.ok and "password authentication failed" in result.error
    assert "Wr0ng-Secret" not in result.error
    right = PostgreSQLBackend(pg_config(pg_server, user=pg_server.secure_user,
                                        password=SecretStr(pg_server.secure_password)))
    assert right.check().ok
    right.close()


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
