"""Contract promises seen only from the outside: documentation configs, the lock-timeout document, ``--cur-version``,
the schema key, long column names, and a test process that cannot be steered by the host's environment."""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, run_cli
from tests.integration.targets import (
    BigQueryTarget,
    DuckDBTarget,
    MariaDBTarget,
    PostgreSQLTarget,
    SnowflakeTarget,
    SQLiteTarget,
    Target,
)

SAMPLES = ROOT / "examples" / "sample-exports"
#: what examples/sample-exports holds (its manifests): export → period → (version id, data files)
SAMPLE_PLAN = {
    ("cur2-daily", "2024-01"): ("602b40f7-041b-4a6f-a910-38924bae67a9", 1),
    ("cur2-daily", "2024-02"): ("8ec24b54-b44a-4c3f-9ebc-f1213a989308", 1),
    ("legacy-cur", "2024-01"): ("f7870b97-3e2b-4b52-9ae8-cd601a857b09", 2),
    ("legacy-cur", "2024-02"): ("75433320-eb34-451e-8894-6fdad6a16800", 2),
}
DOC_CONFIGS = sorted(ROOT.glob("examples/config-*.toml")) + [ROOT / "config.toml.example"]


@pytest.mark.parametrize("config", DOC_CONFIGS, ids=lambda p: p.name)
def test_documentation_configs_load_and_dry_run(config: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Every config shipped as documentation loads, shows, and plans the bundled sample exports."""
    backend = next(line.split("=", 1)[1].split("#", 1)[0].strip().strip('"') for line in config.read_text().splitlines()
                   if line.strip().startswith("backend") and "=" in line)
    env = {"OPEN_FINOPS_PROJECT_DATA_DIR": str(tmp_path / "work")}
    args = ["--config", str(config)]
    if backend == "duckdb":
        args += ["-D", f"database_path={tmp_path / 'db.duckdb'}"]
    elif backend == "sql":
        env["OPEN_FINOPS_DATABASE_SQL_CREDENTIALS"] = f"sqlite:///{tmp_path / 'db.sqlite'}"
    elif backend == "postgresql":
        pg = PostgreSQLTarget(request.getfixturevalue("pg_server"), request.getfixturevalue("pg_schema"),
                              tmp_path / "work")
        env.update({k: v for k, v in pg.env().items() if k != "OPEN_FINOPS_DATABASE_BACKEND"})
    elif backend in ("snowflake", "bigquery"):  # the session's emulator stands in for the warehouse
        target: Target = (
            SnowflakeTarget(request.getfixturevalue("snowflake_emulator"), request.getfixturevalue("snowflake_schema"),
                            tmp_path / "work")
            if backend == "snowflake" else
            BigQueryTarget(request.getfixturevalue("bq_emulator"), request.getfixturevalue("bq_dataset"),
                           tmp_path / "work")
        )
        env.update({k: v for k, v in target.env().items() if k != "OPEN_FINOPS_DATABASE_BACKEND"})
        if "private_key_path" in config.read_text():  # the documented key-pair login: a key where it says
            env["HOME"] = str(tmp_path)
            _write_private_key(tmp_path / ".ssh" / "finops_snowflake.p8")
    else:
        raise AssertionError(f"{config.name}: backend {backend!r} has no test set-up")

    shown = run_cli("config", "show", *args, "--json", env=env, cwd=tmp_path)
    assert shown.code == 0, shown.stderr
    settings = {s["key"]: s for s in shown.json()["settings"]}
    assert shown.json()["config_file"] == str(config)
    assert settings["database.backend"] == {**settings["database.backend"], "value": backend,
                                            "source": f"file {config}"}
    assert "Unknown setting" not in shown.stderr  # documentation uses no key the code does not know

    # the whole bundled bucket: a config's own prefix (the Snowflake example's "cur") would select one export
    plan = run_cli("aws", "import-cur", *args, "--source-dir", str(SAMPLES), "--prefix", "", "--dry-run", "--json",
                   env=env, cwd=tmp_path)
    assert plan.code == 0, plan.stderr
    document = plan.json()
    assert document["dry_run"] is True and document["backend"] == backend
    assert document["source"] == str(SAMPLES)
    assert document["summary"] == {"loaded": 0, "skipped": 0, "failed": 0, "planned": 4, "rows": 0}
    assert {(p["export_name"], p["billing_period"]): (p["version_id"], p["files"]) for p in document["periods"]} \
        == SAMPLE_PLAN
    assert {p["status"] for p in document["periods"]} == {"planned"}
    assert not (tmp_path / "db.duckdb").exists() and not (tmp_path / "data").exists()


def _write_private_key(path: Path) -> None:
    """An unencrypted PKCS#8 RSA key, as ``openssl genrsa | openssl pkcs8 -nocrypt`` makes one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


@contextmanager
def _flock(*paths: Path) -> Iterator[None]:
    """Hold the documented lock files as a running import would (``flock``, exclusive)."""
    with ExitStack() as stack:
        for path in paths:
            handle = stack.enter_context(open(path, "a+"))  # noqa: SIM115
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


@pytest.mark.parametrize("backend", [pytest.param("duckdb", marks=pytest.mark.duckdb),
                                     pytest.param("sql", marks=pytest.mark.sql)])
def test_lock_timeout_is_exit_1_with_an_error_document(backend: str, tmp_path: Path) -> None:
    """The README's CI script: exit 1, and the --json document has ``error`` instead of ``periods``."""
    target: Target = DuckDBTarget(tmp_path) if backend == "duckdb" else SQLiteTarget(tmp_path)
    env = {**target.env(), "OPEN_FINOPS_AWS_SOURCE_DIR": str(SAMPLES), "OPEN_FINOPS_PROJECT_LOCK_TIMEOUT": "1",
           "OPEN_FINOPS_AWS_EXPORT_NAME": "cur2-daily"}
    first = run_cli("aws", "import-cur", "--json", "--end-date", "2024-01", env=env)
    assert first.code == 0, first.stderr
    if backend == "duckdb":
        locks = [target.path.with_name(target.path.name + ".finops-lock")]  # docs/BACKENDS.md: beside the file
    else:
        locks = sorted((tmp_path / "db" / "work" / ".locks").glob("*.lock"))  # under [project] data_dir/.locks
    assert locks and all(p.exists() for p in locks)
    with _flock(*locks):
        held = run_cli("aws", "import-cur", "--json", env=env)
    assert held.code == 1, held.stdout + held.stderr
    document = held.json()
    assert "periods" not in document and document["exit_code"] == 1
    assert "Another import" in document["error"]["message"] and "lock_timeout" in document["error"]["hint"]
    assert "Traceback" not in held.stderr
    assert target.period_totals("cur2_daily").keys() == {"2024-01"}  # nothing loaded meanwhile
    after = run_cli("aws", "import-cur", "--json", env=env)
    assert after.code == 0 and [p["status"] for p in after.json()["periods"]] == ["skipped", "loaded"]


@pytest.mark.duckdb
@pytest.mark.parametrize(("version", "export", "table"), [("v1", "legacy-cur", "legacy_cur"),
                                                          ("v2", "cur2-daily", "cur2_daily")])
def test_cur_version_flag_imports_only_that_format(version: str, export: str, table: str, tmp_path: Path) -> None:
    target = DuckDBTarget(tmp_path)
    result = run_cli("aws", "import-cur", "--source-dir", str(SAMPLES), "--cur-version", version, "--json",
                     env=target.env())
    assert result.code == 0, result.stderr
    assert {(p["export_name"], p["status"]) for p in result.json()["periods"]} == {(export, "loaded")}
    tables = {t for (t,) in target.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'aws_billing' "
        "AND table_name NOT LIKE '\\_finops%' ESCAPE '\\' AND table_type = 'BASE TABLE'")}  # not the FOCUS views
    assert tables == {table}
    formats = {r["data_format_version"] for r in run_cli("aws", "show-state", "--json", env=target.env())
               .json()["records"]}
    assert formats == {version}


@pytest.mark.postgresql
def test_postgresql_schema_key_beats_dataset_name(tmp_path: Path, pg_server: Any, pg_schema: str) -> None:
    pg = PostgreSQLTarget(pg_server, pg_schema, tmp_path / "work")
    env = {**pg.env(), "OPEN_FINOPS_AWS_DATASET_NAME": f"{pg_schema}_dataset",
           "OPEN_FINOPS_DATABASE_POSTGRESQL_SCHEMA": pg_schema}
    result = run_cli("aws", "import-cur", "--source-dir", str(SAMPLES), "--json", env=env)
    assert result.code == 0, result.stderr
    assert result.json()["dataset"] == pg_schema
    schemas = {s for (s,) in pg.query("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE ?",
                                      (f"{pg_schema}%",))}
    assert schemas == {pg_schema}
    assert pg.period_totals("cur2_daily").keys() == {"2024-01", "2024-02"}


def documented_short_name(name: str) -> str:
    """docs/BACKENDS.md: past 63 bytes, the first 54 bytes + ``_`` + the first 8 hex digits of SHA-1 of the name."""
    raw = name.encode()
    if len(raw) <= 63:
        return name
    return raw[:54].decode() + "_" + hashlib.sha1(raw).hexdigest()[:8]


LONG = "line_item_" + "a_very_long_attribute_name_for_a_shortened_column_" * 2 + "x"  # 111 bytes, already snake_case


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgresql),
                                     pytest.param("sql", marks=pytest.mark.sql),
                                     pytest.param("mariadb", marks=[pytest.mark.sql, pytest.mark.mariadb])])
def test_long_column_names_follow_the_documented_rule(backend: str, tmp_path: Path, gen: Any,
                                                      request: pytest.FixtureRequest) -> None:
    targets: dict[str, Any] = {
        "postgresql": lambda: PostgreSQLTarget(request.getfixturevalue("pg_server"),
                                               request.getfixturevalue("pg_schema"), tmp_path / "work"),
        "sql": lambda: SQLiteTarget(tmp_path),
        "mariadb": lambda: MariaDBTarget(request.getfixturevalue("maria_server"),
                                         request.getfixturevalue("maria_dataset"), tmp_path / "work"),
    }
    target: Target = targets[backend]()
    other = LONG[:-1] + "y"  # same first 54 bytes: only the digest tells them apart
    truth = gen.write_cur2_export(tmp_path / "src", prefix="", export_name="long", periods=["2024-01"],
                                  rows_per_period=20, extra_columns=[LONG, other], seed=5)
    result = run_cli("aws", "import-cur", "--source-dir", str(tmp_path / "src"), "--json", env=target.env())
    assert result.code == 0, result.stderr
    columns = set(target.column_types("long"))
    assert documented_short_name(LONG) in columns and documented_short_name(other) in columns
    assert documented_short_name(LONG) != documented_short_name(other)
    assert not any(len(c.encode()) > 63 for c in columns)
    rows, cost = target.period_totals("long")["2024-01"]
    assert rows == truth.periods["2024-01"].rows
    assert Decimal(str(cost)) == pytest.approx(truth.periods["2024-01"].unblended_cost, abs=Decimal("1e-6"))


@pytest.mark.sql
def test_the_hosts_environment_does_not_reach_a_test_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_cli hands finops only what the test sets: each of these host settings would break or redirect it."""
    bad_dlt = "[runtime]\nlog_level = 'NOT-A-LEVEL'\n"
    for folder in (tmp_path / "home" / ".dlt", tmp_path / "project" / ".dlt"):
        folder.mkdir(parents=True)
        (folder / "config.toml").write_text(bad_dlt)
    for name, value in {
        "OPEN_FINOPS_DATABASE_BACKEND": "oracle9i", "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "PGHOST": "nowhere",
        "POSTGRESQL_PASSWORD": "host-secret", "RUNTIME__LOG_LEVEL": "NOT-A-LEVEL", "LOAD__WORKERS": "many",
        "DLT_PROJECT_DIR": str(tmp_path / "project"), "HOME": str(tmp_path / "home"),
        "SNOWFLAKE_PASSWORD": "x", "GOOGLE_APPLICATION_CREDENTIALS": "/proc/none", "BIGQUERY_PROJECT": "x",
        "CLOUDSDK_CONFIG": "/proc/none",
    }.items():
        monkeypatch.setenv(name, value)
    target = SQLiteTarget(tmp_path)
    shown = run_cli("config", "show", "--json", env=target.env())
    assert shown.code == 0, shown.stderr
    settings = {s["key"]: s for s in shown.json()["settings"]}
    assert (settings["database.backend"]["value"], settings["database.backend"]["source"]) == (
        "sql", "env OPEN_FINOPS_DATABASE_BACKEND")  # the test's, not the host's
    result = run_cli("aws", "import-cur", "--source-dir", str(SAMPLES), "--json", env=target.env())
    assert result.code == 0, result.stderr
    assert result.json()["summary"]["loaded"] == 4


@pytest.mark.postgresql
def test_postgresql_lock_timeout_is_exit_1_with_an_error_document(tmp_path: Path, gen: Any, pg_server: Any,
                                                                  pg_schema: str) -> None:
    """The advisory lock, seen from outside: an import holds it, a second one gives up after lock_timeout with
    the README's document (exit 1, ``error`` instead of ``periods``), and the server frees it when the holder dies."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import cli_env

    pg = PostgreSQLTarget(pg_server, pg_schema, tmp_path / "work")
    gen.write_cur2_export(tmp_path / "src", prefix="", export_name="daily", periods=["2024-01"],
                          rows_per_period=60_000, seed=9)
    env = {**pg.env(), "OPEN_FINOPS_AWS_SOURCE_DIR": str(tmp_path / "src"), "OPEN_FINOPS_PROJECT_LOCK_TIMEOUT": "1"}

    def advisory_locks() -> list[tuple[int, int, int]]:
        return [tuple(r) for r in pg.query(  # type: ignore[misc]
            "SELECT pid, classid::bigint, objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")]

    def wait_until(condition: Any, what: str, seconds: float = 60) -> Any:
        deadline = time.monotonic() + seconds
        while not (found := condition()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)
        return found

    before = set(advisory_locks())
    holder = subprocess.Popen([sys.executable, str(ROOT / "finops"), "aws", "import-cur", "--json"],
                              env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        held = wait_until(lambda: [lk for lk in advisory_locks() if lk not in before], "the import to take its lock")
        holder.send_signal(signal.SIGKILL)  # the server must free the lock of a process that died
        holder.wait(timeout=60)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()
    (_, classid, objid), = held
    key = (classid << 32) | objid
    key = key - (1 << 64) if key >= 1 << 63 else key
    wait_until(lambda: not [lk for lk in advisory_locks() if lk[1:] == (classid, objid)], "the lock to be freed")

    conn = pg_server.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])  # as if another machine were importing
        waited = run_cli("aws", "import-cur", "--json", env=env)
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
    finally:
        conn.close()
    assert waited.code == 1, waited.stdout + waited.stderr
    document = waited.json()
    assert "periods" not in document and document["exit_code"] == 1
    assert "Another import" in document["error"]["message"] and "Traceback" not in waited.stderr
    after = run_cli("aws", "import-cur", "--json", env=env)
    assert after.code == 0 and [p["status"] for p in after.json()["periods"]] == ["loaded"], after.stderr
