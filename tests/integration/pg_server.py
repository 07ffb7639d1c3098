"""A real, throwaway PostgreSQL server for the session (pytest plugin: ``-p tests.integration.pg_server``).

The server runs from the installed binaries (``PATH`` or ``/usr/lib/postgresql/*/bin``) in a temporary folder,
listens on 127.0.0.1 only, on a free port, and logs every statement (``log_statement=all``) so tests can prove
which SQL reached it (``COPY`` rather than ``INSERT … VALUES``). PostgreSQL refuses to run as root, so as root
every server command runs as the ``postgres`` user through ``runuser``.

Authentication: ``trust`` on 127.0.0.1 for everyone except :attr:`PgServer.secure_user`, who must give a real
password (scram-sha-256) — that is what the "bad password is rejected" tests need. If the server cannot start,
the fixture raises: a backend whose service cannot start is a failure, never a skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SERVER_USER = "postgres"


def find_bindir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` (PATH first, then the Debian layout)."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p)] or [0],
        reverse=True,
    )
    for candidate in candidates:
        if (Path(candidate) / "pg_ctl").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise RuntimeError("PostgreSQL server binaries not found (no pg_ctl on PATH nor in /usr/lib/postgresql/*/bin).")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    host: str
    port: int
    user: str
    password: str
    database: str
    root: Path
    bindir: Path
    log_path: Path
    #: a role that must authenticate with a real password (scram-sha-256), for rejection tests
    secure_user: str = "finops_secure"
    secure_password: str = "s3cret-Pa55word"
    _as_root: bool = field(default=False, repr=False)

    def dsn(self, **overrides: Any) -> dict[str, Any]:
        params = {
            "host": self.host, "port": self.port, "user": self.user, "password": self.password,
            "dbname": self.database, "connect_timeout": 10,
        }
        params.update(overrides)
        return params

    def connect(self, **overrides: Any) -> Any:
        """A psycopg2 connection (autocommit off) as ``finops`` to ``finops`` unless overridden."""
        import psycopg2

        return psycopg2.connect(**self.dsn(**overrides))

    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def log_text(self) -> str:
        """Everything the server logged so far (every statement: ``log_statement=all``)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_offset(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", errors="replace")


def _run(cmd: list[str], *, as_root: bool, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = ["runuser", "-u", SERVER_USER, "--", *cmd] if as_root else cmd
    return subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)


def start_server() -> PgServer:
    """initdb + pg_ctl start in a fresh temporary folder; raises with the server's log when it cannot start."""
    bindir = find_bindir()
    as_root = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="finops-pg-"))
    if as_root:  # PostgreSQL refuses to run as root: the folder belongs to the server's own user
        try:
            account = pwd.getpwnam(SERVER_USER)
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"Running as root, but there is no {SERVER_USER!r} user to run PostgreSQL as.") from None
        os.chown(root, account.pw_uid, account.pw_gid)
    os.chmod(root, 0o700)
    data = root / "data"
    log_path = root / "server.log"
    init = _run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"],
        as_root=as_root,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
    hba = data / "pg_hba.conf"
    # First match wins: the secure role must give its password; everyone else is trusted (loopback only).
    hba.write_text(
        "local all all trust\n"
        "host all finops_secure 127.0.0.1/32 scram-sha-256\n"
        "host all all 127.0.0.1/32 trust\n"
    )
    last_error = ""
    for _attempt in range(5):
        # A port free when we looked may be taken before the server binds it (EADDRINUSE): start again on another.
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} "
            "-c log_statement=all -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100 -c password_encryption=scram-sha-256"
        )
        started = _run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log_path), "-w", "-t", "60", "-o", options, "start"],
            as_root=as_root,
        )
        if started.returncode == 0:
            break
        tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
        last_error = f"pg_ctl start failed ({started.returncode}):\n{started.stdout}\n{started.stderr}\n{tail}"
        time.sleep(0.5)
    else:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(last_error)
    server = PgServer(
        host="127.0.0.1", port=port, user="finops", password="finops", database="finops",
        root=root, bindir=bindir, log_path=log_path, _as_root=as_root,
    )
    try:
        _bootstrap(server)
    except Exception:
        stop_server(server)
        raise
    return server


def _bootstrap(server: PgServer) -> None:
    import psycopg2

    conn = psycopg2.connect(host=server.host, port=server.port, user="postgres", dbname="postgres", connect_timeout=10)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE ROLE finops LOGIN CREATEDB PASSWORD %s", [server.password])
            cur.execute("CREATE DATABASE finops OWNER finops")
            cur.execute("CREATE ROLE finops_secure LOGIN PASSWORD %s", [server.secure_password])
            cur.execute("GRANT CREATE, CONNECT ON DATABASE finops TO finops_secure")
    finally:
        conn.close()


def stop_server(server: PgServer) -> None:
    try:
        _run(
            [str(server.bindir / "pg_ctl"), "-D", str(server.root / "data"), "-m", "immediate", "-w", "stop"],
            as_root=server._as_root,
        )
    finally:
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A running PostgreSQL for the whole session; role/database ``finops`` (password ``finops``)."""
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture()
def pg_schema(pg_server: PgServer) -> Iterator[str]:
    """A fresh schema name for one test; it (and any schema whose name starts with it) is dropped afterwards."""
    import psycopg2.errors

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    conn = pg_server.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", [name])
            schemas = [schema for (schema,) in cur.fetchall()]
            cur.execute("SET lock_timeout = '5s'")
            for schema in schemas:
                try:
                    cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                except psycopg2.errors.LockNotAvailable:
                    # a failed test left a session holding locks in a transaction: end it, then drop
                    cur.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                        "AND pid <> pg_backend_pid() AND state LIKE %s",
                        [pg_server.database, "idle in transaction%"],
                    )
                    cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        conn.close()
