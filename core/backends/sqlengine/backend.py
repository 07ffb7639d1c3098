"""What every SQL engine does alike, written once: names, types, catalogue, state, summaries, ``check`` and the
envelope that replaces one billing period.

An engine package subclasses :class:`SqlBackend`, sets its data (``dialect``, ``capabilities``, ``strategy``,
``max_identifier_length``) and implements the few primitives that differ: ``connect``/``close``, ``execute``
(``?`` placeholders, driver errors translated), ``transaction``, ``read_period`` and ``get_dlt_destination``.
Everything else here works through those, so a statement an import sends passes through ``execute`` — which is
also where the exact-SQL tests listen.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from core.backends.base import (
    STATE_TABLE,
    CheckResult,
    ColumnKind,
    DatabaseBackend,
    DataReader,
    ExportTable,
    PeriodLoad,
    PeriodSummary,
    SourceFacts,
)
from core.backends.conform import union_columns
from core.backends.sqlengine import changes, names, quality, types
from core.backends.sqlengine.state import SqlStateManager
from core.backends.sqlengine.views import ViewsMixin
from core.errors import ConfigError, FinOpsError, LoadError

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.sqlengine.strategy import LoadStrategy
    from core.storage import ObjectStore

log = logging.getLogger(__name__)

PROBE_SCHEMA = "_finops_check"
#: tables of ours beside the export tables (load state, restatements): never listed or copied as exports
INTERNAL_PREFIX = "_finops_"
#: the column every export table has: the billing period as ``'YYYY-MM'`` text
PERIOD_COLUMN = "billing_period"
PROBE_TABLE = "_finops_check_probe"


@dataclass
class Result:
    """A statement's fetched rows and the row count the driver reported (``-1`` where it gives none)."""

    rows: list[tuple[Any, ...]]
    rowcount: int = -1


class SqlBackend(ViewsMixin, DatabaseBackend):
    """A SQL engine; see the module docstring for what an engine package provides."""

    #: sqlglot dialect: identifier quoting and type names
    dialect: str
    #: how rows reach the table (a :class:`~core.backends.sqlengine.strategy.LoadStrategy` class)
    strategy: ClassVar[type[LoadStrategy]]
    #: one row, one column: the server's version (``backends check``)
    version_sql: ClassVar[str] = "SELECT version()"

    # -- engine primitives ----------------------------------------------------------------------------------
    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = (), *, what: str = "querying the database") -> Result:
        """Run one statement with ``?`` placeholders (values always bound) and fetch its rows.

        Raises:
            DestinationError: the connection was lost (exit 4).
            LoadError: any other failure of the statement.
        """

    @abstractmethod
    def transaction(self, *, commit: bool = True) -> AbstractContextManager[None]:
        """BEGIN … COMMIT around the block (ROLLBACK on any error, or when ``commit`` is off)."""

    def scrub(self, text: str) -> str:
        """``text`` without any secret of this backend (driver messages may quote a connection string)."""
        return text

    # -- names and types ------------------------------------------------------------------------------------
    def quote(self, name: str) -> str:
        """One identifier quoted for this engine's dialect."""
        return names.quote_identifier(name, self.dialect)

    def qualified(self, dataset: str, table: str) -> str:
        return f"{self.quote(dataset)}.{self.quote(table)}"

    def column(self, name: str) -> str:
        """Our column name as stored: shortened stably (prefix + digest) past ``max_identifier_length``, where a
        server would otherwise cut it silently (PostgreSQL) or refuse it (MySQL)."""
        return names.fit_identifier(name, self.max_identifier_length)

    @property
    def types(self) -> dict[str, str]:
        """Logical kind → this engine's type name."""
        return types.type_map(self.dialect)

    def kind_of(self, type_name: str) -> str:
        """The logical kind of a column type as this engine's catalogue prints it."""
        return types.kind_of(type_name, self.dialect)

    # -- catalogue ------------------------------------------------------------------------------------------
    def schema_exists(self, dataset: str) -> bool:
        rows = self.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = ?", [dataset]).rows
        return bool(rows)

    def ensure_schema(self, dataset: str) -> None:
        """Create ``dataset`` unless it exists. Checked first because a server may refuse even ``CREATE SCHEMA IF
        NOT EXISTS`` of an existing schema to a role that may only use it (a DBA created it)."""
        if not self.schema_exists(dataset):
            self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.quote(dataset)}", what=f"creating the schema {dataset}")

    def open_dataset(self, dataset: str, *, create: bool = True) -> bool:
        """Make ``dataset`` reachable on this connection (SQLite attaches its file). False: it does not exist
        and ``create`` is off. Engines with schemas have nothing to open; they only say whether it exists."""
        return create or self.schema_exists(dataset)

    def table_columns(self, dataset: str, table: str) -> dict[str, str]:
        rows = self.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [dataset, table],
        ).rows
        return {name: type_name for name, type_name in rows}

    def table_names(self, dataset: str) -> list[str]:
        """Export tables in ``dataset``, names as stored: base tables with a ``billing_period`` column — never a
        view, even one that has the column (the FOCUS views) — ours (``_finops_…``) excepted."""
        rows = self.execute(
            "SELECT c.table_name FROM information_schema.columns AS c JOIN information_schema.tables AS t "
            "ON t.table_catalog = c.table_catalog AND t.table_schema = c.table_schema AND t.table_name = c.table_name "
            "WHERE c.table_schema = ? AND c.column_name = ? AND t.table_type = ?",
            [dataset, PERIOD_COLUMN, "BASE TABLE"],
        ).rows
        return sorted(table for (table,) in rows if not table.startswith(INTERNAL_PREFIX))

    # -- state ----------------------------------------------------------------------------------------------
    def state_manager(self, dataset: str) -> SqlStateManager:
        kinds = {"text": "string", "bigint": "bigint", "timestamp": "timestamp", "boolean": "boolean"}
        return SqlStateManager(
            self.state_executor(dataset), self.quote, dataset,
            types={name: self.types[kind] for name, kind in kinds.items()}, ensure_schema=self.ensure_schema,
            existing_columns=lambda: self.table_columns(dataset, STATE_TABLE),
        )

    def state_executor(self, dataset: str) -> Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]:
        """How the state store of ``dataset`` runs its statements (``?`` placeholders; rows back)."""
        return lambda sql, params: self.execute(sql, params, what="updating the load state").rows

    # -- reading --------------------------------------------------------------------------------------------
    def data_reader(self, store: ObjectStore) -> DataReader:
        if store.scheme in self.capabilities.native_schemes:
            return self.native_reader(store)
        from core.backends.readers import Boto3DataReader  # pyarrow: only when data is read

        return Boto3DataReader(store)

    def native_reader(self, store: ObjectStore) -> DataReader:
        """The engine's own reader; called only for the schemes ``capabilities.native_schemes`` names."""
        raise NotImplementedError(f"{self.name} declares native schemes but has no native reader")

    # -- the replace envelope -------------------------------------------------------------------------------
    def load_strategy(self, load: PeriodLoad) -> LoadStrategy:
        return self.strategy()

    def replace_period(self, load: PeriodLoad) -> int:
        """Stage (outside the transaction), then in one transaction: DDL where the engine allows it, DELETE the
        period, insert, the state row. Engines whose DDL cannot share the transaction get it just before."""
        kinds = union_columns(load.files)
        strategy = self.load_strategy(load)
        early_ddl = not self.capabilities.transactional_ddl
        try:
            with strategy.staged(self, load, kinds) as staged:
                self.ensure_schema(load.dataset)
                if early_ddl:
                    columns, created = self.prepare_table(load.dataset, load.table, kinds, index=True)
                with self.transaction():
                    if not early_ddl:
                        columns, created = self.prepare_table(load.dataset, load.table, kinds, index=False)
                    audit = load.replaces is not None and not created
                    before = changes.snapshot(self, load) if audit else None
                    self.execute(f"DELETE FROM {self.qualified(load.dataset, load.table)} "
                                 f"WHERE {self.quote(PERIOD_COLUMN)} = ?",
                                 [load.billing_period], what=f"deleting {load.table} {load.billing_period}")
                    rows = strategy.insert(self, load, kinds, columns, staged) if load.files else 0
                    self.reconcile(load, rows)
                    self.check_quality(load)
                    if before is not None:  # what this version changed, committed with it
                        load.changes = changes.differences(before, changes.snapshot(self, load) or {},
                                                           load.replaces, load.record.version_id, load.change_keys)
                        changes.store(self, load, load.changes, load.record.vendor)
                    if created and not early_ddl:
                        self.create_index(load.dataset, load.table)  # built after the first rows: cheaper
                    load.completed = self.state_manager(load.dataset).complete(
                        load.record, rows=rows, files=len(load.files), **self.period_facts(load))
            self.period_done()
            return rows
        except FinOpsError as exc:
            exc.message = self.scrub(exc.message)
            raise

    def reconcile(self, load: PeriodLoad, inserted: int) -> None:
        """Inside the transaction, before COMMIT: what the table now holds for the period against what the source
        held (:attr:`PeriodLoad.facts`) — rows exactly, each reconciled sum to 1e-9 relative.

        Raises:
            LoadError: they differ; the transaction rolls back and the previous version stays.
        """
        facts = load.facts
        if not load.files:
            return
        if not facts.gathered:  # a strategy that cannot report what it read: the table must hold what it inserted
            log.debug("%s %s: no source facts from the load strategy; rows checked only", load.table,
                      load.billing_period)
            facts = SourceFacts(rows=inserted, gathered=True)
        columns = self.table_columns(load.dataset, load.table) if facts.sums else {}
        summed = [c for c in facts.sums if self.column(c) in columns]
        sums = "".join(f", SUM({self.quote(self.column(c))})" for c in summed)
        row = self.execute(f"SELECT COUNT(*){sums} FROM {self.qualified(load.dataset, load.table)} "
                           f"WHERE {self.quote(PERIOD_COLUMN)} = ?", [load.billing_period],
                           what=f"reconciling {load.table} {load.billing_period}").rows[0]
        problems = [] if int(row[0]) == facts.rows == inserted else [
            f"rows: source {facts.rows:,}, inserted {inserted:,}, table {int(row[0]):,}"]
        for column, value in zip(summed, row[1:], strict=True):
            table_sum = float(value or 0.0)
            if not math.isclose(table_sum, facts.sums[column], rel_tol=1e-9, abs_tol=1e-6):
                problems.append(f"{column}: source {facts.sums[column]!r}, table {table_sum!r}")
        if problems:
            raise LoadError(f"{load.table} {load.billing_period} does not reconcile with its source "
                            f"({'; '.join(problems)}); the previous version stays.")

    def check_quality(self, load: PeriodLoad) -> None:
        """Inside the transaction, after the reconciliation: the period's data-quality findings
        (:mod:`~core.backends.sqlengine.quality`, aggregate SQL over the rows just inserted), kept in
        :attr:`PeriodLoad.findings` for the state row and the report.

        Raises:
            LoadError: there are findings and ``load.quality_strict`` is on; the previous version stays.
        """
        if load.quality is None or not load.files:
            return
        load.findings = quality.period_findings(self, load.dataset, load.table, load.billing_period, load.quality)
        if load.findings and load.quality_strict:
            raise LoadError(f"{load.table} {load.billing_period} has data-quality findings and [quality] strict is "
                            f"on: {'; '.join(f.message for f in load.findings)}; the previous version stays.")

    def period_facts(self, load: PeriodLoad) -> dict[str, Any]:
        """What the state records beside the counts: the source's figures (reconciled) and whether the period is
        invoiced (``final``) or still an ``estimated`` month, with its invoice ids."""
        facts: dict[str, Any] = {}
        if load.facts.gathered:
            facts["source_row_count"] = load.facts.rows
            facts["source_sums"] = json.dumps(load.facts.sums, sort_keys=True) if load.facts.sums else None
        if load.quality is not None and load.files:
            facts["quality_findings"] = quality.to_json(load.findings)
        column = load.invoice_column
        if column and load.files and self.column(column) in self.table_columns(load.dataset, load.table):
            invoice = self.quote(self.column(column))
            rows = self.execute(
                f"SELECT DISTINCT {invoice} FROM {self.qualified(load.dataset, load.table)} "
                f"WHERE {self.quote(PERIOD_COLUMN)} = ? "
                f"AND {invoice} IS NOT NULL AND {invoice} <> ''", [load.billing_period],
                what=f"reading the invoices of {load.table} {load.billing_period}").rows
            ids = sorted(str(i) for (i,) in rows)
            facts["period_status"] = "final" if ids else "estimated"
            facts["invoice_ids"] = ",".join(ids[:50]) or None
        return facts

    def period_done(self) -> None:
        """After a period committed: release what the engine holds for it (default: nothing)."""

    def prepare_table(
        self, dataset: str, table: str, kinds: Mapping[str, ColumnKind], *, index: bool
    ) -> tuple[dict[str, str], bool]:
        """Create the export table (with its index when ``index``), or add the columns this version brings
        (drift). Returns the stored columns (engine name → type) and whether the table was created."""
        target = self.qualified(dataset, table)
        existing = self.table_columns(dataset, table)
        engine_types = self.types
        if not existing:
            body = ", ".join(f"{self.quote(self.column(n))} {engine_types[k]}" for n, k in kinds.items())
            self.execute(f"CREATE TABLE {target} ({body}){self.table_options(dataset, table)}",
                         what=f"creating {dataset}.{table}")
            if index:
                self.create_index(dataset, table)
            return {self.column(n): engine_types[k] for n, k in kinds.items()}, True
        for name, kind in kinds.items():
            stored = self.column(name)
            if stored not in existing:
                log.info("%s.%s: new column %s %s", dataset, table, stored, engine_types[kind])
                self.execute(f"ALTER TABLE {target} ADD COLUMN {self.quote(stored)} {engine_types[kind]}",
                             what=f"adding the column {stored} to {dataset}.{table}")
                existing[stored] = engine_types[kind]
        return existing, False

    def table_options(self, dataset: str, table: str) -> str:
        """Text after ``CREATE TABLE t (…)``: partitioning, clustering (none by default)."""
        return ""

    def index_sql(self, dataset: str, table: str) -> str | None:
        """``CREATE INDEX`` on ``billing_period``, so that replacing one period does not scan them all."""
        return None

    def create_index(self, dataset: str, table: str) -> None:
        sql = self.index_sql(dataset, table)
        if sql:
            self.execute(sql, what=f"indexing {dataset}.{table}")

    # -- reading back ---------------------------------------------------------------------------------------
    def summarise(self, dataset: str, table: str, *, cost_column: str | Sequence[str] | None = None) -> ExportTable:
        """Rows and cost per period; ``cost_column`` may name several (CUR's and FOCUS's): the first the table has
        is summed."""
        stored = self.table_columns(dataset, table) if cost_column else {}
        candidates = (cost_column,) if isinstance(cost_column, str) else tuple(cost_column or ())
        chosen = next((c for c in candidates if self.column(c) in stored), None)
        cost = f"SUM({self.quote(self.column(chosen))})" if chosen else "NULL"
        period = self.quote(PERIOD_COLUMN)
        rows = self.execute(
            f"SELECT {period}, COUNT(*), {cost} FROM {self.qualified(dataset, table)} "
            f"GROUP BY {period} ORDER BY {period}", what=f"summarising {dataset}.{table}"
        ).rows
        return ExportTable(dataset, table, [PeriodSummary(p, int(n), None if c is None else float(c))
                                            for p, n, c in rows])

    def list_tables(self, dataset: str, *, cost_column: str | Sequence[str] | None = None) -> list[ExportTable]:
        if not self.open_dataset(dataset, create=False):
            return []
        return [self.summarise(dataset, table, cost_column=cost_column) for table in self.table_names(dataset)]

    # -- backends check -------------------------------------------------------------------------------------
    def check(self, dataset: str | None = None) -> CheckResult:
        target = self.config.describe()
        dataset = dataset or self.dataset("") or None  # the backend's own schema key, when the caller has none
        try:
            started = time.perf_counter()
            self.connect()
            self.execute("SELECT 1")
            latency = (time.perf_counter() - started) * 1000
            details = {"version": self.server_version(), **self.probe(dataset), **self.check_details()}
        except ConfigError:
            raise  # a missing or bad setting is exit 2, not an unreachable database
        except FinOpsError as exc:
            return CheckResult(ok=False, backend=self.name, target=target, error=self.scrub(exc.message))
        return CheckResult(ok=True, backend=self.name, target=target, latency_ms=round(latency, 2), details=details)

    def server_version(self) -> str:
        return str(self.execute(self.version_sql).rows[0][0])

    def check_details(self) -> dict[str, Any]:
        return {}

    def probe(self, dataset: str | None) -> dict[str, Any]:
        """Create a table where an import would write — in ``dataset`` when it exists (a role may hold rights on
        that schema only), else in a new schema — and leave nothing behind (rolled back, or dropped where DDL
        commits by itself)."""
        schemas = self.capabilities.schemas
        existing = bool(dataset) and schemas and self.schema_exists(dataset)  # type: ignore[arg-type]
        schema = dataset if existing else PROBE_SCHEMA
        table = self.qualified(schema, PROBE_TABLE) if schemas else self.quote(PROBE_TABLE)  # type: ignore[arg-type]
        steps = [] if existing or not schemas else [(f"CREATE SCHEMA {self.quote(PROBE_SCHEMA)}", "creating a schema")]
        steps.append((f"CREATE TABLE {table} ({self.quote('id')} INTEGER)", f"creating a table in {schema}"))
        if self.capabilities.transactional_ddl:
            with self.transaction(commit=False):
                for sql, what in steps:
                    self.execute(sql, what=what)
        else:
            with self._cleaned(table, drop_schema=schemas and not existing):
                for sql, what in steps:
                    self.execute(sql, what=what)
        found = {"schema_exists": dataset} if existing else {"can_create_schema": schemas}
        return {"can_create_table": True, **found}

    @contextmanager
    def _cleaned(self, table: str, *, drop_schema: bool) -> Iterator[None]:
        """Drop the probe before (a leftover of an earlier check) and always after."""
        drops = [f"DROP TABLE IF EXISTS {table}"]
        if drop_schema:
            drops.append(f"DROP SCHEMA IF EXISTS {self.quote(PROBE_SCHEMA)}")
        for sql in drops:
            self.execute(sql, what="dropping a leftover probe")
        try:
            yield
        finally:
            for sql in drops:
                with suppress(FinOpsError):
                    self.execute(sql, what="dropping the probe")
