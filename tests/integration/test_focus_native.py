"""AWS's native FOCUS exports on every conformance target: detected with no flag, FOCUS names kept, sums reconciled,
the kind recorded and listed, drift, restatements, verification.

The CLI runs as a separate process against the moto S3 server; ground truth comes from the generator
(examples/generate_focus_samples.py) and from the real FOCUS 1.0 sample under tests/fixtures.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, load_example, run_cli
from tests.integration.conftest import S3
from tests.integration.targets import Target
from tests.integration.test_multi_backend import target  # noqa: F401  (the conformance targets)

EXPORT, TABLE = "focus-daily", "focus_daily"
REAL_EXPORT, REAL_TABLE = "focus-real", "focus_real"
REAL = ROOT / "tests" / "fixtures" / "focus-1.0-real" / "focus_sample.csv"
#: the real sample's BilledCost total and its NULLs in AvailabilityZone (counted with a CSV reader)
REAL_BILLED, REAL_AZ_NULLS = Decimal("20.52022672899003"), 893


def _generator() -> Any:
    return load_example("generate_focus_samples")


class Focus:
    def __init__(self, s3: S3, root: Path) -> None:
        self.s3, self.root, self.gen = s3, root, _generator()
        self.bucket = s3.new_bucket()

    def env(self, db: Target) -> dict[str, str]:
        return {**self.s3.env(), **db.env(), "OPEN_FINOPS_AWS_BUCKET": self.bucket}

    def write(self, periods: list[str], rows: int, **kwargs: Any) -> Any:
        truth = self.gen.write_focus_export(self.root, prefix="exports", export_name=EXPORT, periods=periods,
                                            rows_per_period=rows, **kwargs)
        self.s3.sync_tree(self.root, self.bucket)
        return truth


@pytest.fixture()
def focus(s3: S3, tmp_path: Path) -> Focus:
    return Focus(s3, tmp_path / "bucket")


def _q(db: Target, name: str) -> str:
    """A mixed-case identifier quoted for the target's SQL (backticks where the engine wants them)."""
    tick = db.name in ("mariadb", "bigquery")
    return f"`{name}`" if tick else f'"{name}"'


def _totals(db: Target, table: str, column: str = "BilledCost") -> dict[str, tuple[int, float]]:
    rows = db.query(f"SELECT billing_period, COUNT(*), SUM({_q(db, column)}) FROM {db.table(table)} "
                    "GROUP BY billing_period ORDER BY billing_period")
    return {period: (int(n), float(cost or 0)) for period, n, cost in rows}


def _column_names(db: Target, table: str) -> set[str]:
    if db.name == "snowflake":  # its helper lower-cases names; read them as stored
        rows = db.query("SELECT column_name FROM information_schema.columns WHERE UPPER(table_schema) = "
                        "UPPER(?) AND UPPER(table_name) = UPPER(?)", (db.dataset, table))  # type: ignore[attr-defined]
        return {name for (name,) in rows}
    return set(db.column_types(table))


def _import(focus: Focus, db: Target, *args: str) -> Any:
    result = run_cli("aws", "import-cur", "--json", *args, env=focus.env(db))
    assert result.stdout.strip(), result.stderr
    return result


def _assert_period(db: Target, table: str, truth: Any, period: str) -> None:
    expected = truth.periods[period]
    for column in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
        rows, total = _totals(db, table, column)[period]
        assert rows == expected.rows, (period, column)
        assert Decimal(str(total)) == pytest.approx(Decimal(str(expected.sums[column])), abs=Decimal("1e-6")), (
            period, column)


def test_a_focus_1_2_export_imports_with_its_names_and_reconciles(focus: Focus, target: Target) -> None:  # noqa: F811
    truth = focus.write(["2025-01", "2025-02"], 150, files_per_period=2, seed=4)
    result = _import(focus, target, "--export-name", EXPORT)  # no --cur-version, no FOCUS flag
    assert result.code == 0, result.stderr
    report = result.json()
    assert [(p["billing_period"], p["status"], p["period_status"]) for p in report["periods"]] == [
        ("2025-01", "loaded", "final"), ("2025-02", "loaded", "estimated")]
    for period in ("2025-01", "2025-02"):
        _assert_period(target, TABLE, truth, period)

    names = _column_names(target, TABLE)
    for name in ("BilledCost", "ChargePeriodStart", "SubAccountId", "Tags", "x_ServiceCode", "InvoiceId",
                 "billing_period"):
        assert name in names, (name, sorted(names))
    assert not {"billed_cost", "x_service_code", "line_item_unblended_cost"} & names
    if target.name != "snowflake":
        types = target.column_types(TABLE)
        assert target.json_type in types["Tags"] and target.json_type in types["x_CostCategories"]
        assert any(word in types["ChargePeriodStart"] for word in ("timestamp", "datetime"))
        assert any(word in types["BilledCost"] for word in ("double", "float", "real"))
    credits = target.query(f"SELECT COUNT(*) FROM {target.table(TABLE)} WHERE {_q(target, 'ChargeCategory')} = ? "
                           f"AND {_q(target, 'BilledCost')} < 0", ("Credit",))
    assert credits[0][0] == 2  # one credit row per month, negative

    env = focus.env(target)
    state = run_cli("aws", "show-state", "--json", env=env).json()["records"]
    assert {(r["billing_period"], r["data_format_version"], r["period_status"]) for r in state} == {
        ("2025-01", "focus-1.2", "final"), ("2025-02", "focus-1.2", "estimated")}
    exports = run_cli("aws", "list-exports", "--json", env=env).json()["exports"]
    assert [(e["table"], e["kind"], e["cost_column"]) for e in exports] == [(TABLE, "focus-1.2", "BilledCost")]
    assert {p["billing_period"]: Decimal(str(p["cost"])) for p in exports[0]["periods"]} == {
        period: pytest.approx(Decimal(str(t.sums["BilledCost"])), abs=Decimal("1e-6"))
        for period, t in truth.periods.items()}
    manifests = run_cli("aws", "list-manifests", "--json", env=env).json()["manifests"]
    assert {(m["kind"], m["cur_version"], m["loaded"]) for m in manifests} == {("focus-1.2", "v2", True)}

    verify = run_cli("aws", "verify", "--json", env=env)
    assert verify.code == 0, verify.stdout + verify.stderr
    checks = verify.json()["periods"]
    assert {c["status"] for c in checks} == {"match"}
    assert set(checks[0]["source"]["sums"]) == {"BilledCost", "EffectiveCost", "ListCost", "ContractedCost"}
    assert checks[0]["source"]["by_key"] and checks[0]["source"]["by_key"] == pytest.approx(checks[0]["table"]["by_key"])


def test_the_real_focus_1_0_sample_imports_as_focus_1_0(focus: Focus, target: Target) -> None:  # noqa: F811
    focus.gen.write_focus_csv_export(focus.root, REAL, period="2024-09", prefix="exports", export_name=REAL_EXPORT)
    focus.s3.sync_tree(focus.root, focus.bucket)
    result = _import(focus, target)
    assert result.code == 0, result.stderr
    assert [(p["export_name"], p["status"], p["rows"], p["period_status"]) for p in result.json()["periods"]] == [
        (REAL_EXPORT, "loaded", 1000, None)]  # FOCUS 1.0 has no InvoiceId: never called final (nor estimated)
    rows, billed = _totals(target, REAL_TABLE)["2024-09"]
    assert rows == 1000 and Decimal(str(billed)) == pytest.approx(REAL_BILLED, abs=Decimal("1e-9"))
    az = _q(target, "AvailabilityZone")
    nulls = target.query(f"SELECT COUNT(*) - COUNT({az}), SUM(CASE WHEN {az} = ? THEN 1 ELSE 0 END) "
                         f"FROM {target.table(REAL_TABLE)}", ("NULL",))[0]
    assert (int(nulls[0]), int(nulls[1] or 0)) == (REAL_AZ_NULLS, 0)  # the literal NULL is a NULL
    assert {"Id", "BilledCost", "Tags"} <= _column_names(target, REAL_TABLE)

    env = focus.env(target)
    exports = run_cli("aws", "list-exports", "--json", env=env).json()["exports"]
    assert [(e["table"], e["kind"]) for e in exports] == [(REAL_TABLE, "focus-1.0")]
    state = run_cli("aws", "show-state", "--json", env=env).json()["records"]
    assert [(r["data_format_version"], r["period_status"]) for r in state] == [("focus-1.0", None)]


def test_a_later_focus_month_with_a_new_column_widens_the_table(focus: Focus, target: Target) -> None:  # noqa: F811
    focus.write(["2025-01"], 60, seed=5)
    assert _import(focus, target).code == 0
    march = focus.write(["2025-02"], 40, seed=6, extra_columns=["x_NewFeature"])
    result = _import(focus, target)
    assert result.code == 0, result.stderr
    assert "x_NewFeature" in _column_names(target, TABLE)
    _assert_period(target, TABLE, march, "2025-02")
    filled = target.query(f"SELECT billing_period, COUNT({_q(target, 'x_NewFeature')}) FROM {target.table(TABLE)} "
                          "GROUP BY billing_period ORDER BY billing_period")
    assert [(period, count > 0) for period, count in filled] == [("2025-01", False), ("2025-02", True)]


def test_a_restated_focus_month_replaces_the_previous_version(focus: Focus, target: Target) -> None:  # noqa: F811
    first = focus.write(["2025-01", "2025-02"], 80, seed=7)
    assert _import(focus, target).code == 0
    restated = focus.write(["2025-02"], 55, seed=8, execution_ids={"2025-02": "exec-restated"})
    result = _import(focus, target)
    assert result.code == 0, result.stderr
    loaded = [p for p in result.json()["periods"] if p["status"] == "loaded"]
    assert [(p["billing_period"], p["version_id"]) for p in loaded] == [("2025-02", "exec-restated")]
    assert loaded[0]["reason"].startswith("restated")
    _assert_period(target, TABLE, restated, "2025-02")
    _assert_period(target, TABLE, first, "2025-01")  # untouched

    changes = run_cli("aws", "show-changes", "--json", env=focus.env(target))
    assert changes.code == 0, changes.stderr
    rows = changes.json()["changes"]
    assert rows and {r["new_version"] for r in rows} == {"exec-restated"}
    assert all(r["SubAccountId"] and r["ServiceName"] and r["ChargeCategory"] for r in rows)
    delta = sum((r["new_cost"] or 0) - (r["old_cost"] or 0) for r in rows)
    expected = restated.periods["2025-02"].sums["BilledCost"] - first.periods["2025-02"].sums["BilledCost"]
    assert delta == pytest.approx(expected, abs=1e-6)
    history = run_cli("aws", "show-state", "--billing-period", "2025-02", "--json",
                      env=focus.env(target)).json()["records"]
    assert sorted((r["version_id"], r["is_current"]) for r in history) == sorted(
        [(first.periods["2025-02"].version_id, False), ("exec-restated", True)])


def test_a_focus_file_that_does_not_reconcile_keeps_the_previous_version(focus: Focus, target: Target) -> None:  # noqa: F811
    """A month whose second file is cut short fails and leaves the previous version in place."""
    first = focus.write(["2025-01"], 60, seed=9)
    assert _import(focus, target).code == 0
    bad = focus.write(["2025-01"], 90, files_per_period=2, seed=10, execution_ids={"2025-01": "exec-bad"})
    victim = focus.root / bad.periods["2025-01"].data_keys[-1]
    victim.write_bytes(victim.read_bytes()[:200])
    focus.s3.upload_tree(focus.root, focus.bucket)
    result = _import(focus, target)
    assert result.code == 1
    assert [p["status"] for p in result.json()["periods"]] == ["failed"]
    _assert_period(target, TABLE, first, "2025-01")
    assert json.dumps(result.json()).count("exec-bad") >= 1


def test_db_copy_of_a_focus_table_verifies_billed_cost(s3: S3, tmp_path: Path) -> None:
    """``db copy`` compares BilledCost on both sides of a FOCUS table, and the copy keeps the FOCUS names."""
    from tests.integration.targets import DuckDBTarget, SQLiteTarget

    focus = Focus(s3, tmp_path / "bucket")
    duck, lite = DuckDBTarget(tmp_path), SQLiteTarget(tmp_path)
    truth = focus.write(["2025-01", "2025-02"], 70, seed=12)
    env = {**focus.env(duck), "OPEN_FINOPS_DATABASE_SQL_CREDENTIALS": f"sqlite:///{lite.path}"}
    assert run_cli("aws", "import-cur", env=env).code == 0
    copy = run_cli("db", "copy", "--from", "duckdb", "--to", "sql", "--json", env=env)
    assert copy.code == 0, copy.stderr
    periods = {p["billing_period"]: p for p in copy.json()["periods"]}
    for period, expected in truth.periods.items():
        for side in ("source_cost", "destination_cost"):
            assert periods[period][side] == pytest.approx(expected.sums["BilledCost"], abs=1e-6), (period, side)
    assert {"BilledCost", "x_ServiceCode", "Tags"} <= set(lite.column_types(TABLE))
    copied, loaded = _totals(lite, TABLE), _totals(duck, TABLE)
    assert {k: n for k, (n, _) in copied.items()} == {k: n for k, (n, _) in loaded.items()}
    assert {k: c for k, (_, c) in copied.items()} == pytest.approx({k: c for k, (_, c) in loaded.items()})
