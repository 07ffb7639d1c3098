"""CUR column names and types: both CUR versions land with CUR 2.0 snake_case names and the contract's types.

Naming follows AWS's own rule (the one that turned CUR v1 into its Athena/Parquet and CUR 2.0 names): an
underscore before every capital, lower case, anything else non-alphanumeric becomes one underscore. So
``lineItem/UnblendedCost`` → ``line_item_unblended_cost`` and ``savingsPlan/SavingsPlanARN`` →
``savings_plan_savings_plan_a_r_n``, exactly as in CUR 2.0; names already in snake_case are unchanged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

from core.backends.base import ColumnKind, ColumnSpec, QualityRules, SourceFile
from core.ingest import Reconciliation

#: the cost column summed per period (``list-exports``, the verification of ``db copy``)
COST_COLUMN = "line_item_unblended_cost"
#: the sums reconciled with the source on every import and by ``finops aws verify`` (where the export has them)
#: what a restatement changed is kept per usage account, product code and line item type
CHANGE_KEYS = ("line_item_usage_account_id", "line_item_product_code", "line_item_line_item_type")
#: AWS fills it once the month is invoiced (CUR v1 ``bill/InvoiceId``): the period is then final
INVOICE_COLUMN = "bill_invoice_id"
RECONCILED_COLUMNS = ("line_item_unblended_cost", "line_item_net_unblended_cost", "pricing_public_on_demand_cost")
#: what every CUR period (v1 and 2.0) reconciles and records
CUR_CHECKS = Reconciliation(RECONCILED_COLUMNS, INVOICE_COLUMN, CHANGE_KEYS, COST_COLUMN)
#: the cost a table's summary sums, whichever kind of export it holds: CUR's, else FOCUS's (``BilledCost``)
COST_COLUMNS = (COST_COLUMN, "BilledCost")

#: what the data-quality findings read (core.backends.sqlengine.quality), each as CUR name then native FOCUS name;
#: FOCUS has no line item identity, so duplicated line items are looked for in CUR tables only
QUALITY_RULES = QualityRules(
    line_item=(("identity_line_item_id", "identity_time_interval"),),
    currency=("line_item_currency_code", "BillingCurrency"),
    usage_type=("line_item_usage_type", "x_UsageType"),
    split_patterns=("%EKSPod-%", "%ECSTask-%"),
    instance_patterns=("%BoxUsage%",),
    payer=("bill_payer_account_id", "BillingAccountId"),
)

RESERVED = ("billing_period",)

# CUR v1 manifest types (legacy data dictionary) → logical kinds.
MANIFEST_TYPES: dict[str, ColumnKind] = {
    "bigdecimal": "double",
    "optionalbigdecimal": "double",
    "double": "double",
    "float": "double",
    "decimal": "double",
    "datetime": "timestamp",
    "optionaldatetime": "timestamp",
    "timestamp": "timestamp",
    "string": "string",
    "optionalstring": "string",
    "interval": "string",
    "boolean": "boolean",
}

_NUMERIC_WORD = re.compile(r"(^|_)(cost|amount|rate|factor|fee|quantity|price|hours|usage_amount)(_|$)")
_TEXT_SUFFIXES = ("_id", "_ids", "_code", "_type", "_unit", "_arn", "_a_r_n", "_description", "_name", "_term")
_DATE_COLUMN = re.compile(r"(^|_)(date|time|timestamp)$")


def normalise_name(name: str) -> str:
    """The CUR 2.0 snake_case name of a CUR v1 (or already snake_case) column."""
    spaced = re.sub(r"([A-Z])", r"_\1", name.strip()).lower()
    snake = re.sub(r"[^a-z0-9]+", "_", spaced).strip("_")
    return snake or "column"


def target_names(sources: Iterable[str]) -> dict[str, str]:
    """Source name → unique target name, deterministic whatever the column order.

    When two sources collide (``resourceTags/user:CostCenter`` and ``resourceTags/user:cost_center``), the one
    whose source name sorts first keeps the plain name and each other gets a suffix derived from its own source
    name, so a column keeps its name from one billing period to the next.
    """
    groups: dict[str, list[str]] = {}
    for source in dict.fromkeys(sources):
        groups.setdefault(normalise_name(source), []).append(source)
    names: dict[str, str] = {}
    for target, members in groups.items():
        members.sort()
        for index, source in enumerate(members):
            clash = index > 0 or target in RESERVED
            names[source] = f"{target}_{hashlib.sha1(source.encode()).hexdigest()[:6]}" if clash else target
    return names


_FREE_TEXT_PREFIXES = ("resource_tags_", "cost_category_", "no_tags_", "tags_", "product_")


def guess_kind(target: str) -> ColumnKind:
    """Type of a CSV column the manifest does not type (older or hand-made manifests)."""
    if is_identifier(target) or target.endswith(_TEXT_SUFFIXES) or target.startswith(_FREE_TEXT_PREFIXES):
        return "string"  # tag values and product attributes are free text, whatever their key says
    if _DATE_COLUMN.search(target) and "interval" not in target:
        return "timestamp"
    if _NUMERIC_WORD.search(target):
        return "double"
    return "string"


def is_identifier(target: str) -> bool:
    """Ids stay text so that leading zeros survive (account 001234567890)."""
    return target.endswith(("_id", "_ids")) or target in {"identity_time_interval"}


def column_specs(source: SourceFile, manifest_types: Mapping[str, str | None]) -> tuple[ColumnSpec, ...]:
    """How to read and type every column of one file.

    Args:
        source: the file's real format and columns.
        manifest_types: source column name (CSV header) → type name from the manifest, where it has one.
    """
    names = target_names(c.name for c in source.columns)
    specs = []
    for column in source.columns:
        target = names[column.name]
        if column.kind == "map":
            kind: ColumnKind = "json"
        elif source.format == "csv":
            declared = manifest_types.get(column.name) or manifest_types.get(target)
            kind = MANIFEST_TYPES.get(declared.lower(), "string") if declared else guess_kind(target)
            if target in RESERVED:
                kind = "string"
        else:
            kind = column.kind  # type: ignore[assignment]
        if is_identifier(target) and kind != "json":
            kind = "string"
        specs.append(ColumnSpec(source=column.name, target=target, kind=kind, source_kind=column.kind))
    return tuple(specs)
