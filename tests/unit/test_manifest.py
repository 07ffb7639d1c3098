"""Manifest discovery and parsing on small bucket layouts written into a temporary folder."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError, ManifestError
from core.storage import LocalStore, ObjectInfo
from vendors.aws.manifest import (
    BillingManifest,
    ExportRef,
    ManifestColumn,
    discover_exports,
    find_manifests,
    parse_manifest,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cur1-layout-synthetic"

V1_COLUMNS = [
    {"category": "identity", "name": "LineItemId", "type": "String"},
    {"category": "lineItem", "name": "UnblendedCost", "type": "BigDecimal"},
    {"category": "lineItem", "name": "UsageStartDate", "type": "DateTime"},
]
V2_COLUMNS = [
    {"name": "line_item_unblended_cost", "type": "double"},
    {"name": "resource_tags", "type": "map<string,string>"},
]


# ------------------------------------------------------------------------------------------- helpers


def put(root: Path, key: str, content: bytes | str | dict[str, Any] = b"x") -> str:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = json.dumps(content)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return key


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def v1_doc(assembly: str, keys: list[str], start: str = "20240101T000000.000Z", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "assemblyId": assembly,
        "columns": V1_COLUMNS,
        "compression": "GZIP",
        "contentType": "text/csv",
        "billingPeriod": {"start": start, "end": "20240201T000000.000Z"},
        "bucket": "my-bucket",
        "reportKeys": keys,
    }
    doc.update(extra)
    return doc


def write_v1(root: Path, prefix: str, export: str, folder: str, assembly: str, *, overwrite: bool = False,
             files: int = 1, **extra: Any) -> list[str]:
    """One v1 period: data in an assembly folder (create-new) or in the period folder (overwrite)."""
    period_dir = join(prefix, export, folder)
    data_dir = period_dir if overwrite else join(period_dir, assembly)
    keys = [put(root, f"{data_dir}/{export}-{n}.csv.gz") for n in range(1, files + 1)]
    doc = v1_doc(assembly, keys, start=f"{folder[:8]}T000000.000Z", **extra)
    if not overwrite:
        put(root, f"{data_dir}/{export}-Manifest.json", doc)
    put(root, f"{period_dir}/{export}-Manifest.json", doc)
    return keys


def v2_doc(execution: str, files: list[str], period: str | None = "2024-01", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"executionId": execution, "dataFiles": files, "columns": V2_COLUMNS}
    if period:
        doc["billingPeriod"] = {"start": f"{period}-01T00:00:00.000Z", "end": "2099-01-01T00:00:00.000Z"}
    doc.update(extra)
    return doc


def write_v2(root: Path, prefix: str, export: str, period: str, execution: str = "exec-1", *, as_uri: bool = True,
             nested: str | None = None, **extra: Any) -> list[str]:
    data_dir = join(prefix, export, "data", f"BILLING_PERIOD={period}")
    keys = [put(root, f"{data_dir}/{export}-00001.snappy.parquet")]
    files = [f"s3://my-bucket/{k}" for k in keys] if as_uri else keys
    meta_dir = join(prefix, export, "metadata", f"BILLING_PERIOD={period}", nested or "")
    put(root, f"{meta_dir}/{export}-Manifest.json", v2_doc(execution, files, period, **extra))
    return keys


def periods(manifests: list[BillingManifest]) -> list[tuple[str, str]]:
    return [(m.export_name, m.billing_period) for m in manifests]


class RecordingStore(LocalStore):
    """Remembers what was listed, to prove listings stay anchored to one export."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listed: list[str] = []

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self.listed.append(prefix)
        return super().list(prefix)


# ---------------------------------------------------------------------------------------------- CUR v1


def test_v1_create_new_picks_the_period_folder_manifest(tmp_path: Path) -> None:
    write_v1(tmp_path, "cur", "prod", "20240101-20240201", "aaaa-old")
    current = write_v1(tmp_path, "cur", "prod", "20240101-20240201", "bbbb-new", files=2)
    # the period manifest now points at the newer assembly (as if 'aaaa-old' was superseded)
    scan = find_manifests(LocalStore(tmp_path), prefix="cur", export_name="prod")
    assert scan.problems == []
    [m] = scan.manifests
    assert (m.export_name, m.cur_version, m.billing_period, m.version_id) == ("prod", "v1", "2024-01", "bbbb-new")
    assert m.data_keys == tuple(current)
    assert m.manifest_key == "cur/prod/20240101-20240201/prod-Manifest.json"
    assert (m.format_hint, m.compression) == ("csv", "gzip")
    assert [c.source_name for c in m.columns] == ["identity/LineItemId", "lineItem/UnblendedCost",
                                                  "lineItem/UsageStartDate"]
    assert m.columns[1] == ManifestColumn(category="lineItem", name="UnblendedCost", type="BigDecimal")


def test_v1_assembly_copies_without_a_period_manifest_are_ignored(tmp_path: Path) -> None:
    put(tmp_path, "prod/20240101-20240201/uuid-1/prod-Manifest.json", v1_doc("uuid-1", []))
    assert find_manifests(LocalStore(tmp_path), export_name="prod").manifests == []


def test_v1_overwrite_layout_several_periods(tmp_path: Path) -> None:
    jan = write_v1(tmp_path, "", "prod", "20240101-20240201", "a1", overwrite=True, files=3)
    write_v1(tmp_path, "", "prod", "20240201-20240301", "a2", overwrite=True)
    scan = find_manifests(LocalStore(tmp_path), export_name="prod", cur_version="v1")
    assert periods(scan.manifests) == [("prod", "2024-01"), ("prod", "2024-02")]
    assert scan.manifests[0].data_keys == tuple(jan)
    assert all("/" not in k.removeprefix("prod/20240101-20240201/") for k in jan)


def test_v1_report_keys_as_keys_and_s3_uris(tmp_path: Path) -> None:
    folder = "cur/prod/20240101-20240201"
    doc = v1_doc("a1", [f"{folder}/a1/prod-1.csv.gz", f"s3://my-bucket/{folder}/a1/prod-2.csv.gz",
                        f"{folder}/a1/prod-1.csv.gz"], bucket="")
    put(tmp_path, f"{folder}/prod-Manifest.json", doc)
    [m] = find_manifests(LocalStore(tmp_path), prefix="cur", export_name="prod").manifests
    assert m.data_keys == (f"{folder}/a1/prod-1.csv.gz", f"{folder}/a1/prod-2.csv.gz")


@pytest.mark.parametrize(
    ("start", "expected"),
    [("20180801T000000.000Z", "2018-08"), ("2024-01-01T00:00:00.000Z", "2024-01"), ("2023-11-01", "2023-11"),
     ("20231201", "2023-12")],
)
def test_billing_period_compact_and_iso(tmp_path: Path, start: str, expected: str) -> None:
    m = parse_manifest(json.dumps(v1_doc("a1", [], start=start)).encode(), key="k", store=LocalStore(tmp_path),
                       export_name="prod", cur_version="v1", period_from_key=None)
    assert m.billing_period == expected


def test_billing_period_falls_back_to_the_folder(tmp_path: Path) -> None:
    doc = v1_doc("a1", [])
    del doc["billingPeriod"]
    put(tmp_path, "prod/20240301-20240401/prod-Manifest.json", doc)
    [m] = find_manifests(LocalStore(tmp_path), export_name="prod").manifests
    assert m.billing_period == "2024-03"


def test_columns_with_and_without_type(tmp_path: Path) -> None:
    cols = [{"category": "lineItem", "name": "UnblendedCost", "type": "OptionalBigDecimal"},
            {"category": "identity", "name": "TimeInterval"}]
    m = parse_manifest(json.dumps(v1_doc("a1", [], columns=cols)).encode(), key="k", store=LocalStore(tmp_path),
                       export_name="prod", cur_version="v1", period_from_key=None)
    assert m.columns == (ManifestColumn("lineItem", "UnblendedCost", "OptionalBigDecimal"),
                         ManifestColumn("identity", "TimeInterval", None))
    assert m.columns[1].source_name == "identity/TimeInterval"


# ---------------------------------------------------------------------------------------------- CUR 2.0


@pytest.mark.parametrize("as_uri", [True, False])
def test_v2_data_files_as_uris_or_keys(tmp_path: Path, as_uri: bool) -> None:
    keys = write_v2(tmp_path, "exports", "cur2", "2024-01", as_uri=as_uri, dataFormat="parquet")
    scan = find_manifests(LocalStore(tmp_path), prefix="exports", export_name="cur2")
    [m] = scan.manifests
    assert (m.cur_version, m.billing_period, m.version_id) == ("v2", "2024-01", "exec-1")
    assert m.data_keys == tuple(keys)
    assert (m.format_hint, m.compression) == ("parquet", None)
    assert m.columns[1] == ManifestColumn(None, "resource_tags", "map<string,string>")
    assert m.columns[0].source_name == "line_item_unblended_cost"


def test_v2_without_billing_period_takes_it_from_the_key(tmp_path: Path) -> None:
    put(tmp_path, "cur2/metadata/BILLING_PERIOD=2024-05/cur2-Manifest.json", v2_doc("e", [], period=None))
    [m] = find_manifests(LocalStore(tmp_path), export_name="cur2").manifests
    assert m.billing_period == "2024-05"


def test_v2_prefers_the_manifest_directly_in_the_period_folder(tmp_path: Path) -> None:
    write_v2(tmp_path, "", "cur2", "2024-01", "nested-b", nested="20240105T0000Z-b")
    write_v2(tmp_path, "", "cur2", "2024-01", "direct")
    write_v2(tmp_path, "", "cur2", "2024-02", "nested-a", nested="20240203T0000Z-a")
    write_v2(tmp_path, "", "cur2", "2024-02", "nested-c", nested="20240210T0000Z-c")
    scan = find_manifests(LocalStore(tmp_path), export_name="cur2")
    assert [m.version_id for m in scan.manifests] == ["direct", "nested-c"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_zero_file_manifest_is_valid(tmp_path: Path, version: str) -> None:
    if version == "v1":
        put(tmp_path, "prod/20240101-20240201/prod-Manifest.json", v1_doc("a1", []))
    else:
        put(tmp_path, "prod/metadata/BILLING_PERIOD=2024-01/prod-Manifest.json", v2_doc("e1", []))
    [m] = find_manifests(LocalStore(tmp_path), export_name="prod").manifests
    assert (m.cur_version, m.data_keys, m.format_hint) == (version, (), "csv" if version == "v1" else None)


@pytest.mark.parametrize(
    ("files", "extra", "fmt", "compression"),
    [(["a.csv.gz", "b.csv.gz"], {}, "csv", "gzip"), (["a.csv.zip"], {}, "csv", "zip"), (["a.csv"], {}, "csv", None),
     (["a.snappy.parquet"], {}, "parquet", None), (["a.csv.gz", "b.parquet"], {}, None, None),
     (["a.bin"], {"compression": "PARQUET"}, "parquet", None),
     (["a.bin"], {"dataFormat": "TEXT_OR_CSV"}, "csv", None),
     (["a"], {"contentType": "Parquet", "compression": "Parquet"}, "parquet", None)],
)
def test_format_hint(tmp_path: Path, files: list[str], extra: dict[str, str], fmt: str | None,
                     compression: str | None) -> None:
    m = parse_manifest(json.dumps(v2_doc("e", files, **extra)).encode(), key="k", store=LocalStore(tmp_path),
                       export_name="x", cur_version="v2", period_from_key=None)
    assert (m.format_hint, m.compression) == (fmt, compression)


# ------------------------------------------------------------------------------------ anchoring / discovery


def test_export_name_is_anchored(tmp_path: Path) -> None:
    write_v1(tmp_path, "cur", "prod", "20240101-20240201", "a1")
    write_v1(tmp_path, "cur", "prod-eu", "20240101-20240201", "a2")
    write_v2(tmp_path, "cur", "prod-eu2", "2024-01")
    store = RecordingStore(tmp_path)
    scan = find_manifests(store, prefix="cur", export_name="prod")
    assert periods(scan.manifests) == [("prod", "2024-01")]
    assert store.listed == ["cur/prod/"]
    find_manifests(store, prefix="cur", export_name="prod-eu2", cur_version="v2")
    assert store.listed[-1] == "cur/prod-eu2/metadata/"


@pytest.mark.parametrize("prefix", ["a/b", "a/b/", "/a/b/"])
def test_prefix_with_or_without_slashes(tmp_path: Path, prefix: str) -> None:
    write_v1(tmp_path, "a/b", "prod", "20240101-20240201", "a1")
    scan = find_manifests(LocalStore(tmp_path), prefix=prefix, export_name="prod")
    assert periods(scan.manifests) == [("prod", "2024-01")]
    assert discover_exports(LocalStore(tmp_path), prefix) == [ExportRef("prod", "v1", "a/b")]


def test_empty_prefix_means_bucket_root(tmp_path: Path) -> None:
    write_v1(tmp_path, "", "root-export", "20240101-20240201", "a1")
    write_v1(tmp_path, "a/b", "prod", "20240101-20240201", "a2")
    store = LocalStore(tmp_path)
    assert periods(find_manifests(store, export_name="root-export").manifests) == [("root-export", "2024-01")]
    # with a name, the export must sit directly under the prefix…
    assert find_manifests(store, export_name="prod").manifests == []
    assert find_manifests(store, prefix="a", export_name="prod").manifests == []
    # …while a scan without a name finds exports at any depth
    assert periods(find_manifests(store).manifests) == [("prod", "2024-01"), ("root-export", "2024-01")]


def test_discover_v1_and_v2_side_by_side(tmp_path: Path) -> None:
    write_v1(tmp_path, "billing", "legacy", "20240101-20240201", "a1")
    write_v2(tmp_path, "billing", "modern", "2024-01", nested="exec-folder")
    write_v2(tmp_path, "billing", "modern", "2024-02")
    put(tmp_path, "billing/stray/20240101-20240201/other-Manifest.json", v1_doc("a", []))  # name mismatch
    put(tmp_path, "billing/modern/data/BILLING_PERIOD=2024-01/modern-Manifest.json", v2_doc("e", []))
    store = LocalStore(tmp_path)
    assert discover_exports(store, "billing") == [ExportRef("legacy", "v1", "billing"),
                                                   ExportRef("modern", "v2", "billing")]
    scan = find_manifests(store, prefix="billing")
    assert [(m.export_name, m.cur_version, m.billing_period) for m in scan.manifests] == [
        ("legacy", "v1", "2024-01"), ("modern", "v2", "2024-01"), ("modern", "v2", "2024-02")]


def test_auto_detect_prefers_v2_and_an_explicit_version_wins(tmp_path: Path) -> None:
    write_v1(tmp_path, "", "both", "20230101-20230201", "a1")
    write_v2(tmp_path, "", "both", "2024-01")
    store = LocalStore(tmp_path)
    assert [m.cur_version for m in find_manifests(store, export_name="both").manifests] == ["v2"]
    assert [m.billing_period for m in find_manifests(store, export_name="both", cur_version="v1").manifests] == [
        "2023-01"]


# --------------------------------------------------------------------------------------- start / end


def test_start_end_filter_inclusively(tmp_path: Path) -> None:
    for month in ("01", "02", "03", "04"):
        write_v2(tmp_path, "", "cur2", f"2024-{month}")
    store = LocalStore(tmp_path)
    assert [m.billing_period for m in find_manifests(store, start="2024-02", end="2024-03").manifests] == [
        "2024-02", "2024-03"]
    assert [m.billing_period for m in find_manifests(store, start="2024-04").manifests] == ["2024-04"]
    assert [m.billing_period for m in find_manifests(store, end="2024-01").manifests] == ["2024-01"]


@pytest.mark.parametrize(
    ("start", "end"),
    [("2024-1", None), ("2024-13", None), (None, "202401"), (None, "2024-01-01"), ("jan", None),
     ("2024-03", "2024-02")],
)
def test_bad_start_or_end(tmp_path: Path, start: str | None, end: str | None) -> None:
    with pytest.raises(ConfigError):
        find_manifests(LocalStore(tmp_path), start=start, end=end)


@pytest.mark.parametrize("kwargs", [{"export_name": ""}, {"export_name": "a/b"}, {"cur_version": "v3"}])
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        find_manifests(LocalStore(tmp_path), **kwargs)


# ----------------------------------------------------------------------------------------- malformed

FEB = "20240201T000000.000Z"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"),
     ({"reportKeys": [], "billingPeriod": {"start": "20240201T000000.000Z"}}, "assemblyId"),
     (v1_doc("a", [], start="2024-02-31T00:00:00Z"), "billingPeriod"),
     (v1_doc("a", [], start="soon"), "billingPeriod"),
     ({**v1_doc("a", []), "billingPeriod": "202402"}, "billingPeriod"),
     (v1_doc("a", "prod-1.csv.gz", start=FEB), "reportKeys"), (v1_doc("a", [1], start=FEB), "reportKeys"),
     ({k: v for k, v in v1_doc("a", [], start=FEB).items() if k != "reportKeys"}, "reportKeys"),
     (v1_doc("a", [], start=FEB, columns=[{"category": "x"}]), "column"),
     (v1_doc("a", [], start=FEB, columns="x"), "columns")],
)
def test_malformed_manifest_is_a_problem_for_its_period_only(tmp_path: Path, content: Any, reason: str) -> None:
    write_v1(tmp_path, "", "prod", "20240101-20240201", "a1")
    bad_key = put(tmp_path, "prod/20240201-20240301/prod-Manifest.json", content)
    write_v1(tmp_path, "", "prod", "20240301-20240401", "a3")
    scan = find_manifests(LocalStore(tmp_path), export_name="prod")
    assert periods(scan.manifests) == [("prod", "2024-01"), ("prod", "2024-03")]
    [problem] = scan.problems
    assert (problem.export_name, problem.billing_period, problem.manifest_key) == ("prod", "2024-02", bad_key)
    assert isinstance(problem.error, ManifestError)
    assert bad_key in str(problem.error) and reason in problem.error.reason


def test_v2_missing_execution_id(tmp_path: Path) -> None:
    put(tmp_path, "cur2/metadata/BILLING_PERIOD=2024-01/cur2-Manifest.json", {"dataFiles": []})
    write_v2(tmp_path, "", "cur2", "2024-02")
    scan = find_manifests(LocalStore(tmp_path), export_name="cur2")
    assert periods(scan.manifests) == [("cur2", "2024-02")]
    assert "executionId" in scan.problems[0].error.reason


# ------------------------------------------------------------------------------ koku real-world layout


def test_koku_fixture_with_leading_slash_keys_reads_the_objects(tmp_path: Path) -> None:
    """koku's empty-prefix fixture names ``/koku-local/…`` (as AWS lists a report with no prefix) while the objects
    are ``koku-local/…``: one leading ``/`` is dropped, nothing else."""
    with tarfile.open(FIXTURES / "test_local_bucket.tar.gz") as archive:
        archive.extractall(tmp_path, filter="data")
    scan = find_manifests(LocalStore(tmp_path), export_name="koku-local")
    assert scan.problems == []
    [manifest] = scan.manifests
    assert all(key.startswith("koku-local/20180801-20180901/") for key in manifest.data_keys)
    assert all((tmp_path / key).is_file() for key in manifest.data_keys)


@pytest.mark.parametrize(
    ("tarball", "prefix", "export", "assembly", "data_key"),
    [
        ("test_local_bucket_prefix.tar.gz", "my-prefix", "my-report", "861af42f-713c-4a42-9562-9158a7625630",
         "my-prefix/my-report/20180801-20180901/861af42f-713c-4a42-9562-9158a7625630/my-report-1.csv.gz"),
    ],
)
def test_koku_fixture_layouts(tmp_path: Path, tarball: str, prefix: str, export: str, assembly: str,
                              data_key: str) -> None:
    with tarfile.open(FIXTURES / tarball) as archive:
        archive.extractall(tmp_path, filter="data")  # the archive root is the bucket root
    store = LocalStore(tmp_path)

    assert discover_exports(store, "") == [ExportRef(export, "v1", prefix)]
    scan = find_manifests(store, prefix=prefix, export_name=export)
    assert scan.problems == []
    [m] = scan.manifests
    assert (m.export_name, m.cur_version, m.billing_period, m.version_id) == (export, "v1", "2018-08", assembly)
    assert m.manifest_key == join(prefix, export, "20180801-20180901", f"{export}-Manifest.json")
    assert m.data_keys == (data_key,)
    assert (tmp_path / m.data_keys[0]).is_file()
    assert len(m.columns) == 57 and all(c.type is None and c.category for c in m.columns)
    assert m.columns[0].source_name == "identity/LineItemId"
    assert (m.format_hint, m.compression) == ("csv", "gzip")
