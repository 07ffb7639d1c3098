"""The dlt load strategy: a billing period staged through a dlt destination, fed Arrow record batches, then
swapped in.

:class:`DltStageSwap` is the generic SQL backend's strategy (any dlt destination): before the replace transaction
dlt moves the bytes (batched inserts through SQLAlchemy, or the destination's own bulk path) into
``<stage dataset>._finops_stage_<table>``; inside it, ``INSERT … SELECT`` from the staging table; on the way out,
success or not, the staging table is dropped.

Why the staging table is shaped as it is:

* Columns are positional (``c_0``, ``c_1``…), the period's union of columns in a fixed order. dlt normalises
  names (63-character limit with a hash suffix, a leading digit, case); positional names make the mapping back
  to our column names exact, whatever dlt's naming convention does.
* Every load asks dlt for ``refresh="drop_sources"``, so the staging table is recreated with exactly this
  period's types. Without it dlt would remember the previous period's types and, when a column changes kind,
  create a variant column (``c_3__v_double``) instead.
* The staging dataset is ``<dataset>_finops_dlt``, not the export dataset: dlt's bookkeeping tables
  (``_dlt_loads``, ``_dlt_version``, ``_dlt_pipeline_state``) stay out of the schema users query. dlt's refresh
  also keeps a ``<stage dataset>_staging`` with only ``_dlt_version`` in it.
* The refresh relies on dlt's local state (``<data_dir>/dlt/<backend>-<table>``) or, on a machine without it,
  on what dlt restores from the destination; so that folder is left to dlt, and only old load packages'
  metadata is pruned.
* JSON travels as text and is cast to the engine's JSON type by the backend's ``INSERT … SELECT``: a JSON hint on
  an Arrow string column makes dlt log a warning for every batch (and dlt's SQLAlchemy destination would encode
  the text a second time).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.backends import conform
from core.backends.base import ColumnKind, FilePlan, PeriodLoad
from core.backends.sqlengine.strategy import Columns, Kinds, LoadStrategy
from core.errors import DestinationError, FinOpsError, LoadError, interrupt_in

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.sqlengine import SqlBackend

log = logging.getLogger(__name__)

STAGE_PREFIX = "_finops_stage_"
STAGE_DATASET_SUFFIX = "_finops_dlt"
#: dlt types of the staging columns; JSON is staged as text (see the module docstring)
DLT_TYPES: dict[str, dict[str, Any]] = {
    "string": {"data_type": "text"},
    "json": {"data_type": "text"},
    "double": {"data_type": "double"},
    "bigint": {"data_type": "bigint"},
    "boolean": {"data_type": "bool"},
    "timestamp": {"data_type": "timestamp", "timezone": True, "precision": 6},
    "date": {"data_type": "date"},
}


@dataclass(frozen=True)
class StageLayout:
    """Where dlt stages one period: dataset and table as dlt names them, and the positional column map."""

    dataset: str
    table: str
    #: our column name → staging column name
    columns: dict[str, str]
    kinds: dict[str, ColumnKind]


def stage_layout(dataset: str, table: str, files: Sequence[FilePlan], max_length: int = 63) -> StageLayout:
    from dlt.common.normalizers.naming.snake_case import NamingConvention

    naming = NamingConvention(max_length=max_length)
    kinds = conform.union_columns(files)
    return StageLayout(
        dataset=naming.normalize_table_identifier(f"{dataset}{STAGE_DATASET_SUFFIX}"),
        table=naming.normalize_table_identifier(f"{STAGE_PREFIX}{table}"),
        columns={name: f"c_{index}" for index, name in enumerate(kinds)},
        kinds=kinds,
    )


def dlt_defaults() -> None:
    """dlt settings this tool always wants, before any dlt call (a destination factory already starts dlt's
    anonymous telemetry): telemetry off unless the user set ``RUNTIME__DLTHUB_TELEMETRY`` themselves."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")


def pipeline_for(
    backend_name: str, target_key: str, layout: StageLayout, table: str, data_dir: Path, destination: Any
) -> Any:
    """One dlt pipeline per (destination, table), working under ``<data_dir>/dlt/<backend>-<table>``.

    ``target_key`` names the destination (no secret); its digest keeps two servers' pipelines apart.
    """
    import dlt

    dlt_defaults()
    digest = hashlib.sha1(target_key.encode()).hexdigest()[:8]
    name = f"finops_{backend_name}_{table}_{digest}"
    # scoped to this pipeline: loaded files (a copy of the data) are deleted as soon as they are loaded
    os.environ.setdefault(f"{name.upper()}__LOAD__DELETE_COMPLETED_JOBS", "true")
    # the staged files live seconds on local disk: gzip cost ~27 s per 1M CUR rows (benchmarks/README.md)
    os.environ.setdefault(f"{name.upper()}__NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION", "true")
    pipelines_dir = Path(data_dir).expanduser().resolve() / "dlt" / f"{backend_name}-{table}"
    pipelines_dir.mkdir(parents=True, exist_ok=True)
    return dlt.pipeline(
        pipeline_name=name, pipelines_dir=str(pipelines_dir), destination=destination, dataset_name=layout.dataset,
        progress=None, dev_mode=False,
    )


@dataclass(frozen=True)
class StagedTable:
    """The staging table exactly as dlt names it in the destination (quoted, dialect-correct)."""

    dataset: str
    qualified: str
    #: our column name → quoted staging column
    columns: dict[str, str]


def staged_table(pipeline: Any, layout: StageLayout) -> StagedTable:
    client = pipeline.sql_client()  # naming only: no connection is opened
    return StagedTable(
        dataset=client.dataset_name,
        qualified=client.make_qualified_table_name(layout.table),
        columns={name: client.escape_column_name(column) for name, column in layout.columns.items()},
    )


class DltStageSwap(LoadStrategy):
    """Stage through the backend's dlt destination, then ``INSERT … SELECT`` inside the transaction."""

    @contextmanager
    def staged(self, backend: SqlBackend, load: PeriodLoad, kinds: Kinds) -> Iterator[Any]:
        """Yields ``(layout, staging table, rows read)`` (a :class:`StageLayout`, a :class:`StagedTable`); a
        period with no files stages nothing (``None, 0``).
        The staging table is dropped on the way out; a failure to drop is logged, never raised over the load's
        own outcome."""
        layout = stage_layout(load.dataset, load.table, load.files, backend.max_identifier_length)
        source: StagedTable | None = None
        try:
            staged = 0
            if load.files:
                pipeline = pipeline_for(
                    backend.name, f"{backend.config.describe()}/{load.dataset}", layout, load.table,
                    backend.data_dir, backend.get_dlt_destination(),
                )
                source = staged_table(pipeline, layout)
                staged = load_stage(pipeline, load, layout, what=f"loading {load.table}",
                                    loader_file_format=getattr(backend, "dlt_loader_file_format", None))
                backend.open_dataset(source.dataset)  # SQLite: dlt's dataset file, seen under the same name
            yield layout, source, staged
        finally:
            if source is not None:
                try:
                    if backend.open_dataset(source.dataset, create=False):
                        backend.execute(f"DROP TABLE IF EXISTS {source.qualified}", what="dropping the staging table")
                except FinOpsError as exc:
                    log.warning("Could not drop the staging table %s: %s", source.qualified, exc.message)

    def insert(self, backend: SqlBackend, load: PeriodLoad, kinds: Kinds, columns: Columns, staged: Any) -> int:
        layout, source, count = staged
        if source is None or not count:  # files with a header and no rows stage nothing
            return 0
        needs_cast = backend.capabilities.json_text_needs_cast
        names, values = [], []
        for name in layout.columns:
            stored = backend.column(name)
            names.append(backend.quote(stored))
            value = source.columns[name]
            if needs_cast and backend.kind_of(columns[stored]) == "json":  # JSON was staged as text
                value = f"CAST({value} AS {columns[stored]})"
            values.append(value)
        target = backend.qualified(load.dataset, load.table)
        rows = backend.execute(
            f"INSERT INTO {target} ({', '.join(names)}) SELECT {', '.join(values)} FROM {source.qualified}",
            what=f"inserting {load.table} {load.billing_period} from the staging table",
        ).rowcount
        if rows != count:  # dlt lost or duplicated rows: never publish that
            raise LoadError(f"{load.table} {load.billing_period}: {count} rows read but {rows} staged.")
        return rows


def load_stage(
    pipeline: Any, load: PeriodLoad, layout: StageLayout, *, loader_file_format: str | None, what: str
) -> int:
    """Stream ``load.files`` into the staging table; returns the rows read (``on_file_done`` called per file).

    Raises:
        LoadError: a file is corrupt, or the destination rejected a value.
        DestinationError: the destination is unreachable or refused the credentials.
    """
    import dlt

    counted = [0]

    def count(plan: FilePlan, rows: int) -> None:
        counted[0] += rows
        load.file_done(plan.file, rows)

    hints = {layout.columns[n]: {**DLT_TYPES[k], "nullable": True} for n, k in layout.kinds.items()}
    batches = conform.period_batches(load, layout.kinds, names=layout.columns, on_file=count)
    resource = dlt.resource(
        batches, name=layout.table, table_name=layout.table,
        write_disposition="replace", columns=hints,
    )
    _abort_pending(pipeline)  # a package left by a crashed run must never be loaded now
    try:
        pipeline.run(resource, loader_file_format=loader_file_format, refresh="drop_sources")
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        error: BaseException = interrupt_in(exc) or translate_dlt_error(exc, what)  # Ctrl-C stays Ctrl-C
        try:
            _abort_pending(pipeline)
        except Exception as cleanup:  # noqa: BLE001 - the load's own error matters more
            log.warning("Could not discard dlt's pending load package: %s", cleanup)
        raise error from exc
    _forget_loaded(pipeline)
    return counted[0]


def _forget_loaded(pipeline: Any) -> None:
    """Keep only the newest loaded package's metadata: a copy of the schema per load adds up over the years."""
    with suppress(Exception):  # dlt's storage API is internal: best effort, never a reason to fail a load
        storage = pipeline._get_load_storage()
        for load_id in sorted(storage.list_loaded_packages())[:-1]:
            storage.loaded_packages.delete_package(load_id)


def _abort_pending(pipeline: Any) -> None:
    if pipeline.has_pending_data:
        abort = getattr(pipeline, "abort_packages", None)  # dlt >= 1.30; drop_pending_packages before
        abort() if abort else pipeline.drop_pending_packages()


def translate_dlt_error(exc: BaseException, what: str) -> FinOpsError:
    """Our own error when one is in the chain (a corrupt file), else a LoadError or, for connections, a
    DestinationError carrying the database's reason."""
    seen: set[int] = set()
    node: BaseException | None = exc
    chain = []
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        chain.append(node)
        if isinstance(node, FinOpsError):
            return node
        node = node.__cause__ or node.__context__ or getattr(node, "exception", None)
    reason = str(chain[-1]).strip().splitlines()[0] if str(chain[-1]).strip() else type(chain[-1]).__name__
    names = {type(n).__name__ for n in chain}
    connection = {"OperationalError", "InterfaceError", "DestinationConnectionError", "DatabaseTransientException"}
    if names & connection and not names & {"DataError", "IntegrityError", "DatabaseTerminalException"}:
        return DestinationError(f"Database error while {what}: {reason}")
    return LoadError(f"Database error while {what}: {reason}")
