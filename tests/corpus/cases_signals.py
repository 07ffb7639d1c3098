"""Signals: SIGINT (exit 130) or SIGTERM (exit 143) while S3 holds one request of the restated February. The
attempt, when it had begun, is recorded ``interrupted`` (never left ``running``); the data is untouched; the
next run completes (test_corpus.test_signal). The damage function returns ``(signal, request path held)``."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.conftest import Result
from tests.corpus.cases_s3 import DATA, MANIFEST
from tests.corpus.harness import V1, V2, Case, Ctx, LaterFault, Readback, SlowFault

FEB = "2024-02"


@dataclass
class HeldFault(LaterFault, SlowFault):
    """Forwarded after ``delay`` seconds, once ``skip`` matching requests have gone through untouched."""
HOLD = 8.0  # seconds S3 holds the request: the signal arrives while it waits


def _hold(export: str, signum: int, path: str | None, query: str | None = None, *, skip: int = 0,
          signals: int = 1, gap: float = 0.5) -> Callable[[Ctx], Any]:
    """Hold the first GET of ``path`` (after ``skip`` others) for HOLD seconds; send ``signals`` signals,
    ``gap`` seconds apart."""

    def damage(ctx: Ctx) -> tuple[int, str, int, int, float]:
        ctx.restate(export)
        ctx.fault(HeldFault(delay=HOLD, method="GET", path=path, query=query, times=1, skip=skip))
        return signum, path or "/", skip, signals, gap

    return damage


def _no_attempt(ctx: Ctx, result: Result, back: Readback) -> None:
    """Stopped before February began to load: no attempt of its new version is recorded at all."""
    (victim, truth), = ctx.restated.items()
    rows = [r for r in back.state if (r["export_name"], r["billing_period"]) == victim
            and r["version_id"] == truth.version_id]
    assert rows == [], rows


def _case(ident: str, export: str, signum: int, path: str | None, query: str | None = None, *, skip: int = 0,
          signals: int = 1, gap: float = 0.5, code_override: Any = None, **kw: Any) -> Case:
    code = code_override or (130 if signum == signal.SIGINT else 143)
    word = "Interrupted" if signum == signal.SIGINT else "Terminated"
    return Case(id=f"signal-{ident}", damage=_hold(export, signum, path, query, skip=skip, signals=signals, gap=gap),
                code=code,
                culprit=word, victim=(export, FEB), april="any", via="proxy",
                **kw)


CASES: list[Case] = [
    _case("sigint-data-parquet", V2, signal.SIGINT, DATA[V2]),
    _case("sigterm-data-parquet", V2, signal.SIGTERM, DATA[V2]),
    _case("sigint-data-gzip", V1, signal.SIGINT, DATA[V1]),
    _case("sigterm-data-gzip", V1, signal.SIGTERM, DATA[V1]),
    # the held request is the engine's own read (DuckDB httpfs; pyarrow through boto3 on PostgreSQL)
    _case("sigint-engine-read-parquet", V2, signal.SIGINT, DATA[V2], skip=1),
    _case("sigterm-engine-read-parquet", V2, signal.SIGTERM, DATA[V2], skip=1),
    # impatient users: the signal twice, 0.5 s apart. A second signal that lands while the first is being handled
    # may end the process by that signal (returncode -2/-15; a shell still reports 130/143): accepted, the state
    # must hold. Signals sent back to back (no gap, or a burst) sometimes leave the attempt 'running' or kill the
    # process before it says "Terminated": timing-dependent, so not pinned here as a strict xfail (see the report).
    _case("sigint-twice", V2, signal.SIGINT, DATA[V2], signals=2, code_override=(130, -2)),
    _case("sigterm-twice", V1, signal.SIGTERM, DATA[V1], signals=2, code_override=(143, -15)),
    _case("sigint-manifest", V1, signal.SIGINT, MANIFEST[V1], check=_no_attempt),
    _case("sigterm-manifest", V2, signal.SIGTERM, MANIFEST[V2], check=_no_attempt),
]
