"""A real, throwaway MariaDB server for the session (pytest plugin, registered in ``tests/conftest.py``).

It backs the conformance suite's second ``sql`` target: the generic SQL backend through dlt's ``sqlalchemy``
destination and PyMySQL, on an engine whose DDL commits implicitly and whose ``JSON`` is ``LONGTEXT``.
``mariadb-install-db`` + ``mariadbd`` run from the installed binaries (``.ci/run`` installs the Debian
``mariadb-server`` package when they are missing) in a temporary folder, on 127.0.0.1 and a free port, with no
option file read (``--no-defaults``). If the server cannot start, the fixture raises: never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def find_binary(*names: str) -> str:
    for name in names:
        for folder in (None, "/usr/sbin", "/usr/bin", "/usr/local/sbin"):
            found = shutil.which(name, path=folder) if folder else shutil.which(name)
            if found:
                return found
    raise RuntimeError(f"MariaDB server binaries not found ({', '.join(names)}); install the mariadb-server package.")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MariaServer:
    host: str
    port: int
    user: str
    password: str
    database: str
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def socket_path(self) -> Path:
        return self.root / "mysqld.sock"

    def url(self) -> str:
        return f"mysql+pymysql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def connect(self, **overrides: Any) -> Any:
        import pymysql

        params: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user,
                                  "password": self.password, "database": self.database, "autocommit": True}
        params.update(overrides)
        return pymysql.connect(**params)


def start_server() -> MariaServer:
    install = find_binary("mariadb-install-db", "mysql_install_db")
    daemon = find_binary("mariadbd", "mysqld")
    root = Path(tempfile.mkdtemp(prefix="finops-maria-"))
    as_root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd runs as root only when told so
    data = root / "data"
    done = subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
         "--skip-test-db", *as_root],
        capture_output=True, text=True, timeout=180, check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"mariadb-install-db failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    log = root / "server.log"
    for attempt in range(5):
        # A port free when we looked may be taken before mariadbd binds it: then start again on another one.
        port = _free_port()
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [daemon, "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
                 f"--socket={root / 'mysqld.sock'}", f"--pid-file={root / 'mysqld.pid'}", "--skip-name-resolve",
                 "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--character-set-server=utf8mb4",
                 "--max-connections=200", *as_root],
                stdout=sink, stderr=subprocess.STDOUT,
            )
        server = MariaServer("127.0.0.1", port, "finops", "finops-pw", "finops", root, process)
        try:
            _bootstrap(server)
        except Exception:
            text = log.read_text(errors="replace")
            in_use = "Address already in use" in text or "Do you already have another" in text
            if in_use and attempt < 4:
                _stop_process(process)
                continue
            stop_server(server)
            raise
        break
    return server


def _bootstrap(server: MariaServer) -> None:
    import pymysql

    deadline = time.monotonic() + 60
    while True:
        try:
            conn = pymysql.connect(unix_socket=str(server.socket_path), user="root", autocommit=True)
            break
        except pymysql.err.OperationalError as exc:
            if server.process.poll() is not None or time.monotonic() > deadline:
                log = (server.root / "server.log").read_text(errors="replace")[-4000:]
                raise RuntimeError(f"mariadbd did not start: {exc}\n{log}") from None
            time.sleep(0.2)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {server.database}")
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", [server.user, server.password])
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'%%'", [server.user])
    finally:
        conn.close()


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def stop_server(server: MariaServer) -> None:
    try:
        _stop_process(server.process)
    finally:
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def maria_server() -> Iterator[MariaServer]:
    """A running MariaDB for the whole session; user/database ``finops``."""
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture()
def maria_dataset(maria_server: MariaServer) -> Iterator[str]:
    """A fresh dataset (a MariaDB database) for one test; it and dlt's ``<name>_finops_dlt*`` go afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    conn = maria_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s", [f"{name}%"])
            for (schema,) in cur.fetchall():
                cur.execute(f"DROP DATABASE IF EXISTS `{schema}`")
    finally:
        conn.close()
