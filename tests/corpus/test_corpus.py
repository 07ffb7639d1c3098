"""The adversarial corpus: every case of tests/corpus/cases_*.py on DuckDB and PostgreSQL (and SQLite where a case
says so), run by one shared test function; the signal cases by a second one. See harness.py for what every case
asserts."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Result, cli_env
from tests.corpus import cases_config, cases_data, cases_manifest, cases_names, cases_s3, cases_secrets, cases_signals
from tests.corpus.conftest import BaseSource, s3_env
from tests.corpus.harness import (
    Case,
    CorpusProxy,
    Ctx,
    assert_common,
    assert_months,
    assert_no_secret,
    assert_state,
    assert_state_loose,
    case_params,
    copy_tree,
    import_cur,
    output_of,
    read_back,
    resolve_culprit,
)
from tests.integration.conftest import S3

pytestmark = pytest.mark.integration

def _sample(cases: list[Case], *, duckdb_every: int = 2, server_every: int = 6) -> list[Case]:
    """The cases the default run takes, to keep ``./finops.sh test`` well under 30 minutes on 2 cores (each case is
    one ``finops`` process, 2.5–4 s): every ``duckdb_every``-th case on DuckDB, every ``server_every``-th on
    PostgreSQL, and every case that exists for one backend only. The sample is fixed (a case's index in its
    family), so a run is reproducible; ``FINOPS_CORPUS=full`` runs every case on every backend it names."""
    if os.environ.get("FINOPS_CORPUS") == "full":
        return cases
    kept = []
    for index, case in enumerate(cases):
        if len(case.backends) == 1:
            kept.append(case)
            continue
        every = {"duckdb": duckdb_every, "postgresql": server_every}
        backends = tuple(b for b in case.backends if index % every.get(b, 1) == 0)
        if backends:
            kept.append(dataclasses.replace(case, backends=backends))
    return kept


CASES = [*_sample(cases_data.CASES), *_sample(cases_manifest.CASES), *_sample(cases_names.CASES),
         *_sample(cases_config.CASES), *_sample(cases_s3.CASES), *cases_secrets.CASES]


def _context(case: Case, backend: str, tmp_path: Path, source: BaseSource, make_target: Any, gen: Any) -> Ctx:
    root = tmp_path / "bucket"
    if case.baseline if case.source_tree is None else case.source_tree:
        copy_tree(source.root, root)
        truth = copy.deepcopy(source.truth)
    else:
        root.mkdir()
        truth = {}
    target = make_target(backend, case.baseline)
    return Ctx(root=root, gen=gen, truth=truth, backend=backend, target=target, workdir=tmp_path)


def _source_env(ctx: Ctx, case: Case, s3: S3) -> dict[str, str]:
    if case.via == "local":
        ctx.args = ["--source-dir", str(ctx.root), *ctx.args]
        return s3_env(s3.endpoint, None)
    bucket = s3.new_bucket()
    s3.upload_tree(ctx.root, bucket)
    ctx.bucket = bucket
    endpoint = ctx.proxy.endpoint if ctx.proxy is not None else s3.endpoint
    return s3_env(endpoint, bucket)


def _tables_from_report(ctx: Ctx, result: Result) -> None:
    """The table each export went to, as the import reported it (the contract's rule when it reported none)."""
    try:
        periods = result.json().get("periods") or []
    except ValueError:
        return
    for outcome in periods:
        if outcome.get("table"):
            ctx.tables.setdefault(outcome["export_name"], outcome["table"])


def _verify(case: Case, ctx: Ctx, result: Result, extra_outputs: list[str]) -> None:
    if case.victim_loads is None:
        case = dataclasses.replace(case, victim_loads=result.code == 0)
    assert_common(result, code=case.code, culprit=resolve_culprit(case, ctx))
    if case.destination_broken:
        assert_no_secret(output_of(result), *extra_outputs)
        if case.check:
            case.check(ctx, result, None)  # type: ignore[arg-type]
        return
    back = read_back(ctx.target)
    assert_no_secret(output_of(result), back.state_text, *extra_outputs)
    if case.collision:
        assert_state_loose(back)
    else:
        _tables_from_report(ctx, result)
        assert_months(ctx, case, result, back)
        assert_state(ctx, case, back)
    if case.check:
        case.check(ctx, result, back)


@pytest.mark.parametrize(("case", "backend"), case_params(CASES))
def test_case(case: Case, backend: str, tmp_path: Path, corpus_source: BaseSource, make_target: Any, gen: Any,
              s3_server: S3) -> None:
    ctx = _context(case, backend, tmp_path, corpus_source, make_target, gen)
    ctx.s3 = s3_server
    proxy = CorpusProxy(s3_server.endpoint).start() if case.via == "proxy" else None
    ctx.proxy = proxy
    try:
        case.damage(ctx)
        env = {**_source_env(ctx, case, s3_server), **ctx.target.env()}
        ctx.notes["env"] = {**env, **ctx.env}
        result = import_cur(ctx, env)
    finally:
        if proxy is not None:
            proxy.stop()
    _verify(case, ctx, result, [])


# ------------------------------------------------------------------------------------------ signals


def _wait_for(condition: Any, proc: subprocess.Popen[str], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the import ended ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize(("case", "backend"), case_params(cases_signals.CASES))
def test_signal(case: Case, backend: str, tmp_path: Path, corpus_source: BaseSource, make_target: Any, gen: Any,
                s3_server: S3) -> None:
    """SIGINT/SIGTERM while S3 holds one request of the victim month: exit 130/143, no ``running`` row (the
    attempt ``interrupted`` when it had begun), data untouched; then the next run completes."""
    ctx = _context(case, backend, tmp_path, corpus_source, make_target, gen)
    ctx.s3 = s3_server
    with CorpusProxy(s3_server.endpoint) as proxy:
        ctx.proxy = proxy
        # registers the held request; returns (signal, path held, requests let through first, signals, gap)
        signum, held, skip, signals, gap = case.damage(ctx)
        env = {**_source_env(ctx, case, s3_server), **ctx.target.env(), **ctx.env}
        proc = subprocess.Popen([sys.executable, str(ROOT / "finops"), "aws", "import-cur", "--json", *ctx.args],
                                env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: proxy.count(path=held, method="GET") > skip, proc, f"a request for {held}")
            time.sleep(0.3)
            for _ in range(signals):
                proc.send_signal(signum)
                time.sleep(gap)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        result = Result(proc.returncode, out, err)
        _verify(case, ctx, result, [])
        back = read_back(ctx.target)
        attempts = [r for r in back.state if (r["export_name"], r["billing_period"]) == case.victim
                    and r["version_id"] == ctx.restated[case.victim].version_id]
        if case.check is None:  # the attempt had begun: recorded interrupted, with why
            assert [(r["status"], r["is_current"]) for r in attempts] == [("interrupted", False)], back.state_text
            assert (attempts[0]["error_message"] or "").startswith("interrupted"), attempts
        proxy.clear()
    # The next run, with S3 healthy, completes: the victim's new version and April load.
    again = import_cur(ctx, {**s3_env(s3_server.endpoint, ctx.bucket), **ctx.target.env()})
    done = Case(id=case.id + "-rerun", damage=case.damage, code=0, culprit=None, victim=case.victim, victim_loads=True)
    assert_common(again, code=0, culprit=None)
    back = read_back(ctx.target)
    assert_no_secret(output_of(again), back.state_text)
    assert_months(ctx, done, again, back)
    assert_state(ctx, done, back)
