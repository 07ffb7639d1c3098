"""Names: report names holding glob characters read exactly their own keys (never a neighbour's); exports whose
names collide (case, ``-`` vs ``_``, one name under two parents) get distinct tables or a clear refusal, and the
state never claims rows a table does not hold. Each case starts from an empty database and its own source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import Result
from tests.corpus.harness import BASE_PERIODS, V2, V2_PREFIX, Case, Ctx, Readback, same_month, table_of

PERIODS = ["2024-01", "2024-02"]


_TOKENS = {" ": "_sp_", "+": "_plus_", "%": "_pct_", "*": "_star_", "?": "_q_", "[": "_lb_", "]": "_rb_",
           "{": "_lc_", "}": "_rc_", ",": "_comma_", "/": "_slash_", "é": "_eacute_"}


def _ident(text: str) -> str:
    return "".join(_TOKENS.get(c, c if c.isalnum() or c == "-" else "_") for c in text)


def _write(ctx: Ctx, label: str, name: str, *, version: str = "v2", parent: str = "exports", seed: int = 1,
           **kwargs: Any) -> None:
    """One export ``name`` under ``parent``; its truth kept under ``label``."""
    if version == "v1":
        truth = ctx.gen.write_cur1_export(ctx.root, prefix=parent, export_name=name, periods=PERIODS,
                                          rows_per_period=20, parts=2, seed=seed, **kwargs)
    else:
        truth = ctx.gen.write_cur2_export(ctx.root, prefix=parent, export_name=name, periods=PERIODS,
                                          rows_per_period=20, files_per_period=2, seed=seed, **kwargs)
    ctx.truth[label] = dict(truth.periods)


def _exports(*specs: tuple[str, dict[str, Any]]) -> Callable[[Ctx], None]:
    def damage(ctx: Ctx) -> None:
        for seed, (name, kwargs) in enumerate(specs, start=11):
            kwargs = dict(kwargs)
            label = kwargs.pop("label", name)
            _write(ctx, label, name, seed=seed, **kwargs)

    return damage


def _glob(name: str, neighbour: str, via: str = "s3", **kwargs: Any) -> Case:
    """``name`` holds glob characters; ``neighbour`` is what the glob would also match. Both load, exactly."""
    ident = _ident(f"{name}-vs-{neighbour}")
    return Case(id=f"names-glob-{ident}-{kwargs.get('version', 'v2')}{'-local' if via == 'local' else ''}",
                damage=_exports((name, kwargs), (neighbour, kwargs)), code=0, culprit=None, victim=None,
                baseline=False, via=via)


def _selected(name: str, neighbour: str, **kwargs: Any) -> Case:
    """``--export-name name`` while ``neighbour`` (a name a client could confuse with it once URL-encoded or
    decoded) lies beside it: exactly ``name``'s rows load."""
    ident = _ident(f"{name}-beside-{neighbour}")

    def damage(ctx: Ctx) -> None:
        _write(ctx, "neighbour", neighbour, seed=31, **kwargs)
        del ctx.truth["neighbour"]  # present in the bucket, never to be loaded
        _write(ctx, name, name, seed=32, **kwargs)
        ctx.args.extend(["--export-name", name])

    return Case(id=f"names-selected-{ident}", damage=damage, code=0, culprit=None, victim=None, baseline=False)


def _distinct_or_refused(*labels: str, names: tuple[str, ...]) -> Callable[[Ctx, Result, Readback], None]:
    """Exit 0: every export's months, exactly, in a table of its own. Exit 1: the output names the colliding
    exports, and no table holds anything but one export's exact months."""

    def check(ctx: Ctx, result: Result, back: Readback) -> None:
        holders: dict[str, set[str]] = {}
        for label in labels:
            for table, periods in back.totals.items():
                if all(same_month(periods.get(p), t) for p, t in ctx.truth[label].items()) and set(periods) == set(
                        ctx.truth[label]):
                    holders.setdefault(label, set()).add(table)
        for table, periods in back.totals.items():  # never a mix: each month one export's exact numbers
            for period, found in periods.items():
                assert any(same_month(found, ctx.truth[label].get(period)) for label in labels
                           if period in ctx.truth[label]), (table, period, found)
        if result.code == 0:  # exact months of different exports cannot share a table: one each, distinct
            missing = [label for label in labels if label not in holders]
            assert not missing, f"exit 0, but no table holds all of {missing} (shared silently?): {back.totals}"
        else:
            out = result.stdout + result.stderr
            assert all(name in out for name in names), f"the refusal does not name {names}:\n{out[-3000:]}"

    return check


def _collision(ident: str, *specs: tuple[str, dict[str, Any]], names: tuple[str, ...], xfail: str | None = None,
               **kw: Any) -> Case:
    labels = tuple(s[1].get("label", s[0]) for s in specs)
    return Case(id=f"names-collide-{ident}", damage=_exports(*specs), code=(0, 1), culprit=None, victim=None,
                baseline=False, check=_distinct_or_refused(*labels, names=names), collision=True, xfail=xfail, **kw)


def _newcomer(name: str, *args: str) -> Callable[[Ctx], None]:
    """A second export whose table would be the baseline's ``cur2_daily`` appears next to it."""

    def damage(ctx: Ctx) -> None:
        truth = ctx.gen.write_cur2_export(ctx.root, prefix=V2_PREFIX, export_name=name, periods=PERIODS,
                                          rows_per_period=20, files_per_period=2, seed=77)
        ctx.notes["newcomer"] = (name, dict(truth.periods))
        ctx.args.extend(args)

    return damage


def _newcomer_check(ctx: Ctx, result: Result, back: Readback) -> None:
    """The loaded export keeps its months exactly; the newcomer is refused naming both, or gets its own table."""
    name, truth = ctx.notes["newcomer"]
    held = back.totals.get(table_of(V2), {})
    for period, expected in ctx.truth[V2].items():
        if period in BASE_PERIODS:
            assert same_month(held.get(period), expected), (period, held.get(period), result.stdout[-3000:])
    if result.code == 0:
        assert any(set(periods) == set(truth) and all(same_month(periods[p], t) for p, t in truth.items())
                   for table, periods in back.totals.items() if table != table_of(V2)), back.totals
    else:
        out = result.stdout + result.stderr
        assert name in out and V2 in out, out[-3000:]


def _newcomer_case(ident: str, name: str, *args: str, **kw: Any) -> Case:
    return Case(id=f"names-collide-{ident}", damage=_newcomer(name, *args), code=(0, 1), culprit=None, victim=None,
                check=_newcomer_check, collision=True, **kw)


CASES: list[Case] = [
    _newcomer_case("newcomer-next-to-loaded", "cur2_daily"),
    _newcomer_case("newcomer-selected-alone", "CUR2-Daily", "--export-name", "CUR2-Daily"),
    _glob("cur*daily", "cur-x-daily"),
    _glob("cur*daily", "cur-x-daily", via="local"),
    _glob("team?", "teamA"),
    _glob("cost[s]", "costs"),
    _glob("cur{a,b}", "cura"),
    _glob("legacy*", "legacy-eu", version="v1", fmt="parquet", compression="none"),
    _glob("cur[1]", "cur1", version="v1"),
    _glob("cur%20daily", "cur daily"),
    _glob("cur%2Fdaily", "cur-x"),
    _selected("cur+daily", "cur daily"),
    _selected("cur daily", "cur+daily"),
    _selected("cur%2Bdaily", "cur+daily"),
    _selected("café-daily", "cafe-daily"),
    _collision("case", ("CUR-Daily", {}), ("cur-daily", {}), names=("CUR-Daily", "cur-daily")),
    _collision("dash-underscore", ("cur-daily", {}), ("cur_daily", {}), names=("cur-daily", "cur_daily")),
    _collision("case-v1", ("Legacy-Cur", {"version": "v1", "parent": "cur"}),
               ("legacy_cur", {"version": "v1", "parent": "cur"}), names=("Legacy-Cur", "legacy_cur")),
    _collision("v1-vs-v2", ("team-report", {"version": "v1", "parent": "cur"}),
               ("team_report", {"version": "v2", "parent": "exports"}), names=("team-report", "team_report")),
    _collision("two-parents", ("cur2-daily", {"parent": "team-a", "label": "team-a/cur2-daily"}),
               ("cur2-daily", {"parent": "team-b", "label": "team-b/cur2-daily"}), names=("team-a", "team-b")),
    _collision("symbols-only-vs-export", ("---", {}), ("export", {}), names=("---", "export")),
    _collision("long-names", ("a" * 70 + "-one", {}), ("a" * 70 + "-two", {}), names=("a" * 70 + "-one",)),
    _collision("v1-and-v2-same-name", ("legacy-cur", {"version": "v1", "parent": "cur", "label": "v1/legacy-cur"}),
               ("legacy-cur", {"version": "v2", "parent": "exports", "label": "v2/legacy-cur"}),
               names=("legacy-cur",)),
    _newcomer_case("newcomer-named-like-a-focus-view", "cur2-daily-focus"),
    _newcomer_case("newcomer-named-focus", "focus"),
    _newcomer_case("newcomer-named-like-the-state-table", "_finops_load_state"),
    _collision("two-parents-v1", ("legacy-cur", {"version": "v1", "parent": "eu", "label": "eu/legacy-cur"}),
               ("legacy-cur", {"version": "v1", "parent": "us", "label": "us/legacy-cur"}), names=("eu/", "us/")),
]
