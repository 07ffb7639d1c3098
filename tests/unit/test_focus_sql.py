"""Exact SQL of the FOCUS view's tricky parts per dialect, and of ``replace_views`` per engine capability.

The integration suite (``tests/integration/test_focus_views.py``) runs the views on every target; these pin what
an engine receives, which is the only coverage of what the emulators do not run as the real service would:
fakesnow answers ``CAST(GET(v, 'k') AS VARCHAR)`` with the JSON quotes Snowflake drops (so ``GET_PATH`` is used,
which both agree on), and bqemulator is not BigQuery's SQL engine (``JSON_VALUE``, ``JSON_STRIP_NULLS`` and a view
named ``project.dataset.view`` are pinned here as BigQuery documents them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlglot import exp

from core.backends.base import Capabilities
from core.backends.sqlengine import sqlexpr
from core.backends.sqlengine.names import quote_identifier
from core.backends.sqlengine.views import ViewsMixin
from vendors.aws.focus.columns import FOCUS_NAMES
from vendors.aws.focus.mapping import RULES, cur_focus_select, focus_expressions

DIALECTS = ("duckdb", "postgres", "sqlite", "mysql", "snowflake", "bigquery")
PRODUCT = exp.column("product", quoted=True)


@pytest.mark.parametrize(("dialect", "sql"), [
    ("duckdb", """JSON_EXTRACT_STRING("product", '$.product_name')"""),
    ("postgres", """JSONB_EXTRACT_PATH_TEXT("product", 'product_name')"""),  # jsonb, not json's function
    ("sqlite", """JSON_EXTRACT("product", '$.product_name')"""),
    ("mysql", """JSON_UNQUOTE(JSON_EXTRACT(`product`, '$.product_name'))"""),  # MariaDB has no ->>
    ("snowflake", """CAST(GET_PATH("product", 'product_name') AS VARCHAR)"""),
    ("bigquery", """JSON_VALUE(`product`, '$.product_name')"""),
])
def test_json_member_as_text(dialect: str, sql: str) -> None:
    assert sqlexpr.json_text(PRODUCT, "product_name", dialect).sql(dialect=dialect) == sql


def test_json_keys_must_be_plain_names() -> None:
    with pytest.raises(ValueError, match="plain name"):
        sqlexpr.json_text(PRODUCT, "user:team", "duckdb")


@pytest.mark.parametrize(("dialect", "sql"), [
    ("duckdb", """JSON_MERGE_PATCH('{}', JSON_OBJECT('user_team', "t"))"""),
    ("postgres", """JSONB_STRIP_NULLS(JSONB_BUILD_OBJECT('user_team', "t"))"""),
    ("sqlite", """JSON_PATCH('{}', JSON_OBJECT('user_team', "t"))"""),
    ("mysql", """JSON_MERGE_PATCH('{}', JSON_OBJECT('user_team', `t`))"""),
    ("snowflake", """OBJECT_CONSTRUCT('user_team', "t")"""),
    ("bigquery", """JSON_STRIP_NULLS(JSON_OBJECT('user_team', `t`))"""),
])
def test_json_object_without_null_members(dialect: str, sql: str) -> None:
    built = sqlexpr.json_object([("user_team", exp.column("t", quoted=True))], dialect)
    assert built is not None and built.sql(dialect=dialect) == sql


def test_json_object_in_chunks_where_calls_take_few_arguments() -> None:
    """PostgreSQL takes at most 100 arguments per call, SQLite 127: 90 tags are built 40 pairs at a time."""
    pairs = [(f"k{i}", exp.column(f"t{i}", quoted=True)) for i in range(90)]
    pg = sqlexpr.json_object(pairs, "postgres").sql(dialect="postgres")  # type: ignore[union-attr]
    assert pg.startswith("JSONB_STRIP_NULLS(JSONB_BUILD_OBJECT('k0', \"t0\"") and pg.count("JSONB_BUILD_OBJECT(") == 3
    assert pg.count(") || JSONB_BUILD_OBJECT(") == 2 and "'k40', \"t40\"" in pg
    lite = sqlexpr.json_object(pairs, "sqlite").sql(dialect="sqlite")  # type: ignore[union-attr]
    assert lite.startswith("JSON_PATCH(JSON_PATCH(JSON_PATCH('{}', JSON_OBJECT('k0', \"t0\"")
    assert lite.count("JSON_OBJECT(") == 3
    snow = sqlexpr.json_object(pairs, "snowflake").sql(dialect="snowflake")  # type: ignore[union-attr]
    assert snow.count("OBJECT_CONSTRUCT(") == 1


def test_json_object_of_an_unknown_dialect_is_none() -> None:
    assert sqlexpr.json_object([("k", exp.column("t"))], "tsql") is None


@pytest.mark.parametrize(("dialect", "timestamp", "json"), [
    ("duckdb", "TIMESTAMPTZ", "JSON"), ("postgres", "TIMESTAMPTZ", "JSONB"),
    ("sqlite", "TEXT", "TEXT"),  # CAST AS TIMESTAMP would be NUMERIC affinity: '2024-01-01 …' → 2024
    ("mysql", "DATETIME(6)", "CHAR"),  # MariaDB cannot CAST AS JSON
    ("snowflake", "TIMESTAMPTZ", "VARIANT"), ("bigquery", "TIMESTAMP", "JSON"),
])
def test_typed_nulls(dialect: str, timestamp: str, json: str) -> None:
    assert sqlexpr.typed_null("timestamp", dialect).sql(dialect=dialect) == f"CAST(NULL AS {timestamp})"
    assert sqlexpr.typed_null("json", dialect).sql(dialect=dialect) == f"CAST(NULL AS {json})"


CUR2 = {
    "line_item_line_item_type": "STRING", "line_item_unblended_cost": "FLOAT64", "line_item_net_unblended_cost": "FLOAT64",
    "savings_plan_savings_plan_effective_cost": "FLOAT64", "savings_plan_total_commitment_to_date": "FLOAT64",
    "savings_plan_used_commitment": "FLOAT64", "reservation_effective_cost": "FLOAT64",
    "reservation_reservation_a_r_n": "STRING", "reservation_unused_amortized_upfront_fee_for_billing_period": "FLOAT64",
    "reservation_unused_recurring_fee": "FLOAT64", "product": "JSON", "line_item_product_code": "STRING",
}


def _column(columns: dict[str, str], dialect: str, name: str) -> str:
    return focus_expressions(columns, dialect)[FOCUS_NAMES.index(name)].sql(dialect=dialect)


def test_effective_cost_case_on_bigquery() -> None:
    assert _column(CUR2, "bigquery", "EffectiveCost") == (
        "CASE WHEN `line_item_line_item_type` IN ('SavingsPlanCoveredUsage') "
        "THEN `savings_plan_savings_plan_effective_cost` "
        "WHEN `line_item_line_item_type` IN ('SavingsPlanRecurringFee') "
        "THEN `savings_plan_total_commitment_to_date` - `savings_plan_used_commitment` "
        "WHEN `line_item_line_item_type` IN ('SavingsPlanNegation', 'SavingsPlanUpfrontFee') THEN 0 "
        "WHEN `line_item_line_item_type` IN ('DiscountedUsage') THEN `reservation_effective_cost` "
        "WHEN `line_item_line_item_type` IN ('RIFee') "
        "THEN COALESCE(`reservation_unused_amortized_upfront_fee_for_billing_period`, 0) "
        "+ COALESCE(`reservation_unused_recurring_fee`, 0) "
        "WHEN `line_item_line_item_type` IN ('Fee') AND NOT NULLIF(`reservation_reservation_a_r_n`, '') IS NULL THEN 0 "
        "ELSE COALESCE(`line_item_net_unblended_cost`, `line_item_unblended_cost`) END AS `EffectiveCost`")


def test_billed_cost_without_net_columns_is_unblended() -> None:
    columns = {k: v for k, v in CUR2.items() if "net" not in k}
    assert _column(columns, "bigquery", "BilledCost") == "`line_item_unblended_cost` AS `BilledCost`"
    columns["line_item_unblended_cost"] = "STRING"  # a table that stored it as text: cast to the FOCUS kind
    assert _column(columns, "bigquery", "BilledCost") == "CAST(`line_item_unblended_cost` AS FLOAT64) AS `BilledCost`"


def test_service_name_from_the_product_map_on_snowflake() -> None:
    assert _column(CUR2, "snowflake", "ServiceName") == (
        """COALESCE(NULLIF(CAST(GET_PATH("product", 'product_name') AS VARCHAR), ''), """
        """NULLIF("line_item_product_code", '')) AS "ServiceName\"""")


def test_cur1_tags_object_from_the_tag_columns_on_postgres() -> None:
    columns = {"resource_tags_user_team": "text", "resource_tags_user_cost_center": "text"}
    assert _column(columns, "postgres", "Tags") == (
        """JSONB_STRIP_NULLS(JSONB_BUILD_OBJECT('user_team', NULLIF("resource_tags_user_team", ''), """
        """'user_cost_center', NULLIF("resource_tags_user_cost_center", ''))) AS "Tags\"""")


def test_missing_columns_are_typed_nulls() -> None:
    assert _column({}, "mysql", "ChargePeriodStart") == "CAST(NULL AS DATETIME(6)) AS `ChargePeriodStart`"
    assert _column({}, "duckdb", "Tags") == 'CAST(NULL AS JSON) AS "Tags"'
    assert _column({}, "sqlite", "ListUnitPrice") == 'CAST(NULL AS REAL) AS "ListUnitPrice"'


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_focus_column_in_order_and_the_sql_parses(dialect: str) -> None:
    select = cur_focus_select(CUR2, exp.to_table("d.t"), dialect)
    assert [e.alias for e in select.expressions] == list(FOCUS_NAMES)
    reparsed = exp.maybe_parse(select.sql(dialect=dialect), dialect=dialect)
    assert [e.alias_or_name for e in reparsed.expressions] == list(FOCUS_NAMES)


def test_every_rule_says_where_its_value_comes_from() -> None:
    assert [r.focus for r in RULES] == list(FOCUS_NAMES)
    assert all(r.cur for r in RULES)
    assert all(r.cur.startswith("NULL") for r in RULES if r.build is None)


def test_docs_list_every_rule_as_the_code_has_it() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "FOCUS.md").read_text()
    section = docs.split("## Mapping from CUR", 1)[1]
    for rule in RULES:
        assert f"| {rule.focus} | " in section and rule.cur.replace("|", "\\|") in section, rule.focus


# -- replace_views per capability ---------------------------------------------------------------------------


@dataclass
class FakeEngine(ViewsMixin):
    """Just what ViewsMixin needs; ``calls`` gets every statement."""

    dialect: str
    capabilities: Capabilities
    project: str | None = None
    calls: list[str] = field(default_factory=list)

    def execute(self, sql: str, params: Any = (), *, what: str = "") -> Any:
        self.calls.append(sql)

    def transaction(self, *, commit: bool = True) -> Any:
        engine = self

        class Tx:
            def __enter__(self) -> None:
                engine.calls.append("BEGIN")

            def __exit__(self, *exc: object) -> None:
                engine.calls.append("COMMIT")

        return Tx()

    def quote(self, name: str) -> str:
        return quote_identifier(name, self.dialect)

    def qualified(self, dataset: str, table: str) -> str:
        parts = ([self.project] if self.project else []) + [dataset, table]
        return ".".join(self.quote(p) for p in parts)

    def ensure_schema(self, dataset: str) -> None:
        pass

    def open_dataset(self, dataset: str, *, create: bool = True) -> bool:
        return True


VIEWS = [("a_focus", "SELECT 1 AS x"), ("focus", "SELECT x FROM a_focus")]


def test_postgres_drops_with_cascade_in_one_transaction() -> None:
    engine = FakeEngine("postgres", Capabilities(view_replace="drop_cascade"))
    engine.replace_views("ds", VIEWS)
    assert engine.calls == [
        "BEGIN",
        'DROP VIEW IF EXISTS "ds"."a_focus" CASCADE', 'CREATE VIEW "ds"."a_focus" AS SELECT 1 AS x',
        'DROP VIEW IF EXISTS "ds"."focus" CASCADE', 'CREATE VIEW "ds"."focus" AS SELECT x FROM a_focus',
        "COMMIT",
    ]


def test_sqlite_drops_without_cascade() -> None:
    engine = FakeEngine("sqlite", Capabilities(schemas=False, view_replace="drop"))
    engine.replace_views("ds", VIEWS[:1])
    assert engine.calls == ["BEGIN", 'DROP VIEW IF EXISTS "ds"."a_focus"',
                            'CREATE VIEW "ds"."a_focus" AS SELECT 1 AS x', "COMMIT"]


def test_bigquery_replaces_in_place_with_the_project_and_no_transaction() -> None:
    engine = FakeEngine("bigquery", Capabilities(ddl="outside"), project="proj")
    engine.replace_views("ds", VIEWS)
    assert engine.calls == ["CREATE OR REPLACE VIEW `proj`.`ds`.`a_focus` AS SELECT 1 AS x",
                            "CREATE OR REPLACE VIEW `proj`.`ds`.`focus` AS SELECT x FROM a_focus"]


def test_render_quotes_every_identifier_and_keeps_case() -> None:
    engine = FakeEngine("snowflake", Capabilities(ddl="implicit_commit"))
    query = exp.select(exp.column("BilledCost")).from_(exp.to_table("ds.cur2_focus"))
    assert engine.render(query) == 'SELECT "BilledCost" FROM "ds"."cur2_focus"'
    assert engine.render(engine.table_expression("ds", "MixedCase")) == '"ds"."MixedCase"'
