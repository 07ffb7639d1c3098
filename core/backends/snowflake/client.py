"""The Snowflake backend's connection: snowflake-connector-python (imported here, lazily), server-side binding
(``qmark``: values travel apart from the statement text), transactions through the connector's autocommit switch.

Why not ``BEGIN``/``COMMIT`` statements: with ``autocommit`` off the connector opens the transaction by itself
and ``commit()``/``rollback()`` end it, which is the connector's documented way and needs no statement text of
ours. Every driver error is translated at this boundary: a failed login or a lost connection is a
:class:`~core.errors.DestinationError` (exit 4) carrying the server's reason; anything else is a
:class:`~core.errors.LoadError`. Secrets (the password, the passphrase, AWS keys handed to a ``COPY``) are
scrubbed from every message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from core.backends.snowflake.config import SnowflakeConfig
from core.errors import ConfigError, DestinationError, LoadError

log = logging.getLogger(__name__)

#: connector error numbers that mean the session is gone (expired token, network), not a bad statement
_SESSION_GONE = {250001, 250002, 250003, 251005, 390111, 390112, 390114}


class SnowflakeClient:
    """One connection in autocommit mode; :meth:`transaction` switches autocommit off around a block."""

    def __init__(self, config: SnowflakeConfig) -> None:
        self.config = config
        self._conn: Any = None
        #: values never to show in a message (AWS keys of a COPY, added by the load strategy)
        self.secrets: set[str] = set()

    # -- secrets --------------------------------------------------------------------------------------------
    def _known_secrets(self) -> list[str]:
        values = [s.get_secret_value() for s in (self.config.password, self.config.private_key_passphrase) if s]
        return [v for v in (*values, *self.secrets) if v]

    def scrub(self, text: str) -> str:
        for secret in sorted(self._known_secrets(), key=len, reverse=True):
            text = text.replace(secret, "********")
        return text

    # -- connection -----------------------------------------------------------------------------------------
    def connect_params(self) -> dict[str, Any]:
        """The connector's keyword arguments (no secret is logged: this dict is never printed).

        Raises:
            ConfigError: no account (or host) or no user; a key file that cannot be read.
        """
        c = self.config
        if not (c.account or c.host) or not c.user:
            raise ConfigError(
                "Snowflake needs at least account and user ([database.snowflake] account, user; "
                "OPEN_FINOPS_DATABASE_SNOWFLAKE_ACCOUNT, …_USER).")
        params: dict[str, Any] = {
            "account": c.account or (c.host or "").split(".")[0], "user": c.user, "paramstyle": "qmark",
            "application": "open-finops", "login_timeout": 30, "network_timeout": 300,
            # instants are stored as TIMESTAMP_TZ; UTC keeps what a session prints unambiguous. Every name we send
            # is quoted and stored as written (billing_period, BilledCost): case-insensitive quoted names are
            # switched off explicitly, as an account or user default of TRUE would upper-case them all
            "session_parameters": {"TIMEZONE": "UTC", "QUERY_TAG": "open-finops",
                                   "QUOTED_IDENTIFIERS_IGNORE_CASE": False},
        }
        for key in ("role", "warehouse", "database", "host", "port", "protocol", "authenticator"):
            value = getattr(c, key)
            if value is not None:
                params[key] = value
        if c.private_key_path is not None:
            params["private_key"] = self._private_key()
            params.setdefault("authenticator", "SNOWFLAKE_JWT")
        elif c.password is not None:
            params["password"] = c.password.get_secret_value()
        return params

    def _private_key(self) -> bytes:
        """The key file as DER (PKCS#8), decrypted with ``SNOWFLAKE_PRIVATE_KEY_PASSPHRASE`` when encrypted."""
        from cryptography.hazmat.primitives import serialization

        path = self.config.private_key_path
        passphrase = self.config.private_key_passphrase
        try:
            data = path.expanduser().read_bytes()  # type: ignore[union-attr]
            password = passphrase.get_secret_value().encode() if passphrase else None
            loader = serialization.load_pem_private_key if b"-----BEGIN" in data else serialization.load_der_private_key
            key = loader(data, password=password)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"Cannot read the Snowflake private key {path}: {self.scrub(str(exc))}") from None
        return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def open(self) -> Any:
        import snowflake.connector

        try:
            conn = snowflake.connector.connect(**self.connect_params())
        except snowflake.connector.Error as exc:
            raise DestinationError(f"Cannot connect to {self.config.describe()}: {self._reason(exc)}") from None
        return conn

    @property
    def connection(self) -> Any:
        self.connect()
        return self._conn

    def connect(self) -> None:
        if self._conn is None or self._conn.is_closed():
            self._conn = self.open()

    def close(self) -> None:
        if self._conn is not None:
            with suppress(Exception):
                self._conn.close()
            self._conn = None

    # -- statements -----------------------------------------------------------------------------------------
    def run(self, sql: str, params: Sequence[Any] = (), *, what: str) -> tuple[list[tuple[Any, ...]], int]:
        """One statement (``?`` placeholders, bound by the server): ``(rows, rowcount)``.

        Raises:
            DestinationError: the session was lost.
            LoadError: any other failure.
        """
        import snowflake.connector

        conn = self.connection
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, list(params) if params else None)
                rows = [tuple(r) for r in cursor.fetchall()] if cursor.description else []
                return rows, cursor.rowcount if cursor.rowcount is not None else -1
        except snowflake.connector.Error as exc:
            raise self.translate(exc, what) from None

    def _reason(self, exc: Exception) -> str:
        text = str(getattr(exc, "raw_msg", None) or exc).strip()
        return self.scrub(text.splitlines()[0] if text else type(exc).__name__)

    def translate(self, exc: Exception, what: str) -> DestinationError | LoadError:
        import snowflake.connector

        reason = self._reason(exc)
        gone = (self._conn is None or self._conn.is_closed() or getattr(exc, "errno", None) in _SESSION_GONE
                or isinstance(exc, (snowflake.connector.errors.OperationalError,
                                    snowflake.connector.errors.InterfaceError)))
        if gone:
            return DestinationError(f"Lost the connection to {self.config.describe()} while {what}: {reason}")
        return LoadError(f"Snowflake error while {what}: {reason}")

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[None]:
        """Autocommit off for the block, then ``commit()`` (or ``rollback()`` when ``commit`` is off, or on any
        error), autocommit on again. DDL inside would commit implicitly: the envelope runs it before."""
        import snowflake.connector

        conn = self.connection
        try:
            conn.autocommit(False)
        except snowflake.connector.Error as exc:
            raise self.translate(exc, "starting a transaction") from None
        try:
            yield
        except BaseException:
            with suppress(Exception):
                conn.rollback()
            with suppress(Exception):
                conn.autocommit(True)
            raise
        try:
            conn.commit() if commit else conn.rollback()
        except snowflake.connector.Error as exc:
            with suppress(Exception):
                conn.rollback()
            raise self.translate(exc, "committing") from None
        finally:
            with suppress(Exception):
                conn.autocommit(True)
