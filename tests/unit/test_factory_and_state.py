"""The backend registry and the load-state rules, with nothing running but an in-memory DuckDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.backends import factory
from core.backends.base import LoadRecord
from core.backends.sqlengine.names import quote_identifier, table_name_for_export
from core.config import Config
from core.errors import ConfigError, MissingExtraError
from core.state import LoadStateTracker


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        factory.canonical_name("oracle")
    assert "'oracle'" in info.value.message and "duckdb" in info.value.message
    assert info.value.exit_code == 2


def test_aliases_resolve() -> None:
    assert factory.canonical_name("DuckDB") == "duckdb"
    assert factory.canonical_name("duck") == "duckdb"


def test_missing_extra_names_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = factory.REGISTRY["duckdb"]
    monkeypatch.setitem(factory.REGISTRY, "duckdb", factory.BackendSpec(
        spec.name, spec.target, "duckdb", ("a_module_that_is_not_installed",), spec.description))
    with pytest.raises(MissingExtraError) as info:
        factory.create_backend(Config.load(None, environ={}).database)
    assert info.value.hint == "pip install 'open-finops[duckdb]'"
    assert info.value.exit_code == 2
    listed = {row["name"]: row for row in factory.available()}
    assert listed["duckdb"]["installed"] is False and listed["duckdb"]["missing"] == ["a_module_that_is_not_installed"]


def test_registry_imports_no_driver_until_used() -> None:
    import subprocess
    import sys

    code = ("import sys; from core.backends import factory; factory.available(); "
            "print(sorted(m for m in ('duckdb', 'psycopg2', 'sqlalchemy', 'dlt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


def test_table_names_and_quoting() -> None:
    assert table_name_for_export("cur2-daily") == "cur2_daily"
    assert table_name_for_export("My Export.v2") == "my_export_v2"
    long = table_name_for_export("x" * 100, max_length=30)
    assert len(long) == 30 and long == table_name_for_export("x" * 100, max_length=30)
    assert quote_identifier('we"ird', "duckdb") == '"we""ird"'
    assert quote_identifier("a`b", "mysql") == "`a``b`"


@pytest.fixture()
def tracker(tmp_path: Path) -> LoadStateTracker:
    from core.backends.duckdb import DuckDBBackend, DuckDBConfig

    backend = DuckDBBackend(DuckDBConfig(database_path=tmp_path / "s.duckdb"), data_dir=tmp_path)
    tracker = LoadStateTracker(backend.state_manager("aws_billing"))
    tracker.ensure()
    return tracker


def _record(version: str, period: str = "2024-01") -> LoadRecord:
    return LoadRecord(vendor="aws", export_name="e", billing_period=period, version_id=version,
                      data_format_version="v2", source_location="s3://b/k", file_count=1)


def test_state_lifecycle(tracker: LoadStateTracker) -> None:
    first = tracker.begin(_record("v1"))
    assert first.status == "running" and not first.is_current
    done = tracker.completed(first, rows=10, files=1)
    tracker.store.upsert(done)
    tracker.store.mark_current(done)
    assert tracker.current("e")["2024-01"].version_id == "v1"
    assert not tracker.needs_load(tracker.current("e")["2024-01"], "v1", reset=False)
    assert tracker.needs_load(tracker.current("e")["2024-01"], "v1", reset=True)
    assert tracker.needs_load(tracker.current("e")["2024-01"], "v2", reset=False)

    second = tracker.begin(_record("v2"))
    tracker.fail(second, "boom")
    current = tracker.current("e")["2024-01"]
    assert current.version_id == "v1" and current.row_count == 10  # a failed version never becomes current
    history = tracker.history("e", "2024-01")
    assert [(r.version_id, r.status, r.is_current) for r in history] == [
        ("v1", "completed", True), ("v2", "failed", False)]


def test_stale_running_rows_are_marked_interrupted(tracker: LoadStateTracker) -> None:
    tracker.begin(_record("v9"))
    stale = tracker.recover_interrupted("e")
    assert [r.version_id for r in stale] == ["v9"]
    assert tracker.history("e")[0].status == "interrupted"
    assert "interrupted" in tracker.history("e")[0].error_message
