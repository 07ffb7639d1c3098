"""Manifests that must fail their own month (a ManifestProblem naming the manifest), never load another month,
never have their keys normalised, and never crash the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import vendors.aws.manifest as manifest_module
from core.storage import LocalStore
from tests.unit.test_manifest import periods, put, v1_doc, v2_doc, write_v1, write_v2
from vendors.aws.manifest import find_manifests, parse_manifest

JAN, FEB = "20240101T000000.000Z", "20240201T000000.000Z"


def only_problem(scan: Any, key: str) -> str:
    [problem] = scan.problems
    assert problem.manifest_key == key and key in problem.error.message
    return problem.error.message


# ------------------------------------------------------------------------------ 1. period vs folder


def test_v1_manifest_claiming_another_month_does_not_replace_it(tmp_path: Path) -> None:
    write_v1(tmp_path, "", "prod", "20240101-20240201", "jan-real", overwrite=True)
    bad = put(tmp_path, "prod/20240201-20240301/prod-Manifest.json", v1_doc("feb-liar", ["prod/x.csv.gz"], start=JAN))
    store = LocalStore(tmp_path)
    scans = [find_manifests(store, export_name="prod") for _ in range(2)]
    assert [(s.manifests, [(p.manifest_key, p.error.message) for p in s.problems]) for s in scans] == [
        (scans[0].manifests, [(bad, scans[0].problems[0].error.message)])] * 2  # a rerun says the same
    [jan] = scans[0].manifests
    assert (jan.billing_period, jan.version_id) == ("2024-01", "jan-real")
    message = only_problem(scans[0], bad)
    assert "2024-01" in message and "2024-02" in message
    assert scans[0].problems[0].billing_period == "2024-02"


@pytest.mark.parametrize("nested", [None, "20240305T0000Z-x"])
def test_v2_manifest_claiming_another_month_fails_its_folder_month(tmp_path: Path, nested: str | None) -> None:
    write_v2(tmp_path, "", "cur2", "2024-01", "jan-real")
    folder = "cur2/metadata/BILLING_PERIOD=2024-03" + (f"/{nested}" if nested else "")
    bad = put(tmp_path, f"{folder}/cur2-Manifest.json", v2_doc("liar", [], period="2024-01"))
    scan = find_manifests(LocalStore(tmp_path), export_name="cur2")
    assert [(m.billing_period, m.version_id) for m in scan.manifests] == [("2024-01", "jan-real")]
    message = only_problem(scan, bad)
    assert "2024-01" in message and "2024-03" in message


def test_a_lying_manifest_alone_loads_no_month(tmp_path: Path) -> None:
    bad = put(tmp_path, "prod/20240301-20240401/prod-Manifest.json", v1_doc("x", [], start=JAN))
    scan = find_manifests(LocalStore(tmp_path), export_name="prod", start="2024-01", end="2024-12")
    assert scan.manifests == []
    only_problem(scan, bad)


# ------------------------------------------------------------------------------------- 2. exact keys


BAD_ENTRIES = ["prod/../../etc/passwd", "../x.csv.gz", "prod/./x.csv.gz", "prod//x.csv.gz", "//prod/x.csv.gz",
               "prod\\x.csv.gz", "prod/x\x00.csv.gz", "prod/x\n.csv.gz", "prod/x/", "s3://my-bucket//prod/x.csv.gz",
               "s3://my-bucket/../x.csv.gz", "s3://my-bucket/", "s3://my-bucket"]


@pytest.mark.parametrize("entry", BAD_ENTRIES)
def test_keys_a_reader_would_normalise_refuse_the_manifest(tmp_path: Path, entry: str) -> None:
    write_v1(tmp_path, "", "prod", "20240101-20240201", "a1", overwrite=True)
    bad = put(tmp_path, "prod/20240201-20240301/prod-Manifest.json",
              v1_doc("a2", ["prod/20240201-20240301/ok.csv.gz", entry], start=FEB))
    scan = find_manifests(LocalStore(tmp_path), export_name="prod")
    assert periods(scan.manifests) == [("prod", "2024-01")]
    message = only_problem(scan, bad)
    assert "reportKeys" in message and (repr(entry)[1:20] in message or "names no object" in message)


def test_one_manifest_naming_two_buckets_is_refused(tmp_path: Path) -> None:
    class Bucketed(LocalStore):
        bucket = "my-bucket"

    bad = put(tmp_path, "cur2/metadata/BILLING_PERIOD=2024-01/cur2-Manifest.json",
              v2_doc("e", ["s3://my-bucket/cur2/data/a.parquet", "s3://their-bucket/cur2/data/b.parquet"]))
    # exports copied to another bucket keep their first bucket's name; two names in one manifest are a conflict
    assert "several buckets" in only_problem(find_manifests(Bucketed(tmp_path), export_name="cur2"), bad)
    assert "several buckets" in only_problem(find_manifests(LocalStore(tmp_path), export_name="cur2"), bad)


@pytest.mark.parametrize("name", ["prod*-1.csv.gz", "prod?.csv.gz", "prod[1].csv.gz", "prod{a,b}.csv.gz",
                                  " spaced .csv.gz"])
def test_glob_characters_are_kept_exactly_and_flagged(tmp_path: Path, name: str) -> None:
    key = f"prod/20240101-20240201/a1/{name}"
    put(tmp_path, "prod/20240101-20240201/prod-Manifest.json", v1_doc("a1", [key, f"s3://b/{key}"]))
    scan = find_manifests(LocalStore(tmp_path), export_name="prod")
    [m] = scan.manifests
    assert m.data_keys == (key,)
    assert LocalStore(tmp_path).needs_literal_read(key) is (name.strip() != "spaced .csv.gz")


def test_a_manifest_symlinked_outside_the_folder_fails_its_month_only(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.json").write_text(json.dumps(v1_doc("x", [], start=FEB)))
    root = tmp_path / "bucket"
    write_v1(root, "", "prod", "20240101-20240201", "a1", overwrite=True)
    (root / "prod" / "20240201-20240301").mkdir(parents=True)
    (root / "prod" / "20240201-20240301" / "prod-Manifest.json").symlink_to(tmp_path / "elsewhere.json")
    scan = find_manifests(LocalStore(root), export_name="prod")
    assert periods(scan.manifests) == [("prod", "2024-01")]
    assert "outside the source folder" in only_problem(scan, "prod/20240201-20240301/prod-Manifest.json")


# ------------------------------------------------------------------------------------- 3. parsing


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"\xff\xfe{}", "UTF-8"), (b"{not json", "not valid JSON"), (b"[" * 100_000, "nested too deeply"),
     (b'{"a":' * 100_000, "nested too deeply"), (b"null", "JSON object"), (b'"text"', "JSON object"),
     (b"3", "JSON object"), (b'{"assemblyId": "a", "assemblyId": "b"}', "appears twice"),
     (b'{"assemblyId": ' + b"1" * 5000 + b"}", "not valid JSON"),
     (json.dumps({**v1_doc("a", []), "assemblyId": 5}).encode(), "assemblyId"),
     (json.dumps({**v1_doc("a", []), "billingPeriod": {"start": 20240101}}).encode(), "billingPeriod"),
     (json.dumps({**v1_doc("a", []), "billingPeriod": ["2024-01"]}).encode(), "billingPeriod"),
     (json.dumps({**v1_doc("a", []), "reportKeys": {"a": "b"}}).encode(), "reportKeys"),
     (json.dumps({**v1_doc("a", []), "columns": [1]}).encode(), "column"),
     (json.dumps({**v1_doc("a", []), "columns": [{"name": 5}]}).encode(), "column"),
     (json.dumps({**v1_doc("a", []), "columns": [{"name": "x", "type": ["y"]}]}).encode(), "non-text")],
)
def test_unusable_manifests_fail_their_month_not_the_run(tmp_path: Path, raw: bytes, reason: str) -> None:
    write_v1(tmp_path, "", "prod", "20240201-20240301", "a2", overwrite=True)
    bad = put(tmp_path, "prod/20240101-20240201/prod-Manifest.json", raw)
    scan = find_manifests(LocalStore(tmp_path), export_name="prod")
    assert periods(scan.manifests) == [("prod", "2024-02")]
    message = only_problem(scan, bad)
    assert reason in message and len(message) < 600


def test_odd_but_harmless_fields_are_only_hints(tmp_path: Path) -> None:
    doc = {**v1_doc("a", ["prod/x.csv.gz"]), "compression": 5, "contentType": {"x": 1}, "bucket": None}
    m = parse_manifest(json.dumps(doc).encode(), key="k", store=LocalStore(tmp_path), export_name="prod",
                       cur_version="v1", period_from_key="2024-01")
    assert m.data_keys == ("prod/x.csv.gz",) and m.compression is None  # unknown: the reader sniffs


def test_huge_manifests_are_refused_before_and_while_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", 1000)
    bad = put(tmp_path, "prod/20240101-20240201/prod-Manifest.json", v1_doc("a", ["prod/x.csv.gz"] * 100))
    assert "1000" in only_problem(find_manifests(LocalStore(tmp_path), export_name="prod"), bad)

    class LyingListing(LocalStore):  # a listing that under-reports the size: the read itself is bounded
        def list(self, prefix: str) -> Any:
            for info in super().list(prefix):
                yield type(info)(key=info.key, size=10)

    assert "1000" in only_problem(find_manifests(LyingListing(tmp_path), export_name="prod"), bad)
    with pytest.raises(manifest_module.ManifestError, match="more than the 1000"):
        parse_manifest((tmp_path / bad).read_bytes(), key=bad, store=LocalStore(tmp_path), export_name="prod",
                       cur_version="v1", period_from_key=None)
