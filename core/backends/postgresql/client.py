"""The PostgreSQL backend's connection: psycopg2 (imported here, lazily), explicit transactions, advisory locks.

Every driver error is translated at this boundary: a connection that cannot be opened or was lost is a
:class:`~core.errors.DestinationError` (exit 4) carrying the server's reason; anything else is a
:class:`~core.errors.LoadError`. The password never appears in a message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from core.backends.postgresql.config import PostgreSQLConfig
from core.errors import DestinationError, LoadError, LockTimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.postgresql.copy import CsvStream

log = logging.getLogger(__name__)


class PostgreSQLClient:
    """One autocommit connection; :meth:`transaction` wraps statements in BEGIN … COMMIT."""

    def __init__(self, config: PostgreSQLConfig) -> None:
        self.config = config
        self._conn: Any = None

    def password(self) -> str | None:
        return self.config.password.get_secret_value() if self.config.password else None

    def scrub(self, text: str) -> str:
        password = self.password()
        return text.replace(password, "********") if password else text

    def open(self) -> Any:
        """A new connection (session timezone UTC: naive timestamps in ``COPY`` are UTC; client encoding UTF-8).

        Raises:
            DestinationError: refused, unknown host or database, or credentials rejected.
        """
        import psycopg2

        params: dict[str, Any] = {
            "host": self.config.host, "port": self.config.port, "dbname": self.config.database,
            "user": self.config.user, "sslmode": self.config.sslmode, "connect_timeout": 15,
            "application_name": "finops", "options": "-c timezone=UTC -c client_encoding=UTF8",
        }
        if self.password():  # otherwise libpq still reads PGPASSWORD / ~/.pgpass
            params["password"] = self.password()
        try:
            conn = psycopg2.connect(**params)
        except psycopg2.Error as exc:
            raise DestinationError(f"Cannot connect to {self.config.describe()}: {self.scrub(str(exc).strip())}") from None
        conn.autocommit = True  # transactions are explicit (BEGIN … COMMIT) where we need one
        return conn

    @property
    def connection(self) -> Any:
        self.connect()
        return self._conn

    def connect(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = self.open()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run(self, sql: str, params: Sequence[Any] = (), *, what: str = "querying PostgreSQL") -> tuple[list[tuple], int]:
        """One statement (``%s`` placeholders): ``(rows, rowcount)``.

        Raises:
            DestinationError: the connection was lost.
            LoadError: any other failure.
        """
        import psycopg2

        conn = self.connection
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, list(params) if params else None)
                return (cursor.fetchall() if cursor.description else []), cursor.rowcount
        except psycopg2.Error as exc:
            error = self._translate(exc, what)
            raise error from (None if isinstance(error, DestinationError) else exc)

    def copy_in(self, sql: str, stream: CsvStream, *, what: str) -> int:
        """``COPY … FROM STDIN`` fed by ``stream``; returns the rows the server copied.

        Raises:
            FinOpsError: the stream's own failure (a corrupt file), when that is what aborted the COPY.
            DestinationError: the connection was lost.
            LoadError: the server rejected a value (the message names the column, from the server's context).
        """
        import psycopg2

        try:
            with self.connection.cursor() as cursor:
                cursor.copy_expert(sql, stream, size=1024 * 1024)
                return int(cursor.rowcount)
        except psycopg2.Error as exc:
            if stream.error is not None:  # psycopg2 reports "error in .read() call": ours is the real reason
                raise stream.error from None  # (a FinOpsError from the reader, or KeyboardInterrupt)
            error = self._translate(exc, what, getattr(getattr(exc, "diag", None), "context", None))
            raise error from (None if isinstance(error, DestinationError) else exc)

    def _translate(self, exc: Exception, what: str, context: str | None = None) -> DestinationError | LoadError:
        import psycopg2

        reason = self.scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if self._conn is None or self._conn.closed or isinstance(exc, psycopg2.InterfaceError):
            return DestinationError(f"Lost the connection to {self.config.describe()} while {what}: {reason}")
        if context:  # e.g. "COPY cur2, line 4, column line_item_blended_cost: \"abc\"": which column
            reason = f"{reason} ({self.scrub(context.strip().splitlines()[0])})"
        return LoadError(f"PostgreSQL error while {what}: {reason}")

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[None]:
        """BEGIN … COMMIT (or ROLLBACK when ``commit`` is off, or on any error)."""
        self.run("BEGIN")
        try:
            yield
        except BaseException:
            if self._conn is not None and not self._conn.closed:
                with suppress(Exception), self._conn.cursor() as cursor:  # it may already be aborted
                    cursor.execute("ROLLBACK")
            raise
        self.run("COMMIT" if commit else "ROLLBACK")

    @contextmanager
    def advisory_lock(self, key: int, name: str, *, timeout: float, poll: float = 0.5) -> Iterator[None]:
        """A session advisory lock held on a connection of its own, polled until ``timeout``.

        The server releases it by itself when the session ends, so a crashed importer never blocks the next.

        Raises:
            LockTimeoutError: another session still holds it after ``timeout`` seconds.
        """
        conn = self.open()
        try:
            deadline = time.monotonic() + max(timeout, 0)
            warned = False
            while not self._try_lock(conn, key):
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"Another import of {name!r} into {self.config.describe()} is still running "
                        f"(PostgreSQL advisory lock {key} held; waited {timeout:.0f} s).",
                        hint="Wait for it to finish, or raise [project] lock_timeout.",
                    )
                if not warned:
                    log.warning("Another import of %r is running; waiting up to %.0f s for it", name, timeout)
                    warned = True
                time.sleep(poll)
            try:
                yield
            finally:
                with suppress(Exception), conn.cursor() as cursor:  # a lost session has released it already
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        finally:
            conn.close()

    def _try_lock(self, conn: Any, key: int) -> bool:
        import psycopg2

        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
                return bool(cursor.fetchone()[0])
        except psycopg2.Error as exc:
            raise DestinationError(f"Lost the connection to {self.config.describe()} while locking: {exc}") from None
