"""Any SQL database SQLAlchemy reaches, loaded through a dlt destination (``sqlalchemy`` by default).

dlt stages each period (see :mod:`core.backends.dlt_stage`); one transaction of ours on a SQLAlchemy connection
(:mod:`core.backends.sql_client`) then replaces the period and marks its state row. Engines whose DDL commits
implicitly (MySQL) get the DDL first, so that DELETE + INSERT + state still commit together. On SQLite a dataset
is an attached file, exactly as dlt lays it out (see :mod:`core.backends.sql_client`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from core.backends import dlt_stage
from core.backends.base import (
    STATE_TABLE,
    Capabilities,
    CheckResult,
    DatabaseBackend,
    DataReader,
    ExportTable,
    PeriodLoad,
)
from core.backends.sql_client import Result, SQLAlchemyClient
from core.backends.sql_config import GenericSQLConfig
from core.backends.sql_dialects import (
    ANSI_TYPES,
    CREATE_SCHEMA,
    IMPLICIT_COMMIT_DDL,
    JSON_TEXT_NEEDS_CAST,
    TYPE_MAPS,
    url_dialect,
)
from core.backends.sql_names import fit_identifier
from core.errors import ConfigError, FinOpsError, LoadError
from core.state import SqlStateManager

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

log = logging.getLogger(__name__)



class GenericSQLBackend(DatabaseBackend):
    name = "sql"
    extra = "sql"
    dialect = "sqlite"  # per instance: the URL's dialect
    capabilities: ClassVar[Capabilities] = Capabilities(
        native_s3_read=False, transactional_replace=True, json_type="TEXT"
    )
    config_model = GenericSQLConfig
    max_identifier_length = 63

    def __init__(self, config: GenericSQLConfig, *, data_dir: Path | None = None) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: GenericSQLConfig = config
        self.dialect = url_dialect(config.url())  # type: ignore[misc]
        self.types = TYPE_MAPS.get(self.dialect, ANSI_TYPES)
        self.capabilities = Capabilities(  # type: ignore[misc]
            native_s3_read=False, transactional_replace=self.dialect not in IMPLICIT_COMMIT_DDL,
            json_type=self.types["json"],
        )
        self.client = SQLAlchemyClient(config, self.dialect)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def url(self) -> Any:
        return self.client.url()

    def connect(self) -> None:
        self.client.connect()

    def exists(self) -> bool:
        """SQLite creates its file on connect; every other engine is a server."""
        if self.dialect != "sqlite":
            return True
        database = self.url().database
        return bool(database) and Path(database).expanduser().exists()

    def close(self) -> None:
        self.client.close()

    def query(self, sql: str, params: dict[str, Any] | None = None, *, what: str = "querying the database") -> Result:
        return self.client.query(sql, params, what=what)

    # -- backend API ----------------------------------------------------------------------------------------
    def get_dlt_destination(self) -> Any:
        dlt_stage.dlt_defaults()
        from dlt.common.destination import Destination

        url = self.url()
        if self.config.destination != "sqlalchemy":  # dlt's own destinations want a plain scheme (no "+driver")
            url = url.set(drivername=url.get_backend_name())
        credentials = url.render_as_string(hide_password=False)
        return Destination.from_reference(self.config.destination, credentials=credentials)

    def state_manager(self, dataset: str) -> SqlStateManager:
        """Connects on its first statement, not here. SQLite: the dataset's file is attached when it exists;
        only ``ensure()`` (through :meth:`ensure_schema`) creates it, so reading the state never creates files."""

        def execute(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            self.client.attach(dataset, create=False)
            return self.client.execute_qmark(sql, params)

        types = {"text": self.types["string"], "bigint": self.types["bigint"],
                 "timestamp": self.types["timestamp"], "boolean": self.types["boolean"]}
        return SqlStateManager(execute, self.quote, dataset, types=types, ensure_schema=self.ensure_schema)

    def ensure_schema(self, dataset: str) -> None:
        """A schema where the engine has them; SQLite attaches the dataset's own file instead."""
        if self.dialect in CREATE_SCHEMA:
            self.query(f"CREATE SCHEMA IF NOT EXISTS {self.quote(dataset)}")
        else:
            self.client.attach(dataset)

    def data_reader(self, store: Any) -> DataReader:
        from core.backends.readers import Boto3DataReader  # pyarrow: only when data is read

        return Boto3DataReader(store)

    def table_columns(self, dataset: str, table: str) -> dict[str, str]:
        def read(inspector: Any) -> dict[str, str]:
            if not inspector.has_table(table, schema=dataset):
                return {}
            return {c["name"]: str(c["type"]) for c in inspector.get_columns(table, schema=dataset)}

        return self.client.inspect(read)

    def _prepare_table(self, dataset: str, table: str, kinds: dict[str, str]) -> dict[str, str]:
        """Create the export table or add this version's new columns; returns stored column → type."""
        target = self.qualified(dataset, table)
        existing = self.table_columns(dataset, table)
        if not existing:
            body = ", ".join(f"{self.quote(self.column(n))} {self.types[k]}" for n, k in kinds.items())
            self.query(f"CREATE TABLE {target} ({body})", what=f"creating {dataset}.{table}")
            self._index(dataset, table)
            return {self.column(n): self.types[k] for n, k in kinds.items()}
        for name, kind in kinds.items():
            if self.column(name) not in existing:
                log.info("%s.%s: new column %s %s", dataset, table, name, self.types[kind])
                self.query(f"ALTER TABLE {target} ADD COLUMN {self.quote(self.column(name))} {self.types[kind]}")
                existing[self.column(name)] = self.types[kind]
        return existing

    def _index(self, dataset: str, table: str) -> None:
        """An index on billing_period, so that replacing one period does not scan them all (where the syntax
        is known: SQLite names the index in the schema, PostgreSQL the table; MySQL cannot index TEXT)."""
        name = fit_identifier(f"{table}_billing_period_idx", self.max_identifier_length)
        if self.dialect == "sqlite":
            on = f"{self.qualified(dataset, name)} ON {self.quote(table)}"
        elif self.dialect == "postgres":
            on = f"{self.quote(name)} ON {self.qualified(dataset, table)}"
        else:
            return
        self.query(f"CREATE INDEX {on} (billing_period)", what=f"indexing {dataset}.{table}")

    def replace_period(self, load: PeriodLoad) -> int:
        layout = dlt_stage.stage_layout(load.dataset, load.table, load.files, self.max_identifier_length)

        def drop(staging: dlt_stage.StagedTable) -> None:
            if self.client.attach(staging.dataset, create=False):
                self.query(f"DROP TABLE IF EXISTS {staging.qualified}", what="dropping the staging table")

        # parquet: dlt inserts the Arrow batches in chunks; its default (typed JSON lines) costs more per row
        file_format = "parquet" if self.config.destination == "sqlalchemy" else None
        with dlt_stage.staged_period(self, load, layout, loader_file_format=file_format, drop=drop) as (source, staged):
            if source is not None:
                self.client.attach(source.dataset)  # SQLite: dlt's dataset file, seen under the same name
            return self._swap_in(load, layout, source, staged)

    def _swap_in(
        self, load: PeriodLoad, layout: dlt_stage.StageLayout, source: dlt_stage.StagedTable | None, staged: int,
    ) -> int:
        """The one transaction: DDL (where the engine allows), DELETE, INSERT … SELECT, state row."""
        target = self.qualified(load.dataset, load.table)
        state = self.state_manager(load.dataset)
        self.ensure_schema(load.dataset)
        if self.dialect in IMPLICIT_COMMIT_DDL:  # DDL would commit our transaction halfway: do it first
            types = self._prepare_table(load.dataset, load.table, layout.kinds)
        with self.client.transaction():
            if self.dialect not in IMPLICIT_COMMIT_DDL:
                types = self._prepare_table(load.dataset, load.table, layout.kinds)
            self.query(f"DELETE FROM {target} WHERE billing_period = :period", {"period": load.billing_period})
            rows = 0
            if source is not None and staged:  # files with a header and no rows stage nothing
                names = ", ".join(self.quote(self.column(n)) for n in layout.columns)
                values = ", ".join(self._cast(source.columns[n], types[self.column(n)]) for n in layout.columns)
                what = f"inserting {load.table} {load.billing_period} from the staging table"
                insert = f"INSERT INTO {target} ({names}) SELECT {values} FROM {source.qualified}"
                rows = self.query(insert, what=what).rowcount
                if rows != staged:  # dlt lost or duplicated rows: never publish that
                    raise LoadError(f"{load.table} {load.billing_period}: {staged} rows read but {rows} staged.")
            state.complete(load.record, rows=rows, files=len(load.files))
        return rows

    def _cast(self, column: str, target_type: str) -> str:
        """JSON arrives as text. PostgreSQL's ``jsonb`` takes text only through a cast; MySQL parses text into
        its ``JSON`` type by itself, and MariaDB's ``JSON`` is ``LONGTEXT`` (it has no ``CAST(… AS JSON)``)."""
        if self.dialect in JSON_TEXT_NEEDS_CAST and "JSON" in target_type.upper():
            return f"CAST({column} AS {target_type})"
        return column

    def read_period(self, dataset: str, table: str, billing_period: str) -> pa.RecordBatchReader:
        """A server-side cursor read in chunks, each chunk turned column by column into an Arrow batch (no dict
        per row). Numbers keep their type; everything else travels as text (ISO timestamps, JSON), which the
        destination types like any other source."""
        import pyarrow as pa
        import sqlalchemy as sa

        from core.copy import kind_of_type

        declared = self.table_columns(dataset, table)
        arrow = {"double": pa.float64(), "bigint": pa.int64(), "boolean": pa.bool_()}
        types = {name: arrow.get(kind_of_type(type_name), pa.string()) for name, type_name in declared.items()}
        schema = pa.schema(list(types.items()))
        select = ", ".join(self.quote(n) for n in types)
        sql = f"SELECT {select} FROM {self.qualified(dataset, table)} WHERE billing_period = :period"

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

    def list_tables(self, dataset: str) -> list[ExportTable]:
        if not self.client.attach(dataset, create=False):
            return []
        names = sorted(self.client.inspect(lambda inspector: inspector.get_table_names(schema=dataset)))
        tables = [t for t in names if t != STATE_TABLE and "billing_period" in self.table_columns(dataset, t)]
        return [self.summarise(dataset, table) for table in tables]

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        return self.query(sql).rows

    def check(self, dataset: str | None = None) -> CheckResult:
        target = self.config.describe()
        schemas = self.dialect in CREATE_SCHEMA
        probe = self.qualified("_finops_check", "probe") if schemas else self.quote("_finops_check_probe")
        try:
            started = time.perf_counter()
            self.connect()
            self.query("SELECT 1")
            latency = (time.perf_counter() - started) * 1000
            if self.dialect in IMPLICIT_COMMIT_DDL:  # DDL commits at once: create, then always drop
                self.query("DROP SCHEMA IF EXISTS _finops_check", what="dropping a leftover probe schema")
                try:
                    self.query("CREATE SCHEMA _finops_check", what="creating a schema")
                    self.query(f"CREATE TABLE {probe} (id INTEGER)", what="creating a table")
                finally:
                    with suppress(FinOpsError):
                        self.query("DROP SCHEMA IF EXISTS _finops_check", what="dropping the probe schema")
            else:
                with self.client.transaction(commit=False):  # rolled back: the check leaves nothing behind
                    if schemas:
                        self.query("CREATE SCHEMA _finops_check", what="creating a schema")
                    self.query(f"CREATE TABLE {probe} (id INTEGER)", what="creating a table")
            version = ".".join(str(p) for p in (self.client.engine.dialect.server_version_info or ()))
        except ConfigError:
            raise  # a missing or bad setting is exit 2, not an unreachable database
        except FinOpsError as exc:
            return CheckResult(ok=False, backend=self.name, target=target, error=exc.message)
        return CheckResult(
            ok=True, backend=self.name, target=target, latency_ms=round(latency, 2),
            details={"dialect": self.dialect, "version": version, "can_create_table": True,
                     "can_create_schema": schemas},
        )
