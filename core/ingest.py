"""The vendor-neutral import loop: lock, recover interrupted runs, plan, replace each period, record, report.

A vendor (``vendors/aws``) finds what its source holds and describes each billing period as a
:class:`PeriodSource` — where its files are, which version it is, and how to name and type the columns of one of
its files. This module does the rest, the same for every vendor and every engine: it decides what needs loading
from the load state, hands the backend one :class:`~core.backends.base.PeriodLoad` per period to replace
atomically, and records every attempt as ``running`` → ``completed`` / ``failed`` / ``interrupted``. A failed
period never stops the others; an unreachable source or destination stops the run with its exit code.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from core.backends.base import FilePlan, LoadRecord, PeriodLoad, QualityRules, SourceFile
from core.errors import DestinationError, FinOpsError, LoadError, SourceError, Terminated, interrupt_in, stop_code
from core.state import LoadStateTracker

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.base import DatabaseBackend, DataReader
    from core.storage import ObjectStore

log = logging.getLogger(__name__)

Status = Literal["loaded", "skipped", "failed", "planned"]


@dataclass(frozen=True)
class Reconciliation:
    """A period's own vendor columns: the sums reconciled before COMMIT, the invoice column (``final`` vs
    ``estimated``; None: the period's status stays unknown) and what a restatement is broken down by."""

    sum_columns: tuple[str, ...] = ()
    invoice_column: str | None = None
    change_keys: tuple[str, ...] = ()
    change_cost: str | None = None


@dataclass(frozen=True)
class PeriodSource:
    """One billing period of one export as its vendor found it."""

    export_name: str
    billing_period: str
    version_id: str
    data_format_version: str
    #: where the period is described (a manifest's URI): stored as the state's ``source_location``
    location: str
    data_keys: tuple[str, ...]
    #: the vendor's naming and typing of one file of this period
    plan: Callable[[SourceFile], FilePlan] = field(compare=False, repr=False)
    #: where the export lives; one export name found in two places is refused, never loaded into one table
    origin: str = ""
    #: this period's columns to reconcile, invoice and change keys (None: the run-wide ones of :class:`Ingest`)
    checks: Reconciliation | None = field(default=None, compare=False)


class ProgressListener:
    """Hooks the CLI uses to draw progress; the defaults do nothing (library use, cron)."""

    def plan(self, periods: int, files: int, size: int) -> None: ...

    def period_started(self, period: PeriodSource, files: int, size: int) -> None: ...

    def file_done(self, period: PeriodSource, source: SourceFile, rows: int) -> None: ...

    def period_finished(self, outcome: PeriodOutcome) -> None: ...


@dataclass
class PeriodOutcome:
    export_name: str
    billing_period: str | None
    version_id: str | None
    status: Status
    table: str | None = None
    rows: int | None = None
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    reason: str | None = None
    #: ``final`` (invoiced) or ``estimated``, where the vendor has an invoice column
    period_status: str | None = None
    #: the period's data-quality findings (``kind``, ``count``, ``message``), as recorded in its state row
    findings: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ImportReport:
    backend: str
    destination: str
    dataset: str
    source: str
    dry_run: bool
    outcomes: list[PeriodOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[PeriodOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = defaultdict(int)
        for outcome in self.outcomes:
            counts[outcome.status] += 1
        return {
            "backend": self.backend,
            "destination": self.destination,
            "dataset": self.dataset,
            "source": self.source,
            "dry_run": self.dry_run,
            "summary": {
                "loaded": counts["loaded"],
                "skipped": counts["skipped"],
                "failed": counts["failed"],
                "planned": counts["planned"],
                "rows": sum(o.rows or 0 for o in self.outcomes if o.status == "loaded"),
            },
            "periods": [asdict(o) for o in self.outcomes],
            "exit_code": self.exit_code,
        }


@dataclass
class Ingest:
    """One run's settings: where from, where to, which vendor's rows."""

    backend: DatabaseBackend
    store: ObjectStore
    dataset: str
    vendor: str
    reset: bool = False
    lock_timeout: float = 900.0
    progress: ProgressListener = field(default_factory=ProgressListener)
    #: the vendor's cost columns, reconciled with the source before each period is committed
    sum_columns: tuple[str, ...] = ()
    #: the vendor's invoice column: a period whose rows carry an invoice id is final, else estimated
    invoice_column: str | None = None
    #: what a restatement changed is kept per these keys, for this cost column (``_finops_restatements``)
    change_keys: tuple[str, ...] = ()
    change_cost: str | None = None
    #: the vendor's data-quality rules (:class:`core.backends.base.QualityRules`), checked on every period before
    #: COMMIT; findings warn, or fail the period with ``quality_strict`` (``[quality] strict``)
    quality: QualityRules | None = None
    quality_strict: bool = False

    def run(self, periods: Iterable[PeriodSource], report: ImportReport, *, dry_run: bool = False) -> ImportReport:
        """Load (or, with ``dry_run``, plan) every period that needs it, export by export.

        Raises:
            SourceError: the source is unreachable or refuses the credentials (exit 3).
            DestinationError: the database is unreachable (exit 4).
            LockTimeoutError: another import of an export held the lock past ``lock_timeout`` (exit 1).
        """
        by_export: dict[str, list[PeriodSource]] = defaultdict(list)
        for period in periods:
            by_export[period.export_name].append(period)
        for export_name, exports in by_export.items():
            refusal = self._ambiguous(export_name, exports, by_export)
            if refusal:
                log.error("%s", refusal)
                report.outcomes.extend(PeriodOutcome(export_name, p.billing_period, p.version_id, "failed",
                                                     error=refusal) for p in exports)
                continue
            if dry_run:
                report.outcomes.extend(self._plan_only(export_name, exports))
                continue
            # Lock first, then connect: an embedded engine admits one writer, and a waiting import must not hold it.
            with self.backend.lock(export_name, timeout=self.lock_timeout), self.backend:
                report.outcomes.extend(self._import_export(export_name, exports))
        report.outcomes.sort(key=lambda o: (o.export_name, o.billing_period or ""))
        return report

    def _ambiguous(
        self, export_name: str, periods: Sequence[PeriodSource], found: dict[str, list[PeriodSource]]
    ) -> str | None:
        """Why this export must not be loaded: found in two places, or its table is another export's (names
        differing only by case or ``-``/``_``). The table would hold one export's rows under the other's state.
        The first name in sort order keeps the table; the state of earlier runs is checked when importing."""
        origins = sorted({p.origin for p in periods if p.origin})
        if len(origins) > 1:
            return (f"Export {export_name!r} is found in {len(origins)} places ({', '.join(origins)}); it is not "
                    "imported. Point --prefix at one of them.")
        table = self.backend.table_name(export_name)
        rivals = sorted(n for n in found if n != export_name and self.backend.table_name(n) == table)
        if rivals and rivals[0] < export_name:
            return (f"Exports {rivals[0]!r} and {export_name!r} would share the table {table}; {export_name!r} is "
                    "not imported. Import them into different datasets, or select one with --export-name.")
        return None

    def _table_owner(self, tracker: LoadStateTracker, export_name: str, table: str) -> str | None:
        """Another export whose rows the table already holds, according to the state."""
        owners = {r.export_name for r in tracker.history() if r.export_name != export_name}
        return next((n for n in sorted(owners) if self.backend.table_name(n) == table), None)

    def _tracker(self) -> LoadStateTracker:
        return LoadStateTracker(self.backend.state_manager(self.dataset), vendor=self.vendor)

    def _plan_only(self, export_name: str, periods: Sequence[PeriodSource]) -> list[PeriodOutcome]:
        tracker = self._tracker()
        current = {r.billing_period: r for r in read_state(self.backend, self.dataset, self.vendor, export_name)
                   if r.is_current}
        table = self.backend.table_name(export_name)
        outcomes = []
        for period in periods:
            loaded = current.get(period.billing_period)
            needed = tracker.needs_load(loaded, period.version_id, reset=self.reset)
            outcomes.append(PeriodOutcome(
                export_name, period.billing_period, period.version_id, "planned" if needed else "skipped",
                table=table, files=len(period.data_keys), bytes=sum(sizes(self.store, period).values()),
                reason=_reason(loaded, period, self.reset) if needed else "already loaded",
            ))
        return outcomes

    def _import_export(self, export_name: str, periods: Sequence[PeriodSource]) -> list[PeriodOutcome]:
        tracker = self._tracker()
        tracker.ensure()
        tracker.recover_interrupted(export_name)
        current = tracker.current(export_name)
        table = self.backend.table_name(export_name)
        owner = self._table_owner(tracker, export_name, table)
        if owner is not None:
            error = (f"The table {table} already holds export {owner!r}; {export_name!r} maps to the same table and "
                     "is not imported. Import it into a different dataset.")
            log.error("%s", error)
            return [PeriodOutcome(export_name, p.billing_period, p.version_id, "failed", table=table, error=error)
                    for p in periods]
        todo = [p for p in periods if tracker.needs_load(current.get(p.billing_period), p.version_id,
                                                         reset=self.reset)]
        file_sizes = {p: sizes(self.store, p) for p in todo}
        self.progress.plan(len(todo), sum(len(p.data_keys) for p in todo),
                           sum(sum(s.values()) for s in file_sizes.values()))
        outcomes = [
            PeriodOutcome(export_name, p.billing_period, p.version_id, "skipped", table=table,
                          rows=current[p.billing_period].row_count, files=len(p.data_keys), reason="already loaded")
            for p in periods if p not in todo
        ]
        reader = self.backend.data_reader(self.store) if todo else None
        for period in todo:
            restated = current.get(period.billing_period)
            if restated is not None and restated.period_status == "final" and restated.version_id != period.version_id:
                log.warning("%s %s was FINAL (invoice %s) and has been restated by the provider: a closed invoice "
                            "changed. Version %s replaces %s.", export_name, period.billing_period,
                            restated.invoice_ids, period.version_id, restated.version_id)
            outcome = self._load_period(tracker, reader, table, period, file_sizes[period],  # type: ignore[arg-type]
                                        replaces=restated.version_id if restated else None)
            if restated is not None and restated.period_status == "final" and outcome.status == "loaded":
                closed = f"a final month (invoice {restated.invoice_ids})"
                outcome.reason = f"{outcome.reason}; {closed}" if outcome.reason else f"restated {closed}"
            self.progress.period_finished(outcome)
            outcomes.append(outcome)
        return outcomes

    def _load_period(
        self, tracker: LoadStateTracker, reader: DataReader, table: str, period: PeriodSource,
        file_sizes: dict[str, int], *, replaces: str | None = None,
    ) -> PeriodOutcome:
        started = time.perf_counter()
        size = sum(file_sizes.values())
        record = tracker.begin(LoadRecord(
            vendor=self.vendor, export_name=period.export_name, billing_period=period.billing_period,
            version_id=period.version_id, data_format_version=period.data_format_version,
            source_location=period.location, file_count=len(period.data_keys),
        ))
        self.progress.period_started(period, len(period.data_keys), size)
        log.info("Loading %s %s version %s: %d file(s), %d bytes", period.export_name, period.billing_period,
                 period.version_id, len(period.data_keys), size)
        outcome = PeriodOutcome(period.export_name, period.billing_period, period.version_id, "loaded",
                                table=table, files=len(period.data_keys), bytes=size)
        load: PeriodLoad | None = None
        try:
            plans = [period.plan(reader.describe(key, size=file_sizes.get(key, 0))) for key in period.data_keys]
            checks = period.checks or Reconciliation(self.sum_columns, self.invoice_column, self.change_keys,
                                                     self.change_cost)
            load = PeriodLoad(
                dataset=self.dataset, table=table, billing_period=period.billing_period, files=plans,
                record=record, reader=reader, sum_columns=checks.sum_columns, invoice_column=checks.invoice_column,
                change_keys=checks.change_keys, change_cost=checks.change_cost, replaces=replaces,
                on_file_done=lambda source, rows: self.progress.file_done(period, source, rows),
            )
            load.quality, load.quality_strict = self.quality, self.quality_strict
            outcome.rows = self.backend.replace_period(load)
            outcome.period_status = load.completed.period_status if load.completed else None
            _warn_findings(outcome, load.findings)
            if load.changes is not None and load.changes.rows:
                from core.backends.sqlengine.changes import summary

                outcome.reason = f"restated: {summary(load.changes)}"
                log.warning("%s %s restated: %s", period.export_name, period.billing_period, summary(load.changes))
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: the data is untouched; say so in the state
            why = "terminated (SIGTERM)" if stop_code(stop) == Terminated.exit_code else "stopped by the user (Ctrl-C)"
            _record(tracker.interrupted, record, why)
            raise
        except (SourceError, DestinationError) as exc:
            _record(tracker.fail, record, exc.message)
            raise
        except FinOpsError as exc:
            outcome.status, outcome.error = "failed", exc.message
            found = _warn_findings(outcome, load.findings if load is not None else [])
            _record(tracker.fail, replace(record, quality_findings=found) if found else record, exc.message)
            log.error("%s %s failed: %s", period.export_name, period.billing_period, exc.message)
        except Exception as exc:  # a bug, or a signal a library wrapped: never leave the attempt 'running'
            stop = interrupt_in(exc)
            if stop is not None:
                why = "terminated (SIGTERM)" if stop_code(stop) == Terminated.exit_code else "stopped by the user"
                _record(tracker.interrupted, record, why)
                raise stop from None
            _record(tracker.fail, record, f"Unexpected error: {type(exc).__name__}: {exc}")
            raise
        outcome.seconds = round(time.perf_counter() - started, 3)
        return outcome


def _warn_findings(outcome: PeriodOutcome, findings: Sequence[Any]) -> str | None:
    """One warning per data-quality finding; the findings go into the report. Returns them as the state's JSON."""
    if not findings:
        return None
    from core.backends.sqlengine.quality import to_json

    outcome.findings = [f.to_dict() for f in findings]
    for finding in findings:
        log.warning("%s %s: %s", outcome.export_name, outcome.billing_period, finding.message)
    return to_json(findings)


def sizes(store: ObjectStore, period: PeriodSource) -> dict[str, int]:
    """Object sizes of a period's files (one listing of each folder they share), for progress and the plan."""
    folders = {key.rsplit("/", 1)[0] + "/" if "/" in key else "" for key in period.data_keys}
    found: dict[str, int] = {}
    wanted = set(period.data_keys)
    for folder in folders:
        for info in store.list(folder):
            if info.key in wanted:
                found[info.key] = info.size
    return found


def read_state(
    backend: DatabaseBackend, dataset: str, vendor: str, export_name: str | None = None,
    billing_period: str | None = None,
) -> list[LoadRecord]:
    """The load history as stored, for commands that only look (dry run, ``list-manifests``, ``show-state``).

    Creates nothing: no database file (an embedded engine's that does not exist yet), no schema, no state table.

    Raises:
        DestinationError: the database is unreachable (a missing state table just means nothing is loaded).
    """
    if not backend.exists():
        return []
    tracker = LoadStateTracker(backend.state_manager(dataset), vendor=vendor)
    with backend:
        try:
            return tracker.history(export_name, billing_period)
        except LoadError:
            return []  # no state table yet


def _reason(loaded: LoadRecord | None, period: PeriodSource, reset: bool) -> str:
    if reset:
        return "reset requested"
    if loaded is None:
        return "not loaded yet"
    if loaded.version_id != period.version_id:
        return f"new version (loaded: {loaded.version_id})"
    return f"previous attempt {loaded.status}"


@contextmanager
def _signals_held() -> Iterator[None]:
    """While an attempt's end is written, a second Ctrl-C or SIGTERM (an impatient user, a wrapper that signals
    twice) waits instead of breaking the write: the process is on its way out already, and the row must not stay
    ``running``."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def _record(write: Callable[[LoadRecord, str], Any], record: LoadRecord, why: str) -> None:
    """Write an attempt's end; the database itself may be what failed, which must not hide the first error."""
    try:
        with _signals_held():
            write(record, why)
    except (FinOpsError, KeyboardInterrupt) as exc:
        reason = exc.message if isinstance(exc, FinOpsError) else "interrupted again"
        log.error("Could not record the end of %s %s: %s", record.export_name, record.billing_period, reason)
