"""Fixtures of the adversarial corpus: one known-good source, one baseline database per backend, cloned per case.

The source (generated once): ``legacy-cur`` (CUR v1, gzip CSV, 2 parts) and ``cur2-daily`` (CUR 2.0 Parquet, 2
files), 2024-01…2024-04, 20 rows a month. The baseline database holds January–March of both (imported once per
session and backend through the CLI, ``--end-date 2024-03``); each case starts from a copy of it — a file copy
for DuckDB, ``CREATE DATABASE … TEMPLATE`` on PostgreSQL — so a case costs one import, not two.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.corpus.harness import (
    AWS_SECRET,
    BASE_PERIODS,
    CREDENTIALS_URL,
    PG_SECRET,
    ROWS,
    SEEDS,
    V1,
    V1_PREFIX,
    V2,
    V2_PREFIX,
)
from tests.integration.conftest import S3, s3_server  # noqa: F401 - the session's S3 API server, shared
from tests.integration.targets import DuckDBTarget, PostgreSQLTarget, Target

ALL_PERIODS = [*BASE_PERIODS, "2024-04"]


@dataclass
class BaseSource:
    root: Path
    bucket: str
    truth: dict[str, dict[str, Any]]


@pytest.fixture(scope="session")
def corpus_source(s3_server: S3, gen: Any, tmp_path_factory: pytest.TempPathFactory) -> BaseSource:  # noqa: F811
    root = tmp_path_factory.mktemp("corpus-source")
    v1 = gen.write_cur1_export(root, prefix=V1_PREFIX, export_name=V1, periods=ALL_PERIODS, rows_per_period=ROWS,
                               parts=2, seed=SEEDS[V1])
    v2 = gen.write_cur2_export(root, prefix=V2_PREFIX, export_name=V2, periods=ALL_PERIODS, rows_per_period=ROWS,
                               files_per_period=2, seed=SEEDS[V2])
    bucket = s3_server.new_bucket()
    s3_server.upload_tree(root, bucket)
    return BaseSource(root, bucket, {V1: dict(v1.periods), V2: dict(v2.periods)})


def s3_env(endpoint: str, bucket: str | None) -> dict[str, str]:
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": endpoint}
    if bucket:
        env["OPEN_FINOPS_AWS_BUCKET"] = bucket
    return env


class CorpusDuckDB(DuckDBTarget):
    def __init__(self, path: Path, work: Path) -> None:
        self.path, self.work = path, work

    def env(self) -> dict[str, str]:
        return {**super().env(), "POSTGRESQL_PASSWORD": PG_SECRET, "OPEN_FINOPS_DATABASE_SQL_CREDENTIALS": CREDENTIALS_URL,
                "OPEN_FINOPS_PROJECT_DATA_DIR": str(self.work)}


class CorpusPostgres(PostgreSQLTarget):
    """The session's PostgreSQL server, a database of its own per case (the dataset is ``aws_billing``)."""

    def __init__(self, server: Any, database: str, work: Path) -> None:
        super().__init__(server, "aws_billing", work)
        self.database = database

    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("OPEN_FINOPS_AWS_DATASET_NAME")
        env.update({"OPEN_FINOPS_DATABASE_POSTGRESQL_DATABASE": self.database, "POSTGRESQL_PASSWORD": PG_SECRET,
                    "OPEN_FINOPS_DATABASE_SQL_CREDENTIALS": CREDENTIALS_URL})
        return env

    def table(self, name: str, dataset: str = "aws_billing") -> str:
        return f'"{dataset}"."{name}"'

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self.server.connect(dbname=self.database)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), params or None)
                return [tuple(row) for row in cursor.fetchall()]
        finally:
            conn.close()


class CorpusSQLite(Target):
    """The generic ``sql`` backend on a SQLite file (only destination cases use it: nothing is read back)."""

    name = "sqlite"

    def __init__(self, path: Path, work: Path) -> None:
        self.path, self.work = path, work

    def env(self) -> dict[str, str]:
        return {"OPEN_FINOPS_DATABASE_BACKEND": "sql", "OPEN_FINOPS_DATABASE_SQL_CREDENTIALS": f"sqlite:///{self.path}",
                "OPEN_FINOPS_PROJECT_DATA_DIR": str(self.work), "POSTGRESQL_PASSWORD": PG_SECRET}


def _admin(server: Any, sql: str) -> None:
    conn = server.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


@dataclass
class Templates:
    """Baseline databases, made on first use: January–March of both exports, imported through the CLI."""

    source: BaseSource
    s3: S3
    root: Path
    request: pytest.FixtureRequest
    made: dict[str, Any] = field(default_factory=dict)

    def _import(self, target: Target) -> None:
        env = {**s3_env(self.s3.endpoint, self.source.bucket), **target.env()}
        result = run_cli("aws", "import-cur", "--json", "--end-date", BASE_PERIODS[-1], env=env)
        assert result.code == 0, result.stdout + result.stderr
        assert result.json()["summary"]["loaded"] == 2 * len(BASE_PERIODS), result.stdout

    def duckdb(self) -> Path:
        if "duckdb" not in self.made:
            target = CorpusDuckDB(self.root / "duckdb" / "finops.duckdb", self.root / "duckdb-work")
            self._import(target)
            self.made["duckdb"] = target.path
        return self.made["duckdb"]

    def postgresql(self) -> tuple[Any, str]:
        if "postgresql" not in self.made:
            server = self.request.getfixturevalue("pg_server")
            name = f"corpus_tmpl_{uuid.uuid4().hex[:8]}"
            _admin(server, f'CREATE DATABASE "{name}"')
            self._import(CorpusPostgres(server, name, self.root / "pg-work"))
            self.made["postgresql"] = (server, name)
        return self.made["postgresql"]


@pytest.fixture(scope="session")
def templates(corpus_source: BaseSource, s3_server: S3, tmp_path_factory: pytest.TempPathFactory,  # noqa: F811
              request: pytest.FixtureRequest) -> Iterator[Templates]:
    made = Templates(corpus_source, s3_server, tmp_path_factory.mktemp("corpus-templates"), request)
    yield made
    if "postgresql" in made.made:  # the server may already be gone (its fixture ends first): it is thrown away
        server, name = made.made["postgresql"]
        with contextlib.suppress(Exception):
            _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def make_target(templates: Templates, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``make_target(backend, baseline)``: a database for one case, a copy of the baseline or empty."""
    dropped: list[tuple[Any, str]] = []

    def make(backend: str, baseline: bool) -> Target:
        work = tmp_path / "work"
        if backend == "duckdb":
            path = tmp_path / "db" / "finops.duckdb"
            if baseline:
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(templates.duckdb(), path)
            return CorpusDuckDB(path, work)
        if backend == "sqlite":
            return CorpusSQLite(tmp_path / "db" / "finops.db", work)
        server = request.getfixturevalue("pg_server")
        name = f"corpus_{uuid.uuid4().hex[:12]}"
        if baseline:
            _tmpl_server, tmpl = templates.postgresql()
            _admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{tmpl}"')
        else:
            _admin(server, f'CREATE DATABASE "{name}"')
        dropped.append((server, name))
        return CorpusPostgres(server, name, work)

    yield make
    for server, name in dropped:
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
