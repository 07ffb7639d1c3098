"""Data-quality findings of ``finops aws verify`` on a real (embedded) DuckDB: each on data that has it, none on
data that does not."""

from __future__ import annotations

from pathlib import Path

from core.backends.duckdb import DuckDBConfig
from core.backends.duckdb.backend import DuckDBBackend
from vendors.aws.verify import findings, payers

COLUMNS = ("billing_period", "identity_line_item_id", "identity_time_interval", "line_item_currency_code",
           "line_item_usage_type", "bill_payer_account_id", "line_item_unblended_cost")
CLEAN = [
    ("2024-03", "a", "2024-03-01/2024-03-02", "USD", "USE1-BoxUsage:m5.large", "001", 1.0),
    ("2024-03", "b", "2024-03-01/2024-03-02", "USD", "USE1-TimedStorage-ByteHrs", "001", 2.0),
    ("2024-03", "a", "2024-03-02/2024-03-03", "USD", "USE1-BoxUsage:m5.large", "001", 1.0),  # same id, other hour
]


def _backend(tmp_path: Path, rows: list[tuple]) -> DuckDBBackend:
    backend = DuckDBBackend(DuckDBConfig(database_path=tmp_path / "f.duckdb"))
    backend.execute("CREATE SCHEMA aws_billing")
    types = ["VARCHAR"] * 6 + ["DOUBLE"]
    backend.execute(f"CREATE TABLE aws_billing.t ({', '.join(f'{c} {t}' for c, t in zip(COLUMNS, types))})")
    for row in rows:
        backend.execute(f"INSERT INTO aws_billing.t VALUES ({', '.join('?' for _ in row)})", list(row))
    return backend


def test_clean_data_has_no_finding(tmp_path: Path) -> None:
    with _backend(tmp_path, CLEAN) as backend:
        assert findings(backend, "aws_billing", "t", "2024-03") == []
        assert payers(backend, "aws_billing", "t", "2024-03") == {"001"}


def test_each_finding_on_data_that_has_it(tmp_path: Path) -> None:
    rows = [*CLEAN,
            CLEAN[0],  # the same line item twice
            ("2024-03", "c", "2024-03-01/2024-03-02", "EUR", "USE1-BoxUsage:m5.large", "001", 3.0),
            ("2024-03", "d", "2024-03-01/2024-03-02", "USD", "USE1-EKSPod-EC2-vCPU-Hours", "001", 0.5),
            ("2024-03", "e", "2024-03-01/2024-03-02", "USD", "USE1-ECSTask-EC2-GB-Hours", "001", 0.25),
            ("2024-04", "a", "2024-04-01/2024-04-02", "JPY", "USE1-EKSPod-EC2-vCPU-Hours", "002", 9.0)]  # other month
    with _backend(tmp_path, rows) as backend:
        found = findings(backend, "aws_billing", "t", "2024-03")
    assert len(found) == 3
    assert found[0].startswith("1 line item(s) appear more than once")
    assert found[1].startswith("2 currencies in one period")
    assert found[2].startswith("2 split cost allocation row(s)")
