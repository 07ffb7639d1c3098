"""``[focus] exports``: a TOML list or ``OPEN_FINOPS_FOCUS_EXPORTS=a,b``, the environment beating the file, and
``config show`` naming where the value came from."""

from __future__ import annotations

from pathlib import Path

from core.config import Config


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_default_is_every_export(tmp_path: Path) -> None:
    assert Config.load(_file(tmp_path, ""), environ={}).focus.exports is None


def test_a_toml_list_and_the_environment_which_wins(tmp_path: Path) -> None:
    path = _file(tmp_path, '[focus]\nexports = ["cur2-daily", " focus-daily "]\n')
    assert Config.load(path, environ={}).focus.exports == ["cur2-daily", "focus-daily"]
    config = Config.load(path, environ={"OPEN_FINOPS_FOCUS_EXPORTS": "legacy-cur, focus-daily,"})
    assert config.focus.exports == ["legacy-cur", "focus-daily"]
    shown = {s.path: s for s in config.settings()}["focus.exports"]
    assert shown.value == ["legacy-cur", "focus-daily"] and shown.source == "env OPEN_FINOPS_FOCUS_EXPORTS"
