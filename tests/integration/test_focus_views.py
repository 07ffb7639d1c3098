"""The FOCUS 1.2 view of a CUR table (``<table>_focus``) on every conformance target (``backend_targets.TARGETS``).

Small CUR exports (``focus_cur_rules.py``: CUR 2.0 Parquet + manifest with the map columns, CUR v1 gzip CSV +
manifest) are imported through the real pipeline and viewed through :func:`vendors.aws.focus.views.cur_view` and
``backend.replace_views``. Every row's FOCUS values are compared with ``focus_cur_rules.expected``: the published
CUR → FOCUS rules applied in Python to the rows written, written from the rules (not from the view's SQL).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.integration.backend_targets import TARGETS, BackendTarget, Made
from tests.integration.focus_cur_rules import cur1_rows, cur2_rows, expected, first, write_cur1, write_cur2
from vendors.aws.focus.columns import FOCUS_COLUMNS, FOCUS_NAMES, X_COLUMNS
from vendors.aws.focus.views import cur_view


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames:
        metafunc.parametrize("target", [t.param(metafunc.function.__name__) for t in TARGETS])


@pytest.fixture()
def made(target: BackendTarget, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Made]:
    for module in target.requires:  # a missing driver is a failure of the target, never a skip
        importlib.import_module(module)
    instance = target.build(request, tmp_path, {})
    yield instance
    instance.backend.close()


# ------------------------------------------------------------------------------------------------ comparing

KINDS = {c.name: c.kind for c in FOCUS_COLUMNS + X_COLUMNS}


def _normal(kind: str, value: Any) -> Any:
    """A value as the engine returned it, made comparable: floats, aware UTC datetimes, parsed JSON."""
    if value is None:
        return None
    if kind == "double":
        return float(value)
    if kind == "timestamp":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if kind == "json":
        return json.loads(value) if isinstance(value, str) else value
    return value


def _same(kind: str, got: Any, want: Any) -> bool:
    if kind == "double" and got is not None and want is not None:
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    return got == want


def focus_rows(made: Made, view: str) -> dict[str, dict[str, Any]]:
    """The view's rows by ChargeDescription (unique in these exports), every FOCUS column normalised."""
    from sqlglot import exp

    backend = made.backend
    backend.open_dataset(made.dataset)
    query = exp.select(*[exp.column(n) for n in FOCUS_NAMES]).from_(backend.table_expression(made.dataset, view))
    rows = backend.execute(backend.render(query), what="reading the FOCUS view").rows
    out = {}
    for row in rows:
        values = {n: _normal(KINDS[n], v) for n, v in zip(FOCUS_NAMES, row, strict=True)}
        out[values["ChargeDescription"]] = values
    return out


def assert_matches(got: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    assert sorted(got) == sorted(r["line_item_line_item_description"] for r in rows)
    problems = []
    for row in rows:
        want = expected(row)
        have = got[row["line_item_line_item_description"]]
        problems += [f"{want['ChargeDescription']}.{n}: view {have[n]!r}, rules {want[n]!r}"
                     for n in FOCUS_NAMES if not _same(KINDS[n], have[n], want[n])]
    assert not problems, "\n".join(problems)


def import_exports(made: Made, root: Path, tmp_path: Path) -> None:
    from core.config import Config
    from vendors.aws.pipeline import run_aws_pipeline

    empty = tmp_path / "config.toml"
    empty.write_text("")
    config = Config.load(empty, environ={
        "OPEN_FINOPS_AWS_SOURCE_DIR": str(root), "OPEN_FINOPS_AWS_DATASET_NAME": made.dataset,
        "OPEN_FINOPS_PROJECT_DATA_DIR": str(tmp_path / "data"),
    })
    report = run_aws_pipeline(config, backend=made.backend)
    assert report.exit_code == 0, report.to_dict()


def create_view(made: Made, table: str) -> str:
    name, sql = cur_view(made.backend, made.dataset, table)
    made.backend.replace_views(made.dataset, [(name, sql)])
    return name


# ------------------------------------------------------------------------------------------------ the tests


def test_cur2_focus_view_matches_the_rules(target: BackendTarget, made: Made, tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    rows = cur2_rows()
    write_cur2(root, "focus-cur2", "2024-03", rows)
    import_exports(made, root, tmp_path)
    view = create_view(made, "focus_cur2")
    assert view == "focus_cur2_focus"
    assert view in made.backend.view_names(made.dataset)
    assert_matches(focus_rows(made, view), rows)
    # replacing it again (a refresh) is fine, and a BilledCost sum equals the CUR's net unblended sum
    create_view(made, "focus_cur2")
    got = focus_rows(made, view)
    assert math.isclose(sum(r["BilledCost"] for r in got.values()),
                        sum(first(r["line_item_net_unblended_cost"], r["line_item_unblended_cost"]) for r in rows))


def test_cur1_focus_view_matches_the_rules(target: BackendTarget, made: Made, tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    rows = cur1_rows()
    write_cur1(root, "legacy-focus", rows)
    import_exports(made, root, tmp_path)
    view = create_view(made, "legacy_focus")
    assert_matches(focus_rows(made, view), rows)


def test_widened_table_regenerates_a_working_view(target: BackendTarget, made: Made, tmp_path: Path) -> None:
    """March has no net Savings Plan cost column; April adds it: the view made after April reads it."""
    root = tmp_path / "bucket"
    march = [r for r in cur2_rows() if r["line_item_line_item_type"] in ("Usage", "SavingsPlanCoveredUsage")]
    for row in march:
        row["savings_plan_net_savings_plan_effective_cost"] = None
    write_cur2(root, "drift-cur2", "2024-03", march, drop=("savings_plan_net_savings_plan_effective_cost",))
    import_exports(made, root, tmp_path)
    view = create_view(made, "drift_cur2")
    assert_matches(focus_rows(made, view), march)

    april = []
    for row in cur2_rows():
        if row["line_item_line_item_type"] == "SavingsPlanCoveredUsage":
            april.append({**row, "line_item_line_item_description": "april-sp-covered",
                          "identity_line_item_id": "april-sp-covered",
                          "bill_billing_period_start_date": datetime(2024, 4, 1, tzinfo=UTC),
                          "bill_billing_period_end_date": datetime(2024, 5, 1, tzinfo=UTC),
                          "line_item_usage_start_date": datetime(2024, 4, 2, 3, tzinfo=UTC),
                          "line_item_usage_end_date": datetime(2024, 4, 2, 4, tzinfo=UTC)})
    write_cur2(root, "drift-cur2", "2024-04", april)
    import_exports(made, root, tmp_path)
    made.backend.open_dataset(made.dataset)
    assert "savings_plan_net_savings_plan_effective_cost" in made.backend.table_columns(made.dataset, "drift_cur2")
    create_view(made, "drift_cur2")
    assert_matches(focus_rows(made, view), march + april)


def test_replace_views_in_order_and_drop(target: BackendTarget, made: Made, tmp_path: Path) -> None:
    """A view over a view, both replaced in one call (the second reads the first), then dropped."""
    from sqlglot import exp

    root = tmp_path / "bucket"
    rows = cur2_rows()[:3]
    write_cur2(root, "order-cur2", "2024-03", rows)
    import_exports(made, root, tmp_path)
    backend, dataset = made.backend, made.dataset
    name, sql = cur_view(backend, dataset, "order_cur2")
    total = exp.select(exp.Sum(this=exp.column("BilledCost")).as_("total")).from_(backend.table_expression(dataset, name))
    for _ in range(2):  # the second time, both exist: replaced, the dependant too
        backend.replace_views(dataset, [(name, sql), ("order_total", backend.render(total))])
    read = exp.select(exp.column("total")).from_(backend.table_expression(dataset, "order_total"))
    assert math.isclose(float(backend.execute(backend.render(read)).rows[0][0]),
                        sum(first(r["line_item_net_unblended_cost"], r["line_item_unblended_cost"]) for r in rows))
    assert {name, "order_total"} <= set(backend.view_names(dataset))
    backend.drop_view(dataset, "order_total")
    backend.drop_view(dataset, "order_total")  # absent: nothing to do
    assert "order_total" not in backend.view_names(dataset)
    assert name in backend.view_names(dataset)



def _source_billed(export_dir: Path) -> dict[str, float]:
    """Per period, the BilledCost the rules give, summed from the export's own files (Parquet: net unblended where
    set, else unblended; CSV: unblended, CUR v1 having no net column here)."""
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    sums: dict[str, float] = {}
    for path in sorted(export_dir.rglob("*")):
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            billed = pc.coalesce(table["line_item_net_unblended_cost"], table["line_item_unblended_cost"])
            period = path.parent.name.split("=")[1]
        elif path.name.endswith(".csv.gz"):
            table = pcsv.read_csv(path)
            billed = table["lineItem/UnblendedCost"]
            folder = path.parent.parent.name  # YYYYMMDD-YYYYMMDD
            period = f"{folder[:4]}-{folder[4:6]}"
        else:
            continue
        sums[period] = sums.get(period, 0.0) + pc.sum(billed).as_py()
    return sums


def test_sample_exports_views_are_complete_and_sum_to_the_source(target: BackendTarget, made: Made,
                                                                 tmp_path: Path) -> None:
    """The bundled sample exports (CUR v1 CSV, CUR 2.0 Parquet): no mandatory FOCUS column is NULL, and BilledCost
    per billing period equals the sum taken from the files themselves."""
    from sqlglot import exp

    from tests.integration.backend_targets import SAMPLES

    import_exports(made, SAMPLES, tmp_path)
    backend, dataset = made.backend, made.dataset
    mandatory = [c.name for c in FOCUS_COLUMNS if c.mandatory]
    for table, folder in (("legacy_cur", SAMPLES / "cur" / "legacy-cur"),
                          ("cur2_daily", SAMPLES / "exports" / "cur2-daily")):
        view = create_view(made, table)
        nulls = [exp.Sum(this=exp.Case().when(exp.column(n).is_(exp.null()), exp.Literal.number(1))
                         .else_(exp.Literal.number(0))) for n in mandatory]
        counts = backend.execute(backend.render(exp.select(*nulls).from_(backend.table_expression(dataset, view)))).rows[0]
        assert dict(zip(mandatory, (int(c or 0) for c in counts), strict=True)) == dict.fromkeys(mandatory, 0), table
        month = exp.Substring(this=exp.cast(exp.column("BillingPeriodStart"), "TEXT"), start=exp.Literal.number(1),
                              length=exp.Literal.number(7))
        query = (exp.select(exp.alias_(month, "m"), exp.Sum(this=exp.column("BilledCost")))
                 .from_(backend.table_expression(dataset, view)).group_by(exp.column("m")))
        got = {str(m): float(total) for m, total in backend.execute(backend.render(query)).rows}
        want = _source_billed(folder)
        assert got.keys() == want.keys(), (table, got)
        for period, total in want.items():
            assert math.isclose(got[period], total, rel_tol=1e-9, abs_tol=1e-6), (table, period, got[period], total)


def test_a_refused_view_leaves_the_views_as_they_were_where_ddl_is_transactional(
        target: BackendTarget, made: Made, tmp_path: Path) -> None:
    """The second view of a call is refused (its name is the export table's): with transactional DDL the first keeps
    its old definition; where each statement commits by itself (MariaDB, Snowflake, BigQuery) the first is already
    replaced. The error names the view; the table is untouched."""
    from sqlglot import exp

    from core.errors import LoadError

    root = tmp_path / "bucket"
    write_cur2(root, "atomic-cur2", "2024-03", cur2_rows()[:1])
    import_exports(made, root, tmp_path)
    backend, dataset = made.backend, made.dataset

    def constant(value: int) -> str:
        return backend.render(exp.select(exp.alias_(exp.Literal.number(value), "x"))
                              .from_(backend.table_expression(dataset, "atomic_cur2")))

    backend.replace_views(dataset, [("atomic_v", constant(1))])
    with pytest.raises(LoadError, match="atomic_cur2"):
        backend.replace_views(dataset, [("atomic_v", constant(2)), ("atomic_cur2", constant(3))])
    read = backend.render(exp.select(exp.column("x")).from_(backend.table_expression(dataset, "atomic_v")))
    assert int(backend.execute(read).rows[0][0]) == (1 if backend.capabilities.transactional_ddl else 2)
    assert "atomic_cur2" not in backend.view_names(dataset)
    assert "line_item_unblended_cost" in backend.table_columns(dataset, "atomic_cur2")
    assert len(backend.execute(backend.render(exp.select("*").from_(backend.table_expression(dataset, "atomic_cur2"))))
               .rows) == 1
