"""``finops aws import-cur``: every billing period whose current manifest version is not loaded yet.

The pipeline knows CUR (manifests, names, types) and nothing about engines: it plans each period, then hands the
backend a :class:`~core.backends.base.PeriodLoad` to replace atomically. Data flows as the engine's own scan or as
Arrow record batches — never a Python object per row.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from core.backends.base import FilePlan, LoadRecord, PeriodLoad, SourceFile
from core.backends.sql_names import table_name_for_export
from core.errors import ConfigError, DestinationError, FinOpsError, LoadError, SourceError
from core.state import LoadStateTracker
from core.storage import LocalStore, ObjectStore, S3Store
from vendors.aws.columns import column_specs
from vendors.aws.manifest import BillingManifest, ManifestScan, discover_exports, find_manifests

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.base import DatabaseBackend
    from core.config import AwsSettings, Config

log = logging.getLogger(__name__)

VENDOR = "aws"
Status = Literal["loaded", "skipped", "failed", "planned"]


class ProgressListener:
    """Hooks the CLI uses to draw progress; the defaults do nothing (library use, cron)."""

    def plan(self, periods: int, files: int, size: int) -> None: ...

    def period_started(self, manifest: BillingManifest, files: int, size: int) -> None: ...

    def file_done(self, manifest: BillingManifest, source: SourceFile, rows: int) -> None: ...

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


def open_store(aws: AwsSettings) -> ObjectStore:
    """The source the settings point at: ``source_dir`` (a local copy of the bucket) or the S3 bucket.

    Raises:
        ConfigError: neither is set.
    """
    if aws.source_dir is not None:
        return LocalStore(aws.source_dir)
    if not aws.bucket:
        raise ConfigError(
            "No billing source: set --bucket (or OPEN_FINOPS_AWS_BUCKET, or [aws] bucket), or --source-dir."
        )
    return S3Store(
        aws.bucket,
        region=aws.region,
        endpoint_url=aws.endpoint_url,
        access_key_id=aws.access_key_id,
        secret_access_key=aws.secret_access_key.get_secret_value() if aws.secret_access_key else None,
        profile=aws.profile,
    )


def scan_source(config: Config, store: ObjectStore) -> ManifestScan:
    """Manifests under ``[aws] prefix``; a named export is looked up at ``<prefix>/<export>/`` first, then at
    any depth below the prefix (exact name match only, so ``prod`` never picks up ``prod-eu``).

    Raises:
        ConfigError: an explicitly named export exists nowhere under the prefix.
    """
    scan = _scan(config, store)
    where = f"{store.describe()}/{config.aws.prefix}".rstrip("/")
    log.info("Found %d manifest(s) and %d problem(s) in %s", len(scan.manifests), len(scan.problems), where)
    return scan


def _scan(config: Config, store: ObjectStore) -> ManifestScan:
    aws = config.aws
    filters = {"cur_version": aws.cur_version, "start": aws.start_date, "end": aws.end_date}
    scan = find_manifests(store, prefix=aws.prefix, export_name=aws.export_name, **filters)
    if aws.export_name is None or scan.manifests or scan.problems:
        return scan
    refs = discover_exports(store, aws.prefix)
    matches = [ref for ref in refs if ref.export_name == aws.export_name]
    if not matches:
        found = ", ".join(sorted({ref.export_name for ref in refs})) or "none"
        where = f"{store.describe()}/{aws.prefix}".rstrip("/")
        raise ConfigError(f"No export named {aws.export_name!r} under {where} (exports found: {found}).")
    for ref in matches:
        more = find_manifests(store, prefix=ref.prefix, export_name=ref.export_name, **filters)
        scan.manifests.extend(more.manifests)
        scan.problems.extend(more.problems)
    scan.manifests.sort(key=lambda m: (m.export_name, m.billing_period))
    return scan


def dataset_for(config: Config, backend: DatabaseBackend) -> str:
    """``[aws] dataset_name``, unless the backend's own ``schema``/``dataset`` key is set."""
    return backend.dataset(config.aws.dataset_name)


def run_aws_pipeline(
    config: Config,
    *,
    backend: DatabaseBackend | None = None,
    store: ObjectStore | None = None,
    dry_run: bool = False,
    progress: ProgressListener | None = None,
) -> ImportReport:
    """Import every period whose current version is not loaded (all of them with ``config.aws.reset``).

    A failed period is recorded and reported; the others still load (``report.exit_code`` is then 1).

    Raises:
        ConfigError: no source configured, or bad filters.
        SourceError: the source is unreachable or refuses the credentials.
        DestinationError: the database is unreachable.
    """
    from core.backends.factory import create_backend

    progress = progress or ProgressListener()
    store = store or open_store(config.aws)
    backend = backend or create_backend(config.database)
    dataset = dataset_for(config, backend)
    scan = scan_source(config, store)
    report = ImportReport(
        backend=backend.name,
        destination=backend.config.describe(),
        dataset=dataset,
        source=store.describe(),
        dry_run=dry_run,
    )
    for problem in scan.problems:
        log.error("%s", problem.error.message)
        report.outcomes.append(
            PeriodOutcome(problem.export_name, problem.billing_period, None, "failed", error=problem.error.message)
        )
    by_export: dict[str, list[BillingManifest]] = defaultdict(list)
    for manifest in scan.manifests:
        by_export[manifest.export_name].append(manifest)
    if not by_export:
        log.warning("No manifests found in %s under prefix %r", store.describe(), config.aws.prefix)

    for export_name, manifests in by_export.items():
        if dry_run:
            report.outcomes.extend(_plan_only(backend, dataset, export_name, manifests, config.aws.reset, store))
            continue
        # Lock first, then connect: an embedded engine admits one writer, and a waiting import must not hold it.
        with backend.lock(export_name, timeout=config.project.lock_timeout), backend:
            report.outcomes.extend(
                _import_export(backend, dataset, store, export_name, manifests, config.aws.reset, progress)
            )
    report.outcomes.sort(key=lambda o: (o.export_name, o.billing_period or ""))
    return report


def _sizes(store: ObjectStore, manifest: BillingManifest) -> dict[str, int]:
    """Object sizes of a period's files (one listing of the folder they share), for progress and the plan."""
    folders = {key.rsplit("/", 1)[0] + "/" if "/" in key else "" for key in manifest.data_keys}
    sizes: dict[str, int] = {}
    wanted = set(manifest.data_keys)
    for folder in folders:
        for info in store.list(folder):
            if info.key in wanted:
                sizes[info.key] = info.size
    return sizes


def _plan_only(
    backend: DatabaseBackend,
    dataset: str,
    export_name: str,
    manifests: Iterable[BillingManifest],
    reset: bool,
    store: ObjectStore,
) -> list[PeriodOutcome]:
    tracker = LoadStateTracker(backend.state_manager(dataset), vendor=VENDOR)
    current = {r.billing_period: r for r in read_state(backend, dataset, export_name) if r.is_current}
    table = table_name_for_export(export_name, backend.max_identifier_length)
    outcomes = []
    for manifest in manifests:
        loaded = current.get(manifest.billing_period)
        needed = tracker.needs_load(loaded, manifest.version_id, reset=reset)
        size = sum(_sizes(store, manifest).values())
        outcomes.append(
            PeriodOutcome(
                export_name, manifest.billing_period, manifest.version_id, "planned" if needed else "skipped",
                table=table, files=len(manifest.data_keys), bytes=size,
                reason=_reason(loaded, manifest, reset) if needed else "already loaded",
            )
        )
    return outcomes


def read_state(
    backend: DatabaseBackend, dataset: str, export_name: str | None = None, billing_period: str | None = None
) -> list[LoadRecord]:
    """The load history as stored, for commands that only look (dry run, ``list-manifests``, ``show-state``).

    Creates nothing: no database file (an embedded engine's that does not exist yet), no schema, no state table.

    Raises:
        DestinationError: the database is unreachable (a missing state table just means nothing is loaded).
    """
    if not backend.exists():
        return []
    tracker = LoadStateTracker(backend.state_manager(dataset), vendor=VENDOR)
    with backend:
        try:
            return tracker.history(export_name, billing_period)
        except LoadError:
            return []  # no state table yet


def _reason(loaded: LoadRecord | None, manifest: BillingManifest, reset: bool) -> str:
    if reset:
        return "reset requested"
    if loaded is None:
        return "not loaded yet"
    if loaded.version_id != manifest.version_id:
        return f"new version (loaded: {loaded.version_id})"
    return f"previous attempt {loaded.status}"


def _import_export(
    backend: DatabaseBackend,
    dataset: str,
    store: ObjectStore,
    export_name: str,
    manifests: list[BillingManifest],
    reset: bool,
    progress: ProgressListener,
) -> list[PeriodOutcome]:
    tracker = LoadStateTracker(backend.state_manager(dataset), vendor=VENDOR)
    tracker.ensure()
    tracker.recover_interrupted(export_name)
    current = tracker.current(export_name)
    table = table_name_for_export(export_name, backend.max_identifier_length)
    todo = [m for m in manifests if tracker.needs_load(current.get(m.billing_period), m.version_id, reset=reset)]
    sizes = {m.manifest_key: _sizes(store, m) for m in todo}
    progress.plan(len(todo), sum(len(m.data_keys) for m in todo), sum(sum(s.values()) for s in sizes.values()))
    outcomes = [
        PeriodOutcome(export_name, m.billing_period, m.version_id, "skipped", table=table,
                      rows=current[m.billing_period].row_count, files=len(m.data_keys), reason="already loaded")
        for m in manifests
        if m not in todo
    ]
    reader = backend.data_reader(store) if todo else None
    for manifest in todo:
        outcome = _load_period(backend, tracker, reader, dataset, table, store, manifest, sizes[manifest.manifest_key], progress)
        progress.period_finished(outcome)
        outcomes.append(outcome)
    return outcomes


def _load_period(
    backend: DatabaseBackend,
    tracker: LoadStateTracker,
    reader: Any,
    dataset: str,
    table: str,
    store: ObjectStore,
    manifest: BillingManifest,
    sizes: dict[str, int],
    progress: ProgressListener,
) -> PeriodOutcome:
    started = time.perf_counter()
    size = sum(sizes.values())
    record = tracker.begin(
        LoadRecord(
            vendor=VENDOR,
            export_name=manifest.export_name,
            billing_period=manifest.billing_period,
            version_id=manifest.version_id,
            data_format_version=manifest.cur_version,
            source_location=store.uri(manifest.manifest_key),
            file_count=len(manifest.data_keys),
        )
    )
    progress.period_started(manifest, len(manifest.data_keys), size)
    log.info("Loading %s %s version %s: %d file(s), %d bytes", manifest.export_name, manifest.billing_period,
             manifest.version_id, len(manifest.data_keys), size)
    outcome = PeriodOutcome(
        manifest.export_name, manifest.billing_period, manifest.version_id, "loaded",
        table=table, files=len(manifest.data_keys), bytes=size,
    )
    try:
        manifest_types = {column.source_name: column.type for column in manifest.columns}
        plans = []
        for key in manifest.data_keys:
            source = reader.describe(key, size=sizes.get(key, 0))
            plans.append(
                FilePlan(source, column_specs(source, manifest_types), (("billing_period", manifest.billing_period),))
            )
        outcome.rows = backend.replace_period(
            PeriodLoad(
                dataset=dataset,
                table=table,
                billing_period=manifest.billing_period,
                files=plans,
                record=record,
                reader=reader,
                on_file_done=lambda source, rows: progress.file_done(manifest, source, rows),
            )
        )
    except (SourceError, DestinationError) as exc:
        _record_failure(tracker, record, exc.message)
        raise
    except FinOpsError as exc:
        outcome.status, outcome.error = "failed", exc.message
        _record_failure(tracker, record, exc.message)
        log.error("%s %s failed: %s", manifest.export_name, manifest.billing_period, exc.message)
    outcome.seconds = round(time.perf_counter() - started, 3)
    return outcome


def _record_failure(tracker: LoadStateTracker, record: LoadRecord, message: str) -> None:
    try:
        tracker.fail(record, message)
    except FinOpsError as exc:  # the database itself may be what failed
        log.error("Could not record the failure of %s %s: %s", record.export_name, record.billing_period, exc.message)
