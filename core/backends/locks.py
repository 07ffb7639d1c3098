"""Cross-process locks for imports: an advisory file lock (server engines override it with their own)."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import DestinationError, LockTimeoutError

log = logging.getLogger(__name__)


@contextmanager
def file_lock(path: Path, *, what: str, timeout: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, polled until ``timeout``; released when the process dies."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise DestinationError(f"Cannot create the lock file {path}: {exc}") from exc
    with handle:
        deadline = time.monotonic() + max(timeout, 0)
        waited = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"Another import of {what} is still running (lock {path} held; waited {timeout:.0f} s).",
                        hint="Wait for it to finish, or raise [project] lock_timeout.",
                    ) from None
                if not waited:
                    log.warning("Another import of %s is running; waiting up to %.0f s for it", what, timeout)
                    waited = True
                time.sleep(0.2)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
