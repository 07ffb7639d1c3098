"""A billing period's files as one stream of Arrow record batches sharing one schema.

The schema is the period's union of columns in first-seen order (``billing_period`` first); a column a file
lacks arrives as nulls, and a column two files type differently is cast to the kind the first file gave it.
Every backend that loads :class:`~core.backends.readers.Boto3DataReader` batches through a single stream uses
it: PostgreSQL's ``COPY`` and the dlt staging of the generic SQL backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from core.backends.base import ColumnKind, FilePlan, PeriodLoad
from core.errors import LoadError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa


def union_columns(files: Sequence[FilePlan]) -> dict[str, ColumnKind]:
    """Every output column of the period in first-seen order, ``billing_period`` first (first kind wins)."""
    wanted: dict[str, ColumnKind] = {"billing_period": "string"}
    for plan in files:
        for name, kind in plan.target_kinds().items():
            wanted.setdefault(name, kind)
    return wanted


def period_batches(
    load: PeriodLoad,
    kinds: Mapping[str, ColumnKind],
    *,
    names: Mapping[str, str] | None = None,
    types: Mapping[str, pa.DataType] | None = None,
    on_file: Callable[[FilePlan, int], None],
) -> Iterator[pa.RecordBatch]:
    """Every file's batches with the columns of ``kinds``, in that order.

    ``names`` renames columns on the way out (our name → output name); ``types`` overrides the Arrow type of a
    kind (PostgreSQL wants naive UTC timestamps: pyarrow writes them to CSV ~20× faster than zoned ones).
    ``on_file(plan, rows)`` is called once a file's last batch has been handed out.

    Raises:
        LoadError: a file is unreadable, or a column cannot be cast to the period's type for it.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from core.backends.readers import ARROW_TYPES

    arrow = {**ARROW_TYPES, **(types or {})}
    schema = pa.schema([pa.field((names or {}).get(n, n), arrow[k]) for n, k in kinds.items()])
    for plan in load.files:
        rows = 0
        for batch in load.batches(plan):
            arrays = []
            for name, kind in kinds.items():
                index = batch.schema.get_field_index(name)
                if index < 0:
                    arrays.append(pa.nulls(batch.num_rows, arrow[kind]))
                    continue
                column = batch.column(index)
                if column.type != arrow[kind]:  # two files typing a column differently, or an engine's override
                    try:
                        column = pc.cast(column, arrow[kind])
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                        raise LoadError(f"{plan.file.key}: column {name!r}: {exc}") from exc
                arrays.append(column)
            rows += batch.num_rows
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        on_file(plan, rows)
