"""Signals: SIGINT (exit 130) or SIGTERM (exit 143) while S3 holds one request of the restated February. The
attempt, when it had begun, is recorded ``interrupted`` (never left ``running``); the data is untouched; the
next run completes (test_corpus.test_signal). The damage function returns ``(signal, request path held)``."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from tests.conftest import Result
from tests.corpus.cases_s3 import DATA, MANIFEST
from tests.corpus.harness import V1, V2, Case, Ctx, Readback, SlowFault

FEB = "2024-02"
HOLD = 8.0  # seconds S3 holds the request: the signal arrives while it waits


def _hold(export: str, signum: int, path: str | None, query: str | None = None) -> Callable[[Ctx], Any]:
    def damage(ctx: Ctx) -> tuple[int, str]:
        ctx.restate(export)
        ctx.fault(SlowFault(delay=HOLD, method="GET", path=path, query=query, times=1))
        return signum, path or "/"

    return damage


def _no_attempt(ctx: Ctx, result: Result, back: Readback) -> None:
    """Stopped before February began to load: no attempt of its new version is recorded at all."""
    (victim, truth), = ctx.restated.items()
    rows = [r for r in back.state if (r["export_name"], r["billing_period"]) == victim
            and r["version_id"] == truth.version_id]
    assert rows == [], rows


def _case(ident: str, export: str, signum: int, path: str | None, query: str | None = None, **kw: Any) -> Case:
    code = 130 if signum == signal.SIGINT else 143
    return Case(id=f"signal-{ident}", damage=_hold(export, signum, path, query), code=code,
                culprit="Interrupted" if code == 130 else "Terminated", victim=(export, FEB), april="any", via="proxy",
                **kw)


CASES: list[Case] = [
    _case("sigint-data-parquet", V2, signal.SIGINT, DATA[V2]),
    _case("sigterm-data-parquet", V2, signal.SIGTERM, DATA[V2]),
    _case("sigint-data-gzip", V1, signal.SIGINT, DATA[V1]),
    _case("sigterm-data-gzip", V1, signal.SIGTERM, DATA[V1]),
    _case("sigint-manifest", V1, signal.SIGINT, MANIFEST[V1], check=_no_attempt),
    _case("sigterm-manifest", V2, signal.SIGTERM, MANIFEST[V2], check=_no_attempt),
]
