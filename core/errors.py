"""One error hierarchy for the whole tool.

Every error a user can cause or meet carries the process exit code of the contract and a short title; the CLI
catches :class:`FinOpsError` once, prints it on stderr and exits with ``exit_code``. Anything else is a bug and
keeps its traceback (shown with ``--debug``).
"""

from __future__ import annotations


class FinOpsError(Exception):
    """Base class: a failure the user can act on."""

    exit_code: int = 1
    title: str = "Error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(FinOpsError):
    """Bad flag, bad config value, unknown backend, missing setting or missing extra (exit 2)."""

    exit_code = 2
    title = "Configuration error"


class MissingExtraError(ConfigError):
    """A backend's optional driver is not installed; the message carries the exact pip line."""

    title = "Missing optional dependency"

    def __init__(self, backend: str, extra: str, missing_module: str) -> None:
        super().__init__(
            f"The {backend!r} backend needs the Python package {missing_module!r}, which is not installed.",
            hint=f"pip install 'open-finops[{extra}]'",
        )
        self.backend = backend
        self.extra = extra


class SourceError(FinOpsError):
    """The billing source (S3 or a local folder) is unreachable or rejected the credentials (exit 3)."""

    exit_code = 3
    title = "Source unreachable"


class DestinationError(FinOpsError):
    """The database is unreachable or rejected the credentials (exit 4)."""

    exit_code = 4
    title = "Destination unreachable"


class ManifestError(FinOpsError):
    """A manifest could not be parsed; fails only its own billing period."""

    title = "Malformed manifest"

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"Manifest {key} is malformed: {reason}")
        self.key = key
        self.reason = reason


class LoadError(FinOpsError):
    """A billing period failed to load (corrupt file, type error…); the run goes on and exits 1."""

    title = "Load failed"


class LockTimeoutError(FinOpsError):
    """Another import of the same export holds the lock for longer than we were willing to wait."""

    exit_code = 1
    title = "Another import is running"


class Terminated(KeyboardInterrupt):
    """SIGTERM (cron wrappers, CI, ``timeout``): handled like Ctrl-C — the attempt is recorded ``interrupted``,
    nothing half-loaded is visible — and the process exits 143 instead of 130."""

    exit_code = 143

    #: set by the SIGTERM handler: a driver may turn our exception into its own interrupt on the way out
    received = False


def stop_code(exc: BaseException) -> int:
    """The exit code of an interrupt: 143 once SIGTERM was received (whatever a driver made of the exception
    it raised), 130 for Ctrl-C."""
    return 143 if isinstance(exc, Terminated) or Terminated.received else 130


def interrupt_in(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM hidden in ``exc``'s chain: a signal lands wherever the process is, and Python or a
    library may wrap it (``RuntimeError`` from ``__set_name__`` while a module is imported, a driver's own error)."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        if isinstance(node, KeyboardInterrupt):
            return node
        seen.add(id(node))
        wrapped = getattr(node, "exception", None)  # dlt keeps the step's error there
        node = node.__cause__ or node.__context__ or (wrapped if isinstance(wrapped, BaseException) else None)
    return None
