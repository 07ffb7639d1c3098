"""``finops aws …``: thin commands over :mod:`vendors.aws.pipeline` (parse, build settings, call, print)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from core.cli import output
from core.cli.common import BackendOpt, ConfigOpt, DbConfigOpt, DebugOpt, JsonOpt, VerboseOpt, guarded, load_config
from core.errors import FinOpsError
from vendors.aws.cli_audit import VERIFY_HELP, show_changes, verify
from vendors.aws.cli_options import (
    BucketOpt,
    EndOpt,
    ExportOpt,
    PrefixOpt,
    SourceDirOpt,
    StartOpt,
    VersionOpt,
)
from vendors.aws.cli_options import aws_settings as _aws
from vendors.aws.columns import COST_COLUMN, COST_COLUMNS
from vendors.aws.focus.cli import FOCUS_HELP, refresh_after_import
from vendors.aws.focus.cli import focus as focus_command

app = typer.Typer(help="AWS Cost and Usage Reports (CUR v1, CUR 2.0) and Data Exports' FOCUS 1.0 / 1.2 exports.",
                  no_args_is_help=True)

IMPORT_HELP = """Import every billing period whose current manifest version is not loaded yet.

Each period is replaced atomically in its export's table; a failed period is recorded as failed and the others still load (exit code 1 at the end).

The kind of each export is detected from its manifest and columns, with no flag: CUR v1, CUR 2.0 (snake_case columns such as line_item_unblended_cost), or a Data Exports FOCUS 1.0 / 1.2 export, whose table keeps the FOCUS names as spelt (BilledCost, x_ServiceCode). The kind is recorded in the load state (data_format_version) and shown by list-exports.

\b
Examples:
  finops aws import-cur --config examples/config-demo.toml
  finops aws import-cur --bucket my-billing --prefix cur --export-name cur2-daily
  finops aws import-cur --backend postgresql --start-date 2024-01 --end-date 2024-03
  finops aws import-cur --export-name legacy-cur --start-date 2024-02 --reset
  OPEN_FINOPS_DATABASE_DUCKDB_DATABASE_PATH=/srv/finops.duckdb finops aws import-cur
  finops aws import-cur --dry-run --json | jq '.periods[] | select(.status=="planned")'
"""


@app.command("import-cur", help=IMPORT_HELP)
@guarded
def import_cur(
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    database_config: DbConfigOpt = None,
    bucket: BucketOpt = None,
    prefix: PrefixOpt = None,
    export_name: ExportOpt = None,
    cur_version: VersionOpt = None,
    source_dir: SourceDirOpt = None,
    start_date: StartOpt = None,
    end_date: EndOpt = None,
    reset: Annotated[bool, typer.Option("--reset", help="Reload periods even if their version is loaded.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    from core.backends.factory import create_backend
    from vendors.aws.pipeline import dataset_for, run_aws_pipeline

    cfg = load_config(
        config, backend=backend, database_config=database_config,
        aws=_aws(bucket, prefix, export_name, cur_version, source_dir, start_date, end_date, reset),
    )
    db = create_backend(cfg.database)
    progress = output.RichProgress(enabled=None if not json_out else False)
    with progress.running():
        report = run_aws_pipeline(cfg, backend=db, dry_run=dry_run, progress=progress)
    focus_error = refresh_after_import(cfg, db, report)  # the FOCUS relations follow the tables
    if json_out:
        output.emit_json({**report.to_dict(), "focus_error": focus_error,
                          "exit_code": report.exit_code or (1 if focus_error else 0)})
    else:
        _print_report(report)
        if not dry_run and report.outcomes:
            try:  # a courtesy: the import is done, and its exit code must not depend on this read
                with db:
                    _print_tables(db.list_tables(dataset_for(cfg, db), cost_column=COST_COLUMNS))
            except FinOpsError as exc:
                output.stderr.print(f"[yellow]Could not read the summary back:[/yellow] {exc.message}")
    for failure in report.failed:
        output.stderr.print(f"[red]failed[/red] {failure.export_name} {failure.billing_period or ''}: "
                            f"{output.escape(failure.error or '')}")  # messages quote [sections]: not markup
    if focus_error:
        output.stderr.print(f"[red]FOCUS relations not refreshed[/red] (the data is loaded; they are stale until "
                            f"`finops aws focus` succeeds): {escape(focus_error)}")
    raise typer.Exit(report.exit_code or (1 if focus_error else 0))


def _print_report(report: Any) -> None:
    verb = "Plan" if report.dry_run else "Import"
    rows = [
        [o.export_name, o.billing_period or "?", o.version_id or "", o.status, output.fmt_int(o.rows), o.files,
         f"{o.seconds:.1f}s" if o.seconds else "", _note(o)]
        for o in report.outcomes
    ]
    title = f"{verb}: {report.source} → {report.backend} {report.destination} ({report.dataset})"
    output.stdout.print(
        output.table(title, ["export", "period", "version", "status", "rows", "files", "time", "note"], rows,
                     justify_right={"rows", "files", "time"})
    )
    estimates = [f"{o.export_name} {o.billing_period}" for o in report.outcomes if o.period_status == "estimated"]
    if estimates:  # on stdout with the report: a month without an invoice will still change
        output.stdout.print(f"Still estimated (no invoice yet): {', '.join(estimates)}")


def _note(outcome: Any) -> str:
    note = outcome.reason or outcome.error or ""
    if outcome.findings and outcome.status == "loaded":  # each one is a warning line on stderr
        found = f"{len(outcome.findings)} data-quality finding(s)"
        note = f"{note}; {found}" if note else found
    return note


def _print_tables(tables: list[Any], kinds: dict[str, str] | None = None) -> None:
    """Rows and cost per period: CUR's unblended cost, FOCUS's BilledCost (``kinds``: table → export kind)."""
    rows = [
        [t.table, *([kinds.get(t.table, "")] if kinds is not None else []), p.billing_period,
         output.fmt_int(p.rows), output.fmt_cost(p.cost)]
        for t in tables
        for p in t.periods
    ]
    if rows:
        header = ["table", *(["kind"] if kinds is not None else []), "period", "rows", "cost (unblended / billed)"]
        output.stdout.print(output.table("In the database", header, rows,
                                         justify_right={"rows", "cost (unblended / billed)"}))


def table_kinds(db: Any, dataset: str) -> dict[str, str]:
    """Export table → its kind (``v1``, ``v2``, ``focus-1.0``, ``focus-1.2``) as the state recorded it for the
    latest current period (several kinds over time are joined: ``focus-1.0,focus-1.2``)."""
    from vendors.aws.pipeline import read_state

    by_table: dict[str, dict[str, str]] = {}
    for record in read_state(db, dataset):
        if record.is_current and record.status == "completed":
            by_table.setdefault(db.table_name(record.export_name), {})[record.billing_period] = \
                record.data_format_version
    return {table: ",".join(sorted(set(periods.values()))) for table, periods in by_table.items()}


app.command("focus", help=FOCUS_HELP)(guarded(focus_command))


@app.command("list-manifests")
@guarded
def list_manifests(
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    database_config: DbConfigOpt = None,
    bucket: BucketOpt = None,
    prefix: PrefixOpt = None,
    export_name: ExportOpt = None,
    cur_version: VersionOpt = None,
    source_dir: SourceDirOpt = None,
    start_date: StartOpt = None,
    end_date: EndOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """What the source holds: period, kind (v1, v2, focus-1.0, focus-1.2), version id, file count, and whether that
    version is loaded."""
    from core.backends.factory import create_backend
    from vendors.aws.pipeline import dataset_for, open_store, read_state, scan_source

    cfg = load_config(config, backend=backend, database_config=database_config,
                      aws=_aws(bucket, prefix, export_name, cur_version, source_dir, start_date, end_date))
    store = open_store(cfg.aws)
    scan = scan_source(cfg, store)
    db = create_backend(cfg.database)
    loaded = {(r.export_name, r.billing_period): r.version_id for r in read_state(db, dataset_for(cfg, db))
              if r.is_current and r.status == "completed"}
    items = [
        {"export_name": m.export_name, "cur_version": m.cur_version, "kind": m.kind or m.cur_version,
         "billing_period": m.billing_period,
         "version_id": m.version_id, "files": len(m.data_keys), "manifest_key": m.manifest_key,
         "loaded": loaded.get((m.export_name, m.billing_period)) == m.version_id}
        for m in scan.manifests
    ]
    problems = [{"export_name": p.export_name, "billing_period": p.billing_period, "manifest_key": p.manifest_key,
                 "error": p.error.message} for p in scan.problems]
    if json_out:
        output.emit_json({"source": store.describe(), "manifests": items, "problems": problems})
    else:
        output.stdout.print(output.table(
            f"Manifests in {store.describe()}",
            ["export", "kind", "period", "version", "files", "loaded"],
            [[i["export_name"], i["kind"], i["billing_period"], i["version_id"], i["files"],
              "yes" if i["loaded"] else "no"] for i in items],
            justify_right={"files"},
        ))
        for p in problems:
            output.stderr.print(f"[red]malformed[/red] {p['manifest_key']}: {p['error']}")
    raise typer.Exit(1 if problems else 0)


@app.command("show-state")
@guarded
def show_state(
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    database_config: DbConfigOpt = None,
    export_name: ExportOpt = None,
    billing_period: Annotated[
        str | None, typer.Option("--billing-period", help="One period's full version history (YYYY-MM).", show_default=False)
    ] = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """The current version of every period, or one period's whole history with --billing-period."""
    from core.backends.factory import create_backend
    from core.backends.sqlengine.quality import from_json
    from core.config import normalise_period
    from core.errors import ConfigError
    from vendors.aws.pipeline import dataset_for, read_state

    try:
        period = normalise_period(billing_period)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    cfg = load_config(config, backend=backend, database_config=database_config, aws=_aws(export_name=export_name))
    db = create_backend(cfg.database)
    records = read_state(db, dataset_for(cfg, db), cfg.aws.export_name, period)
    if period is None:
        records = _current_view(records)
    findings = {id(r): from_json(r.quality_findings) for r in records}
    if json_out:  # ``quality_findings`` as stored (JSON text), ``findings`` parsed (None: not checked)
        output.emit_json({"records": [{**r.as_dict(), "findings": findings[id(r)]} for r in records]})
        return
    output.stdout.print(output.table(
        "Load history" if period else "Current versions",
        ["export", "period", "version", "status", "current", "rows", "files", "finished", "findings", "error"],
        [[r.export_name, r.billing_period, r.version_id, r.status, "yes" if r.is_current else "",
          output.fmt_int(r.row_count), r.file_count, r.finished_at.strftime("%Y-%m-%d %H:%M:%S") if r.finished_at else "",
          _kinds(findings[id(r)]), (r.error_message or "")[:120]] for r in records],
        justify_right={"rows", "files"},
    ))
    for record in records:
        for finding in findings[id(record)] or []:
            output.stdout.print(f"{record.export_name} {record.billing_period} {record.version_id}: "
                                f"{output.escape(finding['message'])}")


def _kinds(findings: list[dict[str, Any]] | None) -> str:
    """The state's findings in a table cell: ``-`` not checked, ``none``, or their kinds."""
    if findings is None:
        return "-"
    return ", ".join(f["kind"] for f in findings) or "none"


def _current_view(records: list[Any]) -> list[Any]:
    """Per period: the current version, plus the latest attempt when it is newer and did not complete."""
    by_period: dict[tuple[str, str], list[Any]] = {}
    for record in records:
        by_period.setdefault((record.export_name, record.billing_period), []).append(record)
    view = []
    for attempts in by_period.values():
        current = [r for r in attempts if r.is_current]
        latest = max(attempts, key=lambda r: (r.started_at is not None, r.started_at))
        view.extend(current)
        if latest not in current and latest.status != "completed":
            view.append(latest)
    return view


@app.command("list-exports")
@guarded
def list_exports(
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    database_config: DbConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Export tables in the database, with their kind (v1, v2, focus-1.0, focus-1.2), billing periods, row counts and
    cost sums (CUR: line_item_unblended_cost; FOCUS: BilledCost)."""
    from core.backends.factory import create_backend
    from vendors.aws.pipeline import dataset_for

    cfg = load_config(config, backend=backend, database_config=database_config)
    db = create_backend(cfg.database)
    dataset = dataset_for(cfg, db)
    with db:
        tables = db.list_tables(dataset, cost_column=COST_COLUMNS)
    kinds = table_kinds(db, dataset)
    if json_out:
        exports = []
        for t in tables:
            kind = kinds.get(t.table) or None
            cost_column = COST_COLUMNS[1] if kind and kind.startswith("focus") else COST_COLUMN
            exports.append({
                "dataset": t.dataset, "table": t.table, "kind": kind, "cost_column": cost_column,
                "periods": [{"billing_period": p.billing_period, "rows": p.rows, "cost": p.cost,
                             "unblended_cost": p.cost if cost_column == COST_COLUMN else None}
                            for p in t.periods]})
        output.emit_json({"exports": exports})
        return
    _print_tables(tables, kinds)


app.command("verify", help=VERIFY_HELP)(verify)
app.command("show-changes")(show_changes)
