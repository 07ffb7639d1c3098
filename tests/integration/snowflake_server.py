"""The Snowflake emulator of the test session: fakesnow's server mode, reached by the real
snowflake-connector-python over HTTP on loopback.

fakesnow pins its own DuckDB and sqlglot, which clash with ours, so it lives in its own virtualenv
(``.venv-emulators/fakesnow``, created by ``./finops.sh test``; ``FINOPS_FAKESNOW_VENV`` may name another).
The emulator runs DuckDB underneath and reads ``s3://`` itself through httpfs: before it starts, the
pinned httpfs wheel is installed into the emulator's own DuckDB extension folder and a persistent S3 secret
pointing at the session's moto server is written under the emulator's own ``HOME`` — that is how the emulator's
process, not ours, reads the data files of a ``COPY INTO … FROM 's3://…'`` (it ignores the ``CREDENTIALS`` clause).

A server that cannot start FAILS the tests that need it, with the reason; it is never a skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMULATOR_VENV = Path(os.environ.get("FINOPS_FAKESNOW_VENV") or ROOT / ".venv-emulators" / "fakesnow")
INSTALL_HINT = "./finops.sh test installs it (or: python3 -m venv .venv-emulators/fakesnow && " \
               ".venv-emulators/fakesnow/bin/pip install 'fakesnow[server]==0.11.18' duckdb==1.5.5 " \
               "duckdb-extension-httpfs==1.5.5 'snowflake-connector-python<5')"

_PREPARE = """
import sys, duckdb, duckdb_extension_httpfs
from pathlib import Path
ext = Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
quoted = lambda text: "'" + text.replace("'", "''") + "'"
conn = duckdb.connect()
conn.execute("INSTALL " + quoted(str(ext)))  # into this HOME's extension folder: autoloaded, never downloaded
conn.execute("LOAD httpfs")
host, key, secret = sys.argv[1:4]
conn.execute("CREATE OR REPLACE PERSISTENT SECRET finops_test_s3 (TYPE s3, KEY_ID " + quoted(key) + ", SECRET "
             + quoted(secret) + ", REGION 'us-east-1', ENDPOINT " + quoted(host) + ", USE_SSL false, URL_STYLE 'path')")
"""


def fakesnow_executable() -> Path:
    return EMULATOR_VENV / "bin" / "fakesnow"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SnowflakeEmulator:
    host: str
    port: int
    home: Path
    process: Any = None
    database: str = "FINOPS"
    user: str = "finops"
    password: str = "emulator-password"
    log: Path = field(default_factory=Path)

    def connect(self, **overrides: Any) -> Any:
        import snowflake.connector

        params = {"account": "emulator", "user": self.user, "password": self.password, "host": self.host,
                  "port": self.port, "protocol": "http", "database": self.database, "paramstyle": "qmark",
                  "session_parameters": {"TIMEZONE": "UTC"}, **overrides}
        return snowflake.connector.connect(**params)

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return [tuple(r) for r in cursor.fetchall()] if cursor.description else []
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_emulator(workdir: Path, s3_endpoint: str, *, key: str = "testing", secret: str = "testing-secret",
                   timeout: float = 60.0) -> SnowflakeEmulator:
    """Prepare the emulator's HOME (httpfs, the S3 secret), start ``fakesnow -s`` on a free loopback port and
    wait until a login succeeds.

    Raises:
        RuntimeError: fakesnow is missing or did not come up; the message says why and how to install it.
    """
    exe = fakesnow_executable()
    if not exe.exists():
        raise RuntimeError(f"The Snowflake emulator is not installed ({exe} is missing); {INSTALL_HINT}")
    python = exe.parent / "python"
    home = workdir / "fakesnow-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home)}
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        env.pop(name, None)
    host_port = s3_endpoint.split("://", 1)[1].rstrip("/")
    prepared = subprocess.run([str(python), "-c", _PREPARE, host_port, key, secret], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
    if prepared.returncode != 0:
        raise RuntimeError(f"Could not prepare the emulator's DuckDB (httpfs, S3 secret): {prepared.stderr[-2000:]}")
    port = _free_port()
    log = workdir / "fakesnow.log"
    process = subprocess.Popen([str(exe), "-s", "-p", str(port), "--host", "127.0.0.1"], env=env, cwd=workdir,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    emulator = SnowflakeEmulator("127.0.0.1", port, home, process, log=log)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fakesnow exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            conn = emulator.connect(login_timeout=5)
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE IF NOT EXISTS "{emulator.database}"')
            conn.close()
            return emulator
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
            time.sleep(0.3)
    emulator.stop()
    raise RuntimeError(f"fakesnow did not accept a login within {timeout:.0f} s: {last}; log: {log.read_text()[-2000:]}")


# ------------------------------------------------------------------------------------------------- fixtures

_schemas = __import__("itertools").count(1)


@pytest.fixture(scope="session")
def snowflake_emulator(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnowflakeEmulator]:
    """fakesnow, started on first use, once per session; its DuckDB reads the session's moto server directly."""
    emulator = start_emulator(tmp_path_factory.mktemp("snowflake"), s3_server.endpoint)  # a failure is an error
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture()
def snowflake_schema(snowflake_emulator: SnowflakeEmulator) -> str:
    """A schema name of this test's own (created by the backend, as an import would)."""
    return f"aws_billing_{os.getpid()}_{next(_schemas)}"
