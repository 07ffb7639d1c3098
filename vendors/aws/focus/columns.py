"""The FOCUS 1.2 columns every FOCUS relation of ``finops`` exposes, in this order, with their logical kinds.

The spec's column list (FOCUS 1.2, ratified May 2025) plus the three AWS extension columns the CUR mapping fills.
``mandatory`` marks the columns the spec requires to be present *and* non-null on every row (the nullable
mandatory columns such as ``ChargeClass`` are present but may be null), which ``finops aws focus --check`` tests.
The kinds are the engine-neutral ones of :mod:`core.backends.reading`: FOCUS's Decimal is ``double`` (the CUR
columns it comes from are doubles), DateTime is ``timestamp`` (UTC), key-value format is ``json``.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.backends.base import ColumnKind

__all__ = ["FOCUS_COLUMNS", "FOCUS_NAMES", "VERSION_1_2_ONLY", "X_COLUMNS", "FocusColumn"]


@dataclass(frozen=True)
class FocusColumn:
    name: str
    kind: ColumnKind
    #: required and never null (FOCUS 1.2 "Mandatory" with "Allows nulls: False")
    mandatory: bool = False


def _c(name: str, kind: ColumnKind = "string", mandatory: bool = False) -> FocusColumn:
    return FocusColumn(name, kind, mandatory)


FOCUS_COLUMNS: tuple[FocusColumn, ...] = (
    _c("AvailabilityZone"),
    _c("BilledCost", "double", True),
    _c("BillingAccountId", mandatory=True),
    _c("BillingAccountName"),
    _c("BillingAccountType"),
    _c("BillingCurrency", mandatory=True),
    _c("BillingPeriodEnd", "timestamp", True),
    _c("BillingPeriodStart", "timestamp", True),
    _c("CapacityReservationId"),
    _c("CapacityReservationStatus"),
    _c("ChargeCategory", mandatory=True),
    _c("ChargeClass"),
    _c("ChargeDescription"),
    _c("ChargeFrequency"),
    _c("ChargePeriodEnd", "timestamp", True),
    _c("ChargePeriodStart", "timestamp", True),
    _c("CommitmentDiscountCategory"),
    _c("CommitmentDiscountId"),
    _c("CommitmentDiscountName"),
    _c("CommitmentDiscountQuantity", "double"),
    _c("CommitmentDiscountStatus"),
    _c("CommitmentDiscountType"),
    _c("CommitmentDiscountUnit"),
    _c("ConsumedQuantity", "double"),
    _c("ConsumedUnit"),
    _c("ContractedCost", "double", True),
    _c("ContractedUnitPrice", "double"),
    _c("EffectiveCost", "double", True),
    _c("InvoiceId"),
    _c("InvoiceIssuerName", mandatory=True),
    _c("ListCost", "double", True),
    _c("ListUnitPrice", "double"),
    _c("PricingCategory"),
    _c("PricingCurrency"),
    _c("PricingCurrencyContractedUnitPrice", "double"),
    _c("PricingCurrencyEffectiveCost", "double"),
    _c("PricingCurrencyListUnitPrice", "double"),
    _c("PricingQuantity", "double"),
    _c("PricingUnit"),
    _c("ProviderName", mandatory=True),
    _c("PublisherName", mandatory=True),
    _c("RegionId"),
    _c("RegionName"),
    _c("ResourceId"),
    _c("ResourceName"),
    _c("ResourceType"),
    _c("ServiceCategory", mandatory=True),
    _c("ServiceName", mandatory=True),
    _c("ServiceSubcategory"),
    _c("SkuId"),
    _c("SkuMeter"),
    _c("SkuPriceDetails", "json"),
    _c("SkuPriceId"),
    _c("SubAccountId"),
    _c("SubAccountName"),
    _c("SubAccountType"),
    _c("Tags", "json"),
)

#: AWS extension columns (FOCUS ``x_`` prefix) the CUR mapping fills and AWS's native FOCUS exports carry
X_COLUMNS: tuple[FocusColumn, ...] = (_c("x_ServiceCode"), _c("x_UsageType"), _c("x_Operation"))

FOCUS_NAMES: tuple[str, ...] = tuple(c.name for c in FOCUS_COLUMNS + X_COLUMNS)

#: columns FOCUS 1.1/1.2 added that a FOCUS 1.0 export never has: any of them present means a FOCUS 1.2 export
VERSION_1_2_ONLY: frozenset[str] = frozenset({
    "BillingAccountType", "SubAccountType", "InvoiceId", "PricingCurrency", "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost", "PricingCurrencyListUnitPrice", "CapacityReservationId",
    "CapacityReservationStatus", "CommitmentDiscountQuantity", "CommitmentDiscountUnit", "ServiceSubcategory",
    "SkuMeter", "SkuPriceDetails",
})
