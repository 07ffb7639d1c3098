"""Any SQL database SQLAlchemy reaches, loaded through a dlt destination (``sqlalchemy`` by default).

dlt stages each period (:class:`core.backends.dlt_stage.DltStageSwap`); the shared envelope then replaces the
period and marks its state row in one transaction on a SQLAlchemy connection (:mod:`core.backends.sql.client`).
What differs between the engines behind a URL is data: :data:`core.backends.sql.dialects.CAPABILITIES` (MySQL's
DDL commits implicitly, so it runs just before the transaction; SQLite has no schemas and attaches one file per
dataset, exactly as dlt lays it out) and the type names of :mod:`core.backends.sqlengine.types`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.backends.dlt_stage import DltStageSwap
from core.backends.sql.client import SQLAlchemyClient
from core.backends.sql.config import GenericSQLConfig
from core.backends.sql.dialects import CAPABILITIES, DEFAULT_CAPABILITIES, bind_value, url_dialect
from core.backends.sqlengine import Result, SqlBackend
from core.backends.sqlengine.backend import INTERNAL_PREFIX
from core.backends.sqlengine.params import qmark_to_named

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

log = logging.getLogger(__name__)


class GenericSQLBackend(SqlBackend):
    name = "sql"
    extra = "sql"
    dialect = "sqlite"  # per instance: the URL's
    config_model = GenericSQLConfig
    strategy = DltStageSwap
    max_identifier_length = 63

    def __init__(self, config: GenericSQLConfig, *, data_dir: Path | None = None) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: GenericSQLConfig = config
        self.dialect = url_dialect(config.url())
        self.capabilities = CAPABILITIES.get(self.dialect, DEFAULT_CAPABILITIES)
        self.client = SQLAlchemyClient(config, self.dialect)
        # dlt's sqlalchemy destination inserts Parquet batches in chunks; its default (typed JSON lines) costs
        # more per row. Other dlt destinations keep their own default.
        self.dlt_loader_file_format = "parquet" if config.destination == "sqlalchemy" else None

    # -- engine primitives ----------------------------------------------------------------------------------
    def url(self) -> Any:
        return self.client.url()

    def connect(self) -> None:
        self.client.connect()

    def close(self) -> None:
        self.client.close()

    def exists(self) -> bool:
        """SQLite creates its file on connect; every other engine is a server."""
        if self.capabilities.schemas:
            return True
        database = self.url().database
        return bool(database) and Path(database).expanduser().exists()

    def execute(self, sql: str, params: Sequence[Any] = (), *, what: str = "querying the database") -> Result:
        text, values = qmark_to_named(sql, [bind_value(v, self.dialect) for v in params])
        result = self.client.query(text, values, what=what)
        return Result(result.rows, result.rowcount)

    def transaction(self, *, commit: bool = True) -> AbstractContextManager[None]:
        return self.client.transaction(commit=commit)

    # -- what differs from the shared SQL behaviour ---------------------------------------------------------
    def ensure_schema(self, dataset: str) -> None:
        """A schema where the engine has them; SQLite attaches the dataset's own file instead."""
        if self.capabilities.schemas:
            super().ensure_schema(dataset)
        else:
            self.client.attach(dataset)

    def schema_exists(self, dataset: str) -> bool:
        return bool(self.client.inspect(lambda inspector: dataset in inspector.get_schema_names()))

    def open_dataset(self, dataset: str, *, create: bool = True) -> bool:
        if self.capabilities.schemas:
            return super().open_dataset(dataset, create=create)
        return self.client.attach(dataset, create=create)

    def table_columns(self, dataset: str, table: str) -> dict[str, str]:
        def read(inspector: Any) -> dict[str, str]:
            if not inspector.has_table(table, schema=dataset):
                return {}
            return {c["name"]: str(c["type"]) for c in inspector.get_columns(table, schema=dataset)}

        return self.client.inspect(read)

    def table_names(self, dataset: str) -> list[str]:
        from core.backends.base import STATE_TABLE

        names = sorted(self.client.inspect(lambda inspector: inspector.get_table_names(schema=dataset)))
        return [t for t in names if t != STATE_TABLE and not t.startswith(INTERNAL_PREFIX)
                and "billing_period" in self.table_columns(dataset, t)]

    def view_names(self, dataset: str) -> list[str]:
        """SQLAlchemy's inspector: SQLite keeps views in its ``sqlite_master``, not an ``information_schema``."""
        if not self.open_dataset(dataset, create=False):
            return []
        return sorted(self.client.inspect(lambda inspector: inspector.get_view_names(schema=dataset)))

    def index_sql(self, dataset: str, table: str) -> str | None:
        """Where the syntax is known: SQLite names the index in the schema, PostgreSQL the table; MySQL cannot
        index TEXT without a prefix length."""
        name, period = self.column(f"{table}_billing_period_idx"), self.quote("billing_period")
        if self.dialect == "sqlite":
            return f"CREATE INDEX {self.qualified(dataset, name)} ON {self.quote(table)} ({period})"
        if self.dialect == "postgres":
            return f"CREATE INDEX {self.quote(name)} ON {self.qualified(dataset, table)} ({period})"
        return None

    def state_executor(self, dataset: str) -> Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]:
        """SQLite: the dataset's file is attached when it exists; only ``ensure()`` (through
        :meth:`ensure_schema`) creates it, so reading the state never creates files."""

        def execute(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            self.client.attach(dataset, create=False)
            return self.execute(sql, params, what="updating the load state").rows

        return execute

    def server_version(self) -> str:
        return ".".join(str(p) for p in (self.client.engine.dialect.server_version_info or ()))

    def check_details(self) -> dict[str, Any]:
        return {"dialect": self.dialect}

    def get_dlt_destination(self) -> Any:
        from core.backends.dlt_stage import dlt_defaults

        dlt_defaults()
        from dlt.common.destination import Destination

        url = self.url()
        if self.config.destination != "sqlalchemy":  # dlt's own destinations want a plain scheme (no "+driver")
            url = url.set(drivername=url.get_backend_name())
        credentials = url.render_as_string(hide_password=False)
        return Destination.from_reference(self.config.destination, credentials=credentials)

    def read_period(self, dataset: str, table: str, billing_period: str) -> pa.RecordBatchReader:
        """A server-side cursor read in chunks, each chunk turned column by column into an Arrow batch (no dict
        per row). Numbers keep their type; everything else travels as text (ISO timestamps, JSON), which the
        destination types like any other source."""
        import pyarrow as pa
        import sqlalchemy as sa

        declared = self.table_columns(dataset, table)
        arrow = {"double": pa.float64(), "bigint": pa.int64(), "boolean": pa.bool_()}
        types = {name: arrow.get(self.kind_of(type_name), pa.string()) for name, type_name in declared.items()}
        schema = pa.schema(list(types.items()))
        select = ", ".join(self.quote(n) for n in types)
        sql = f"SELECT {select} FROM {self.qualified(dataset, table)} WHERE {self.quote('billing_period')} = :period"

        def column(values: tuple[Any, ...], data_type: pa.DataType) -> pa.Array:
            if data_type != pa.string():
                return pa.array(values, data_type)
            return pa.array(
                [v if v is None or isinstance(v, str) else (v.isoformat() if hasattr(v, "isoformat") else str(v))
                 for v in values], pa.string())

        def batches() -> Any:
            result = self.client.connection.execution_options(stream_results=True).execute(
                sa.text(sql), {"period": billing_period}
            )
            try:
                while rows := result.fetchmany(20_000):
                    columns = zip(*rows, strict=True)
                    yield pa.RecordBatch.from_arrays(
                        [column(values, field.type) for values, field in zip(columns, schema, strict=True)],
                        schema=schema,
                    )
            finally:
                result.close()

        return pa.RecordBatchReader.from_batches(schema, batches())
