"""Google BigQuery: each period staged by a load job (or by ``LOAD DATA`` from S3 through BigQuery Omni), then
swapped in by one multi-statement transaction.

The shared envelope (:meth:`core.backends.sqlengine.SqlBackend.replace_period`) runs unchanged:

* ``staged()`` (:class:`core.backends.bigquery.load.StageSwap`), outside the transaction: the period's rows into a
  staging table of their own (load jobs and ``LOAD DATA`` cannot run inside a transaction), counted there;
* DDL just before the transaction (``capabilities.ddl = "outside"``: BigQuery refuses DDL on permanent tables
  inside one): the export table is created or widened through the tables API, month-partitioned and clustered;
* the transaction: ``BEGIN TRANSACTION`` opens a session (:class:`~core.backends.bigquery.client.BigQueryClient`),
  then ``DELETE`` of the period, ``INSERT … SELECT`` from the staging table and the state row, each a
  parameterised statement of that session, then ``COMMIT TRANSACTION``. BigQuery runs one transaction over the
  queries of a session with snapshot isolation: readers see the old version until the commit, and a failure at
  any step (or the process dying: the session's transaction is rolled back) leaves data and state as they were.

Tables: BigQuery cannot partition on the ``'YYYY-MM'`` text of ``billing_period``, so every export table has one
more column, ``billing_period_date`` (the first day of the month, a ``DATE``), and is partitioned by
``DATE_TRUNC(billing_period_date, MONTH)`` and clustered on ``line_item_usage_account_id`` and
``line_item_usage_start_date`` when the export has them. That column is the engine's storage detail: it is not
reported by :meth:`BigQueryBackend.table_columns` (nor copied by ``db copy``); every insert fills it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from core.backends.base import STATE_TABLE, Capabilities, ColumnKind, DataReader
from core.backends.bigquery.client import BigQueryClient, NotFoundError
from core.backends.bigquery.config import BigQueryConfig
from core.backends.bigquery.load import StageSwap
from core.backends.sqlengine import Result, SqlBackend
from core.backends.sqlengine.backend import INTERNAL_PREFIX, PERIOD_COLUMN
from core.backends.sqlengine.state import SqlStateManager
from core.errors import DestinationError, FinOpsError, LoadError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from core.storage import ObjectStore

log = logging.getLogger(__name__)

#: the DATE column every export table is partitioned on (first day of the billing period's month)
PARTITION_COLUMN = "billing_period_date"
#: clustering columns, in order, where the export has them
CLUSTER_COLUMNS = ("line_item_usage_account_id", "line_item_usage_start_date")
#: BigQuery's type names for the tables API (the schema of a table created or widened without DDL)
API_TYPES = {"string": "STRING", "double": "FLOAT64", "bigint": "INT64", "boolean": "BOOL",
             "timestamp": "TIMESTAMP", "date": "DATE", "json": "JSON"}


def period_date(billing_period: str) -> date:
    """``'2024-01'`` → ``2024-01-01``, the partition of that month."""
    year, month = billing_period.split("-")[:2]
    return date(int(year), int(month), 1)


class BigQueryBackend(SqlBackend):
    name = "bigquery"
    extra = "bigquery"
    dialect = "bigquery"
    # the transaction's statements are jobs of one session, so the envelope's reconciliation query inside it sees
    # the period's new rows
    capabilities = Capabilities(native_schemes=frozenset(), ddl="outside", json_text_needs_cast=True)
    config_model = BigQueryConfig
    strategy = StageSwap
    #: BigQuery column names may be 300 characters long
    max_identifier_length = 300
    version_sql = "SELECT 'BigQuery'"
    #: rows per Parquet file of a load job (each file is one load job; memory stays at one row group)
    load_chunk_rows: ClassVar[int] = 1_000_000

    def __init__(self, config: BigQueryConfig, *, data_dir: Path | None = None) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: BigQueryConfig = config
        self.client = BigQueryClient(config)
        if config.aws_connection:  # BigQuery reads S3 itself (LOAD DATA … WITH CONNECTION)
            self.capabilities = Capabilities(native_schemes=frozenset({"s3"}), ddl="outside",
                                             json_text_needs_cast=True)

    # -- engine primitives ----------------------------------------------------------------------------------
    def connect(self) -> None:
        self.client.connect()

    def close(self) -> None:
        self.client.close()

    def execute(self, sql: str, params: Sequence[Any] = (), *, what: str = "querying BigQuery") -> Result:
        rows, affected = self.client.run(sql, params, what=what)
        return Result(rows, affected)

    def transaction(self, *, commit: bool = True) -> AbstractContextManager[None]:
        return self.client.transaction(commit=commit)

    # -- names ----------------------------------------------------------------------------------------------
    @property
    def project(self) -> str:
        return self.client.project

    def qualified(self, dataset: str, table: str) -> str:
        """``project.dataset.table``: a job's default project is not necessarily the data's."""
        return f"{self.quote(self.project)}.{self.quote(dataset)}.{self.quote(table)}"

    def table_ref(self, dataset: str, table: str) -> str:
        """The same name for the tables API (``project.dataset.table``, unquoted)."""
        return f"{self.project}.{dataset}.{table}"

    def information_schema(self, dataset: str, view: str) -> str:
        return f"{self.quote(self.project)}.{self.quote(dataset)}.INFORMATION_SCHEMA.{view}"

    def state_manager(self, dataset: str) -> SqlStateManager:
        """The shared state store, its table named with the project too (``project.dataset._finops_load_state``)."""
        manager = super().state_manager(dataset)
        manager.table = self.qualified(dataset, STATE_TABLE)
        return manager

    # -- catalogue ------------------------------------------------------------------------------------------
    def schema_exists(self, dataset: str) -> bool:
        try:
            self.client.get_dataset(dataset, what=f"looking up the dataset {dataset}")
        except NotFoundError:
            return False
        return True

    def ensure_schema(self, dataset: str) -> None:
        """``CREATE SCHEMA IF NOT EXISTS`` in the configured location, unless the dataset exists."""
        if not self.schema_exists(dataset):
            self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.quote(self.project)}.{self.quote(dataset)} "
                         f"OPTIONS (location = {_literal(self.config.location)})", what=f"creating the dataset {dataset}")

    def table_columns(self, dataset: str, table: str) -> dict[str, str]:
        """Our columns (``billing_period_date`` left out), in table order; empty when the table or its dataset
        does not exist."""
        try:
            rows = self.execute(
                f"SELECT column_name, data_type FROM {self.information_schema(dataset, 'COLUMNS')} "
                "WHERE table_name = ? ORDER BY ordinal_position", [table], what=f"reading the columns of {table}",
            ).rows
        except NotFoundError:
            return {}
        return {name: type_name for name, type_name in rows if name != PARTITION_COLUMN}

    def table_names(self, dataset: str) -> list[str]:
        """As the shared catalogue: base tables with a ``billing_period`` column (no view), ours excepted."""
        try:
            rows = self.execute(
                f"SELECT c.table_name FROM {self.information_schema(dataset, 'COLUMNS')} AS c "
                f"JOIN {self.information_schema(dataset, 'TABLES')} AS t ON t.table_name = c.table_name "
                "WHERE c.column_name = ? AND t.table_type = ?",
                [PERIOD_COLUMN, "BASE TABLE"], what=f"listing the tables of {dataset}",
            ).rows
        except NotFoundError:
            return []
        return sorted(table for (table,) in rows if not table.startswith(INTERNAL_PREFIX))

    def view_names(self, dataset: str) -> list[str]:
        """Through the tables API (a dataset's ``INFORMATION_SCHEMA.VIEWS`` costs a query job)."""
        try:
            tables = self.client.list_tables(dataset, what=f"listing the views of {dataset}")
        except NotFoundError:
            return []
        return sorted(name for name, kind in tables if kind == "VIEW")

    # -- tables (DDL cannot run in the transaction: it runs just before) -------------------------------------
    def prepare_table(
        self, dataset: str, table: str, kinds: Mapping[str, ColumnKind], *, index: bool
    ) -> tuple[dict[str, str], bool]:
        """Create the export table partitioned by month and clustered (through the tables API), or add the
        columns this version brings with one ``ALTER TABLE`` (BigQuery allows 5 metadata updates of a table per
        10 s: one per load, not one per new column)."""
        from google.cloud import bigquery

        existing = self.table_columns(dataset, table)
        ref = self.table_ref(dataset, table)
        if not existing:
            stored = {self.column(n): k for n, k in kinds.items()}
            schema = [bigquery.SchemaField(n, API_TYPES[k]) for n, k in stored.items()]
            schema.append(bigquery.SchemaField(PARTITION_COLUMN, "DATE"))
            spec = bigquery.Table(ref, schema=schema)
            spec.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.MONTH,
                                                               field=PARTITION_COLUMN)
            clustering = [c for c in CLUSTER_COLUMNS if c in stored]
            if clustering:
                spec.clustering_fields = clustering
            self.client.create_table(spec, what=f"creating {dataset}.{table}")
            return {n: self.types[k] for n, k in stored.items()}, True
        added = {self.column(n): k for n, k in kinds.items() if self.column(n) not in existing}
        if added:
            log.info("%s.%s: new columns %s", dataset, table, ", ".join(added))
            clauses = ", ".join(f"ADD COLUMN {self.quote(n)} {self.types[k]}" for n, k in added.items())
            self.execute(f"ALTER TABLE {self.qualified(dataset, table)} {clauses}",
                         what=f"adding columns to {dataset}.{table}")
            existing.update({n: self.types[k] for n, k in added.items()})
        return existing, False

    # -- backends check -------------------------------------------------------------------------------------
    def server_version(self) -> str:
        return "BigQuery"

    def probe(self, dataset: str | None) -> dict[str, Any]:
        """The dataset an import uses: it exists in the configured location (a table is created in it and
        dropped), or this account may create datasets (one is created there and deleted); the AWS connection
        exists when one is set."""
        details: dict[str, Any] = {"project": self.project, "location": self.config.location}
        target = dataset or "aws_billing"
        try:
            found = self.client.get_dataset(target, what=f"looking up the dataset {target}")
        except NotFoundError:
            found = None
        probe_dataset = target if found is not None else f"_finops_check_{_suffix()}"
        if found is not None:
            if str(found.location).lower() != self.config.location.lower():
                raise DestinationError(
                    f"The dataset {self.project}.{target} is in {found.location}, not in the configured location "
                    f"{self.config.location}: set location = \"{found.location}\" or use another dataset.")
            details["schema_exists"] = target
        else:
            self.ensure_schema(probe_dataset)
            details["can_create_schema"] = True
        table = self.qualified(probe_dataset, f"_finops_check_probe_{_suffix()}")
        try:
            self.execute(f"CREATE TABLE {table} ({self.quote('id')} INT64)",
                         what=f"creating a table in {probe_dataset}")
            details["can_create_table"] = True
        finally:
            with suppress(FinOpsError):
                self.execute(f"DROP TABLE IF EXISTS {table}", what="dropping the probe")
            if found is None:
                with suppress(FinOpsError):
                    self.client.delete_dataset(probe_dataset, what="dropping the probe dataset")
        if self.config.aws_connection:
            details["aws_connection"] = self.check_connection()
        return details

    def check_connection(self) -> str:
        """The connection's full name when it exists and this account may use it (the BigQuery Connection API,
        ``GET https://bigqueryconnection.googleapis.com/v1/<name>``, with the backend's credentials).

        Raises:
            DestinationError: it does not exist, or may not be seen.
        """
        name = self.connection_name()
        response = self.connection_api_get(name)
        if response.status_code == 404:
            raise DestinationError(f"The BigQuery connection {name} does not exist (aws_connection).")
        if response.status_code >= 400:
            raise DestinationError(f"Cannot use the BigQuery connection {name}: HTTP {response.status_code} "
                                   f"{_api_message(response)}")
        return name

    def connection_api_get(self, name: str) -> Any:
        from google.auth.transport.requests import AuthorizedSession

        with self.client.translated(f"looking up the connection {name}"):
            session = AuthorizedSession(self.client.client._credentials)
            return session.get(f"https://bigqueryconnection.googleapis.com/v1/{name}", timeout=30)

    def connection_name(self) -> str:
        """``projects/P/locations/L/connections/C`` from ``[project.]location.connection_id``."""
        parts = (self.config.aws_connection or "").split(".")
        if len(parts) == 3:
            project, location, connection = parts
        elif len(parts) == 2:
            project, (location, connection) = self.project, parts
        else:
            project, location, connection = self.project, self.config.location, parts[0]
        return f"projects/{project}/locations/{location}/connections/{connection}"

    def connection_sql(self) -> str:
        """The connection as ``WITH CONNECTION`` names it: `project.location.connection_id`."""
        name = self.connection_name().split("/")
        return self.quote(f"{name[1]}.{name[3]}.{name[5]}")

    # -- reading --------------------------------------------------------------------------------------------
    def native_reader(self, store: ObjectStore) -> DataReader:
        from core.backends.bigquery.load import OmniReader

        return OmniReader(store)

    def read_period(self, dataset: str, table: str, billing_period: str) -> pa.RecordBatchReader:
        """Pages of the query result as Arrow batches (the partition of that month only). JSON arrives as its
        text, timestamps as UTC."""
        import pyarrow as pa

        from core.backends.readers import ARROW_TYPES

        columns = self.table_columns(dataset, table)
        schema = pa.schema([pa.field(name, ARROW_TYPES.get(self.kind_of(t), pa.string())) for name, t in columns.items()])
        select = ", ".join(self.quote(n) for n in columns)
        job = self.client.query(
            f"SELECT {select} FROM {self.qualified(dataset, table)} WHERE {self.quote(PARTITION_COLUMN)} = ? "
            f"AND {self.quote(PERIOD_COLUMN)} = ?", [period_date(billing_period), billing_period],
            what=f"reading {table} {billing_period}")

        def batches() -> Any:
            with self.client.translated(f"reading {table} {billing_period}"):
                for batch in job.result(page_size=50_000).to_arrow_iterable():
                    arrays = [batch.column(i).cast(field.type) if batch.column(i).type != field.type
                              else batch.column(i) for i, field in enumerate(schema)]
                    yield pa.RecordBatch.from_arrays(arrays, schema=schema)

        return pa.RecordBatchReader.from_batches(schema, batches())

    def get_dlt_destination(self) -> Any:
        """dlt's ``bigquery`` destination on the same project and location, with the same credentials."""
        from core.backends.dlt_stage import dlt_defaults

        dlt_defaults()
        import dlt
        from dlt.common.configuration.specs.gcp_credentials import GcpDefaultCredentials
        from dlt.sources.credentials import GcpServiceAccountCredentials
        from google.oauth2.service_account import Credentials as ServiceAccount

        self.connect()
        native = self.client.client._credentials  # the ones this backend resolved (key file, ADC, anonymous)
        credentials = GcpServiceAccountCredentials()
        credentials.project_id = self.project
        if isinstance(native, ServiceAccount):
            credentials.parse_native_representation(native)
        else:  # application-default (user, workload identity) or anonymous (an emulator): used as they are
            GcpDefaultCredentials.parse_native_representation(credentials, native)
        return dlt.destinations.bigquery(credentials=credentials, location=self.config.location)


def _literal(text: str) -> str:
    """A string literal for the few places BigQuery takes no parameter (DDL ``OPTIONS``); settings only."""
    from sqlglot import exp

    return exp.Literal.string(text).sql(dialect="bigquery")


def _api_message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.reason or ""


def _suffix() -> str:
    import uuid

    return uuid.uuid4().hex[:8]


__all__ = ["PARTITION_COLUMN", "BigQueryBackend", "LoadError", "period_date"]
