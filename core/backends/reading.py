"""What a backend reads: a source file as found (format, columns), the plan to rename and type it, and the
reader that streams it as Arrow record batches (re-exported by :mod:`core.backends.base`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from core.storage import ObjectStore

#: Logical column kinds every backend maps to its own types (:mod:`core.backends.sqlengine.types`).
ColumnKind = Literal["string", "double", "bigint", "boolean", "timestamp", "date", "json"]
FileFormat = Literal["csv", "parquet"]


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
    #: CSV texts read as NULL besides the empty field (a FOCUS CSV's literal ``NULL``); a plan with any is read by
    #: the Arrow reader, which every engine's own CSV path defers to for it
    null_values: tuple[str, ...] = ()

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

    def scan_sql(self, plan: FilePlan) -> tuple[str, list[Any]] | None:
        """A SELECT (with its bound values) by which the engine reads the file itself, renamed and typed as the
        plan says; None when the rows must come from :meth:`batches` (the default)."""
        return None

    @abstractmethod
    def batches(self, plan: FilePlan) -> pa.RecordBatchReader:
        """The file renamed and typed as ``plan`` says, streamed in record batches (never whole in memory).

        Raises:
            LoadError: the file is corrupt or a value does not fit its type.
        """


@dataclass
class SourceFacts:
    """What the source held for a period, as the rows streamed past (or as the engine aggregated the files):
    compared with what the table holds before the period is committed (reconciliation)."""

    rows: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    #: False until a load strategy reported what it read (a strategy that cannot leaves the check to row counts)
    gathered: bool = False

    def add(self, rows: int, sums: dict[str, float]) -> None:
        self.gathered = True
        self.rows += rows
        for column, value in sums.items():
            self.sums[column] = self.sums.get(column, 0.0) + value
