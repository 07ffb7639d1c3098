"""Native FOCUS export tables for the FOCUS relation tests, loaded through the backend API the way an import loads
a period (Parquet file → ``replace_period`` → state row with the reconciled ``BilledCost`` sum).

Rows are built per (billing period, billing account); every value follows FOCUS 1.2, so ``--check`` passes on
them unless a test overrides a column with a bad value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.backends.base import ColumnSpec, FilePlan, LoadRecord, PeriodLoad
from core.state import LoadStateTracker
from core.storage import LocalStore
from vendors.aws.focus.columns import FOCUS_COLUMNS, VERSION_1_2_ONLY, X_COLUMNS

ARROW = {"string": pa.string(), "double": pa.float64(), "timestamp": pa.timestamp("us", tz="UTC"),
         "json": pa.string()}


def _bounds(period: str) -> tuple[datetime, datetime]:
    year, month = (int(p) for p in period.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def focus_rows(period: str, account: str | list[str], costs: list[float], *, version: str = "1.2",
               overrides: dict[str, list[Any]] | None = None) -> pa.Table:
    """One row per cost: usage rows of ``account`` (one, or one per row) in ``period`` (FOCUS 1.0 leaves out the
    columns 1.1/1.2 added)."""
    start, end = _bounds(period)
    n = len(costs)
    accounts = account if isinstance(account, list) else [account] * n
    values: dict[str, list[Any]] = {
        "BilledCost": costs, "EffectiveCost": costs, "ListCost": costs, "ContractedCost": costs,
        "BillingAccountId": accounts, "BillingAccountName": ["payer"] * n, "BillingCurrency": ["USD"] * n,
        "BillingPeriodStart": [start] * n, "BillingPeriodEnd": [end] * n,
        "ChargePeriodStart": [start] * n, "ChargePeriodEnd": [start.replace(hour=1)] * n,
        "ChargeCategory": ["Usage"] * n, "ChargeClass": [None] * n, "ChargeFrequency": ["Usage-Based"] * n,
        "ChargeDescription": [f"usage {i}" for i in range(n)], "PricingCategory": ["Standard"] * n,
        "CommitmentDiscountStatus": [None] * n, "InvoiceIssuerName": ["Amazon Web Services, Inc."] * n,
        "ProviderName": ["AWS"] * n, "PublisherName": ["Amazon Web Services, Inc."] * n,
        "ServiceCategory": ["Compute"] * n, "ServiceName": ["Amazon Elastic Compute Cloud"] * n,
        "SubAccountId": ["000000000042"] * n, "RegionId": ["us-east-1"] * n, "ConsumedQuantity": [1.0] * n,
        "Tags": ['{"team": "core"}'] * n, "x_ServiceCode": ["AmazonEC2"] * n,
    }
    values.update(overrides or {})
    columns = [c for c in FOCUS_COLUMNS + X_COLUMNS if version == "1.2" or c.name not in VERSION_1_2_ONLY]
    return pa.table({c.name: pa.array(values.get(c.name, [None] * n), ARROW[c.kind]) for c in columns})


def load_focus(backend: Any, dataset: str, root: Path, export: str, period: str, table: pa.Table, *,
               version: str = "1.2", version_id: str = "v1") -> int:
    """``table`` as period ``period`` of the native FOCUS export ``export``; returns the rows stored."""
    key = f"{export}/{period}/{version_id}.parquet"
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    store = LocalStore(root)
    reader = backend.data_reader(store)
    source = reader.describe(key)
    kinds = {c.name: c.kind for c in FOCUS_COLUMNS + X_COLUMNS}
    specs = tuple(ColumnSpec(c.name, c.name, kinds[c.name], c.kind) for c in source.columns)  # type: ignore[arg-type]
    tracker = LoadStateTracker(backend.state_manager(dataset), vendor="aws")
    tracker.ensure()
    record = tracker.begin(LoadRecord("aws", export, period, version_id, f"focus-{version}", f"file://{root}",
                                      file_count=1))
    load = PeriodLoad(dataset=dataset, table=backend.table_name(export), billing_period=period,
                      files=[FilePlan(source, specs, (("billing_period", period),))], record=record, reader=reader,
                      sum_columns=("BilledCost",))
    return backend.replace_period(load)
