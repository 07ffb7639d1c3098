"""Configuration, source and destination errors: their documented exit code (2 configuration, 3 source, 4
destination) with the key, value or file named, and nothing loaded or changed (the baseline months as they were,
an existing database file never replaced)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import Result, closed_port
from tests.corpus.harness import SQL_SECRET, Case, Ctx

PG = ("postgresql",)
DUCK = ("duckdb",)


def _env(**values: str) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.env.update(values)


def _args(*args: str) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.args.extend(args)


def _config_file(content: bytes | None, name: str = "config.toml") -> Callable[[Ctx], None]:
    """``--config`` naming a file holding ``content`` (``None``: no such file)."""

    def damage(ctx: Ctx) -> None:
        path = ctx.workdir / name
        if content is not None:
            path.write_bytes(content)
        ctx.notes["config"] = str(path)
        ctx.args.extend(["--config", str(path)])

    return damage


def _both(*damages: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    def damage(ctx: Ctx) -> None:
        for one in damages:
            one(ctx)

    return damage


def _config_dir(ctx: Ctx) -> None:
    path = ctx.workdir / "config-folder.toml"
    path.mkdir()
    ctx.notes["config"] = str(path)
    ctx.args.extend(["--config", str(path)])


def _config_culprit(ctx: Ctx) -> str:
    return Path(ctx.notes["config"]).name


def _case(ident: str, damage: Callable[[Ctx], None], code: int, culprit: Any, **kw: Any) -> Case:
    return Case(id=f"config-{ident}", damage=damage, code=code, culprit=culprit, victim=None, **kw)


# ------------------------------------------------------------------------------------------ destinations


def _damage_db_file(change: Callable[[bytes], bytes]) -> Callable[[Ctx], None]:
    def damage(ctx: Ctx) -> None:
        path = Path(ctx.target.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = change(path.read_bytes() if path.exists() else b"")
        path.write_bytes(data)
        ctx.notes["db_bytes"] = data

    return damage


def _db_untouched(ctx: Ctx, result: Result, _back: Any) -> None:
    """An existing database file is opened, never replaced: the damaged file is still there, byte for byte."""
    assert Path(ctx.target.path).read_bytes() == ctx.notes["db_bytes"], "the database file was replaced"


def _db_path(ctx: Ctx, make: Callable[[Path], Path]) -> None:
    path = make(ctx.workdir)
    ctx.notes["db_path"] = str(path)
    ctx.env["OPEN_FINOPS_DATABASE_DUCKDB_DATABASE_PATH"] = str(path)


def _folder(work: Path) -> Path:
    (work / "a-folder.duckdb").mkdir()
    return work / "a-folder.duckdb"


def _under_a_file(work: Path) -> Path:
    (work / "plain-file").write_text("not a folder")
    return work / "plain-file" / "finops.duckdb"


def _pg(**values: str) -> Callable[[Ctx], None]:
    def damage(ctx: Ctx) -> None:
        ctx.env.update({f"OPEN_FINOPS_DATABASE_POSTGRESQL_{k.upper()}": v for k, v in values.items()})

    return damage


def _pg_closed(ctx: Ctx) -> None:
    port = closed_port()
    ctx.notes["port"] = str(port)
    ctx.env["OPEN_FINOPS_DATABASE_POSTGRESQL_PORT"] = str(port)


def _sql_url_wrong_password(ctx: Ctx) -> None:
    server = ctx.target.server
    ctx.env.update({"OPEN_FINOPS_DATABASE_BACKEND": "sql", "OPEN_FINOPS_DATABASE_SQL_CREDENTIALS":
                    f"postgresql+psycopg2://{server.secure_user}:{SQL_SECRET}@{server.host}:{server.port}/{server.database}"})


def _pg_secure_user(ctx: Ctx) -> None:  # POSTGRESQL_PASSWORD (the planted secret) is wrong for this role
    ctx.env["OPEN_FINOPS_DATABASE_POSTGRESQL_USER"] = ctx.target.server.secure_user


# ------------------------------------------------------------------------------------------ sources


def _closed_endpoint(ctx: Ctx) -> None:
    ctx.env["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{closed_port()}"


def _no_source_dir(ctx: Ctx) -> None:
    shutil.rmtree(ctx.root)


CASES: list[Case] = [
    # configuration (exit 2): the key, value or file named
    _case("memory-limit-env", _env(OPEN_FINOPS_DATABASE_DUCKDB_MEMORY_LIMIT="lots"), 2, "memory_limit",
          backends=DUCK),
    _case("memory-limit-file", _config_file(b'[database.duckdb]\nmemory_limit = "12 parsecs"\n'), 2,
          "memory_limit", backends=DUCK),
    _case("threads-not-a-number", _config_file(b'[database.duckdb]\nthreads = "many"\n'), 2, "threads",
          backends=DUCK),
    _case("threads-zero", _env(OPEN_FINOPS_DATABASE_DUCKDB_THREADS="0"), 2, "threads", backends=DUCK),
    _case("port-out-of-range", _pg(port="99999"), 2, "port", backends=PG),
    _case("port-not-a-number", _pg(port="five-four-three-two"), 2, "port", backends=PG),
    _case("threads-env-not-a-number", _env(OPEN_FINOPS_DATABASE_DUCKDB_THREADS="abc"), 2, "threads", backends=DUCK),
    _case("memory-limit-flag", _args("--database-config", "memory_limit=lots"), 2, "memory_limit", backends=DUCK),
    _case("lock-timeout-not-a-number", _env(OPEN_FINOPS_PROJECT_LOCK_TIMEOUT="soon"), 2, "lock_timeout"),
    _case("backend-not-a-string", _both(_config_file(b"[database]\nbackend = 42\n"),
                                        _env(OPEN_FINOPS_DATABASE_BACKEND="")), 2, "database.backend"),
    _case("end-date-a-word", _args("--end-date", "March"), 2, "March"),
    _case("file-not-utf8", _config_file(b'[aws]\nprefix = "caf\xe9"\n'), 2, _config_culprit),
    _case("file-invalid-toml", _config_file(b"[aws\nbucket = \n"), 2, _config_culprit),
    _case("file-missing", _config_file(None, "no-such-config.toml"), 2, _config_culprit),
    _case("file-is-a-folder", _config_dir, 2, _config_culprit),
    _case("file-section-not-a-table", _config_file(b'aws = "s3://bucket"\n'), 2, _config_culprit),
    _case("unknown-backend-flag", _args("--backend", "nosuchdb"), 2, "nosuchdb"),
    _case("unknown-backend-env", _env(OPEN_FINOPS_DATABASE_BACKEND="oracle"), 2, "oracle"),
    _case("start-date-month-13", _args("--start-date", "2024-13"), 2, "2024-13"),
    _case("start-after-end", _args("--start-date", "2024-03", "--end-date", "2024-01"), 2, "2024-03"),
    _case("cur-version-v3", _args("--cur-version", "v3"), 2, "v3"),
    _case("database-config-without-equals", _args("--database-config", "database_path"), 2, "database_path"),
    _case("export-name-with-slash", _args("--export-name", "a/b"), 2, "a/b"),
    _case("unknown-flag", _args("--no-such-flag"), 2, "--no-such-flag"),
    _case("dataset-name-quote", _env(OPEN_FINOPS_AWS_DATASET_NAME='aws"billing'), 2, "dataset_name"),
    _case("dataset-name-statement", _env(OPEN_FINOPS_AWS_DATASET_NAME="x; DROP TABLE y"), 2, "dataset_name"),
    _case("dataset-name-empty", _config_file(b'[aws]\ndataset_name = ""\n'), 2, "dataset_name"),
    _case("dataset-name-newline", _env(OPEN_FINOPS_AWS_DATASET_NAME="aws\nbilling"), 2, "dataset_name"),
    _case("schema-key-quote", _pg(schema='sch"ema'), 2, "schema", backends=PG),
    _case("prefix-outside-source-dir", _args("--prefix", "../.."), 2, "../..", via="local"),
    # sources (exit 3)
    _case("bucket-missing", _env(OPEN_FINOPS_AWS_BUCKET="no-such-bucket-corpus"), 3, "no-such-bucket-corpus"),
    _case("s3-endpoint-unreachable", _closed_endpoint, 3, lambda ctx: ctx.bucket, backends=DUCK),
    _case("source-dir-missing", _no_source_dir, 3, lambda ctx: ctx.root.name, via="local"),
    # destinations (exit 4): the file or server named, the file never replaced, the password never printed
    _case("duckdb-file-truncated", _damage_db_file(lambda d: d[: len(d) // 2]), 4, "finops.duckdb",
          backends=DUCK, destination_broken=True, check=_db_untouched),
    _case("duckdb-file-not-a-database", _damage_db_file(lambda d: b"this is not a DuckDB file\n" * 100), 4,
          "finops.duckdb", backends=DUCK, destination_broken=True, check=_db_untouched),
    _case("duckdb-file-garbage-header", _damage_db_file(lambda d: b"\xff" * 4096 + d[4096:]), 4, "finops.duckdb",
          backends=DUCK, destination_broken=True, check=_db_untouched),
    _case("duckdb-path-is-a-folder", lambda ctx: _db_path(ctx, _folder), 4, "a-folder.duckdb", backends=DUCK),
    _case("duckdb-path-under-a-file", lambda ctx: _db_path(ctx, _under_a_file), 4, "plain-file", backends=DUCK),
    _case("sqlite-not-a-database", _damage_db_file(lambda d: b"this is not a SQLite file\n" * 100), 4, "finops.db",
          backends=("sqlite",), baseline=False, source_tree=True, destination_broken=True, check=_db_untouched),
    _case("postgresql-unreachable", _pg_closed, 4, lambda ctx: ctx.notes["port"], backends=PG),
    _case("postgresql-wrong-password", _pg_secure_user, 4, "finops_secure", backends=PG),
    _case("postgresql-unknown-database", _pg(database="no_such_database_corpus"), 4, "no_such_database_corpus",
          backends=PG),
    _case("sql-url-wrong-password", _sql_url_wrong_password, 4, "finops_secure", backends=PG),
]
