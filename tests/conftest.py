"""Shared test helpers: the repository root on sys.path, the sample generator, and a CLI runner."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The PostgreSQL and MariaDB server fixtures (each started on first use, once per session).
pytest_plugins = ["tests.integration.pg_server", "tests.integration.maria_server"]

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_samples", ROOT / "examples" / "generate_samples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate_samples"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def gen() -> Any:
    """examples/generate_samples.py: writes CUR exports with known ground truth."""
    return _load_generator()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300) -> Result:
    """``finops`` as users run it: a separate process, real exit code, stdout and stderr apart."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPEN_FINOPS_", "AWS_"))}
    full_env.update({"COLUMNS": "200", "NO_COLOR": "1"})
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, str(ROOT / "finops"), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
