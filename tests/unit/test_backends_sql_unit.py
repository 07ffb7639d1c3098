"""PostgreSQL and generic SQL backends with nothing running: settings, secrets, registry, names, SQL text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.backends import dlt_stage, factory
from core.backends.base import FilePlan, SourceColumn, SourceFile
from core.backends.postgresql import PostgreSQLBackend
from core.backends.postgresql.config import PostgreSQLConfig
from core.backends.sql import GenericSQLBackend
from core.backends.sql.config import GenericSQLConfig, mask_url
from core.backends.sql.dialects import bind_value, url_dialect
from core.backends.sqlengine.names import fit_identifier
from core.backends.sqlengine.params import qmark_to_format, qmark_to_named
from core.config import Config
from core.errors import ConfigError, MissingExtraError
from vendors.aws.columns import column_specs

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, body: str = "", **environ: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(body)
    return Config.load(path, environ=environ)


# --------------------------------------------------------------------------------------- settings & secrets


def test_postgresql_defaults_and_describe() -> None:
    config = PostgreSQLConfig()
    assert (config.host, config.port, config.database, config.schema, config.user, config.sslmode) == (
        "localhost", 5432, "finops", None, "finops", "prefer")
    config = PostgreSQLConfig(host="db.example", port=6543, database="billing", user="loader",
                              password=SecretStr("hunter2"))
    assert config.describe() == "postgresql://loader@db.example:6543/billing"
    assert "hunter2" not in repr(config) and "hunter2" not in config.describe()


def test_postgresql_settings_from_env(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "[database.postgresql]\nport = 5433\ndatabase = \"from_file\"\n",
        OPEN_FINOPS_DATABASE_BACKEND="postgres",
        OPEN_FINOPS_DATABASE_POSTGRESQL_HOST="pg.internal",
        OPEN_FINOPS_DATABASE_POSTGRESQL_SCHEMA="billing",
        POSTGRESQL_PASSWORD="s3cret-value",
    )
    pg = config.database.postgresql
    assert (pg.host, pg.port, pg.database, pg.schema) == ("pg.internal", 5433, "from_file", "billing")
    assert pg.password is not None and pg.password.get_secret_value() == "s3cret-value"
    shown = {s.path: s for s in config.settings()}
    assert shown["database.postgresql.password"].value == "********"
    assert shown["database.postgresql.password"].source == "env POSTGRESQL_PASSWORD"
    assert shown["database.postgresql.host"].source == "env OPEN_FINOPS_DATABASE_POSTGRESQL_HOST"
    assert "s3cret-value" not in repr(config.settings())
    backend = factory.create_backend(config.database)
    assert isinstance(backend, PostgreSQLBackend) and backend.config is pg


def test_postgresql_password_only_from_its_env_name(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = _config(
        tmp_path,
        '[database.postgresql]\npassword = "in-the-file"\n',
        OPEN_FINOPS_DATABASE_POSTGRESQL_PASSWORD="prefixed-name",
    )
    assert config.database.postgresql.password is None
    assert "POSTGRESQL_PASSWORD" in caplog.text and "in-the-file" not in caplog.text


def test_sql_credentials_from_env_or_file_and_masked(tmp_path: Path) -> None:
    url = "mysql+pymysql://loader:p%40ss-word@db.example:3306/billing"
    config = _config(tmp_path, OPEN_FINOPS_DATABASE_SQL_CREDENTIALS=url)
    sql = config.database.sql
    assert sql.credentials is not None and sql.credentials.get_secret_value() == url
    assert sql.destination == "sqlalchemy"
    assert sql.describe() == "mysql+pymysql://loader:***@db.example:3306/billing"
    shown = {s.path: s for s in config.settings()}
    assert shown["database.sql.credentials"].value == "********"
    assert shown["database.sql.credentials"].source == "env OPEN_FINOPS_DATABASE_SQL_CREDENTIALS"
    assert "p%40ss-word" not in repr(config.settings())
    from_file = _config(tmp_path, '[database.sql]\ncredentials = "sqlite:////tmp/x/finops.db"\n')
    assert from_file.database.sql.url() == "sqlite:////tmp/x/finops.db"
    assert {s.path: s.value for s in from_file.settings()}["database.sql.credentials"] == "********"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql+pymysql://u:pw@h/db", "mysql+pymysql://u:***@h/db"),
        ("postgresql://u:p@ss:w@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////abs/path/finops.db", "sqlite:////abs/path/finops.db"),
        ("mssql+pyodbc://h/db?driver=x&password=pw&pwd=pw2", "mssql+pyodbc://h/db?driver=x&password=***&pwd=***"),
        ("snowflake://:secret@acct/db", "snowflake://:***@acct/db"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_sql_describe_without_credentials() -> None:
    assert GenericSQLConfig().describe() == "sqlalchemy (no credentials set)"


# -------------------------------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("alias", "name"), [("postgresql", "postgresql"), ("postgres", "postgresql"), ("pg", "postgresql"),
                        ("PG", "postgresql"), ("sql", "sql"), ("sqlalchemy", "sql"), ("SQLAlchemy", "sql")],
)
def test_aliases(alias: str, name: str) -> None:
    assert factory.canonical_name(alias) == name


def test_registry_entries_and_classes(tmp_path: Path) -> None:
    pg, sql = factory.REGISTRY["postgresql"], factory.REGISTRY["sql"]
    assert (pg.extra, pg.modules) == ("postgresql", ("psycopg2", "dlt"))
    assert (sql.extra, sql.modules) == ("sql", ("sqlalchemy", "dlt"))
    assert factory.backend_class("pg") is PostgreSQLBackend
    assert factory.backend_class("sqlalchemy") is GenericSQLBackend
    config = _config(tmp_path, '[project]\ndata_dir = "/tmp/finops-data"\n', OPEN_FINOPS_DATABASE_BACKEND="sqlalchemy")
    backend = factory.create_backend(config.database)
    assert isinstance(backend, GenericSQLBackend) and backend.data_dir == Path("/tmp/finops-data")
    listed = {row["name"]: row for row in factory.available()}
    assert listed["postgresql"]["aliases"] == ["pg", "postgres"] and listed["sql"]["aliases"] == ["sqlalchemy"]


@pytest.mark.parametrize(("name", "extra", "module"), [("pg", "postgresql", "psycopg2"), ("sql", "sql", "sqlalchemy")])
def test_missing_extra_prints_the_pip_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, extra: str, module: str
) -> None:
    monkeypatch.setattr(factory.BackendSpec, "missing_modules", lambda self: [module] if self.extra == extra else [])
    with pytest.raises(MissingExtraError) as info:
        factory.create_backend(_config(tmp_path).database, name=name)
    assert info.value.hint == f"pip install 'open-finops[{extra}]'"
    assert module in info.value.message and info.value.exit_code == 2
    row = {r["name"]: r for r in factory.available()}[factory.canonical_name(name)]
    assert row["installed"] is False and row["install"] == f"pip install 'open-finops[{extra}]'"


def test_modules_import_no_driver() -> None:
    code = (
        "import sys, core.config, core.backends.postgresql, core.backends.sql; "
        "print(sorted(m for m in ('psycopg2', 'sqlalchemy', 'dlt') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------- names, SQL, types


def test_capabilities_and_types() -> None:
    assert PostgreSQLBackend.capabilities.native_schemes == frozenset()
    assert PostgreSQLBackend.capabilities.transactional_ddl
    assert (PostgreSQLBackend.name, PostgreSQLBackend.extra, PostgreSQLBackend.dialect) == ("postgresql", "postgresql", "postgres")
    backend = PostgreSQLBackend(PostgreSQLConfig())
    assert {k: v.lower() for k, v in backend.types.items()} == {
        "string": "text", "double": "double precision", "bigint": "bigint", "boolean": "boolean",
        "timestamp": "timestamptz", "date": "date", "json": "jsonb"}
    assert (GenericSQLBackend.name, GenericSQLBackend.extra) == ("sql", "sql")


def test_quoting_of_odd_identifiers() -> None:
    pg = PostgreSQLBackend(PostgreSQLConfig())
    assert pg.quote('we"ird name') == '"we""ird name"'
    assert pg.qualified("Billing Data", "cur2-daily") == '"Billing Data"."cur2-daily"'
    assert pg.quote("select") == '"select"'
    mysql = GenericSQLBackend(GenericSQLConfig(credentials=SecretStr("mysql+pymysql://u:p@h/db")))
    assert mysql.qualified("aws`billing", "t") == "`aws``billing`.`t`"
    mssql = GenericSQLBackend(GenericSQLConfig(credentials=SecretStr("mssql+pyodbc://u:p@h/db")))
    assert mssql.quote("a]b") == "[a]]b]"


@pytest.mark.parametrize(
    ("url", "dialect"),
    [("sqlite:////x.db", "sqlite"), ("mysql+pymysql://h/db", "mysql"), ("mariadb://h/db", "mysql"),
     ("postgresql+psycopg2://h/db", "postgres"), ("mssql+pyodbc://h/db", "tsql"), ("duckdb:///x", "duckdb"),
     (None, "sqlite")],
)
def test_url_dialect(url: str | None, dialect: str) -> None:
    assert url_dialect(url) == dialect


def test_long_identifiers_are_shortened_deterministically() -> None:
    name = "resource_tags_user_" + "a" * 70
    short = fit_identifier(name, 63)
    assert len(short) == 63 and short == fit_identifier(name, 63)
    assert short != fit_identifier(name + "b", 63)
    assert fit_identifier("short", 63) == "short"
    assert PostgreSQLBackend(PostgreSQLConfig()).column(name) == short


def test_placeholders_are_translated_outside_quotes() -> None:
    sql = "UPDATE t SET \"a?\" = ?, b = '50% ?' WHERE c = ? AND d LIKE 'x%'"
    assert qmark_to_format(sql) == "UPDATE t SET \"a?\" = %s, b = '50%% ?' WHERE c = %s AND d LIKE 'x%%'"
    text, params = qmark_to_named("SELECT ':v' FROM t WHERE a = ? AND b::text = ?", [1, "x"])
    assert text == "SELECT '\\:v' FROM t WHERE a = :p0 AND b\\:\\:text = :p1" and params == {"p0": 1, "p1": "x"}
    with pytest.raises(ValueError):
        qmark_to_named("SELECT ?", [1, 2])


def test_timestamps_bound_as_the_engine_stores_them() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    aware = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert bind_value(aware, "sqlite") == "2024-01-01 10:00:00.000000"
    assert bind_value(aware, "mysql") == datetime(2024, 1, 1, 10)
    assert bind_value(aware, "postgres") is aware
    assert bind_value("text", "sqlite") == "text" and bind_value(None, "mysql") is None
    assert bind_value(datetime(2024, 1, 1, tzinfo=UTC), "sqlite").startswith("2024-01-01 00:00:00")


def test_dlt_credentials_and_destination_without_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = PostgreSQLBackend(PostgreSQLConfig(host="db", port=5433, database="b i", user="us@r",
                                                 password=SecretStr("p@ss/w:rd"), sslmode="require"))
    url = backend.dlt_credentials()
    assert url.startswith("postgresql://us%40r:p%40ss%2Fw%3Ard@db:5433/b%20i?")
    assert "sslmode=require" in url
    destination = backend.get_dlt_destination()
    assert destination.destination_type.endswith("postgres")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    assert ":unused-by-trust-auth@" in PostgreSQLBackend(PostgreSQLConfig()).dlt_credentials()  # dlt insists
    monkeypatch.setenv("PGPASSWORD", "from-libpq-env")
    assert ":from-libpq-env@" in PostgreSQLBackend(PostgreSQLConfig()).dlt_credentials()


def test_advisory_key_is_stable_signed_64_bit() -> None:
    a = PostgreSQLBackend(PostgreSQLConfig(host="one")).advisory_key("cur2-daily")
    b = PostgreSQLBackend(PostgreSQLConfig(host="two")).advisory_key("cur2-daily")
    assert a == b and -(2**63) <= a < 2**63  # the same export on any machine takes the same lock
    assert a != PostgreSQLBackend(PostgreSQLConfig()).advisory_key("legacy-cur")


def test_stage_layout_is_positional_over_the_period_union() -> None:
    def plan(*names: str) -> FilePlan:
        source = SourceFile(key="k", format="csv", compression=None, columns=tuple(SourceColumn(n, "string") for n in names))
        return FilePlan(source, column_specs(source, {}), (("billing_period", "2024-01"),))

    layout = dlt_stage.stage_layout("Billing-Data", "cur2_daily", [
        plan("identity/LineItemId", "lineItem/UnblendedCost"),
        plan("identity/LineItemId", "resourceTags/user:Team"),
    ])
    assert list(layout.columns) == ["billing_period", "identity_line_item_id", "line_item_unblended_cost",
                                    "resource_tags_user_team"]
    assert list(layout.columns.values()) == ["c_0", "c_1", "c_2", "c_3"]
    assert layout.kinds["line_item_unblended_cost"] == "double"
    assert (layout.dataset, layout.table) == ("billing_data_finops_dlt", "_finops_stage_cur2_daily")


def test_sqlite_url_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    backend = GenericSQLBackend(GenericSQLConfig(credentials=SecretStr("sqlite:///rel/finops.db")))
    assert backend.url().database == str(tmp_path / "rel" / "finops.db")
    with pytest.raises(ConfigError):
        GenericSQLBackend(GenericSQLConfig(credentials=SecretStr("sqlite:///:memory:"))).url()
    with pytest.raises(ConfigError) as info:  # unparsable, and the message does not echo the password
        GenericSQLBackend(GenericSQLConfig(credentials=SecretStr("postgresql://u:p@ss:w@h:5432/db"))).url()
    assert "ss:w" not in info.value.message


def test_dlt_telemetry_is_off_unless_the_user_turns_it_on(tmp_path: Path) -> None:
    code = (
        "import os, sys; from pydantic import SecretStr; "
        "from core.backends.sql import GenericSQLBackend; from core.backends.sql.config import GenericSQLConfig; "
        "from core.backends.postgresql import PostgreSQLBackend; from core.backends.postgresql.config import PostgreSQLConfig; "
        f"GenericSQLBackend(GenericSQLConfig(credentials=SecretStr('sqlite:///{tmp_path}/x.db'))).get_dlt_destination(); "
        "PostgreSQLBackend(PostgreSQLConfig()).get_dlt_destination(); "
        "from dlt.common.runtime import anon_tracker; print(anon_tracker._ANON_TRACKER_ENDPOINT)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNTIME__")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    assert out.stdout.strip() == "None"


def test_a_bare_postgresql_url_uses_the_installed_driver() -> None:
    """SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3; the postgresql extra installs psycopg2."""
    from core.backends.sql.client import SQLAlchemyClient

    def driver(url: str) -> str:
        return SQLAlchemyClient(GenericSQLConfig(credentials=SecretStr(url)), "postgres").url().drivername

    assert driver("postgresql://u:pw@h/db") == "postgresql+psycopg2"
    assert driver("postgresql+psycopg2://u:pw@h/db") == "postgresql+psycopg2"  # an explicit driver is kept
    assert driver("mysql+pymysql://u:pw@h/db") == "mysql+pymysql"
