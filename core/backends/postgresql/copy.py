"""PostgreSQL's load strategy: Arrow record batches as a CSV byte stream for ``COPY … FROM STDIN``, produced
ahead by a worker thread.

``cursor.copy_expert(sql, stream)`` pulls bytes with ``stream.read()``. The batches are read from S3, decoded,
typed and written as CSV (:func:`pyarrow.csv.write_csv`, ~8k rows per chunk) by a producer thread into a bounded
queue, so the client converts the next chunks while the server parses the last ones; pyarrow releases the GIL
for both. The queue bounds memory (``depth`` chunks of ~8 MB at most) however large the period.

Callbacks stay on the caller's thread: the producer posts "file finished" events into the same queue, and
:meth:`CsvStream.read` reports them (``on_file``) when the file's last row has been handed to the server.
A failure in the producer (a corrupt file) is kept in :attr:`CsvStream.error` and makes ``read`` raise, which
makes psycopg2 abort the ``COPY``; the caller then raises that error rather than the driver's wrapper of it.
The same holds for Ctrl-C: a ``KeyboardInterrupt`` while ``read`` waits is raised as itself, not as a load error.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from core.backends.base import FilePlan
from core.backends.sqlengine.strategy import Columns, Kinds, LoadStrategy
from core.errors import FinOpsError, LoadError

if TYPE_CHECKING:  # pragma: no cover

    import pyarrow as pa

    from core.backends.base import PeriodLoad
    from core.backends.postgresql.backend import PostgreSQLBackend

log = logging.getLogger(__name__)

#: rows per CSV chunk: large enough for pyarrow's writer to be efficient, small enough to keep COPY fed
CHUNK_ROWS = 8192
#: chunks the producer may work ahead (with ~1 KB per CUR row: ~64 MB)
QUEUE_DEPTH = 8


@dataclass(frozen=True)
class _FileDone:
    plan: FilePlan
    rows: int


class _End:
    """The producer is finished (``CsvStream.error`` says whether it failed)."""


class CsvStream:
    """A read-only file object over the CSV rendering of ``batches`` (no header; NULL as an unquoted empty
    field, every string quoted, so an empty string stays an empty string)."""

    def __init__(
        self,
        batches: Callable[[Callable[[FilePlan, int], None]], Iterator[pa.RecordBatch]],
        *,
        on_file: Callable[[FilePlan, int], None] | None = None,
        chunk_rows: int = CHUNK_ROWS,
        depth: int = QUEUE_DEPTH,
    ) -> None:
        """``batches(file_done)`` is called on the producer thread; it must call ``file_done(plan, rows)`` after
        each file (as :func:`core.backends.conform.period_batches` does with its ``on_file``)."""
        self._batches = batches
        self._on_file = on_file
        self._chunk_rows = chunk_rows
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="finops-csv", daemon=True)
        self._ended = False
        #: rows handed to the server so far (rows of finished files)
        self.rows = 0
        #: the producer's failure, if it failed
        self.error: BaseException | None = None

    # -- producer thread ------------------------------------------------------------------------------------
    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _produce(self) -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        try:
            for batch in self._batches(lambda plan, rows: self._put(_FileDone(plan, rows))):
                for start in range(0, batch.num_rows, self._chunk_rows):
                    sink = io.BytesIO()
                    pacsv.write_csv(batch.slice(start, self._chunk_rows), sink, options)
                    self._put(sink.getvalue())
        except _Stopped:
            return
        except FinOpsError as exc:
            self.error = exc
        except (pa.ArrowException, OSError, ValueError) as exc:
            self.error = LoadError(f"Could not write the rows for COPY: {exc}")
        except BaseException as exc:  # noqa: BLE001 - reported on the caller's thread
            self.error = exc
        try:
            self._put(_End())
        except _Stopped:
            return

    # -- caller's thread (inside copy_expert) ---------------------------------------------------------------
    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, size: int = -1) -> bytes:
        """The next chunk (of any length: psycopg2 sends what it is given), ``b""`` at the end.

        Whatever it raises (the producer's error, Ctrl-C while waiting, a failing callback) is also kept in
        :attr:`error`: psycopg2 turns an exception in ``read`` into its own "COPY from stdin failed" error.
        """
        try:
            while not self._ended:
                item = self._queue.get()
                if isinstance(item, bytes):
                    return item
                if isinstance(item, _FileDone):
                    self.rows += item.rows
                    if self._on_file:
                        self._on_file(item.plan, item.rows)
                    continue
                self._ended = True
                if self.error is not None:
                    raise self.error
        except BaseException as exc:
            self.error = self.error or exc
            raise
        return b""

    def close(self) -> None:
        """Stop the producer (it may be waiting for room in the queue) and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
            if self._thread.is_alive():  # blocked in a read from S3: it is a daemon, it dies with us
                log.debug("The CSV producer did not stop within 30 s")


class _Stopped(Exception):
    """The consumer went away: the producer stops quietly."""


class CopyStream(LoadStrategy):
    """The period's rows straight into the export table with ``COPY … FROM STDIN`` (CSV), inside the replace
    transaction; PostgreSQL's input functions type each value as the column is stored (JSON text → ``jsonb``, a
    drifted type → the table's). The rows the server reports are checked against the rows read."""

    def insert(self, backend: PostgreSQLBackend, load: PeriodLoad, kinds: Kinds,  # type: ignore[override]
               columns: Columns, staged: Any) -> int:
        import pyarrow as pa

        from core.backends.conform import period_batches

        def batches(file_done: Callable[[FilePlan, int], None]) -> Iterator[pa.RecordBatch]:
            # naive timestamps (UTC: the session's time zone): pyarrow writes them ~20x faster than zoned ones
            return period_batches(load, kinds, types={"timestamp": pa.timestamp("us")}, on_file=file_done)

        names = ", ".join(backend.quote(backend.column(name)) for name in kinds)
        copy = f"COPY {backend.qualified(load.dataset, load.table)} ({names}) FROM STDIN WITH (FORMAT csv)"
        with CsvStream(batches, on_file=lambda plan, rows: load.file_done(plan.file, rows)) as stream:
            copied = backend.client.copy_in(copy, stream, what=f"copying {load.table} {load.billing_period}")
        if copied != stream.rows:  # never publish a period whose row count we cannot vouch for
            raise LoadError(f"{load.table} {load.billing_period}: {stream.rows} rows read but {copied} copied.")
        return copied
