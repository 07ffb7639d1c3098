"""BigQuery's load strategy: the period into a staging table first (load jobs, or ``LOAD DATA`` from S3, run
outside transactions), then ``INSERT … SELECT`` inside the replace transaction.

Two ways into the staging table:

* **Through this machine** (no ``aws_connection``): the universal reader's Arrow batches of the period
  (:func:`core.backends.conform.period_batches`) are written to Parquet, one temporary file of at most
  ``load_chunk_rows`` rows at a time, each appended to the staging table by a load job
  (``load_table_from_file``). No per-row insert, no streaming-insert API; memory holds one batch, the disk one
  chunk. JSON is staged as text and parsed by the ``INSERT … SELECT`` (``PARSE_JSON``: an invalid document fails
  the transaction).
* **By BigQuery itself** (``aws_connection`` names a BigQuery Omni connection to AWS): ``LOAD DATA INTO <staging>
  FROM FILES (format = …, uris = [exactly the manifest's files]) WITH CONNECTION …`` — no byte passes through this
  machine. One statement per group of files sharing a layout; CSV is staged as text in positional columns and
  typed by the ``INSERT … SELECT``; Parquet keeps its own types (maps become JSON objects there). ``LOAD DATA``
  takes no query parameters: the URIs are rendered as string literals (escaped by sqlglot).

Either way the rows staged are counted by a ``SELECT COUNT(*)`` of the staging table (a load job reports the
table's rows, not the rows it added), checked against the rows read where this machine read them, and the
``INSERT``'s own row count is checked against it. Staging tables live in ``staging_dataset`` with a one-day
expiration (a killed process leaves nothing for long) and are dropped on the way out, success or not.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.backends.readers import Boto3DataReader
from core.backends.sqlengine.strategy import Columns, Kinds, LoadStrategy
from core.errors import FinOpsError, LoadError

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.base import FilePlan, PeriodLoad
    from core.backends.bigquery.backend import BigQueryBackend

log = logging.getLogger(__name__)

STAGE_PREFIX = "_finops_stage_"
STAGE_TTL = timedelta(days=1)


class OmniReader(Boto3DataReader):
    """The reader of a backend with an AWS connection: files are described (header, Parquet footer) from this
    machine; their rows are read by BigQuery (``LOAD DATA``), except those it cannot open (zip CSV, keys that
    need a literal read), which go through the Arrow path."""

    def native(self, plan: FilePlan) -> bool:
        return (plan.file.compression in (None, "gzip") and not self.store.needs_literal_read(plan.file.key)
                and not plan.null_values)


@dataclass
class StageGroup:
    """One staging table and how its columns become the export table's: stored name → SQL expression."""

    qualified: str
    ref: str
    exprs: dict[str, str]
    params: list[Any] = field(default_factory=list)
    rows: int = 0
    #: the expressions are the staged columns themselves (typed by the INSERT), not already typed ones
    raw: bool = True


class StageSwap(LoadStrategy):
    """Stage (load jobs or ``LOAD DATA``), then ``INSERT … SELECT`` in the transaction; see the module docstring."""

    @contextmanager
    def staged(self, backend: BigQueryBackend, load: PeriodLoad, kinds: Kinds) -> Iterator[Any]:  # type: ignore[override]
        groups: list[StageGroup] = []
        try:
            if load.files:
                dataset = backend.config.staging(load.dataset)
                backend.ensure_schema(dataset)
                reader = load.reader
                if isinstance(reader, OmniReader) and all(reader.native(p) for p in load.files):
                    self._load_data(backend, load, dataset, groups)
                else:
                    self._load_jobs(backend, load, kinds, dataset, groups)
            yield groups
        finally:
            for group in groups:
                try:
                    backend.client.delete_table(group.ref, what="dropping the staging table")
                except FinOpsError as exc:
                    log.warning("Could not drop the staging table %s: %s", group.ref, exc.message)

    # -- staging through this machine -----------------------------------------------------------------------
    def _load_jobs(self, backend: BigQueryBackend, load: PeriodLoad, kinds: Kinds, dataset: str,
                   groups: list[StageGroup]) -> None:
        import pyarrow.parquet as pq
        from google.cloud import bigquery

        from core.backends.bigquery.backend import API_TYPES
        from core.backends.conform import period_batches

        stored = {name: backend.column(name) for name in kinds}
        group = self._new_group(backend, load, dataset, groups)
        schema = [bigquery.SchemaField(stored[n], "STRING" if k == "json" else API_TYPES[k]) for n, k in kinds.items()]
        self._create(backend, group, schema)
        group.exprs = {stored[n]: backend.quote(stored[n]) for n in kinds}
        read = [0]

        def file_done(plan: FilePlan, rows: int) -> None:
            read[0] += rows
            load.file_done(plan.file, rows)

        what = f"loading {load.table} {load.billing_period} into {group.ref}"
        writer, spool, in_chunk = None, None, 0
        try:
            for batch in period_batches(load, kinds, names=stored, on_file=file_done):
                if not batch.num_rows:
                    continue
                if writer is None:
                    # one spool per chunk, closed after its load job (or in the finally below)
                    spool = tempfile.TemporaryFile(dir=backend.data_dir if backend.data_dir.is_dir() else None)  # noqa: SIM115
                    writer, in_chunk = pq.ParquetWriter(spool, batch.schema), 0
                writer.write_batch(batch)
                in_chunk += batch.num_rows
                if in_chunk >= backend.load_chunk_rows:
                    writer.close()
                    backend.client.load_parquet(spool, group.ref, what=what)
                    spool.close()
                    writer, spool = None, None
            if writer is not None:
                writer.close()
                backend.client.load_parquet(spool, group.ref, what=what)
        finally:  # a failure mid-chunk: the writer first (it would flush into a closed file when collected)
            if writer is not None:
                with suppress(Exception):
                    writer.close()
            if spool is not None:
                spool.close()
        group.rows = self._count(backend, group)
        if group.rows != read[0]:  # never publish a period whose row count we cannot vouch for
            raise LoadError(f"{load.table} {load.billing_period}: {read[0]} rows read but {group.rows} staged.")

    # -- staging by BigQuery itself (Omni) ------------------------------------------------------------------
    def _load_data(self, backend: BigQueryBackend, load: PeriodLoad, dataset: str, groups: list[StageGroup]) -> None:
        layouts: dict[Any, list[FilePlan]] = {}
        for plan in load.files:
            key = (plan.file.format, tuple(c.name for c in plan.file.columns), plan.columns, plan.constants)
            layouts.setdefault(key, []).append(plan)
        for plans in layouts.values():
            group = self._new_group(backend, load, dataset, groups)
            backend.execute(*load_data_sql(backend, group.qualified, plans, load.reader.store),
                            what=f"loading {load.table} {load.billing_period} from S3")
            group.exprs, group.params = select_exprs(backend, plans[0])
            group.raw = False
            group.rows = self._count(backend, group)
            for plan in plans[:-1]:  # one count per statement: the group's rows are reported with its last file
                load.file_done(plan.file, 0)
            load.file_done(plans[-1].file, group.rows)

    # -- helpers --------------------------------------------------------------------------------------------
    @staticmethod
    def _new_group(backend: BigQueryBackend, load: PeriodLoad, dataset: str, groups: list[StageGroup]) -> StageGroup:
        table = f"{STAGE_PREFIX}{load.table}_{uuid.uuid4().hex[:12]}"
        group = StageGroup(backend.qualified(dataset, table), backend.table_ref(dataset, table), {})
        groups.append(group)
        return group

    @staticmethod
    def _create(backend: BigQueryBackend, group: StageGroup, schema: list[Any]) -> None:
        from google.cloud import bigquery

        table = bigquery.Table(group.ref, schema=schema)
        table.expires = datetime.now(UTC) + STAGE_TTL
        backend.client.create_table(table, what=f"creating the staging table {group.ref}")

    @staticmethod
    def _count(backend: BigQueryBackend, group: StageGroup) -> int:
        rows = backend.execute(f"SELECT COUNT(*) FROM {group.qualified}", what="counting the staged rows").rows
        return int(rows[0][0])

    def insert(self, backend: BigQueryBackend, load: PeriodLoad, kinds: Kinds,  # type: ignore[override]
               columns: Columns, staged: Any) -> int:
        from core.backends.bigquery.backend import PARTITION_COLUMN, period_date

        target = backend.qualified(load.dataset, load.table)
        total = 0
        for group in staged:
            if not group.rows:
                continue
            names, values = [], []
            for name, expr in group.exprs.items():
                names.append(backend.quote(name))
                values.append(_fit(backend, expr, columns.get(name), _staged_kind(kinds, backend, name))
                              if group.raw else expr)
            rows = backend.execute(
                f"INSERT INTO {target} ({', '.join(names)}, {backend.quote(PARTITION_COLUMN)}) "
                f"SELECT {', '.join(values)}, ? FROM {group.qualified}",
                [*group.params, period_date(load.billing_period)],
                what=f"inserting {load.table} {load.billing_period} from the staging table",
            ).rowcount
            if rows != group.rows:
                raise LoadError(f"{load.table} {load.billing_period}: {group.rows} rows staged but {rows} inserted.")
            total += rows
        return total


def _staged_kind(kinds: Kinds, backend: BigQueryBackend, stored: str) -> str | None:
    return next((k for n, k in kinds.items() if backend.column(n) == stored), None)


def _fit(backend: BigQueryBackend, expr: str, target_type: str | None, kind: str | None) -> str:
    """``expr`` as the export table stores the column: JSON parsed from its text, another type cast (a column
    whose kind changed since the table was created keeps the table's type)."""
    if target_type is None:
        return expr
    target_kind = backend.kind_of(target_type)
    if target_kind == "json":
        return f"PARSE_JSON({expr})" if kind in ("json", "string", None) else f"TO_JSON({expr})"
    if kind is not None and kind != target_kind:
        return f"CAST({expr} AS {target_type})"
    return expr


def load_data_sql(backend: BigQueryBackend, staging: str, plans: list[FilePlan], store: Any) -> tuple[str, list[Any]]:
    """``LOAD DATA INTO`` a new staging table from exactly these files, read by BigQuery through the AWS
    connection. CSV: every column as text, by position (CUR v1 headers such as ``lineItem/UsageAccountId`` are no
    BigQuery column names); Parquet: the file's own columns and types."""
    from sqlglot import exp

    first = plans[0].file
    uris = ", ".join(exp.Literal.string(store.uri(p.file.key)).sql(dialect="bigquery") for p in plans)
    if first.format == "csv":
        body = ", ".join(f"{backend.quote(f'c_{i}')} STRING" for i in range(len(first.columns)))
        options = f"format = 'CSV', skip_leading_rows = 1, allow_quoted_newlines = true, uris = [{uris}]"
        return f"LOAD DATA INTO {staging} ({body}) FROM FILES ({options}) WITH CONNECTION {backend.connection_sql()}", []
    options = f"format = 'PARQUET', uris = [{uris}]"
    return f"LOAD DATA INTO {staging} FROM FILES ({options}) WITH CONNECTION {backend.connection_sql()}", []


def select_exprs(backend: BigQueryBackend, plan: FilePlan) -> tuple[dict[str, str], list[Any]]:
    """Stored column → the expression reading it from a ``LOAD DATA`` staging table, typed as the plan says;
    the plan's constants (``billing_period``) as bound values."""
    types = backend.types
    exprs: dict[str, str] = {}
    params: list[Any] = []
    position = {c.name: i for i, c in enumerate(plan.file.columns)}
    for spec in plan.columns:
        if plan.file.format == "csv":
            col = backend.quote(f"c_{position[spec.source]}")
            if spec.kind == "string":
                expr = col
            elif spec.kind == "json":
                expr = f"PARSE_JSON(NULLIF({col}, ''))"
            else:
                expr = f"CAST(NULLIF(TRIM({col}), '') AS {types[spec.kind]})"
        else:
            col = backend.quote(spec.source)
            if spec.source_kind == "map":  # Parquet MAP, loaded as STRUCT<key_value ARRAY<STRUCT<key, value>>>
                expr = (f"IF({col} IS NULL, NULL, (SELECT JSON_OBJECT(ARRAY_AGG(kv.key), ARRAY_AGG(kv.value)) "
                        f"FROM UNNEST({col}.key_value) AS kv))")
            elif spec.kind == "json":
                expr = f"PARSE_JSON({col})"
            elif spec.source_kind == spec.kind:
                expr = col
            else:
                expr = f"CAST({col} AS {types[spec.kind]})"
        exprs[backend.column(spec.target)] = expr
    for name, value in plan.constants:
        exprs[backend.column(name)] = "?"
        params.append(value)
    return exprs, params


__all__ = ["OmniReader", "StageGroup", "StageSwap", "load_data_sql", "select_exprs"]
