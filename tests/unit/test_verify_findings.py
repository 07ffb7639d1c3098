"""Data-quality findings (``core.backends.sqlengine.quality``, shared by the import and ``finops aws verify``) on a
real (embedded) DuckDB: each on data that has it, none on data that does not, and a table without the columns a
finding reads (a native FOCUS export) checked with its FOCUS names or skipped, never an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.backends.duckdb import DuckDBConfig
from core.backends.duckdb.backend import DuckDBBackend
from core.backends.sqlengine.quality import period_findings
from vendors.aws.columns import QUALITY_RULES

COLUMNS = ("billing_period", "identity_line_item_id", "identity_time_interval", "line_item_currency_code",
           "line_item_usage_type", "bill_payer_account_id", "line_item_unblended_cost")
CLEAN = [
    ("2024-03", "a", "2024-03-01/2024-03-02", "USD", "USE1-BoxUsage:m5.large", "001", 1.0),
    ("2024-03", "b", "2024-03-01/2024-03-02", "USD", "USE1-TimedStorage-ByteHrs", "001", 2.0),
    ("2024-03", "a", "2024-03-02/2024-03-03", "USD", "USE1-BoxUsage:m5.large", "001", 1.0),  # same id, other hour
]
FOCUS = ("billing_period", "BillingCurrency", "x_UsageType", "BillingAccountId", "BilledCost")


def _backend(tmp_path: Path, tables: dict[str, tuple[tuple[str, ...], list[tuple]]]) -> DuckDBBackend:
    backend = DuckDBBackend(DuckDBConfig(database_path=tmp_path / "f.duckdb"))
    backend.execute("CREATE SCHEMA aws_billing")
    for name, (columns, rows) in tables.items():
        body = ", ".join(f'"{c}" {"DOUBLE" if c.endswith(("cost", "Cost")) else "VARCHAR"}' for c in columns)
        backend.execute(f"CREATE TABLE aws_billing.{name} ({body})")
        for row in rows:
            backend.execute(f"INSERT INTO aws_billing.{name} VALUES ({', '.join('?' for _ in row)})", list(row))
    return backend


def _kinds(backend: DuckDBBackend, table: str = "t", period: str = "2024-03") -> dict[str, int]:
    return {f.kind: f.count for f in period_findings(backend, "aws_billing", table, period, QUALITY_RULES)}


def test_clean_data_has_no_finding(tmp_path: Path) -> None:
    with _backend(tmp_path, {"t": (COLUMNS, CLEAN)}) as backend:
        assert _kinds(backend) == {}


def test_each_finding_on_data_that_has_it(tmp_path: Path) -> None:
    rows = [*CLEAN,
            CLEAN[0],  # the same line item twice
            ("2024-03", "c", "2024-03-01/2024-03-02", "EUR", "USE1-BoxUsage:m5.large", "001", 3.0),
            ("2024-03", "d", "2024-03-01/2024-03-02", "USD", "USE1-EKSPod-EC2-vCPU-Hours", "001", 0.5),
            ("2024-03", "e", "2024-03-01/2024-03-02", "USD", "USE1-ECSTask-EC2-GB-Hours", "001", 0.25),
            ("2024-04", "a", "2024-04-01/2024-04-02", "JPY", "USE1-EKSPod-EC2-vCPU-Hours", "002", 9.0)]  # other month
    other = [("2024-03", "z", "2024-03-01/2024-03-02", "USD", "USE1-BoxUsage:m5.large", "001", 1.0)]
    with _backend(tmp_path, {"t": (COLUMNS, rows), "v1": (COLUMNS, other)}) as backend:
        found = period_findings(backend, "aws_billing", "t", "2024-03", QUALITY_RULES)
        april = _kinds(backend, period="2024-04")
    assert [(f.kind, f.count) for f in found] == [("duplicate_line_items", 1), ("currencies", 2),
                                                  ("split_cost_allocation", 2), ("payer_in_two_exports", 1)]
    assert found[0].message.startswith("1 line item(s) appear more than once")
    assert "(EUR, USD)" in found[1].message
    assert "(EKSPod-*, ECSTask-*)" in found[2].message
    assert "001" in found[3].message and "table v1" in found[3].message
    # April: split rows with no instance beside them, one currency, and no other export holds payer 002
    assert april == {}


def test_a_focus_table_is_checked_with_its_own_names(tmp_path: Path) -> None:
    """FOCUS columns: currency, split rows (x_UsageType) and the payer (BillingAccountId, also found against a CUR
    table's bill_payer_account_id); no line item identity in FOCUS, so no duplicate check (and no error)."""
    focus = [("2024-03", "USD", "USE1-BoxUsage:m5.large", "001", 1.0),
             ("2024-03", "EUR", "USE1-EKSPod-EC2-vCPU-Hours", "001", 1.0),
             ("2024-03", "USD", "USE1-BoxUsage:m5.large", "001", 1.0)]  # a FOCUS row repeated: not looked for
    with _backend(tmp_path, {"f": (FOCUS, focus), "t": (COLUMNS, CLEAN)}) as backend:
        assert _kinds(backend, "f") == {"currencies": 2, "split_cost_allocation": 1, "payer_in_two_exports": 1}
        assert _kinds(backend, "t") == {"payer_in_two_exports": 1}


def test_a_table_without_those_columns_has_no_finding(tmp_path: Path) -> None:
    with _backend(tmp_path, {"t": (("billing_period", "cost"), [("2024-03", 1.0), ("2024-03", 1.0)])}) as backend:
        assert _kinds(backend) == {}


def test_quality_strict_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``[quality] strict``: off by default, from config.toml or OPEN_FINOPS_QUALITY_STRICT (which wins), and shown
    with its source by ``finops config show``."""
    from core.config import Config

    monkeypatch.chdir(tmp_path)  # no config.toml here
    assert Config.load(environ={}).quality.strict is False
    toml = tmp_path / "finops.toml"
    toml.write_text("[quality]\nstrict = true\n")
    assert Config.load(toml, environ={}).quality.strict is True
    config = Config.load(toml, environ={"OPEN_FINOPS_QUALITY_STRICT": "false"})
    assert config.quality.strict is False
    shown = {s.path: (s.value, s.source) for s in config.settings()}
    assert shown["quality.strict"] == (False, "env OPEN_FINOPS_QUALITY_STRICT")


def test_the_exact_sql_of_the_findings(tmp_path: Path) -> None:
    """What the checks send (pinned, as the exact-SQL tests do): aggregates only, every value bound."""
    with _backend(tmp_path, {"t": (COLUMNS, CLEAN), "v1": (COLUMNS, CLEAN)}) as backend:
        sent: list[tuple[str, list]] = []
        execute = backend.execute

        def recording(sql: str, params: Any = (), **kwargs: Any) -> Any:
            sent.append((sql, list(params)))
            return execute(sql, params, **kwargs)

        backend.execute = recording  # type: ignore[method-assign]
        period_findings(backend, "aws_billing", "t", "2024-03", QUALITY_RULES)
    queries = [(sql, params) for sql, params in sent if "information_schema" not in sql]
    assert queries == [
        (('SELECT COUNT(*), SUM(copies) FROM (SELECT COUNT(*) AS copies FROM "aws_billing"."t" WHERE "billing_period" = ? '
         'AND "identity_line_item_id" IS NOT NULL GROUP BY "identity_line_item_id", "identity_time_interval" '
         'HAVING COUNT(*) > 1) d'), ["2024-03"]),
        (('SELECT MIN("line_item_currency_code"), MAX("line_item_currency_code"), SUM(CASE WHEN '
         '"line_item_usage_type" LIKE ? OR "line_item_usage_type" LIKE ? THEN 1 ELSE 0 END), SUM(CASE WHEN '
         '"line_item_usage_type" LIKE ? THEN 1 ELSE 0 END) FROM "aws_billing"."t" WHERE "billing_period" = ?'),
         ["%EKSPod-%", "%ECSTask-%", "%BoxUsage%", "2024-03"]),
        (('SELECT DISTINCT a."bill_payer_account_id" FROM "aws_billing"."t" a WHERE a."billing_period" = ? AND '
         'a."bill_payer_account_id" IN (SELECT b."bill_payer_account_id" FROM "aws_billing"."v1" b WHERE '
         'b."billing_period" = ?)'), ["2024-03", "2024-03"]),
    ]
