"""Secrets: besides the secrets planted in every case's environment (AWS_SECRET_ACCESS_KEY, POSTGRESQL_PASSWORD,
a ``sql`` URL password), these cases put them where users do — a config file — and run every reporting command
after a failed month; none may print them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import Result, run_cli
from tests.corpus.harness import AWS_SECRET, PG_SECRET, SQL_SECRET, V2, Case, Ctx, Readback, assert_no_secret

FEB = "2024-02"

REPORTING = [
    ("config", "show", "--json"),
    ("config", "show"),
    ("backends", "check", "--json"),
    ("aws", "show-state", "--json"),
    ("aws", "show-state", "--billing-period", FEB, "--export-name", V2, "--json"),
    ("aws", "list-manifests", "--json"),
    ("aws", "list-exports", "--json"),
    ("aws", "import-cur", "--dry-run", "--json"),
    ("aws", "import-cur", "--dry-run"),
]


def _broken_february(ctx: Ctx) -> None:
    ctx.restate(V2)
    path = ctx.data_file(V2)
    path.write_bytes(path.read_bytes()[:300])


def _with_config_file(ctx: Ctx) -> None:
    _broken_february(ctx)
    path = ctx.workdir / "config-with-secrets.toml"
    path.write_text(f'[aws]\nsecret_access_key = "{AWS_SECRET}"\naccess_key_id = "testing"\n\n'
                    f'[database.postgresql]\npassword = "{PG_SECRET}"\n\n'
                    f'[database.sql]\ncredentials = "postgresql://finops:{SQL_SECRET}@127.0.0.1:1/finops"\n')
    ctx.args.extend(["--config", str(path)])


def _reporting_commands(*extra: str) -> Callable[[Ctx, Result, Readback], None]:
    def check(ctx: Ctx, result: Result, _back: Readback) -> None:
        env = ctx.notes["env"]
        source = ["--source-dir", str(ctx.root)] if "--source-dir" in ctx.args else []
        for command in REPORTING:
            args = [*command, *extra]
            if command[0] == "aws":
                args += source
            out = run_cli(*args, env=env)
            text = out.stdout + out.stderr
            assert out.code in (0, 1), (args, out.code, text[-3000:])
            assert "Traceback" not in text, (args, text[-3000:])
            assert_no_secret(text)

    return check


def _case(ident: str, damage: Callable[[Ctx], None], **kw: Any) -> Case:
    return Case(id=f"secrets-{ident}", damage=damage, code=1, victim=(V2, FEB),
                culprit=lambda ctx: ctx.restated[(V2, FEB)].data_keys[-1], **kw)


CASES: list[Case] = [
    _case("reporting-commands-after-a-failure", _broken_february, check=_reporting_commands()),
    _case("in-the-config-file", _with_config_file,
          check=lambda ctx, result, back: _reporting_commands(*ctx.args)(ctx, result, back)),
]
