"""DuckDB, the embedded default: one local file, and the engine reads S3 itself (httpfs).

The ``duckdb`` driver is imported only inside methods. httpfs is loaded from the ``duckdb-extension-httpfs``
wheel (pinned with duckdb in pyproject.toml) because this tool must run air-gapped: DuckDB's own extension
download cannot work there. S3 credentials are the ones boto3 resolved, handed to DuckDB as a temporary secret
with bound parameters — never in SQL text, never in a log line.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from core.backends.base import Capabilities, DataReader
from core.backends.duckdb.config import DuckDBConfig
from core.backends.duckdb.load import EngineScan
from core.backends.locks import file_lock
from core.backends.sqlengine import Result, SqlBackend
from core.errors import ConfigError, DestinationError, LoadError, SourceError

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import pyarrow as pa

    from core.storage import ObjectStore

log = logging.getLogger(__name__)


def _httpfs_path(version: str) -> Path | None:
    try:
        import duckdb_extension_httpfs
    except ImportError:
        return None
    path = Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{version}" / "httpfs.duckdb_extension"
    return path if path.exists() else None


#: httpfs errors that mean the credentials or the endpoint were refused (not one missing or broken file)
_ACCESS_REFUSED = re.compile(r"HTTP 40[13]\b|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken")


def default_memory_limit() -> str:
    """The memory budget when ``memory_limit`` is unset: half the machine's memory, at most 2 GB. DuckDB's own
    default (80 %) is meant for a machine that does nothing else; a cron box is shared, and an import streams,
    so it needs little (peak RSS ~1 GiB per million-row month, whatever the number of months: benchmarks/)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "2GB"
    return f"{max(256, min(2048, total // 2 // 2**20))}MiB"


def _literal(text: str) -> str:
    """A SQL string literal, for the few statements that take no parameters (``LOAD``); never for secrets."""
    return "'" + text.replace("'", "''") + "'"


class DuckDBBackend(SqlBackend):
    name = "duckdb"
    extra = None  # duckdb is a core dependency
    dialect = "duckdb"
    capabilities = Capabilities(native_schemes=frozenset({"s3", "file"}), ddl="transactional")
    config_model = DuckDBConfig
    strategy = EngineScan
    #: DuckDB keeps identifiers whole, whatever their length
    max_identifier_length = 1 << 16
    #: how long to wait when another process holds the database file
    open_timeout: ClassVar[float] = 30.0

    def __init__(self, config: DuckDBConfig, *, data_dir: Path | None = None) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: DuckDBConfig = config
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._s3_store: ObjectStore | None = None
        self._s3_secret: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        self.connect()
        assert self._conn is not None
        return self._conn

    def connect(self) -> None:
        if self._conn is not None:
            return
        import duckdb

        path = Path(self.config.database_path).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(f"Cannot create the folder for the DuckDB file {path}: {exc}") from exc
        deadline = time.monotonic() + self.open_timeout
        while True:
            try:
                conn = duckdb.connect(str(path))
                break
            except duckdb.IOException as exc:
                if "lock" in str(exc).lower() and time.monotonic() < deadline:
                    time.sleep(0.25)  # another process writes to this file; DuckDB allows one writer at a time
                    continue
                raise DestinationError(f"Cannot open the DuckDB file {path}: {exc}") from exc
            except duckdb.Error as exc:
                raise DestinationError(f"Cannot open the DuckDB file {path}: {exc}") from exc
        # No extension is ever downloaded at run time (air-gapped machines, reproducible runs).
        conn.execute("SET autoinstall_known_extensions = false")
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET memory_limit = ?", [self.config.memory_limit or default_memory_limit()])
        if self.config.threads:
            conn.execute("SET threads = ?", [self.config.threads])
        conn.execute("SET enable_progress_bar = false")
        # Each file is one INSERT, leaving a part-filled row group behind; DuckDB's vacuum would merge them all at
        # close, rewriting neighbours (measured at 1M rows: +4-6 s and +70 MiB of file; at 3M rows it doubled the
        # peak memory). Whole periods are deleted and re-inserted, so the space is reused without it.
        conn.execute("SET max_vacuum_tasks = 0")
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._s3_store = None  # the secret and httpfs belonged to that connection

    def lock(self, name: str, *, timeout: float) -> AbstractContextManager[None]:
        # DuckDB admits one writing process per file, so every import into it is serialised, whatever the
        # export; the lock sits beside the file so that every process using it finds the same one.
        path = Path(self.config.database_path).expanduser().resolve()
        return file_lock(path.with_name(path.name + ".finops-lock"), what=f"into {path}", timeout=timeout)

    # -- SQL helpers ----------------------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = (), *, what: str = "querying DuckDB") -> Result:
        import duckdb

        try:
            cursor = self.connection.execute(sql, list(params))
            return Result(cursor.fetchall() if cursor.description else [])
        except duckdb.InterruptException:  # Ctrl-C stopped the statement: the user wants to stop, not a failed period
            raise KeyboardInterrupt from None
        except RuntimeError as exc:  # the same, when DuckDB was waiting for Python (Arrow batches, fetch)
            if "interrupted" in str(exc).lower():
                raise KeyboardInterrupt from None
            raise
        except duckdb.IOException as exc:
            if _ACCESS_REFUSED.search(str(exc)):  # S3 refused the credentials: the source, not one file (exit 3)
                reason = str(exc).splitlines()[0]
                raise SourceError(f"S3 refused access while {what}: {reason}",
                                  hint="Check the AWS credentials (profile, role, keys) and the bucket policy.") from None
            raise LoadError(f"I/O error while {what}: {exc}") from exc
        except (duckdb.ConversionException, duckdb.InvalidInputException) as exc:
            raise LoadError(f"Bad data while {what}: {exc}") from exc
        except duckdb.Error as exc:
            raise LoadError(f"DuckDB error while {what}: {exc}") from exc

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[None]:
        import duckdb

        self.execute("BEGIN TRANSACTION", what="starting a transaction")
        try:
            yield
        except BaseException:
            with suppress(duckdb.Error):  # the transaction may already be aborted
                self.connection.execute("ROLLBACK")
            raise
        self.execute("COMMIT" if commit else "ROLLBACK", what="committing")

    def enable_s3(self, store: ObjectStore) -> None:
        """Load httpfs from the pinned wheel (once per connection) and hand DuckDB the credentials boto3 resolved.

        Called again before each file: boto3 refreshes expiring credentials (SSO, assumed roles, instance
        profiles) by itself, and the secret is replaced when they changed, so a long backfill outlives them.
        """
        import duckdb

        if self._s3_store is not store:
            path = _httpfs_path(duckdb.__version__)
            try:
                if path is not None:
                    self.connection.execute(f"LOAD {_literal(str(path))}")
                else:
                    self.connection.execute("LOAD httpfs")
            except duckdb.Error as exc:
                raise ConfigError(
                    f"DuckDB cannot load its httpfs extension to read S3: {exc}",
                    hint=f"pip install 'duckdb-extension-httpfs=={duckdb.__version__}'",
                ) from exc
            self._s3_store, self._s3_secret = store, None
        info = store.connection_info()  # type: ignore[attr-defined]
        options: dict[str, Any] = {"REGION": info.region}
        if info.access_key_id:
            options["KEY_ID"] = info.access_key_id
            options["SECRET"] = info.secret_access_key.get_secret_value() if info.secret_access_key else ""
        if info.session_token:
            options["SESSION_TOKEN"] = info.session_token.get_secret_value()
        if info.endpoint_url:
            scheme, _, host = info.endpoint_url.partition("://")
            options["ENDPOINT"] = host.rstrip("/")
            options["USE_SSL"] = scheme == "https"
            options["URL_STYLE"] = "path"  # S3-compatible stores rarely have virtual-host DNS
        fingerprint = hash(tuple(options.items()))  # in memory only; compared, never shown
        if fingerprint == self._s3_secret:
            return
        clause = ", ".join(f"{name} ?" for name in options)
        self.connection.execute(
            f"CREATE OR REPLACE TEMPORARY SECRET finops_s3 (TYPE s3, {clause})", list(options.values())
        )
        self._s3_secret = fingerprint

    # -- backend API ----------------------------------------------------------------------------------------
    def get_dlt_destination(self) -> Any:
        from core.backends.dlt_stage import dlt_defaults

        dlt_defaults()  # telemetry off unless the user opted in
        import dlt

        # Hand dlt our open connection when there is one: DuckDB refuses a second handle with other settings.
        credentials: Any = self._conn if self._conn is not None else str(Path(self.config.database_path).expanduser())
        return dlt.destinations.duckdb(credentials=credentials)

    def period_done(self) -> None:
        """Close the connection after each committed period (the next statement reopens it): DuckDB keeps the
        blocks it wrote and read cached for the life of a connection, so a backfill's memory would grow with
        every month loaded. The import lock stays held, so no other import gets in between."""
        self.close()

    def native_reader(self, store: ObjectStore) -> DataReader:
        from core.backends.duckdb.reader import DuckDBDataReader

        return DuckDBDataReader(store, self)

    def exists(self) -> bool:
        return Path(self.config.database_path).expanduser().exists()

    def read_period(self, dataset: str, table: str, billing_period: str) -> pa.RecordBatchReader:
        cursor = self.connection.cursor()
        sql = f"SELECT * FROM {self.qualified(dataset, table)} WHERE {self.quote('billing_period')} = ?"
        return cursor.execute(sql, [billing_period]).fetch_record_batch(64 * 1024)
