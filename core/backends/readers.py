"""The universal data reader: any :class:`~core.storage.ObjectStore` (boto3 for S3) + pyarrow, streaming.

CSV goes through pyarrow's streaming CSV reader (every column read as text, then typed as the plan says), Parquet
row group by row group, so memory stays flat however large the file. Backends without a native S3 reader use
it; DuckDB uses it for ``.zip`` CSV, which its own reader cannot open.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from core.backends.base import ColumnKind, DataReader, FilePlan, SourceColumn, SourceFile
from core.errors import LoadError

log = logging.getLogger(__name__)

BATCH_ROWS = 64 * 1024
CSV_BLOCK_BYTES = 4 * 1024 * 1024

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "double": pa.float64(),
    "bigint": pa.int64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "json": pa.string(),  # JSON travels as text; each backend stores it in its JSON type
}


def sniff_format(head: bytes, key: str) -> tuple[str, str | None]:
    """``(format, compression)`` from the first bytes; the file name only breaks a tie for plain text."""
    if head.startswith(b"PAR1"):
        return "parquet", None
    if head.startswith(b"\x1f\x8b"):
        return "csv", "gzip"
    if head.startswith(b"PK\x03\x04"):
        return "csv", "zip"
    if key.lower().endswith((".parquet", ".gz", ".zip")):
        raise LoadError(f"{key} is not a valid {key.rsplit('.', 1)[-1]} file (its first bytes are {head[:4]!r}).")
    return "csv", None


def arrow_kind(data_type: pa.DataType) -> ColumnKind | str:
    """The logical kind of a Parquet/Arrow column type."""
    if pa.types.is_map(data_type):
        return "map"
    if pa.types.is_floating(data_type) or pa.types.is_decimal(data_type):
        return "double"
    if pa.types.is_integer(data_type):
        return "bigint"
    if pa.types.is_boolean(data_type):
        return "boolean"
    if pa.types.is_timestamp(data_type):
        return "timestamp"
    if pa.types.is_date(data_type):
        return "date"
    if pa.types.is_struct(data_type) or pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return "map"  # nested values are kept as JSON, like maps
    return "string"


_NEEDS_ESCAPE = r'[\\"\x00-\x1f]'


def _json_string(values: pa.Array) -> pa.Array:
    """Text as JSON string literals, vectorised (backslash, quote and control characters escaped)."""
    text = pc.cast(values, pa.string())
    if pc.any(pc.match_substring_regex(text, _NEEDS_ESCAPE)).as_py():  # CUR tags rarely need it: skip 5 passes
        for char, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
            text = pc.replace_substring(text, char, escaped)
        # any other control character (rare): the \u00XX form JSON requires
        for code in range(0x20):
            if chr(code) not in "\n\r\t":
                text = pc.replace_substring(text, chr(code), f"\\u{code:04x}")
    return pc.binary_join_element_wise('"', text, '"', "")


def map_to_json(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A map (or struct/list) column as one JSON object text per row, without a Python object per row."""
    if isinstance(array, pa.ChunkedArray):
        return pa.concat_arrays([map_to_json(chunk) for chunk in array.chunks]) if array.num_chunks else pa.array(
            [], pa.string()
        )
    if not pa.types.is_map(array.type):
        # Rare nested shapes: a small per-batch round trip through Python is acceptable here.
        import json

        return pa.array([None if v is None else json.dumps(v, default=str) for v in array.to_pylist()], pa.string())
    keys = _json_string(array.keys)
    items = array.items
    if pa.types.is_string(items.type) or pa.types.is_large_string(items.type):
        values = _json_string(items)
    elif pa.types.is_boolean(items.type):
        values = pc.if_else(items, "true", "false")
    else:
        values = pc.cast(items, pa.string())
    values = pc.fill_null(values, "null")
    pairs = pc.binary_join_element_wise(keys, values, ":")
    offsets = array.offsets
    listed = pa.ListArray.from_arrays(offsets, pairs)
    joined = pc.binary_join(listed, ",")
    wrapped = pc.binary_join_element_wise("{", joined, "}", "")
    return pc.if_else(array.is_null(), pa.scalar(None, pa.string()), wrapped)


def cast_column(values: pa.Array, source_kind: str, kind: ColumnKind, name: str) -> pa.Array:
    """One column converted to ``kind``; a value that does not fit raises :class:`LoadError` naming it."""
    try:
        if source_kind == "map" or (kind == "json" and source_kind != "string"):
            return map_to_json(values)
        if kind == "timestamp" and (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            return _parse_timestamps(values)
        if kind == "timestamp" and pa.types.is_timestamp(values.type) and values.type.tz is None:
            return pc.assume_timezone(values.cast(pa.timestamp("us")), "UTC")
        target = ARROW_TYPES[kind]
        return values if values.type == target else pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise LoadError(f"column {name!r}: {exc}") from exc


def _parse_timestamps(values: pa.Array) -> pa.Array:
    target = ARROW_TYPES["timestamp"]
    try:
        return pc.cast(values, target)  # every value carries Z or an offset
    except pa.ArrowInvalid:
        naive = pc.replace_substring_regex(values, r"Z$", "")  # CUR writes UTC, with or without the Z
        return pc.assume_timezone(pc.cast(naive, pa.timestamp("us")), "UTC")


class _CsvText:
    """Opens a (possibly compressed) CSV object as a forward-only byte stream."""

    def __init__(self, store: Any, key: str, compression: str | None) -> None:
        self.store, self.key, self.compression = store, key, compression

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """The CSV bytes; on exit the object underneath (an S3 body, a file) is closed too, not only the
        decompressor wrapping it (``GzipFile``/``ZipFile`` leave the object they were given open)."""
        with ExitStack() as stack:
            if self.compression == "zip":
                archive = zipfile.ZipFile(stack.enter_context(self.store.open_random(self.key)))
                stack.callback(archive.close)
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise LoadError(f"{self.key}: expected one CSV inside the zip archive, found {len(members)}.")
                yield stack.enter_context(archive.open(members[0]))
                return
            raw = self.store.open(self.key)
            stack.callback(raw.close)
            yield stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb")) if self.compression == "gzip" else raw

    def header(self) -> list[str]:
        with self.open() as raw:
            line = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="").readline()
        if not line.strip():
            return []
        return next(csv.reader([line]))


class Boto3DataReader(DataReader):
    """Reads through the store (boto3 for S3, plain files locally) and streams Arrow record batches."""

    def describe(self, key: str, *, size: int = 0) -> SourceFile:
        try:
            fmt, compression = sniff_format(self.store.read_head(key, 8), key)
            if fmt == "parquet":
                import pyarrow.parquet as pq

                with self.store.open_random(key) as handle:
                    schema = pq.ParquetFile(handle).schema_arrow
                columns = tuple(SourceColumn(f.name, arrow_kind(f.type)) for f in schema)  # type: ignore[arg-type]
            else:
                header = _CsvText(self.store, key, compression).header()
                columns = tuple(SourceColumn(name, "string") for name in header)
        except LoadError:
            raise
        except (OSError, EOFError, zipfile.BadZipFile, pa.ArrowException, UnicodeDecodeError) as exc:
            raise LoadError(f"{key} is unreadable: {exc}") from exc
        names = [c.name for c in columns]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:  # which copy holds the costs? ambiguous input is refused, never resolved by a guess
            raise LoadError(f"{key} has the column{'s' if len(twice) > 1 else ''} {', '.join(map(repr, twice))} "
                            "more than once.")
        return SourceFile(key=key, format=fmt, compression=compression, columns=columns, size=size)  # type: ignore[arg-type]

    def batches(self, plan: FilePlan) -> pa.RecordBatchReader:
        schema = pa.schema(
            [pa.field(c.target, ARROW_TYPES[c.kind]) for c in plan.columns]
            + [pa.field(name, pa.string()) for name, _ in plan.constants]
        )
        return pa.RecordBatchReader.from_batches(schema, self._typed(plan, schema))

    def _raw(self, plan: FilePlan) -> Iterator[pa.RecordBatch]:
        source = plan.file
        wanted = [c.source for c in plan.columns]
        if source.format == "parquet":
            import pyarrow.parquet as pq

            with self.store.open_random(source.key) as handle:
                parquet = pq.ParquetFile(handle)
                for group in range(parquet.num_row_groups):
                    yield from parquet.read_row_group(group, columns=wanted).to_batches(max_chunksize=BATCH_ROWS)
            return
        import pyarrow.csv as pacsv

        names = [c.name for c in source.columns]
        with _CsvText(self.store, source.key, source.compression).open() as stream:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, column_names=names, skip_rows=1),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in names},
                    include_columns=wanted,
                    # only an empty field is NULL: "NA", "N/A", "null" are real CUR values (FOCUS: also "NULL")
                    null_values=["", *plan.null_values],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
            yield from reader

    def _typed(self, plan: FilePlan, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        try:
            for batch in self._raw(plan):
                arrays = [
                    cast_column(batch.column(spec.source), spec.source_kind, spec.kind, spec.source)
                    for spec in plan.columns
                ]
                arrays += [pa.repeat(pa.scalar(value, pa.string()), batch.num_rows) for _, value in plan.constants]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        except LoadError as exc:
            raise LoadError(f"{plan.file.key}: {exc.message}") from exc
        except (OSError, EOFError, zipfile.BadZipFile, pa.ArrowException, UnicodeDecodeError) as exc:
            raise LoadError(f"{plan.file.key} is corrupt or truncated: {exc}") from exc
