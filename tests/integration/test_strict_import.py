"""A damaged file fails its month with exit 1, names the file, and leaves the loaded version as it was."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.conftest import ROOT, run_cli

SAMPLES = ROOT / "examples" / "sample-exports"
PART = "cur/legacy-cur/20240201-20240301/75433320-eb34-451e-8894-6fdad6a16800/legacy-cur-1.csv.gz"

pytestmark = pytest.mark.duckdb


def _import(source: Path, db: Path, *extra: str) -> tuple[int, str]:
    result = run_cli("aws", "import-cur", "--source-dir", str(source), "--export-name", "legacy-cur",
                     "-D", f"database_path={db}", "--json", *extra)
    return result.code, result.stdout + result.stderr


def _state(db: Path) -> list[tuple[str, str, bool, int | None]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(
            "SELECT billing_period, status, is_current, row_count FROM aws_billing._finops_load_state "
            "ORDER BY billing_period, started_at").fetchall()


def _rows(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return dict(conn.execute("SELECT billing_period, COUNT(*) FROM aws_billing.legacy_cur GROUP BY 1").fetchall())


@pytest.mark.parametrize("damage", ["truncated", "garbage-tail"])
def test_a_damaged_gzip_part_fails_its_month_and_keeps_the_loaded_version(tmp_path: Path, damage: str) -> None:
    source, db = tmp_path / "bucket", tmp_path / "finops.duckdb"
    shutil.copytree(SAMPLES, source)
    code, out = _import(source, db)
    assert code == 0, out
    before = _rows(db)
    assert before == {"2024-01": 1500, "2024-02": 1500}

    part = source / PART
    whole = part.read_bytes()
    # a cut stream (no end marker), or one whose tail was overwritten: both must be refused, never half-loaded
    part.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else whole[:-40] + b"\0" * 40)
    assert len(gzip.decompress(whole)) > 0
    code, out = _import(source, db, "--reset")
    assert code == 1, out
    assert "legacy-cur-1.csv.gz" in out and "Traceback" not in out
    assert _rows(db) == before  # the month that failed still holds the version loaded before
    # one row per (period, version): the reload of the same version failed; it is still the version the table
    # holds, with its rows, and the next run tries it again
    assert _state(db) == [("2024-01", "completed", True, 1500), ("2024-02", "failed", True, 1500)]


def test_a_key_with_glob_characters_is_read_literally(tmp_path: Path) -> None:
    """AWS allows ``*`` and ``[`` in report names; DuckDB would expand them and read a neighbour's files."""
    source, db = tmp_path / "bucket", tmp_path / "finops.duckdb"
    shutil.copytree(SAMPLES, source)
    period = source / "cur/legacy-cur/20240201-20240301/75433320-eb34-451e-8894-6fdad6a16800"
    (period / "legacy-cur-1.csv.gz").rename(period / "legacy-cur-[1].csv.gz")
    # a neighbour the glob would match, with rows of its own
    shutil.copy(period / "legacy-cur-2.csv.gz", period / "legacy-cur-1.csv.gz")
    for manifest in (period / "legacy-cur-Manifest.json", period.parent / "legacy-cur-Manifest.json"):
        manifest.write_text(manifest.read_text().replace("legacy-cur-1.csv.gz", "legacy-cur-[1].csv.gz"))
    code, out = _import(source, db)
    assert code == 0, out
    assert _rows(db) == {"2024-01": 1500, "2024-02": 1500}


def _rewrite_csv_part(path: Path, edit: object) -> None:
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    path.write_bytes(gzip.compress("".join(edit(lines)).encode()))  # type: ignore[operator]


def _first_header_is(header: str, old: str, new: str) -> str:
    assert old in header
    return header.replace(old, new, 1)


@pytest.mark.parametrize(
    ("case", "edit", "named"),
    [
        # a misspelt cost column: the manifest's columns are the contract
        ("misspelt", lambda ls: [_first_header_is(ls[0], "lineItem/UnblendedCost", "lineItem/UnblendedCosts"), *ls[1:]],
         "line_item_unblended_cost"),
        # no header row: the first data row would otherwise become column names
        # (its values repeat, so the duplicate-column check may be the one that speaks: either names the file)
        ("no-header", lambda ls: ls[1:], "legacy-cur-1.csv.gz"),
        # the same column twice: which one holds the costs?
        ("twice", lambda ls: [ls[0].rstrip("\r\n") + ",lineItem/UnblendedCost\n",
                              *[line.rstrip("\r\n") + ",0\n" for line in ls[1:]]], "more than once"),
    ],
)
def test_a_csv_part_whose_columns_break_the_manifest_fails_its_month(
    tmp_path: Path, case: str, edit: object, named: str
) -> None:
    source, db = tmp_path / "bucket", tmp_path / "finops.duckdb"
    shutil.copytree(SAMPLES, source)
    _rewrite_csv_part(source / PART, edit)
    code, out = _import(source, db)
    assert code == 1, out
    assert "legacy-cur-1.csv.gz" in out and named in out and "Traceback" not in out
    assert _rows(db) == {"2024-01": 1500}  # the other month loads; the broken one has nothing half-loaded
    assert [(p, s) for p, s, _, _ in _state(db)] == [("2024-01", "completed"), ("2024-02", "failed")]


def test_a_parquet_file_with_a_column_twice_fails_its_month(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source, db = tmp_path / "bucket", tmp_path / "finops.duckdb"
    shutil.copytree(SAMPLES, source)
    path = next((source / "exports/cur2-daily/data/BILLING_PERIOD=2024-02").glob("*.parquet"))
    table = pq.read_table(path)
    cost = table.column("line_item_unblended_cost")
    pq.write_table(pa.Table.from_arrays([*table.columns, cost], names=[*table.column_names, cost._name or
                                                                         "line_item_unblended_cost"]), path)
    result = run_cli("aws", "import-cur", "--source-dir", str(source), "--export-name", "cur2-daily",
                     "-D", f"database_path={db}", "--json")
    out = result.stdout + result.stderr
    assert result.code == 1, out
    assert "cur2-daily-00001.snappy.parquet" in out and "more than once" in out and "Traceback" not in out
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT billing_period, COUNT(*) FROM aws_billing.cur2_daily GROUP BY 1").fetchall() == [
            ("2024-01", 2000)]


def _tables(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        names = [t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'aws_billing' "
            "AND table_name <> '_finops_load_state' AND table_type = 'BASE TABLE'").fetchall()]  # not FOCUS views
        return {t: conn.execute(f'SELECT COUNT(*) FROM aws_billing."{t}"').fetchone()[0] for t in names}


def _state_exports(db: Path) -> set[str]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return {e for (e,) in conn.execute("SELECT DISTINCT export_name FROM aws_billing._finops_load_state").fetchall()}


def test_exports_whose_names_share_a_table_are_refused_not_mixed(tmp_path: Path, gen: object) -> None:
    source, db = tmp_path / "bucket", tmp_path / "finops.duckdb"
    first = gen.write_cur2_export(source, prefix="cur", export_name="Prod-Daily", periods=["2024-01"],  # type: ignore[attr-defined]
                                  rows_per_period=20)
    gen.write_cur2_export(source, prefix="cur", export_name="prod_daily", periods=["2024-01"],  # type: ignore[attr-defined]
                          rows_per_period=30, seed=7)
    result = run_cli("aws", "import-cur", "--source-dir", str(source), "--prefix", "cur", "-D", f"database_path={db}",
                     "--json")
    out = result.stdout + result.stderr
    assert result.code == 1, out
    assert "would share the table prod_daily" in out and "Traceback" not in out
    assert _tables(db) == {"prod_daily": first.periods["2024-01"].rows}  # only the first name's rows
    assert _state_exports(db) == {"Prod-Daily"}  # the state claims nothing for the refused export
    # a later run that finds only the other name is refused too: the table already holds the first one
    again = run_cli("aws", "import-cur", "--source-dir", str(source), "--prefix", "cur", "--export-name",
                    "prod_daily", "-D", f"database_path={db}", "--json")
    assert again.code == 1 and "already holds export 'Prod-Daily'" in again.stdout + again.stderr
    assert _tables(db) == {"prod_daily": first.periods["2024-01"].rows} and _state_exports(db) == {"Prod-Daily"}


def test_one_export_name_under_two_parents_is_refused(tmp_path: Path, gen: object) -> None:
    source, db = tmp_path / "bucket", tmp_path / "finops.duckdb"
    gen.write_cur2_export(source, prefix="cur/live", export_name="prod", periods=["2024-01"],  # type: ignore[attr-defined]
                          rows_per_period=20)
    gen.write_cur2_export(source, prefix="cur/backup", export_name="prod", periods=["2024-01", "2024-02"],  # type: ignore[attr-defined]
                          rows_per_period=30, seed=9)
    result = run_cli("aws", "import-cur", "--source-dir", str(source), "--prefix", "cur", "-D", f"database_path={db}",
                     "--json")
    out = result.stdout + result.stderr
    assert result.code == 1, out
    assert "found in 2 places" in out and "cur/backup/prod" in out and "cur/live/prod" in out
    assert not db.exists()  # refused before anything was written: no table, no state row


def test_s3_refusing_duckdbs_own_reads_is_exit_3(s3: object, tmp_path: Path, gen: object) -> None:
    """boto3 lists and reads the header, then S3 refuses the ranged reads DuckDB's httpfs makes itself (a key
    that expired, a bucket policy by user agent): the source refused access, which is exit 3, not a bad month."""
    from tests.integration.s3_faults import Fault, FaultProxy

    root, bucket = tmp_path / "bucket", s3.new_bucket()  # type: ignore[attr-defined]
    gen.write_cur1_export(root, prefix="cur", export_name="plain", periods=["2024-01"],  # type: ignore[attr-defined]
                          rows_per_period=20, parts=1, compression="none")
    s3.upload_tree(root, bucket)  # type: ignore[attr-defined]
    with FaultProxy(s3.endpoint) as proxy:  # type: ignore[attr-defined]
        proxy.add(Fault(method="GET", path=".csv", ranged=True, times=1))  # boto3's 8-byte sniff goes through
        proxy.add(Fault.error(403, "AccessDenied", method="GET", path=".csv", ranged=True, times=None))
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": proxy.endpoint}
        result = run_cli("aws", "import-cur", "--bucket", bucket, "--prefix", "cur",
                         "-D", f"database_path={tmp_path / 'f.duckdb'}", "--json", env=env)
        seen = [(r.method, r.path, r.range) for r in proxy.seen if ".csv" in r.path]
    out = result.stdout + result.stderr
    assert result.code == 3, (out, seen)
    # boto3's sniff and header read, then DuckDB's own ranged reads, refused
    assert [r for _, _, r in seen][:2] == ["bytes=0-7", None] and len(seen) > 2, seen
    assert "refused access" in out and "Traceback" not in out and "testing-secret" not in out
    with duckdb.connect(str(tmp_path / "f.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT status FROM aws_billing._finops_load_state").fetchall() == [("failed",)]
