"""CsvStream: the producer thread behind PostgreSQL's COPY (no server needed: it is a file object)."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import pyarrow as pa
import pytest

from core.backends.base import FilePlan, SourceFile
from core.backends.postgresql.copy import CsvStream
from core.errors import LoadError


def plan(key: str) -> FilePlan:
    return FilePlan(SourceFile(key=key, format="csv", compression=None, columns=()), (), ())


def batch(start: int, rows: int) -> pa.RecordBatch:
    return pa.record_batch({
        "id": pa.array([f"{i:06d}" for i in range(start, start + rows)]),
        "cost": pa.array([i / 4 for i in range(start, start + rows)]),
        "note": pa.array(["" if i % 3 == 0 else None if i % 3 == 1 else 'say "hi", bye\n' for i in range(start, start + rows)]),
        "at": pa.array([datetime(2024, 1, 1, 0, 0, i % 60) for i in range(start, start + rows)], pa.timestamp("us")),
    })


def files(*sizes: int, fail_after: int | None = None) -> Callable[[Callable[[FilePlan, int], None]], Iterator[pa.RecordBatch]]:
    def produce(file_done: Callable[[FilePlan, int], None]) -> Iterator[pa.RecordBatch]:
        start = 0
        for number, size in enumerate(sizes):
            if fail_after is not None and number == fail_after:
                raise LoadError(f"f{number}.csv.gz is corrupt or truncated")
            yield batch(start, size)
            file_done(plan(f"f{number}.csv.gz"), size)
            start += size
    return produce


def drain(stream: CsvStream) -> bytes:
    out = []
    while chunk := stream.read(8192):
        out.append(chunk)
    return b"".join(out)


def test_rows_in_order_nulls_and_empty_strings_kept_apart() -> None:
    seen: list[tuple[str, int, str]] = []
    with CsvStream(files(25, 10), on_file=lambda p, n: seen.append((p.file.key, n, threading.current_thread().name)),
                   chunk_rows=4, depth=2) as stream:
        data = drain(stream)
    assert stream.rows == 35
    rows = list(csv.reader(io.StringIO(data.decode()), strict=True))
    assert [r[0] for r in rows] == [f"{i:06d}" for i in range(35)]  # leading zeros, every row, in order
    assert rows[1][1] == "0.25"
    assert rows[0][3] == "2024-01-01 00:00:00.000000"  # naive: read as UTC by the UTC session
    # PostgreSQL's CSV rule: an unquoted empty field is NULL, a quoted one is an empty string
    lines = data.decode().split("\n")
    assert lines[0].split(",")[2] == '""' and lines[1].split(",")[2] == ""
    assert rows[2][2] == 'say "hi", bye\n'
    # callbacks run on the caller's thread, after the file's rows were handed out
    assert seen == [("f0.csv.gz", 25, threading.current_thread().name), ("f1.csv.gz", 10, threading.current_thread().name)]


def test_a_producer_failure_is_raised_by_read_as_itself() -> None:
    with CsvStream(files(5, 5, 5, fail_after=2), chunk_rows=2, depth=1) as stream:
        with pytest.raises(LoadError, match="f2.csv.gz is corrupt"):
            drain(stream)
    assert isinstance(stream.error, LoadError) and stream.rows == 10


def test_close_stops_a_producer_waiting_for_room() -> None:
    produced: list[int] = []

    def endless(file_done: Callable[[FilePlan, int], None]) -> Iterator[pa.RecordBatch]:
        start = 0
        while True:
            produced.append(start)
            yield batch(start, 10)
            start += 10

    stream = CsvStream(endless, chunk_rows=10, depth=2)
    with stream:
        assert stream.read()  # the consumer stops early (COPY failed on the server, say)
    assert not stream._thread.is_alive()
    assert len(produced) < 10  # the queue bounded how far it ran ahead


def test_an_interrupt_while_reading_is_kept_as_itself() -> None:
    """psycopg2 wraps anything ``read`` raises in its own error; the stream keeps the original for the caller."""

    def interrupted(plan: FilePlan, rows: int) -> None:
        raise KeyboardInterrupt

    with CsvStream(files(5, 5), on_file=interrupted, chunk_rows=5) as stream:
        with pytest.raises(KeyboardInterrupt):
            drain(stream)
    assert isinstance(stream.error, KeyboardInterrupt)
