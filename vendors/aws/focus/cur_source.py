"""How the CUR → FOCUS rules read one CUR table: :class:`Source` over its catalogue (a CUR column the table lacks
is a typed NULL; product attributes from their own columns or the CUR 2.0 ``product`` map; tags from the
``resource_tags`` map or CUR v1's ``resource_tags_*`` columns), the line item types, and small sqlglot helpers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from core.backends.sqlengine import sqlexpr, types

if TYPE_CHECKING:  # pragma: no cover
    from sqlglot import exp

# -- line item types (CUR ``line_item_line_item_type``) -------------------------------------------------------
USAGE_TYPES = ("Usage", "DiscountedUsage", "SavingsPlanCoveredUsage", "SavingsPlanNegation")
PURCHASE_TYPES = ("Fee", "RIFee", "SavingsPlanRecurringFee", "SavingsPlanUpfrontFee")
#: discounts and credits: FOCUS ``Credit``
CREDIT_TYPES = ("Credit", "EdpDiscount", "PrivateRateDiscount", "BundledDiscount", "Discount", "RiVolumeDiscount",
                "SppDiscount", "DistributorDiscount")
#: rows that consume something (ConsumedQuantity/Unit, ContractedUnitPrice)
CONSUMING_TYPES = ("Usage", "DiscountedUsage", "SavingsPlanCoveredUsage")
PREFIX_TAGS = "resource_tags_"


class Source:
    """One CUR table as the rules see it: its columns (name → engine type) and the dialect to build for."""

    def __init__(self, columns: Mapping[str, str], dialect: str) -> None:
        self.columns = dict(columns)
        self.dialect = dialect

    def kind(self, name: str) -> str | None:
        type_name = self.columns.get(name)
        return None if type_name is None else types.kind_of(type_name, self.dialect)

    def has(self, name: str) -> bool:
        return name in self.columns

    def is_map(self, name: str) -> bool:
        """A CUR 2.0 map column (``product``, ``resource_tags``): held in the engine's JSON type, which is text
        where the engine has none (SQLite, MariaDB). CUR v1 never has a column of those bare names."""
        return self.kind(name) in ("json", "string")

    def col(self, name: str, kind: str = "string") -> exp.Expression:
        """The column, CAST to ``kind`` where the table stores another kind, or a typed NULL when absent."""
        from sqlglot import exp

        stored = self.kind(name)
        if stored is None:
            return sqlexpr.typed_null(kind, self.dialect)
        column = exp.column(name, quoted=True)
        return column if stored == kind else sqlexpr.typed(column, kind, self.dialect)

    def text(self, name: str) -> exp.Expression:
        """A text column with ``''`` as NULL (CUR v1 CSVs write empty cells)."""
        from sqlglot import exp

        if not self.has(name):
            return sqlexpr.typed_null("string", self.dialect)
        return exp.Nullif(this=self.col(name), expression=exp.Literal.string(""))

    def product(self, columns: str | tuple[str, ...], *keys: str) -> exp.Expression:
        """A product attribute: its own column(s) where the table has them (CUR v1, CUR 2.0's top-level product
        columns), then the first of ``keys`` in the CUR 2.0 ``product`` map that is set, else NULL."""
        from sqlglot import exp

        found: list[exp.Expression] = [self.text(c) for c in ((columns,) if isinstance(columns, str) else columns)
                                       if self.has(c)]
        if self.is_map("product"):
            product = exp.column("product", quoted=True)
            found += [exp.Nullif(this=sqlexpr.json_text(product, key, self.dialect), expression=exp.Literal.string(""))
                      for key in keys]
        if not found:
            return sqlexpr.typed_null("string", self.dialect)
        return found[0] if len(found) == 1 else exp.Coalesce(this=found[0], expressions=found[1:])

    def first(self, *names: str, kind: str = "double") -> exp.Expression:
        """The first of ``names`` the table has that is not NULL on the row (``net`` variants first)."""
        from sqlglot import exp

        present = [self.col(n, kind) for n in names if self.has(n)]
        if not present:
            return sqlexpr.typed_null(kind, self.dialect)
        return present[0] if len(present) == 1 else exp.Coalesce(this=present[0], expressions=present[1:])

    # -- the line item type --------------------------------------------------------------------------------
    @property
    def type(self) -> exp.Expression:
        return self.col("line_item_line_item_type")

    def type_in(self, *values: str) -> exp.Expression:
        from sqlglot import exp

        return self.type.isin(*[exp.Literal.string(v) for v in values])

    def tags(self) -> exp.Expression | None:
        """CUR 2.0: the ``resource_tags`` map. CUR v1: an object of the ``resource_tags_*`` columns (keys without
        the prefix, as CUR 2.0 spells them; empty values left out) where the dialect can build one."""
        from sqlglot import exp

        if self.is_map("resource_tags"):
            return exp.column("resource_tags", quoted=True)
        pairs = [(name[len(PREFIX_TAGS):], self.text(name)) for name in self.columns if name.startswith(PREFIX_TAGS)]
        if not pairs:
            return None
        return sqlexpr.json_object(pairs, self.dialect)


def lit(text: str) -> exp.Expression:
    from sqlglot import exp

    return exp.Literal.string(text)


def num(value: float) -> exp.Expression:
    from sqlglot import exp

    return exp.Literal.number(value)


def case(*whens: tuple[exp.Expression, exp.Expression], default: exp.Expression | None = None) -> exp.Expression:
    from sqlglot import exp

    case = exp.Case()
    for condition, value in whens:
        case = case.when(condition, value)
    return case.else_(default) if default is not None else case


def present(value: exp.Expression) -> exp.Expression:
    from sqlglot import exp

    return exp.Not(this=exp.Is(this=value, expression=exp.null()))


def coalesce(first: exp.Expression, *rest: exp.Expression) -> exp.Expression:
    from sqlglot import exp

    return exp.Coalesce(this=first, expressions=list(rest))
