"""examples/generate_samples.py: layout, manifests and ground truth, re-read without DuckDB."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zipfile
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROWS = 240


# ---------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    raw = path.read_bytes()
    if path.name.endswith(".csv.gz"):
        text = gzip.decompress(raw).decode("utf-8")
    elif path.name.endswith(".csv.zip"):
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            names = zf.namelist()
            assert len(names) == 1 and names[0].endswith(".csv")
            text = zf.read(names[0]).decode("utf-8")
    else:
        assert path.name.endswith(".csv")
        text = raw.decode("utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    return header, list(reader)


def _read_v1(root: Path, keys: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    for key in keys:
        h, body = _csv_rows(root / key)
        if header is None:
            header = h
        assert h == header
        for r in body:
            assert len(r) == len(h)
            rows.append(dict(zip(h, r)))
    assert header is not None
    return header, rows


def _read_parquet(root: Path, keys: list[str]) -> pa.Table:
    return pa.concat_tables([pq.read_table(root / k) for k in keys])


def _dec_sum(values) -> Decimal:
    return sum((Decimal(str(v)) for v in values if v is not None), Decimal(0))


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------------
# CUR v1
# ---------------------------------------------------------------------------------------------


def test_v1_create_new_gzip_csv(gen, tmp_path: Path) -> None:
    truth = gen.write_cur1_export(tmp_path, prefix="cur", export_name="legacy", periods=["2024-01", "2024-02"],
                                  rows_per_period=ROWS, parts=3, seed=7)
    assert truth.cur_version == "v1" and truth.prefix == "cur" and list(truth.periods) == ["2024-01", "2024-02"]
    folders = {"2024-01": "20240101-20240201", "2024-02": "20240201-20240301"}
    for period, pt in truth.periods.items():
        period_dir = f"cur/legacy/{folders[period]}"
        manifest_key = f"{period_dir}/legacy-Manifest.json"
        assert pt.manifest_key == manifest_key
        manifest = json.loads((tmp_path / manifest_key).read_text())
        assert manifest["assemblyId"] == pt.version_id
        assert manifest["reportName"] == "legacy"
        assert manifest["bucket"] == "sample-bucket"
        assert manifest["compression"] == "GZIP" and manifest["contentType"] == "text/csv"
        start, end = folders[period].split("-")
        assert manifest["billingPeriod"] == {"start": f"{start}T000000.000Z", "end": f"{end}T000000.000Z"}
        assert manifest["reportKeys"] == pt.data_keys
        assert pt.data_keys == [f"{period_dir}/{pt.version_id}/legacy-{n}.csv.gz" for n in (1, 2, 3)]
        assert all((tmp_path / k).is_file() for k in manifest["reportKeys"])
        # copy of the manifest next to the data
        copy = tmp_path / period_dir / pt.version_id / "legacy-Manifest.json"
        assert copy.read_bytes() == (tmp_path / manifest_key).read_bytes()
        types = {c["type"] for c in manifest["columns"]}
        assert types <= {"String", "OptionalString", "BigDecimal", "OptionalBigDecimal", "DateTime", "Interval"}

        header, rows = _read_v1(tmp_path, pt.data_keys)
        assert header == [f"{c['category']}/{c['name']}" for c in manifest["columns"]]
        assert 45 <= len(header) <= 70
        for col in ("resourceTags/user:Cost Center", "costCategory/Business Unit", "savingsPlan/SavingsPlanARN",
                    "lineItem/UnblendedCost", "identity/TimeInterval", "bill/PayerAccountId"):
            assert col in header
        assert len(rows) == pt.rows == ROWS
        assert sum(Decimal(r["lineItem/UnblendedCost"]) for r in rows) == pt.unblended_cost

        costs = [r["lineItem/UnblendedCost"] for r in rows]
        assert all(c != "" for c in costs)
        assert all(len(c.split("E")[0].split(".")[-1]) <= 10 for c in costs)
        assert any(re.fullmatch(r"-?\d\.\d+E-\d+", c) for c in costs), "no E notation"
        assert any(c.startswith("-") for c in costs), "no negative (credit) rows"
        assert any(r["lineItem/LineItemType"] == "Credit" for r in rows)
        assert {r["lineItem/LineItemType"] for r in rows} >= {"Usage", "Tax", "SavingsPlanCoveredUsage"}
        accounts = {r["lineItem/UsageAccountId"] for r in rows}
        assert all(re.fullmatch(r"\d{12}", a) for a in accounts)
        assert any(a.startswith("0") for a in accounts)
        assert {r["bill/PayerAccountId"] for r in rows} == {manifest["account"]}
        interval = rows[0]["identity/TimeInterval"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z/\d{4}-\d\d-\d\dT\d\d:00:00Z", interval)
        assert all(r["lineItem/UsageStartDate"].startswith(period) for r in rows)
        assert any(r["resourceTags/user:Environment"] == "" for r in rows)
        assert any(r["resourceTags/user:Environment"] != "" for r in rows)
        invoices = {r["bill/InvoiceId"] for r in rows}
        if period == "2024-02":  # the last period of the call is the open month
            assert invoices == {""}
        else:
            assert "" not in invoices
    # fields with commas are quoted
    raw = gzip.decompress((tmp_path / truth.periods["2024-01"].data_keys[0]).read_bytes()).decode()
    assert '"Amazon Web Services, Inc."' in raw


def test_v1_create_new_restatement_keeps_old_assembly(gen, tmp_path: Path) -> None:
    first = gen.write_cur1_export(tmp_path, prefix="", export_name="rep", periods=["2024-03"], rows_per_period=80)
    old = first.periods["2024-03"]
    second = gen.write_cur1_export(tmp_path, prefix="", export_name="rep", periods=["2024-03"], rows_per_period=90,
                                   assembly_ids={"2024-03": "assembly-2"})
    new = second.periods["2024-03"]
    assert new.version_id == "assembly-2" != old.version_id
    assert new.unblended_cost != old.unblended_cost
    period_dir = tmp_path / "rep" / "20240301-20240401"
    assert (period_dir / old.version_id / "rep-1.csv.gz").is_file()  # old assembly kept
    assert (period_dir / "assembly-2" / "rep-1.csv.gz").is_file()
    manifest = json.loads((period_dir / "rep-Manifest.json").read_text())
    assert manifest["assemblyId"] == "assembly-2"
    assert manifest["reportKeys"] == new.data_keys
    assert all(not k.startswith("/") for k in new.data_keys)
    assert new.data_keys[0] == "rep/20240301-20240401/assembly-2/rep-1.csv.gz"
    _h, rows = _read_v1(tmp_path, new.data_keys)
    assert len(rows) == 90
    assert sum(Decimal(r["lineItem/UnblendedCost"]) for r in rows) == new.unblended_cost


def test_v1_overwrite_restatement_replaces_parts(gen, tmp_path: Path) -> None:
    first = gen.write_cur1_export(tmp_path, prefix="a/b", export_name="ow", periods=["2023-12"], rows_per_period=60,
                                  parts=3, layout="overwrite")
    period_dir = tmp_path / "a/b/ow/20231201-20240101"
    assert first.periods["2023-12"].data_keys == [f"a/b/ow/20231201-20240101/ow-{n}.csv.gz" for n in (1, 2, 3)]
    assert sorted(p.name for p in period_dir.iterdir()) == ["ow-1.csv.gz", "ow-2.csv.gz", "ow-3.csv.gz",
                                                             "ow-Manifest.json"]
    second = gen.write_cur1_export(tmp_path, prefix="a/b/", export_name="ow", periods=["2023-12"], rows_per_period=50,
                                   parts=2, layout="overwrite", assembly_ids={"2023-12": "v2-assembly"})
    pt = second.periods["2023-12"]
    assert second.prefix == "a/b"
    assert sorted(p.name for p in period_dir.iterdir()) == ["ow-1.csv.gz", "ow-2.csv.gz", "ow-Manifest.json"]
    manifest = json.loads((period_dir / "ow-Manifest.json").read_text())
    assert manifest["assemblyId"] == "v2-assembly" and manifest["reportKeys"] == pt.data_keys
    _h, rows = _read_v1(tmp_path, pt.data_keys)
    assert len(rows) == 50
    assert sum(Decimal(r["lineItem/UnblendedCost"]) for r in rows) == pt.unblended_cost


@pytest.mark.parametrize(("compression", "ext", "label"), [("zip", ".csv.zip", "ZIP"), ("none", ".csv", "NONE")])
def test_v1_zip_and_plain_csv(gen, tmp_path: Path, compression: str, ext: str, label: str) -> None:
    truth = gen.write_cur1_export(tmp_path, prefix="z", export_name="zz", periods=["2024-01"], rows_per_period=ROWS,
                                  compression=compression, extra_columns=["resourceTags/user:Owner",
                                                                          "resourceTags/user:Team"])
    pt = truth.periods["2024-01"]
    assert all(k.endswith(ext) for k in pt.data_keys) and len(pt.data_keys) == 2
    manifest = json.loads((tmp_path / pt.manifest_key).read_text())
    assert manifest["compression"] == label
    header, rows = _read_v1(tmp_path, pt.data_keys)
    assert header.count("resourceTags/user:Team") == 1
    assert header[-1] == "resourceTags/user:Owner"
    assert {r["resourceTags/user:Owner"] for r in rows} > {""}
    assert len(rows) == ROWS
    assert sum(Decimal(r["lineItem/UnblendedCost"]) for r in rows) == pt.unblended_cost


def test_v1_parquet(gen, tmp_path: Path) -> None:
    truth = gen.write_cur1_export(tmp_path, prefix="pq", export_name="legacy-pq", periods=["2024-01", "2024-02"],
                                  rows_per_period=ROWS, fmt="parquet")
    for pt in truth.periods.values():
        assert all(k.endswith(".snappy.parquet") for k in pt.data_keys)
        manifest = json.loads((tmp_path / pt.manifest_key).read_text())
        assert manifest["contentType"] == "Parquet" and manifest["compression"] == "Parquet"
        table = _read_parquet(tmp_path, pt.data_keys)
        assert table.num_rows == pt.rows == ROWS
        names = table.column_names
        for name in ("identity_line_item_id", "line_item_unblended_cost", "resource_tags_user_cost_center",
                     "savings_plan_savings_plan_a_r_n", "cost_category_business_unit", "product_product_name"):
            assert name in names
        assert len(names) == len(manifest["columns"])
        assert pa.types.is_floating(table.schema.field("line_item_unblended_cost").type)
        assert pa.types.is_timestamp(table.schema.field("line_item_usage_start_date").type)
        assert _dec_sum(table.column("line_item_unblended_cost").to_pylist()) == pt.unblended_cost


def test_v1_parquet_name(gen) -> None:
    assert gen.v1_parquet_name("lineItem/UnblendedCost") == "line_item_unblended_cost"
    assert gen.v1_parquet_name("resourceTags/user:Cost Center") == "resource_tags_user_cost_center"
    assert gen.v1_parquet_name("savingsPlan/SavingsPlanARN") == "savings_plan_savings_plan_a_r_n"
    assert gen.v1_parquet_name("product/servicecode") == "product_servicecode"


def test_v1_deterministic(gen, tmp_path: Path) -> None:
    kwargs = dict(prefix="d", export_name="det", periods=["2024-01"], rows_per_period=50, seed=3)
    t1 = gen.write_cur1_export(tmp_path / "one", **kwargs)
    t2 = gen.write_cur1_export(tmp_path / "two", **kwargs)
    assert t1 == t2
    files = _files(tmp_path / "one")
    assert files == _files(tmp_path / "two")
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes()
    t3 = gen.write_cur1_export(tmp_path / "three", **{**kwargs, "seed": 4})
    assert t3.periods["2024-01"].unblended_cost != t1.periods["2024-01"].unblended_cost


def test_v1_tiny_exports(gen, tmp_path: Path) -> None:
    truth = gen.write_cur1_export(tmp_path, prefix="", export_name="tiny", periods=["2024-01"], rows_per_period=1,
                                  parts=2)
    pt = truth.periods["2024-01"]
    _h, rows = _read_v1(tmp_path, pt.data_keys)
    assert len(rows) == 1
    assert "E" in rows[0]["lineItem/UnblendedCost"]  # at least one value in E notation
    assert Decimal(rows[0]["lineItem/UnblendedCost"]) == pt.unblended_cost
    empty = gen.write_cur1_export(tmp_path, prefix="", export_name="empty", periods=["2024-01"], rows_per_period=0)
    assert empty.periods["2024-01"].unblended_cost == 0
    _h, rows = _read_v1(tmp_path, empty.periods["2024-01"].data_keys)
    assert rows == []


# ---------------------------------------------------------------------------------------------
# CUR 2.0
# ---------------------------------------------------------------------------------------------


def _data_files(manifest: dict) -> list[str]:
    keys = []
    for uri in manifest["dataFiles"]:
        assert uri.startswith("s3://sample-bucket/")
        keys.append(uri[len("s3://sample-bucket/"):])
    return keys


def test_v2_layout_truth_and_maps(gen, tmp_path: Path) -> None:
    truth = gen.write_cur2_export(tmp_path, prefix="exports", export_name="cur2", periods=["2024-01", "2024-02"],
                                  rows_per_period=ROWS, files_per_period=2, row_group_size=50,
                                  extra_columns=["resource_tags/user_owner", "my_extra"])
    assert truth.cur_version == "v2" and truth.prefix == "exports"
    for period, pt in truth.periods.items():
        manifest_key = f"exports/cur2/metadata/BILLING_PERIOD={period}/cur2-Manifest.json"
        assert pt.manifest_key == manifest_key
        manifest = json.loads((tmp_path / manifest_key).read_text())
        assert manifest["executionId"] == pt.version_id
        assert manifest["exportName"] == "cur2"
        assert manifest["exportArn"].startswith("arn:aws:bcm-data-exports:us-east-1:")
        assert manifest["billingPeriod"]["start"] == f"{period}-01T00:00:00.000Z"
        keys = _data_files(manifest)
        assert keys == pt.data_keys == [
            f"exports/cur2/data/BILLING_PERIOD={period}/cur2-0000{n}.snappy.parquet" for n in (1, 2)]
        assert all((tmp_path / k).is_file() for k in keys)

        table = _read_parquet(tmp_path, keys)
        assert table.num_rows == pt.rows == ROWS
        assert [c["name"] for c in manifest["columns"]] == table.column_names
        assert 55 <= table.num_columns <= 75
        assert _dec_sum(table.column("line_item_unblended_cost").to_pylist()) == pt.unblended_cost
        schema = table.schema
        for name in ("product", "resource_tags", "cost_category"):
            assert schema.field(name).type == pa.map_(pa.string(), pa.string()), name
        assert schema.field("discount").type == pa.map_(pa.string(), pa.float64())
        types = {c["name"]: c["type"] for c in manifest["columns"]}
        assert types["resource_tags"] == "map<string,string>" and types["line_item_unblended_cost"] == "double"
        ts = schema.field("line_item_usage_start_date").type
        assert pa.types.is_timestamp(ts) and ts.unit == "ms" and ts.tz == "UTC"
        assert schema.field("savings_plan_savings_plan_a_r_n").type == pa.string()
        assert schema.field("line_item_usage_account_id").type == pa.string()
        assert "my_extra" in table.column_names

        tags = table.column("resource_tags").to_pylist()
        assert any(t == [] for t in tags)
        tag_keys = {k for t in tags for k, _v in t}
        assert {"user_environment", "user_cost_center", "user_team", "user_owner"} <= tag_keys
        product_keys = {k for p in table.column("product").to_pylist() for k, _v in p}
        assert {"product_name", "region", "instance_type"} <= product_keys
        accounts = set(table.column("line_item_usage_account_id").to_pylist())
        assert any(a.startswith("0") for a in accounts)
        assert table.column("identity_time_interval")[0].as_py().count("/") == 1
        for k in keys:
            md = pq.ParquetFile(tmp_path / k).metadata
            assert all(md.row_group(i).num_rows <= 50 for i in range(md.num_row_groups))


def test_v2_restatement_replaces_files(gen, tmp_path: Path) -> None:
    first = gen.write_cur2_export(tmp_path, prefix="", export_name="c2", periods=["2024-05"], rows_per_period=100,
                                  files_per_period=3)
    data_dir = tmp_path / "c2" / "data" / "BILLING_PERIOD=2024-05"
    assert len(list(data_dir.iterdir())) == 3
    second = gen.write_cur2_export(tmp_path, prefix="", export_name="c2", periods=["2024-05"], rows_per_period=70,
                                   files_per_period=1, execution_ids={"2024-05": "exec-2"})
    pt = second.periods["2024-05"]
    assert pt.version_id == "exec-2" != first.periods["2024-05"].version_id
    assert sorted(p.name for p in data_dir.iterdir()) == ["c2-00001.snappy.parquet"]
    manifest = json.loads((tmp_path / "c2/metadata/BILLING_PERIOD=2024-05/c2-Manifest.json").read_text())
    assert manifest["executionId"] == "exec-2"
    assert _data_files(manifest) == pt.data_keys == ["c2/data/BILLING_PERIOD=2024-05/c2-00001.snappy.parquet"]
    table = _read_parquet(tmp_path, pt.data_keys)
    assert table.num_rows == 70
    assert _dec_sum(table.column("line_item_unblended_cost").to_pylist()) == pt.unblended_cost


def test_v2_deterministic(gen, tmp_path: Path) -> None:
    kwargs = dict(prefix="p", export_name="det2", periods=["2024-01"], rows_per_period=120, files_per_period=2)
    t1 = gen.write_cur2_export(tmp_path / "one", **kwargs)
    t2 = gen.write_cur2_export(tmp_path / "two", **kwargs)
    assert t1 == t2
    for f in _files(tmp_path / "one"):
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes()


# ---------------------------------------------------------------------------------------------
# demo data
# ---------------------------------------------------------------------------------------------


def test_main_writes_demo(gen, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert gen.main(["--out", str(out)]) == 0
    files = _files(out)
    assert "README.md" in files
    assert any(re.fullmatch(r"cur/legacy-cur/20240101-20240201/[^/]+/legacy-cur-2\.csv\.gz", f) for f in files)
    assert "exports/cur2-daily/metadata/BILLING_PERIOD=2024-02/cur2-daily-Manifest.json" in files
    assert sum((out / f).stat().st_size for f in files) < 1_000_000
    (out / "foreign.txt").write_text("x")
    assert gen.main(["--out", str(out)]) == 2  # refuses to wipe a folder it did not write
    assert (out / "foreign.txt").exists()


def test_payer_with_leading_zeros(gen, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen, "PAYER_ACCOUNT_ID", "001234567890")
    v1 = gen.write_cur1_export(tmp_path, prefix="", export_name="lz", periods=["2024-01"], rows_per_period=60)
    pt = v1.periods["2024-01"]
    assert json.loads((tmp_path / pt.manifest_key).read_text())["account"] == "001234567890"
    _h, rows = _read_v1(tmp_path, pt.data_keys)
    assert {r["bill/PayerAccountId"] for r in rows} == {"001234567890"}
    v2 = gen.write_cur2_export(tmp_path, prefix="", export_name="lz2", periods=["2024-01"], rows_per_period=60)
    manifest = json.loads((tmp_path / v2.periods["2024-01"].manifest_key).read_text())
    assert ":001234567890:" in manifest["exportArn"]
    table = _read_parquet(tmp_path, v2.periods["2024-01"].data_keys)
    assert set(table.column("bill_payer_account_id").to_pylist()) == {"001234567890"}
