"""Naming, typing and the Arrow reader's conversions: no server needed."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.backends.base import FilePlan, SourceColumn, SourceFile
from core.backends.readers import Boto3DataReader, cast_column, map_to_json, sniff_format
from core.errors import LoadError
from core.storage import LocalStore
from vendors.aws.columns import column_specs, guess_kind, normalise_name, target_names


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("lineItem/UnblendedCost", "line_item_unblended_cost"),
        ("resourceTags/user:Cost Center", "resource_tags_user_cost_center"),
        ("resourceTags/aws:createdBy", "resource_tags_aws_created_by"),
        ("savingsPlan/SavingsPlanARN", "savings_plan_savings_plan_a_r_n"),
        ("costCategory/Charge type", "cost_category_charge_type"),
        ("identity/LineItemId", "identity_line_item_id"),
        ("product/capacitystatus", "product_capacitystatus"),
        ("line_item_unblended_cost", "line_item_unblended_cost"),  # CUR 2.0 / v1 Parquet names are kept
        ("resource_tags_user_team", "resource_tags_user_team"),
        ("noTags/user:Env", "no_tags_user_env"),
    ],
)
def test_names_follow_cur2(source: str, expected: str) -> None:
    assert normalise_name(source) == expected


def test_collisions_are_resolved_deterministically() -> None:
    a = target_names(["resourceTags/user:CostCenter", "resourceTags/user:cost_center"])
    b = target_names(["resourceTags/user:cost_center", "resourceTags/user:CostCenter"])
    assert a == b
    assert a["resourceTags/user:CostCenter"] == "resource_tags_user_cost_center"
    assert a["resourceTags/user:cost_center"].startswith("resource_tags_user_cost_center_")
    assert len(set(a.values())) == 2
    assert target_names(["billing_period"])["billing_period"] != "billing_period"  # reserved for the period


def test_real_headers_have_unique_names() -> None:
    root = Path(__file__).resolve().parent.parent / "fixtures" / "cur1-csv-handmade"
    for path in root.glob("*.csv"):
        header = path.read_text().splitlines()[0].split(",")
        names = target_names(header)
        assert len(set(names.values())) == len(set(header)), path.name


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("line_item_unblended_cost", "double"),
        ("pricing_public_on_demand_rate", "double"),
        ("pricing_rate_code", "string"),
        ("line_item_usage_account_id", "string"),
        ("line_item_usage_start_date", "timestamp"),
        ("bill_billing_period_end_date", "timestamp"),
        ("identity_time_interval", "string"),
        ("product_instance_type", "string"),
        ("line_item_normalization_factor", "double"),
        ("resource_tags_user_cost_center", "string"),
        ("cost_category_cost_allocation", "string"),
        ("product_from_location_rate_class", "string"),
    ],
)
def test_untyped_columns_are_guessed_by_name(name: str, kind: str) -> None:
    assert guess_kind(name) == kind


def test_manifest_types_win_and_ids_stay_text() -> None:
    source = SourceFile(
        key="k.csv", format="csv", compression=None,
        columns=(SourceColumn("lineItem/UnblendedCost", "string"), SourceColumn("bill/PayerAccountId", "string"),
                 SourceColumn("product/memory", "string"), SourceColumn("lineItem/UsageStartDate", "string")),
    )
    specs = {s.target: s for s in column_specs(source, {
        "lineItem/UnblendedCost": "OptionalBigDecimal", "bill/PayerAccountId": "BigDecimal",
        "product/memory": "OptionalString", "lineItem/UsageStartDate": "DateTime"})}
    assert specs["line_item_unblended_cost"].kind == "double"
    assert specs["bill_payer_account_id"].kind == "string"  # an id never becomes a number
    assert specs["product_memory"].kind == "string"
    assert specs["line_item_usage_start_date"].kind == "timestamp"


def test_parquet_maps_become_json() -> None:
    source = SourceFile(key="k.parquet", format="parquet", compression=None,
                        columns=(SourceColumn("resource_tags", "map"), SourceColumn("line_item_unblended_cost", "double")))
    kinds = {s.target: (s.kind, s.source_kind) for s in column_specs(source, {})}
    assert kinds == {"resource_tags": ("json", "map"), "line_item_unblended_cost": ("double", "double")}


def test_sniff_format_trusts_bytes_not_names() -> None:
    assert sniff_format(b"PAR1\x15\x04", "x.csv.gz") == ("parquet", None)
    assert sniff_format(b"\x1f\x8b\x08\x00", "x.parquet") == ("csv", "gzip")
    assert sniff_format(b"PK\x03\x04", "x.csv") == ("csv", "zip")
    assert sniff_format(b"identity", "x.csv") == ("csv", None)
    with pytest.raises(LoadError):
        sniff_format(b"garbage!", "x.snappy.parquet")


def test_map_to_json_is_valid_json() -> None:
    import json

    array = pa.array([[("k", 'quote " and \\ slash')], None, [], [("a", "1"), ("b", None)]],
                     type=pa.map_(pa.string(), pa.string()))
    out = map_to_json(array).to_pylist()
    assert out[1] is None
    assert [json.loads(v) for v in (out[0], out[2], out[3])] == [{"k": 'quote " and \\ slash'}, {}, {"a": "1", "b": None}]
    sliced = map_to_json(array.slice(3, 1)).to_pylist()
    assert json.loads(sliced[0]) == {"a": "1", "b": None}
    doubles = pa.array([[("x", 1.5)]], type=pa.map_(pa.string(), pa.float64()))
    assert json.loads(map_to_json(doubles)[0].as_py()) == {"x": 1.5}


def test_timestamps_in_every_cur_spelling_are_utc() -> None:
    values = pa.array(["2024-01-01T00:00:00Z", "2023-11-01T00:00:00.000Z", "2023-06-01 00:00:00", None])
    out = cast_column(values, "string", "timestamp", "t").to_pylist()
    assert [v.isoformat() if v else None for v in out] == [
        "2024-01-01T00:00:00+00:00", "2023-11-01T00:00:00+00:00", "2023-06-01T00:00:00+00:00", None]
    assert cast_column(pa.array(["9.984E-7", "-1.5", None]), "string", "double", "c").to_pylist() == [9.984e-7, -1.5, None]
    with pytest.raises(LoadError, match="'c'"):
        cast_column(pa.array(["abc"]), "string", "double", "c")


def _write_csv(path: Path, text: str, compression: str | None) -> None:
    data = text.encode()
    if compression == "gzip":
        data = gzip.compress(data)
    elif compression == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("inner.csv", data)
        data = buffer.getvalue()
    path.write_bytes(data)


@pytest.mark.parametrize("compression", [None, "gzip", "zip"])
def test_arrow_reader_streams_typed_batches(tmp_path: Path, compression: str | None) -> None:
    text = 'identity/LineItemId,lineItem/UnblendedCost,lineItem/UsageStartDate,product/note\n'
    text += "".join(f'id{i:05d},{i}.5E-3,2024-01-01T00:00:00Z,"a, b"\n' for i in range(5000))
    _write_csv(tmp_path / "f.csv.x", text, compression)
    reader = Boto3DataReader(LocalStore(tmp_path))
    source = reader.describe("f.csv.x")
    assert source.compression == compression and source.format == "csv"
    specs = column_specs(source, {"lineItem/UnblendedCost": "BigDecimal", "lineItem/UsageStartDate": "DateTime"})
    table = reader.batches(FilePlan(source, specs, (("billing_period", "2024-01"),))).read_all()
    assert table.num_rows == 5000
    assert table.schema.field("line_item_unblended_cost").type == pa.float64()
    assert table.schema.field("line_item_usage_start_date").type == pa.timestamp("us", tz="UTC")
    assert table.column("product_note")[0].as_py() == "a, b"
    assert set(table.column("billing_period").to_pylist()) == {"2024-01"}
    assert abs(sum(table.column("line_item_unblended_cost").to_pylist()) - sum((i + 0.5) / 1000 for i in range(5000))) < 1e-6


def test_arrow_reader_reads_parquet_by_row_group_and_rejects_truncation(tmp_path: Path) -> None:
    table = pa.table({"line_item_unblended_cost": pa.array([0.1] * 1000),
                      "resource_tags": pa.array([[("user_team", "x")]] * 1000, type=pa.map_(pa.string(), pa.string()))})
    pq.write_table(table, tmp_path / "f.parquet", row_group_size=100)
    reader = Boto3DataReader(LocalStore(tmp_path))
    source = reader.describe("f.parquet")
    batches = list(reader.batches(FilePlan(source, column_specs(source, {}))))
    assert sum(b.num_rows for b in batches) == 1000 and len(batches) == 10
    assert batches[0].column(1)[0].as_py() == '{"user_team":"x"}'
    data = (tmp_path / "f.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(LoadError):
        reader.describe("cut.parquet")


def test_local_store_refuses_keys_outside_its_root(tmp_path: Path) -> None:
    from core.errors import LoadError  # that file's period fails, not the run

    (tmp_path / "inside").mkdir()
    store = LocalStore(tmp_path / "inside")
    with pytest.raises(LoadError):
        store.read_bytes("../secret.txt")


def test_csv_reads_close_the_object_under_the_decompressor(tmp_path: Path) -> None:
    """GzipFile and ZipFile do not close what they wrap; an S3 body left open holds a connection of the pool."""
    from core.storage import LocalStore

    opened: list[io.BufferedReader] = []

    class Recording(LocalStore):
        def open(self, key: str):  # type: ignore[override]
            handle = super().open(key)
            opened.append(handle)
            return handle

        def open_random(self, key: str):  # type: ignore[override]
            handle = super().open_random(key)
            opened.append(handle)
            return handle

    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(b"identity/LineItemId,lineItem/UnblendedCost\nx,1.5\n"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.csv", "identity/LineItemId,lineItem/UnblendedCost\ny,2.5\n")
    (tmp_path / "b.csv.zip").write_bytes(buffer.getvalue())
    from vendors.aws.columns import column_specs

    reader = Boto3DataReader(Recording(tmp_path))
    for key in ("a.csv.gz", "b.csv.zip"):
        source = reader.describe(key)
        assert [c.name for c in source.columns] == ["identity/LineItemId", "lineItem/UnblendedCost"]
        assert sum(b.num_rows for b in reader.batches(FilePlan(source, column_specs(source, {}), ()))) == 1
    assert opened and all(handle.closed for handle in opened)
