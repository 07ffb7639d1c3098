"""Small CUR exports for the FOCUS view tests, and the CUR → FOCUS rules applied in Python to their rows.

:func:`expected` is written from the published rules (docs/FOCUS.md, "Mapping from CUR"), not from the view's
SQL: the tests compare what each engine's view returns with it, row by row.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vendors.aws.focus.columns import FOCUS_NAMES

# ------------------------------------------------------------------------------------------------ the exports

PERIOD_START, PERIOD_END = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)
SP = "arn:aws:savingsplans::123456789012:savingsplan/sp-0001"
RI = "arn:aws:ec2:us-east-1:123456789012:reserved-instances/ri-0001"


def _row(desc: str, kind: str, cost: float, **values: Any) -> dict[str, Any]:
    """One CUR 2.0 line item: defaults of a usage row in March 2024, ``values`` on top."""
    start = values.pop("start", datetime(2024, 3, 5, 10, tzinfo=UTC))
    row: dict[str, Any] = {
        "identity_line_item_id": desc, "bill_invoice_id": "INV-1", "bill_invoicing_entity": "Amazon Web Services, Inc.",
        "bill_billing_entity": "AWS", "bill_bill_type": "Anniversary", "bill_payer_account_id": "012345678901",
        "bill_payer_account_name": "Payer", "bill_billing_period_start_date": PERIOD_START,
        "bill_billing_period_end_date": PERIOD_END, "line_item_usage_account_id": "001234567890",
        "line_item_usage_account_name": "Team A", "line_item_line_item_type": kind, "line_item_usage_start_date": start,
        "line_item_usage_end_date": start.replace(hour=start.hour + 1), "line_item_product_code": "AmazonEC2",
        "line_item_usage_type": "USE1-BoxUsage:m5.large", "line_item_operation": "RunInstances",
        "line_item_availability_zone": "us-east-1a", "line_item_resource_id": "i-0abc", "line_item_usage_amount": 2.0,
        "line_item_currency_code": "USD", "line_item_unblended_rate": cost / 2, "line_item_unblended_cost": cost,
        "line_item_net_unblended_cost": cost * 0.9, "line_item_line_item_description": desc,
        "line_item_legal_entity": "Amazon Web Services, Inc.",
        "product": {"product_name": "Amazon Elastic Compute Cloud", "region": "us-east-1", "sku": "SKU1"},
        "product_region_code": "us-east-1", "product_location": "US East (N. Virginia)", "product_servicecode": "AmazonEC2",
        "pricing_public_on_demand_cost": cost * 1.25, "pricing_public_on_demand_rate": cost / 2 * 1.25,
        "pricing_rate_code": "SKU1.JRTCKXETXF.6YS6EN2CT7", "pricing_term": "OnDemand", "pricing_unit": "Hrs",
        "reservation_reservation_a_r_n": "", "reservation_effective_cost": None, "reservation_net_effective_cost": None,
        "reservation_unused_amortized_upfront_fee_for_billing_period": None, "reservation_unused_recurring_fee": None,
        "reservation_unused_quantity": None, "savings_plan_savings_plan_a_r_n": "",
        "savings_plan_savings_plan_effective_cost": None, "savings_plan_net_savings_plan_effective_cost": None,
        "savings_plan_total_commitment_to_date": None, "savings_plan_used_commitment": None,
        "resource_tags": {"user_environment": "prod", "user_team": "a"},
    }
    row.update(values)
    return row


def cur2_rows() -> list[dict[str, Any]]:
    before = datetime(2024, 1, 20, tzinfo=UTC)  # a usage date of an earlier period: the row corrects it
    no_ri = {"line_item_resource_id": ""}
    return [
        _row("usage", "Usage", 4.0),
        _row("spot", "Usage", 1.0, line_item_usage_type="USE1-SpotUsage:m5.large", pricing_term="Spot"),
        _row("reserved-term", "Usage", 1.5, pricing_term="Reserved"),
        # no top-level region code: the product map's region; no net cost on this row: the unblended one
        _row("map-region", "Usage", 2.5, product_region_code=None, line_item_net_unblended_cost=None,
             product={"product_name": "Amazon Simple Storage Service", "region": "eu-west-1"},
             line_item_product_code="AmazonS3", product_servicecode="AmazonS3", resource_tags={}),
        _row("sp-covered", "SavingsPlanCoveredUsage", 3.0, savings_plan_savings_plan_a_r_n=SP,
             savings_plan_savings_plan_effective_cost=2.0, savings_plan_net_savings_plan_effective_cost=1.8),
        _row("sp-negation", "SavingsPlanNegation", -3.0, savings_plan_savings_plan_a_r_n=SP),
        _row("sp-recurring", "SavingsPlanRecurringFee", 10.0, savings_plan_savings_plan_a_r_n=SP,
             savings_plan_total_commitment_to_date=10.0, savings_plan_used_commitment=7.5, **no_ri),
        _row("sp-upfront", "SavingsPlanUpfrontFee", 100.0, savings_plan_savings_plan_a_r_n=SP, bill_bill_type="Purchase",
             **no_ri),
        _row("ri-usage", "DiscountedUsage", 0.0, reservation_reservation_a_r_n=RI, reservation_effective_cost=1.2,
             reservation_net_effective_cost=1.1, pricing_term="Reserved"),
        _row("ri-fee", "RIFee", 50.0, reservation_reservation_a_r_n=RI, reservation_unused_quantity=3.0,
             reservation_unused_amortized_upfront_fee_for_billing_period=2.25, reservation_unused_recurring_fee=0.75,
             **no_ri),
        _row("ri-upfront", "Fee", 300.0, reservation_reservation_a_r_n=RI, bill_bill_type="Purchase", **no_ri),
        _row("support-fee", "Fee", 29.0, line_item_product_code="AWSSupportBusiness", **no_ri),
        _row("credit", "Credit", -5.0, **no_ri),
        _row("credit-earlier", "Credit", -2.0, start=before, **no_ri),
        _row("tax", "Tax", 1.7, line_item_product_code="AmazonEC2", pricing_public_on_demand_cost=None, **no_ri),
        _row("refund-earlier", "Refund", -4.0, start=before, **no_ri),
        _row("edp", "EdpDiscount", -0.4, **no_ri),
        _row("marketplace", "Usage", 6.0, bill_billing_entity="AWS Marketplace",
             line_item_legal_entity="Acme Observability, Inc.", line_item_product_code="prod-abc123",
             product={"product_name": "Acme Observability"}),
    ]


_V2_TYPES = {
    "bill_billing_period_start_date": pa.timestamp("ms", tz="UTC"), "bill_billing_period_end_date": pa.timestamp("ms", tz="UTC"),
    "line_item_usage_start_date": pa.timestamp("ms", tz="UTC"), "line_item_usage_end_date": pa.timestamp("ms", tz="UTC"),
    "product": pa.map_(pa.string(), pa.string()), "resource_tags": pa.map_(pa.string(), pa.string()),
}
_MANIFEST_TYPES = {pa.string(): "string", pa.float64(): "double"}


def _v2_type(name: str, rows: list[dict[str, Any]]) -> pa.DataType:
    if name in _V2_TYPES:
        return _V2_TYPES[name]
    values = [r[name] for r in rows if r[name] is not None]
    if values:
        return pa.float64() if isinstance(values[0], float) else pa.string()
    numeric = ("cost", "rate", "amount", "commitment", "quantity", "fee")
    return pa.float64() if any(word in name for word in numeric) and not name.endswith("_a_r_n") else pa.string()


def _next(period: str) -> str:
    year, month = map(int, period.split("-"))
    return f"{year + month // 12}-{month % 12 + 1:02d}"


def write_cur2(root: Path, export: str, period: str, rows: list[dict[str, Any]], drop: tuple[str, ...] = ()) -> None:
    names = [n for n in rows[0] if n not in drop]
    fields = [pa.field(n, _v2_type(n, rows)) for n in names]
    table = pa.Table.from_pylist([{n: (list(r[n].items()) if isinstance(r[n], dict) else r[n]) for n in names}
                                  for r in rows], schema=pa.schema(fields))
    data_key = f"exports/{export}/data/BILLING_PERIOD={period}/{export}-00001.snappy.parquet"
    (root / data_key).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / data_key)
    manifest = {
        "version": "2.0", "executionId": f"exec-{period}", "exportName": export,
        "billingPeriod": {"start": f"{period}-01T00:00:00.000Z", "end": f"{_next(period)}-01T00:00:00.000Z"},
        "dataFiles": [f"s3://bucket/{data_key}"], "dataFormat": "parquet", "compression": "PARQUET",
        "columns": [{"name": f.name, "type": "map<string,string>" if pa.types.is_map(f.type) else
                     "timestamp" if pa.types.is_timestamp(f.type) else _MANIFEST_TYPES[f.type]} for f in fields],
    }
    key = root / f"exports/{export}/metadata/BILLING_PERIOD={period}/{export}-Manifest.json"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(json.dumps(manifest))


#: CUR v1 header → CUR 2.0 name (what the importer turns it into) for the v1 export
V1_COLUMNS = {
    "identity/LineItemId": ("identity_line_item_id", "String"),
    "bill/InvoicingEntity": ("bill_invoicing_entity", "String"), "bill/BillType": ("bill_bill_type", "String"),
    "bill/PayerAccountId": ("bill_payer_account_id", "String"),
    "bill/BillingPeriodStartDate": ("bill_billing_period_start_date", "DateTime"),
    "bill/BillingPeriodEndDate": ("bill_billing_period_end_date", "DateTime"),
    "lineItem/UsageAccountId": ("line_item_usage_account_id", "String"),
    "lineItem/LineItemType": ("line_item_line_item_type", "String"),
    "lineItem/UsageStartDate": ("line_item_usage_start_date", "DateTime"),
    "lineItem/UsageEndDate": ("line_item_usage_end_date", "DateTime"),
    "lineItem/ProductCode": ("line_item_product_code", "String"), "lineItem/UsageType": ("line_item_usage_type", "String"),
    "lineItem/Operation": ("line_item_operation", "String"), "lineItem/UsageAmount": ("line_item_usage_amount", "OptionalBigDecimal"),
    "lineItem/CurrencyCode": ("line_item_currency_code", "String"),
    "lineItem/UnblendedRate": ("line_item_unblended_rate", "OptionalBigDecimal"),
    "lineItem/UnblendedCost": ("line_item_unblended_cost", "BigDecimal"),
    "lineItem/LineItemDescription": ("line_item_line_item_description", "String"),
    "product/ProductName": ("product_product_name", "String"), "product/region": ("product_region", "String"),
    "product/location": ("product_location", "String"), "product/sku": ("product_sku", "String"),
    "pricing/publicOnDemandCost": ("pricing_public_on_demand_cost", "OptionalBigDecimal"),
    "pricing/term": ("pricing_term", "String"), "pricing/unit": ("pricing_unit", "String"),
    "reservation/ReservationARN": ("reservation_reservation_a_r_n", "String"),
    "reservation/EffectiveCost": ("reservation_effective_cost", "OptionalBigDecimal"),
    "savingsPlan/SavingsPlanARN": ("savings_plan_savings_plan_a_r_n", "String"),
    "savingsPlan/SavingsPlanEffectiveCost": ("savings_plan_savings_plan_effective_cost", "OptionalBigDecimal"),
    "resourceTags/user:Environment": ("resource_tags_user_environment", "String"),
    "resourceTags/user:Cost Center": ("resource_tags_user_cost_center", "String"),
    # as many tags as a real organisation has: more arguments than one function call takes on PostgreSQL (100)
    # or SQLite (127)
    **{f"resourceTags/user:Tag{i:03d}": (f"resource_tags_user_tag{i:03d}", "String") for i in range(80)},
}


def cur1_rows() -> list[dict[str, Any]]:
    def v1(row: dict[str, Any]) -> dict[str, Any]:
        out = {name: row.get(name) for name, _ in V1_COLUMNS.values()}
        out.update({"product_product_name": row["product"].get("product_name"), "product_region": "us-east-1",
                    "product_sku": "SKU1", "resource_tags_user_environment": "prod", "resource_tags_user_cost_center": ""})
        return out

    rows = [v1(r) for r in cur2_rows() if r["line_item_line_item_type"] in ("Usage", "SavingsPlanCoveredUsage",
                                                                           "DiscountedUsage", "Tax", "Credit")]
    rows[0]["resource_tags_user_cost_center"] = "CC-1"
    rows[1]["resource_tags_user_environment"] = ""
    for index, row in enumerate(rows):  # each row has a few of the many tags
        for i in range(index, 80, 7):
            row[f"resource_tags_user_tag{i:03d}"] = f"v{i}"
    return rows


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def write_cur1(root: Path, export: str, rows: list[dict[str, Any]]) -> None:
    folder = f"cur/{export}/20240301-20240401"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(list(V1_COLUMNS))
    writer.writerows([[_csv(r[name]) for name, _ in V1_COLUMNS.values()] for r in rows])
    data_key = f"{folder}/asm-1/{export}-1.csv.gz"
    (root / data_key).parent.mkdir(parents=True, exist_ok=True)
    (root / data_key).write_bytes(gzip.compress(buffer.getvalue().encode()))
    manifest = {
        "assemblyId": "asm-1", "account": "012345678901", "compression": "GZIP", "contentType": "text/csv",
        "reportName": export, "bucket": "bucket", "reportKeys": [data_key],
        "billingPeriod": {"start": "20240301T000000.000Z", "end": "20240401T000000.000Z"},
        "columns": [{"category": h.split("/")[0], "name": h.split("/")[1], "type": t} for h, (_, t) in V1_COLUMNS.items()],
    }
    (root / folder / f"{export}-Manifest.json").write_text(json.dumps(manifest))


# ------------------------------------------------------------------------------------- the rules, in Python

USAGE = {"Usage", "DiscountedUsage", "SavingsPlanCoveredUsage", "SavingsPlanNegation"}
PURCHASE = {"Fee", "RIFee", "SavingsPlanRecurringFee", "SavingsPlanUpfrontFee"}
CREDITS = {"Credit", "EdpDiscount", "PrivateRateDiscount", "BundledDiscount", "Discount", "RiVolumeDiscount",
           "SppDiscount", "DistributorDiscount"}
CONSUMING = {"Usage", "DiscountedUsage", "SavingsPlanCoveredUsage"}


def _blank(value: Any) -> Any:
    return None if value == "" else value


def first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def expected(row: dict[str, Any]) -> dict[str, Any]:
    """The FOCUS 1.2 values of one CUR row, from the mapping rules (docs/FOCUS.md, "Mapping from CUR")."""
    get = row.get
    kind = get("line_item_line_item_type")
    plan, reservation = _blank(get("savings_plan_savings_plan_a_r_n")), _blank(get("reservation_reservation_a_r_n"))
    billed = first(get("line_item_net_unblended_cost"), get("line_item_unblended_cost"))
    if kind == "SavingsPlanCoveredUsage":
        effective = first(get("savings_plan_net_savings_plan_effective_cost"),
                           get("savings_plan_savings_plan_effective_cost"))
    elif kind == "SavingsPlanRecurringFee":
        effective = get("savings_plan_total_commitment_to_date") - get("savings_plan_used_commitment")
    elif kind in ("SavingsPlanNegation", "SavingsPlanUpfrontFee") or (kind == "Fee" and reservation):
        effective = 0.0
    elif kind == "DiscountedUsage":
        effective = first(get("reservation_net_effective_cost"), get("reservation_effective_cost"))
    elif kind == "RIFee":
        effective = ((get("reservation_unused_amortized_upfront_fee_for_billing_period") or 0.0)
                     + (get("reservation_unused_recurring_fee") or 0.0))
    else:
        effective = billed
    category = ("Usage" if kind in USAGE else "Purchase" if kind in PURCHASE else "Tax" if kind == "Tax"
                else "Credit" if kind in CREDITS else "Adjustment")
    earlier = get("line_item_usage_start_date") < get("bill_billing_period_start_date")
    term, usage_type = _blank(get("pricing_term")), get("line_item_usage_type") or ""
    if kind in ("SavingsPlanCoveredUsage", "DiscountedUsage", "SavingsPlanNegation"):
        pricing = "Committed"
    elif kind == "Usage":
        pricing = ("Dynamic" if term == "Spot" or "SpotUsage" in usage_type else
                   "Standard" if term in (None, "OnDemand") else "Other")
    else:
        pricing = "Standard" if kind in PURCHASE else None
    commitment = plan or reservation
    status = (("Used" if kind in ("SavingsPlanCoveredUsage", "DiscountedUsage") else
               "Unused" if kind in ("SavingsPlanRecurringFee", "RIFee") else None) if commitment else None)
    quantity = {"SavingsPlanCoveredUsage": effective if kind == "SavingsPlanCoveredUsage" else None,
                "SavingsPlanRecurringFee": effective if kind == "SavingsPlanRecurringFee" else None,
                "DiscountedUsage": get("line_item_usage_amount"), "RIFee": get("reservation_unused_quantity")}.get(kind)
    unit = ("USD" if kind in ("SavingsPlanCoveredUsage", "SavingsPlanRecurringFee") else
            "Hours" if kind in ("DiscountedUsage", "RIFee") else None)
    product = get("product") or {}
    tags = get("resource_tags")
    if tags is None and any(k.startswith("resource_tags_") for k in row):
        tags = {k[len("resource_tags_"):]: v for k, v in row.items() if k.startswith("resource_tags_") and _blank(v)}
    marketplace = get("bill_billing_entity") == "AWS Marketplace"
    consuming, priced = kind in CONSUMING, kind in USAGE | PURCHASE
    services = {"AmazonEC2": ("Compute", "Virtual Machines"), "AmazonS3": ("Storage", "Object Storage"),
                "AWSSupportBusiness": ("Management and Governance", "Support")}
    service = services.get(get("line_item_product_code"), ("Other", None))
    values = {
        "AvailabilityZone": _blank(get("line_item_availability_zone")), "BilledCost": billed,
        "BillingAccountId": get("bill_payer_account_id"), "BillingAccountName": _blank(get("bill_payer_account_name")),
        "BillingCurrency": get("line_item_currency_code"), "BillingPeriodEnd": get("bill_billing_period_end_date"),
        "BillingPeriodStart": get("bill_billing_period_start_date"), "ChargeCategory": category,
        "ChargeClass": "Correction" if kind in ("Refund", "Credit") and earlier else None,
        "ChargeDescription": get("line_item_line_item_description"),
        "ChargeFrequency": ("One-Time" if kind in ("Fee", "SavingsPlanUpfrontFee") or get("bill_bill_type") == "Purchase"
                            else "Recurring" if kind in ("RIFee", "SavingsPlanRecurringFee") else "Usage-Based"),
        "ChargePeriodEnd": get("line_item_usage_end_date"), "ChargePeriodStart": get("line_item_usage_start_date"),
        "CommitmentDiscountCategory": "Spend" if plan else "Usage" if reservation else None,
        "CommitmentDiscountId": commitment, "CommitmentDiscountQuantity": quantity,
        "CommitmentDiscountStatus": status,
        "CommitmentDiscountType": "Savings Plan" if plan else "Reserved Instance" if reservation else None,
        "CommitmentDiscountUnit": unit,
        "ConsumedQuantity": get("line_item_usage_amount") if consuming else None,
        "ConsumedUnit": get("pricing_unit") if consuming else None,
        "ContractedCost": 0.0 if kind == "SavingsPlanNegation" else get("line_item_unblended_cost"),
        "ContractedUnitPrice": get("line_item_unblended_rate") if consuming else None, "EffectiveCost": effective,
        "InvoiceId": _blank(get("bill_invoice_id")), "InvoiceIssuerName": _blank(get("bill_invoicing_entity")) or "AWS",
        "ListCost": get("pricing_public_on_demand_cost") or 0.0, "ListUnitPrice": get("pricing_public_on_demand_rate"),
        "PricingCategory": pricing, "PricingQuantity": get("line_item_usage_amount") if priced else None,
        "PricingUnit": get("pricing_unit") if priced else None, "ProviderName": "AWS",
        "PublisherName": (get("line_item_legal_entity") or "AWS Marketplace") if marketplace else "AWS",
        "RegionId": first(_blank(get("product_region_code")), _blank(get("product_region")), product.get("region")),
        "RegionName": first(_blank(get("product_location")), product.get("location")),
        "ResourceId": _blank(get("line_item_resource_id")), "ResourceName": _blank(get("line_item_resource_id")),
        "ServiceCategory": service[0], "ServiceSubcategory": service[1],
        "ServiceName": first(_blank(get("product_product_name")), product.get("product_name"),
                              get("line_item_product_code")),
        "SkuId": first(_blank(get("product_sku")), product.get("sku")), "SkuMeter": _blank(usage_type),
        "SkuPriceId": _blank(get("pricing_rate_code")), "SubAccountId": get("line_item_usage_account_id"),
        "SubAccountName": _blank(get("line_item_usage_account_name")), "Tags": tags,
        "x_ServiceCode": first(_blank(get("product_servicecode")), product.get("servicecode"),
                                get("line_item_product_code")),
        "x_UsageType": _blank(usage_type), "x_Operation": _blank(get("line_item_operation")),
    }
    return {name: values.get(name) for name in FOCUS_NAMES}
