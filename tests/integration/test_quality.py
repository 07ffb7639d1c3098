"""Data-quality findings recorded per period at import, on every conformance target (the CLI, a real S3 API server,
the real database): each finding on data that has it and none on data that does not; ``[quality] strict`` fails a
period with findings and keeps the old version; without it the period loads with warnings.

The exports are the generator's (ground truth known), then given the defects on purpose: line items repeated,
one line item in EUR, split cost allocation rows (``EKSPod-*``) beside the EC2 instance rows, and a CUR v1 of the
same payer account as the CUR 2.0 export.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli
from tests.integration.conftest import S3
from tests.integration.targets import Target
from tests.integration.test_multi_backend import V1, V1_TABLE, V2, V2_TABLE, target  # noqa: F401  (the fixture)

DUPLICATED, SPLIT = 3, 4
DEFECTS = {"duplicate_line_items": DUPLICATED, "currencies": 2, "split_cost_allocation": SPLIT}


def _add_defects(path: Path) -> int:
    """Rewrite one generated CUR 2.0 file: SPLIT rows become EKSPod split rows and one row is in EUR (neither an
    instance row), then DUPLICATED instance rows are appended again. Returns the file's rows."""
    table = pq.read_table(path)
    usage = table.column("line_item_usage_type").to_pylist()
    currency = table.column("line_item_currency_code").to_pylist()
    others = [i for i, u in enumerate(usage) if "BoxUsage" not in (u or "")]
    boxes = [i for i, u in enumerate(usage) if "BoxUsage" in (u or "")]
    assert len(others) > SPLIT and len(boxes) > DUPLICATED  # the generator's mix: both kinds of rows
    for i in others[:SPLIT]:
        usage[i] = "USE1-EKSPod-EC2-vCPU-Hours"
    currency[others[SPLIT]] = "EUR"
    for name, values in (("line_item_usage_type", usage), ("line_item_currency_code", currency)):
        position = table.schema.get_field_index(name)
        table = table.set_column(position, table.schema.field(position), pa.array(values, table.schema.field(position).type))
    table = pa.concat_tables([table, table.take(boxes[:DUPLICATED])])
    pq.write_table(table, path)
    return table.num_rows


class Bucket:
    def __init__(self, s3: S3, root: Path, gen: Any, into: Target) -> None:
        self.s3, self.root, self.gen, self.target = s3, root, gen, into
        self.bucket = s3.new_bucket()

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.s3.env(), **self.target.env(), "OPEN_FINOPS_AWS_BUCKET": self.bucket, **extra}

    def write_v2(self, periods: list[str], rows: int, defective: tuple[str, ...] = (), **kwargs: Any) -> dict[str, int]:
        truth = self.gen.write_cur2_export(self.root, prefix="exports", export_name=V2, periods=periods,
                                           rows_per_period=rows, files_per_period=1, **kwargs)
        counts = {p: truth.periods[p].rows for p in periods}
        for period in defective:
            counts[period] = _add_defects(self.root / truth.periods[period].data_keys[0])
        self.s3.sync_tree(self.root, self.bucket)
        return counts

    def run(self, *args: str, **env: str) -> Any:
        result = run_cli("aws", *args, env=self.env(**env))
        assert "Traceback" not in result.stderr, result.stderr
        return result


@pytest.fixture()
def bucket(s3: S3, tmp_path: Path, gen: Any, target: Target) -> Bucket:  # noqa: F811
    return Bucket(s3, tmp_path / "bucket", gen, target)


def _kinds(findings: list[dict[str, Any]] | None) -> dict[str, int]:
    assert findings is not None  # checked (None would mean: never checked)
    return {f["kind"]: f["count"] for f in findings}


def _state(bucket: Bucket, *args: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    records = bucket.run("show-state", "--json", *args).json()["records"]
    return {(r["export_name"], r["billing_period"], r["version_id"]): r for r in records}


def test_findings_recorded_at_import_and_shown(bucket: Bucket) -> None:
    """One run loads a CUR 2.0 export (January defective, February clean) and then a CUR v1 export of the same
    payer for February: each finding where the data has it, none elsewhere, in --json, on stderr, in the state."""
    rows = bucket.write_v2(["2024-01", "2024-02"], 200, defective=("2024-01",), seed=31)
    bucket.gen.write_cur1_export(bucket.root, prefix="cur", export_name=V1, periods=["2024-02"], rows_per_period=120,
                                 parts=1, seed=32)
    bucket.s3.sync_tree(bucket.root, bucket.bucket)

    result = bucket.run("import-cur", "--json")
    assert result.code == 0, result.stderr  # findings warn; they do not fail the import
    periods = {(p["export_name"], p["billing_period"]): p for p in result.json()["periods"]}
    assert {k: p["status"] for k, p in periods.items()} == {(V2, "2024-01"): "loaded", (V2, "2024-02"): "loaded",
                                                            (V1, "2024-02"): "loaded"}
    assert periods[(V2, "2024-01")]["rows"] == rows["2024-01"]
    assert _kinds(periods[(V2, "2024-01")]["findings"]) == DEFECTS
    assert periods[(V2, "2024-02")]["findings"] == []  # clean, and the v1 export was not loaded yet
    assert _kinds(periods[(V1, "2024-02")]["findings"]) == {"payer_in_two_exports": 1}
    assert V2_TABLE in periods[(V1, "2024-02")]["findings"][0]["message"]
    stderr = " ".join(result.stderr.split())
    for finding in [*periods[(V2, "2024-01")]["findings"], *periods[(V1, "2024-02")]["findings"]]:
        assert " ".join(finding["message"].split()) in stderr  # one warning line per finding

    state = _state(bucket)
    recorded = {(e, p): r for (e, p, _), r in state.items()}
    assert _kinds(json.loads(recorded[(V2, "2024-01")]["quality_findings"])) == DEFECTS
    assert recorded[(V2, "2024-01")]["findings"] == json.loads(recorded[(V2, "2024-01")]["quality_findings"])
    assert recorded[(V2, "2024-02")]["quality_findings"] == "[]"
    assert _kinds(recorded[(V1, "2024-02")]["findings"]) == {"payer_in_two_exports": 1}
    table = bucket.run("show-state")
    assert table.code == 0 and "duplicate_line_items" in table.stdout and "payer_in_two_exports" in table.stdout

    # verify: the same implementation, now; February of the CUR 2.0 export now has the v1 export beside it
    checked = bucket.run("verify", "--json")
    assert checked.code == 0, checked.stderr  # every period matches its source: findings do not fail verify
    doc = {(p["export_name"], p["billing_period"]): p for p in checked.json()["periods"]}
    assert _kinds(doc[(V2, "2024-01")]["findings"]) == DEFECTS
    assert _kinds(doc[(V2, "2024-01")]["recorded_findings"]) == DEFECTS
    assert _kinds(doc[(V2, "2024-02")]["findings"]) == {"payer_in_two_exports": 1}
    assert doc[(V2, "2024-02")]["recorded_findings"] == []
    assert _kinds(doc[(V1, "2024-02")]["findings"]) == {"payer_in_two_exports": 1}


def test_strict_fails_the_period_and_keeps_the_old_version(bucket: Bucket) -> None:
    clean = bucket.write_v2(["2024-01", "2024-02"], 150, seed=41)
    first = bucket.run("import-cur", "--json", OPEN_FINOPS_QUALITY_STRICT="true")
    assert first.code == 0, first.stderr  # clean data: strict changes nothing
    assert all(p["findings"] == [] for p in first.json()["periods"])
    old_version = next(v for (_, p, v) in _state(bucket) if p == "2024-01")
    old_total = bucket.target.period_totals(V2_TABLE)["2024-01"]
    assert old_total[0] == clean["2024-01"]

    # AWS re-delivers January, with the defects
    rows = bucket.write_v2(["2024-01"], 180, defective=("2024-01",), seed=42,
                           execution_ids={"2024-01": "exec-defective-0001"})
    strict = bucket.run("import-cur", "--json", OPEN_FINOPS_QUALITY_STRICT="true")
    assert strict.code == 1
    january = next(p for p in strict.json()["periods"] if p["billing_period"] == "2024-01")
    assert january["status"] == "failed" and "[quality] strict" in january["error"]
    assert _kinds(january["findings"]) == DEFECTS
    assert "line item(s) appear more than once" in january["error"] and "currencies" in january["error"]
    assert bucket.target.period_totals(V2_TABLE)["2024-01"] == old_total  # nothing of the new version visible
    history = _state(bucket, "--billing-period", "2024-01")
    failed = history[(V2, "2024-01", "exec-defective-0001")]
    assert failed["status"] == "failed" and not failed["is_current"]
    assert "[quality] strict" in failed["error_message"] and _kinds(failed["findings"]) == DEFECTS
    assert history[(V2, "2024-01", old_version)]["is_current"]

    # without strict (the default), the same version loads, with its findings as warnings
    relaxed = bucket.run("import-cur", "--json")
    assert relaxed.code == 0, relaxed.stderr
    january = next(p for p in relaxed.json()["periods"] if p["billing_period"] == "2024-01")
    assert january["status"] == "loaded" and _kinds(january["findings"]) == DEFECTS
    assert "line item(s) appear more than once" in " ".join(relaxed.stderr.split())
    count, cost = bucket.target.period_totals(V2_TABLE)["2024-01"]
    assert count == rows["2024-01"] and Decimal(str(cost)) != Decimal(str(old_total[1]))
    current = _state(bucket, "--billing-period", "2024-01")[(V2, "2024-01", "exec-defective-0001")]
    assert current["is_current"] and current["status"] == "completed" and _kinds(current["findings"]) == DEFECTS
