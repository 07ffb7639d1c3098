"""Backends under test, seen from the outside: how to point ``finops`` at one, and how to read it back.

The conformance suite (test_multi_backend.py) runs the same scenarios against every target here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar


class Target:
    """One database the suite imports into."""

    name: str
    #: what the engine calls the type CUR 2.0 map columns are stored as
    json_type: str = "json"
    #: test name → (exception it raises on this target, why): a strict xfail, as in backend_targets.py
    known_gaps: ClassVar[dict[str, tuple[type[BaseException], str]]] = {}

    def env(self) -> dict[str, str]:
        """Environment that selects and configures this backend for a ``finops`` process."""
        raise NotImplementedError

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query (portable SQL; tables through :meth:`table`)."""
        raise NotImplementedError

    def table(self, name: str, dataset: str = "aws_billing") -> str:
        return f"{dataset}.{name}"

    def column_types(self, name: str, dataset: str = "aws_billing") -> dict[str, str]:
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            (dataset, name),
        )
        return {column: str(kind).lower() for column, kind in rows}

    def period_totals(self, table: str) -> dict[str, tuple[int, float]]:
        rows = self.query(
            f"SELECT billing_period, COUNT(*), SUM(line_item_unblended_cost) FROM {self.table(table)} "
            "GROUP BY billing_period ORDER BY billing_period"
        )
        return {period: (int(count), float(cost or 0)) for period, count, cost in rows}


class DuckDBTarget(Target):
    name = "duckdb"

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "db" / "finops.duckdb"

    def env(self) -> dict[str, str]:
        return {"OPEN_FINOPS_DATABASE_BACKEND": "duckdb", "OPEN_FINOPS_DATABASE_DUCKDB_DATABASE_PATH": str(self.path)}

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import duckdb

        conn = duckdb.connect(str(self.path), read_only=True)
        try:
            return conn.execute(sql, list(params)).fetchall()
        finally:
            conn.close()


class ServerTarget(Target):
    """A fresh dataset per test on a real server of the session; DB-API driver with ``%s`` placeholders."""

    #: the engine's identifier quote character
    quote_char = '"'

    def __init__(self, server: Any, dataset: str, data_dir: Path) -> None:
        self.server, self.dataset, self.data_dir = server, dataset, data_dir

    def table(self, name: str, dataset: str = "aws_billing") -> str:
        q = self.quote_char
        return f"{q}{self.dataset}{q}.{q}{name}{q}"

    def column_types(self, name: str, dataset: str = "aws_billing") -> dict[str, str]:
        return super().column_types(name, self.dataset)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self.server.connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), params or None)
                return [tuple(row) for row in cursor.fetchall()]
        finally:
            conn.close()


class PostgreSQLTarget(ServerTarget):
    """The session's real PostgreSQL server; the dataset is a schema."""

    name = "postgresql"
    json_type = "jsonb"

    def env(self) -> dict[str, str]:
        return {
            "OPEN_FINOPS_DATABASE_BACKEND": "postgresql",
            "OPEN_FINOPS_DATABASE_POSTGRESQL_HOST": self.server.host,
            "OPEN_FINOPS_DATABASE_POSTGRESQL_PORT": str(self.server.port),
            "OPEN_FINOPS_DATABASE_POSTGRESQL_DATABASE": self.server.database,
            "OPEN_FINOPS_DATABASE_POSTGRESQL_USER": self.server.user,
            "POSTGRESQL_PASSWORD": self.server.password,
            "OPEN_FINOPS_AWS_DATASET_NAME": self.dataset,
            "OPEN_FINOPS_PROJECT_DATA_DIR": str(self.data_dir),
        }


class SQLiteTarget(Target):
    """The generic ``sql`` backend on a real SQLite file through SQLAlchemy; datasets are attached files."""

    name = "sql"
    json_type = "text"  # SQLite has no JSON type; its JSON functions work on text

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "db" / "finops.db"

    def env(self) -> dict[str, str]:
        return {
            "OPEN_FINOPS_DATABASE_BACKEND": "sql",
            "OPEN_FINOPS_DATABASE_SQL_CREDENTIALS": f"sqlite:///{self.path}",
            "OPEN_FINOPS_PROJECT_DATA_DIR": str(self.path.parent / "work"),
        }

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import sqlite3

        conn = sqlite3.connect(self.path)
        try:
            attached = self.path.with_name(f"{self.path.stem}__aws_billing{self.path.suffix}")
            conn.execute("ATTACH DATABASE ? AS aws_billing", (str(attached),))
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def column_types(self, name: str, dataset: str = "aws_billing") -> dict[str, str]:
        rows = self.query(f'SELECT name, type FROM "{dataset}".pragma_table_info(?)', (name,))
        return {column: str(kind).lower() for column, kind in rows}


class MariaDBTarget(ServerTarget):
    """The generic ``sql`` backend on the session's real MariaDB server (PyMySQL); the dataset is a database.

    MariaDB's ``JSON`` is an alias of ``LONGTEXT`` with a ``json_valid`` check, so that is the type reported.
    """

    name = "mariadb"
    json_type = "longtext"
    quote_char = "`"

    def env(self) -> dict[str, str]:
        return {
            "OPEN_FINOPS_DATABASE_BACKEND": "sql",
            "OPEN_FINOPS_DATABASE_SQL_CREDENTIALS": self.server.url(),
            "OPEN_FINOPS_AWS_DATASET_NAME": self.dataset,
            "OPEN_FINOPS_PROJECT_DATA_DIR": str(self.data_dir),
        }


class BigQueryTarget(Target):
    """The bigquery backend on the session's bqemulator (the real google-cloud-bigquery client); the dataset is a
    BigQuery dataset of this test's own."""

    name = "bigquery"
    known_gaps: ClassVar[dict[str, tuple[type[BaseException], str]]] = {
        name: (
            AssertionError,
            ("bqemulator's catalogue does not record ALTER TABLE … ADD COLUMN (its DuckDB table gets the column); "
             "the statement is pinned by tests/unit/test_bigquery_sql.py"),
        )
        for name in ("test_new_column_in_a_later_month_is_added",
                     "test_a_later_focus_month_with_a_new_column_widens_the_table",
                     # the refreshed _focus view is built from the catalogue, which misses the new column
                     "test_the_import_refresh_follows_a_column_added_by_a_later_month")
    }

    def __init__(self, emulator: Any, dataset: str, data_dir: Path) -> None:
        self.emulator, self.dataset, self.data_dir = emulator, dataset, data_dir

    def env(self) -> dict[str, str]:
        return {
            "OPEN_FINOPS_DATABASE_BACKEND": "bigquery",
            "OPEN_FINOPS_DATABASE_BIGQUERY_PROJECT_ID": self.emulator.project,
            "OPEN_FINOPS_AWS_DATASET_NAME": self.dataset,
            "OPEN_FINOPS_PROJECT_DATA_DIR": str(self.data_dir),
            **self.emulator.env(),  # BIGQUERY_EMULATOR_HOST, NO_GCE_CHECK, as a user of the emulator exports them
        }

    def table(self, name: str, dataset: str = "aws_billing") -> str:
        return f"`{self.emulator.project}`.`{self.dataset}`.`{name}`"

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        from google.cloud import bigquery

        kinds = {str: "STRING", int: "INT64", float: "FLOAT64"}
        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter(None, kinds[type(p)], p) for p in params])
        return [tuple(row.values()) for row in self.emulator.client().query(sql, job_config=config).result()]

    def column_types(self, name: str, dataset: str = "aws_billing") -> dict[str, str]:
        rows = self.query(
            f"SELECT column_name, data_type FROM `{self.emulator.project}`.`{self.dataset}`.INFORMATION_SCHEMA.COLUMNS "
            "WHERE table_name = ? AND column_name <> ?", (name, "billing_period_date"))
        # billing_period_date is the partitioning column BigQuery needs (tests/integration/test_bigquery_backend.py
        # checks it), not one of the export's columns
        return {column: str(kind).lower() for column, kind in rows}


class SnowflakeTarget(Target):
    """The snowflake backend on the session's fakesnow emulator (the real snowflake-connector-python over HTTP on
    loopback); the dataset is a schema of this test's own. Native mode: the emulator's own process reads the
    files of every ``COPY INTO … FROM 's3://…'`` from the session's moto server."""

    name = "snowflake"
    json_type = "variant"

    def __init__(self, emulator: Any, dataset: str, data_dir: Path) -> None:
        self.emulator, self.dataset, self.data_dir = emulator, dataset, data_dir

    def env(self) -> dict[str, str]:
        prefix = "OPEN_FINOPS_DATABASE_SNOWFLAKE_"
        return {
            "OPEN_FINOPS_DATABASE_BACKEND": "snowflake",
            prefix + "ACCOUNT": "emulator", prefix + "USER": self.emulator.user,
            prefix + "DATABASE": self.emulator.database, prefix + "HOST": self.emulator.host,
            prefix + "PORT": str(self.emulator.port), prefix + "PROTOCOL": "http",
            "SNOWFLAKE_PASSWORD": self.emulator.password,
            "OPEN_FINOPS_AWS_DATASET_NAME": self.dataset,
            "OPEN_FINOPS_PROJECT_DATA_DIR": str(self.data_dir),
        }

    def table(self, name: str, dataset: str = "aws_billing") -> str:
        return f'"{self.dataset}"."{name}"'

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.emulator.query(sql, list(params) or None)

    def column_types(self, name: str, dataset: str = "aws_billing") -> dict[str, str]:
        rows = self.query(
            "SELECT LOWER(column_name), data_type FROM information_schema.columns "
            "WHERE UPPER(table_schema) = UPPER(?) AND UPPER(table_name) = UPPER(?)", (self.dataset, name))
        return {column: str(kind).lower() for column, kind in rows}
