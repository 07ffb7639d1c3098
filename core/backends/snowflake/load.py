"""Snowflake's reader and load strategy: ``COPY INTO`` a transient staging table per file, straight from S3,
then ``INSERT … SELECT`` inside the replace transaction.

Before the transaction (:meth:`SnowflakeStage.staged`), each file of the period gets a transient table
``_finops_stage_<table>_<n>`` shaped like the file:

* native (an ``s3`` source and ``native_s3``): Snowflake reads exactly that key itself —
  ``COPY INTO … FROM @stage`` (the configured external stage, its URL being the bucket root) or, without one,
  ``FROM 's3://bucket/'`` with the storage integration or the credentials boto3 resolved —
  ``FILES=('<key>')``, ``ON_ERROR=ABORT_STATEMENT``. Parquet columns are matched by name
  (``MATCH_BY_COLUMN_NAME=CASE_INSENSITIVE``), typed as the file types them (maps as ``VARIANT``); CSV (CUR v1)
  is loaded by position into text columns ``c_0…`` with an inline file format (header skipped, quoted fields,
  gzip detected by Snowflake's ``COMPRESSION=AUTO``). No row passes through this process; only each file's
  header (CSV) or footer (Parquet) is read here, by :class:`SnowflakeDataReader`, to plan its columns.
* otherwise (a local folder, ``native_s3 = false``, a ``.zip`` CSV that COPY cannot open): the universal Arrow
  reader's batches, as text, bound as one JSON document per few MB and expanded by ``FLATTEN`` into the
  staging table.

Inside the transaction (:meth:`SnowflakeStage.insert`), one ``INSERT … SELECT`` per staged file renames and types
every column as the plan says (text → ``DOUBLE``/``TIMESTAMP_TZ`` by ``CAST``, so a bad value fails the period;
JSON text → ``VARIANT`` by ``PARSE_JSON``), with ``billing_period`` bound. The staging tables are dropped on the
way out, success or not.

AWS keys handed to a ``COPY`` are part of its text (Snowflake binds no values in ``CREDENTIALS``); they are
registered with the client, which scrubs them from every message, and no statement text is logged here.
"""

from __future__ import annotations

import csv
import io
import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.backends.base import DataReader, FilePlan, SourceColumn, SourceFile
from core.backends.sqlengine.strategy import Columns, Kinds, LoadStrategy
from core.errors import FinOpsError, LoadError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from core.backends.base import PeriodLoad
    from core.backends.snowflake.backend import SnowflakeBackend
    from core.storage import ObjectStore

log = logging.getLogger(__name__)

STAGE_PREFIX = "_finops_stage_"
#: characters of one bound JSON document of the fallback (Snowflake's VARCHAR/VARIANT hold 16 MB)
BIND_BYTES = 4 * 1024 * 1024
#: bytes of a CSV read per request while looking for the end of its header line
HEAD_CHUNK = 16 * 1024
#: the header line is refused past this size (a file that is no CSV)
HEAD_LIMIT = 4 * 1024 * 1024


def literal(text: str) -> str:
    """A Snowflake string literal (``'`` doubled, ``\\`` escaped), for the clauses that take no bound value."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


# ------------------------------------------------------------------------------------------------- reader


class SnowflakeDataReader(DataReader):
    """Plans files without reading their rows: the columns of a Parquet file from its footer (two ranged reads),
    of a CSV from its header line; Snowflake itself reads the rows (:class:`SnowflakeStage`). ``.zip`` CSV and
    files of a non-S3 store go through the Arrow reader (:meth:`batches`)."""

    def __init__(self, store: ObjectStore, backend: SnowflakeBackend) -> None:
        from core.backends.readers import Boto3DataReader  # pyarrow only when data is read

        super().__init__(store)
        self.backend = backend
        self.fallback = Boto3DataReader(store)

    def native(self, source: SourceFile) -> bool:
        return self.store.scheme == "s3" and source.compression != "zip"

    def describe(self, key: str, *, size: int = 0) -> SourceFile:
        from core.backends.readers import sniff_format

        try:
            fmt, compression = sniff_format(self.store.read_head(key, 8), key)
        except OSError as exc:
            raise LoadError(f"{key} is unreadable: {exc}") from exc
        if compression == "zip":
            return self.fallback.describe(key, size=size)
        try:
            columns = self._parquet_columns(key) if fmt == "parquet" else self._csv_columns(key, compression)
        except LoadError:
            raise
        except (OSError, ValueError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
            raise LoadError(f"{key} is unreadable: {exc}") from exc
        names = [c.name for c in columns]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise LoadError(f"{key} has the column{'s' if len(twice) > 1 else ''} {', '.join(map(repr, twice))} "
                            "more than once.")
        return SourceFile(key=key, format=fmt, compression=compression, columns=columns, size=size)  # type: ignore[arg-type]

    def _parquet_columns(self, key: str) -> tuple[SourceColumn, ...]:
        """The schema from the footer alone: its length from the last 8 bytes, then exactly the footer."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from core.backends.readers import arrow_kind

        with self.store.open_random(key) as buffered:
            handle = getattr(buffered, "raw", buffered)  # unbuffered: each read is one ranged GET of its size
            handle.seek(0, io.SEEK_END)
            end = handle.tell()
            if end < 12:
                raise LoadError(f"{key} is not a valid parquet file (too short).")
            handle.seek(end - 8)
            tail = _read_exactly(handle, 8)
            length = int.from_bytes(tail[:4], "little")
            if tail[4:] != b"PAR1" or length + 12 > end:
                raise LoadError(f"{key} is not a valid parquet file (no footer).")
            handle.seek(end - 8 - length)
            footer = _read_exactly(handle, length)
        try:
            schema = pq.read_schema(pa.BufferReader(b"PAR1" + footer + tail))
        except pa.ArrowException as exc:
            raise LoadError(f"{key} is unreadable: {exc}") from exc
        return tuple(SourceColumn(f.name, arrow_kind(f.type)) for f in schema)  # type: ignore[arg-type]

    def _csv_columns(self, key: str, compression: str | None) -> tuple[SourceColumn, ...]:
        """The header line, read in ranged chunks and inflated only as far as its end."""
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if compression == "gzip" else None
        text = b""
        with self.store.open_random(key) as buffered:
            handle = getattr(buffered, "raw", buffered)  # unbuffered: each read is one ranged GET of its size
            while b"\n" not in text and len(text) < HEAD_LIMIT:
                chunk = handle.read(HEAD_CHUNK)
                if not chunk:
                    break
                text += inflate.decompress(chunk) if inflate else chunk
        line = text.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8-sig")
        header = next(csv.reader([line]), [])
        if not header or not any(header):
            raise LoadError(f"{key} has no header line.")
        return tuple(SourceColumn(name, "string") for name in header)

    def batches(self, plan: FilePlan) -> pa.RecordBatchReader:
        return self.fallback.batches(plan)


def _read_exactly(handle: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = handle.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


# ----------------------------------------------------------------------------------------------- strategy


@dataclass
class StagedFile:
    plan: FilePlan
    #: quoted, qualified staging table
    table: str
    #: our source column name → quoted staging column
    columns: dict[str, str]
    #: the staging column holds the source as the file types it (native Parquet) rather than as text
    typed: bool
    rows: int = 0


class SnowflakeStage(LoadStrategy):
    """See the module docstring."""

    @contextmanager
    def staged(self, backend: SnowflakeBackend, load: PeriodLoad, kinds: Kinds) -> Iterator[Any]:  # type: ignore[override]
        staged: list[StagedFile] = []
        tables: list[str] = []  # every staging table that may exist, dropped whatever happens
        try:
            if load.files:
                backend.ensure_schema(load.dataset)
            for index, plan in enumerate(load.files):
                name = backend.column(f"{STAGE_PREFIX}{load.table}_{index}")
                tables.append(backend.qualified(load.dataset, name))
                native = (isinstance(load.reader, SnowflakeDataReader) and load.reader.native(plan.file)
                          and not plan.null_values)
                item = (self._copy(backend, load, plan, tables[-1]) if native
                        else self._bind(backend, load, plan, tables[-1]))
                staged.append(item)
                self._tally(backend, load, item)
                load.file_done(plan.file, item.rows)
            yield staged
        finally:
            for table in tables:
                try:
                    backend.execute(f"DROP TABLE IF EXISTS {table}", what="dropping a staging table")
                except FinOpsError as exc:
                    log.warning("Could not drop the staging table %s: %s", table, exc.message)

    def _tally(self, backend: SnowflakeBackend, load: PeriodLoad, item: StagedFile) -> None:
        """The staged file's rows, and the source side of the envelope's reconciliation where it keeps one
        (``load.facts``): the sums of the reconciled columns, aggregated by Snowflake from the staging table with
        the very expressions the INSERT uses — so the check compares what was read with what was stored."""
        facts = getattr(load, "facts", None)
        wanted = set(getattr(load, "sum_columns", ())) if facts is not None else set()
        specs = [spec for spec in item.plan.columns if spec.target in wanted and spec.kind == "double"]
        sums = "".join(
            f", SUM({self._expression(backend, item, spec.source, spec.source_kind, backend.types['double'])})"
            for spec in specs)
        row = backend.execute(f"SELECT COUNT(*){sums} FROM {item.table}",
                              what=f"summing {item.plan.file.key}").rows[0]
        item.rows = int(row[0])  # what the INSERT must then insert, checked there
        if facts is not None:
            facts.add(item.rows, {spec.target: float(v or 0.0) for spec, v in zip(specs, row[1:], strict=True)})

    def _create(self, backend: SnowflakeBackend, table: str, columns: dict[str, str], types: list[str]) -> None:
        body = ", ".join(f"{col} {type_name}" for col, type_name in zip(columns.values(), types, strict=True))
        backend.execute(f"CREATE OR REPLACE TRANSIENT TABLE {table} ({body})", what="creating a staging table")

    def _copy(self, backend: SnowflakeBackend, load: PeriodLoad, plan: FilePlan, table: str) -> StagedFile:
        source = plan.file
        types = backend.types
        wanted = {spec.source for spec in plan.columns}
        if source.format == "parquet":
            used = [c for c in source.columns if c.name in wanted]
            columns = {c.name: backend.quote(c.name) for c in used}
            self._create(backend, table, columns,
                         ["VARIANT" if c.kind == "map" else types[c.kind] for c in used])
        else:  # every header column, by position: COPY loads CSV fields in order
            columns = {c.name: backend.quote(f"c_{i}") for i, c in enumerate(source.columns)}
            self._create(backend, table, columns, [types["string"]] * len(columns))
        backend.execute(backend.copy_sql(table, load.reader.store, source),  # type: ignore[attr-defined]
                        what=f"loading {source.key}")
        return StagedFile(plan, table, {k: v for k, v in columns.items() if k in wanted}, typed=True)

    def _bind(self, backend: SnowflakeBackend, load: PeriodLoad, plan: FilePlan, table: str) -> StagedFile:
        """The Arrow reader's batches as text into the staging table: each chunk of rows is one bound JSON
        document (an array of rows) that Snowflake expands with ``FLATTEN`` — one statement per few MB, where
        binding rows one by one would cost a round trip (or a hidden stage upload) per chunk of values."""
        import json

        import pyarrow as pa
        import pyarrow.compute as pc

        names = [spec.target for spec in plan.columns]
        columns = {spec.source: backend.quote(f"c_{i}") for i, spec in enumerate(plan.columns)}
        self._create(backend, table, columns, [backend.types["string"]] * len(columns))
        if not columns:
            return StagedFile(plan, table, columns, typed=False)
        values = ", ".join(f'"VALUE"[{i}]::VARCHAR' for i in range(len(columns)))
        insert = (f"INSERT INTO {table} ({', '.join(columns.values())}) SELECT {values} "
                  "FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?)))")
        rows = 0
        pending: list[str] = []
        size = 0

        def flush() -> int:
            nonlocal size
            if not pending:
                return 0
            document = "[" + ",".join(pending) + "]"
            pending.clear()
            size = 0
            return backend.execute(insert, [document], what=f"loading {plan.file.key}").rowcount

        for batch in load.reader.batches(plan):
            arrays = []
            for name in names:
                column = batch.column(batch.schema.get_field_index(name))
                if pa.types.is_timestamp(column.type):
                    column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
                elif not pa.types.is_string(column.type):
                    column = pc.cast(column, pa.string())
                arrays.append(column.to_pylist())
            for row in zip(*arrays, strict=True):
                text = json.dumps(row, ensure_ascii=False)
                pending.append(text)
                size += len(text)
                if size >= BIND_BYTES:
                    rows += flush()
        rows += flush()
        return StagedFile(plan, table, columns, typed=False, rows=rows)

    def insert(self, backend: SnowflakeBackend, load: PeriodLoad, kinds: Kinds,  # type: ignore[override]
               columns: Columns, staged: list[StagedFile]) -> int:
        target = backend.qualified(load.dataset, load.table)
        total = 0
        for item in staged:
            if not item.rows:
                continue
            names, values, params = [], [], []
            for spec in item.plan.columns:
                stored = backend.column(spec.target)
                names.append(backend.quote(stored))
                values.append(self._expression(backend, item, spec.source, spec.source_kind, columns[stored]))
            for name, value in item.plan.constants:
                names.append(backend.quote(backend.column(name)))
                values.append("?")
                params.append(value)
            rows = backend.execute(
                f"INSERT INTO {target} ({', '.join(names)}) SELECT {', '.join(values)} FROM {item.table}", params,
                what=f"inserting {load.table} {load.billing_period} from {item.plan.file.key}",
            ).rowcount
            if rows != item.rows:  # never publish a period whose row count we cannot vouch for
                raise LoadError(f"{load.table} {load.billing_period}: {item.rows} rows staged from "
                                f"{item.plan.file.key} but {rows} inserted.")
            total += rows
        return total

    @staticmethod
    def _expression(backend: SnowflakeBackend, item: StagedFile, source: str, source_kind: str,
                    stored_type: str) -> str:
        """The staged column as the table stores it. Text is trimmed and an empty field is NULL (as the Arrow
        reader and the other engines read CSV); a value that does not fit the type fails the statement."""
        col = item.columns[source]
        kind = backend.kind_of(stored_type)
        if item.typed and source_kind != "string":
            if kind == "json":
                return col if source_kind == "map" else f"TO_VARIANT({col})"
            return f"CAST({col} AS {stored_type})"
        text = f"NULLIF({col}, '')"
        if kind == "string":
            return text
        if kind == "json":
            return f"PARSE_JSON({text})"
        return f"CAST(NULLIF(TRIM({col}), '') AS {stored_type})"


def aws_credentials(store: ObjectStore) -> dict[str, str]:
    """``AWS_KEY_ID``/``AWS_SECRET_KEY``/``AWS_TOKEN`` as boto3 resolved them for ``store`` (empty: none)."""
    info = store.connection_info()  # type: ignore[attr-defined]
    values: dict[str, str] = {}
    if info.access_key_id and info.secret_access_key:
        values["AWS_KEY_ID"] = info.access_key_id
        values["AWS_SECRET_KEY"] = info.secret_access_key.get_secret_value()
        if info.session_token:
            values["AWS_TOKEN"] = info.session_token.get_secret_value()
    return values


