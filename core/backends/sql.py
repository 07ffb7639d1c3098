"""Any SQL database SQLAlchemy reaches, loaded through a dlt destination (``sqlalchemy`` by default).

dlt stages each period (see :mod:`core.backends.dlt_stage`); one transaction of ours on a SQLAlchemy connection
then replaces the period and marks its state row. Engines whose DDL commits implicitly (MySQL) get the DDL first,
so DELETE + INSERT + state still commit together.

SQLite has no schemas. dlt's ``sqlalchemy`` destination maps a dataset to a separate database file next to the
main one, ``<stem>__<dataset><suffix>``, ATTACHed under the dataset's name; we attach the same files under the same
names, so ``<dataset>._finops_load_state`` and ``<dataset>.<table>`` are what dlt, we and any SQLAlchemy connection
doing the same ATTACH see. Python's sqlite3 opens transactions only before DML, so we turn that off and emit
BEGIN ourselves: DDL, DELETE, INSERT and the state row then commit or roll back together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar

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
from core.backends.readers import Boto3DataReader
from core.backends.sql_config import GenericSQLConfig, mask_url
from core.backends.sql_dialects import (
    CREATE_SCHEMA,
    IMPLICIT_COMMIT_DDL,
    TIMESTAMP_COLUMNS,
    TYPE_MAPS,
    ANSI_TYPES,
    Result,
    bind_value,
    parse_stamp,
    reason,
    sqlite_explicit_transactions,
    url_dialect,
)
from core.backends.sql_params import qmark_to_named
from core.errors import ConfigError, DestinationError, FinOpsError, LoadError
from core.state import SqlStateManager, utcnow

log = logging.getLogger(__name__)

COST_COLUMN = "line_item_unblended_cost"

class GenericSQLBackend(DatabaseBackend):
    name = "sql"
    extra = "sql"
    dialect = "sqlite"  # per instance: the URL's dialect
    capabilities: ClassVar[Capabilities] = Capabilities(native_s3_read=False, transactional_replace=True, json_type="TEXT")
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
        self._engine: Any = None
        self._conn: Any = None
        self._in_tx = False
        self._conn_password: str | None = None

    # -- connection -----------------------------------------------------------------------------------------
    def url(self) -> Any:
        """The SQLAlchemy URL, a SQLite path made absolute (dlt resolves relative ones elsewhere).

        Raises:
            ConfigError: no URL configured, not a URL, or an in-memory SQLite database dlt cannot share.
        """
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        raw = self.config.url()
        if not raw:
            raise ConfigError(
                "The sql backend needs a SQLAlchemy URL.",
                hint="Set OPEN_FINOPS_DATABASE_SQL_CREDENTIALS (or [database.sql] credentials), "
                "e.g. sqlite:////abs/path/finops.db",
            )
        try:
            url = make_url(raw)
        except (ArgumentError, ValueError):
            raise ConfigError(f"[database.sql] credentials is not a SQLAlchemy URL: {mask_url(raw)}") from None
        if url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
                raise ConfigError("An in-memory SQLite database cannot be shared with dlt; give a file path.")
            url = url.set(database=str(Path(url.database).expanduser().resolve()))
        return url

    def connect(self) -> None:
        if self._conn is not None:
            return
        import sqlalchemy as sa

        url = self.url()
        self._conn_password = url.password
        sqlite = url.get_backend_name() == "sqlite"
        try:
            if sqlite:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool, **({"connect_args": {"timeout": 60}} if sqlite else {}))
        except ModuleNotFoundError as exc:
            raise ConfigError(f"The SQLAlchemy driver {exc.name!r} is not installed.", hint=f"pip install {exc.name}") from None
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise ConfigError(f"Cannot use {self.config.describe()}: {exc}") from None
        except OSError as exc:
            raise DestinationError(f"Cannot create the folder of {self.config.describe()}: {exc}") from None
        if sqlite:
            sa.event.listen(engine, "connect", sqlite_explicit_transactions)
            sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        try:
            conn = engine.connect()
            conn.execute(sa.text("SELECT 1"))
            conn.commit()
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise DestinationError(f"Cannot connect to {self.config.describe()}: {self._reason(exc)}") from None
        self._engine, self._conn = engine, conn

    def _reason(self, exc: Exception) -> str:
        """The driver's own words, never with the URL's password in them."""
        text = reason(exc)
        password = self._conn_password
        return text.replace(password, "***") if password else text

    def close(self) -> None:
        if self._conn is not None:
            with suppress(Exception):
                self._conn.close()
            self._engine.dispose()
            self._conn = self._engine = None

    @property
    def connection(self) -> Any:
        self.connect()
        return self._conn

    def query(self, sql: str, params: dict[str, Any] | None = None, *, what: str = "querying the database") -> Result:
        """Run one statement (``:name`` binds); outside our own transaction it commits at once."""
        import sqlalchemy as sa

        conn = self.connection
        try:
            result = conn.execute(sa.text(sql), params or {})
            rows = result.fetchall() if result.returns_rows else []
            keys = list(result.keys()) if result.returns_rows else []
            if not self._in_tx:
                conn.commit()
        except sa.exc.SQLAlchemyError as exc:
            if not self._in_tx:
                with suppress(Exception):
                    conn.rollback()
            if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
                raise DestinationError(f"Lost the connection to {self.config.describe()} while {what}: {self._reason(exc)}") from None
            raise LoadError(f"Database error while {what}: {self._reason(exc)}") from exc
        return Result(rows, keys, result.rowcount)

    @contextmanager
    def _transaction(self, *, commit: bool = True) -> Iterator[None]:
        """Our own transaction: every statement inside commits (or rolls back) together."""
        conn = self.connection
        if conn.in_transaction():  # an implicit read transaction (the inspector's) would make begin() fail
            conn.commit()
        conn.begin()
        self._in_tx = True
        try:
            yield
            conn.commit() if commit else conn.rollback()
        except BaseException:
            with suppress(Exception):
                conn.rollback()
            raise
        finally:
            self._in_tx = False

    def _execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """``SqlStateManager``'s execute: ``?`` binds, and timestamps as the engine stores them."""
        text, values = qmark_to_named(sql, [bind_value(v, self.dialect) for v in params])
        result = self.query(text, values, what="updating the load state")
        if self.dialect != "sqlite":
            return result.rows
        # SQLite keeps timestamps as ISO text; the state's timestamp columns come back as datetimes
        stamps = [i for i, key in enumerate(result.keys) if key in TIMESTAMP_COLUMNS]
        return [tuple(parse_stamp(v) if i in stamps else v for i, v in enumerate(row)) for row in result.rows]

    def attach(self, dataset: str, *, create: bool = True) -> bool:
        """SQLite: attach ``<stem>__<dataset><suffix>`` as ``dataset`` (dlt's layout); other engines: no-op."""
        if self.dialect != "sqlite" or dataset == "main":
            return True
        raw = self.connection.connection.driver_connection
        if dataset in {row[1] for row in raw.execute("PRAGMA database_list").fetchall()}:
            return True
        main = Path(self.url().database)
        path = main.parent / f"{main.stem}__{dataset}{main.suffix}"
        if not create and not path.exists():
            return False
        raw.execute("ATTACH DATABASE ? AS ?", (str(path), dataset))  # outside any transaction, as SQLite requires
        return True

    # -- backend API ----------------------------------------------------------------------------------------
    def get_dlt_destination(self) -> Any:
        from dlt.common.destination import Destination

        url = self.url()
        if self.config.destination != "sqlalchemy":  # dlt's own destinations want a plain scheme (no "+driver")
            url = url.set(drivername=url.get_backend_name())
        return Destination.from_reference(self.config.destination, credentials=url.render_as_string(hide_password=False))

    def state_manager(self, dataset: str) -> SqlStateManager:
        self.attach(dataset)
        return SqlStateManager(
            self._execute, self.quote, dataset, create_schema=self.dialect in CREATE_SCHEMA,
            types={"text": self.types["string"], "bigint": self.types["bigint"], "timestamp": self.types["timestamp"],
                   "boolean": self.types["boolean"]},
        )

    def data_reader(self, store: Any) -> DataReader:
        return Boto3DataReader(store)

    def _inspect(self, read: Any) -> Any:
        """``read(inspector)``, closing the implicit transaction the inspector opens outside ours."""
        import sqlalchemy as sa

        try:
            return read(sa.inspect(self.connection))
        except sa.exc.SQLAlchemyError as exc:
            raise LoadError(f"Cannot read the database catalogue: {self._reason(exc)}") from exc
        finally:
            if not self._in_tx and self._conn is not None:
                with suppress(Exception):
                    self._conn.commit()

    def table_columns(self, dataset: str, table: str) -> dict[str, str]:
        def read(inspector: Any) -> dict[str, str]:
            if not inspector.has_table(table, schema=dataset):
                return {}
            return {c["name"]: str(c["type"]) for c in inspector.get_columns(table, schema=dataset)}

        return self._inspect(read)

    def _prepare_table(self, dataset: str, table: str, kinds: dict[str, str]) -> dict[str, str]:
        target = self.qualified(dataset, table)
        existing = self.table_columns(dataset, table)
        if not existing:
            body = ", ".join(f"{self.quote(n)} {self.types[k]}" for n, k in kinds.items())
            self.query(f"CREATE TABLE {target} ({body})", what=f"creating {dataset}.{table}")
            return {n: self.types[k] for n, k in kinds.items()}
        for name, kind in kinds.items():
            if name not in existing:
                log.info("%s.%s: new column %s %s", dataset, table, name, self.types[kind])
                self.query(f"ALTER TABLE {target} ADD COLUMN {self.quote(name)} {self.types[kind]}")
                existing[name] = self.types[kind]
        return existing

    def replace_period(self, load: PeriodLoad) -> int:
        layout = dlt_stage.stage_layout(load.dataset, load.table, load.files, self.max_identifier_length)
        source: dlt_stage.StagedTable | None = None
        staged = 0
        try:
            if load.files:
                pipeline = dlt_stage.pipeline_for(
                    self.name, f"{self.config.describe()}/{load.dataset}", layout, load.table, self.data_dir,
                    self.get_dlt_destination(),
                )
                source = dlt_stage.staged_table(pipeline, layout)
                # parquet: dlt inserts Arrow batches in chunks; its default (typed JSON lines) costs more per row
                file_format = "parquet" if self.config.destination == "sqlalchemy" else None
                staged = dlt_stage.load_stage(pipeline, load, layout, loader_file_format=file_format, what=f"loading {load.table}")
                self.attach(source.dataset)
            return self._swap_in(load, layout, source, staged)
        finally:
            if source is not None and self.attach(source.dataset, create=False):
                with suppress(FinOpsError):  # never hide the load's own outcome behind a cleanup failure
                    self.query(f"DROP TABLE IF EXISTS {source.qualified}", what="dropping the staging table")

    def _swap_in(
        self, load: PeriodLoad, layout: dlt_stage.StageLayout, source: dlt_stage.StagedTable | None, staged: int
    ) -> int:
        target = self.qualified(load.dataset, load.table)
        state = self.state_manager(load.dataset)
        if self.dialect in CREATE_SCHEMA:
            self.query(f"CREATE SCHEMA IF NOT EXISTS {self.quote(load.dataset)}")
        if self.dialect in IMPLICIT_COMMIT_DDL:  # DDL would commit our transaction halfway: do it first
            types = self._prepare_table(load.dataset, load.table, layout.kinds)
        with self._transaction():
            if self.dialect not in IMPLICIT_COMMIT_DDL:
                types = self._prepare_table(load.dataset, load.table, layout.kinds)
            self.query(f"DELETE FROM {target} WHERE billing_period = :period", {"period": load.billing_period})
            rows = 0
            if source is not None:
                names = ", ".join(self.quote(n) for n in layout.columns)
                values = ", ".join(self._cast(source.columns[n], types[n]) for n in layout.columns)
                what = f"inserting {load.table} {load.billing_period} from the staging table"
                rows = self.query(f"INSERT INTO {target} ({names}) SELECT {values} FROM {source.qualified}", what=what).rowcount
            done = load.record
            done.status, done.row_count, done.file_count = "completed", rows, len(load.files)
            done.finished_at, done.error_message = utcnow(), None
            state.upsert(done)
            state.mark_current(done)
        return rows

    def _cast(self, column: str, target_type: str) -> str:
        """JSON arrives as text; engines with a JSON type that does not take text implicitly get a CAST."""
        if self.dialect == "sqlite" or "JSON" not in target_type.upper():
            return column
        return f"CAST({column} AS {target_type})"

    def list_tables(self, dataset: str) -> list[ExportTable]:
        if not self.attach(dataset, create=False):
            return []
        result = []
        for table in sorted(self._inspect(lambda inspector: inspector.get_table_names(schema=dataset))):
            columns = self.table_columns(dataset, table)
            if table == STATE_TABLE or "billing_period" not in columns:
                continue
            cost = f"SUM({self.quote(COST_COLUMN)})" if COST_COLUMN in columns else "NULL"
            rows = self.query(
                f"SELECT billing_period, COUNT(*), {cost} FROM {self.qualified(dataset, table)} "
                "GROUP BY billing_period ORDER BY billing_period"
            ).rows
            result.append(ExportTable(dataset, table, [PeriodSummary(p, int(n), None if c is None else float(c)) for p, n, c in rows]))
        return result

    def check(self) -> CheckResult:
        target = self.config.describe()
        try:
            started = time.perf_counter()
            self.connect()
            self.query("SELECT 1")
            latency = (time.perf_counter() - started) * 1000
            probe = self.qualified("_finops_check", "probe") if self.dialect in CREATE_SCHEMA else self.quote("_finops_check_probe")
            if self.dialect in IMPLICIT_COMMIT_DDL:
                self.query("CREATE SCHEMA IF NOT EXISTS _finops_check", what="creating a schema")
                self.query(f"CREATE TABLE {probe} (id INTEGER)", what="creating a table")
                self.query("DROP SCHEMA _finops_check", what="dropping the probe schema")
            else:
                with self._transaction(commit=False):  # rolled back: the check leaves nothing behind
                    if self.dialect in CREATE_SCHEMA:
                        self.query("CREATE SCHEMA _finops_check", what="creating a schema")
                    self.query(f"CREATE TABLE {probe} (id INTEGER)", what="creating a table")
            version = ".".join(str(p) for p in (self._engine.dialect.server_version_info or ()))
        except FinOpsError as exc:
            return CheckResult(ok=False, backend=self.name, target=target, error=exc.message)
        return CheckResult(
            ok=True, backend=self.name, target=target, latency_ms=round(latency, 2),
            details={"dialect": self.dialect, "version": version, "can_create_table": True,
                     "can_create_schema": self.dialect in CREATE_SCHEMA},
        )
