"""``finops aws verify`` and ``finops aws show-changes``: the month-end checks (mounted by :mod:`vendors.aws.cli`)."""

from __future__ import annotations

from typing import Any

import typer

from core.cli import output
from core.cli.common import BackendOpt, ConfigOpt, DbConfigOpt, DebugOpt, JsonOpt, VerboseOpt, guarded, load_config
from vendors.aws.cli_options import BucketOpt, ExportOpt, PeriodOpt, PrefixOpt, SourceDirOpt, aws_settings
from vendors.aws.columns import COST_COLUMN, COST_COLUMNS

VERIFY_HELP = """Re-read the source of every loaded period and compare it with the database: rows, cost sums, and the unblended cost per usage account and product code (a FOCUS export: BilledCost, EffectiveCost, ListCost, ContractedCost, and BilledCost per SubAccountId and ServiceName).

The files are read again independently of the import path (the Arrow reader, summed as it streams); the table side is summed by the database. Exit 0 when every period matches, 1 otherwise. Data-quality findings (duplicated line items, several currencies, split cost allocation rows, one payer in two exports) are computed again and shown with those the import recorded; they do not fail it.

\b
Examples:
  finops aws verify --config config.toml
  finops aws verify --export-name cur2-daily --billing-period 2024-03 --json
"""


@guarded
def verify(
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    database_config: DbConfigOpt = None,
    bucket: BucketOpt = None,
    prefix: PrefixOpt = None,
    export_name: ExportOpt = None,
    source_dir: SourceDirOpt = None,
    billing_period: PeriodOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    from core.backends.factory import create_backend
    from core.config import normalise_period
    from vendors.aws.pipeline import dataset_for, open_store, period_source, read_state, scan_source
    from vendors.aws.verify import verify as run_verify

    period = normalise_period(billing_period)
    cfg = load_config(config, backend=backend, database_config=database_config,
                      aws=aws_settings(bucket, prefix, export_name, source_dir=source_dir, start_date=period, end_date=period))
    store = open_store(cfg.aws)
    db = create_backend(cfg.database)
    dataset = dataset_for(cfg, db)
    scan = scan_source(cfg, store)
    loaded = [r for r in read_state(db, dataset) if r.is_current and r.status == "completed"]
    current = {(r.export_name, r.billing_period): r.version_id for r in loaded}
    recorded = {(r.export_name, r.billing_period): r.quality_findings for r in loaded}
    with db:
        checks = run_verify(db, store, dataset, [period_source(m, store) for m in scan.manifests], current, recorded)
    failed = [c for c in checks if c.status != "match"] + [None] * len(scan.problems)
    if json_out:
        output.emit_json({"periods": [c.to_dict() for c in checks],
                          "problems": [{"manifest_key": p.manifest_key, "error": p.error.message}
                                       for p in scan.problems],
                          "exit_code": 1 if failed else 0})
    else:
        output.stdout.print(output.table(
            "Verification: the source re-read against the database",
            ["export", "period", "status", "rows (source / table)", "cost (source / table)",
             "findings (now / at import)"],
            [[c.export_name, c.billing_period, c.status, _pair(c, "rows"), _pair(c, _cost_of(c)),
              f"{len(c.findings)} / {'-' if c.recorded_findings is None else len(c.recorded_findings)}"]
             for c in checks],
            justify_right={"rows (source / table)", "cost (source / table)"},
        ))
        for check in checks:
            for line in check.differences:
                output.stderr.print(f"[red]{check.export_name} {check.billing_period}[/red]: {line}")
            for finding in check.findings:
                output.stderr.print(f"[yellow]{check.export_name} {check.billing_period}[/yellow]: "
                                    f"{output.escape(finding['message'])}")
        for problem in scan.problems:
            output.stderr.print(f"[red]malformed[/red] {problem.manifest_key}: {problem.error.message}")
    if failed:
        raise typer.Exit(1)


def _cost_of(check: Any) -> str:
    """The cost a period's check shows: CUR's unblended cost, FOCUS's BilledCost."""
    sums = check.source.sums if check.source is not None else {}
    return next((c for c in COST_COLUMNS if c in sums), COST_COLUMN)


def _pair(check: Any, figure: str) -> str:
    """``source / table`` for one figure of a period check ("" when a side was not read)."""
    if check.source is None or check.table is None:
        return ""
    if figure == "rows":
        return f"{output.fmt_int(check.source.rows)} / {output.fmt_int(check.table.rows)}"
    return f"{output.fmt_cost(check.source.sums.get(figure))} / {output.fmt_cost(check.table.sums.get(figure))}"


@guarded
def show_changes(
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    database_config: DbConfigOpt = None,
    export_name: ExportOpt = None,
    billing_period: PeriodOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """What each restatement changed: the unblended cost per usage account, product code and line item type of the
    version replaced and of the version that replaced it (recorded by the import, in the same transaction). For a
    FOCUS export: BilledCost per SubAccountId, ServiceName and ChargeCategory."""
    from core.backends.factory import create_backend
    from core.backends.sqlengine.changes import read
    from core.config import normalise_period
    from vendors.aws.pipeline import VENDOR, dataset_for

    cfg = load_config(config, backend=backend, database_config=database_config)
    db = create_backend(cfg.database)
    dataset = dataset_for(cfg, db)
    columns: list[str] = []
    rows: list[Any] = []
    if db.exists():
        with db:
            if db.open_dataset(dataset, create=False):
                columns, rows = read(lambda sql, params: db.execute(sql, params).rows, db, dataset, VENDOR,
                                     export_name or cfg.aws.export_name, normalise_period(billing_period))
    changes = [dict(zip(columns, row, strict=True)) for row in rows]
    if json_out:
        output.emit_json({"changes": changes})
        return
    if not changes:
        output.stderr.print("No restatement recorded (yet).")
        return
    keys = [c for c in columns if c not in {"vendor", "export_name", "billing_period", "old_version", "new_version",
                                             "old_cost", "new_cost", "old_rows", "new_rows", "recorded_at"}]
    output.stdout.print(output.table(
        "What each restatement changed",
        ["export", "period", "old → new version", *keys, "old cost", "new cost", "change"],
        [[c["export_name"], c["billing_period"], f"{c['old_version']} → {c['new_version']}", *[c[k] for k in keys],
          output.fmt_cost(c["old_cost"]), output.fmt_cost(c["new_cost"]),
          f"{(c['new_cost'] or 0) - (c['old_cost'] or 0):+,.2f}"] for c in changes],
        justify_right={"old cost", "new cost", "change"},
    ))
