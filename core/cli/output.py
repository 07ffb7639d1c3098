"""The only place that writes to the terminal: results on stdout, diagnostics and progress on stderr."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from core.errors import FinOpsError

# Piped output (cron logs, CI) keeps whole lines rather than Rich's 80-column default.
_PIPE_WIDTH = int(os.environ.get("COLUMNS", "0") or 0) or 200
stdout = Console(width=None if sys.stdout.isatty() else _PIPE_WIDTH)
stderr = Console(stderr=True, width=None if sys.stderr.isatty() else _PIPE_WIDTH)


def setup_logging(*, debug: bool = False, verbose: bool = False) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = RichHandler(console=stderr, show_time=False, show_path=debug, markup=False, rich_tracebacks=debug)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in ("core", "vendors"):
        logging.getLogger(name).setLevel(level)
    if not debug:
        # dlt and botocore are chatty at INFO; their warnings still show.
        for name in ("dlt", "botocore", "urllib3", "s3transfer"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def emit_json(document: Any) -> None:
    """One JSON document on stdout, nothing else (scripts parse it)."""
    stdout.file.write(json.dumps(document, default=_default, indent=2) + "\n")
    stdout.file.flush()


def print_error(error: FinOpsError) -> None:
    # Messages quote config keys such as [database.sql]: never let Rich read them as markup.
    body = escape(error.message) + (f"\n\n[bold]Try:[/bold] {escape(error.hint)}" if error.hint else "")
    stderr.print(Panel(body, title=f"[bold red]{error.title}[/bold red]", title_align="left", border_style="red"))


def table(title: str | None, columns: list[str], rows: list[list[Any]], *, justify_right: set[str] | None = None) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        out.add_column(name, justify="right" if name in (justify_right or set()) else "left")
    for row in rows:
        out.add_row(*["" if v is None else str(v) for v in row])
    return out


def fmt_cost(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def fmt_int(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


class RichProgress:
    """One bar per export on stderr (bytes read), with period, file and row counts; silent when stderr is not
    a terminal (cron, CI) and under ``--json``."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = stderr.is_terminal if enabled is None else enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._counts: dict[str, int] = {}
        self._label = ""

    @contextmanager
    def running(self) -> Iterator[RichProgress]:
        if not self.enabled:
            yield self
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
            console=stderr,
        )
        with self._progress:
            yield self
        self._progress = None

    def _refresh(self, advance: int = 0) -> None:
        if self._progress is None or self._task is None:
            return
        c = self._counts
        text = (f"{self._label} · period {c['period']}/{c['periods']} · files {c['file']}/{c['files']} · "
                f"rows {c['rows']:,}")
        self._progress.update(self._task, description=text, advance=advance)

    def plan(self, periods: int, files: int, size: int) -> None:
        self._counts = {"period": 0, "periods": periods, "file": 0, "files": files, "rows": 0}
        if self._progress is not None and periods:
            self._task = self._progress.add_task("", total=max(size, 1))
            self._refresh()

    def period_started(self, manifest: Any, files: int, size: int) -> None:
        self._label = f"{manifest.export_name} {manifest.billing_period}"
        self._counts["period"] = self._counts.get("period", 0) + 1
        self._refresh()

    def file_done(self, manifest: Any, source: Any, rows: int) -> None:
        self._counts["file"] = self._counts.get("file", 0) + 1
        self._counts["rows"] = self._counts.get("rows", 0) + rows
        self._refresh(advance=source.size)

    def period_finished(self, outcome: Any) -> None:
        self._refresh()


Printer = Callable[[Any], None]
