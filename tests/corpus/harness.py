"""The adversarial corpus's machinery: a case is data, this module runs it and checks every promise.

A :class:`Case` says how to damage a copy of a known-good source (or the configuration, or S3 through the fault
proxy), what the run must exit with, which text must name the culprit, and which month (the *victim*) may fail.
:func:`run_case` builds the damaged source, starts from a copy of the baseline database (January–March of both
exports already loaded), runs ``finops aws import-cur --json`` once, and asserts, whatever the case:

* the exit code; no ``Traceback`` anywhere in the output; the culprit named in the output;
* every month other than the victim holds exactly the generator's rows and cost sum (old months unchanged, the
  new April loaded when the run could load anything); the victim holds its previous version unless it loads;
* no ``running`` row in ``_finops_load_state``; every current state row's ``row_count`` equals the rows its table
  holds for that period, and every period a table holds has one current row;
* none of the planted secrets in stdout, stderr or any state row.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, run_cli
from tests.integration.s3_faults import Fault, FaultProxy

# ------------------------------------------------------------------------------------------ the source

V1, V2 = "legacy-cur", "cur2-daily"
V1_PREFIX, V2_PREFIX = "cur", "exports"
BASE_PERIODS = ["2024-01", "2024-02", "2024-03"]
NEW_PERIOD = "2024-04"
ROWS = 20
SEEDS = {V1: 101, V2: 202}

# Planted secrets: recognisable, and each must appear in no output and no state row.
AWS_SECRET = "AwsPlantedSecret-9f3c1e7a"
PG_SECRET = "PgPlantedSecret-5d4e3f21"
SQL_SECRET = "SqlPlantedSecret-1a2b3c4d"
SECRETS = (AWS_SECRET, PG_SECRET, SQL_SECRET)

CREDENTIALS_URL = f"postgresql://finops:{SQL_SECRET}@127.0.0.1:1/finops"


def table_of(export: str) -> str:
    """The contract's table name (``cur2-daily`` → ``cur2_daily``)."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", export).strip("_").lower()


# ------------------------------------------------------------------------------------------ a case


@dataclass
class Ctx:
    """What a case's damage function works on."""

    root: Path  # the source tree (a copy of the baseline tree), laid out like the bucket
    gen: Any
    truth: dict[str, dict[str, Any]]  # export -> period -> PeriodTruth of what the baseline database holds
    backend: str
    target: Any
    workdir: Path
    proxy: CorpusProxy | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    #: (export, period) -> the truth of the version the victim was restated to
    restated: dict[tuple[str, str], Any] = field(default_factory=dict)
    #: exports whose table differs from the default snake_case rule, or extra exports of a names case
    tables: dict[str, str] = field(default_factory=dict)
    bucket: str | None = None
    s3: Any = None
    notes: dict[str, Any] = field(default_factory=dict)

    # helpers for damage functions ---------------------------------------------------------------------

    def restate(self, export: str, period: str = "2024-02", version: str = "restated-0002", **kwargs: Any) -> Any:
        """AWS re-delivers ``period`` of ``export`` as a new version (new rows, new total)."""
        if export == V1:
            truth = self.gen.write_cur1_export(self.root, prefix=V1_PREFIX, export_name=V1, periods=[period],
                                               rows_per_period=kwargs.pop("rows", ROWS), seed=SEEDS[V1] + 1,
                                               assembly_ids={period: version}, **{"parts": 2, **kwargs})
        else:
            truth = self.gen.write_cur2_export(self.root, prefix=V2_PREFIX, export_name=V2, periods=[period],
                                               rows_per_period=kwargs.pop("rows", ROWS), seed=SEEDS[V2] + 1,
                                               execution_ids={period: version},
                                               **{"files_per_period": 2, **kwargs})
        self.restated[(export, period)] = truth.periods[period]
        return truth.periods[period]

    def path(self, key: str) -> Path:
        return self.root / key

    def data_file(self, export: str, index: int = -1, period: str = "2024-02") -> Path:
        """A data file of the restated version of ``period``."""
        return self.root / self.restated[(export, period)].data_keys[index]

    def manifest(self, export: str, period: str = "2024-02") -> Path:
        return self.root / self.restated[(export, period)].manifest_key

    def edit_manifest(self, export: str, change: Callable[[dict[str, Any]], Any], period: str = "2024-02") -> None:
        """Rewrite the current manifest of ``period`` (and, for v1, its copy in the assembly folder)."""
        for path in self._manifest_copies(export, period):
            doc = json.loads(path.read_text())
            result = change(doc)
            path.write_text(json.dumps(doc if result is None else result))

    def write_manifest(self, export: str, raw: bytes, period: str = "2024-02") -> None:
        for path in self._manifest_copies(export, period):
            path.write_bytes(raw)

    def _manifest_copies(self, export: str, period: str) -> list[Path]:
        main = self.manifest(export, period)
        copies = [main]
        if export == V1:
            data_dir = self.data_file(export, 0, period).parent
            copy = data_dir / main.name
            if copy.exists():
                copies.append(copy)
        return copies

    def fault(self, fault: Fault) -> Fault:
        assert self.proxy is not None, "an S3 fault case needs via='proxy'"
        return self.proxy.add(fault)


Damage = Callable[[Ctx], Any]


@dataclass
class Case:
    """One adversarial case, as data."""

    id: str
    damage: Damage
    code: int | tuple[int, ...]
    #: text that must appear in the output (stdout + stderr); a callable gets the context after the damage
    culprit: str | Callable[[Ctx], str] | None
    #: the month that may fail; it keeps its previous version (``None``: no month is expected to fail)
    victim: tuple[str, str] | None = (V1, "2024-02")
    #: the victim loads its new version after all (a transient fault that the retries absorb); ``None``: it
    #: loads when the run exits 0, else keeps its previous version
    victim_loads: bool | None = False
    backends: tuple[str, ...] = ("duckdb", "postgresql")
    #: ``s3`` (moto), ``proxy`` (moto behind the fault proxy), ``local`` (``--source-dir``)
    via: str = "s3"
    #: start from the baseline database (January–March loaded); else from an empty one
    baseline: bool = True
    #: start from the baseline source tree (default: when starting from the baseline database)
    source_tree: bool | None = None
    #: April (new in the source): "loaded" | "absent" | "any"; default: loaded when the run could load (exit 0/1)
    april: str | None = None
    #: extra assertions, called with (ctx, result, readback)
    check: Callable[[Ctx, Result, Readback], None] | None = None
    xfail: str | None = None
    #: exports whose names collide: the case's own check judges the months; the state is checked loosely
    collision: bool = False
    #: the destination may be unreadable afterwards (a broken database file): months are not read back
    destination_broken: bool = False

    def params(self, backends: Iterable[str] | None = None) -> list[Any]:
        marks_of = {"duckdb": [pytest.mark.duckdb], "postgresql": [pytest.mark.postgresql],
                    "sqlite": [pytest.mark.sql]}
        out = []
        for backend in backends or self.backends:
            marks = list(marks_of[backend])
            if self.xfail:
                marks.append(pytest.mark.xfail(strict=True, reason=self.xfail))
            out.append(pytest.param(self, backend, id=f"{self.id}-{backend}", marks=marks))
        return out


def case_params(cases: list[Case]) -> list[Any]:
    ids = [c.id for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, duplicates
    return [p for c in cases for p in c.params()]


# ------------------------------------------------------------------------------------------ the proxy


@dataclass
class SlowFault(Fault):
    """Forwarded, but only after ``delay`` seconds (a slow S3, or a load held in the middle)."""

    delay: float = 0.0


@dataclass
class LaterFault(Fault):
    """A fault that lets its first ``skip`` matching requests through untouched (boto3's sniffing read of a file,
    say), so that the one after — DuckDB's own reader — meets it."""

    skip: int = 0
    skipped: int = field(default=0, init=False)

    def matches(self, method: str, path: str, query: str, ranged: bool) -> bool:
        if not super().matches(method, path, query, ranged):
            return False
        if self.skipped < self.skip:
            self.skipped += 1
            return False
        return True


class CorpusProxy(FaultProxy):
    """:class:`FaultProxy` plus slow answers (a :class:`SlowFault` sleeps before it is forwarded)."""

    def _pick(self, method: str, path: str, query: str, range_header: str | None) -> Fault | None:
        fault = super()._pick(method, path, query, range_header)
        if isinstance(fault, SlowFault) and fault.delay:
            time.sleep(fault.delay)
        return fault


# ------------------------------------------------------------------------------------------ reading back


@dataclass
class Readback:
    """What the database holds after the run."""

    totals: dict[str, dict[str, tuple[int, Decimal]]]  # table -> period -> (rows, cost)
    state: list[dict[str, Any]]  # every row of _finops_load_state
    state_text: str  # the state rows as text, for the secret check


STATE_COLUMNS = ("vendor", "export_name", "billing_period", "version_id", "data_format_version", "source_location",
                 "status", "file_count", "row_count", "started_at", "finished_at", "error_message", "is_current")


def read_back(target: Any, dataset: str = "aws_billing") -> Readback:
    if getattr(target, "name", "") == "duckdb" and not Path(target.path).exists():
        return Readback({}, [], "")  # the run created nothing
    tables = [t for (t,) in target.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", (dataset,))]
    totals: dict[str, dict[str, tuple[int, Decimal]]] = {}
    state: list[dict[str, Any]] = []
    for table in tables:
        if table == "_finops_load_state":
            rows = target.query(f"SELECT {', '.join(STATE_COLUMNS)} FROM {target.table(table, dataset)}")
            state = [dict(zip(STATE_COLUMNS, row, strict=True)) for row in rows]
        elif not table.startswith("_"):
            columns = {c for (c,) in target.query(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                (dataset, table))}
            if "billing_period" not in columns:
                continue
            cost = "line_item_unblended_cost" if "line_item_unblended_cost" in columns else "0"
            rows = target.query(f"SELECT billing_period, COUNT(*), SUM({cost}) FROM {target.table(table, dataset)} "
                                "GROUP BY billing_period")
            totals[table] = {p: (int(n), Decimal(str(c or 0))) for p, n, c in rows}
    return Readback(totals, state, "\n".join(repr(sorted(r.items())) for r in state))


def same_month(found: tuple[int, Decimal] | None, truth: Any) -> bool:
    return (found is not None and found[0] == truth.rows
            and abs(found[1] - truth.unblended_cost) <= Decimal("1e-6"))


def describe_month(found: tuple[int, Decimal] | None) -> str:
    return "absent" if found is None else f"{found[0]} rows, cost {found[1]}"


# ------------------------------------------------------------------------------------------ assertions


def output_of(result: Result) -> str:
    return result.stdout + "\n" + result.stderr


def assert_common(result: Result, *, code: int | tuple[int, ...], culprit: str | None) -> None:
    out = output_of(result)
    codes = code if isinstance(code, tuple) else (code,)
    assert result.code in codes, f"exit {result.code}, expected {codes}:\n{out[-6000:]}"
    assert "Traceback" not in out, out[-6000:]
    if culprit is not None:
        assert culprit in out, f"culprit {culprit!r} not named:\n{out[-6000:]}"
    if result.stdout.strip():  # --json: one JSON document, nothing else on stdout
        json.loads(result.stdout)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"planted secret {secret!r} leaked:\n{text[-4000:]}"


def assert_no_secret_in_files(ctx: Ctx) -> None:
    """Nothing the run wrote — the DuckDB file, the data folder (staging, logs) — holds a planted secret."""
    paths = [p for p in (ctx.workdir / "work").rglob("*") if p.is_file()] if (ctx.workdir / "work").exists() else []
    db = getattr(ctx.target, "path", None)
    if db is not None and Path(db).is_file():
        paths.append(Path(db))
    for path in paths:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"planted secret {secret!r} written to {path}"


def assert_months(ctx: Ctx, case: Case, result: Result, back: Readback) -> None:
    """Every month holds the truth it must: the victim its previous version (or its new one), the rest theirs."""
    problems = []
    april = case.april or ("loaded" if result.code in (0, 1) else "absent")
    for export, periods in ctx.truth.items():
        table = ctx.tables.get(export, table_of(export))
        held = back.totals.get(table, {})
        for period, truth in periods.items():
            found = held.get(period)
            if period == NEW_PERIOD:
                if april == "loaded" and not same_month(found, truth):
                    problems.append(f"{export} {period} (new) must load: {describe_month(found)}, "
                                    f"expected {truth.rows} rows, cost {truth.unblended_cost}")
                if april == "absent" and found is not None:
                    problems.append(f"{export} {period} must not load: {describe_month(found)}")
                if april == "any" and found is not None and not same_month(found, truth):
                    problems.append(f"{export} {period} holds wrong numbers: {describe_month(found)}")
                continue
            if not case.baseline:
                if found is not None and not same_month(found, truth):
                    problems.append(f"{export} {period}: {describe_month(found)}, expected {truth.rows} rows, "
                                    f"cost {truth.unblended_cost}")
                elif found is None and (export, period) != case.victim and result.code in (0, 1):
                    problems.append(f"{export} {period} must load: absent")
                continue
            new = ctx.restated.get((export, period))
            if case.victim_loads and new is not None and (export, period) == case.victim:
                if not same_month(found, new):
                    problems.append(f"{export} {period} must hold its new version: {describe_month(found)}, "
                                    f"expected {new.rows} rows, cost {new.unblended_cost}")
            elif not same_month(found, truth):
                what = "its previous version" if (export, period) == case.victim else "the baseline"
                problems.append(f"{export} {period} must hold {what}: {describe_month(found)}, expected "
                                f"{truth.rows} rows, cost {truth.unblended_cost}")
    assert not problems, "\n".join(problems) + "\n" + output_of(result)[-4000:]


def assert_state(ctx: Ctx, case: Case, back: Readback) -> None:
    running = [r for r in back.state if r["status"] == "running"]
    assert not running, f"rows left running: {running}"
    by_export_table = {e: ctx.tables.get(e, table_of(e)) for e in {r["export_name"] for r in back.state}}
    current: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in back.state:
        if row["is_current"]:
            current.setdefault((row["export_name"], row["billing_period"]), []).append(row)
    problems = []
    claimed: dict[tuple[str, str], int] = {}
    for (export, period), rows in current.items():
        if len(rows) > 1:
            problems.append(f"{export} {period}: {len(rows)} current rows")
        table = by_export_table[export]
        claimed[(table, period)] = claimed.get((table, period), 0) + int(rows[0]["row_count"] or 0)
    for (table, period), rows_claimed in claimed.items():
        held = back.totals.get(table, {}).get(period, (0, Decimal(0)))[0]
        if held != rows_claimed:
            problems.append(f"state claims {rows_claimed} rows of {table} {period}; the table holds {held}")
    for table, periods in back.totals.items():
        for period, (rows, _cost) in periods.items():
            if rows and (table, period) not in claimed:
                problems.append(f"{table} {period} holds {rows} rows that no current state row accounts for")
    if case.baseline and case.victim is not None and not case.victim_loads:
        export, period = case.victim
        old = ctx.truth[export][period].version_id
        cur = [r["version_id"] for r in current.get((export, period), [])]
        if cur != [old]:
            problems.append(f"the current version of {export} {period} is {cur}, expected the previous {old}")
        new = ctx.restated.get(case.victim)
        if new is not None:
            for row in back.state:
                same = (row["export_name"], row["billing_period"], row["version_id"]) == (export, period,
                                                                                         new.version_id)
                if same and (row["is_current"] or row["status"] == "completed"):
                    problems.append(f"the failed version is recorded as {row['status']}, "
                                    f"current={row['is_current']}")
    if case.victim is not None and case.victim_loads and case.victim in ctx.restated:
        new_version = ctx.restated[case.victim].version_id
        cur = [(r["version_id"], r["status"]) for r in current.get(case.victim, [])]
        if cur != [(new_version, "completed")]:
            problems.append(f"the victim's current version is {cur}, expected {new_version} completed")
    assert not problems, "\n".join(problems) + "\n" + back.state_text[-4000:]


def assert_state_loose(back: Readback) -> None:
    """No ``running`` row, and no current state row claims rows that no table holds for its period."""
    running = [r for r in back.state if r["status"] == "running"]
    assert not running, f"rows left running: {running}"
    claimed: dict[str, int] = {}
    for row in back.state:
        if row["is_current"]:
            period, rows = row["billing_period"], int(row["row_count"] or 0)
            claimed[period] = claimed.get(period, 0) + rows
            held = {periods.get(period, (0, 0))[0] for periods in back.totals.values()}
            assert rows in held | {0}, f"{row['export_name']} {period}: state claims {rows} rows; tables hold {held}"
    for period, rows in claimed.items():
        held_total = sum(periods.get(period, (0, 0))[0] for periods in back.totals.values())
        assert rows <= held_total, f"state claims {rows} rows for {period}; the tables hold {held_total}"


def resolve_culprit(case: Case, ctx: Ctx) -> str | None:
    return case.culprit(ctx) if callable(case.culprit) else case.culprit


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True)


def import_cur(ctx: Ctx, env: dict[str, str], *extra: str, timeout: float = 240) -> Result:
    return run_cli("aws", "import-cur", "--json", *ctx.args, *extra, env={**env, **ctx.env}, timeout=timeout)
