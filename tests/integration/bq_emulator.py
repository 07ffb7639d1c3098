"""bqemulator (a DuckDB-backed BigQuery emulator with REST and gRPC APIs) for the session (pytest plugin).

It runs from its own virtual environment, ``.venv-emulators/bqemulator`` (created by ``./finops.sh test``; another
one with ``FINOPS_BQEMULATOR_VENV``, as for ``finops.sh``, or ``FINOPS_BQEMULATOR=/path/to/bin/bqemulator``), because it pins its own DuckDB. Its DuckDB extensions
(spatial, avro) are installed from their wheels into a HOME of its own before it starts, so it never tries to
download them. It listens on 127.0.0.1 on free ports, ephemeral, project ``test-project``; the real
``google-cloud-bigquery`` client reaches it through ``BIGQUERY_EMULATOR_HOST`` with anonymous credentials
(``NO_GCE_CHECK=true``: google-auth never probes a metadata address). Started once per session, on first use; if
it cannot start, the fixture raises — a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "test-project"


def emulator_binary() -> Path:
    configured = os.environ.get("FINOPS_BQEMULATOR")
    venv = Path(os.environ.get("FINOPS_BQEMULATOR_VENV") or ROOT / ".venv-emulators" / "bqemulator")
    path = Path(configured) if configured else venv / "bin" / "bqemulator"
    if not path.exists():
        raise RuntimeError(f"bqemulator not found at {path}: run `./finops.sh test` once (it installs it into "
                           ".venv-emulators/bqemulator), or set FINOPS_BQEMULATOR to its executable.")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BqEmulator:
    endpoint: str
    project: str
    log_path: Path

    def env(self) -> dict[str, str]:
        """What a user would export to point the Google client (and ``finops``) at this emulator."""
        return {"BIGQUERY_EMULATOR_HOST": self.endpoint, "NO_GCE_CHECK": "true"}

    def client(self) -> object:
        """A ``google.cloud.bigquery.Client`` of its own: another session, as a dashboard would have."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(project=self.project, credentials=AnonymousCredentials(), location="US",
                               client_options={"api_endpoint": self.endpoint})

    def drop_dataset(self, dataset: str) -> None:
        client = self.client()
        with suppress(Exception):
            client.delete_dataset(f"{self.project}.{dataset}", delete_contents=True, not_found_ok=True)  # type: ignore[attr-defined]


def _install_extensions(python: Path, home: Path) -> None:
    """``INSTALL '<file>'`` of every DuckDB extension wheel of the emulator's venv, under its own HOME."""
    script = (
        "import duckdb, glob, sys\n"
        "files = glob.glob(sys.prefix + '/lib/python*/site-packages/duckdb_extension_*/extensions/*/*.duckdb_extension')\n"
        "assert files, 'no duckdb-extension-* wheel in the emulator venv'\n"
        "con = duckdb.connect()\n"
        "[con.execute(\"INSTALL '\" + f.replace(\"'\", \"''\") + \"'\") for f in files]\n"
    )
    done = subprocess.run([str(python), "-c", script], env={**os.environ, "HOME": str(home)},
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"Installing the emulator's DuckDB extensions failed:\n{done.stdout}\n{done.stderr}")


def start_emulator() -> tuple[BqEmulator, subprocess.Popen[bytes], Path]:
    binary = emulator_binary()
    root = Path(tempfile.mkdtemp(prefix="finops-bqemu-"))
    home = root / "home"
    home.mkdir()
    _install_extensions(binary.parent / "python", home)
    log_path = root / "emulator.log"
    env = {**os.environ, "HOME": str(home), "NO_GCE_CHECK": "true"}
    last = ""
    for _attempt in range(3):  # a port free when we looked may be taken before the emulator binds it
        rest, grpc = _free_port(), _free_port()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [str(binary), "start", "--rest-host", "127.0.0.1", "--rest-port", str(rest), "--grpc-host",
                 "127.0.0.1", "--grpc-port", str(grpc), "--project", PROJECT, "--ephemeral"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True,
            )
        endpoint = f"http://127.0.0.1:{rest}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{endpoint}/bigquery/v2/projects/{PROJECT}/datasets", timeout=2):
                    return BqEmulator(endpoint, PROJECT, log_path), proc, root
            except OSError:
                time.sleep(0.3)
        _stop(proc)
        last = log_path.read_text(errors="replace")[-4000:]
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"bqemulator did not start:\n{last}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="session")
def bq_emulator() -> Iterator[BqEmulator]:
    emulator, proc, root = start_emulator()
    saved = {key: os.environ.get(key) for key in emulator.env()}
    os.environ.update(emulator.env())  # the backend under test, in this process, finds the emulator as users do
    try:
        yield emulator
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def bq_dataset(bq_emulator: BqEmulator) -> Iterator[str]:
    """A dataset name of this test's own (created by the backend; dropped afterwards with its staging dataset)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    for dataset in (name, f"{name}_finops_staging"):
        bq_emulator.drop_dataset(dataset)
