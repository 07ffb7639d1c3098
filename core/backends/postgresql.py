"""PostgreSQL: data through dlt's postgres destination (COPY), replaced in one transaction of our own.

``psycopg2`` and ``dlt`` are imported only inside methods. A period is loaded by dlt into a staging table (Arrow
batches → CSV → ``COPY … FROM STDIN``, see :mod:`core.backends.dlt_stage`); then one transaction creates or widens
the export table, deletes the period, inserts it from the staging table and marks the state record completed and
current. Readers see the old version or the new one, never both, never neither. The password is read only from
``POSTGRESQL_PASSWORD`` and never appears in a message.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode

from core.backends import dlt_stage
from core.backends.base import (
    STATE_TABLE,
    Capabilities,
    CheckResult,
    DatabaseBackend,
    DataReader,
    ExportTable,
    PeriodLoad,
    PeriodSummary,
)
from core.backends.postgresql_client import PostgreSQLClient
from core.backends.postgresql_config import PostgreSQLConfig
from core.backends.readers import Boto3DataReader
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
COST_COLUMN = "line_item_unblended_cost"
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
        )

    def data_reader(self, store: ObjectStore) -> DataReader:
        return Boto3DataReader(store)

    def column(self, name: str) -> str:
        """Our column name as stored: PostgreSQL would cut a name over 63 bytes silently, we shorten it stably."""
        return dlt_stage.fit_identifier(name, self.max_identifier_length)

    def table_columns(self, dataset: str, table: str) -> dict[str, str]:
        rows = self.query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [dataset, table],
        )
        return {name: type_name for name, type_name in rows}

    def _prepare_table(self, dataset: str, table: str, kinds: dict[str, str]) -> dict[str, str]:
        """Create the export table or add this version's new columns; returns column → type as stored."""
        target = self.qualified(dataset, table)
        existing = self.table_columns(dataset, table)
        if not existing:
            body = ", ".join(f"{self.quote(self.column(n))} {TYPE_MAP[k]}" for n, k in kinds.items())
            self.query(f"CREATE TABLE {target} ({body})", what=f"creating {dataset}.{table}")
            self._index_after_insert = (dataset, table)  # built once the first period is in: 3-4 s cheaper
            return {self.column(n): TYPE_MAP[k] for n, k in kinds.items()}
        for name, kind in kinds.items():
            if self.column(name) not in existing:
                log.info("%s.%s: new column %s %s", dataset, table, name, TYPE_MAP[kind])
                self.query(f"ALTER TABLE {target} ADD COLUMN {self.quote(self.column(name))} {TYPE_MAP[kind]}")
                existing[self.column(name)] = TYPE_MAP[kind]
        return existing

    def replace_period(self, load: PeriodLoad) -> int:
        layout = dlt_stage.stage_layout(load.dataset, load.table, load.files, self.max_identifier_length)

        def drop(staging: dlt_stage.StagedTable) -> None:
            self.query(f"DROP TABLE IF EXISTS {staging.qualified}", what="dropping the staging table")

        try:
            # csv: dlt's postgres destination then loads with COPY … FROM STDIN (PostgresCsvCopyJob)
            with dlt_stage.staged_period(self, load, layout, loader_file_format="csv", drop=drop) as (source, staged):
                return self._swap_in(load, layout, source, staged)
        except FinOpsError as exc:
            exc.message = self.client.scrub(exc.message)
            raise

    def _swap_in(
        self, load: PeriodLoad, layout: dlt_stage.StageLayout, source: dlt_stage.StagedTable | None, staged: int,
    ) -> int:
        """The one transaction: DDL, DELETE, INSERT … SELECT from staging, state row; all or nothing."""
        target = self.qualified(load.dataset, load.table)
        state = self.state_manager(load.dataset)
        with self.client.transaction():
            self.query(f"CREATE SCHEMA IF NOT EXISTS {self.quote(load.dataset)}")
            types = self._prepare_table(load.dataset, load.table, layout.kinds)
            self.query(f"DELETE FROM {target} WHERE billing_period = %s", [load.billing_period])
            rows = 0
            if source is not None and staged:  # files with a header and no rows stage nothing
                names = ", ".join(self.quote(self.column(n)) for n in layout.columns)
                # every value cast to the column as stored: JSON staged as text, and types that drifted
                values = ", ".join(f"CAST({source.columns[n]} AS {types[self.column(n)]})" for n in layout.columns)
                insert = f"INSERT INTO {target} ({names}) SELECT {values} FROM {source.qualified}"
                rows = self.client.run(insert, what=f"inserting {load.table} {load.billing_period} from staging")[1]
                if rows != staged:  # dlt lost or duplicated rows: never publish that
                    raise LoadError(f"{load.table} {load.billing_period}: {staged} rows read but {rows} staged.")
            if self._index_after_insert == (load.dataset, load.table):
                # every replace deletes one period: without an index that is a scan of every period ever loaded
                index = self.quote(self.column(f"{load.table}_billing_period_idx"))
                self.query(f"CREATE INDEX {index} ON {target} (billing_period)", what=f"indexing {load.table}")
                self._index_after_insert = None
            state.complete(load.record, rows=rows, files=len(load.files))
        return rows

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
        result = []
        for (table,) in tables:
            columns = self.table_columns(dataset, table)
            cost = f"SUM({self.quote(COST_COLUMN)})" if COST_COLUMN in columns else "NULL"
            rows = self.query(
                f"SELECT billing_period, COUNT(*), {cost} FROM {self.qualified(dataset, table)} "
                "GROUP BY billing_period ORDER BY billing_period"
            )
            periods = [PeriodSummary(p, int(n), None if c is None else float(c)) for p, n, c in rows]
            result.append(ExportTable(dataset, table, periods))
        return result

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

    def check(self) -> CheckResult:
        target = self.config.describe()
        try:
            started = time.perf_counter()
            self.connect()
            self.query("SELECT 1")
            latency = (time.perf_counter() - started) * 1000
            with self.client.transaction(commit=False):  # rolled back: the check leaves nothing behind
                self.query("CREATE SCHEMA _finops_check", what="creating a schema")
                self.query("CREATE TABLE _finops_check.probe (id integer)", what="creating a table")
            version, user = self.query("SELECT current_setting('server_version'), current_user")[0]
        except ConfigError:
            raise  # a missing or bad setting is exit 2, not an unreachable database
        except FinOpsError as exc:
            return CheckResult(ok=False, backend=self.name, target=target, error=self.client.scrub(exc.message))
        return CheckResult(
            ok=True, backend=self.name, target=target, latency_ms=round(latency, 2),
            details={"version": version, "user": user, "can_create_schema": True, "can_create_table": True},
        )
