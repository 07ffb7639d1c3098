"""The CUR → FOCUS 1.2 mapping (after AWS's "FOCUS 1.2 with AWS columns" export), as data, and the builder of the
``SELECT`` that applies it to one CUR table in any engine's dialect.

Each :class:`Rule` gives one FOCUS column: the CUR expression in words (``docs/FOCUS.md`` lists the same), and a
builder over a :class:`Source` — the CUR table's catalogue. A CUR column the table lacks (no
``line_item_net_unblended_cost``, no Savings Plans columns, CUR v1's ``resource_tags_*`` columns instead of the
``resource_tags`` map) becomes a typed NULL, so the same rules serve CUR v1 and CUR 2.0 tables, and a table
widened by a later month simply gets a richer view. Columns with no CUR source are typed NULLs with the reason.

Engine differences (JSON lookups in the ``product`` map, building a JSON object, type names of a CAST) come from
:mod:`core.backends.sqlengine.sqlexpr`; everything else is plain sqlglot rendered per dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.backends.sqlengine import sqlexpr
from vendors.aws.focus.columns import FOCUS_COLUMNS, FOCUS_NAMES, X_COLUMNS
from vendors.aws.focus.cur_source import (
    CONSUMING_TYPES,
    CREDIT_TYPES,
    PURCHASE_TYPES,
    USAGE_TYPES,
    Source,
    case,
    coalesce,
    lit,
    num,
    present,
)

if TYPE_CHECKING:  # pragma: no cover
    from sqlglot import exp

__all__ = ["RULES", "Rule", "Source", "cur_focus_select"]

#: ``line_item_product_code`` → (FOCUS ServiceCategory, ServiceSubcategory); others are ``Other`` / NULL
SERVICES: dict[str, tuple[str, str | None]] = {
    "AmazonEC2": ("Compute", "Virtual Machines"),
    "AWSLambda": ("Compute", "Serverless Compute"),
    "AmazonECS": ("Compute", "Containers"),
    "AmazonEKS": ("Compute", "Containers"),
    "AmazonS3": ("Storage", "Object Storage"),
    "AmazonEFS": ("Storage", "File Storage"),
    "AmazonRDS": ("Databases", "Relational Databases"),
    "AmazonDynamoDB": ("Databases", "NoSQL Databases"),
    "AmazonElastiCache": ("Databases", "Caching"),
    "AmazonRedshift": ("Analytics", "Data Warehouses"),
    "AmazonAthena": ("Analytics", "Data Processing"),
    "AmazonCloudFront": ("Networking", "Content Delivery"),
    "AmazonVPC": ("Networking", "Network Infrastructure"),
    "AWSDataTransfer": ("Networking", "Network Connectivity"),
    "AmazonRoute53": ("Networking", "Network Infrastructure"),
    "AmazonCloudWatch": ("Management and Governance", "Observability"),
    "AWSCloudTrail": ("Management and Governance", "Compliance"),
    "AWSKeyManagementService": ("Security", "Other (Security)"),
    "AmazonGuardDuty": ("Security", "Threat Detection and Response"),
    "AmazonSageMaker": ("AI and Machine Learning", "Machine Learning"),
    "AmazonBedrock": ("AI and Machine Learning", "Generative AI"),
    "AmazonSNS": ("Integration", "Messaging"),
    "AWSQueueService": ("Integration", "Messaging"),
    "AWSSupportBusiness": ("Management and Governance", "Support"),
    "AWSSupportEnterprise": ("Management and Governance", "Support"),
    "AWSDeveloperSupport": ("Management and Governance", "Support"),
    "AWSCostExplorer": ("Management and Governance", "Cost Management"),
}


@dataclass(frozen=True)
class Rule:
    """One FOCUS column: how it is computed from CUR (``cur``, in words) and the builder; ``build`` None: NULL."""

    focus: str
    cur: str
    build: Callable[[Source], exp.Expression | None] | None = None


# -- costs ----------------------------------------------------------------------------------------------------
def billed_cost(s: Source) -> exp.Expression:
    return s.first("line_item_net_unblended_cost", "line_item_unblended_cost")


def _savings_plan_amounts(s: Source) -> tuple[tuple[exp.Expression, exp.Expression], ...]:
    """The Savings Plan branches EffectiveCost and CommitmentDiscountQuantity share (a spend-based commitment is
    counted in money): covered usage at its (net) effective cost, the recurring fee at the unused commitment."""
    from sqlglot import exp

    return (
        (s.type_in("SavingsPlanCoveredUsage"), s.first("savings_plan_net_savings_plan_effective_cost",
                                                       "savings_plan_savings_plan_effective_cost")),
        (s.type_in("SavingsPlanRecurringFee"),
         exp.Sub(this=s.col("savings_plan_total_commitment_to_date", "double"),
                 expression=s.col("savings_plan_used_commitment", "double"))),
    )


def effective_cost(s: Source) -> exp.Expression:
    from sqlglot import exp

    def zero(e: exp.Expression) -> exp.Expression:
        return exp.Coalesce(this=e, expressions=[num(0)])

    reservation = s.text("reservation_reservation_a_r_n")
    return case(
        *_savings_plan_amounts(s),
        (s.type_in("SavingsPlanNegation", "SavingsPlanUpfrontFee"), num(0)),
        (s.type_in("DiscountedUsage"), s.first("reservation_net_effective_cost", "reservation_effective_cost")),
        (s.type_in("RIFee"), exp.Add(
            this=zero(s.first("reservation_net_unused_amortized_upfront_fee_for_billing_period",
                              "reservation_unused_amortized_upfront_fee_for_billing_period")),
            expression=zero(s.first("reservation_net_unused_recurring_fee", "reservation_unused_recurring_fee")))),
        (exp.and_(s.type_in("Fee"), present(reservation)), num(0)),
        default=billed_cost(s),
    )


def charge_category(s: Source) -> exp.Expression:
    return case((s.type_in(*USAGE_TYPES), lit("Usage")), (s.type_in(*PURCHASE_TYPES), lit("Purchase")),
                 (s.type_in("Tax"), lit("Tax")), (s.type_in(*CREDIT_TYPES), lit("Credit")), default=lit("Adjustment"))


def charge_class(s: Source) -> exp.Expression:
    from sqlglot import exp

    earlier = exp.LT(this=s.col("line_item_usage_start_date", "timestamp"),
                     expression=s.col("bill_billing_period_start_date", "timestamp"))
    return case((exp.and_(s.type_in("Refund", "Credit"), earlier), lit("Correction")),
                 default=sqlexpr.typed_null("string", s.dialect))


def charge_frequency(s: Source) -> exp.Expression:
    from sqlglot import exp

    one_time = exp.or_(s.type_in("Fee", "SavingsPlanUpfrontFee"), s.col("bill_bill_type").eq(lit("Purchase")))
    return case((one_time, lit("One-Time")), (s.type_in("RIFee", "SavingsPlanRecurringFee"), lit("Recurring")),
                 default=lit("Usage-Based"))


def _plan(s: Source) -> exp.Expression:
    return s.text("savings_plan_savings_plan_a_r_n")


def _reservation(s: Source) -> exp.Expression:
    return s.text("reservation_reservation_a_r_n")


def commitment(s: Source, plan: exp.Expression, reservation: exp.Expression) -> exp.Expression:
    return case((present(_plan(s)), plan), (present(_reservation(s)), reservation),
                 default=sqlexpr.typed_null("string", s.dialect))


def commitment_status(s: Source) -> exp.Expression:
    from sqlglot import exp

    has = exp.or_(present(_plan(s)), present(_reservation(s)))
    return case((exp.and_(has, s.type_in("SavingsPlanCoveredUsage", "DiscountedUsage")), lit("Used")),
                 (exp.and_(has, s.type_in("SavingsPlanRecurringFee", "RIFee")), lit("Unused")),
                 default=sqlexpr.typed_null("string", s.dialect))


def commitment_quantity(s: Source) -> exp.Expression:

    return case(
        *_savings_plan_amounts(s),
        (s.type_in("DiscountedUsage"), s.col("line_item_usage_amount", "double")),
        (s.type_in("RIFee"), s.col("reservation_unused_quantity", "double")),
        default=sqlexpr.typed_null("double", s.dialect))


def commitment_unit(s: Source) -> exp.Expression:
    return case((s.type_in("SavingsPlanCoveredUsage", "SavingsPlanRecurringFee"), s.col("line_item_currency_code")),
                 (s.type_in("DiscountedUsage", "RIFee"), lit("Hours")),
                 default=sqlexpr.typed_null("string", s.dialect))


def when_types(s: Source, values: tuple[str, ...], then: exp.Expression, kind: str) -> exp.Expression:
    return case((s.type_in(*values), then), default=sqlexpr.typed_null(kind, s.dialect))


def pricing_category(s: Source) -> exp.Expression:
    from sqlglot import exp

    term = s.text("pricing_term")
    spot = exp.or_(term.eq(lit("Spot")), exp.Like(this=s.col("line_item_usage_type"), expression=lit("%SpotUsage%")))
    standard = exp.or_(exp.Is(this=term, expression=exp.null()), term.eq(lit("OnDemand")))
    usage = s.type_in("Usage")
    return case(
        (s.type_in("SavingsPlanCoveredUsage", "DiscountedUsage", "SavingsPlanNegation"), lit("Committed")),
        (exp.and_(usage, spot), lit("Dynamic")),
        (exp.and_(usage, standard), lit("Standard")),
        (usage, lit("Other")),
        (s.type_in(*PURCHASE_TYPES), lit("Standard")),
        default=sqlexpr.typed_null("string", s.dialect))


def service_category(s: Source) -> exp.Expression:
    code = s.col("line_item_product_code")
    return case(*[(code.eq(lit(c)), lit(cat)) for c, (cat, _) in SERVICES.items()], default=lit("Other"))


def service_subcategory(s: Source) -> exp.Expression:
    code = s.col("line_item_product_code")
    return case(*[(code.eq(lit(c)), lit(sub)) for c, (_, sub) in SERVICES.items() if sub],
                 default=sqlexpr.typed_null("string", s.dialect))


def publisher(s: Source) -> exp.Expression:
    from sqlglot import exp

    seller = exp.Coalesce(this=s.text("line_item_legal_entity"), expressions=[lit("AWS Marketplace")])
    return case((s.col("bill_billing_entity").eq(lit("AWS Marketplace")), seller), default=lit("AWS"))


def _or(s: Source, first: exp.Expression, fallback: str) -> exp.Expression:
    return coalesce(first, s.text(fallback))


_NO_SOURCE = "no CUR column holds it"

RULES: tuple[Rule, ...] = (
    Rule("AvailabilityZone", "line_item_availability_zone ('' as NULL)",
         lambda s: s.text("line_item_availability_zone")),
    Rule("BilledCost", "line_item_net_unblended_cost where the table has it (else or when NULL: "
         "line_item_unblended_cost)", billed_cost),
    Rule("BillingAccountId", "bill_payer_account_id", lambda s: s.col("bill_payer_account_id")),
    Rule("BillingAccountName", "bill_payer_account_name (CUR 2.0)", lambda s: s.text("bill_payer_account_name")),
    Rule("BillingAccountType", f"NULL: {_NO_SOURCE}; AWS has one kind of billing account (the payer)"),
    Rule("BillingCurrency", "line_item_currency_code", lambda s: s.col("line_item_currency_code")),
    Rule("BillingPeriodEnd", "bill_billing_period_end_date",
         lambda s: s.col("bill_billing_period_end_date", "timestamp")),
    Rule("BillingPeriodStart", "bill_billing_period_start_date",
         lambda s: s.col("bill_billing_period_start_date", "timestamp")),
    Rule("CapacityReservationId", "capacity_reservation_capacity_reservation_arn (CUR 2.0, where exported)",
         lambda s: s.text("capacity_reservation_capacity_reservation_arn")),
    Rule("CapacityReservationStatus", "capacity_reservation_capacity_reservation_status (as CUR spells it)",
         lambda s: s.text("capacity_reservation_capacity_reservation_status")),
    Rule("ChargeCategory", "line item type: Usage, DiscountedUsage, SavingsPlanCoveredUsage, SavingsPlanNegation → "
         "Usage; Fee, RIFee, SavingsPlanRecurringFee, SavingsPlanUpfrontFee → Purchase; Tax → Tax; Credit and the "
         "discounts (EdpDiscount, PrivateRateDiscount, BundledDiscount, …) → Credit; anything else (Refund) → "
         "Adjustment", charge_category),
    Rule("ChargeClass", "Correction for a Refund or Credit whose line_item_usage_start_date is before "
         "bill_billing_period_start_date (it corrects an earlier period); else NULL", charge_class),
    Rule("ChargeDescription", "line_item_line_item_description",
         lambda s: s.text("line_item_line_item_description")),
    Rule("ChargeFrequency", "One-Time for Fee, SavingsPlanUpfrontFee and bill_bill_type Purchase; Recurring for "
         "RIFee, SavingsPlanRecurringFee; else Usage-Based", charge_frequency),
    Rule("ChargePeriodEnd", "line_item_usage_end_date", lambda s: s.col("line_item_usage_end_date", "timestamp")),
    Rule("ChargePeriodStart", "line_item_usage_start_date",
         lambda s: s.col("line_item_usage_start_date", "timestamp")),
    Rule("CommitmentDiscountCategory", "Spend where savings_plan_savings_plan_a_r_n is set, Usage where "
         "reservation_reservation_a_r_n is set", lambda s: commitment(s, lit("Spend"), lit("Usage"))),
    Rule("CommitmentDiscountId", "savings_plan_savings_plan_a_r_n, else reservation_reservation_a_r_n",
         lambda s: commitment(s, _plan(s), _reservation(s))),
    Rule("CommitmentDiscountName", f"NULL: {_NO_SOURCE} (Savings Plans and reservations have no display name)"),
    Rule("CommitmentDiscountQuantity", "SavingsPlanCoveredUsage: the (net) Savings Plan effective cost; "
         "SavingsPlanRecurringFee: total commitment to date − used commitment; DiscountedUsage: "
         "line_item_usage_amount; RIFee: reservation_unused_quantity", commitment_quantity),
    Rule("CommitmentDiscountStatus", "Used for SavingsPlanCoveredUsage and DiscountedUsage, Unused for "
         "SavingsPlanRecurringFee and RIFee (their EffectiveCost is the unused part), with a commitment id",
         commitment_status),
    Rule("CommitmentDiscountType", "Savings Plan or Reserved Instance (which ARN is set)",
         lambda s: commitment(s, lit("Savings Plan"), lit("Reserved Instance"))),
    Rule("CommitmentDiscountUnit", "the billing currency for Savings Plan rows, Hours for reservation rows",
         commitment_unit),
    Rule("ConsumedQuantity", "line_item_usage_amount on Usage, DiscountedUsage and SavingsPlanCoveredUsage rows",
         lambda s: when_types(s, CONSUMING_TYPES, s.col("line_item_usage_amount", "double"), "double")),
    Rule("ConsumedUnit", "pricing_unit on the same rows",
         lambda s: when_types(s, CONSUMING_TYPES, s.text("pricing_unit"), "string")),
    Rule("ContractedCost", "line_item_unblended_cost (0 on SavingsPlanNegation rows: the covered usage keeps its "
         "cost at the contracted rate)",
         lambda s: case((s.type_in("SavingsPlanNegation"), num(0)), default=s.col("line_item_unblended_cost", "double"))),
    Rule("ContractedUnitPrice", "line_item_unblended_rate on Usage, DiscountedUsage and SavingsPlanCoveredUsage rows",
         lambda s: when_types(s, CONSUMING_TYPES, s.col("line_item_unblended_rate", "double"), "double")),
    Rule("EffectiveCost", "SavingsPlanCoveredUsage: savings_plan_net_savings_plan_effective_cost (else "
         "savings_plan_savings_plan_effective_cost); SavingsPlanRecurringFee: savings_plan_total_commitment_to_date "
         "− savings_plan_used_commitment; SavingsPlanNegation, SavingsPlanUpfrontFee: 0; DiscountedUsage: "
         "reservation_net_effective_cost (else reservation_effective_cost); RIFee: unused amortized upfront fee + "
         "unused recurring fee (net variants first); Fee with a reservation ARN: 0; else BilledCost", effective_cost),
    Rule("InvoiceId", "bill_invoice_id ('' as NULL: not invoiced yet)", lambda s: s.text("bill_invoice_id")),
    Rule("InvoiceIssuerName", "bill_invoicing_entity, else 'AWS'",
         lambda s: coalesce(s.text("bill_invoicing_entity"), lit("AWS"))),
    Rule("ListCost", "pricing_public_on_demand_cost (0 when NULL)",
         lambda s: coalesce(s.col("pricing_public_on_demand_cost", "double"), num(0))),
    Rule("ListUnitPrice", "pricing_public_on_demand_rate", lambda s: s.col("pricing_public_on_demand_rate", "double")),
    Rule("PricingCategory", "Committed for SavingsPlanCoveredUsage, DiscountedUsage, SavingsPlanNegation; Usage rows: "
         "Dynamic for Spot (pricing_term Spot or a SpotUsage usage type), Standard for On-Demand (pricing_term "
         "OnDemand or empty), Other for any other term; Standard for purchases; else NULL", pricing_category),
    Rule("PricingCurrency", f"NULL: {_NO_SOURCE}; AWS prices in the billing currency"),
    Rule("PricingCurrencyContractedUnitPrice", "NULL: as PricingCurrency"),
    Rule("PricingCurrencyEffectiveCost", "NULL: as PricingCurrency"),
    Rule("PricingCurrencyListUnitPrice", "NULL: as PricingCurrency"),
    Rule("PricingQuantity", "line_item_usage_amount on Usage and Purchase rows",
         lambda s: when_types(s, USAGE_TYPES + PURCHASE_TYPES, s.col("line_item_usage_amount", "double"), "double")),
    Rule("PricingUnit", "pricing_unit on Usage and Purchase rows",
         lambda s: when_types(s, USAGE_TYPES + PURCHASE_TYPES, s.text("pricing_unit"), "string")),
    Rule("ProviderName", "'AWS'", lambda s: lit("AWS")),
    Rule("PublisherName", "line_item_legal_entity when bill_billing_entity is 'AWS Marketplace' (the seller), "
         "else 'AWS'", publisher),
    Rule("RegionId", "product_region_code (CUR v1: product_region), else the product map's region_code or region",
         lambda s: s.product(("product_region_code", "product_region"), "region_code", "region")),
    Rule("RegionName", "product_location, else the product map's location",
         lambda s: s.product("product_location", "location")),
    Rule("ResourceId", "line_item_resource_id ('' as NULL)", lambda s: s.text("line_item_resource_id")),
    Rule("ResourceName", "line_item_resource_id (CUR has no display name of a resource)",
         lambda s: s.text("line_item_resource_id")),
    Rule("ResourceType", f"NULL: {_NO_SOURCE}; a resource's type is not reported by CUR"),
    Rule("ServiceCategory", "from line_item_product_code (a table in vendors/aws/focus/mapping.py; Other for the "
         "rest)", service_category),
    Rule("ServiceName", "product_product_name (the product map's product_name in CUR 2.0), else "
         "line_item_product_code", lambda s: _or(s, s.product("product_product_name", "product_name"),
                                                  "line_item_product_code")),
    Rule("ServiceSubcategory", "from line_item_product_code (same table; NULL for the rest)", service_subcategory),
    Rule("SkuId", "product_sku (the product map's sku)", lambda s: s.product("product_sku", "sku")),
    Rule("SkuMeter", "line_item_usage_type", lambda s: s.text("line_item_usage_type")),
    Rule("SkuPriceDetails", f"NULL: {_NO_SOURCE}"),
    Rule("SkuPriceId", "pricing_rate_code", lambda s: s.text("pricing_rate_code")),
    Rule("SubAccountId", "line_item_usage_account_id", lambda s: s.col("line_item_usage_account_id")),
    Rule("SubAccountName", "line_item_usage_account_name (CUR 2.0)",
         lambda s: s.text("line_item_usage_account_name")),
    Rule("SubAccountType", f"NULL: {_NO_SOURCE}; AWS has one kind of sub account (the linked account)"),
    Rule("Tags", "CUR 2.0: resource_tags (the map as it is). CUR v1: an object of the resource_tags_* columns, keys "
         "without the prefix, empty values left out (every engine of finops can build it)", lambda s: s.tags()),
    Rule("x_ServiceCode", "product_servicecode (the product map's servicecode), else line_item_product_code",
         lambda s: _or(s, s.product("product_servicecode", "servicecode"), "line_item_product_code")),
    Rule("x_UsageType", "line_item_usage_type", lambda s: s.text("line_item_usage_type")),
    Rule("x_Operation", "line_item_operation", lambda s: s.text("line_item_operation")),
)

_BY_NAME = {rule.focus: rule for rule in RULES}
_KINDS = {c.name: c.kind for c in FOCUS_COLUMNS + X_COLUMNS}
assert tuple(r.focus for r in RULES) == FOCUS_NAMES, "RULES must list every FOCUS column, in FOCUS_NAMES order"


def focus_expressions(columns: Mapping[str, str], dialect: str) -> list[exp.Expression]:
    """Each FOCUS column's expression over a CUR table of ``columns``, aliased with its FOCUS name, in order."""
    from sqlglot import exp

    source = Source(columns, dialect)
    out = []
    for name in FOCUS_NAMES:
        rule = _BY_NAME[name]
        value = rule.build(source) if rule.build else None
        if value is None:
            value = sqlexpr.typed_null(_KINDS[name], dialect)
        out.append(exp.alias_(value, name, quoted=True))
    return out


def cur_focus_select(columns: Mapping[str, str], source: exp.Table, dialect: str) -> exp.Select:
    """``SELECT <every FOCUS 1.2 column> FROM source`` for a CUR table whose catalogue is ``columns``
    (name → engine type), rendered later in ``dialect``."""
    from sqlglot import exp

    return exp.select(*focus_expressions(columns, dialect)).from_(source)
