"""PostgreSQL: Arrow batches streamed into ``COPY … FROM STDIN``, the period replaced in one transaction.

``psycopg2``, ``pyarrow`` and ``dlt`` are imported only inside methods. The shared envelope
(:meth:`core.backends.sqlengine.SqlBackend.replace_period`) creates or widens the export table, deletes the
period, and — through :class:`core.backends.postgresql.copy.CopyStream` — streams the new rows into it with
``COPY``, then marks the state record completed and current, all in one transaction. Readers see the old version
or the new one, never both, never neither. Each row is written once: no staging table, no intermediate files.
dlt is used only by :meth:`PostgreSQLBackend.get_dlt_destination`, for your own pipelines (why the import does
not go through dlt: ``benchmarks/README.md``). The password is read only from ``POSTGRESQL_PASSWORD`` and never
appears in a message.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode

from core.backends.base import Capabilities
from core.backends.postgresql.client import PostgreSQLClient
from core.backends.postgresql.config import PostgreSQLConfig
from core.backends.postgresql.copy import CopyStream
from core.backends.sqlengine import Result, SqlBackend
from core.backends.sqlengine.params import qmark_to_format

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

log = logging.getLogger(__name__)

#: dlt's credentials need a password even where the server trusts us; used only when none is configured
PLACEHOLDER_PASSWORD = "unused-by-trust-auth"


class PostgreSQLBackend(SqlBackend):
    name = "postgresql"
    extra = "postgresql"
    dialect = "postgres"
    # jsonb takes text only through a cast in INSERT … SELECT (COPY's input functions parse it by themselves)
    # CREATE OR REPLACE VIEW cannot change a view's columns, and a dependent view blocks a DROP: drop with CASCADE
    capabilities = Capabilities(native_schemes=frozenset(), ddl="transactional", json_text_needs_cast=True,
                                view_replace="drop_cascade")
    config_model = PostgreSQLConfig
    strategy = CopyStream
    max_identifier_length = 63
    version_sql = "SELECT current_setting('server_version')"
    #: seconds between two attempts to take the advisory lock
    lock_poll: ClassVar[float] = 0.5

    def __init__(self, config: PostgreSQLConfig, *, data_dir: Path | None = None) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: PostgreSQLConfig = config
        self.client = PostgreSQLClient(config)

    # -- engine primitives ----------------------------------------------------------------------------------
    def connect(self) -> None:
        self.client.connect()

    def close(self) -> None:
        self.client.close()

    def execute(self, sql: str, params: Sequence[Any] = (), *, what: str = "querying PostgreSQL") -> Result:
        rows, rowcount = self.client.run(qmark_to_format(sql), params, what=what)
        return Result(rows, rowcount)

    def transaction(self, *, commit: bool = True) -> AbstractContextManager[None]:
        return self.client.transaction(commit=commit)

    def scrub(self, text: str) -> str:
        return self.client.scrub(text)

    # -- what differs from the shared SQL behaviour ---------------------------------------------------------
    def schema_exists(self, dataset: str) -> bool:
        # pg_namespace, not information_schema.schemata, which hides schemas the role has no privilege on
        return bool(self.execute("SELECT 1 FROM pg_namespace WHERE nspname = ?", [dataset]).rows)

    def index_sql(self, dataset: str, table: str) -> str | None:
        index = self.quote(self.column(f"{table}_billing_period_idx"))
        return f"CREATE INDEX {index} ON {self.qualified(dataset, table)} ({self.quote('billing_period')})"

    def check_details(self) -> dict[str, Any]:
        return {"user": self.execute("SELECT current_user").rows[0][0]}

    def get_dlt_destination(self) -> Any:
        from core.backends.dlt_stage import dlt_defaults

        dlt_defaults()
        import dlt

        return dlt.destinations.postgres(credentials=self.dlt_credentials())

    def dlt_credentials(self) -> str:
        user = quote(self.config.user, safe="")
        password = quote(self.client.password() or os.environ.get("PGPASSWORD") or PLACEHOLDER_PASSWORD, safe="")
        query = urlencode({"sslmode": self.config.sslmode, "connect_timeout": 15})
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        database = quote(self.config.database, safe="")
        return f"postgresql://{user}:{password}@{host}:{self.config.port}/{database}?{query}"

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
                f"SELECT {', '.join(parts)} FROM {self.qualified(dataset, table)} "
                f"WHERE {self.quote('billing_period')} = %s",
                [billing_period],
            ).decode()
            cursor.copy_expert(f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER false)", spool)
        names = list(columns)
        if not spool.tell():  # a period without rows (a zero-file version): pyarrow refuses an empty CSV
            spool.close()
            schema = pa.schema([pa.field(name, pa.string()) for name in names])
            return pa.RecordBatchReader.from_batches(schema, [])
        spool.seek(0)
        return pacsv.open_csv(
            spool,
            read_options=pacsv.ReadOptions(column_names=names, block_size=4 * 1024 * 1024),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, null_values=[""], strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )

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
