"""Where billing exports are read from: an S3 bucket (boto3) or a local folder laid out like one.

Vendor code lists and reads manifests through :class:`ObjectStore`; data files are read by the backend's
``DataReader``, which gets the same store (and, for native S3 readers, the credentials boto3 resolved through
:meth:`S3Store.connection_info`). boto3 is imported only when an S3 store is created; the S3 side lives in
:mod:`core.s3` and is re-exported here as ``S3Store``.

Errors, by who has to fail (the contract's exit codes):

* :class:`~core.errors.SourceError` (exit 3) only when the whole source is unusable: it cannot be reached or
  listed, or it rejects the credentials.
* :class:`~core.errors.LoadError` (exit 1, that period only) for one object that cannot be read: missing,
  cut mid-stream after the retries, changed while being read, a key this store refuses.
* ``OSError`` may still come out of :class:`LocalStore` (a file missing or unreadable); readers treat it as
  they treat ``LoadError``.

Keys are exact: what a manifest names is what is read. Nothing here strips a leading ``/``, collapses ``//``
or resolves ``..``; :func:`key_problem` says why a key is unfit and the callers refuse it.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pydantic import SecretStr

from core.errors import ConfigError, LoadError, SourceError

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from core.s3 import S3Store  # noqa: F401 - what the module __getattr__ below returns

#: Characters a glob-expanding reader (DuckDB's ``read_csv``/``read_parquet``, and ``?`` as the start of a URL
#: query in its ``s3://`` paths) would interpret instead of reading them literally. Legal in S3 keys, and AWS
#: allows ``*`` in report names, so a manifest may name such keys; :func:`needs_literal_read` tells an engine to
#: read those through the streaming reader instead.
GLOB_CHARACTERS = frozenset("*?[]{}")

_URI_SCHEMES = ("s3://", "s3a://", "s3n://")


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be handed to a reader as it is, or ``None`` when it can.

    Refused: an empty key, a leading ``/``, an empty segment (``a//b``, a trailing ``/``), ``.`` or ``..``
    segments, a backslash, NUL or any other control character. Each is something a reader, an HTTP client or
    a filesystem would normalise or interpret (``/`` stripped, ``..`` resolved, ``\\`` taken as a separator on
    Windows), so the object read would not be the object the manifest named; locally some of them escape the
    folder. AWS never writes such keys into a manifest.
    """
    if not key:
        return "is empty"
    if key.startswith("/"):
        return "starts with '/' (keys are used exactly as written; readers strip or mis-join a leading '/')"
    if "\\" in key:
        return "contains a backslash"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        return "contains a NUL or control character"
    segments = key.split("/")
    if "" in segments:
        return "has an empty path segment ('//' or a trailing '/')"
    if "." in segments or ".." in segments:
        return "has a '.' or '..' path segment"
    return None


def needs_literal_read(key: str) -> bool:
    """Whether ``key`` holds characters a glob-expanding reader would interpret (see :data:`GLOB_CHARACTERS`).

    An engine that hands paths to a native reader which expands globs (DuckDB) must not do so for such a key: it
    could read several objects, or none, instead of this one. It should read the file through the streaming
    reader (the store's ``open``/``open_random``), which takes the key literally.
    """
    return any(ch in GLOB_CHARACTERS for ch in key)


def short_repr(value: object, limit: int = 120) -> str:
    """``repr`` cut to a readable length: keys come from files we do not control and may be huge."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None = None


@dataclass(frozen=True)
class S3ConnectionInfo:
    """Credentials and endpoint exactly as boto3 resolved them, for native S3 readers (DuckDB httpfs…)."""

    region: str
    access_key_id: str | None
    secret_access_key: SecretStr | None
    session_token: SecretStr | None
    endpoint_url: str | None

    def __repr__(self) -> str:  # never leak a secret through a log line or a traceback
        return f"S3ConnectionInfo(region={self.region!r}, endpoint_url={self.endpoint_url!r}, access_key_id=***)"


class ObjectStore(ABC):
    """A read-only bucket-like namespace of keys."""

    #: ``s3`` or ``file``
    scheme: str
    #: The bucket this store reads, when known; ``s3://`` URIs naming another bucket are refused.
    bucket: str | None = None

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (plain string prefix, paginated, in key order).

        Raises:
            SourceError: the store is unreachable or the credentials are rejected.
        """

    @abstractmethod
    def read_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The whole object; meant for small objects such as manifests.

        Raises:
            LoadError: the object cannot be read, or is larger than ``max_bytes``.
            OSError: (local folders) the file is missing or unreadable.
            SourceError: the whole source is unreachable or rejects the credentials.
        """

    @abstractmethod
    def open(self, key: str) -> IO[bytes]:
        """A streaming, forward-only binary reader of the object (same errors as :meth:`read_bytes`)."""

    @abstractmethod
    def open_random(self, key: str) -> IO[bytes]:
        """A seekable binary reader (Parquet footers live at the end); S3 serves it with range requests."""

    def read_head(self, key: str, size: int = 8) -> bytes:
        """The first ``size`` bytes (fewer, or ``b""``, for a shorter object): enough for magic-byte sniffing."""
        with self.open_random(key) as handle:
            return handle.read(size)

    @abstractmethod
    def uri(self, key: str) -> str:
        """The URI a native reader opens: ``s3://bucket/key`` or an absolute local path.

        Raises:
            LoadError: the key is one this store refuses (see :func:`key_problem`).
        """

    @abstractmethod
    def describe(self) -> str:
        """Where this store points, for messages and the state table (no secrets)."""

    def needs_literal_read(self, key: str) -> bool:
        """See :func:`needs_literal_read`; here so that an engine holding only the store can ask."""
        return needs_literal_read(key)

    def key_from_uri(self, uri: str) -> str:
        """The key of this store that a manifest entry names: a plain key, or ``s3://bucket/key``.

        Nothing is resolved or normalised, with one documented exception: a report delivered with an empty prefix
        lists its keys as ``/<report>/…`` while the objects are ``<report>/…``, so one leading ``/`` is dropped.
        A URI naming another bucket is read from this one: exports copied or replicated to another bucket keep
        the bucket they were delivered to in their manifests.

        Raises:
            ValueError: a URI naming no object.
        """
        if not uri.startswith(_URI_SCHEMES):
            return uri[1:] if uri.startswith("/") and not uri.startswith("//") else uri
        bucket, sep, key = uri.split("://", 1)[1].partition("/")
        if not sep or not key:
            raise ValueError(f"{short_repr(uri)} names no object")
        if self.bucket is not None and bucket != self.bucket:
            log.debug("%s names bucket %r; reading it from %r", short_repr(uri), bucket, self.bucket)
        return key

    def _checked(self, key: str) -> str:
        problem = key_problem(key)
        if problem is not None:
            raise LoadError(f"Refusing to read key {short_repr(key)} from {self.describe()}: it {problem}.")
        return key


class LocalStore(ObjectStore):
    """A local folder laid out like the bucket (``--source-dir``).

    The folder stands for a bucket whose name we do not know, so ``s3://<any bucket>/key`` URIs are accepted
    (the manifest layer still requires one manifest to name a single bucket).
    """

    scheme = "file"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise SourceError(f"Source folder {self.root} does not exist or is not a folder.")

    def _inside(self, path: Path) -> bool:
        return path == self.root or self.root in path.parents

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        prefix = prefix.lstrip("/")  # a prefix comes from the configuration, where '/a/b' means 'a/b'
        # Walk only the deepest folder the prefix names; the rest of the prefix filters names.
        base = (self.root / prefix.rsplit("/", 1)[0]).resolve() if "/" in prefix else self.root
        if not self._inside(base):
            raise ConfigError(f"Prefix {short_repr(prefix)} points outside the source folder {self.root}.")
        if not base.is_dir():
            return
        found: list[ObjectInfo] = []
        for dirpath, _dirs, files in os.walk(base):  # symlinked folders are not followed
            for name in files:
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        size = path.stat().st_size
                    except OSError:  # a dangling symlink: listed, so that reading it fails that period only
                        size = 0
                    found.append(ObjectInfo(key=key, size=size))
        yield from sorted(found, key=lambda o: o.key)

    def _path(self, key: str) -> Path:
        """The file of ``key``; a key that is not canonical, or whose file (symlinks followed) lies outside the
        folder, fails that file (and so its period) with :class:`LoadError`, never the run."""
        path = (self.root / self._checked(key)).resolve()
        if not self._inside(path) or path == self.root:
            raise LoadError(f"Refusing to read key {short_repr(key)}: it resolves outside the source folder {self.root}.")
        return path

    def read_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        path = self._path(key)
        try:
            if max_bytes is not None and path.stat().st_size > max_bytes:
                raise LoadError(f"{key} is larger than {max_bytes} bytes.")
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{key} not found in {self.root}") from exc

    def open(self, key: str) -> IO[bytes]:
        return self._path(key).open("rb")

    def open_random(self, key: str) -> IO[bytes]:
        return self._path(key).open("rb")

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def describe(self) -> str:
        return str(self.root)


def __getattr__(name: str) -> Any:
    """``from core.storage import S3Store`` without importing the S3 side (and boto3's types) eagerly."""
    if name == "S3Store":
        from core.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
