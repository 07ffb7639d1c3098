"""Native FOCUS exports: which kind a period is (v1, v2, focus-1.0, focus-1.2), and how a FOCUS file is named and typed.

Real files on disk through the real readers; the FOCUS 1.0 sample is the one under tests/fixtures (never ../shared).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from core.backends.base import SourceColumn, SourceFile
from core.backends.readers import Boto3DataReader
from core.config import Config
from core.storage import LocalStore
from vendors.aws.focus import native
from vendors.aws.manifest import find_manifests
from vendors.aws.pipeline import period_source, scan_source

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests" / "fixtures" / "focus-1.0-real" / "focus_sample.csv"




def _real_header() -> list[str]:
    with open(REAL, encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle))


CUR2_COLUMNS = ["identity_line_item_id", "bill_billing_period_start_date", "line_item_unblended_cost",
                "line_item_usage_start_date", "resource_tags", "product"]


def test_the_kind_comes_from_the_layout_and_the_columns() -> None:
    header = _real_header()
    assert native.export_kind("v1", header) == "v1"  # FOCUS exports never use CUR v1's folders
    assert native.export_kind("v2", CUR2_COLUMNS) == "v2"  # a CUR 2.0 export is not FOCUS
    assert native.export_kind("v2", header) == "focus-1.0"  # the real FOCUS 1.0 sample
    assert native.export_kind("v2", [*header, "InvoiceId"]) == "focus-1.2"
    for only_in_1_2 in ("ServiceSubcategory", "CommitmentDiscountQuantity", "SkuMeter", "PricingCurrency"):
        assert native.export_kind("v2", [*header, only_in_1_2]) == "focus-1.2", only_in_1_2
    assert native.export_kind("v2", ["BilledCost", "line_item_unblended_cost"]) == "v2"  # both markers needed
    assert native.export_kind("v2", []) is None  # no columns listed: the data decides


def test_a_focus_manifest_is_detected_and_a_cur2_one_is_not(tmp_path: Path, focus_gen: Any, gen: Any) -> None:
    focus_gen.write_focus_export(tmp_path, prefix="exports", export_name="focus-daily", periods=["2025-01"],
                                 rows_per_period=20)
    gen.write_cur2_export(tmp_path, prefix="exports", export_name="cur2-daily", periods=["2025-01"],
                          rows_per_period=20)
    scan = find_manifests(LocalStore(tmp_path), prefix="exports")
    assert {m.export_name: (m.cur_version, m.kind) for m in scan.manifests} == {
        "focus-daily": ("v2", "focus-1.2"), "cur2-daily": ("v2", "v2")}
    # --cur-version v2 still matches a FOCUS export's layout
    scan = find_manifests(LocalStore(tmp_path), prefix="exports", export_name="focus-daily", cur_version="v2")
    assert [m.kind for m in scan.manifests] == ["focus-1.2"]


def _config(tmp_path: Path, **aws: Any) -> Config:
    return Config.load(None, overrides={"aws": {"source_dir": tmp_path, **aws}})


def test_a_manifest_without_columns_is_decided_by_its_data_file(tmp_path: Path, focus_gen: Any) -> None:
    focus_gen.write_focus_csv_export(tmp_path, REAL, period="2024-09", export_name="real", list_columns=False)
    truth = focus_gen.write_focus_export(tmp_path, export_name="parquet", periods=["2025-01"], rows_per_period=10)
    key = truth.periods["2025-01"].manifest_key
    doc = json.loads((tmp_path / key).read_text())
    del doc["columns"]
    (tmp_path / key).write_text(json.dumps(doc))
    scan = scan_source(_config(tmp_path), LocalStore(tmp_path))
    assert {m.export_name: m.kind for m in scan.manifests} == {"real": "focus-1.0", "parquet": "focus-1.2"}
    assert not scan.problems


def test_an_export_holding_cur_and_focus_periods_is_refused(tmp_path: Path, focus_gen: Any, gen: Any) -> None:
    gen.write_cur2_export(tmp_path, prefix="x", export_name="mixed", periods=["2025-01"], rows_per_period=5)
    focus_gen.write_focus_export(tmp_path, prefix="x", export_name="mixed", periods=["2025-02"], rows_per_period=5)
    scan = scan_source(_config(tmp_path, prefix="x"), LocalStore(tmp_path))
    assert scan.manifests == []
    assert sorted(p.billing_period for p in scan.problems) == ["2025-01", "2025-02"]
    assert all("both CUR and FOCUS" in p.error.message for p in scan.problems)


def test_focus_names_are_kept_and_typed_by_the_file_the_manifest_or_the_spec(tmp_path: Path, focus_gen: Any) -> None:
    focus_gen.write_focus_csv_export(tmp_path, REAL, period="2024-09", export_name="real")
    truth = focus_gen.write_focus_export(tmp_path, export_name="pq", periods=["2025-01"], rows_per_period=10)
    store = LocalStore(tmp_path)
    reader = Boto3DataReader(store)
    by_name = {m.export_name: m for m in scan_source(_config(tmp_path), store).manifests}

    csv_period = period_source(by_name["real"], store)
    assert csv_period.data_format_version == "focus-1.0"
    assert csv_period.checks is not None and csv_period.checks.invoice_column is None  # 1.0 has no InvoiceId
    plan = csv_period.plan(reader.describe(by_name["real"].data_keys[0]))
    kinds = {spec.target: spec.kind for spec in plan.columns}
    assert list(kinds) == _real_header()  # names exactly as spelt, in order
    assert kinds["BilledCost"] == kinds["ContractedCost"] == kinds["ConsumedQuantity"] == "double"
    assert kinds["ListUnitPrice"] == "double"
    assert kinds["ChargePeriodStart"] == kinds["BillingPeriodEnd"] == "timestamp"
    assert kinds["Tags"] == "json"
    assert kinds["BillingAccountId"] == kinds["SubAccountId"] == kinds["Id"] == "string"
    assert plan.null_values == ("NULL",) and plan.constants == (("billing_period", "2024-09"),)

    pq_period = period_source(by_name["pq"], store)
    assert pq_period.data_format_version == "focus-1.2"
    assert pq_period.checks is not None and pq_period.checks.invoice_column == "InvoiceId"
    assert pq_period.checks.sum_columns == ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
    assert pq_period.checks.change_keys == ("SubAccountId", "ServiceName", "ChargeCategory")
    plan = pq_period.plan(reader.describe(truth.periods["2025-01"].data_keys[0]))
    kinds = {spec.target: spec.kind for spec in plan.columns}
    assert kinds["Tags"] == kinds["x_CostCategories"] == kinds["SkuPriceDetails"] == "json"  # Parquet maps
    assert kinds["BilledCost"] == "double" and kinds["ChargePeriodStart"] == "timestamp"
    assert "x_ServiceCode" in kinds and plan.null_values == ()  # Parquet has real nulls


def test_csv_types_come_from_the_manifest_before_the_spec_rules() -> None:
    source = SourceFile("k.csv", "csv", None, tuple(SourceColumn(n, "string") for n in (
        "BilledCost", "x_Discounts", "ChargePeriodStart", "x_Custom", "x_SavingsCost", "billing_period")))
    specs = {s.source: s for s in native.column_specs(source, {"x_Discounts": "map<string, string>",
                                                                "x_Custom": "double",
                                                                "ChargePeriodStart": "timestamp_milliseconds"})}
    assert specs["x_Discounts"].kind == "json" and specs["x_Custom"].kind == "double"
    assert specs["ChargePeriodStart"].kind == "timestamp"
    assert specs["BilledCost"].kind == "double" and specs["x_SavingsCost"].kind == "double"  # *Cost rule
    assert specs["billing_period"].target.startswith("billing_period_")  # ours: the source's is renamed


def test_the_literal_null_of_a_focus_csv_is_read_as_null(tmp_path: Path, focus_gen: Any) -> None:
    focus_gen.write_focus_csv_export(tmp_path, REAL, period="2024-09", export_name="real")
    store = LocalStore(tmp_path)
    manifest = scan_source(_config(tmp_path), store).manifests[0]
    reader = Boto3DataReader(store)
    plan = period_source(manifest, store).plan(reader.describe(manifest.data_keys[0]))
    import pyarrow as pa

    table = pa.Table.from_batches(list(reader.batches(plan)))
    assert table.num_rows == 1000
    assert table.column("AvailabilityZone").null_count == 893  # the sample writes NULL 893 times there
    assert table.column("ContractedCost").null_count == 7
    assert abs(sum(v for v in table.column("BilledCost").to_pylist()) - 20.52022672899003) < 1e-9
    assert table.column("ChargePeriodStart").type == pa.timestamp("us", tz="UTC")


def test_the_sample_generator_writes_every_kind_of_row(tmp_path: Path, focus_gen: Any) -> None:
    truth = focus_gen.write_focus_export(tmp_path, periods=["2025-01", "2025-02"], rows_per_period=50, seed=3)
    closed, open_ = truth.periods["2025-01"], truth.periods["2025-02"]
    assert closed.rows == open_.rows == 50
    assert set(closed.categories) == {"Usage", "Purchase", "Credit", "Tax", "Adjustment"}
    assert closed.invoice_id and open_.invoice_id is None
    doc = json.loads((tmp_path / closed.manifest_key).read_text())
    assert {"executionId", "billingPeriod", "dataFiles", "columns"} <= set(doc)
    assert doc["executionId"] == closed.version_id
    assert closed.sums["BilledCost"] != closed.sums["EffectiveCost"]  # commitments amortised
