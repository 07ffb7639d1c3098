"""``finops``: the root Typer app. Vendors mount their own sub-app; core commands live here."""

from __future__ import annotations

import os

# dlt phones home at exit unless told not to; with no network that costs ~2 minutes per run. Users may still
# opt in by setting the variable themselves.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

from typing import Annotated, Any  # noqa: E402

import typer  # noqa: E402

from core.cli import output  # noqa: E402
from core.cli.common import (  # noqa: E402
    BackendOpt,
    ConfigOpt,
    DbConfigOpt,
    DebugOpt,
    JsonOpt,
    guarded,
    load_config,
    set_debug,
)

HELP = """Import AWS billing exports (CUR v1 and CUR 2.0) into the database you already run.

\b
Examples:
  finops aws import-cur --config examples/config-demo.toml
  finops aws import-cur --backend postgresql --start-date 2024-01
  OPEN_FINOPS_DATABASE_BACKEND=duckdb finops aws show-state --json
  finops config show

\b
Cron (nightly, quiet unless something fails; exit code 1 = a period failed):
  15 6 * * *  cd /opt/finops && ./finops.sh aws import-cur >>/var/log/finops.log 2>&1

Precedence: command-line flag > environment (OPEN_FINOPS_…) > config.toml > default.
Exit codes: 0 ok · 1 a load failed · 2 usage/config · 3 source unreachable · 4 database unreachable.
"""

app = typer.Typer(
    name="finops",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Show the resolved configuration.", no_args_is_help=True)
backends_app = typer.Typer(help="Which backends are installed, and whether the configured one works.", no_args_is_help=True)
db_app = typer.Typer(help="Move data between backends.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(backends_app, name="backends")
app.add_typer(db_app, name="db")


@app.callback()
def root(debug: DebugOpt = False) -> None:
    set_debug(debug)


@config_app.command("show")
@guarded
def config_show(config: ConfigOpt = None, backend: BackendOpt = None, database_config: DbConfigOpt = None,
                json_out: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Every setting, its value and where it came from (flag, env, file, default); secrets masked."""
    cfg = load_config(config, backend=backend, database_config=database_config)
    settings = cfg.settings()
    if json_out:
        output.emit_json(
            {"config_file": str(cfg.path) if cfg.path else None,
             "settings": [{"key": s.path, "value": s.value, "source": s.source, "secret": s.secret} for s in settings]}
        )
        return
    output.stdout.print(f"Config file: {cfg.path or '(none: defaults and environment only)'}")
    output.stdout.print(
        output.table(None, ["key", "value", "source"], [[s.path, s.value, s.source] for s in settings])
    )


@backends_app.command("list")
@guarded
def backends_list(json_out: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Registered backends, whether their driver is installed, and the pip line when it is not."""
    from core.backends.factory import available

    rows = available()
    if json_out:
        output.emit_json({"backends": rows})
        return
    output.stdout.print(
        output.table(
            None,
            ["backend", "aliases", "installed", "description"],
            [[r["name"], ", ".join(r["aliases"]), "yes" if r["installed"] else f"no — {r['install']}", r["description"]]
             for r in rows],
        )
    )


@backends_app.command("check")
@guarded
def backends_check(config: ConfigOpt = None, backend: BackendOpt = None, database_config: DbConfigOpt = None,
                   json_out: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Connect to the configured backend, prove it may create a schema and a table, report latency (exit 4 if not)."""
    from core.backends.factory import create_backend

    cfg = load_config(config, backend=backend, database_config=database_config)
    target = create_backend(cfg.database)
    result = target.check(target.dataset(cfg.aws.dataset_name))
    if json_out:
        output.emit_json(result.__dict__)
    elif result.ok:
        output.stdout.print(f"[green]ok[/green] {result.backend} at {result.target}: {result.latency_ms} ms; {result.details}")
    else:
        output.stderr.print(f"[red]failed[/red] {result.backend} at {result.target}: {result.error}")
    if not result.ok:
        raise typer.Exit(4)


COPY_HELP = """Copy export tables and their load state from one backend to another, verified.

Each billing period streams from the source as Arrow batches and replaces the same period in the destination atomically, carrying its version and state; row counts and cost sums are compared afterwards. Periods already copied are skipped, so an interrupted copy resumes when run again.

\b
Examples:
  finops db copy --from duckdb --to postgresql
  finops db copy --from duckdb --to postgresql --export-name cur2-daily --json
  finops db copy --from duckdb --to sql --from-config database_path=./old.duckdb
  finops db copy --from duckdb --to duckdb --to-config database_path=./copy.duckdb
"""


@db_app.command("copy", help=COPY_HELP)
@guarded
def db_copy(
    source: Annotated[str, typer.Option("--from", help="Backend to copy from (configured in config.toml/env).")],
    destination: Annotated[str, typer.Option("--to", help="Backend to copy into.")],
    export_name: Annotated[str | None, typer.Option("--export-name", help="Only this export.", show_default=False)] = None,
    config: ConfigOpt = None,
    database_config: Annotated[
        list[str] | None,
        typer.Option("--from-config", "-D", metavar="KEY=VALUE",
                     help="A setting of the --from backend, e.g. database_path=./old.duckdb (repeatable).",
                     show_default=False),
    ] = None,
    to_config: Annotated[
        list[str] | None,
        typer.Option("--to-config", metavar="KEY=VALUE", help="A setting of the --to backend (repeatable).",
                     show_default=False),
    ] = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    from core.backends.factory import canonical_name, create_backend
    from core.cli.common import backend_overrides
    from core.config import Config
    from core.copy import copy_exports
    from vendors.aws.columns import COST_COLUMNS  # the tables copied are AWS exports (CUR or FOCUS)

    src_name, dst_name = canonical_name(source), canonical_name(destination)
    database: dict[str, Any] = {src_name: backend_overrides(src_name, database_config, "--from-config")}
    if dst_name != src_name:
        database[dst_name] = backend_overrides(dst_name, to_config, "--to-config")
    cfg = Config.load(config, overrides={"database": database})
    src = create_backend(cfg.database, name=src_name)
    dst = create_backend(cfg.database, name=dst_name)
    if dst_name == src_name and to_config:  # e.g. one DuckDB file into another
        settings = dst.config.model_copy(update=backend_overrides(dst_name, to_config, "--to-config"))
        dst = type(dst)(type(dst.config).model_validate(settings.model_dump()), data_dir=cfg.project.data_dir)
    report = copy_exports(
        src, dst,
        source_dataset=src.dataset(cfg.aws.dataset_name),
        destination_dataset=dst.dataset(cfg.aws.dataset_name),
        export_name=export_name or cfg.aws.export_name,
        cost_column=COST_COLUMNS,
        lock_timeout=cfg.project.lock_timeout,
    )
    if json_out:
        output.emit_json(report.to_dict())
    else:
        output.stdout.print(output.table(
            f"Copy {src_name} {report.source} → {dst_name} {report.destination}",
            ["table", "period", "version", "status", "rows", "source cost", "destination cost"],
            [[o.table, o.billing_period, o.version_id, o.status, output.fmt_int(o.rows), output.fmt_cost(o.source_cost),
              output.fmt_cost(o.destination_cost)] for o in report.outcomes],
            justify_right={"rows", "source cost", "destination cost"},
        ))
        for o in report.outcomes:
            if o.error:
                output.stderr.print(f"[red]failed[/red] {o.table} {o.billing_period}: {o.error}")
    raise typer.Exit(report.exit_code)


def _mount_vendors() -> None:
    from vendors.aws.cli import app as aws_app

    app.add_typer(aws_app, name="aws")


_mount_vendors()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
