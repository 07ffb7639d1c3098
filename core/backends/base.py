"""The backend layer's contracts: a config model, a database backend, a state store and a data reader.

A backend is small on purpose (see docs/BACKENDS.md): engine differences are class constants and capability
flags, shared behaviour lives here or in :mod:`core.state`, and vendor code talks only to these interfaces —
never to a driver. Drivers are imported inside methods so that ``finops backends list`` and ``--help`` work with
no optional extra installed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from core.errors import DestinationError, LockTimeoutError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from core.storage import ObjectStore

log = logging.getLogger(__name__)

#: Logical column kinds every backend maps to its own types (see each backend's ``TYPE_MAP``).
ColumnKind = Literal["string", "double", "bigint", "boolean", "timestamp", "date", "json"]
FileFormat = Literal["csv", "parquet"]

STATE_TABLE = "_finops_load_state"
#: the cost column summed per period by ``list_tables`` (and verified by ``finops db copy``)
COST_COLUMN = "line_item_unblended_cost"


class BackendConfig(BaseModel):
    """Settings of one backend (a ``[database.<name>]`` sub-table). Secrets are ``SecretStr``."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    def describe(self) -> str:
        """Where the data goes, for messages (never a secret)."""
        return self.__class__.__name__


# ----------------------------------------------------------------------------------------------- data reading


@dataclass(frozen=True)
class SourceColumn:
    name: str
    kind: ColumnKind | Literal["map"]


@dataclass(frozen=True)
class SourceFile:
    """One data file as the reader found it: real format (magic bytes win over the manifest) and columns."""

    key: str
    format: FileFormat
    compression: Literal["gzip", "zip"] | None
    columns: tuple[SourceColumn, ...]
    size: int = 0


@dataclass(frozen=True)
class ColumnSpec:
    """One output column: read ``source`` as ``source_kind``, write it as ``target`` of ``kind``."""

    source: str
    target: str
    kind: ColumnKind
    source_kind: ColumnKind | Literal["map"] = "string"


@dataclass(frozen=True)
class FilePlan:
    file: SourceFile
    columns: tuple[ColumnSpec, ...]
    #: constant text columns added to every row (``billing_period``)
    constants: tuple[tuple[str, str], ...] = ()

    def target_kinds(self) -> dict[str, ColumnKind]:
        kinds: dict[str, ColumnKind] = {c.target: c.kind for c in self.columns}
        kinds.update({name: "string" for name, _ in self.constants})
        return kinds


class DataReader(ABC):
    """Reads billing data files from an :class:`~core.storage.ObjectStore`, one file at a time, as Arrow."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @abstractmethod
    def describe(self, key: str, *, size: int = 0) -> SourceFile:
        """Detect the real format from the first bytes and list the file's columns.

        Raises:
            LoadError: the file is unreadable or corrupt.
        """

    @abstractmethod
    def batches(self, plan: FilePlan) -> pa.RecordBatchReader:
        """The file renamed and typed as ``plan`` says, streamed in record batches (never whole in memory).

        Raises:
            LoadError: the file is corrupt or a value does not fit its type.
        """


# ----------------------------------------------------------------------------------------------------- state


@dataclass
class LoadRecord:
    """One row of ``_finops_load_state``: a (vendor, export, billing period, version) and what became of it."""

    vendor: str
    export_name: str
    billing_period: str
    version_id: str
    data_format_version: str
    source_location: str
    status: Literal["running", "completed", "failed"] = "running"
    file_count: int = 0
    row_count: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error_message: str | None = None
    is_current: bool = False

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "vendor",
        "export_name",
        "billing_period",
        "version_id",
        "data_format_version",
        "source_location",
        "status",
        "file_count",
        "row_count",
        "started_at",
        "finished_at",
        "error_message",
        "is_current",
    )

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.COLUMNS}


class StateManager(ABC):
    """Persists :class:`LoadRecord` rows in the destination itself, next to the data they describe."""

    @abstractmethod
    def ensure(self) -> None:
        """Create the state table if it is missing (idempotent)."""

    @abstractmethod
    def upsert(self, record: LoadRecord) -> None:
        """Insert or update the row of ``record``'s (vendor, export, period, version); never touches others."""

    @abstractmethod
    def mark_current(self, record: LoadRecord) -> None:
        """Make ``record`` the only current version of its period (others of that period lose the flag)."""

    @abstractmethod
    def records(
        self, *, vendor: str, export_name: str | None = None, billing_period: str | None = None
    ) -> list[LoadRecord]:
        """Every stored row matching the filters, oldest first."""

    def complete(self, record: LoadRecord, *, rows: int, files: int) -> None:
        """Mark ``record`` completed and current; backends call it inside their replace transaction."""
        from datetime import UTC

        record.status, record.row_count, record.file_count = "completed", rows, files
        record.finished_at, record.error_message = datetime.now(UTC), None
        self.upsert(record)
        self.mark_current(record)


# --------------------------------------------------------------------------------------------------- backend


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do, as data (read by the pipeline and the conformance suite)."""

    #: the engine reads s3:// itself with the credentials boto3 resolved
    native_s3_read: bool = False
    #: DDL, DELETE, INSERT and the state update commit together
    transactional_replace: bool = True
    #: name of the engine's JSON type (for docs and checks)
    json_type: str = "JSON"


@dataclass
class PeriodLoad:
    """Everything needed to replace one billing period of one export table atomically."""

    dataset: str
    table: str
    billing_period: str
    files: Sequence[FilePlan]
    record: LoadRecord
    reader: DataReader
    #: called after each file with (file, rows) so the CLI can show progress
    on_file_done: Any = None


@dataclass
class PeriodSummary:
    billing_period: str
    rows: int
    unblended_cost: float | None


@dataclass
class ExportTable:
    dataset: str
    table: str
    periods: list[PeriodSummary] = field(default_factory=list)


@dataclass
class CheckResult:
    ok: bool
    backend: str
    target: str
    latency_ms: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class DatabaseBackend(ABC):
    """One analytical database. Subclasses set the class constants and implement the abstract methods."""

    #: canonical registry name
    name: ClassVar[str]
    #: the pip extra that installs the driver (None: always installed)
    extra: ClassVar[str | None] = None
    #: sqlglot dialect for identifier quoting
    dialect: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()
    config_model: ClassVar[type[BackendConfig]]
    #: maximum identifier length (names are truncated deterministically above it)
    max_identifier_length: ClassVar[int] = 63

    def __init__(self, config: BackendConfig, *, data_dir: Path | None = None) -> None:
        self.config = config
        self.data_dir = Path(data_dir or "./data")

    # -- lifecycle ------------------------------------------------------------------------------------------
    @abstractmethod
    def connect(self) -> None:
        """Open the connection (idempotent).

        Raises:
            DestinationError: unreachable, or credentials rejected (exit 4).
        """

    @abstractmethod
    def close(self) -> None:
        """Release the connection; safe to call twice."""

    def exists(self) -> bool:
        """False when the destination certainly holds nothing yet and connecting would create it (an embedded
        database file not written yet): a dry run then plans without creating anything. Server engines: True."""
        return True

    def __enter__(self) -> DatabaseBackend:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the pipeline needs ----------------------------------------------------------------------------
    @abstractmethod
    def get_dlt_destination(self) -> Any:
        """A dlt destination pointing at the same database, usable in any dlt pipeline."""

    @abstractmethod
    def state_manager(self, dataset: str) -> StateManager:
        """The load-state store living in ``dataset``."""

    @abstractmethod
    def ensure_schema(self, dataset: str) -> None:
        """Make sure ``dataset`` exists (a schema, a database, an attached file: whatever the engine calls it)."""

    @abstractmethod
    def data_reader(self, store: ObjectStore) -> DataReader:
        """The best reader this engine has for ``store`` (native S3 where it can, Arrow streaming otherwise)."""

    @abstractmethod
    def replace_period(self, load: PeriodLoad) -> int:
        """Replace ``load.billing_period`` in ``load.table`` with the rows of ``load.files``, atomically.

        Creates the table and adds new columns as needed. Within the same transaction (where the engine has
        one), marks ``load.record`` completed and current, so that data and state never disagree.

        Returns:
            The number of rows now stored for the period.
        Raises:
            LoadError: a file is corrupt or a value does not fit; nothing of the new version is visible.
            DestinationError: the database went away.
        """

    @abstractmethod
    def list_tables(self, dataset: str) -> list[ExportTable]:
        """Export tables in ``dataset`` with per-period row counts and cost sums (state table excluded)."""

    @abstractmethod
    def check(self, dataset: str | None = None) -> CheckResult:
        """Connect, prove we may create a schema and a table, and measure a round trip.

        ``dataset`` is where an import would write (``backends check`` passes it): an engine where a role may
        hold rights on one existing schema only (PostgreSQL) probes that schema; the others may ignore it.

        Returns:
            ``ok=False`` with the server's reason instead of raising, so ``backends check`` can report it.
        """

    @abstractmethod
    def read_period(self, dataset: str, table: str, billing_period: str) -> pa.RecordBatchReader:
        """One period of an export table as a stream of Arrow record batches (``finops db copy``).

        Columns may arrive as text (the destination types them through the same path as an import).
        """

    @abstractmethod
    def table_columns(self, dataset: str, table: str) -> dict[str, str]:
        """Column name → engine type name, in table order; empty when the table does not exist."""

    # -- shared helpers -------------------------------------------------------------------------------------
    def dataset(self, default: str) -> str:
        """The backend's own ``schema``/``dataset`` setting where set, else ``default`` (``[aws] dataset_name``)."""
        fields = type(self.config).model_fields  # not getattr alone: pydantic models have a .schema() method
        own = [getattr(self.config, key) for key in ("schema", "dataset") if key in fields]
        return next((value for value in own if value), default)

    def quote(self, name: str) -> str:
        """Quote one identifier for this engine's dialect."""
        from core.backends.sql_names import quote_identifier

        return quote_identifier(name, self.dialect)

    def column(self, name: str) -> str:
        """Our column name as stored: shortened stably (prefix + digest) past ``max_identifier_length``, where
        a server would otherwise cut it silently (PostgreSQL) or refuse it (MySQL). DuckDB keeps names whole."""
        from core.backends.sql_names import fit_identifier

        return fit_identifier(name, self.max_identifier_length)

    def qualified(self, dataset: str, table: str) -> str:
        return f"{self.quote(dataset)}.{self.quote(table)}"

    @abstractmethod
    def fetch(self, sql: str) -> Sequence[Sequence[Any]]:
        """The rows of one parameterless statement (identifiers already quoted), on the backend's connection."""

    def summarise(self, dataset: str, table: str) -> ExportTable:
        """One export table's rows and ``SUM(line_item_unblended_cost)`` per period (``list_tables``, and the
        verification of ``db copy``)."""
        cost = f"SUM({self.quote(COST_COLUMN)})" if COST_COLUMN in self.table_columns(dataset, table) else "NULL"
        rows = self.fetch(
            f"SELECT billing_period, COUNT(*), {cost} FROM {self.qualified(dataset, table)} "
            "GROUP BY billing_period ORDER BY billing_period"
        )
        periods = [PeriodSummary(p, int(n), None if c is None else float(c)) for p, n, c in rows]
        return ExportTable(dataset, table, periods)

    def lock_key(self) -> str:
        """Identifies the destination for the cross-process lock (no secrets)."""
        return f"{self.name}-{self.config.describe()}"

    def lock(self, name: str, *, timeout: float) -> AbstractContextManager[None]:
        """Serialise imports of one export into one destination across processes.

        The default is an advisory file lock under the data directory, which covers every process on this
        machine; server backends override it with a lock inside the database (e.g. an advisory lock).

        Raises:
            LockTimeoutError: still held by another process after ``timeout`` seconds.
        """
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.lock_key()}-{name}")[:200]
        return file_lock(self.data_dir / ".locks" / f"{safe}.lock", what=f"{name!r} into {self.config.describe()}",
                         timeout=timeout)


@contextmanager
def file_lock(path: Path, *, what: str, timeout: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, polled until ``timeout``; released when the process dies."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise DestinationError(f"Cannot create the lock file {path}: {exc}") from exc
    with handle:
        deadline = time.monotonic() + max(timeout, 0)
        waited = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"Another import of {what} is still running (lock {path} held; waited {timeout:.0f} s).",
                        hint="Wait for it to finish, or raise [project] lock_timeout.",
                    ) from None
                if not waited:
                    log.warning("Another import of %s is running; waiting up to %.0f s for it", what, timeout)
                    waited = True
                time.sleep(0.2)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
