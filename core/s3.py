"""The S3 side of :mod:`core.storage`: boto3 calls, retries, and the translation of every boto3/botocore error.

Retries, bounded both ways:

* botocore's ``standard`` retry mode re-sends a request answered 5xx, ``SlowDown``/throttling or reset before a
  response arrived (:data:`MAX_RETRIES` attempts, jittered exponential backoff).
* A body cut *while it is read* is past botocore: :class:`_RangedS3Object` and :class:`_S3Stream` ask again from
  the offset they reached (at most :data:`BODY_RETRIES` times per read), pinned with ``If-Match`` to the ETag
  first seen, so a file replaced in the meantime fails instead of being stitched from two versions.

Translation (see :mod:`core.storage` for why): no credentials, access refused, bucket missing, endpoint
unreachable, a listing that keeps failing → :class:`SourceError`; anything about one object → :class:`LoadError`
naming ``s3://bucket/key``. Messages are built here from the error code and HTTP status, never from a response
body (a proxy's HTML page) or a signed request, so they stay short and hold no secret.
"""

from __future__ import annotations

import http
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

from pydantic import SecretStr

from core.errors import FinOpsError, LoadError, SourceError
from core.storage import ObjectInfo, ObjectStore, S3ConnectionInfo
from core.storage import short_repr as _short

log = logging.getLogger(__name__)

#: Retries after the first attempt (botocore's ``max_attempts`` counts retries) in its standard mode: 5xx,
#: SlowDown, throttling, connection resets. A request is sent at most ``1 + MAX_RETRIES`` times.
MAX_RETRIES = 5
#: Re-reads, from the offset reached, of one body cut mid-stream.
BODY_RETRIES = 3
#: First pause before such a re-read, in seconds; doubled each time.
BODY_BACKOFF = 0.25
#: A streamed download that got this far since its last cut has its re-read budget renewed.
_PROGRESS_RESETS_RETRIES = 8 * 1024 * 1024
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60

# Error codes that mean "you cannot reach or may not read this source" (exit 3), not "one bad file".
_ACCESS_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "NoSuchBucket",
    "AllAccessDisabled",
    "AccountProblem",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
}
_MISSING_CODES = {"NoSuchKey", "NotFound", "404"}

T = TypeVar("T")


def _stream_errors() -> tuple[type[BaseException], ...]:
    """What a body cut or stalled mid-stream raises, depending on where urllib3/botocore notice it."""
    from http.client import IncompleteRead

    from botocore.exceptions import (
        ConnectionClosedError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from urllib3.exceptions import ProtocolError
    from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

    return (IncompleteReadError, ResponseStreamingError, ReadTimeoutError, ConnectionClosedError, ProtocolError,
            Urllib3ReadTimeout, IncompleteRead, ConnectionError, TimeoutError)


def _status_text(code: str, status: int | None) -> str:
    """``HTTP 503 SlowDown``; a bare numeric code (what botocore makes of an HTML page) gets the reason phrase."""
    phrase = ""
    if status:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
    name = code if code.isalnum() and not code.isdigit() and len(code) <= 60 else phrase
    return " ".join(p for p in (f"HTTP {status}" if status else "", name) if p) or "an unexpected answer"


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

        self.bucket: str = bucket
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
            config=BotoConfig(retries={"mode": "standard", "max_attempts": MAX_RETRIES},
                              connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT),
        )
        self.endpoint_url: str | None = self._client.meta.endpoint_url if self._has_custom_endpoint(endpoint_url) else None

    @staticmethod
    def _has_custom_endpoint(explicit: str | None) -> bool:
        return bool(explicit or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))

    # ------------------------------------------------------------------------------------------ errors

    def _translate(self, exc: BaseException, key: str | None, what: str) -> FinOpsError | None:
        """The error to raise for ``exc`` (``None``: not an S3 error, let it through). ``key`` is ``None`` for a
        listing, whose failure is the whole source's."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.parsers import ResponseParserError

        where = f"s3://{self.bucket}/{key}" if key is not None else f"s3://{self.bucket}"
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return SourceError(
                f"No AWS credentials found while {what} {where}.",
                hint="Set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use an instance role.",
            )
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
            return SourceError(f"Cannot reach the S3 endpoint while {what} {where} ({type(exc).__name__}).")
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {}) or {}
            code = str(error.get("Code") or "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            text = _status_text(code, status)
            if code in _ACCESS_CODES or status in (401, 403):
                return SourceError(f"S3 refused access to s3://{self.bucket} while {what} {where}: {text}.")
            if key is None:
                return SourceError(f"S3 answered {text} while {what} {where}, after {MAX_RETRIES + 1} attempts.")
            if code in _MISSING_CODES or status == 404:
                return LoadError(f"{where} does not exist ({text}).")
            if code == "PreconditionFailed" or status == 412:
                return LoadError(f"{where} changed while it was being read; it will be read again on the next run.")
            return LoadError(f"S3 answered {text} while {what} {where}, after {MAX_RETRIES + 1} attempts.")
        if isinstance(exc, ResponseParserError):
            message = (f"The S3 endpoint sent an answer that is not S3's (an HTML page from a proxy?) while {what} "
                       f"{where}.")
            return SourceError(message) if key is None else LoadError(message)
        if isinstance(exc, _stream_errors()):
            message = f"The connection broke while {what} {where} ({type(exc).__name__})."
            return SourceError(message) if key is None else LoadError(message)
        if isinstance(exc, BotoCoreError):
            message = f"S3 error while {what} {where}: {type(exc).__name__}."
            return SourceError(message) if key is None else LoadError(message)
        return None

    def _guard(self, key: str | None, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except FinOpsError:
            raise
        except Exception as exc:  # translated at the boundary, re-raised otherwise
            translated = self._translate(exc, key, what)
            if translated is None:
                raise
            raise translated from exc

    def _get(self, key: str, **kwargs: Any) -> Any:
        """One GetObject on ``key``; request errors translated, the body left to the caller."""
        self._checked(key)
        return self._guard(key, "reading", lambda: self._client.get_object(Bucket=self.bucket, Key=key, **kwargs))

    def _ranged(self, key: str, offset: int, end: int | None, etag: str | None) -> tuple[Any, int]:
        """A ranged GET pinned to ``etag``; an answer for another range (a proxy dropping ``Range``) is refused
        rather than spliced into the bytes read so far."""
        extra = {"IfMatch": etag} if etag else {}
        response = self._get(key, Range=f"bytes={offset}-{'' if end is None else end}", **extra)
        if not str(response.get("ContentRange") or "").startswith(f"bytes {offset}-"):
            response["Body"].close()
            raise LoadError(f"s3://{self.bucket}/{key}: the endpoint ignored a range request (bytes {offset}-).")
        return response["Body"], int(response.get("ContentLength", 0))

    def _read_body(self, key: str, fetch: Callable[[int], tuple[Any, int | None]], start: int = 0) -> bytes:
        """Read a whole body from ``start``, re-fetching from the offset reached when it is cut.

        ``fetch(offset)`` returns the response body and its announced length (``None``: unknown).
        """
        chunks: list[bytes] = []
        offset, failures = start, 0
        while True:
            body, length = fetch(offset)
            fetched_at = offset
            try:
                while chunk := body.read(1024 * 1024):
                    chunks.append(chunk)
                    offset += len(chunk)
                if length is not None and offset - fetched_at < length:  # ended early without an error: a cut
                    raise ConnectionError(f"body ended at byte {offset}")
                return b"".join(chunks)
            except _stream_errors() as exc:
                failures += 1
                if failures > BODY_RETRIES:
                    raise LoadError(f"The connection broke {failures} times while reading s3://{self.bucket}/{key} "
                                    f"(last: {type(exc).__name__}); giving up on this file.") from exc
                log.warning("Body of s3://%s/%s cut at byte %d (%s); reading on from there.", self.bucket, key,
                            offset, type(exc).__name__)
                time.sleep(BODY_BACKOFF * 2 ** (failures - 1))
            finally:
                body.close()

    # -------------------------------------------------------------------------------------- operations

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix.lstrip("/"))  # prefix: configuration
        iterator = iter(pages)
        while True:
            page = self._guard(None, f"listing prefix {_short(prefix)} of", lambda: next(iterator, None))
            if page is None:
                return
            for obj in page.get("Contents", []):
                yield ObjectInfo(key=obj["Key"], size=int(obj.get("Size", 0)), etag=obj.get("ETag"))

    def read_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        first = self._get(key)
        etag, size = first.get("ETag"), int(first.get("ContentLength", 0))
        if max_bytes is not None and size > max_bytes:
            first["Body"].close()
            raise LoadError(f"s3://{self.bucket}/{key} is larger than {max_bytes} bytes.")
        responses = iter([first])

        def fetch(offset: int) -> tuple[Any, int | None]:
            response = next(responses, None)
            if response is None:
                return self._ranged(key, offset, None, etag)
            return response["Body"], int(response.get("ContentLength", 0))

        return self._read_body(key, fetch)

    def read_head(self, key: str, size: int = 8) -> bytes:
        """One ranged GET of ``size`` bytes; an empty object (S3 answers 416 to any range) gives ``b""``."""
        from botocore.exceptions import ClientError

        def fetch(offset: int) -> tuple[Any, int | None]:
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={offset}-{size - 1}")
            except ClientError as exc:
                meta = exc.response.get("ResponseMetadata", {})
                if exc.response.get("Error", {}).get("Code") == "InvalidRange" or meta.get("HTTPStatusCode") == 416:
                    return io.BytesIO(b""), 0
                raise
            return response["Body"], int(response.get("ContentLength", 0))

        self._checked(key)
        return self._guard(key, "reading", lambda: self._read_body(key, fetch))[:size]

    def open(self, key: str) -> IO[bytes]:
        response = self._get(key)
        return io.BufferedReader(_S3Stream(self, key, response), buffer_size=1024 * 1024)

    def open_random(self, key: str) -> IO[bytes]:
        self._checked(key)
        head = self._guard(key, "reading", lambda: self._client.head_object(Bucket=self.bucket, Key=key))
        return io.BufferedReader(_RangedS3Object(self, key, int(head["ContentLength"]), head.get("ETag")),
                                 buffer_size=8 * 1024 * 1024)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._checked(key)}"

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
    """A seekable S3 object: each read is one ranged GET (buffered by the caller), resumed where a cut left it."""

    def __init__(self, store: S3Store, key: str, size: int, etag: str | None) -> None:
        self._store, self._key, self._size, self._etag, self._pos = store, key, size, etag, 0

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
        data = self._store._read_body(self._key, lambda at: self._store._ranged(self._key, at, end, self._etag),
                                      start=self._pos)
        if len(data) != end - self._pos + 1:
            raise LoadError(f"s3://{self._store.bucket}/{self._key}: asked for bytes {self._pos}-{end}, got "
                            f"{len(data)} bytes; the object is shorter than announced.")
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class _S3Stream(io.RawIOBase):
    """A forward-only S3 body that, when cut, asks for the rest (``Range: bytes=<offset>-``, same ETag)."""

    def __init__(self, store: S3Store, key: str, response: Any) -> None:
        self._store, self._key = store, key
        self._etag: str | None = response.get("ETag")
        self._size = int(response.get("ContentLength", 0))
        self._body: Any = response["Body"]
        self._pos, self._failures, self._last_cut = 0, 0, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self._body is None:
                if self._pos >= self._size:
                    return 0
                self._body = self._store._ranged(self._key, self._pos, None, self._etag)[0]
            try:
                data = self._body.read(len(buffer))
            except _stream_errors() as exc:
                self._body.close()
                self._body = None
                if self._pos - self._last_cut >= _PROGRESS_RESETS_RETRIES:  # a rare cut in a long download
                    self._failures = 0
                self._last_cut = self._pos
                self._failures += 1
                if self._failures > BODY_RETRIES:
                    raise LoadError(f"The connection broke {self._failures} times while reading "
                                    f"s3://{self._store.bucket}/{self._key} (last: {type(exc).__name__}); giving "
                                    "up on this file.") from exc
                log.warning("Body of s3://%s/%s cut at byte %d (%s); reading on from there.", self._store.bucket,
                            self._key, self._pos, type(exc).__name__)
                time.sleep(BODY_BACKOFF * 2 ** (self._failures - 1))
                continue
            if not data and self._pos < self._size:  # ended early without an error: treat as a cut
                self._body.close()
                self._body = None
                self._failures += 1
                if self._failures > BODY_RETRIES:
                    raise LoadError(f"s3://{self._store.bucket}/{self._key} ended at byte {self._pos} of "
                                    f"{self._size}; giving up on this file.")
                continue
            buffer[: len(data)] = data
            self._pos += len(data)
            return len(data)

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
        super().close()
