"""DuckDB reads billing files itself: local paths, or ``s3://`` through httpfs with boto3's credentials.

:class:`core.backends.duckdb.load.EngineScan` inserts the SELECT this reader builds; the reader only reads.

Each file becomes one ``SELECT`` that renames and types its columns inside the engine (``to_json`` for CUR 2.0
maps), so rows never pass through Python. ``.zip`` CSV, which DuckDB cannot open, goes through the Arrow reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.backends.base import DataReader, FilePlan, SourceFile

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from core.backends.duckdb.backend import DuckDBBackend
    from core.storage import ObjectStore


class DuckDBDataReader(DataReader):
    """DuckDB reads Parquet and plain CSV itself (local paths, or s3:// through httpfs). Three kinds of file go
    through the Arrow reader instead, whose rows DuckDB then scans:

    * ``.zip`` CSV, which DuckDB cannot open;
    * gzip CSV: DuckDB returns the rows before the cut of a truncated gzip stream without an error (seen with
      1.5.5), where Python's gzip refuses a stream without its end marker — a short file must fail its month;
    * keys holding glob characters (``*?[]{}``): DuckDB would expand them and read other objects, or none.
    """

    def __init__(self, store: ObjectStore, backend: DuckDBBackend) -> None:
        from core.backends.readers import Boto3DataReader  # pyarrow only when data is read

        super().__init__(store)
        self.backend = backend
        self.fallback = Boto3DataReader(store)
        if store.scheme == "s3":
            backend.enable_s3(store)

    def native(self, plan: FilePlan) -> bool:
        return self._native(plan.file.compression, plan.file.key) and not plan.null_values

    def _native(self, compression: str | None, key: str) -> bool:
        return compression is None and not self.store.needs_literal_read(key)

    def _scan(self, source: SourceFile) -> tuple[str, list[Any]]:
        uri = self.store.uri(source.key)
        if source.format == "parquet":
            # CUR 2.0 keys hold BILLING_PERIOD=YYYY-MM/: without this DuckDB would add it as a column.
            return "read_parquet(?, hive_partitioning = false)", [uri]
        return (
            "read_csv(?, header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"', "
            "compression = 'none', hive_partitioning = false)",
            [uri],
        )

    def describe(self, key: str, *, size: int = 0) -> SourceFile:
        """The file's real format and its columns as written: a CSV header read as text, a Parquet footer read
        by range (DuckDB's own DESCRIBE would rename a column that appears twice, hiding ambiguous input)."""
        return self.fallback.describe(key, size=size)

    def scan_sql(self, plan: FilePlan) -> tuple[str, list[Any]] | None:
        if not self.native(plan):
            return None
        if self.store.scheme == "s3":
            self.backend.enable_s3(self.store)  # credentials that expired since the last file are renewed
        return self.select_sql(plan)

    def select_sql(self, plan: FilePlan) -> tuple[str, list[Any]]:
        """One SELECT reading the file and typing every column as the plan says."""
        q, engine_types = self.backend.quote, self.backend.types
        parts, params = [], []
        for spec in plan.columns:
            col = q(spec.source)
            if spec.source_kind == "map":
                expr = f"to_json({col})"
            elif spec.source_kind == "string" and spec.kind != "string":
                expr = f"CAST(NULLIF(TRIM({col}), '') AS {engine_types[spec.kind]})"
            else:
                expr = f"CAST({col} AS {engine_types[spec.kind]})"
            parts.append(f"{expr} AS {q(spec.target)}")
        for name, value in plan.constants:
            parts.append(f"CAST(? AS VARCHAR) AS {q(name)}")
            params.append(value)
        scan, scan_params = self._scan(plan.file)
        return f"SELECT {', '.join(parts)} FROM {scan}", params + scan_params

    def batches(self, plan: FilePlan) -> pa.RecordBatchReader:
        if not self.native(plan):
            return self.fallback.batches(plan)
        sql, params = self.select_sql(plan)
        cursor = self.backend.connection.cursor()
        return cursor.execute(sql, params).fetch_record_batch(64 * 1024)
