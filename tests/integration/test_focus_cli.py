"""``finops aws focus [--check]`` and the import's refresh of the FOCUS relations, as users run them, on every
conformance target (the ``target`` fixture of test_multi_backend.py).

The bundled sample exports (one CUR v1, one CUR 2.0 export of the same payer and months) plus a native FOCUS 1.2
export written by ``examples/generate_focus_samples.py`` for the same payer and one of those months: the union
holds each (month, payer) once, from the highest-ranked export. Expected figures come from the generators' ground
truth and the sample's README, never from the views' SQL.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, run_cli
from tests.integration.backend_targets import SAMPLES, TRUTH
from tests.integration.targets import Target
from tests.integration.test_multi_backend import target  # noqa: F401 - the conformance targets' fixture

SAMPLE_PAYER = "123456789012"  # the payer of both sample exports (examples/generate_samples.py)




@pytest.fixture()
def bucket(tmp_path: Path) -> Path:
    root = tmp_path / "bucket"
    shutil.copytree(SAMPLES, root, ignore=shutil.ignore_patterns("README.md"))
    return root


def _env(target: Target, bucket: Path, **extra: str) -> dict[str, str]:  # noqa: F811
    return {**target.env(), "OPEN_FINOPS_AWS_SOURCE_DIR": str(bucket), **extra}


def _focus_export(gen: Any, bucket: Path, name: str, periods: list[str], payer: str, rows: int = 20) -> Any:
    default, gen.PAYER = gen.PAYER, payer  # read when rows are drawn
    try:
        return gen.write_focus_export(bucket, prefix="focus", export_name=name, periods=periods,
                                      rows_per_period=rows, seed=3)
    finally:
        gen.PAYER = default


def _union(target: Target, column: str | None = None) -> dict[tuple[str, str], int]:  # noqa: F811
    """(x_ExportName, YYYY-MM) → rows of ``focus`` (or its non-null values of ``column``), read through finops's
    own backend for the target."""
    from core.backends.factory import create_backend
    from core.config import Config
    from tests.conftest import cli_env
    from vendors.aws.focus.relations import month

    cfg = Config.load(None, environ=cli_env(target.env()))
    db = create_backend(cfg.database)
    dataset = db.dataset(cfg.aws.dataset_name)
    export, start = db.quote("x_ExportName"), db.quote("BillingPeriodStart")
    with db:
        db.open_dataset(dataset, create=False)
        counted = db.quote(column) if column else "*"
        rows = db.execute(f"SELECT {export}, {start}, COUNT({counted}) FROM {db.qualified(dataset, 'focus')} "
                          f"GROUP BY {export}, {start}").rows
    out: dict[tuple[str, str], int] = {}
    for name, value, count in rows:
        out[(name, month(value))] = out.get((name, month(value)), 0) + int(count)
    return out


def _doc_queries(target: Target) -> list[list[tuple[Any, ...]]]:  # noqa: F811
    """The example queries of docs/FOCUS.md, names quoted and the relation qualified as this engine needs."""
    import re

    from core.backends.factory import create_backend
    from core.config import Config
    from tests.conftest import cli_env

    text = (ROOT / "docs" / "FOCUS.md").read_text().split("## Example queries", 1)[1].split("\n## ", 1)[0]
    queries = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    assert len(queries) == 2
    cfg = Config.load(None, environ=cli_env(target.env()))
    db = create_backend(cfg.database)
    dataset = db.dataset(cfg.aws.dataset_name)
    with db:
        db.open_dataset(dataset, create=False)
        return [db.execute(re.sub(r'"(\w+)"', lambda m: db.quote(m.group(1)), q)
                           .replace("aws_billing.focus", db.qualified(dataset, "focus"))).rows for q in queries]


def test_focus_relations_count_each_month_once_and_check(target: Target, bucket: Path, focus_gen: Any) -> None:  # noqa: F811
    truth = _focus_export(focus_gen, bucket, "focus-daily", ["2024-02"], SAMPLE_PAYER)
    imported = run_cli("aws", "import-cur", "--json", env=_env(target, bucket))
    assert imported.code == 0, imported.stderr
    assert imported.json()["focus_error"] is None and imported.json()["summary"]["loaded"] == 5

    result = run_cli("aws", "focus", "--check", "--json", env=_env(target, bucket))
    assert result.code == 0, (result.stdout, result.stderr)
    doc = result.json()
    assert doc["views"] == ["cur2_daily_focus", "legacy_cur_focus", "focus"]
    by_export = {m["export_name"]: m for m in doc["members"]}
    assert [m["export_name"] for m in doc["members"]] == ["focus-daily", "cur2-daily", "legacy-cur"]
    assert by_export["focus-daily"]["kind"] == "FOCUS 1.2" and by_export["focus-daily"]["months_included"] == ["2024-02"]
    assert by_export["cur2-daily"]["months_included"] == ["2024-01"]
    assert by_export["cur2-daily"]["months_left_out"] == ["2024-02"]
    assert by_export["legacy-cur"]["months_left_out"] == ["2024-01", "2024-02"]
    assert doc["check"]["ok"] and doc["check"]["failures"] == [], doc["check"]
    # each (month, payer) once: January from CUR 2.0, February from the FOCUS export, nothing from CUR v1
    assert _union(target) == {("cur2-daily", "2024-01"): TRUTH[("cur2_daily", "2024-01")][0],
                              ("focus-daily", "2024-02"): truth.periods["2024-02"].rows}

    per_service, per_status = _doc_queries(target)
    state = run_cli("aws", "show-state", "--export-name", "cur2-daily", "--json", env=_env(target, bucket)).json()
    january = next(json.loads(r["source_sums"]) for r in state["records"] if r["billing_period"] == "2024-01")
    expected = january["line_item_net_unblended_cost"] + truth.periods["2024-02"].sums["BilledCost"]
    assert sum(float(row[2]) for row in per_service) == pytest.approx(expected, rel=1e-9)
    assert {row[0] for row in per_status} == {"cur2-daily", "focus-daily"}

    text = run_cli("aws", "focus", env=_env(target, bucket))
    assert text.code == 0 and "cur2_daily_focus" in text.stdout and "legacy-cur" in text.stdout

    unknown = run_cli("aws", "focus", "--json", env=_env(target, bucket, OPEN_FINOPS_FOCUS_EXPORTS="cur2-daily,nope"))
    assert unknown.code == 2, unknown.stderr
    assert "nope" in unknown.json()["error"]["message"]


def test_check_fails_naming_the_rule_a_focus_export_breaks(target: Target, bucket: Path, focus_gen: Any) -> None:  # noqa: F811
    truth = _focus_export(focus_gen, bucket, "focus-bad", ["2024-03"], "999988887777", rows=10)
    key = bucket / truth.periods["2024-03"].data_keys[0]
    table = pq.read_table(key)
    categories = table.column("ChargeCategory").to_pylist()
    categories[0] = "Discount"  # not a FOCUS ChargeCategory
    table = table.set_column(table.schema.get_field_index("ChargeCategory"), "ChargeCategory",
                             pa.array(categories, table.schema.field("ChargeCategory").type))
    pq.write_table(table, key)
    env = _env(target, bucket, OPEN_FINOPS_FOCUS_EXPORTS="focus-bad,cur2-daily")
    assert run_cli("aws", "import-cur", "--export-name", "focus-bad", env=env).code == 0
    assert run_cli("aws", "import-cur", "--export-name", "cur2-daily", env=env).code == 0

    result = run_cli("aws", "focus", "--check", "--json", env=env)
    assert result.code == 1, (result.stdout, result.stderr)
    doc = result.json()
    assert doc["not_selected"] == []  # legacy-cur was never imported here
    failures = [(f["rule"], f["relation"], f["count"], f["sample"]) for f in doc["check"]["failures"]]
    assert failures == [("ChargeCategory allowed values", "focus-bad", 1, "Discount")]
    text = run_cli("aws", "focus", "--check", env=env)
    assert text.code == 1 and "ChargeCategory allowed values" in text.stdout + text.stderr


def test_the_import_refresh_follows_a_column_added_by_a_later_month(target: Target, bucket: Path, gen: Any) -> None:  # noqa: F811
    env = _env(target, bucket, OPEN_FINOPS_AWS_EXPORT_NAME="cur2-daily")
    assert run_cli("aws", "import-cur", env=env).code == 0
    assert _union(target) == {("cur2-daily", "2024-01"): 2000, ("cur2-daily", "2024-02"): 2000}
    assert not any(_union(target, "CapacityReservationId").values())  # the sample has no capacity reservations
    # March brings the column CapacityReservationId is mapped from: the refreshed view reads it
    gen.write_cur2_export(bucket, prefix="exports", export_name="cur2-daily", periods=["2024-03"],
                          rows_per_period=40, seed=5, extra_columns=["capacity_reservation_capacity_reservation_arn"])
    result = run_cli("aws", "import-cur", "--json", env=env)
    assert result.code == 0, result.stderr
    assert result.json()["focus_error"] is None
    assert _union(target)[("cur2-daily", "2024-03")] == 40
    reserved = _union(target, "CapacityReservationId")
    assert reserved[("cur2-daily", "2024-03")] > 0 and reserved[("cur2-daily", "2024-01")] == 0
    nothing = run_cli("aws", "import-cur", "--json", env=env)  # nothing loaded: no refresh, nothing to report
    assert nothing.code == 0 and nothing.json()["focus_error"] is None


def test_a_refresh_that_fails_after_good_loads_is_exit_1_with_the_data_loaded(target: Target, bucket: Path) -> None:  # noqa: F811
    from core.backends.factory import create_backend
    from core.config import Config
    from tests.conftest import cli_env

    assert run_cli("aws", "import-cur", "--export-name", "legacy-cur", env=_env(target, bucket)).code == 0
    cfg = Config.load(None, environ=cli_env(target.env()))
    db = create_backend(cfg.database)
    dataset = db.dataset(cfg.aws.dataset_name)
    with db:  # a table of the user's own took the union's name: no view can replace it
        db.open_dataset(dataset, create=False)
        db.drop_view(dataset, "focus")
        db.execute(f"CREATE TABLE {db.qualified(dataset, 'focus')} ({db.quote('note')} INTEGER)")
    result = run_cli("aws", "import-cur", "--export-name", "cur2-daily", "--json", env=_env(target, bucket))
    assert result.code == 1, result.stderr
    doc = result.json()
    assert doc["summary"]["loaded"] == 2 and doc["summary"]["failed"] == 0 and doc["exit_code"] == 1
    assert doc["focus_error"] and "focus" in doc["focus_error"]
    text = run_cli("aws", "import-cur", "--export-name", "cur2-daily", "--reset", env=_env(target, bucket))
    assert text.code == 1 and "FOCUS relations not refreshed" in text.stderr
    state = run_cli("aws", "show-state", "--export-name", "cur2-daily", "--json", env=_env(target, bucket)).json()
    assert {r["status"] for r in state["records"] if r["is_current"]} == {"completed"}


@pytest.mark.duckdb
def test_focus_on_a_database_not_written_yet_creates_nothing(tmp_path: Path) -> None:
    from tests.integration.targets import DuckDBTarget

    duck = DuckDBTarget(tmp_path)
    result = run_cli("aws", "focus", "--check", "--json", env=duck.env())
    assert result.code == 0, result.stderr
    assert result.json()["union"] is None and result.json()["members"] == []
    assert not duck.path.exists()


@pytest.mark.duckdb
def test_check_on_the_real_focus_1_0_sample(tmp_path: Path, bucket: Path, focus_gen: Any) -> None:
    """The real FOCUS 1.0 sample (another provider's, CC BY 4.0) breaks three FOCUS 1.2 rules: docs/FOCUS.md."""
    from tests.integration.targets import DuckDBTarget

    sample = ROOT / "tests" / "fixtures" / "focus-1.0-real" / "focus_sample.csv"
    focus_gen.write_focus_csv_export(bucket, sample, period="2024-09", export_name="focus-real")
    env = _env(DuckDBTarget(tmp_path), bucket, OPEN_FINOPS_AWS_EXPORT_NAME="focus-real")
    assert run_cli("aws", "import-cur", env=env).code == 0
    result = run_cli("aws", "focus", "--check", "--json", env=env)
    assert result.code == 1
    assert [(f["rule"], f["count"], f["sample"]) for f in result.json()["check"]["failures"]] == [
        ("ContractedCost not null", 7, "2024-09-01 00:00:00+00"),
        ("ChargeFrequency allowed values", 7, "Usage-based"),
        ("EffectiveCost >= 0 outside credits and corrections", 12, "-0.01288992"),
    ]
