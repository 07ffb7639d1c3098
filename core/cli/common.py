"""Options every command shares, config loading from flags, and the single error handler."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from core.cli import output
from core.config import Config, check_backend_pairs
from core.errors import ConfigError, FinOpsError

F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="config.toml to read (default: ./config.toml if present).", show_default=False),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend", "-b",
        help="Database backend; beats OPEN_FINOPS_DATABASE_BACKEND and \\[database] backend (see `finops backends list`).",
        show_default=False,
    ),
]
DbConfigOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--database-config", "-D", metavar="KEY=VALUE",
        help="A setting of the selected backend, e.g. database_path=./x.duckdb (repeatable).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show debug logs and full tracebacks.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show what is happening (INFO logs on stderr).")]

_debug = {"on": bool(os.environ.get("FINOPS_DEBUG"))}


def set_debug(flag: bool, verbose: bool = False) -> None:
    _debug["on"] = _debug["on"] or flag
    output.setup_logging(debug=_debug["on"], verbose=verbose)


def parse_pairs(pairs: list[str] | None) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--database-config expects KEY=VALUE, got {pair!r}.")
        values[key.strip()] = value
    return values


def load_config(
    config_path: Path | None,
    *,
    backend: str | None = None,
    database_config: list[str] | None = None,
    aws: dict[str, Any] | None = None,
    project: dict[str, Any] | None = None,
) -> Config:
    """Flags become the highest-priority settings source; --database-config targets the selected backend,
    which the same single load decides (flag > env > file > default)."""
    overrides: dict[str, Any] = {"aws": aws or {}, "project": project or {}, "database": {}}
    if backend:
        overrides["database"]["backend"] = backend
    return Config.load(config_path, overrides=overrides, backend_pairs=parse_pairs(database_config))


def backend_overrides(backend: str, database_config: list[str] | None, flag: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs for one named backend (``db copy`` has a pair of flags, one per side)."""
    return check_backend_pairs(backend, parse_pairs(database_config), flag) if database_config else {}


def _json_error(exc: FinOpsError, code: int, kwargs: dict[str, Any]) -> None:
    if kwargs.get("json_out"):  # scripts parsing stdout still get one JSON document
        output.emit_json({"error": {"title": exc.title, "message": exc.message, "hint": exc.hint}, "exit_code": code})


def _fail(exc: FinOpsError, code: int, kwargs: dict[str, Any]) -> NoReturn:
    output.print_error(exc)
    _json_error(exc, code, kwargs)
    raise typer.Exit(code) from None


def _terminate_like_ctrl_c() -> None:
    """SIGTERM (what cron wrappers, CI and ``timeout`` send) unwinds like Ctrl-C, so the attempt is recorded
    ``interrupted`` and nothing half-loaded stays visible; the process then exits 143."""
    import signal
    import threading

    from core.errors import Terminated

    def handler(signum: int, frame: Any) -> None:
        Terminated.received = True
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _stopped(exc: KeyboardInterrupt, kwargs: dict[str, Any]) -> NoReturn:
    """Ctrl-C (exit 130) or SIGTERM (143): one line, the JSON document when asked, no traceback."""
    from core.errors import stop_code

    code = stop_code(exc)
    word = "Terminated" if code == 143 else "Interrupted"
    output.stderr.print(f"[yellow]{word}.[/yellow] Nothing half-loaded is visible; rerun to continue.")
    _json_error(FinOpsError(f"{word}.", hint="Rerun to continue."), code, kwargs)
    raise typer.Exit(code) from None


def guarded(func: F) -> F:
    """Turn library errors into one message on stderr and the contract's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        set_debug(bool(kwargs.get("debug")), bool(kwargs.get("verbose")))
        _terminate_like_ctrl_c()
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except FinOpsError as exc:
            if _debug["on"]:
                output.stderr.print_exception()
            _fail(exc, exc.exit_code, kwargs)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
            _stopped(exc, kwargs)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback without --debug
            from core.errors import interrupt_in

            stop = interrupt_in(exc)
            if stop is not None:  # a signal that a library wrapped in its own error
                _stopped(stop, kwargs)
            if _debug["on"]:
                raise
            error = FinOpsError(f"Unexpected error: {type(exc).__name__}: {exc}",
                                hint="Run again with --debug for the traceback.")
            _fail(error, 1, kwargs)

    return wrapper  # type: ignore[return-value]
