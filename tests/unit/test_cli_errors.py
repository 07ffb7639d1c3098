"""The CLI's last line of defence: every failure is one message on stderr, and with --json one document on stdout."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import typer

from core.cli import output
from core.cli.common import guarded
from core.errors import DestinationError


@pytest.mark.parametrize(("raised", "code", "message"), [
    (DestinationError("db down"), 4, "db down"),
    (RuntimeError("boom"), 1, "Unexpected error: RuntimeError: boom"),
    (KeyboardInterrupt(), 130, "Interrupted."),
])
def test_json_callers_always_get_one_document(monkeypatch: pytest.MonkeyPatch, raised: BaseException, code: int,
                                              message: str) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    monkeypatch.setattr(output.stdout, "file", stdout)
    monkeypatch.setattr(output.stderr, "file", stderr)

    @guarded
    def command(json_out: bool = False, debug: bool = False) -> Any:
        raise raised

    with pytest.raises(typer.Exit) as exit_info:
        command(json_out=True)
    assert exit_info.value.exit_code == code
    document = json.loads(stdout.getvalue())
    assert document["exit_code"] == code and document["error"]["message"] == message
    assert "Traceback" not in stderr.getvalue() and stderr.getvalue().strip()


def test_database_config_reads_only_the_named_config_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """-D KEY=VALUE is checked against the backend's settings model, not by loading ./config.toml."""
    from core.cli.common import load_config
    from core.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text("[database\nbroken")  # not the file the user named
    named = tmp_path / "c.toml"
    named.write_text('[database]\nbackend = "duckdb"\n')
    config = load_config(named, database_config=["threads=2"])
    assert config.database.duckdb.threads == 2
    with pytest.raises(ConfigError, match="thredas is not a setting of the 'duckdb' backend"):
        load_config(named, database_config=["thredas=2"])
