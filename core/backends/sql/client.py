"""The generic SQL backend's connection: one SQLAlchemy connection, explicit transactions, errors translated.

SQLite has no schemas. dlt's ``sqlalchemy`` destination maps a dataset to a separate database file next to the
main one, ``<stem>__<dataset><suffix>``, ATTACHed under the dataset's name; :meth:`SQLAlchemyClient.attach` does
the same, so ``<dataset>._finops_load_state`` and ``<dataset>.<table>`` are the same tables for dlt, for us and for
any connection doing that ATTACH. Python's sqlite3 would open transactions only before DML (DDL would run outside
them); we switch that off and emit BEGIN ourselves, so DDL, DELETE, INSERT and the state row commit together.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn

from core.backends.sql.config import GenericSQLConfig, mask_url
from core.backends.sql.dialects import TIMESTAMP_COLUMNS, bind_value, parse_stamp
from core.backends.sqlengine.names import quote_identifier
from core.backends.sqlengine.params import qmark_to_named
from core.errors import ConfigError, DestinationError, LoadError


class Result:
    """A statement's rows (already fetched), column names and row count."""

    def __init__(self, rows: Sequence[Any], keys: list[str], rowcount: int) -> None:
        self.rows = [tuple(row) for row in rows]
        self.keys, self.rowcount = keys, rowcount


class SQLAlchemyClient:
    """One connection to the configured URL. Statements commit at once unless run in :meth:`transaction`."""

    def __init__(self, config: GenericSQLConfig, dialect: str) -> None:
        self.config = config
        self.dialect = dialect
        self._engine: Any = None
        self._conn: Any = None
        self._password: str | None = None
        self.in_transaction = False

    def url(self) -> Any:
        """The SQLAlchemy URL, a SQLite path made absolute (dlt would resolve a relative one elsewhere).

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
        if url.drivername == "postgresql" and _installed("psycopg2") and not _installed("psycopg"):
            # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the postgresql extra installs psycopg2
            url = url.set(drivername="postgresql+psycopg2")
        if url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
                raise ConfigError("An in-memory SQLite database cannot be shared with dlt; give a file path.")
            url = url.set(database=str(Path(url.database).expanduser().resolve()))
        return url

    @property
    def connection(self) -> Any:
        self.connect()
        return self._conn

    @property
    def engine(self) -> Any:
        self.connect()
        return self._engine

    def connect(self) -> None:
        if self._conn is not None:
            return
        import sqlalchemy as sa

        url = self.url()
        self._password = url.password
        sqlite = url.get_backend_name() == "sqlite"
        try:
            if sqlite:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            options: dict[str, Any] = {"connect_args": {"timeout": 60}} if sqlite else {}
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool, **options)
        except ModuleNotFoundError as exc:
            missing = f"The SQLAlchemy driver {exc.name!r} is not installed."
            raise ConfigError(missing, hint=f"pip install {exc.name}") from None
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise ConfigError(f"Cannot use {self.config.describe()}: {exc}") from None
        except OSError as exc:
            raise DestinationError(f"Cannot create the folder of {self.config.describe()}: {exc}") from None
        if sqlite:
            sa.event.listen(engine, "connect", _sqlite_explicit_transactions)
            sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        try:
            conn = engine.connect()
            # SQLite opens anything lazily; reading the schema proves the file is a database
            conn.execute(sa.text("PRAGMA schema_version" if sqlite else "SELECT 1"))
            conn.commit()
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise DestinationError(f"Cannot connect to {self.config.describe()}: {self.reason(exc)}") from None
        self._engine, self._conn = engine, conn

    def close(self) -> None:
        if self._conn is not None:
            with suppress(Exception):
                self._conn.close()
            self._engine.dispose()
            self._conn = self._engine = None

    def reason(self, exc: Exception) -> str:
        """The driver's own words (first line), never with the URL's password in them."""
        text = str(getattr(exc, "orig", None) or exc).strip()
        text = mask_url(text.splitlines()[0]) if text else type(exc).__name__
        return text.replace(self._password, "***") if self._password else text

    def query(self, sql: str, params: dict[str, Any] | None = None, *, what: str = "querying the database") -> Result:
        """Run one statement (``:name`` binds); outside :meth:`transaction` it commits at once.

        Raises:
            DestinationError: the connection was lost.
            LoadError: any other failure (the statement's transaction is rolled back).
        """
        import sqlalchemy as sa

        conn = self.connection
        try:
            result = conn.execute(sa.text(sql), params or {})
            rows = result.fetchall() if result.returns_rows else []
            keys = list(result.keys()) if result.returns_rows else []
            if not self.in_transaction:
                conn.commit()
        except sa.exc.SQLAlchemyError as exc:
            if not self.in_transaction:
                with suppress(Exception):
                    conn.rollback()
            self._raise(exc, what)
        return Result(rows, keys, result.rowcount)

    def _raise(self, exc: Exception, what: str) -> NoReturn:
        """A driver error as ours: a lost connection is a DestinationError, anything else a LoadError."""
        import sqlalchemy as sa

        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
            lost = f"Lost the connection to {self.config.describe()} while {what}: {self.reason(exc)}"
            raise DestinationError(lost) from None
        raise LoadError(f"Database error while {what}: {self.reason(exc)}") from exc

    def execute_qmark(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """:class:`~core.state.SqlStateManager`'s execute: ``?`` binds, timestamps as the engine stores them."""
        text, values = qmark_to_named(sql, [bind_value(v, self.dialect) for v in params])
        result = self.query(text, values, what="updating the load state")
        if self.dialect != "sqlite":
            return result.rows
        # SQLite keeps timestamps as ISO text; the state's timestamp columns come back as datetimes
        stamps = {i for i, key in enumerate(result.keys) if key in TIMESTAMP_COLUMNS}
        return [tuple(parse_stamp(v) if i in stamps else v for i, v in enumerate(row)) for row in result.rows]

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[None]:
        """Our own transaction: every statement inside commits (or rolls back) together."""
        import sqlalchemy as sa

        conn = self.connection
        try:
            if conn.in_transaction():  # an implicit read transaction would make begin() fail
                conn.commit()
            conn.begin()
        except sa.exc.SQLAlchemyError as exc:
            self._raise(exc, "starting a transaction")
        self.in_transaction = True
        try:
            yield
            try:
                conn.commit() if commit else conn.rollback()
            except sa.exc.SQLAlchemyError as exc:  # e.g. "database is locked", a lost connection
                self._raise(exc, "committing")
        except BaseException:
            with suppress(Exception):
                conn.rollback()
            raise
        finally:
            self.in_transaction = False

    def inspect(self, read: Any) -> Any:
        """``read(inspector)``, closing the implicit transaction the inspector opens outside ours."""
        import sqlalchemy as sa

        try:
            return read(sa.inspect(self.connection))
        except sa.exc.SQLAlchemyError as exc:
            raise LoadError(f"Cannot read the database catalogue: {self.reason(exc)}") from exc
        finally:
            if not self.in_transaction and self._conn is not None:
                with suppress(Exception):
                    self._conn.commit()

    def attach(self, dataset: str, *, create: bool = True) -> bool:
        """SQLite: attach ``<stem>__<dataset><suffix>`` as ``dataset`` (dlt's layout); other engines: no-op.

        Returns:
            False when ``create`` is off and the dataset's file does not exist.
        """
        if self.dialect != "sqlite" or dataset == "main":
            return True
        raw = self.connection.connection.driver_connection
        if dataset in {row[1] for row in raw.execute("PRAGMA database_list").fetchall()}:
            return True
        main = Path(self.url().database)
        path = main.parent / f"{main.stem}__{dataset}{main.suffix}"
        if not create and not path.exists():
            return False
        import sqlite3

        try:
            raw.execute("ATTACH DATABASE ? AS ?", (str(path), dataset))  # outside any transaction, as SQLite wants
            raw.execute(f"PRAGMA {quote_identifier(dataset, 'sqlite')}.schema_version")  # proves it is a database
        except sqlite3.DatabaseError as exc:
            with suppress(sqlite3.Error):
                raw.execute("DETACH DATABASE ?", (dataset,))
            raise DestinationError(f"Cannot use {path} for the dataset {dataset!r}: {exc}") from None
        return True


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _sqlite_explicit_transactions(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite would BEGIN only before DML and run DDL outside the transaction; SQLAlchemy emits BEGIN instead
    dbapi_connection.isolation_level = None
