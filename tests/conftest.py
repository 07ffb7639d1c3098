"""Shared test helpers: the repository root on sys.path, the sample generator, and a CLI runner."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The PostgreSQL and MariaDB servers and the BigQuery emulator (each started on first use, once per session).
pytest_plugins = ["tests.integration.pg_server", "tests.integration.maria_server", "tests.integration.bq_emulator",
                  "tests.integration.snowflake_server"]

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_example(name: str = "generate_samples") -> Any:
    """``examples/<name>.py`` as a module (the examples folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def gen() -> Any:
    """examples/generate_samples.py: writes CUR exports with known ground truth."""
    return load_example("generate_samples")


@pytest.fixture(scope="session")
def focus_gen() -> Any:
    """examples/generate_focus_samples.py: writes native FOCUS exports with known ground truth."""
    return load_example("generate_focus_samples")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


#: Environment prefixes of the host that could change what ``finops`` (or boto3, dlt, the drivers) does: a test
#: process never inherits them, it gets only what the test sets.
HOST_PREFIXES = ("OPEN_FINOPS_", "AWS_", "PG", "POSTGRESQL_", "RUNTIME__", "DLT_", "SNOWFLAKE_", "GOOGLE_",
                 "BIGQUERY_", "CLOUDSDK_", "MYSQL_", "MARIADB_", "DUCKDB_")

#: dlt's own settings from the environment: ``SECTION__KEY`` (``LOAD__WORKERS``, ``DESTINATION__POSTGRES__…``).
_DLT_SECTION = re.compile(r"^[A-Za-z][A-Za-z0-9_]*?__[A-Za-z0-9]")

# dlt reads ~/.dlt (config.toml, secrets.toml) and ./.dlt, boto3 reads ~/.aws: a home of our own, empty.
_ISOLATED_HOME = Path(tempfile.mkdtemp(prefix="finops-test-home-"))


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``finops`` process under test: the host's minus anything that configures it."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(HOST_PREFIXES) and not _DLT_SECTION.match(k)}
    full_env.update({
        "COLUMNS": "200", "NO_COLOR": "1", "HOME": str(_ISOLATED_HOME),
        "DLT_DATA_DIR": str(_ISOLATED_HOME / "dlt-data"), "DLT_PROJECT_DIR": str(_ISOLATED_HOME / "dlt-project"),
        "AWS_CONFIG_FILE": str(_ISOLATED_HOME / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(_ISOLATED_HOME / "aws-credentials"),
    })
    full_env.update(env or {})
    return full_env


def closed_port() -> int:
    """A loopback TCP port nothing listens on: bound, released, and proven to refuse a connection."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) != 0:  # refused: nothing there
                return port
    raise RuntimeError("no closed loopback port found in 50 tries")


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300) -> Result:
    """``finops`` as users run it: a separate process, real exit code, stdout and stderr apart."""
    full_env = cli_env(env)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "finops"), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


_INTEGRATION = ROOT / "tests" / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers follow what a test needs, so that ``-m`` selects by service and by target.

    Everything under tests/integration is ``integration``; a test that uses the PostgreSQL server is
    ``postgresql`` (whatever else it is marked), one that uses the MariaDB server is ``mariadb`` and ``sql``.
    Parametrised conformance scenarios carry the marker of their target from their parameter.
    """
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if _INTEGRATION in path.parents:
            item.add_marker(pytest.mark.integration)
        names = set(getattr(item, "fixturenames", ()))
        if "pg_server" in names and not item.get_closest_marker("postgresql"):
            item.add_marker(pytest.mark.postgresql)
        if "bq_emulator" in names and not item.get_closest_marker("bigquery"):
            item.add_marker(pytest.mark.bigquery)
        if "snowflake_emulator" in names and not item.get_closest_marker("snowflake"):
            item.add_marker(pytest.mark.snowflake)
        if "maria_server" in names:
            if not item.get_closest_marker("mariadb"):
                item.add_marker(pytest.mark.mariadb)
            if not item.get_closest_marker("sql"):
                item.add_marker(pytest.mark.sql)
