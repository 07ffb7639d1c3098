"""Write small, realistic AWS Data Exports FOCUS exports (``FOCUS_1_2_AWS``) with known ground truth.

The layout and manifest are CUR 2.0's, as AWS delivers a FOCUS export::

    <prefix>/<export>/data/BILLING_PERIOD=YYYY-MM/<export>-00001.snappy.parquet
    <prefix>/<export>/metadata/BILLING_PERIOD=YYYY-MM/<export>-Manifest.json   (executionId, billingPeriod,
                                                                               dataFiles, columns)

Each period holds on-demand usage, Savings Plan covered usage and its recurring fee, Reserved Instance usage and
its fee, a credit, tax and a refund, with the FOCUS cost columns each kind of row has (BilledCost, EffectiveCost,
ListCost, ContractedCost), ``Tags`` as a map, and ``x_ServiceCode``/``x_UsageType``/``x_Operation``. The last
period written has no ``InvoiceId`` yet (an open month). :func:`write_focus_csv_export` lays out an existing FOCUS
CSV file (for instance the real FOCUS 1.0 sample) as a one-period export of the same layout.

Usage: ``python examples/generate_focus_samples.py OUT_DIR`` writes ``focus/focus-daily`` for 2025-01..2025-02.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

BUCKET = "example-billing-bucket"
PAYER = "111122223333"
ACCOUNTS = ("012345678901", "210987654321", "555566667777")
COSTS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")

_SERVICES = (  # (ServiceName, x_ServiceCode, ServiceCategory, ServiceSubcategory, x_UsageType, x_Operation, unit, price)
    ("Amazon Elastic Compute Cloud", "AmazonEC2", "Compute", "Virtual Machines", "BoxUsage:m5.large", "RunInstances",
     "Hrs", 0.096),
    ("Amazon Simple Storage Service", "AmazonS3", "Storage", "Object Storage", "TimedStorage-ByteHrs",
     "StandardStorage", "GB-Mo", 0.023),
    ("AWS Lambda", "AWSLambda", "Compute", "Serverless Compute", "Lambda-GB-Second", "Invoke", "Lambda-GB-Second",
     0.0000166667),
    ("Amazon Relational Database Service", "AmazonRDS", "Databases", "Relational Databases",
     "InstanceUsage:db.r5.large", "CreateDBInstance", "Hrs", 0.25),
)

_STRING = pa.string()
_DOUBLE = pa.float64()
_TS = pa.timestamp("ms", tz="UTC")
_MAP = pa.map_(pa.string(), pa.string())

#: the FOCUS 1.2 with AWS columns this generator writes, in order, with their Parquet types
SCHEMA: list[tuple[str, pa.DataType]] = [
    ("AvailabilityZone", _STRING), ("BilledCost", _DOUBLE), ("BillingAccountId", _STRING),
    ("BillingAccountName", _STRING), ("BillingAccountType", _STRING), ("BillingCurrency", _STRING),
    ("BillingPeriodEnd", _TS), ("BillingPeriodStart", _TS), ("CapacityReservationId", _STRING),
    ("CapacityReservationStatus", _STRING), ("ChargeCategory", _STRING), ("ChargeClass", _STRING),
    ("ChargeDescription", _STRING), ("ChargeFrequency", _STRING), ("ChargePeriodEnd", _TS),
    ("ChargePeriodStart", _TS), ("CommitmentDiscountCategory", _STRING), ("CommitmentDiscountId", _STRING),
    ("CommitmentDiscountName", _STRING), ("CommitmentDiscountQuantity", _DOUBLE), ("CommitmentDiscountStatus", _STRING),
    ("CommitmentDiscountType", _STRING), ("CommitmentDiscountUnit", _STRING), ("ConsumedQuantity", _DOUBLE),
    ("ConsumedUnit", _STRING), ("ContractedCost", _DOUBLE), ("ContractedUnitPrice", _DOUBLE),
    ("EffectiveCost", _DOUBLE), ("InvoiceId", _STRING), ("InvoiceIssuerName", _STRING), ("ListCost", _DOUBLE),
    ("ListUnitPrice", _DOUBLE), ("PricingCategory", _STRING), ("PricingCurrency", _STRING),
    ("PricingCurrencyContractedUnitPrice", _DOUBLE), ("PricingCurrencyEffectiveCost", _DOUBLE),
    ("PricingCurrencyListUnitPrice", _DOUBLE), ("PricingQuantity", _DOUBLE), ("PricingUnit", _STRING),
    ("ProviderName", _STRING), ("PublisherName", _STRING), ("RegionId", _STRING), ("RegionName", _STRING),
    ("ResourceId", _STRING), ("ResourceName", _STRING), ("ResourceType", _STRING), ("ServiceCategory", _STRING),
    ("ServiceName", _STRING), ("ServiceSubcategory", _STRING), ("SkuId", _STRING), ("SkuMeter", _STRING),
    ("SkuPriceDetails", _MAP), ("SkuPriceId", _STRING), ("SubAccountId", _STRING), ("SubAccountName", _STRING),
    ("SubAccountType", _STRING), ("Tags", _MAP), ("x_CostCategories", _MAP), ("x_Discounts", _MAP),
    ("x_Operation", _STRING), ("x_ServiceCode", _STRING), ("x_UsageType", _STRING),
]

#: the row kinds of every period, in this mix (the rest of the rows are on-demand usage)
KINDS = ("sp_usage", "sp_fee", "ri_usage", "ri_fee", "credit", "tax", "refund")


@dataclass
class PeriodTruth:
    rows: int
    version_id: str
    manifest_key: str
    data_keys: list[str]
    sums: dict[str, float]
    #: rows per ChargeCategory
    categories: dict[str, int] = field(default_factory=dict)
    invoice_id: str | None = None


@dataclass
class FocusTruth:
    export_name: str
    prefix: str
    periods: dict[str, PeriodTruth] = field(default_factory=dict)


def _bounds(period: str) -> tuple[datetime, datetime]:
    year, month = (int(x) for x in period.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _id(*parts: Any) -> str:
    return str(uuid.UUID(hashlib.sha256(repr(parts).encode()).hexdigest()[:32]))


def _row(rng: random.Random, kind: str, start: datetime, end: datetime, invoice: str | None) -> dict[str, Any]:
    name, code, category, subcategory, usage_type, operation, unit, price = rng.choice(_SERVICES)
    account = rng.choice(ACCOUNTS)
    day = start + timedelta(days=rng.randrange((end - start).days))
    quantity = round(rng.uniform(1, 500), 6)
    list_cost = round(quantity * price, 8)
    row: dict[str, Any] = {
        "AvailabilityZone": "us-east-1a", "BillingAccountId": PAYER, "BillingAccountName": "Example Payer",
        "BillingAccountType": "Billing Account", "BillingCurrency": "USD", "BillingPeriodEnd": end,
        "BillingPeriodStart": start, "ChargeCategory": "Usage", "ChargeClass": None,
        "ChargeDescription": f"${price} per {unit} for {usage_type}", "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": day + timedelta(days=1), "ChargePeriodStart": day, "ConsumedQuantity": quantity,
        "ConsumedUnit": unit, "ContractedCost": list_cost, "ContractedUnitPrice": price, "EffectiveCost": list_cost,
        "InvoiceId": invoice, "InvoiceIssuerName": "Amazon Web Services, Inc.", "ListCost": list_cost,
        "ListUnitPrice": price, "PricingCategory": "Standard", "PricingCurrency": "USD",
        "PricingCurrencyContractedUnitPrice": price, "PricingCurrencyEffectiveCost": list_cost,
        "PricingCurrencyListUnitPrice": price, "PricingQuantity": quantity, "PricingUnit": unit,
        "ProviderName": "AWS", "PublisherName": "Amazon Web Services, Inc.", "RegionId": "us-east-1",
        "RegionName": "US East (N. Virginia)", "ResourceId": f"arn:aws:{code.lower()}:us-east-1:{account}:r-"
        f"{rng.randrange(16 ** 8):08x}", "ResourceType": None, "ServiceCategory": category, "ServiceName": name,
        "ServiceSubcategory": subcategory, "SkuId": f"SKU{rng.randrange(10 ** 6):06d}", "SkuMeter": usage_type,
        "SkuPriceDetails": [("OperatingSystem", "Linux")] if code == "AmazonEC2" else None,
        "SkuPriceId": f"SKU{rng.randrange(10 ** 6):06d}.JRTCKXETXF", "SubAccountId": account,
        "SubAccountName": f"account-{account[-4:]}", "SubAccountType": "Linked Account",
        "Tags": [("team", rng.choice(["data", "web", "ml"])), ("env", rng.choice(["prod", "dev"]))]
        if rng.random() < 0.7 else None,
        "x_CostCategories": [("project", "alpha")] if rng.random() < 0.3 else None,
        "x_Discounts": None, "x_Operation": operation, "x_ServiceCode": code, "x_UsageType": usage_type,
    }
    sp = f"arn:aws:savingsplans::{PAYER}:savingsplan/{_id('sp', start)}"
    ri = f"arn:aws:ec2:us-east-1:{PAYER}:reserved-instances/{_id('ri', start)}"
    if kind in ("sp_usage", "ri_usage"):
        rate = 0.62 if kind == "sp_usage" else 0.55
        row.update(BilledCost=0.0, EffectiveCost=round(list_cost * rate, 8), PricingCategory="Committed",
                   CommitmentDiscountId=sp if kind == "sp_usage" else ri, CommitmentDiscountStatus="Used",
                   CommitmentDiscountCategory="Spend" if kind == "sp_usage" else "Usage",
                   CommitmentDiscountType="Savings Plan" if kind == "sp_usage" else "Reserved Instance",
                   CommitmentDiscountQuantity=row["EffectiveCost"] if kind == "sp_usage" else quantity,
                   CommitmentDiscountUnit="USD" if kind == "sp_usage" else "Hours")
        row["PricingCurrencyEffectiveCost"] = row["EffectiveCost"]
    elif kind in ("sp_fee", "ri_fee"):
        fee = round(rng.uniform(50, 400), 2)
        row.update(ChargeCategory="Purchase", ChargeFrequency="Recurring", BilledCost=fee,
                   EffectiveCost=round(fee * 0.1, 8), ListCost=fee, ContractedCost=fee, PricingCategory="Committed",
                   CommitmentDiscountId=sp if kind == "sp_fee" else ri, CommitmentDiscountStatus="Unused",
                   CommitmentDiscountCategory="Spend" if kind == "sp_fee" else "Usage",
                   CommitmentDiscountType="Savings Plan" if kind == "sp_fee" else "Reserved Instance",
                   ChargeDescription="Savings Plan recurring fee" if kind == "sp_fee" else "RI recurring fee",
                   ConsumedQuantity=None, ConsumedUnit=None)
        row["PricingCurrencyEffectiveCost"] = row["EffectiveCost"]
    elif kind in ("credit", "refund", "tax"):
        amount = round(rng.uniform(1, 60), 2) * (1 if kind == "tax" else -1)
        row.update(ChargeCategory={"credit": "Credit", "refund": "Adjustment", "tax": "Tax"}[kind],
                   ChargeClass="Correction" if kind == "refund" else None, ChargeFrequency="One-Time",
                   BilledCost=amount, EffectiveCost=amount, ListCost=0.0 if kind != "tax" else amount,
                   ContractedCost=0.0 if kind != "tax" else amount, PricingCategory=None, ConsumedQuantity=None,
                   ConsumedUnit=None, PricingQuantity=None, ListUnitPrice=None, ContractedUnitPrice=None,
                   ChargeDescription={"credit": "AWS Promotional Credit", "refund": "Refund",
                                      "tax": "Sales tax"}[kind], ResourceId=None,
                   PricingCurrencyEffectiveCost=amount)
    else:
        row["BilledCost"] = list_cost
    return row


def _table(rows: list[dict[str, Any]], extra_columns: list[str]) -> pa.Table:
    arrays = {name: pa.array([r.get(name) for r in rows], type=kind) for name, kind in SCHEMA}
    for name in extra_columns:
        arrays[name] = pa.array([f"{name}-{i % 3}" for i in range(len(rows))], pa.string())
    return pa.table(arrays)


def write_focus_export(root: Path, *, prefix: str = "focus", export_name: str = "focus-daily",
                       periods: list[str], rows_per_period: int = 200, files_per_period: int = 1, seed: int = 1,
                       execution_ids: dict[str, str] | None = None, extra_columns: list[str] | None = None,
                       open_period: str | None = None) -> FocusTruth:
    """Write a FOCUS 1.2 export (Parquet) for ``periods`` under ``root`` (the bucket root); a period written again
    replaces its files and manifest. ``open_period`` (default: the last one) has no ``InvoiceId``.
    ``extra_columns`` adds text columns (a later month's new column)."""
    root, prefix = Path(root), prefix.strip("/")
    truth = FocusTruth(export_name, prefix)
    open_period = open_period or periods[-1]
    for period in periods:
        start, end = _bounds(period)
        rng = random.Random(f"{seed}:{export_name}:{period}")
        version = (execution_ids or {}).get(period) or _id("execution", seed, export_name, period)
        invoice = None if period == open_period else f"INV-{period.replace('-', '')}-{seed:04d}"
        kinds = [KINDS[i] if i < len(KINDS) else "usage" for i in range(max(rows_per_period, len(KINDS)))]
        rows = [_row(rng, kind, start, end, invoice) for kind in kinds]
        table = _table(rows, extra_columns or [])
        data_dir = f"{prefix}/{export_name}/data/BILLING_PERIOD={period}".lstrip("/")
        shutil.rmtree(root / data_dir, ignore_errors=True)
        (root / data_dir).mkdir(parents=True)
        keys, n = [], table.num_rows
        for part in range(files_per_period):
            lo, hi = n * part // files_per_period, n * (part + 1) // files_per_period
            key = f"{data_dir}/{export_name}-{part + 1:05d}.snappy.parquet"
            pq.write_table(table.slice(lo, hi - lo), root / key, compression="snappy")
            keys.append(key)
        manifest_key = _manifest(root, prefix, export_name, period, version, keys,
                                 [{"name": f.name, "type": _type_word(f.type)} for f in table.schema])
        categories: dict[str, int] = {}
        for r in rows:
            categories[r["ChargeCategory"]] = categories.get(r["ChargeCategory"], 0) + 1
        truth.periods[period] = PeriodTruth(
            rows=n, version_id=version, manifest_key=manifest_key, data_keys=keys,
            sums={c: sum(r[c] or 0.0 for r in rows) for c in COSTS}, categories=categories, invoice_id=invoice)
    return truth


def write_focus_csv_export(root: Path, csv_file: Path, *, period: str, prefix: str = "focus",
                           export_name: str = "focus-csv", version_id: str = "exec-csv-0001",
                           list_columns: bool = True) -> str:
    """Lay out an existing FOCUS CSV as a one-period Data Exports export (the file copied unchanged, gzip-free);
    the manifest lists its columns without types (``list_columns=False``: none). Returns the manifest key."""
    root, prefix = Path(root), prefix.strip("/")
    data_dir = f"{prefix}/{export_name}/data/BILLING_PERIOD={period}".lstrip("/")
    (root / data_dir).mkdir(parents=True, exist_ok=True)
    key = f"{data_dir}/{export_name}-00001.csv"
    shutil.copyfile(csv_file, root / key)
    with open(csv_file, encoding="utf-8-sig", newline="") as handle:
        import csv

        header = next(csv.reader(handle))
    columns = [{"name": name} for name in header] if list_columns else None
    return _manifest(root, prefix, export_name, period, version_id, [key], columns, data_format="textORcsv")


def _manifest(root: Path, prefix: str, export_name: str, period: str, version: str, keys: list[str],
              columns: list[dict[str, str]] | None, data_format: str = "parquet") -> str:
    start, end = _bounds(period)
    doc: dict[str, Any] = {
        "version": "2.0", "executionId": version, "exportName": export_name,
        "exportArn": f"arn:aws:bcm-data-exports:us-east-1:{PAYER}:export/{export_name}-{_id(export_name)[:8]}",
        "billingPeriod": {"start": f"{start:%Y-%m-%dT%H:%M:%S.000Z}", "end": f"{end:%Y-%m-%dT%H:%M:%S.000Z}"},
        "dataFiles": [f"s3://{BUCKET}/{k}" for k in keys], "dataFormat": data_format,
        "compression": "PARQUET" if data_format == "parquet" else "NONE",
    }
    if columns is not None:
        doc["columns"] = columns
    key = f"{prefix}/{export_name}/metadata/BILLING_PERIOD={period}/{export_name}-Manifest.json".lstrip("/")
    (root / key).parent.mkdir(parents=True, exist_ok=True)
    (root / key).write_text(json.dumps(doc, indent=2))
    return key


def _type_word(data_type: pa.DataType) -> str:
    """The type words of Data Exports manifests."""
    if pa.types.is_map(data_type):
        return "map<string,string>"
    if pa.types.is_timestamp(data_type):
        return "timestamp_milliseconds"
    return "double" if pa.types.is_floating(data_type) else "string"


if __name__ == "__main__":  # pragma: no cover
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "focus-sample")
    written = write_focus_export(out, periods=["2025-01", "2025-02"], rows_per_period=200)
    for month, t in written.periods.items():
        print(month, t.rows, {c: round(v, 6) for c, v in t.sums.items()})
