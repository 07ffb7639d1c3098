"""The FOCUS union ``focus`` over native FOCUS tables on every engine (``backend_targets.TARGETS``): months
deduplicated by rank through the view itself, a FOCUS 1.0 table's missing columns as typed NULLs, ``--check``'s
rules passing on clean data and naming the rule on data that breaks one, ``[focus] exports`` selection.

Expected figures come from the rows each test writes, never from the view's SQL.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import FocusSettings
from core.errors import ConfigError
from tests.integration.backend_targets import TARGETS, BackendTarget, Made
from tests.integration.focus_data import focus_rows, load_focus
from vendors.aws.focus.check import check
from vendors.aws.focus.relations import refresh
from vendors.aws.pipeline import read_state


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames:
        metafunc.parametrize("target", [t.param(metafunc.function.__name__) for t in TARGETS])


@pytest.fixture()
def made(target: BackendTarget, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Made]:
    for module in target.requires:
        importlib.import_module(module)
    instance = target.build(request, tmp_path, {})
    yield instance
    instance.backend.close()


class Focus:
    """A dataset with native FOCUS exports, and reads of its ``focus`` relation."""

    def __init__(self, made: Made, root: Path) -> None:
        self.backend, self.dataset, self.root = made.backend, made.dataset, root

    def load(self, export: str, period: str, account: str | list[str], costs: list[float], *, version: str = "1.2",
             version_id: str = "v1", **overrides: list[Any]) -> None:
        with self.backend:
            load_focus(self.backend, self.dataset, self.root, export, period,
                       focus_rows(period, account, costs, version=version, overrides=overrides),
                       version=version, version_id=version_id)

    def refresh(self, exports: list[str] | None = None) -> Any:
        state = read_state(self.backend, self.dataset)
        with self.backend:
            return refresh(self.backend, self.dataset, FocusSettings(exports=exports), state=state)

    def check(self, report: Any) -> Any:
        state = read_state(self.backend, self.dataset)
        with self.backend:
            return check(self.backend, self.dataset, report.members, state)

    def totals(self) -> dict[tuple[str, str, str], tuple[int, float]]:
        """(export, YYYY-MM, account) → (rows, SUM(BilledCost)) of the union."""
        b = self.backend
        cols = [b.quote(c) for c in ("x_ExportName", "BillingPeriodStart", "BillingAccountId")]
        sql = (f"SELECT {', '.join(cols)}, COUNT(*), SUM({b.quote('BilledCost')}) FROM "
               f"{b.qualified(self.dataset, 'focus')} GROUP BY {', '.join(cols)}")
        from vendors.aws.focus.relations import month

        with b:
            b.open_dataset(self.dataset, create=False)
            rows = b.execute(sql).rows
        return {(e, month(p), a): (int(n), round(float(c), 6)) for e, p, a, n, c in rows}

    def nulls(self, column: str, export: str) -> tuple[int, int]:
        """(rows, rows where ``column`` is NULL) of one export in the union."""
        b = self.backend
        q = b.quote
        sql = (f"SELECT COUNT(*), SUM(CASE WHEN {q(column)} IS NULL THEN 1 ELSE 0 END) FROM "
               f"{b.qualified(self.dataset, 'focus')} WHERE {q('x_ExportName')} = ?")
        with b:
            b.open_dataset(self.dataset, create=False)
            n, nulls = b.execute(sql, [export]).rows[0]
        return int(n), int(nulls or 0)


@pytest.fixture()
def focus(made: Made, tmp_path: Path) -> Focus:
    return Focus(made, tmp_path / "bucket")


def test_a_month_is_counted_once_by_rank_and_later_loads_follow(focus: Focus) -> None:
    focus.load("focus-old", "2024-01", "111111111111", [10.0, 1.5], version="1.0")
    # February: a second payer, which no other export covers
    focus.load("focus-old", "2024-02", ["111111111111", "222222222222"], [20.0, 7.0], version="1.0")
    focus.load("focus-new", "2024-02", "111111111111", [2.0, 3.0])
    report = focus.refresh()
    assert [m.export_name for m in report.members] == ["focus-new", "focus-old"]  # FOCUS 1.2 ranks first
    old = report.members[1]
    assert old.kind == "FOCUS 1.0" and old.months_included == ["2024-01", "2024-02"]
    assert old.months_partly_left_out == ["2024-02"] and old.months_left_out == []
    assert focus.totals() == {
        ("focus-new", "2024-02", "111111111111"): (2, 5.0),
        ("focus-old", "2024-01", "111111111111"): (2, 11.5),
        ("focus-old", "2024-02", "222222222222"): (1, 7.0),
    }
    # a later load of the higher-ranked export covers January too: the view leaves it out, not recreated
    focus.load("focus-new", "2024-01", "111111111111", [4.0])
    totals = focus.totals()
    assert ("focus-old", "2024-01", "111111111111") not in totals
    assert totals[("focus-new", "2024-01", "111111111111")] == (1, 4.0)


def test_a_focus_1_0_table_joins_with_typed_nulls(focus: Focus) -> None:
    focus.load("focus-old", "2024-01", "111111111111", [1.0, 2.0], version="1.0")
    focus.load("focus-new", "2024-02", "111111111111", [3.0], InvoiceId=["INV-1"])
    report = focus.refresh()
    old = next(m for m in report.members if m.export_name == "focus-old")
    assert "InvoiceId" in old.missing and "CommitmentDiscountQuantity" in old.missing
    assert focus.nulls("InvoiceId", "focus-old") == (2, 2)
    assert focus.nulls("InvoiceId", "focus-new") == (1, 0)
    # a typed NULL: a number column of a 1.0 table sums with the 1.2 table's numbers
    b = focus.backend
    with b:
        b.open_dataset(focus.dataset, create=False)
        total = b.execute(f"SELECT SUM(COALESCE({b.quote('CommitmentDiscountQuantity')}, 0) + "
                          f"{b.quote('BilledCost')}) FROM {b.qualified(focus.dataset, 'focus')}").rows[0][0]
    assert float(total) == pytest.approx(6.0)


def test_check_passes_on_clean_data(focus: Focus) -> None:
    focus.load("focus-new", "2024-01", "111111111111", [1.25, 2.5])
    focus.load("focus-old", "2024-01", "222222222222", [3.0], version="1.0")
    report = focus.refresh()
    checked = focus.check(report)
    assert checked.ok, [f.message for f in checked.failures]
    assert "ChargeCategory allowed values" in checked.rules and "BilledCost = source" in checked.rules


@pytest.mark.parametrize(("overrides", "rule", "count"), [
    ({"ChargeCategory": ["Usage", "Discount", "Discount"]}, "ChargeCategory allowed values", 2),
    ({"BillingAccountId": ["111111111111", None, "111111111111"]}, "BillingAccountId not null", 1),
    ({"ChargeClass": [None, "Refund", None]}, "ChargeClass allowed values", 1),
    ({"EffectiveCost": [1.0, -2.0, 3.0]}, "EffectiveCost >= 0 outside credits and corrections", 1),
])
def test_check_names_the_rule_a_row_breaks(focus: Focus, overrides: dict[str, list[Any]], rule: str,
                                           count: int) -> None:
    focus.load("focus-good", "2024-01", "333333333333", [1.0])
    focus.load("focus-bad", "2024-01", "111111111111", [1.0, 2.0, 3.0], **overrides)
    checked = focus.check(focus.refresh())
    assert not checked.ok
    assert [(f.rule, f.relation, f.count) for f in checked.failures] == [(rule, "focus-bad", count)]


def test_a_negative_effective_cost_of_a_credit_or_correction_passes(focus: Focus) -> None:
    focus.load("focus-new", "2024-01", "111111111111", [1.0, -2.0, -3.0],
               ChargeCategory=["Usage", "Credit", "Usage"], ChargeClass=[None, None, "Correction"])
    checked = focus.check(focus.refresh())
    assert checked.ok, [f.message for f in checked.failures]


def test_check_compares_billed_cost_with_the_state(focus: Focus) -> None:
    focus.load("focus-new", "2024-01", "111111111111", [1.0, 2.0])
    b = focus.backend
    with b:  # the table changed behind the state's back
        b.open_dataset(focus.dataset, create=False)
        b.execute(f"UPDATE {b.qualified(focus.dataset, 'focus_new')} SET {b.quote('BilledCost')} = 5.0")
    checked = focus.check(focus.refresh())
    assert [(f.rule, f.relation) for f in checked.failures] == [("BilledCost = source", "focus-new")]


def test_exports_setting_selects_and_refuses_unknown_names(focus: Focus) -> None:
    focus.load("focus-new", "2024-01", "111111111111", [1.0])
    focus.load("focus-old", "2024-01", "111111111111", [9.0], version="1.0")
    report = focus.refresh(["focus-old"])
    assert [m.export_name for m in report.members] == ["focus-old"] and report.not_selected == ["focus-new"]
    assert focus.totals() == {("focus-old", "2024-01", "111111111111"): (1, 9.0)}
    with pytest.raises(ConfigError, match="nope"):
        focus.refresh(["focus-old", "nope"])
