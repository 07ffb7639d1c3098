"""DuckDB's load strategy: the engine scans each file itself, inside the replace transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.backends.sqlengine.strategy import Columns, Kinds, LoadStrategy
from core.errors import LoadError

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterator

    import pyarrow as pa

    from core.backends.base import PeriodLoad
    from core.backends.duckdb.backend import DuckDBBackend


class EngineScan(LoadStrategy):
    """One ``INSERT … BY NAME SELECT`` per file: DuckDB reads, renames and types the file itself (its native
    reader's SELECT), or scans the Arrow batches of another reader registered as a view (``.zip`` CSV, a table
    copied from another backend). No row passes through Python either way."""

    def insert(self, backend: DuckDBBackend, load: PeriodLoad, kinds: Kinds,  # type: ignore[override]
               columns: Columns, staged: Any) -> int:
        target = backend.qualified(load.dataset, load.table)
        rows = 0
        for plan in load.files:
            what = f"loading {plan.file.key}"
            sql = load.reader.scan_sql(plan)
            if sql is not None:
                select, params = sql
                self._tally(backend, load, plan, select, params, what)
                inserted = backend.execute(f"INSERT INTO {target} BY NAME {select}", params, what=what).rows
            else:
                inserted = self._scan_batches(backend, target, load.batches(plan), what)
            count = int(inserted[0][0]) if inserted else 0
            rows += count
            load.file_done(plan.file, count)
        return rows

    @staticmethod
    def _tally(backend: DuckDBBackend, load: PeriodLoad, plan: Any, select: str, params: list[Any], what: str) -> None:
        """The source side of the reconciliation for a file the engine reads itself: its rows and sums, as DuckDB
        aggregates the very SELECT it inserts (projection pushdown: only the summed columns are read again)."""
        columns = [c for c in load.sum_columns if c in {spec.target for spec in plan.columns}]
        sums = "".join(f", SUM({backend.quote(c)})" for c in columns)
        row = backend.execute(f"SELECT COUNT(*){sums} FROM ({select}) AS source", params, what=what).rows[0]
        load.facts.add(int(row[0]), {c: float(v or 0.0) for c, v in zip(columns, row[1:], strict=True)})

    @staticmethod
    def _scan_batches(backend: DuckDBBackend, target: str, batches: pa.RecordBatchReader, what: str) -> list[Any]:
        """The Arrow stream registered as a view and inserted by name. DuckDB wraps an exception raised while it
        pulls batches into its own "arrow_scan" error (with the Python traceback in its text): the reader's own
        error — the file is truncated, a value does not fit — is raised instead, as itself."""
        import pyarrow as pa

        failure: list[BaseException] = []

        def watched() -> Iterator[pa.RecordBatch]:
            try:
                yield from batches
            except BaseException as exc:
                failure.append(exc)
                raise

        backend.connection.register("_finops_batches", pa.RecordBatchReader.from_batches(batches.schema, watched()))
        try:
            return backend.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {backend.quote('_finops_batches')}",
                                   what=what).rows
        except LoadError:
            if failure:
                raise failure[0] from None
            raise
        finally:
            backend.connection.unregister("_finops_batches")
