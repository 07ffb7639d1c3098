"""Where billing exports are read from: an S3 bucket (boto3) or a local folder laid out like one.

Vendor code lists and reads manifests through :class:`ObjectStore`; data files are read by the backend's
``DataReader``, which gets the same store (and, for native S3 readers, the credentials boto3 resolved through
:meth:`S3Store.connection_info`). boto3 is imported only when an S3 store is created.
"""

from __future__ import annotations

import io
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pydantic import SecretStr

from core.errors import SourceError

if TYPE_CHECKING:  # pragma: no cover
    import boto3

log = logging.getLogger(__name__)

# botocore error codes that mean "you cannot reach or may not read this source" (exit 3), not "one bad file".
_ACCESS_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "NoSuchBucket",
    "AllAccessDisabled",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
}


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

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (plain string prefix, paginated, in key order).

        Raises:
            SourceError: the store is unreachable or the credentials are rejected.
        """

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The whole object; meant for small objects such as manifests."""

    @abstractmethod
    def open(self, key: str) -> IO[bytes]:
        """A streaming, forward-only binary reader of the object."""

    @abstractmethod
    def open_random(self, key: str) -> IO[bytes]:
        """A seekable binary reader (Parquet footers live at the end); S3 serves it with range requests."""

    def read_head(self, key: str, size: int = 8) -> bytes:
        """The first ``size`` bytes: enough for magic-byte format detection."""
        with self.open_random(key) as handle:
            return handle.read(size)

    @abstractmethod
    def uri(self, key: str) -> str:
        """The URI a native reader opens: ``s3://bucket/key`` or an absolute local path."""

    @abstractmethod
    def describe(self) -> str:
        """Where this store points, for messages and the state table (no secrets)."""

    def key_from_uri(self, uri: str) -> str:
        """Turn what a manifest wrote (a key, ``/key`` or ``s3://bucket/key``) into a key of this store."""
        if uri.startswith(("s3://", "s3a://", "s3n://")):
            return uri.split("://", 1)[1].split("/", 1)[1] if "/" in uri.split("://", 1)[1] else ""
        return uri.lstrip("/")


class LocalStore(ObjectStore):
    """A local folder laid out like the bucket (``--source-dir``)."""

    scheme = "file"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise SourceError(f"Source folder {self.root} does not exist or is not a folder.")

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        prefix = prefix.lstrip("/")
        # Walk only the deepest folder the prefix names; the rest of the prefix filters names.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return
        found: list[ObjectInfo] = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(ObjectInfo(key=key, size=path.stat().st_size))
        yield from sorted(found, key=lambda o: o.key)

    def _path(self, key: str) -> Path:
        path = (self.root / key.lstrip("/")).resolve()
        if self.root not in path.parents and path != self.root:
            raise SourceError(f"Key {key!r} points outside the source folder {self.root}.")
        return path

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
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


class S3Store(ObjectStore):
    """An S3 (or S3-compatible) bucket read through boto3's standard credential chain."""

    scheme = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        profile: str | None = None,
    ) -> None:
        import boto3  # the S3 client is only needed when reading from S3
        from botocore.config import Config as BotoConfig

        self.bucket = bucket
        self._session: boto3.Session = boto3.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
            profile_name=profile,
        )
        self.region = self._session.region_name or "us-east-1"
        # boto3 already honours AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL; an explicit [aws] endpoint_url wins.
        self._client: Any = self._session.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=self.region,
            config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60),
        )
        self.endpoint_url: str | None = self._client.meta.endpoint_url if self._has_custom_endpoint(endpoint_url) else None

    @staticmethod
    def _has_custom_endpoint(explicit: str | None) -> bool:
        return bool(explicit or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))

    def _translate(self, exc: Exception, what: str) -> Exception:
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return SourceError(
                f"No AWS credentials found while {what}.",
                hint="Set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use an instance role.",
            )
        if isinstance(exc, EndpointConnectionError):
            return SourceError(f"Cannot reach the S3 endpoint while {what}: {exc}")
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _ACCESS_CODES or status == 403:
                return SourceError(f"S3 refused access to s3://{self.bucket} while {what}: {code or exc}")
            if code in ("NoSuchKey", "NotFound", "404") or status == 404:  # as LocalStore: the file is missing
                return FileNotFoundError(f"s3://{self.bucket}: no such object while {what}")
        from botocore.exceptions import BotoCoreError

        if isinstance(exc, BotoCoreError):
            return SourceError(f"S3 error while {what}: {exc}")
        return exc

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix.lstrip("/")):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(key=obj["Key"], size=int(obj.get("Size", 0)), etag=obj.get("ETag"))
        except Exception as exc:  # noqa: BLE001 - translated at the boundary, re-raised otherwise
            raise self._translate(exc, f"listing s3://{self.bucket}/{prefix}") from exc

    def _call(self, key: str, operation: str, **kwargs: Any) -> Any:
        """One S3 call on ``key``, with access and network failures translated to :class:`SourceError`."""
        try:
            return getattr(self._client, operation)(Bucket=self.bucket, Key=key, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated at the boundary, re-raised otherwise
            translated = self._translate(exc, f"reading s3://{self.bucket}/{key}")
            if translated is exc:
                raise
            raise translated from exc

    def read_bytes(self, key: str) -> bytes:
        return self._call(key, "get_object")["Body"].read()

    def read_head(self, key: str, size: int = 8) -> bytes:
        """One ranged GET of ``size`` bytes (not a HEAD plus a buffer-sized read)."""
        return self._call(key, "get_object", Range=f"bytes=0-{size - 1}")["Body"].read()

    def open(self, key: str) -> IO[bytes]:
        return self._call(key, "get_object")["Body"]

    def open_random(self, key: str) -> IO[bytes]:
        size = int(self._call(key, "head_object")["ContentLength"])
        return io.BufferedReader(_RangedS3Object(self, key, size), buffer_size=8 * 1024 * 1024)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key.lstrip('/')}"

    def describe(self) -> str:
        return f"s3://{self.bucket}"

    def connection_info(self) -> S3ConnectionInfo:
        """The credentials boto3 resolved (env, profile, SSO, role…), frozen for a native reader."""
        creds = self._session.get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
        return S3ConnectionInfo(
            region=self.region,
            access_key_id=frozen.access_key if frozen else None,
            secret_access_key=SecretStr(frozen.secret_key) if frozen and frozen.secret_key else None,
            session_token=SecretStr(frozen.token) if frozen and frozen.token else None,
            endpoint_url=self.endpoint_url,
        )


class _RangedS3Object(io.RawIOBase):
    """A seekable S3 object: each read is one ranged GET (buffered by the caller)."""

    def __init__(self, store: S3Store, key: str, size: int) -> None:
        self._store, self._key, self._size, self._pos = store, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        end = min(self._pos + len(buffer), self._size) - 1
        response = self._store._call(self._key, "get_object", Range=f"bytes={self._pos}-{end}")  # errors translated
        try:
            data = response["Body"].read()
        except Exception as exc:  # noqa: BLE001 - a stream cut mid-body (ResponseStreamingError): translated
            raise self._store._translate(exc, f"reading s3://{self._store.bucket}/{self._key}") from exc
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)
