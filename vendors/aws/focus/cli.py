"""``finops aws focus [--check]`` and the refresh ``import-cur`` runs after it loaded a period (mounted on the
``aws`` sub-app by :mod:`vendors.aws.cli`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from core.cli import output
from core.cli.common import BackendOpt, ConfigOpt, DbConfigOpt, DebugOpt, JsonOpt, VerboseOpt, load_config
from core.errors import FinOpsError

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.base import DatabaseBackend
    from core.config import Config

log = logging.getLogger(__name__)

#: the cross-process lock around a refresh: imports of two exports that finish together replace the views in turn
LOCK = "(focus relations)"

FOCUS_HELP = """(Re)create the FOCUS 1.2 relations: a view <table>_focus over each CUR export and focus, the union of the selected exports (\\[focus] exports, default every export) with no billing period of a billing account counted twice (FOCUS 1.2 > FOCUS 1.0 > CUR 2.0 > CUR v1).

With --check, then test them against FOCUS 1.2: the column list and kinds, mandatory columns not null, the allowed values of ChargeCategory, ChargeClass, PricingCategory, CommitmentDiscountStatus and ChargeFrequency, EffectiveCost >= 0 outside credits and corrections, and SUM(BilledCost) per period against the source's sum recorded at import. Exit 0 when clean, 1 on any failure, 2 for an unknown export in \\[focus] exports.

\b
Examples:
  finops aws focus --config examples/config-demo.toml
  finops aws focus --check --json | jq '.check.failures'
  OPEN_FINOPS_FOCUS_EXPORTS=cur2-daily,focus-export finops aws focus
"""


def focus(
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    database_config: DbConfigOpt = None,
    check: Annotated[bool, typer.Option("--check", help="Then test the relations against FOCUS 1.2.")] = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    from core.backends.factory import create_backend
    from vendors.aws.focus.check import check as run_check
    from vendors.aws.focus.relations import FocusReport, refresh
    from vendors.aws.pipeline import dataset_for, read_state

    cfg = load_config(config, backend=backend, database_config=database_config)
    db = create_backend(cfg.database)
    dataset = dataset_for(cfg, db)
    checked = None
    state = read_state(db, dataset)
    report = FocusReport(dataset, None)
    if db.exists():  # an embedded database not written yet stays unwritten
        with db.lock(LOCK, timeout=cfg.project.lock_timeout), db:
            report = refresh(db, dataset, cfg.focus, state=state)
            if check and report.union:
                checked = run_check(db, dataset, report.members, state)
    code = 1 if checked is not None and not checked.ok else 0
    if json_out:
        output.emit_json({**report.to_dict(), "check": checked.to_dict() if checked else None, "exit_code": code})
        raise typer.Exit(code)
    if not report.union:
        output.stderr.print(f"No CUR or FOCUS export table in {dataset}: nothing to create.")
        raise typer.Exit(0)
    output.stdout.print(output.table(
        f"FOCUS relations in {dataset}: {', '.join(report.views)}",
        ["export", "kind", "relation", "months included", "left out", "partly left out", "NULL columns"],
        [[m.export_name, m.kind, m.relation, _months(m.months_included), _months(m.months_left_out),
          _months(m.months_partly_left_out), str(len(m.missing)) if m.native else ""] for m in report.members],
    ))
    if report.not_selected:
        output.stdout.print(f"Not selected by \\[focus] exports: {', '.join(report.not_selected)}")
    if checked is not None:
        _print_check(checked)
    raise typer.Exit(code)


def _months(months: list[str]) -> str:
    if len(months) > 6:
        return f"{months[0]} … {months[-1]} ({len(months)})"
    return ", ".join(months) or "-"


def _print_check(checked: Any) -> None:
    for note in checked.notes:
        output.stderr.print(f"[yellow]note[/yellow] {escape(note)}")
    if checked.ok:
        output.stdout.print(f"FOCUS check: {len(checked.rules)} rules on {', '.join(checked.relations)}: all pass.")
        return
    output.stdout.print(output.table(
        "FOCUS check: failures", ["rule", "export / relation", "rows", "sample"],
        [[f.rule, f.relation, output.fmt_int(f.count), escape(str(f.sample))] for f in checked.failures],
        justify_right={"rows"},
    ))
    for failure in checked.failures:
        output.stderr.print(f"[red]{escape(failure.rule)}[/red]: {escape(failure.message)}")


def refresh_after_import(cfg: Config, db: DatabaseBackend, report: Any) -> str | None:
    """After an import that loaded a period: recreate the FOCUS relations. The data is loaded whatever happens
    here; a failure is returned (the import then exits 1: the relations are stale) instead of raised. An export
    ``[focus] exports`` names that is not imported yet is skipped with a warning, not an error."""
    from vendors.aws.focus.relations import refresh
    from vendors.aws.pipeline import dataset_for, read_state

    if report.dry_run or not any(o.status == "loaded" for o in report.outcomes):
        return None
    dataset = dataset_for(cfg, db)
    try:
        state = read_state(db, dataset)
        with db.lock(LOCK, timeout=cfg.project.lock_timeout), db:
            refresh(db, dataset, cfg.focus, state=state, count_months=False, strict=False)
    except FinOpsError as exc:
        log.debug("FOCUS refresh failed", exc_info=True)
        return exc.message
    return None
