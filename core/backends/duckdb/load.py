"""DuckDB's load strategy: the engine scans each file itself, inside the replace transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.backends.sqlengine.strategy import Columns, Kinds, LoadStrategy

if TYPE_CHECKING:  # pragma: no cover
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
                inserted = backend.execute(f"INSERT INTO {target} BY NAME {select}", params, what=what).rows
            else:
                backend.connection.register("_finops_batches", load.reader.batches(plan))
                try:
                    inserted = backend.execute(
                        f"INSERT INTO {target} BY NAME SELECT * FROM _finops_batches", what=what
                    ).rows
                finally:
                    backend.connection.unregister("_finops_batches")
            count = int(inserted[0][0]) if inserted else 0
            rows += count
            load.file_done(plan.file, count)
        return rows
