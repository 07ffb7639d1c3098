"""Snowflake's native load reads no data file from this machine: ``finops`` plans each file from its header or
footer (a few ranged GETs) and Snowflake — here the emulator's own process, whose DuckDB reads the session's moto
server directly — reads the rows with ``COPY INTO … FROM 's3://…'``.

``finops`` talks to S3 through a logging proxy (:mod:`tests.integration.s3_faults`); the emulator does not. Every
GET the ``finops`` process sends for a data key is a ranged GET, the bytes it asks for stay a small part of each
file, and yet every row and every cent of the export arrives in the table: someone else read the files.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.conftest import run_cli
from tests.integration.conftest import S3
from tests.integration.s3_faults import FaultProxy
from tests.integration.targets import SnowflakeTarget

pytestmark = pytest.mark.snowflake

DATA_FILE = re.compile(r"\.(parquet|csv\.gz|csv)$")


def _bytes_asked(range_header: str | None, size: int) -> int:
    if range_header is None:
        return size  # a whole-object GET
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
    assert match, range_header
    start, end = int(match.group(1)), int(match.group(2) or size - 1)
    return max(0, min(end, size - 1) - start + 1)


def test_native_import_reads_no_data_file_in_the_finops_process(
    s3: S3, gen: Any, tmp_path: Path, snowflake_emulator: Any, snowflake_schema: str
) -> None:
    root = tmp_path / "bucket"
    bucket = s3.new_bucket()
    v1 = gen.write_cur1_export(root, prefix="cur", export_name="legacy-cur", periods=["2024-01"],
                               rows_per_period=3000, parts=2, seed=21)
    v2 = gen.write_cur2_export(root, prefix="exports", export_name="cur2-daily", periods=["2024-01"],
                               rows_per_period=3000, files_per_period=2, seed=22)
    s3.sync_tree(root, bucket)
    sizes = {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}
    data_keys = {key for key in sizes if DATA_FILE.search(key)}
    assert len(data_keys) == 4

    target = SnowflakeTarget(snowflake_emulator, snowflake_schema, tmp_path / "work")
    with FaultProxy(s3.endpoint) as proxy:
        env = {**s3.env(), **target.env(), "OPEN_FINOPS_AWS_BUCKET": bucket, "AWS_ENDPOINT_URL_S3": proxy.endpoint}
        result = run_cli("aws", "import-cur", "--json", env=env)
        seen = list(proxy.seen)
    assert result.code == 0, result.stderr
    assert result.json()["summary"]["rows"] == 6000

    # the finops process: only ranged GETs of data keys, a small part of each file
    asked: dict[str, int] = dict.fromkeys(data_keys, 0)
    for request in seen:
        key = unquote(request.path.split("/", 2)[-1]) if request.path.count("/") >= 2 else ""
        if request.method == "GET" and key in data_keys:
            assert request.range is not None, f"whole-object GET of {key}"
            asked[key] += _bytes_asked(request.range, sizes[key])
    assert all(asked.values()), asked  # each file was planned from its header or footer, by ranged GETs
    for key, count in asked.items():
        assert count < sizes[key] / 2, (key, count, sizes[key])
    assert sum(asked.values()) < sum(sizes[k] for k in data_keys) / 4

    # and yet every row and every cent is in the table: the emulator read the files itself
    for table, truth in (("legacy_cur", v1), ("cur2_daily", v2)):
        totals = target.period_totals(table)
        rows, cost = totals["2024-01"]
        assert rows == truth.periods["2024-01"].rows
        assert Decimal(str(cost)) == pytest.approx(truth.periods["2024-01"].unblended_cost, abs=Decimal("1e-6"))
