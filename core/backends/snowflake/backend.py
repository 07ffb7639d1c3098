"""Snowflake: each file ``COPY``'d by Snowflake itself from S3 into a transient staging table, then the period
replaced in one transaction (:mod:`core.backends.snowflake.load`).

``snowflake-connector-python``, ``pyarrow`` and ``dlt`` are imported only inside methods. Snowflake commits DDL
implicitly, so the shared envelope (:meth:`core.backends.sqlengine.SqlBackend.replace_period`) creates or widens
the export table just before the transaction (``capabilities.ddl = "implicit_commit"``); inside it: ``DELETE``
the period, ``INSERT … SELECT`` from the staging tables, the state row — readers see the old version or the new
one. dlt is used only by :meth:`SnowflakeBackend.get_dlt_destination`, for your own pipelines.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.backends.base import STATE_TABLE, Capabilities, DataReader, SourceFile
from core.backends.snowflake.client import SnowflakeClient
from core.backends.snowflake.config import SnowflakeConfig
from core.backends.snowflake.load import SnowflakeStage, aws_credentials, literal
from core.backends.sqlengine import Result, SqlBackend
from core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from core.storage import ObjectStore

log = logging.getLogger(__name__)

NATIVE = Capabilities(native_schemes=frozenset({"s3"}), ddl="implicit_commit")
STREAMED = Capabilities(native_schemes=frozenset(), ddl="implicit_commit")


class SnowflakeBackend(SqlBackend):
    name = "snowflake"
    extra = "snowflake"
    dialect = "snowflake"
    capabilities = NATIVE
    config_model = SnowflakeConfig
    strategy = SnowflakeStage
    max_identifier_length = 255
    version_sql = "SELECT CURRENT_VERSION()"

    def __init__(self, config: SnowflakeConfig, *, data_dir: Path | None = None) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: SnowflakeConfig = config
        self.capabilities = NATIVE if config.native_s3 else STREAMED
        self.client = SnowflakeClient(config)
        self._endpoint_warned = False
        self._layout_checked: set[str] = set()

    # -- engine primitives ----------------------------------------------------------------------------------
    def connect(self) -> None:
        if not self.config.database:
            raise ConfigError("Snowflake needs a database ([database.snowflake] database, "
                              "OPEN_FINOPS_DATABASE_SNOWFLAKE_DATABASE).")
        self.client.connect()

    def close(self) -> None:
        self.client.close()

    def execute(self, sql: str, params: Sequence[Any] = (), *, what: str = "querying Snowflake") -> Result:
        rows, rowcount = self.client.run(sql, params, what=what)
        return Result(rows, rowcount)

    def transaction(self, *, commit: bool = True) -> AbstractContextManager[None]:
        return self.client.transaction(commit=commit)

    def scrub(self, text: str) -> str:
        return self.client.scrub(text)

    # -- what differs from the shared SQL behaviour ---------------------------------------------------------
    def native_reader(self, store: ObjectStore) -> DataReader:
        from core.backends.snowflake.load import SnowflakeDataReader

        return SnowflakeDataReader(store, self)

    # -- catalogue: the shared one (names quoted, stored and compared as written); only a schema an earlier
    # release wrote (every name upper case) is refused, before anything is created next to it
    def ensure_schema(self, dataset: str) -> None:
        self.refuse_upper_case_layout(dataset)
        super().ensure_schema(dataset)

    def open_dataset(self, dataset: str, *, create: bool = True) -> bool:
        self.refuse_upper_case_layout(dataset)
        return super().open_dataset(dataset, create=create)

    def refuse_upper_case_layout(self, dataset: str) -> None:
        """Earlier releases ran with ``QUOTED_IDENTIFIERS_IGNORE_CASE`` on, so Snowflake stored every name
        upper case (``AWS_BILLING._FINOPS_LOAD_STATE``, ``CUR2_DAILY.LINE_ITEM_UNBLENDED_COST``). Names are now
        stored as written; importing next to such a schema would load every period again into a second set of
        tables. Checked once per dataset.

        Raises:
            ConfigError: the upper-case state table exists; docs/BACKENDS.md has the renaming script.
        """
        if dataset in self._layout_checked:
            return
        rows = self.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_schema IN (?, ?) AND table_name = ?",
            [dataset, dataset.upper(), STATE_TABLE.upper()], what=f"looking for an upper-case {dataset}").rows
        if rows:
            raise ConfigError(
                f"The Snowflake schema {rows[0][0]} holds {STATE_TABLE.upper()}: it was written by a release that "
                "stored every name upper case; names are now stored as written (lower case).",
                hint="Rename its schema, tables and columns once with the script in docs/BACKENDS.md "
                     "(\"Upgrading an upper-case schema\"), then import again.")
        self._layout_checked.add(dataset)

    def check_details(self) -> dict[str, Any]:
        """Who we are and where, then whether the stage or storage integration can be read (``LIST``, or a
        ``COPY … VALIDATION_MODE`` that loads nothing)."""
        details: dict[str, Any] = {}
        for key, sql in (("user", "SELECT CURRENT_USER()"), ("role", "SELECT CURRENT_ROLE()"),
                         ("database", "SELECT CURRENT_DATABASE()")):
            details[key] = self.execute(sql, what=f"reading the current {key}").rows[0][0]
        if self.config.warehouse:
            # a warehouse that is missing, suspended without AUTO_RESUME, or not granted fails here, by name
            self.execute(f"USE WAREHOUSE {self.quote_name(self.config.warehouse)}",
                         what=f"using the warehouse {self.config.warehouse}")
            details["warehouse"] = self.config.warehouse
        if self.config.stage:
            self.execute(f"LIST @{self.config.stage} PATTERN = '^$'", what=f"listing the stage {self.config.stage}")
            details["stage"] = self.config.stage
        elif self.config.storage_integration:
            self.execute(f"DESC STORAGE INTEGRATION {self.quote_name(self.config.storage_integration)}",
                         what=f"reading the storage integration {self.config.storage_integration}")
            details["storage_integration"] = self.config.storage_integration
        return details

    def quote_name(self, name: str) -> str:
        """A configured object name (warehouse, integration) as Snowflake resolves it: unquoted names are
        upper-cased by Snowflake, so an unquoted, plain name is kept unquoted; anything else is quoted."""
        import re

        return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", name) else self.quote(name)

    def copy_sql(self, table: str, store: ObjectStore, source: SourceFile) -> str:
        """``COPY INTO`` the staging ``table`` from exactly ``source.key``, read by Snowflake.

        Location: ``@stage`` when configured (its URL must be the bucket root), else ``'s3://bucket/'`` with the
        storage integration or the credentials boto3 resolved (registered with the client to be scrubbed from
        every message). ``CREDENTIALS`` precedes ``FILES`` as Snowflake's grammar lists them.
        """
        if self.config.stage:
            location = f"@{self.config.stage}"
            auth = ""
        else:
            location = literal(f"s3://{store.bucket}/")
            endpoint = store.connection_info().endpoint_url  # type: ignore[attr-defined]
            if endpoint and not self._endpoint_warned:
                # Snowflake reads s3:// from AWS itself; an S3-compatible store needs an s3compat:// stage
                log.warning("S3 endpoint %s is not AWS: Snowflake reads s3://%s from AWS. For an S3-compatible "
                            "store, set [database.snowflake] stage to an s3compat:// stage, or native_s3 = false.",
                            endpoint, store.bucket)
                self._endpoint_warned = True
            if self.config.storage_integration:
                auth = f" STORAGE_INTEGRATION = {self.quote_name(self.config.storage_integration)}"
            else:
                credentials = aws_credentials(store)
                self.client.secrets.update(credentials.values())
                auth = (" CREDENTIALS = (" + " ".join(f"{k} = {literal(v)}" for k, v in credentials.items()) + ")"
                        if credentials else "")
        if source.format == "parquet":
            file_format = "FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE"
        else:
            # COMPRESSION is Snowflake's default AUTO: gzip is recognised by its magic bytes
            file_format = "FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1 FIELD_OPTIONALLY_ENCLOSED_BY = '\"' " \
                          "FIELD_DELIMITER = ',')"
        return (f"COPY INTO {table} FROM {location}{auth} FILES = ({literal(source.key)}) {file_format} "
                "ON_ERROR = ABORT_STATEMENT")

    # -- dlt and db copy ------------------------------------------------------------------------------------
    def dlt_credentials(self) -> dict[str, Any]:
        """dlt's snowflake credentials: its ``host`` is the account; the connector's own host/port/protocol
        (private link, emulator) reach it only through ``query``, which dlt hands to the connector."""
        c = self.config
        query: dict[str, Any] = {}
        for key in ("host", "port", "protocol"):
            if getattr(c, key) is not None:
                query[key] = getattr(c, key)
        credentials: dict[str, Any] = {
            "host": c.account or (c.host or "").split(".")[0], "username": c.user, "database": c.database,
            "warehouse": c.warehouse, "role": c.role,
        }
        if c.password is not None:
            credentials["password"] = c.password.get_secret_value()
        if c.private_key_path is not None:
            credentials["private_key_path"] = str(c.private_key_path.expanduser())
            if c.private_key_passphrase is not None:
                credentials["private_key_passphrase"] = c.private_key_passphrase.get_secret_value()
        if c.authenticator:
            credentials["authenticator"] = c.authenticator
        if query:
            credentials["query"] = query
        return {k: v for k, v in credentials.items() if v is not None}

    def get_dlt_destination(self) -> Any:
        from core.backends.dlt_stage import dlt_defaults

        dlt_defaults()
        import dlt

        return dlt.destinations.snowflake(credentials=self.dlt_credentials())

    def read_period(self, dataset: str, table: str, billing_period: str) -> pa.RecordBatchReader:
        """The connector's Arrow result (no Python object per row). VARIANT columns arrive as JSON text; the
        destination types every column like any other source."""
        import pyarrow as pa
        import snowflake.connector

        columns = self.table_columns(dataset, table)
        parts = []
        for name, type_name in columns.items():
            col = self.quote(name)
            if self.kind_of(type_name) == "json":
                col = f"TO_JSON({col})"
            parts.append(f"{col} AS {self.quote(name)}")
        period = self.quote("billing_period")
        sql = f"SELECT {', '.join(parts)} FROM {self.qualified(dataset, table)} WHERE {period} = ?"
        what = f"reading {dataset}.{table} {billing_period}"
        try:
            with self.client.connection.cursor() as cursor:
                cursor.execute(sql, [billing_period])
                result = cursor.fetch_arrow_all()
        except snowflake.connector.Error as exc:
            raise self.client.translate(exc, what) from None
        if result is None:  # no rows: the connector gives no table at all
            return pa.RecordBatchReader.from_batches(pa.schema([pa.field(n, pa.string()) for n in columns]), [])
        result = result.rename_columns(list(columns))
        return pa.RecordBatchReader.from_batches(result.schema, result.to_batches(max_chunksize=64 * 1024))


__all__ = ["SnowflakeBackend"]
