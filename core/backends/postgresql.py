"""PostgreSQL: Arrow batches streamed into ``COPY … FROM STDIN``, the period replaced in one transaction.

``psycopg2``, ``pyarrow`` and ``dlt`` are imported only inside methods. One transaction creates or widens the
export table, deletes the period, streams the new rows into it with ``COPY`` (CSV written by pyarrow on a worker
thread, :mod:`core.backends.postgresql_copy`) and marks the state record completed and current. Readers see the
old version or the new one, never both, never neither. Each row is written once: no staging table, no
intermediate files. dlt is used only by :meth:`PostgreSQLBackend.get_dlt_destination`, for your own pipelines
(why the import does not go through dlt: ``benchmarks/README.md``). The password is read only from
``POSTGRESQL_PASSWORD`` and never appears in a message.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode

from core.backends import conform, dlt_stage
from core.backends.base import (
    STATE_TABLE,
    Capabilities,
    CheckResult,
    ColumnKind,
    DatabaseBackend,
    DataReader,
    ExportTable,
    FilePlan,
    PeriodLoad,
)
from core.backends.postgresql_client import PostgreSQLClient
from core.backends.postgresql_config import PostgreSQLConfig
from core.backends.postgresql_copy import CsvStream
from core.backends.sql_params import qmark_to_format
from core.errors import ConfigError, FinOpsError, LoadError
from core.state import SqlStateManager

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from core.storage import ObjectStore

log = logging.getLogger(__name__)

TYPE_MAP = {
    "string": "text",
    "double": "double precision",
    "bigint": "bigint",
    "boolean": "boolean",
    "timestamp": "timestamptz",
    "date": "date",
    "json": "jsonb",
}
#: dlt's credentials need a password even where the server trusts us; used only when none is configured
PLACEHOLDER_PASSWORD = "unused-by-trust-auth"


class PostgreSQLBackend(DatabaseBackend):
    name = "postgresql"
    extra = "postgresql"
    dialect = "postgres"
    capabilities: ClassVar[Capabilities] = Capabilities(
        native_s3_read=False, transactional_replace=True, json_type="JSONB"
    )
    config_model = PostgreSQLConfig
    max_identifier_length = 63
    #: seconds between two attempts to take the advisory lock
    lock_poll: ClassVar[float] = 0.5

    def __init__(self, config: PostgreSQLConfig, *, data_dir: Path | None = None) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: PostgreSQLConfig = config
        self.client = PostgreSQLClient(config)
        self._index_after_insert: tuple[str, str] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def connect(self) -> None:
        self.client.connect()

    def close(self) -> None:
        self.client.close()

    def query(self, sql: str, params: Sequence[Any] = (), *, what: str = "querying PostgreSQL") -> list[tuple]:
        """Run one statement (``%s`` placeholders) and fetch its rows."""
        return self.client.run(sql, params, what=what)[0]

    def _execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self.query(qmark_to_format(sql), params, what="updating the load state")

    # -- backend API ----------------------------------------------------------------------------------------
    def dlt_credentials(self) -> str:
        user = quote(self.config.user, safe="")
        password = quote(self.client.password() or os.environ.get("PGPASSWORD") or PLACEHOLDER_PASSWORD, safe="")
        query = urlencode({"sslmode": self.config.sslmode, "connect_timeout": 15})
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        database = quote(self.config.database, safe="")
        return f"postgresql://{user}:{password}@{host}:{self.config.port}/{database}?{query}"

    def get_dlt_destination(self) -> Any:
        dlt_stage.dlt_defaults()
        import dlt

        return dlt.destinations.postgres(credentials=self.dlt_credentials())

    def state_manager(self, dataset: str) -> SqlStateManager:
        return SqlStateManager(
            self._execute, self.quote, dataset,
            types={"text": "text", "bigint": "bigint", "timestamp": "timestamptz", "boolean": "boolean"},
            ensure_schema=self.ensure_schema,
        )

    def ensure_schema(self, dataset: str) -> None:
        """Create ``dataset`` unless it exists. Checked first because PostgreSQL refuses even ``CREATE SCHEMA IF
        NOT EXISTS`` of an existing schema to a role without ``CREATE`` on the database, and a DBA may have
        created the schema and granted only ``USAGE, CREATE`` on it."""
        if not self.query("SELECT 1 FROM pg_namespace WHERE nspname = %s", [dataset]):
            self.query(f"CREATE SCHEMA IF NOT EXISTS {self.quote(dataset)}", what=f"creating the schema {dataset}")

    def data_reader(self, store: ObjectStore) -> DataReader:
        from core.backends.readers import Boto3DataReader  # pyarrow: only when data is read

        return Boto3DataReader(store)

    def table_columns(self, dataset: str, table: str) -> dict[str, str]:
        rows = self.query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [dataset, table],
        )
        return {name: type_name for name, type_name in rows}

    def _prepare_table(self, dataset: str, table: str, kinds: dict[str, ColumnKind]) -> None:
        """Create the export table, or add this version's new columns to it."""
        target = self.qualified(dataset, table)
        existing = self.table_columns(dataset, table)
        if not existing:
            body = ", ".join(f"{self.quote(self.column(n))} {TYPE_MAP[k]}" for n, k in kinds.items())
            self.query(f"CREATE TABLE {target} ({body})", what=f"creating {dataset}.{table}")
            self._index_after_insert = (dataset, table)  # built once the first period is in: 3-4 s cheaper
            return
        for name, kind in kinds.items():
            if self.column(name) not in existing:
                log.info("%s.%s: new column %s %s", dataset, table, name, TYPE_MAP[kind])
                self.query(f"ALTER TABLE {target} ADD COLUMN {self.quote(self.column(name))} {TYPE_MAP[kind]}")

    def replace_period(self, load: PeriodLoad) -> int:
        """The one transaction: DDL, DELETE, ``COPY`` of the streamed rows, state row; all or nothing."""
        kinds = conform.union_columns(load.files)
        target = self.qualified(load.dataset, load.table)
        state = self.state_manager(load.dataset)
        try:
            with self.client.transaction():
                self.ensure_schema(load.dataset)
                self._prepare_table(load.dataset, load.table, kinds)
                self.query(f"DELETE FROM {target} WHERE billing_period = %s", [load.billing_period])
                rows = self._copy_in(load, kinds) if load.files else 0
                if self._index_after_insert == (load.dataset, load.table):
                    # every replace deletes one period: without an index that is a scan of every period ever loaded
                    index = self.quote(self.column(f"{load.table}_billing_period_idx"))
                    self.query(f"CREATE INDEX {index} ON {target} (billing_period)", what=f"indexing {load.table}")
                    self._index_after_insert = None
                state.complete(load.record, rows=rows, files=len(load.files))
            return rows
        except FinOpsError as exc:
            exc.message = self.client.scrub(exc.message)
            raise

    def _copy_in(self, load: PeriodLoad, kinds: dict[str, ColumnKind]) -> int:
        """Stream the period's rows into the export table with ``COPY … FROM STDIN`` (CSV); PostgreSQL's input
        functions type each value as the column is stored (JSON text → ``jsonb``, a drifted type → the table's)."""
        import pyarrow as pa

        def batches(file_done: Callable[[FilePlan, int], None]) -> Iterator[pa.RecordBatch]:
            # naive timestamps (UTC: the session's time zone): pyarrow writes them ~20x faster than zoned ones
            return conform.period_batches(load, kinds, types={"timestamp": pa.timestamp("us")}, on_file=file_done)

        def file_done(plan: FilePlan, rows: int) -> None:
            if load.on_file_done:
                load.on_file_done(plan.file, rows)

        columns = ", ".join(self.quote(self.column(name)) for name in kinds)
        copy = f"COPY {self.qualified(load.dataset, load.table)} ({columns}) FROM STDIN WITH (FORMAT csv)"
        with CsvStream(batches, on_file=file_done) as stream:
            copied = self.client.copy_in(copy, stream, what=f"copying {load.table} {load.billing_period}")
        if copied != stream.rows:  # never publish a period whose row count we cannot vouch for
            raise LoadError(f"{load.table} {load.billing_period}: {stream.rows} rows read but {copied} copied.")
        return copied

    def read_period(self, dataset: str, table: str, billing_period: str) -> pa.RecordBatchReader:
        """``COPY (SELECT …) TO STDOUT`` spooled to a temporary file, then read back by pyarrow's streaming CSV
        reader: the server's fastest export path, flat memory, no Python object per row. Every column arrives
        as text (timestamps as ISO-8601 UTC); the destination types them like any other source."""
        import tempfile

        import pyarrow as pa
        import pyarrow.csv as pacsv

        columns = self.table_columns(dataset, table)
        parts = []
        for name, type_name in columns.items():
            col = self.quote(name)
            if "timestamp" in type_name:
                col = f"to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            elif type_name == "boolean":
                col = f"{col}::text"
            parts.append(f"{col} AS {self.quote(name)}")
        spool = tempfile.TemporaryFile(dir=self.data_dir if self.data_dir.is_dir() else None)
        with self.client.connection.cursor() as cursor:
            select = cursor.mogrify(  # the driver binds the value; COPY itself takes no parameters
                f"SELECT {', '.join(parts)} FROM {self.qualified(dataset, table)} WHERE billing_period = %s",
                [billing_period],
            ).decode()
            cursor.copy_expert(f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER false)", spool)
        spool.seek(0)
        names = list(columns)
        return pacsv.open_csv(
            spool,
            read_options=pacsv.ReadOptions(column_names=names, block_size=4 * 1024 * 1024),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, null_values=[""], strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )

    def list_tables(self, dataset: str) -> list[ExportTable]:
        tables = self.query(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = %s AND column_name = %s "
            "AND table_name <> %s ORDER BY table_name",
            [dataset, "billing_period", STATE_TABLE],
        )
        return [self.summarise(dataset, table) for (table,) in tables]

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        return self.query(sql)

    def advisory_key(self, name: str) -> int:
        """A signed 64-bit key for ``pg_advisory_lock``, the same on every machine for one export."""
        digest = hashlib.sha256(f"finops:{self.config.database}:{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    @contextmanager
    def lock(self, name: str, *, timeout: float) -> Iterator[None]:
        """A PostgreSQL advisory lock instead of a file lock: it serialises imports of one export into this
        database from every machine, and the server releases it by itself if the importing process dies."""
        with self.client.advisory_lock(self.advisory_key(name), name, timeout=timeout, poll=self.lock_poll):
            yield

    def check(self, dataset: str | None = None) -> CheckResult:
        target = self.config.describe()
        try:
            started = time.perf_counter()
            self.connect()
            self.query("SELECT 1")
            latency = (time.perf_counter() - started) * 1000
            schema = dataset or self.config.schema
            existing = bool(schema and self.query("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]))
            with self.client.transaction(commit=False):  # rolled back: the check leaves nothing behind
                if existing:  # the import's schema exists (a DBA may have created it): a table in it is all we need
                    probe = self.qualified(schema, "_finops_check_probe")  # type: ignore[arg-type]
                    self.query(f"CREATE TABLE {probe} (id integer)", what=f"creating a table in {schema}")
                else:
                    self.query("CREATE SCHEMA _finops_check", what="creating a schema")
                    self.query("CREATE TABLE _finops_check.probe (id integer)", what="creating a table")
            version, user = self.query("SELECT current_setting('server_version'), current_user")[0]
        except ConfigError:
            raise  # a missing or bad setting is exit 2, not an unreachable database
        except FinOpsError as exc:
            return CheckResult(ok=False, backend=self.name, target=target, error=self.client.scrub(exc.message))
        return CheckResult(
            ok=True, backend=self.name, target=target, latency_ms=round(latency, 2),
            details={
                "version": version, "user": user, "can_create_table": True,
                **({"schema_exists": schema} if existing else {"can_create_schema": True}),
            },
        )
