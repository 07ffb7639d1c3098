"""``finops aws import-cur``: every billing period whose current manifest version is not loaded yet.

This module knows CUR — where manifests are, what they say, how CUR columns are named and typed — and turns each
current manifest into a :class:`~core.ingest.PeriodSource`. The loop that plans, replaces each period atomically
and records the load state is vendor-neutral and lives in :mod:`core.ingest`. Data flows as the engine's own
scan or as Arrow record batches — never a Python object per row.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from core.backends.base import FilePlan, LoadRecord, SourceFile
from core.errors import ConfigError, LoadError, ManifestError
from core.ingest import ImportReport, Ingest, PeriodOutcome, PeriodSource, ProgressListener
from core.ingest import read_state as _read_state
from core.storage import LocalStore, ObjectStore, S3Store
from vendors.aws.columns import (
    CHANGE_KEYS,
    COST_COLUMN,
    CUR_CHECKS,
    INVOICE_COLUMN,
    QUALITY_RULES,
    RECONCILED_COLUMNS,
    column_specs,
    normalise_name,
)
from vendors.aws.focus import native
from vendors.aws.manifest import BillingManifest, ManifestProblem, ManifestScan, discover_exports, find_manifests

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.base import DatabaseBackend
    from core.config import AwsSettings, Config

__all__ = ["ImportReport", "PeriodOutcome", "ProgressListener", "dataset_for", "open_store", "read_state",
           "run_aws_pipeline", "scan_source"]

log = logging.getLogger(__name__)

VENDOR = "aws"


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
    scan = _one_kind_per_export(_decide_kinds(_scan(config, store), store))
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


def _decide_kinds(scan: ManifestScan, store: ObjectStore) -> ManifestScan:
    """A CUR 2.0 layout whose manifest lists no columns is CUR 2.0 or FOCUS by its first data file's columns."""
    if all(m.kind is not None for m in scan.manifests):
        return scan
    from core.backends.readers import Boto3DataReader  # pyarrow: only when a header must be read

    reader = Boto3DataReader(store)
    decided = []
    for manifest in scan.manifests:
        if manifest.kind is None:
            names: list[str] = []
            if manifest.data_keys:
                try:
                    names = [c.name for c in reader.describe(manifest.data_keys[0]).columns]
                except (LoadError, OSError) as exc:  # the load reads the same file and fails the period by name
                    log.debug("Could not read the columns of %s: %s", manifest.data_keys[0], exc)
            manifest = replace(manifest, kind=native.focus_version(names) or manifest.cur_version)
        decided.append(manifest)
    scan.manifests = decided
    return scan


def _one_kind_per_export(scan: ManifestScan) -> ManifestScan:
    """An export whose periods are CUR and FOCUS at once (a FOCUS export created under a CUR export's name) is
    refused: one table cannot hold both namings."""
    families: dict[tuple[str, str], set[bool]] = {}
    for manifest in scan.manifests:
        families.setdefault((manifest.parent, manifest.export_name), set()).add(native.is_focus(manifest.kind))
    mixed = {key for key, seen in families.items() if len(seen) > 1}
    if not mixed:
        return scan
    keep = []
    for manifest in scan.manifests:
        if (manifest.parent, manifest.export_name) not in mixed:
            keep.append(manifest)
            continue
        error = ManifestError(manifest.manifest_key, f"export {manifest.export_name!r} holds both CUR and FOCUS "
                                                     f"periods (this one is {manifest.kind}); it is not imported")
        scan.problems.append(ManifestProblem(manifest.export_name, manifest.billing_period, manifest.manifest_key,
                                             error))
    scan.manifests = keep
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

    store = store or open_store(config.aws)
    backend = backend or create_backend(config.database)
    dataset = dataset_for(config, backend)
    scan = scan_source(config, store)
    report = ImportReport(backend=backend.name, destination=backend.config.describe(), dataset=dataset,
                          source=store.describe(), dry_run=dry_run)
    for problem in scan.problems:
        log.error("%s", problem.error.message)
        report.outcomes.append(
            PeriodOutcome(problem.export_name, problem.billing_period, None, "failed", error=problem.error.message)
        )
    if not scan.manifests:
        log.warning("No manifests found in %s under prefix %r", store.describe(), config.aws.prefix)
    ingest = Ingest(backend, store, dataset, VENDOR, reset=config.aws.reset, lock_timeout=config.project.lock_timeout,
                    progress=progress or ProgressListener(), sum_columns=RECONCILED_COLUMNS,
                    invoice_column=INVOICE_COLUMN, change_keys=CHANGE_KEYS, change_cost=COST_COLUMN,
                    quality=QUALITY_RULES, quality_strict=config.quality.strict)
    return ingest.run((period_source(m, store) for m in scan.manifests), report, dry_run=dry_run)


def period_source(manifest: BillingManifest, store: ObjectStore) -> PeriodSource:
    """One manifest as the vendor-neutral loop sees it: its files, its version, and how to plan each file."""
    kind = manifest.kind or manifest.cur_version
    return PeriodSource(
        export_name=manifest.export_name, billing_period=manifest.billing_period, version_id=manifest.version_id,
        data_format_version=kind, location=store.uri(manifest.manifest_key),
        data_keys=tuple(manifest.data_keys), plan=partial(_plan_file, manifest),
        origin=store.uri(f"{manifest.parent}/{manifest.export_name}".lstrip("/")),
        checks=native.CHECKS.get(kind, CUR_CHECKS),
    )


def _plan_file(manifest: BillingManifest, source: SourceFile) -> FilePlan:
    """CUR naming and typing of one file (FOCUS: the names kept, see :mod:`vendors.aws.focus.native`), with the
    period as a constant ``billing_period`` column.

    Raises:
        LoadError: the file's columns are not the ones its manifest lists.
    """
    check_columns(manifest, source)
    manifest_types = {column.source_name: column.type for column in manifest.columns}
    constants = (("billing_period", manifest.billing_period),)
    if native.is_focus(manifest.kind):
        nulls = native.FOCUS_NULL_TEXTS if source.format == "csv" else ()
        return FilePlan(source, native.column_specs(source, manifest_types), constants, null_values=nulls)
    return FilePlan(source, column_specs(source, manifest_types), constants)


def check_columns(manifest: BillingManifest, source: SourceFile) -> None:
    """The manifest's column list is the contract for every file it names: a misspelt or missing cost column, or a
    part without its header row (whose first data row would become column names), fails the period by name.
    Names are compared as CUR 2.0 names, so a v1 Parquet file (snake_case) matches its manifest (``category/Name``).

    Raises:
        LoadError: a column is missing from the file, or the file has one the manifest does not list.
    """
    if not manifest.columns:  # hand-made or very old manifests list no columns: nothing to compare with
        return
    expected = {normalise_name(column.source_name) for column in manifest.columns}
    found = {normalise_name(column.name) for column in source.columns}
    missing, unknown = sorted(expected - found), sorted(found - expected)
    if missing or unknown:
        parts = ([f"missing {_names(missing)}"] if missing else []) + (
            [f"not in the manifest {_names(unknown)}"] if unknown else [])
        raise LoadError(f"{source.key}: its columns do not match its manifest {manifest.manifest_key} "
                        f"({'; '.join(parts)}).")


def _names(names: list[str], most: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def read_state(
    backend: DatabaseBackend, dataset: str, export_name: str | None = None, billing_period: str | None = None
) -> list[LoadRecord]:
    """The AWS load history as stored, creating nothing (see :func:`core.ingest.read_state`)."""
    return _read_state(backend, dataset, VENDOR, export_name, billing_period)
