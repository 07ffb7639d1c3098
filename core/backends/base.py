"""The backend layer's contracts: a config model, a database backend, a state store and a data reader.

A backend is small on purpose (see docs/BACKENDS.md): engine differences are class constants and capability
flags, shared behaviour lives here or in :mod:`core.state`, and vendor code talks only to these interfaces —
never to a driver. Drivers are imported inside methods so that ``finops backends list`` and ``--help`` work with
no optional extra installed.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from core.storage import ObjectStore

log = logging.getLogger(__name__)


STATE_TABLE = "_finops_load_state"
Status = Literal["running", "completed", "failed", "interrupted"]


_DATASET = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")


def dataset_name(value: str | None) -> str | None:
    """A schema / dataset name every engine accepts: a letter or ``_``, then letters, digits, ``_``, ``$``, ``-``;
    at most 63 characters. Checked where it is configured, so a bad name is exit 2 naming the key.

    Raises:
        ValueError: the name breaks that rule.
    """
    if value is not None and not _DATASET.match(value):
        raise ValueError("a schema/dataset name: a letter or _, then letters, digits, _, $ or -, at most 63")
    return value


class BackendConfig(BaseModel):
    """Settings of one backend (a ``[database.<name>]`` sub-table). Secrets are ``SecretStr``."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    def describe(self) -> str:
        """Where the data goes, for messages (never a secret)."""
        return self.__class__.__name__


# Data-reading contracts live in core.backends.reading; re-exported here, where callers have always found them.
from core.backends.reading import (  # noqa: E402
    ColumnKind,
    ColumnSpec,
    DataReader,
    FileFormat,
    FilePlan,
    SourceColumn,
    SourceFacts,
    SourceFile,
)

__all__ = ["ColumnKind", "ColumnSpec", "DataReader", "FileFormat", "FilePlan", "SourceColumn", "SourceFacts",
           "SourceFile"]


@dataclass(frozen=True)
class QualityRules:
    """A vendor's data-quality rules (:mod:`core.backends.sqlengine.quality`): the columns each finding reads, each
    a tuple of alternatives (the first the table has is used; a table with none of them skips that finding)."""

    #: identity of a line item: sets of columns that together must be unique in a period
    line_item: tuple[tuple[str, ...], ...] = ()
    currency: tuple[str, ...] = ()
    usage_type: tuple[str, ...] = ()
    #: ``LIKE`` patterns (bound values) of split cost allocation rows, and of the instance rows they split
    split_patterns: tuple[str, ...] = ()
    instance_patterns: tuple[str, ...] = ()
    payer: tuple[str, ...] = ()


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
    status: Status = "running"
    file_count: int = 0
    row_count: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error_message: str | None = None
    is_current: bool = False
    #: what the source held, as reconciled before COMMIT: rows, and the cost sums as JSON text
    source_row_count: int | None = None
    source_sums: str | None = None
    #: ``final`` once the invoice is issued (the vendor's invoice column is filled), else ``estimated``
    period_status: str | None = None
    invoice_ids: str | None = None
    #: the period's data-quality findings as JSON text (a list of ``{kind, count, message}``; ``[]``: none found)
    quality_findings: str | None = None

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
        "source_row_count",
        "source_sums",
        "period_status",
        "invoice_ids",
        "quality_findings",
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

    def complete(self, record: LoadRecord, *, rows: int, files: int, **facts: Any) -> LoadRecord:
        """Store ``record`` as completed and current; backends call it inside their replace transaction.
        ``facts``: the reconciliation's source figures and the invoice status (fields of :class:`LoadRecord`).

        ``record`` itself is left as it was: if the transaction then fails (even at COMMIT), the caller still
        holds the attempt as it stood, and records the failure from that, not from a completion that was rolled
        back.
        """
        from datetime import UTC

        done = replace(record, status="completed", row_count=rows, file_count=files,
                       finished_at=datetime.now(UTC), error_message=None, is_current=True, **facts)
        self.upsert(done)
        self.mark_current(done)
        return done


# --------------------------------------------------------------------------------------------------- backend


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do, as data. The shared code reads these; no engine name is tested outside its package.

    Read by :meth:`core.backends.sqlengine.SqlBackend.replace_period` (where DDL goes), by
    :meth:`~core.backends.sqlengine.SqlBackend.data_reader` (which reader), by ``check`` and by the docs.
    """

    #: URI schemes of sources the engine reads itself (``s3``, ``file``); others are streamed as Arrow batches
    native_schemes: frozenset[str] = frozenset()
    #: ``transactional``: DDL commits with the data (DuckDB, PostgreSQL, SQLite); ``implicit_commit``: DDL
    #: commits the open transaction (MySQL, Snowflake), so it runs just before it; ``outside``: DDL is refused
    #: inside a transaction (BigQuery), so it runs just before it too
    ddl: Literal["transactional", "implicit_commit", "outside"] = "transactional"
    #: the engine has schemas (``CREATE SCHEMA``); SQLite attaches a database file per dataset instead
    schemas: bool = True
    #: JSON arrives as text; the engine's JSON type accepts text in ``INSERT … SELECT`` only through a CAST
    json_text_needs_cast: bool = False
    #: how a view is replaced: ``or_replace`` (``CREATE OR REPLACE VIEW``, columns may change), ``drop`` (no OR
    #: REPLACE: SQLite), ``drop_cascade`` (OR REPLACE cannot change columns, and dependants block a DROP: PostgreSQL)
    view_replace: Literal["or_replace", "drop", "drop_cascade"] = "or_replace"

    @property
    def transactional_ddl(self) -> bool:
        return self.ddl == "transactional"


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
    on_file_done: Callable[[SourceFile, int], None] | None = None
    #: columns whose sums are reconciled (the vendor's cost columns; those a file lacks are skipped)
    sum_columns: tuple[str, ...] = ()
    #: filled while the rows stream: the source side of the reconciliation
    facts: SourceFacts = field(default_factory=SourceFacts)
    #: the vendor's invoice column: a period whose rows carry an invoice id is final, else estimated
    invoice_column: str | None = None
    #: what a restatement changed: cost of ``change_cost`` per ``change_keys`` against the version ``replaces``
    change_keys: tuple[str, ...] = ()
    change_cost: str | None = None
    replaces: str | None = None
    #: the vendor's data-quality rules (None: no checks);
    #: with ``quality_strict`` a period with findings fails instead of loading with warnings
    quality: QualityRules | None = None
    quality_strict: bool = False
    #: set by ``replace_period``: the state record as committed, the restatement's changed keys, the findings
    completed: LoadRecord | None = None
    changes: Any = None
    findings: list[Any] = field(default_factory=list)

    def file_done(self, source: SourceFile, rows: int) -> None:
        if self.on_file_done:
            self.on_file_done(source, rows)

    def batches(self, plan: FilePlan) -> pa.RecordBatchReader:
        """The reader's batches for one file, tallied into :attr:`facts` as they pass (pyarrow sums per batch:
        no Python object per row)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        source = self.reader.batches(plan)
        columns = [c for c in self.sum_columns if c in source.schema.names]

        def tallied() -> Iterator[pa.RecordBatch]:
            for batch in source:
                self.facts.add(batch.num_rows, {c: pc.sum(batch.column(c)).as_py() or 0.0 for c in columns})
                yield batch

        return pa.RecordBatchReader.from_batches(source.schema, tallied())


@dataclass
class PeriodSummary:
    billing_period: str
    rows: int
    cost: float | None


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
    """One analytical database: a config model, a dlt destination, a state store, a replace of one period, and
    what ``list-exports``, ``db copy`` and ``backends check`` read. Every engine of this project is a SQL engine
    and derives from :class:`core.backends.sqlengine.SqlBackend`, which implements most of this once."""

    #: canonical registry name
    name: ClassVar[str]
    #: the pip extra that installs the driver (None: always installed)
    extra: ClassVar[str | None] = None
    capabilities: ClassVar[Capabilities] = Capabilities()
    config_model: ClassVar[type[BackendConfig]]
    #: longest identifier the engine keeps whole (longer names are shortened deterministically)
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
        """The load-state store living in ``dataset`` (creates nothing until ``ensure()``)."""

    @abstractmethod
    def data_reader(self, store: ObjectStore) -> DataReader:
        """The best reader this engine has for ``store`` (its own where it can, Arrow streaming otherwise)."""

    @abstractmethod
    def replace_period(self, load: PeriodLoad) -> int:
        """Replace ``load.billing_period`` in ``load.table`` with the rows of ``load.files``, atomically.

        Creates the table and adds new columns as needed. Within the same transaction (where the engine has
        one), stores ``load.record`` completed and current, so that data and state never disagree.

        Returns:
            The number of rows now stored for the period.
        Raises:
            LoadError: a file is corrupt or a value does not fit; nothing of the new version is visible.
            DestinationError: the database went away.
        """

    @abstractmethod
    def list_tables(self, dataset: str, *, cost_column: str | None = None) -> list[ExportTable]:
        """Export tables in ``dataset`` with per-period row counts and ``SUM(cost_column)`` (state excluded)."""

    @abstractmethod
    def summarise(self, dataset: str, table: str, *, cost_column: str | None = None) -> ExportTable:
        """One export table's rows and ``SUM(cost_column)`` per period."""

    @abstractmethod
    def check(self, dataset: str | None = None) -> CheckResult:
        """Connect, prove we may create a schema (or a table in ``dataset``), and measure a round trip.

        Returns:
            ``ok=False`` with the server's reason instead of raising, so ``backends check`` can report it.
        Raises:
            ConfigError: a missing or bad setting (exit 2, not an unreachable database).
        """

    @abstractmethod
    def read_period(self, dataset: str, table: str, billing_period: str) -> pa.RecordBatchReader:
        """One period of an export table as a stream of Arrow record batches (``finops db copy``).

        Columns may arrive as text (the destination types them through the same path as an import).
        """

    @abstractmethod
    def table_columns(self, dataset: str, table: str) -> dict[str, str]:
        """Column name → engine type name, in table order; empty when the table does not exist."""

    # -- views (FOCUS relations over the export tables) -----------------------------------------------------
    #: the sqlglot dialect a query must be rendered in for this engine
    dialect: str

    @abstractmethod
    def render(self, expression: Any) -> str:
        """A sqlglot expression as this engine's SQL, every identifier quoted (mixed-case names kept)."""

    @abstractmethod
    def table_expression(self, dataset: str, table: str) -> Any:
        """``dataset.table`` as a sqlglot ``Table``, fully qualified as the engine needs it in a view."""

    @abstractmethod
    def replace_views(self, dataset: str, views: Sequence[tuple[str, str]]) -> None:
        """Create the (name, SELECT rendered for :attr:`dialect`) views in order, replacing existing ones;
        atomically where the engine's DDL is transactional.

        Raises:
            LoadError: a view was refused by the engine.
        """

    @abstractmethod
    def drop_view(self, dataset: str, name: str) -> None:
        """Drop a view if it exists."""

    @abstractmethod
    def view_names(self, dataset: str) -> list[str]:
        """The views in ``dataset`` (empty when it does not exist)."""

    # -- shared helpers -------------------------------------------------------------------------------------
    def dataset(self, default: str) -> str:
        """The backend's own ``schema``/``dataset`` setting where set, else ``default`` (``[aws] dataset_name``)."""
        fields = type(self.config).model_fields  # not getattr alone: pydantic models have a .schema() method
        own = [getattr(self.config, key) for key in ("schema", "dataset") if key in fields]
        return next((value for value in own if value), default)

    def table_name(self, export_name: str) -> str:
        """The contract's table name for an export (snake_case, fitted to the engine's identifier length)."""
        from core.backends.sqlengine.names import table_name_for_export

        return table_name_for_export(export_name, self.max_identifier_length)

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
        from core.backends.locks import file_lock

        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.lock_key()}-{name}")[:200]
        return file_lock(self.data_dir / ".locks" / f"{safe}.lock", what=f"{name!r} into {self.config.describe()}",
                         timeout=timeout)
