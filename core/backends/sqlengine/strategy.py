"""How rows reach an export table: the part of a period's replacement that differs between engines.

:meth:`core.backends.sqlengine.SqlBackend.replace_period` is the envelope every engine shares — stage, DDL where
the engine allows it, ``BEGIN``, ``DELETE`` the period, *insert*, state row, ``COMMIT`` — and a
:class:`LoadStrategy` fills in the two engine-specific steps:

* :meth:`LoadStrategy.staged`, before the transaction: whatever must happen outside one (dlt loading a staging
  table, a warehouse's ``COPY INTO`` a transient table or a load job), cleaned up on the way out, success or not;
* :meth:`LoadStrategy.insert`, inside the transaction: the rows into the export table (an engine scan, a ``COPY``
  stream, ``INSERT … SELECT`` from the staging table).

The strategies of this project: :class:`core.backends.duckdb.load.EngineScan`,
:class:`core.backends.postgresql.copy.CopyStream`, :class:`core.backends.dlt_stage.DltStageSwap`. A new one is a
class in its engine's package, named by that engine's ``strategy`` attribute; nothing shared changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.base import ColumnKind, PeriodLoad
    from core.backends.sqlengine.backend import SqlBackend


#: the period's columns (our names, ``billing_period`` first) and their logical kinds
Kinds = Mapping[str, "ColumnKind"]
#: the table's columns as stored (engine names) → engine type, after any DDL of this load
Columns = Mapping[str, str]


class LoadStrategy(ABC):
    """One way of putting a period's rows into its table; see the module docstring."""

    @contextmanager
    def staged(self, backend: SqlBackend, load: PeriodLoad, kinds: Kinds) -> Iterator[Any]:
        """Work done before the replace transaction; yields what :meth:`insert` needs (default: nothing).

        Raises:
            LoadError: a file is corrupt, or the engine rejected a value; nothing is visible yet.
        """
        yield None

    @abstractmethod
    def insert(self, backend: SqlBackend, load: PeriodLoad, kinds: Kinds, columns: Columns, staged: Any) -> int:
        """Inside the transaction, after the period's old rows were deleted: insert the new ones.

        ``staged`` is what :meth:`staged` yielded.

        Returns:
            The rows inserted; an engine's own count where it gives one, checked against the rows read.
        Raises:
            LoadError: a file is corrupt, a value does not fit, or the counts disagree.
        """
