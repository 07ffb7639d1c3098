"""Wrong data must never load with exit 0: a damaged data file of a restated month fails that month (exit 1),
names the file, and the previous version stays; the rest (April, the other export) loads.

The victim is February: ``legacy-cur`` (gzip CSV) or ``cur2-daily`` (Parquet), restated to version
``restated-0002`` whose last (or first) file is damaged.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.corpus.harness import V1, V2, Case, Ctx

FEB = "2024-02"


def _key(export: str, index: int = -1) -> Callable[[Ctx], str]:
    return lambda ctx: ctx.restated[(export, FEB)].data_keys[index]


def _bytes(export: str, change: Callable[[bytes], bytes], index: int = -1, **restate: Any) -> Callable[[Ctx], None]:
    """Restate February of ``export`` (``restate``: the generator's format options), then replace one of its
    files' bytes with ``change(bytes)``."""

    def damage(ctx: Ctx) -> None:
        ctx.restate(export, **restate)
        path = ctx.data_file(export, index)
        path.write_bytes(change(path.read_bytes()))

    return damage


def _csv(change: Callable[[list[list[str]]], list[list[str]]], index: int = -1,
         compression: str = "gzip") -> Callable[[Ctx], None]:
    """Restate February of the v1 export (gzip, plain or zip CSV) and rewrite one part's CSV records (compressed
    again, well formed)."""

    def damage(ctx: Ctx) -> None:
        ctx.restate(V1, compression=compression)
        path = ctx.data_file(V1, index)
        raw = path.read_bytes()
        if compression == "gzip":
            text = gzip.decompress(raw).decode()
        elif compression == "zip":
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                member = archive.namelist()[0]
                text = archive.read(member).decode()
        else:
            text = raw.decode()
        records = list(csv.reader(io.StringIO(text, newline="")))
        out = io.StringIO(newline="")
        csv.writer(out, lineterminator="\n").writerows(change(records))
        data = out.getvalue().encode()
        if compression == "gzip":
            data = gzip.compress(data, mtime=0)
        elif compression == "zip":
            sink = io.BytesIO()
            with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(member, data)
            data = sink.getvalue()
        path.write_bytes(data)

    return damage


def _rename_header(old: str, new: str) -> Callable[[list[list[str]]], list[list[str]]]:
    def change(records: list[list[str]]) -> list[list[str]]:
        header = list(records[0])
        assert old in header, header
        header[header.index(old)] = new
        return [header, *records[1:]]

    return change


def _cost_field(value: str) -> Callable[[list[list[str]]], list[list[str]]]:
    def change(records: list[list[str]]) -> list[list[str]]:
        at = records[0].index("lineItem/UnblendedCost")
        row = list(records[2])
        row[at] = value
        return [records[0], records[1], row, *records[3:]]

    return change


def _drop_column(column: str) -> Callable[[list[list[str]]], list[list[str]]]:
    """The column gone from the header and every row: the file no longer has what its manifest lists."""

    def change(records: list[list[str]]) -> list[list[str]]:
        at = records[0].index(column)
        return [r[:at] + r[at + 1:] for r in records]

    return change


HTML_PAGE = (b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
             b"<hr><center>nginx</center></body></html>\n")


def _ragged(records: list[list[str]]) -> list[list[str]]:
    return [records[0], records[1], records[2][:-1], *records[3:]]


def _parquet(change: Callable[[pa.Table], pa.Table]) -> Callable[[Ctx], None]:
    def damage(ctx: Ctx) -> None:
        ctx.restate(V2)
        path = ctx.data_file(V2)
        table = pq.read_table(path)
        sink = io.BytesIO()
        pq.write_table(change(table), sink, compression="snappy")
        path.write_bytes(sink.getvalue())

    return damage


def _duplicate_cost(table: pa.Table) -> pa.Table:
    names = list(table.column_names)
    names[names.index("line_item_blended_cost")] = "line_item_unblended_cost"
    return table.rename_columns(names)


def _drop_cost(table: pa.Table) -> pa.Table:
    return table.drop_columns(["line_item_unblended_cost"])


def _cost_as_text(table: pa.Table) -> pa.Table:
    at = table.column_names.index("line_item_unblended_cost")
    bad = pa.array(["not-a-number"] * table.num_rows)
    return table.set_column(at, "line_item_unblended_cost", bad)


def _flip(at: float) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        i = int(len(data) * at)
        return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]

    return change


def _second_member_cut(data: bytes) -> bytes:
    whole = gzip.decompress(data)
    half = len(whole) // 2
    second = gzip.compress(whole[half:], mtime=0)
    return gzip.compress(whole[:half], mtime=0) + second[: len(second) // 2]


def _field(column: str, value: str) -> Callable[[list[list[str]]], list[list[str]]]:
    def change(records: list[list[str]]) -> list[list[str]]:
        at = records[0].index(column)
        row = list(records[2])
        row[at] = value
        return [records[0], records[1], row, *records[3:]]

    return change


def _zip_members(extra: int) -> Callable[[bytes], bytes]:
    """The archive again, with ``extra`` more members (0: none at all, -1: an empty archive)."""

    def change(data: bytes) -> bytes:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            name = archive.namelist()[0]
            body = archive.read(name)
        sink = io.BytesIO()
        with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
            if extra >= 0:
                archive.writestr(name, body)
            for i in range(max(extra, 0)):
                archive.writestr(f"extra-{i}.csv", body)
        return sink.getvalue()

    return change


def _open_quote(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[2] = b'"' + lines[2]
    return b"\n".join(lines)


def _mid_row(data: bytes) -> bytes:
    body = data.rstrip(b"\n")
    last = body.rfind(b"\n")
    return body[: last + (len(body) - last) // 2]


def _v1_parquet(change: Callable[[pa.Table], pa.Table]) -> Callable[[Ctx], None]:
    def damage(ctx: Ctx) -> None:
        ctx.restate(V1, fmt="parquet")
        path = ctx.data_file(V1)
        sink = io.BytesIO()
        pq.write_table(change(pq.read_table(path)), sink, compression="snappy")
        path.write_bytes(sink.getvalue())

    return damage


def _gz_case(name: str, change: Callable[[bytes], bytes], index: int = -1, **kw: Any) -> Case:
    return Case(id=f"gz-{name}", damage=_bytes(V1, change, index), code=1, culprit=_key(V1, index),
                victim=(V1, FEB), **kw)


def _csv_case(name: str, change: Callable[[list[list[str]]], list[list[str]]], compression: str = "gzip",
              **kw: Any) -> Case:
    tag = {"gzip": "csv", "none": "plain-csv", "zip": "zip-csv"}[compression]
    return Case(id=f"{tag}-{name}", damage=_csv(change, compression=compression), code=1, culprit=_key(V1),
                victim=(V1, FEB), **kw)


def _plain_case(name: str, change: Callable[[bytes], bytes], **kw: Any) -> Case:
    return Case(id=f"plain-csv-{name}", damage=_bytes(V1, change, compression="none"), code=1, culprit=_key(V1),
                victim=(V1, FEB), **kw)


def _zip_case(name: str, change: Callable[[bytes], bytes], **kw: Any) -> Case:
    return Case(id=f"zip-csv-{name}", damage=_bytes(V1, change, compression="zip"), code=1, culprit=_key(V1),
                victim=(V1, FEB), **kw)


def _v1_parquet_case(name: str, damage: Callable[[Ctx], None], **kw: Any) -> Case:
    return Case(id=f"v1-parquet-{name}", damage=damage, code=1, culprit=_key(V1), victim=(V1, FEB), **kw)


def _pq_case(name: str, damage: Callable[[Ctx], None], **kw: Any) -> Case:
    return Case(id=f"parquet-{name}", damage=damage, code=1, culprit=_key(V2), victim=(V2, FEB), **kw)


CASES: list[Case] = [
    # gzip CSV parts cut at several offsets, overwritten, padded, emptied, or not gzip at all
    _gz_case("cut-after-header", lambda d: d[:10]),
    _gz_case("cut-at-half", lambda d: d[: len(d) // 2]),
    _gz_case("cut-last-byte", lambda d: d[:-1]),
    _gz_case("cut-trailer", lambda d: d[:-8]),
    _gz_case("cut-first-part", lambda d: d[: len(d) // 3], index=0),
    _gz_case("garbage-tail-overwritten", lambda d: d[:-40] + b"\0" * 40),
    _gz_case("garbage-tail-appended", lambda d: d + b"GARBAGE-AFTER-THE-STREAM" * 4),
    _gz_case("crc-wrong", lambda d: d[:-8] + bytes(4) + d[-4:]),
    _gz_case("bit-flip", _flip(0.5)),
    _gz_case("zero-bytes", lambda d: b""),
    _gz_case("not-gzip-at-all", lambda d: b"this is not gzip, it only has the name of one\n" * 20),
    _gz_case("second-member-cut", _second_member_cut),
    # CSV whose header does not match the manifest, or rows that do not match the header
    _csv_case("misspelt-cost-column", _rename_header("lineItem/UnblendedCost", "lineItem/UnblendedCosts")),
    _csv_case("no-header-row", lambda records: records[1:]),
    _csv_case("same-column-twice", _rename_header("lineItem/BlendedCost", "lineItem/UnblendedCost")),
    _csv_case("same-column-twice-other-case", _rename_header("lineItem/BlendedCost", "lineitem/unblendedcost")),
    _csv_case("ragged-row", _ragged),
    _csv_case("cost-not-a-number", _cost_field("twelve")),
    _csv_case("cost-decimal-comma", _cost_field("1,25")),
    _csv_case("timestamp-impossible", _field("lineItem/UsageStartDate", "2024-02-30T00:00:00Z")),
    _csv_case("manifest-column-missing", _drop_column("lineItem/UsageType")),
    _gz_case("html-page-instead", lambda d: HTML_PAGE),
    # plain CSV, which DuckDB reads itself: the same damage, and cuts a gzip trailer would have caught
    _plain_case("cut-mid-row", _mid_row),
    _plain_case("zero-bytes", lambda d: b""),
    _plain_case("binary-garbage", lambda d: bytes(range(256)) * 8),
    _plain_case("unterminated-quote", _open_quote),
    _plain_case("html-page-instead", lambda d: HTML_PAGE),
    _csv_case("manifest-column-missing", _drop_column("lineItem/UsageType"), compression="none"),
    _csv_case("misspelt-cost-column", _rename_header("lineItem/UnblendedCost", "lineItem/UnblendedCosts"),
              compression="none"),
    _csv_case("no-header-row", lambda records: records[1:], compression="none"),
    _csv_case("same-column-twice", _rename_header("lineItem/BlendedCost", "lineItem/UnblendedCost"),
              compression="none"),
    _csv_case("ragged-row", _ragged, compression="none"),
    _csv_case("cost-not-a-number", _cost_field("twelve"), compression="none"),
    _csv_case("timestamp-impossible", _field("lineItem/UsageStartDate", "2024-02-30T00:00:00Z"),
              compression="none"),
    # zip CSV
    _zip_case("cut-at-half", lambda d: d[: len(d) // 2]),
    _zip_case("crc-wrong", _flip(0.4)),
    _zip_case("two-members", _zip_members(1)),
    _zip_case("empty-archive", _zip_members(-1)),
    _csv_case("misspelt-cost-column", _rename_header("lineItem/UnblendedCost", "lineItem/UnblendedCosts"),
              compression="zip"),
    # CUR v1 Parquet (Athena-style names)
    _v1_parquet_case("cut-at-half", _bytes(V1, lambda d: d[: len(d) // 2], fmt="parquet")),
    _v1_parquet_case("same-column-twice", _v1_parquet(_duplicate_cost)),
    _v1_parquet_case("cost-column-missing", _v1_parquet(_drop_cost)),
    # Parquet truncated, emptied, not Parquet, footer damaged; a column twice or missing
    _pq_case("cut-at-half", _bytes(V2, lambda d: d[: len(d) // 2])),
    _pq_case("cut-last-byte", _bytes(V2, lambda d: d[:-1])),
    _pq_case("cut-footer", _bytes(V2, lambda d: d[:-8])),
    _pq_case("zero-bytes", _bytes(V2, lambda d: b"")),
    _pq_case("not-parquet-at-all", _bytes(V2, lambda d: b"not parquet " * 50)),
    _pq_case("head-magic-broken", _bytes(V2, lambda d: b"XXXX" + d[4:])),
    _pq_case("footer-metadata-garbage", _bytes(V2, lambda d: d[:-200] + b"\xff" * 192 + d[-8:])),
    _pq_case("same-column-twice", _parquet(_duplicate_cost)),
    _pq_case("cost-column-missing", _parquet(_drop_cost)),
    _pq_case("cost-column-text", _parquet(_cost_as_text)),
    _pq_case("manifest-column-missing", _parquet(lambda t: t.drop_columns(["line_item_usage_type"]))),
    _pq_case("html-page-instead", _bytes(V2, lambda d: HTML_PAGE)),
]
