"""S3 misbehaving, through a fault-injecting proxy in front of moto: 5xx and SlowDown, HTML error pages from a
proxy, 416, bodies cut mid-stream, a dropped ``Range``, slow answers, a missing object, a failing listing.

A transient fault is absorbed by the retries: exit 0, the restated February loads its new version. A persistent
one fails that month only (exit 1, the file or manifest named, the previous version kept), the rest loads —
except a listing that keeps failing, which is the whole source's failure (exit 3). Where boto3 reads a file
first (to sniff its format) a :class:`LaterFault` lets that read through so DuckDB's own reader meets the fault.

Persistent 5xx cost botocore's full backoff (~15 s); the manifest and listing ones, whose path is the same boto3
code whatever the backend, run on one backend each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import Result
from tests.corpus.harness import V1, V2, Case, Ctx, LaterFault, Readback, SlowFault
from tests.integration.s3_faults import Fault

FEB = "2024-02"
# Request-path fragments of February's restated objects (free of characters a client percent-encodes)
DATA = {V1: "restated-0002/legacy-cur-2.csv.gz", V2: "2024-02/cur2-daily-00002.snappy.parquet"}
MANIFEST = {V1: "legacy-cur/20240201-20240301/legacy-cur-Manifest.json", V2: "2024-02/cur2-daily-Manifest.json"}
LISTING = "list-type=2"


def _faults(export: str | None, *make: Callable[[], Fault]) -> Callable[[Ctx], None]:
    def damage(ctx: Ctx) -> None:
        if export is not None:
            ctx.restate(export)
        for build in make:
            ctx.fault(build())

    return damage


def _data_key(export: str) -> Callable[[Ctx], str]:
    return lambda ctx: ctx.restated[(export, FEB)].data_keys[-1]


def _manifest_key(export: str) -> Callable[[Ctx], str]:
    return lambda ctx: ctx.restated[(export, FEB)].manifest_key


def _transient(ident: str, export: str, *make: Callable[[], Fault], **kw: Any) -> Case:
    return Case(id=f"s3-{ident}", damage=_faults(export, *make), code=0, culprit=None, victim=(export, FEB),
                victim_loads=True, via="proxy", **kw)


def _persistent(ident: str, export: str, culprit: Callable[[Ctx], str], *make: Callable[[], Fault],
                **kw: Any) -> Case:
    return Case(id=f"s3-{ident}", damage=_faults(export, *make), code=1, culprit=culprit, victim=(export, FEB),
                via="proxy", **kw)


def _source_down(ident: str, *make: Callable[[], Fault], **kw: Any) -> Case:
    return Case(id=f"s3-{ident}", damage=_faults(V2, *make), code=3, culprit=lambda ctx: ctx.bucket,
                victim=(V2, FEB), via="proxy", **kw)


def _missing_object(ctx: Ctx) -> None:
    ctx.restate(V1)
    ctx.data_file(V1).unlink()  # the manifest names it; the bucket never gets it


def _named_if_failed(export: str) -> Callable[[Ctx, Result, Readback], None]:
    def check(ctx: Ctx, result: Result, _back: Readback) -> None:
        if result.code == 1:
            assert _data_key(export)(ctx) in result.stdout + result.stderr

    return check


CASES: list[Case] = [
    # transient: the retries absorb it, February's new version loads
    _transient("data-500-once", V2, lambda: LaterFault(status=500, path=DATA[V2], times=1, skip=1)),
    _transient("data-503-slowdown-twice", V1, lambda: Fault.error(503, "SlowDown", path=DATA[V1], times=2)),
    _transient("data-html-502-once", V2, lambda: LaterFault(status=502, html=True, path=DATA[V2], times=1, skip=1)),
    _transient("data-head-500-once", V2, lambda: Fault.error(500, method="HEAD", path=DATA[V2], times=1)),
    _transient("data-cut-once-parquet", V2, lambda: LaterFault(cut_after=100, method="GET", path=DATA[V2], times=1,
                                                               skip=1)),
    _transient("data-cut-once-gzip", V1, lambda: LaterFault(cut_after=50, method="GET", path=DATA[V1], times=1,
                                                            skip=1)),
    _transient("data-slow-parquet", V2, lambda: SlowFault(delay=1.5, method="GET", path=DATA[V2], times=3)),
    _transient("data-slow-gzip", V1, lambda: SlowFault(delay=1.5, method="GET", path=DATA[V1], times=2)),
    _transient("manifest-503-once", V1, lambda: Fault.error(503, "SlowDown", method="GET", path=MANIFEST[V1])),
    _transient("manifest-html-once", V2, lambda: Fault.html_page(504, method="GET", path=MANIFEST[V2])),
    _transient("manifest-cut-once", V2, lambda: Fault.cut(after=30, method="GET", path=MANIFEST[V2])),
    _transient("manifest-slow", V1, lambda: SlowFault(delay=2.0, method="GET", path=MANIFEST[V1], times=1)),
    _transient("listing-503-once", V2, lambda: Fault.error(503, "SlowDown", query=LISTING, times=1)),
    _transient("listing-500-twice", V1, lambda: Fault.error(500, query=LISTING, times=2)),
    Case(id="s3-data-range-ignored", damage=_faults(V2, lambda: Fault.ignore_range(path=DATA[V2], times=None)),
         code=(0, 1), culprit=None, victim=(V2, FEB), victim_loads=None, via="proxy", check=_named_if_failed(V2)),
    # persistent: February fails, keeps its previous version; April loads
    _persistent("data-503-always", V2, _data_key(V2),
                lambda: LaterFault(status=503, code="SlowDown", path=DATA[V2], times=None, skip=1)),
    _persistent("data-500-always-gzip", V1, _data_key(V1), lambda: Fault.error(500, path=DATA[V1], times=None),
                backends=("postgresql",)),
    _persistent("data-html-always", V2, _data_key(V2),
                lambda: LaterFault(status=502, html=True, path=DATA[V2], times=None, skip=1)),
    _persistent("data-416-always", V2, _data_key(V2),
                lambda: LaterFault(status=416, code="InvalidRange", path=DATA[V2], times=None, skip=1)),
    _persistent("data-cut-always-parquet", V2, _data_key(V2),
                lambda: LaterFault(cut_after=200, method="GET", path=DATA[V2], times=None, skip=1)),
    _persistent("data-cut-always-gzip", V1, _data_key(V1),
                lambda: Fault.cut(after=100, method="GET", path=DATA[V1], times=None)),
    _persistent("data-cut-after-sniff-gzip", V1, _data_key(V1),
                lambda: LaterFault(cut_after=10, method="GET", path=DATA[V1], times=None, skip=1)),
    Case(id="s3-data-object-missing", damage=_missing_object, code=1, culprit=_data_key(V1), victim=(V1, FEB)),
    _persistent("manifest-500-always", V1, _manifest_key(V1),
                lambda: Fault.error(500, method="GET", path=MANIFEST[V1], times=None), backends=("duckdb",)),
    _persistent("manifest-html-always", V2, _manifest_key(V2),
                lambda: Fault.html_page(502, method="GET", path=MANIFEST[V2], times=None), backends=("postgresql",)),
    _persistent("manifest-cut-always", V1, _manifest_key(V1),
                lambda: Fault.cut(after=40, method="GET", path=MANIFEST[V1], times=None)),
    _persistent("manifest-vanished", V2, _manifest_key(V2),
                lambda: Fault.error(404, "NoSuchKey", method="GET", path=MANIFEST[V2], times=None)),
    # the listing keeps failing: the whole source is unusable (exit 3), nothing changes
    _source_down("listing-503-always", lambda: Fault.error(503, "SlowDown", query=LISTING, times=None),
                 backends=("postgresql",)),
    _source_down("listing-html-always", lambda: Fault.html_page(502, query=LISTING, times=None),
                 backends=("duckdb",)),
    _source_down("listing-403", lambda: Fault.error(403, "AccessDenied", query=LISTING, times=None)),
]
