"""Finding and reading the manifests of AWS Cost and Usage Reports (CUR v1 and CUR 2.0 / Data Exports).

The manifest, not a listing of data files, is the source of truth for what a billing period contains: AWS
leaves old assembly folders and stale files in place, so only the files the *current* manifest names belong
to the period. Everything here goes through :class:`ObjectStore`, so S3 and a local copy of a bucket behave
the same way.

Layouts recognised (``<parent>`` is any prefix, possibly empty):

* CUR v1: ``<parent>/<export>/<YYYYMMDD>-<YYYYMMDD>/<export>-Manifest.json``. The copies AWS keeps in
  ``<period>/<assemblyId>/`` (create-new layout) outlive their assembly, so they are never picked.
* CUR 2.0: ``<parent>/<export>/metadata/BILLING_PERIOD=YYYY-MM/[<subfolders>/]<export>-Manifest.json``. Data Exports'
  FOCUS exports use this layout too; the columns tell them apart (:mod:`vendors.aws.focus.native`, ``kind``).

Rule when several candidates exist for one billing period of one export: a manifest lying directly in the
period folder (``<YYYYMMDD-YYYYMMDD>/`` or ``BILLING_PERIOD=YYYY-MM/``) wins, since that is where AWS keeps
the current one; failing that, the lexicographically greatest key wins. A listing carries no modification
time to compare; nested folders are expected to be named by date or timestamp, so the greatest key is the
latest one, and when they are not the choice is at least deterministic.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal

from core.errors import ConfigError, LoadError, ManifestError
from core.storage import ObjectStore, key_problem
from core.storage import short_repr as _short
from vendors.aws.focus.native import export_kind

# AWS writes manifests of a few hundred kilobytes: anything this big fails its period, not the process's memory.
MAX_MANIFEST_BYTES = 32 * 1024 * 1024

log = logging.getLogger(__name__)

CurVersion = Literal["v1", "v2"]

_SUFFIX = "-Manifest.json"
_V1_FOLDER = re.compile(r"^(\d{4})(0[1-9]|1[0-2])\d{2}-\d{8}$")
_V2_FOLDER = re.compile(r"^BILLING_PERIOD=(\d{4}-(?:0[1-9]|1[0-2]))$")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})(?:$|[T ])")
_ID_FIELD = {"v1": "assemblyId", "v2": "executionId"}
_FILES_FIELD = {"v1": "reportKeys", "v2": "dataFiles"}


@dataclass(frozen=True)
class ManifestColumn:
    category: str | None
    name: str
    type: str | None

    @property
    def source_name(self) -> str:
        """The header the data file carries: v1 CSVs spell columns ``category/Name``."""
        return f"{self.category}/{self.name}" if self.category else self.name


@dataclass(frozen=True)
class BillingManifest:
    export_name: str
    cur_version: CurVersion
    billing_period: str
    version_id: str
    manifest_key: str
    data_keys: tuple[str, ...]
    columns: tuple[ManifestColumn, ...]
    format_hint: str | None
    compression: str | None
    #: the folder the export lives in (``<parent>/<export>/…``): one export name under two parents is two exports
    parent: str = ""
    #: ``v1``, ``v2``, ``focus-1.0`` or ``focus-1.2`` (:func:`vendors.aws.focus.native.export_kind`); None until
    #: a CUR 2.0 layout that lists no columns is decided by its data
    kind: str | None = None


@dataclass(frozen=True)
class ManifestProblem:
    export_name: str
    billing_period: str | None
    manifest_key: str
    error: ManifestError


@dataclass
class ManifestScan:
    manifests: list[BillingManifest]
    problems: list[ManifestProblem]


@dataclass(frozen=True)
class ExportRef:
    """One export; ``prefix`` is the folder holding the export folder, fit to pass back to :func:`find_manifests`."""

    export_name: str
    cur_version: CurVersion
    prefix: str


@dataclass(frozen=True)
class _Candidate:
    parent: str
    export_name: str
    cur_version: CurVersion
    period: str
    key: str
    direct: bool


# --------------------------------------------------------------------------------------------- parsing


def parse_manifest(raw: bytes, *, key: str, store: ObjectStore, export_name: str, cur_version: CurVersion,
                   period_from_key: str | None) -> BillingManifest:
    """Validate one manifest strictly: a half-understood manifest could make a period load the wrong files.

    ``period_from_key`` is the period of the manifest's folder: a manifest claiming another is refused, since
    loading it would replace a month it was not delivered for.

    Raises:
        ManifestError: the manifest is not usable; only its own billing period is affected.
    """
    doc = _json_object(raw, key)

    id_field = _ID_FIELD[cur_version]
    version_id = doc.get(id_field)
    if not isinstance(version_id, str) or not version_id.strip():
        raise ManifestError(key, f"missing or empty {id_field!r}")

    billing_period = _billing_period(doc.get("billingPeriod"), key, period_from_key)
    if period_from_key and billing_period != period_from_key:
        raise ManifestError(key, f"it says billing period {billing_period} but lies in the folder of "
                                 f"{period_from_key}; neither month is loaded from it")

    data_keys = _data_keys(doc, key, store, _FILES_FIELD[cur_version])
    fmt, compression = _format_and_compression(doc, data_keys)
    columns = _columns(doc.get("columns"), key, cur_version)
    return BillingManifest(
        export_name=export_name, cur_version=cur_version, billing_period=billing_period,
        version_id=version_id.strip(), manifest_key=key, data_keys=data_keys,
        columns=columns, format_hint=fmt, compression=compression,
        kind=export_kind(cur_version, (c.name for c in columns)),
    )


def _json_object(raw: bytes, key: str) -> dict[str, Any]:
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(key, f"{len(raw)} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may hold")
    try:
        doc = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise ManifestError(key, f"not valid UTF-8 (byte {exc.start})") from exc
    except RecursionError as exc:  # '[[[[…' nested deeper than the interpreter's stack
        raise ManifestError(key, "not valid JSON (nested too deeply)") from exc
    except ValueError as exc:  # JSONDecodeError, a duplicate field, an integer of thousands of digits
        raise ManifestError(key, f"not valid JSON ({str(exc)[:200]})") from exc
    if not isinstance(doc, dict):
        raise ManifestError(key, f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A field written twice is ambiguous (json keeps the last, another reader the first): refused."""
    doc: dict[str, Any] = {}
    for name, value in pairs:
        if name in doc:
            raise ValueError(f"field {_short(name, 60)} appears twice")
        doc[name] = value
    return doc


def _billing_period(value: Any, key: str, period_from_key: str | None) -> str:
    if value is None:
        if period_from_key is None:
            raise ManifestError(key, "no 'billingPeriod' and no billing period in the key")
        return period_from_key
    start = value.get("start") if isinstance(value, dict) else None
    match = _DATE.match(start) if isinstance(start, str) else None
    try:
        day = date(int(match[1]), int(match[2]), int(match[3])) if match else None
    except ValueError:  # 2024-02-31 and the like
        day = None
    if day is None:
        raise ManifestError(key, f"unparseable billingPeriod {_short(value)}")
    return f"{day.year:04d}-{day.month:02d}"


def _data_keys(doc: dict[str, Any], key: str, store: ObjectStore, field: str) -> tuple[str, ...]:
    """The exact keys the engine reads (see :meth:`core.storage.ObjectStore.key_from_uri`): one a reader would
    normalise (``..``, ``//``…) refuses the manifest. Glob characters are legal; engines check
    :func:`core.storage.needs_literal_read`."""
    # A missing list is an error, not "no files": the pipeline would otherwise empty a period on a bad manifest.
    entries = doc.get(field)
    if not isinstance(entries, list) or not all(isinstance(e, str) and e.strip() for e in entries):
        raise ManifestError(key, f"{field!r} must be a list of non-empty strings")
    keys: dict[str, None] = {}  # ordered set: a file listed twice must not be loaded twice
    buckets: set[str] = set()
    for entry in entries:
        try:
            data_key = store.key_from_uri(entry)
        except ValueError as exc:
            raise ManifestError(key, f"{field!r} entry {exc}") from exc
        problem = key_problem(data_key)
        if problem is not None:
            raise ManifestError(key, f"{field!r} entry {_short(entry)} {problem}")
        if "://" in entry:
            buckets.add(entry.split("://", 1)[1].split("/", 1)[0])
        keys[data_key] = None
    if len(buckets) > 1:
        raise ManifestError(key, f"{field!r} names objects in several buckets ({', '.join(sorted(buckets))})")
    return tuple(keys)


def _columns(value: Any, key: str, cur_version: CurVersion) -> tuple[ManifestColumn, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ManifestError(key, "'columns' must be a list")
    columns = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise ManifestError(key, f"column without a name: {_short(item)}")
        category, col_type = item.get("category"), item.get("type")
        if not isinstance(category, (str, type(None))) or not isinstance(col_type, (str, type(None))):
            raise ManifestError(key, f"column {_short(name)} has a non-text category or type")
        columns.append(ManifestColumn(category=(category or None) if cur_version == "v1" else None,
                                      name=name, type=col_type or None))
    return tuple(columns)


def _format_and_compression(doc: dict[str, Any], data_keys: tuple[str, ...]) -> tuple[str | None, str | None]:
    """Only a hint: readers still sniff the files, but the hint picks the reader and spares a probe."""
    declared = " ".join(str(doc.get(f) or "") for f in ("dataFormat", "contentType", "compression")).lower()
    fmt = "parquet" if "parquet" in declared else "csv" if "csv" in declared else None

    raw_compression = str(doc.get("compression") or "").lower()
    compression = {"gzip": "gzip", "gz": "gzip", "zip": "zip"}.get(raw_compression)
    if compression is None and raw_compression not in ("", "none", "parquet", "snappy"):
        log.warning("Unknown compression %r in a manifest; the reader will have to detect it.", raw_compression)

    ext_fmt: set[str | None] = set()
    ext_compression: set[str | None] = set()
    for data_key in data_keys:
        name = data_key.lower()
        ext_compression.add("gzip" if name.endswith(".gz") else "zip" if name.endswith(".zip") else None)
        stem = name.removesuffix(".gz").removesuffix(".zip")
        ext_fmt.add("parquet" if stem.endswith(".parquet") else "csv" if stem.endswith(".csv") else None)
    if fmt is None and len(ext_fmt) == 1:
        fmt = ext_fmt.pop()
    if compression is None and raw_compression in ("", "none") and len(ext_compression) == 1:
        compression = ext_compression.pop()
    return fmt, compression


# ------------------------------------------------------------------------------------------- discovery


def _normalise_prefix(prefix: str) -> str:
    return prefix.strip("/")


def _list_root(parent: str) -> str:
    return f"{parent}/" if parent else ""


def _classify(key: str) -> _Candidate | None:
    """Recognise a manifest key by its full layout, so that stray ``*-Manifest.json`` objects are ignored."""
    parts = key.split("/")
    if len(parts) < 3 or not parts[-1].endswith(_SUFFIX):
        return None
    export = parts[-1][: -len(_SUFFIX)]
    if not export:
        return None
    v1 = _V1_FOLDER.match(parts[-2])
    if v1 and parts[-3] == export:
        return _Candidate("/".join(parts[:-3]), export, "v1", f"{v1[1]}-{v1[2]}", key, True)
    for i in range(len(parts) - 3, 0, -1):  # rightmost 'metadata/BILLING_PERIOD=…' below '<export>/'
        v2 = _V2_FOLDER.match(parts[i + 1])
        if parts[i] == "metadata" and v2 and parts[i - 1] == export:
            return _Candidate("/".join(parts[: i - 1]), export, "v2", v2[1], key, i + 2 == len(parts) - 1)
    return None


def _candidates(store: ObjectStore, list_prefix: str) -> dict[tuple[str, str], list[_Candidate]]:
    groups: dict[tuple[str, str], list[_Candidate]] = defaultdict(list)
    for info in store.list(list_prefix):
        candidate = _classify(info.key)
        if candidate is not None:
            groups[(candidate.parent, candidate.export_name)].append(candidate)
    return groups


def _version_of(candidates: Iterable[_Candidate]) -> CurVersion:
    # A folder holding both layouts is a CUR 2.0 export written where a legacy report used to be: v2 is live.
    return "v2" if any(c.cur_version == "v2" for c in candidates) else "v1"


def discover_exports(store: ObjectStore, prefix: str) -> list[ExportRef]:
    """Every export whose manifests lie anywhere under ``prefix``, so users need not know each export's path."""
    parent = _normalise_prefix(prefix)
    refs = [
        ExportRef(export_name=export, cur_version=_version_of(cands), prefix=export_parent)
        for (export_parent, export), cands in _candidates(store, _list_root(parent)).items()
    ]
    refs.sort(key=lambda r: (r.prefix, r.export_name))
    log.debug("Found %d export(s) under %r: %s", len(refs), parent, refs)
    return refs


def _check_period(value: str | None, name: str) -> None:
    if value is not None and not (isinstance(value, str) and _PERIOD.match(value)):
        raise ConfigError(f"{name} must be a billing period written YYYY-MM, got {value!r}.")


def _pick_current(candidates: list[_Candidate]) -> _Candidate:
    best = max(candidates, key=lambda c: (c.direct, c.key))
    if len(candidates) > 1:
        log.debug("Several manifests for %s %s; using %s.", best.export_name, best.period, best.key)
    return best


def find_manifests(
    store: ObjectStore,
    *,
    prefix: str = "",
    export_name: str | None = None,
    cur_version: CurVersion | None = None,
    start: str | None = None,
    end: str | None = None,
) -> ManifestScan:
    """The current manifest of every billing period, with broken ones reported instead of aborting the run.

    With ``export_name`` the export folder must sit directly under ``prefix`` (``prod`` never matches
    ``prod-eu``); without it every export under ``prefix`` is scanned. ``start``/``end`` filter inclusively.

    Raises:
        ConfigError: a bad ``start``/``end``/``export_name``/``cur_version``.
        SourceError: the store cannot be listed or read.
    """
    _check_period(start, "start")
    _check_period(end, "end")
    if start and end and start > end:
        raise ConfigError(f"start ({start}) is after end ({end}).")
    if cur_version not in (None, "v1", "v2"):
        raise ConfigError(f"cur_version must be 'v1' or 'v2', got {cur_version!r}.")
    if export_name is not None and (not export_name or "/" in export_name):
        raise ConfigError(f"Export name {export_name!r} must be a single, non-empty folder name.")

    parent = _normalise_prefix(prefix)
    if export_name is None:
        groups = _candidates(store, _list_root(parent))
    else:
        # A v2 export keeps its manifests under metadata/; a v1 one needs its whole folder listed.
        list_prefix = f"{_list_root(parent)}{export_name}/" + ("metadata/" if cur_version == "v2" else "")
        groups = {k: v for k, v in _candidates(store, list_prefix).items() if k == (parent, export_name)}

    scan = ManifestScan(manifests=[], problems=[])
    for candidates in groups.values():
        version = cur_version or _version_of(candidates)
        by_period: dict[str, list[_Candidate]] = defaultdict(list)
        for candidate in candidates:
            if candidate.cur_version == version:
                by_period[candidate.period].append(candidate)
        for period in sorted(by_period):
            if (start and period < start) or (end and period > end):
                continue
            chosen = _pick_current(by_period[period])
            _load_one(store, chosen, version, scan, start, end)

    scan.manifests.sort(key=lambda m: (m.export_name, m.billing_period, m.manifest_key))
    scan.problems.sort(key=lambda p: (p.export_name, p.billing_period or "", p.manifest_key))
    log.debug("Found %d manifest(s) and %d problem(s) under %r.", len(scan.manifests), len(scan.problems), parent)
    return scan


def _load_one(store: ObjectStore, chosen: _Candidate, version: CurVersion, scan: ManifestScan,
              start: str | None, end: str | None) -> None:
    try:
        raw = store.read_bytes(chosen.key, max_bytes=MAX_MANIFEST_BYTES)
        manifest = parse_manifest(raw, key=chosen.key, store=store, export_name=chosen.export_name,
                                  cur_version=version, period_from_key=chosen.period)
    except FileNotFoundError as exc:  # deleted between listing and reading
        error = ManifestError(chosen.key, f"it disappeared before it could be read ({exc})")
    except ManifestError as exc:
        error = exc
    except (LoadError, OSError) as exc:  # this object only (SourceError, the whole source, goes up)
        error = ManifestError(chosen.key, f"it could not be read ({getattr(exc, 'message', None) or exc})")
    else:
        # The key's period was filtered before reading; the manifest's own period has the last word.
        if (start and manifest.billing_period < start) or (end and manifest.billing_period > end):
            log.debug("Skipping %s: billing period %s is out of range.", chosen.key, manifest.billing_period)
        else:
            scan.manifests.append(replace(manifest, parent=chosen.parent))
        return
    log.warning("%s", error.message)
    scan.problems.append(ManifestProblem(chosen.export_name, chosen.period, chosen.key, error))
