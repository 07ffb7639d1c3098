"""AWS's native FOCUS exports (Data Exports ``FOCUS_1_0_AWS`` / ``FOCUS_1_2_AWS``): which kind an export is, and how
its columns are named and typed.

A FOCUS export has CUR 2.0's folder layout and manifest; only its columns tell it apart. The kind of a period:

* CUR v1 layout (``<export>/<YYYYMMDD-YYYYMMDD>/``): ``v1`` — FOCUS exports never use it;
* CUR 2.0 layout whose columns include both ``BilledCost`` and ``ChargePeriodStart`` (FOCUS's mandatory cost and
  time columns; no CUR column is spelt so): FOCUS, and then ``focus-1.2`` when any column that FOCUS 1.1 or 1.2
  added is present (:data:`~vendors.aws.focus.columns.VERSION_1_2_ONLY`: ``InvoiceId``, ``ServiceSubcategory``,
  ``CommitmentDiscountQuantity``, ``SkuMeter``, ``PricingCurrency``, ``BillingAccountType``…), else
  ``focus-1.0`` (AWS offers no FOCUS 1.1 export, so a 1.1 column can only mean 1.2);
* any other CUR 2.0 layout: ``v2``.

The columns are the manifest's; a manifest that lists none is decided by its first data file's columns.

A FOCUS table keeps the spec's names exactly as spelt (``BilledCost``, ``x_ServiceCode``); only
``billing_period`` is added. Types: Parquet as the file types it (maps and nested values → json); CSV by the
manifest's type where it gives one, else by FOCUS's own rules (:func:`focus_kind`). In a FOCUS CSV the literal
text ``NULL`` is read as NULL: FOCUS has no value spelt so, and real FOCUS files write it for a missing value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from core.backends.base import ColumnKind, ColumnSpec, SourceFile
from core.ingest import Reconciliation
from vendors.aws.focus.columns import FOCUS_COLUMNS, VERSION_1_2_ONLY, X_COLUMNS

__all__ = ["CUR_KINDS", "FOCUS_KINDS", "FOCUS_NULL_TEXTS", "column_specs", "export_kind", "focus_kind",
           "focus_version", "is_focus"]

#: the columns that make an export FOCUS (both must be present)
MARKERS = frozenset({"BilledCost", "ChargePeriodStart"})
FOCUS_KINDS = ("focus-1.0", "focus-1.2")
CUR_KINDS = ("v1", "v2")
#: texts a FOCUS CSV writes for NULL, besides the empty field
FOCUS_NULL_TEXTS = ("NULL",)
RESERVED = ("billing_period",)

#: FOCUS 1.2: the four cost columns reconciled, ``InvoiceId`` (filled once AWS invoices the month) says ``final``
FOCUS_1_2_CHECKS = Reconciliation(("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"), "InvoiceId",
                                  ("SubAccountId", "ServiceName", "ChargeCategory"), "BilledCost")
#: FOCUS 1.0 has no invoice column: its periods are never called ``final`` (nor ``estimated``): status unknown
FOCUS_1_0_CHECKS = Reconciliation(FOCUS_1_2_CHECKS.sum_columns, None, FOCUS_1_2_CHECKS.change_keys,
                                  FOCUS_1_2_CHECKS.change_cost)
CHECKS = {"focus-1.0": FOCUS_1_0_CHECKS, "focus-1.2": FOCUS_1_2_CHECKS}

# Data Exports' FOCUS manifests (and CUR 2.0's) type columns with these words.
_MANIFEST_TYPES: dict[str, ColumnKind] = {
    "string": "string", "varchar": "string", "text": "string",
    "double": "double", "decimal": "double", "float": "double", "bigdecimal": "double",
    "bigint": "bigint", "int": "bigint", "integer": "bigint",
    "datetime": "timestamp", "date": "date",
    "json": "json",
    "boolean": "boolean",
}
_SPEC_KINDS: dict[str, ColumnKind] = {c.name: c.kind for c in FOCUS_COLUMNS + X_COLUMNS}
_TIMESTAMPS = frozenset({"BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"})


def focus_version(names: Iterable[str]) -> str | None:
    """``focus-1.2`` / ``focus-1.0`` for FOCUS columns, None for anything else (CUR)."""
    present = set(names)
    if not MARKERS <= present:
        return None
    return "focus-1.2" if present & VERSION_1_2_ONLY else "focus-1.0"


def export_kind(layout: str, names: Iterable[str]) -> str | None:
    """The kind of one period: ``v1``, ``v2``, ``focus-1.0`` or ``focus-1.2`` from its layout (``v1``/``v2``) and
    its column names; None when a CUR 2.0 layout lists no columns (the data file decides)."""
    if layout == "v1":
        return "v1"
    listed = list(names)
    if not listed:
        return None
    return focus_version(listed) or "v2"


def is_focus(kind: str | None) -> bool:
    return kind in FOCUS_KINDS


def focus_kind(name: str) -> ColumnKind:
    """FOCUS's own typing of a CSV column the manifest does not type: the spec's kind for its columns; for any
    other (``x_*`` extensions, a provider's extra columns) ``*Cost``/``*Price``/``*Quantity`` are doubles and
    everything else text (ids keep their leading zeros)."""
    if name in _TIMESTAMPS:
        return "timestamp"
    if name in _SPEC_KINDS:
        return _SPEC_KINDS[name]
    if name.endswith(("Cost", "Price", "Quantity")):
        return "double"
    return "string"


def _declared(type_name: str | None) -> ColumnKind | None:
    """A manifest's type word (AWS writes ``double``, ``timestamp_milliseconds``, ``map<string,string>``…)."""
    word = (type_name or "").replace(" ", "").lower()
    if word.startswith("timestamp"):
        return "timestamp"
    if word.startswith(("map", "struct", "array")):
        return "json"
    return _MANIFEST_TYPES.get(word)


def _targets(names: Iterable[str]) -> dict[str, str]:
    """Every name kept as spelt, except ``billing_period``, which is ours (suffixed with a digest of itself)."""
    return {n: f"{n}_{hashlib.sha1(n.encode()).hexdigest()[:6]}" if n in RESERVED else n for n in names}


def column_specs(source: SourceFile, manifest_types: Mapping[str, str | None]) -> tuple[ColumnSpec, ...]:
    """How to read and type every column of one FOCUS file (names kept).

    Args:
        source: the file's real format and columns.
        manifest_types: column name → type word from the manifest, where it has one.
    """
    names = _targets(c.name for c in source.columns)
    specs = []
    for column in source.columns:
        kind: ColumnKind
        if column.kind == "map":
            kind = "json"
        elif source.format == "csv":
            kind = _declared(manifest_types.get(column.name)) or focus_kind(column.name)
        else:
            kind = column.kind  # type: ignore[assignment]
        specs.append(ColumnSpec(source=column.name, target=names[column.name], kind=kind, source_kind=column.kind))
    return tuple(specs)
