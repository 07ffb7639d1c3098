"""The Snowflake backend offline: settings, connection parameters, dlt credentials, secrets kept out of messages,
and the exact SQL an import sends (sqlmesh's ``to_sql_calls`` style) — the offline coverage of what the emulator
cannot run: ``COPY`` from an external stage or a storage integration, the ``CREDENTIALS`` of a native ``COPY``,
the CSV file format, ``LIST @stage`` and ``DESC STORAGE INTEGRATION`` in ``backends check``.

The backend runs with a scripted client in place of the connector: every statement passes through
``SnowflakeBackend.execute`` (the one choke point), is recorded, and gets the answer a Snowflake server gives
(catalogue rows, the count of a staging table, the rows an INSERT inserted).
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from core.backends.base import FilePlan, LoadRecord, PeriodLoad
from core.backends.snowflake import SnowflakeConfig
from core.backends.snowflake.backend import SnowflakeBackend
from core.backends.snowflake.load import SnowflakeDataReader, literal
from core.errors import ConfigError, LoadError
from core.storage import LocalStore, S3ConnectionInfo
from tests.integration.backend_targets import HEADER, line, write_csv_gz
from vendors.aws.columns import column_specs

pytestmark = pytest.mark.snowflake

KEY_ID, SECRET, TOKEN = "AKIAEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYSECRET", "FQoGZXIvYXdzTOKEN"


def normalise(sql: str) -> str:
    return " ".join(sql.split())


class ScriptedClient:
    """Stands for :class:`core.backends.snowflake.client.SnowflakeClient`: records, answers like Snowflake."""

    def __init__(self, staged_rows: int = 2, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.tables: dict[str, list[tuple[str, str]]] = {}
        self.staged_rows = staged_rows
        self.fail_on = fail_on
        self.secrets: set[str] = set()

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "********")
        return text

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def run(self, sql: str, params: Any = (), *, what: str) -> tuple[list[tuple[Any, ...]], int]:
        sql = normalise(sql)
        values = ["<now>" if isinstance(v, datetime) else v for v in params]
        self.calls.append((sql, values))
        if self.fail_on and self.fail_on in sql:
            raise LoadError(self.scrub(f"Snowflake error while {what}: 100038: rejected {sql}"))
        if sql.startswith("SELECT column_name, data_type FROM information_schema.columns"):
            rows = self.tables.get(values[1], [])
            return rows, len(rows)
        if sql.startswith("SELECT COUNT(*)") and ("_finops_stage_" in sql or 'WHERE "billing_period" = ?' in sql):
            return [(self.staged_rows,)], 1
        if sql.startswith(("SELECT COUNT(*)", "SELECT 1 FROM information_schema.schemata")):
            return [(0,)] if sql.startswith("SELECT COUNT(*)") else [], 1
        if sql.startswith("INSERT INTO") and "_finops_stage_" in sql:
            return [(self.staged_rows,)], self.staged_rows
        return [], 0

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[None]:
        self.calls.append(("<autocommit off>", []))
        try:
            yield
        except BaseException:
            self.calls.append(("<rollback>", []))
            raise
        self.calls.append(("<commit>" if commit else "<rollback>", []))


class FakeS3(LocalStore):
    """A local folder that says it is the bucket ``billing``, with the credentials boto3 would have resolved."""

    scheme = "s3"
    bucket = "billing"

    def connection_info(self) -> S3ConnectionInfo:
        return S3ConnectionInfo("us-east-1", KEY_ID, SecretStr(SECRET), SecretStr(TOKEN), None)


def backend(client: ScriptedClient | None = None, **settings: Any) -> SnowflakeBackend:
    config = SnowflakeConfig(**{"account": "myorg-acct", "user": "loader", "database": "FINOPS", **settings})
    made = SnowflakeBackend(config)
    made.client = client or ScriptedClient()  # type: ignore[assignment]
    return made


def period(b: SnowflakeBackend, store: Any, keys: list[str], period: str = "2024-01") -> PeriodLoad:
    reader = b.data_reader(store)
    plans = []
    for key in keys:
        source = reader.describe(key)
        plans.append(FilePlan(source, column_specs(source, {}), (("billing_period", period),)))
    record = LoadRecord("aws", "cur-test", period, "v1", "v1", "s3://billing/m.json", file_count=len(keys))
    return PeriodLoad("aws_billing", "cur_test", period, plans, record, reader)


def parquet_file(root: Path, key: str) -> str:
    table = pa.table({
        "identity_line_item_id": ["a", "b"], "line_item_unblended_cost": [1.25, 2.5],
        "product": pa.array([[("region", "eu")], None], pa.map_(pa.string(), pa.string())),
    })
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return key


STATE = '"aws_billing"."_finops_load_state"'

# ----------------------------------------------------------------------------------------------- settings


def test_settings_secrets_only_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import Config

    toml = tmp_path / "config.toml"
    toml.write_text('[database]\nbackend = "snowflake"\n[database.snowflake]\naccount = "org-acct"\n'
                    'user = "loader"\nwarehouse = "LOAD_WH"\ndatabase = "FINOPS"\npassword = "in-the-file"\n')
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", "from-env")
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", "phrase")
    monkeypatch.setenv("OPEN_FINOPS_DATABASE_SNOWFLAKE_NATIVE_S3", "false")
    config = Config.load(toml)
    settings = config.database.snowflake
    assert (settings.account, settings.user, settings.warehouse, settings.native_s3) == (
        "org-acct", "loader", "LOAD_WH", False)
    assert settings.password.get_secret_value() == "from-env"  # type: ignore[union-attr]
    assert settings.private_key_passphrase.get_secret_value() == "phrase"  # type: ignore[union-attr]
    assert "from-env" not in settings.describe() and "loader" in settings.describe()


def test_connect_params_password_host_port_protocol() -> None:
    b = backend(password=SecretStr("pw"), host="127.0.0.1", port=8080, protocol="http", role="LOADER",
                warehouse="WH")
    from core.backends.snowflake.client import SnowflakeClient

    real = SnowflakeClient(b.config).connect_params()
    assert real["account"] == "myorg-acct" and real["password"] == "pw" and real["paramstyle"] == "qmark"
    assert (real["host"], real["port"], real["protocol"], real["role"], real["warehouse"]) == (
        "127.0.0.1", 8080, "http", "LOADER", "WH")
    assert real["session_parameters"]["TIMEZONE"] == "UTC"
    # names are stored as written (BilledCost, billing_period), whatever the account's default says
    assert real["session_parameters"]["QUOTED_IDENTIFIERS_IGNORE_CASE"] is False


def test_connect_params_key_pair(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from core.backends.snowflake.client import SnowflakeClient

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"phrase"))
    path = tmp_path / "rsa_key.p8"
    path.write_bytes(pem)
    config = SnowflakeConfig(account="a", user="u", private_key_path=path, private_key_passphrase=SecretStr("phrase"))
    params = SnowflakeClient(config).connect_params()
    assert params["authenticator"] == "SNOWFLAKE_JWT" and "password" not in params
    assert serialization.load_der_private_key(params["private_key"], None).key_size == 2048
    wrong = SnowflakeConfig(account="a", user="u", private_key_path=path, private_key_passphrase=SecretStr("nope"))
    with pytest.raises(ConfigError, match="Cannot read the Snowflake private key") as error:
        SnowflakeClient(wrong).connect_params()
    assert "nope" not in str(error.value)


def test_missing_account_or_database_is_a_configuration_error() -> None:
    from core.backends.snowflake.client import SnowflakeClient

    with pytest.raises(ConfigError, match="account and user"):
        SnowflakeClient(SnowflakeConfig(user="u")).connect_params()
    with pytest.raises(ConfigError, match="needs a database"):
        SnowflakeBackend(SnowflakeConfig(account="a", user="u")).connect()


def test_dlt_credentials_carry_the_connector_host_through_query() -> None:
    b = backend(password=SecretStr("pw"), host="127.0.0.1", port=8080, protocol="http", warehouse="WH", role="R")
    assert b.dlt_credentials() == {
        "host": "myorg-acct", "username": "loader", "database": "FINOPS", "warehouse": "WH", "role": "R",
        "password": "pw", "query": {"host": "127.0.0.1", "port": 8080, "protocol": "http"},
    }
    destination = b.get_dlt_destination()
    assert destination.destination_name == "snowflake"


def test_capabilities_follow_native_s3(tmp_path: Path) -> None:
    assert backend().capabilities.native_schemes == frozenset({"s3"})
    assert backend().capabilities.ddl == "implicit_commit"
    assert backend(native_s3=False).capabilities.native_schemes == frozenset()
    assert isinstance(backend().data_reader(FakeS3(tmp_path)), SnowflakeDataReader)
    assert not isinstance(backend(native_s3=False).data_reader(FakeS3(tmp_path)), SnowflakeDataReader)
    assert not isinstance(backend().data_reader(LocalStore(tmp_path)), SnowflakeDataReader)


def test_literal_escapes_quotes_and_backslashes() -> None:
    assert literal("a'b\\c") == "'a''b\\\\c'"


# ------------------------------------------------------------------------------------------ native reader


def test_reader_plans_from_header_and_footer_only(tmp_path: Path) -> None:
    csv_key = write_csv_gz(tmp_path, "p/a.csv.gz", [line(i, "1.5") for i in range(2000)])
    pq_key = parquet_file(tmp_path, "p/b.parquet")
    reader = backend().data_reader(FakeS3(tmp_path))
    assert [c.name for c in reader.describe(csv_key).columns] == HEADER
    parquet = reader.describe(pq_key)
    assert [(c.name, c.kind) for c in parquet.columns] == [
        ("identity_line_item_id", "string"), ("line_item_unblended_cost", "double"), ("product", "map")]
    (tmp_path / "p/bad.parquet").write_bytes(b"PAR1" + b"x" * 40)
    with pytest.raises(LoadError, match="not a valid parquet"):
        reader.describe("p/bad.parquet")


# ----------------------------------------------------------------------------------------- exact SQL


def test_native_csv_import_exact_sql(tmp_path: Path) -> None:
    key = write_csv_gz(tmp_path, "cur/a.csv.gz", [line(1, "1.5"), line(2, "2.5")])
    client = ScriptedClient(staged_rows=2)
    b = backend(client)
    rows = b.replace_period(period(b, FakeS3(tmp_path), [key]))
    assert rows == 2
    stage = '"aws_billing"."_finops_stage_cur_test_0"'
    target = '"aws_billing"."cur_test"'
    sqls = [sql for sql, _ in client.calls]
    assert client.calls[:3] == [
        # once per dataset: no upper-case layout of an earlier release beside it (names are stored as written)
        ("SELECT table_schema FROM information_schema.tables WHERE table_schema IN (?, ?) AND table_name = ?",
         ["aws_billing", "AWS_BILLING", "_FINOPS_LOAD_STATE"]),
        ("SELECT 1 FROM information_schema.schemata WHERE schema_name = ?", ["aws_billing"]),
        ('CREATE SCHEMA IF NOT EXISTS "aws_billing"', []),
    ]
    assert sqls[3:7] == [
        (f'CREATE OR REPLACE TRANSIENT TABLE {stage} ("c_0" VARCHAR, "c_1" VARCHAR, "c_2" VARCHAR, "c_3" VARCHAR, '
        '"c_4" VARCHAR)'),
        (f"COPY INTO {stage} FROM 's3://billing/' CREDENTIALS = (AWS_KEY_ID = '{KEY_ID}' AWS_SECRET_KEY = "
        f"'{SECRET}' AWS_TOKEN = '{TOKEN}') FILES = ('cur/a.csv.gz') FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1 "
        "FIELD_OPTIONALLY_ENCLOSED_BY = '\"' FIELD_DELIMITER = ',') ON_ERROR = ABORT_STATEMENT"),
        f"SELECT COUNT(*) FROM {stage}",
        "SELECT 1 FROM information_schema.schemata WHERE schema_name = ?",
    ]
    create = sqls.index("<autocommit off>") - 1
    assert sqls[create] == (
        f'CREATE TABLE {target} ("billing_period" VARCHAR, "identity_line_item_id" VARCHAR, '
        '"line_item_usage_account_id" VARCHAR, "line_item_unblended_cost" DOUBLE, '
        '"line_item_usage_start_date" TIMESTAMPTZ, "product_product_name" VARCHAR)')
    start = sqls.index("<autocommit off>")
    assert sqls[start + 1: start + 3] == [
        f'DELETE FROM {target} WHERE "billing_period" = ?',
        (f'INSERT INTO {target} ("identity_line_item_id", "line_item_usage_account_id", "line_item_unblended_cost", '
        '"line_item_usage_start_date", "product_product_name", "billing_period") SELECT NULLIF("c_0", \'\'), '
        'NULLIF("c_1", \'\'), CAST(NULLIF(TRIM("c_2"), \'\') AS DOUBLE), '
        'CAST(NULLIF(TRIM("c_3"), \'\') AS TIMESTAMPTZ), NULLIF("c_4", \'\'), ? '
        f"FROM {stage}"),
    ]
    assert client.calls[start + 2][1] == ["2024-01"]
    assert sqls[-2:] == ["<commit>", f"DROP TABLE IF EXISTS {stage}"]
    assert all(sql.startswith(("SELECT", "UPDATE", "INSERT INTO " + STATE)) for sql in
               sqls[start + 3: -2])  # the state row, inside the transaction


def test_native_parquet_with_a_stage_exact_sql(tmp_path: Path) -> None:
    key = parquet_file(tmp_path, "exports/cur2/data/BILLING_PERIOD=2024-01/part-0.parquet")
    client = ScriptedClient(staged_rows=2)
    b = backend(client, stage="FINOPS.RAW.CUR_STAGE")
    b.replace_period(period(b, FakeS3(tmp_path), [key]))
    stage = '"aws_billing"."_finops_stage_cur_test_0"'
    sqls = [sql for sql, _ in client.calls]
    assert f'CREATE OR REPLACE TRANSIENT TABLE {stage} ("identity_line_item_id" VARCHAR, ' \
           '"line_item_unblended_cost" DOUBLE, "product" VARIANT)' in sqls
    assert (f"COPY INTO {stage} FROM @FINOPS.RAW.CUR_STAGE FILES = ('{key}') FILE_FORMAT = (TYPE = PARQUET) "
            "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE ON_ERROR = ABORT_STATEMENT") in sqls
    assert ('INSERT INTO "aws_billing"."cur_test" ("identity_line_item_id", "line_item_unblended_cost", "product", '
            '"billing_period") SELECT NULLIF("identity_line_item_id", \'\'), CAST("line_item_unblended_cost" AS '
            f'DOUBLE), "product", ? FROM {stage}') in sqls
    assert not any(SECRET in sql for sql in sqls)


def test_native_copy_through_a_storage_integration(tmp_path: Path) -> None:
    key = parquet_file(tmp_path, "p/a.parquet")
    client = ScriptedClient()
    b = backend(client, storage_integration="FINOPS_S3")
    b.replace_period(period(b, FakeS3(tmp_path), [key]))
    copy = next(sql for sql, _ in client.calls if sql.startswith("COPY INTO"))
    assert copy.startswith("COPY INTO \"aws_billing\".\"_finops_stage_cur_test_0\" FROM 's3://billing/' "
                           "STORAGE_INTEGRATION = FINOPS_S3 FILES = ('p/a.parquet')")
    assert SECRET not in copy and KEY_ID not in copy


def test_ddl_runs_before_the_transaction_and_drift_adds_columns(tmp_path: Path) -> None:
    key = write_csv_gz(tmp_path, "p/a.csv.gz", [line(1, "1.5")], header=[*HEADER, "lineItem/NewThing"])
    client = ScriptedClient(staged_rows=1)
    client.tables["cur_test"] = [("billing_period", "TEXT"), ("identity_line_item_id", "TEXT"),
                                 ("line_item_usage_account_id", "TEXT"), ("line_item_unblended_cost", "FLOAT"),
                                 ("line_item_usage_start_date", "TIMESTAMP_TZ"), ("product_product_name", "TEXT")]
    b = backend(client)
    b.replace_period(period(b, FakeS3(tmp_path), [key]))
    sqls = [sql for sql, _ in client.calls]
    alter = sqls.index('ALTER TABLE "aws_billing"."cur_test" ADD COLUMN "line_item_new_thing" VARCHAR')
    assert alter < sqls.index("<autocommit off>")
    insert = next(sql for sql in sqls if sql.startswith('INSERT INTO "aws_billing"."cur_test"'))
    assert 'CAST(NULLIF(TRIM("c_3"), \'\') AS TIMESTAMP_TZ)' in insert  # the type the catalogue reports


def test_failed_insert_rolls_back_and_drops_the_stage_and_scrubs_secrets(tmp_path: Path) -> None:
    key = write_csv_gz(tmp_path, "p/a.csv.gz", [line(1, "1.5")])
    client = ScriptedClient(staged_rows=1, fail_on="COPY INTO")
    b = backend(client)
    with pytest.raises(LoadError) as error:
        b.replace_period(period(b, FakeS3(tmp_path), [key]))
    assert SECRET not in error.value.message and TOKEN not in error.value.message
    assert "********" in error.value.message
    assert client.calls[-1][0] == 'DROP TABLE IF EXISTS "aws_billing"."_finops_stage_cur_test_0"'
    client = ScriptedClient(staged_rows=1, fail_on='INSERT INTO "aws_billing"."cur_test"')
    b = backend(client)
    with pytest.raises(LoadError):
        b.replace_period(period(b, FakeS3(tmp_path), [key]))
    sqls = [sql for sql, _ in client.calls]
    assert sqls[-2:] == ["<rollback>", 'DROP TABLE IF EXISTS "aws_billing"."_finops_stage_cur_test_0"']


def test_streamed_fallback_binds_text_into_the_staging_table(tmp_path: Path) -> None:
    key = write_csv_gz(tmp_path, "p/a.csv.gz", [line(1, "1.5"), line(2, "2.5")])
    client = ScriptedClient(staged_rows=2)
    b = backend(client, native_s3=False)
    b.replace_period(period(b, FakeS3(tmp_path), [key]))
    sqls = [sql for sql, _ in client.calls]
    stage = '"aws_billing"."_finops_stage_cur_test_0"'
    insert = (f'INSERT INTO {stage} ("c_0", "c_1", "c_2", "c_3", "c_4") SELECT "VALUE"[0]::VARCHAR, '
              '"VALUE"[1]::VARCHAR, "VALUE"[2]::VARCHAR, "VALUE"[3]::VARCHAR, "VALUE"[4]::VARCHAR '
              "FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?)))")
    assert insert in sqls
    document = json.loads(client.calls[sqls.index(insert)][1][0])
    assert document == [["li-1", "001234567890", "1.5", "2024-01-01T00:00:00.000000Z", "product 1"],
                        ["li-2", "001234567890", "2.5", "2024-01-01T00:00:00.000000Z", "product 2"]]
    assert not any(sql.startswith("COPY") for sql in sqls)


def test_check_lists_the_stage_or_describes_the_integration() -> None:
    client = ScriptedClient()
    client.run = _answer_everything(client)  # type: ignore[method-assign]
    b = backend(client, stage="RAW.CUR_STAGE", warehouse="LOAD_WH")
    result = b.check("aws_billing")
    assert result.ok, result.error
    sqls = [sql for sql, _ in client.calls]
    assert "USE WAREHOUSE LOAD_WH" in sqls and "LIST @RAW.CUR_STAGE PATTERN = '^$'" in sqls
    client = ScriptedClient()
    client.run = _answer_everything(client)  # type: ignore[method-assign]
    backend(client, storage_integration="finops-s3").check()
    assert 'DESC STORAGE INTEGRATION "finops-s3"' in [sql for sql, _ in client.calls]


def test_check_reports_the_reason_of_a_failing_step() -> None:
    client = ScriptedClient(fail_on="USE WAREHOUSE")
    client.run = _answer_everything(client)  # type: ignore[method-assign]
    result = backend(client, warehouse="GONE_WH").check()
    assert not result.ok and "using the warehouse GONE_WH" in (result.error or "")


def _answer_everything(client: ScriptedClient) -> Any:
    original = ScriptedClient.run

    def run(sql: str, params: Any = (), *, what: str) -> tuple[list[tuple[Any, ...]], int]:
        rows, count = original(client, sql, params, what=what)
        return (rows or [("value",)]), count

    return run


def test_gzip_header_longer_than_one_range(tmp_path: Path) -> None:
    header = [f"resourceTags/user:tag{i:05d}" for i in range(4000)]
    path = tmp_path / "p" / "wide.csv.gz"
    path.parent.mkdir(parents=True)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as gz:
        gz.write((",".join(header) + "\n" + ",".join("x" for _ in header) + "\n").encode())
    path.write_bytes(buffer.getvalue())
    source = backend().data_reader(FakeS3(tmp_path)).describe("p/wide.csv.gz")
    assert [c.name for c in source.columns] == header


def test_a_non_aws_endpoint_without_a_stage_is_warned_about_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Compatible(FakeS3):
        def connection_info(self) -> S3ConnectionInfo:
            return S3ConnectionInfo("us-east-1", KEY_ID, SecretStr(SECRET), None, "https://minio.internal:9000")

    key = write_csv_gz(tmp_path, "p/a.csv.gz", [line(1, "1.5")])
    b = backend(ScriptedClient(staged_rows=1))
    with caplog.at_level("WARNING", logger="core.backends.snowflake.backend"):
        b.replace_period(period(b, Compatible(tmp_path), [key]))
        b.replace_period(period(b, Compatible(tmp_path), [key]))
    warned = [r.getMessage() for r in caplog.records if "is not AWS" in r.getMessage()]
    assert len(warned) == 1 and "s3compat://" in warned[0] and SECRET not in warned[0]
