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
