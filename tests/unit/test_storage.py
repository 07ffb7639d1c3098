"""core.storage without any server: exact keys, the local folder's boundary, the S3 client's configuration and
the translation of botocore errors into SourceError (whole source) or LoadError (one object)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError, LoadError, SourceError
from core.storage import LocalStore, ObjectStore, S3Store, key_problem, needs_literal_read


@pytest.mark.parametrize(
    ("key", "problem"),
    [("", "empty"), ("/a/b.csv", "starts with '/'"), ("a//b.csv", "empty path segment"), ("a/b/", "empty path"),
     ("a/../b.csv", "'..'"), ("../b.csv", "'..'"), ("a/./b.csv", "'.'"), ("a\\b.csv", "backslash"),
     ("a/b\x00.csv", "control"), ("a/b\n.csv", "control"), ("a/\x7f", "control")],
)
def test_key_problem_refuses_what_a_reader_would_normalise(key: str, problem: str) -> None:
    assert problem in (key_problem(key) or "")


@pytest.mark.parametrize("key", ["a/b.csv", "BILLING_PERIOD=2024-01/x.parquet", "a/ b .csv", "a/*.csv",
                                 "a/..b/c", "a/.hidden", "ünï/cödé.csv"])
def test_key_problem_accepts_legal_keys(key: str) -> None:
    assert key_problem(key) is None


@pytest.mark.parametrize(("key", "literal"), [("a/b.csv", False), ("a/report*.csv", True), ("a/x?.csv", True),
                                              ("a/[1].csv", True), ("a/{a,b}.csv", True), ("a/b=1/c.csv", False)])
def test_needs_literal_read(tmp_path: Path, key: str, literal: bool) -> None:
    assert needs_literal_read(key) is literal
    assert LocalStore(tmp_path).needs_literal_read(key) is literal


# --------------------------------------------------------------------------------------------- LocalStore


@pytest.fixture()
def store(tmp_path: Path) -> LocalStore:
    (tmp_path / "outside.txt").write_text("secret")
    root = tmp_path / "bucket"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f.csv").write_text("x\n1\n")
    (root / "a" / "link.csv").symlink_to(tmp_path / "outside.txt")
    return LocalStore(root)


@pytest.mark.parametrize("key", ["../outside.txt", "a/../../outside.txt", "/etc/passwd", "a/link.csv", "a/./f.csv",
                                 "a//f.csv", ""])
def test_local_store_refuses_keys_escaping_or_not_exact_for_that_file_only(store: LocalStore, key: str) -> None:
    for call in (store.read_bytes, store.open, store.open_random, store.read_head, store.uri):
        with pytest.raises(LoadError) as caught:
            call(key)
        assert not isinstance(caught.value, SourceError)
        assert repr(key) in caught.value.message or key in caught.value.message


def test_local_store_reads_exact_keys(store: LocalStore) -> None:
    assert store.read_bytes("a/f.csv") == b"x\n1\n"
    assert store.read_head("a/f.csv", 2) == b"x\n"
    assert store.uri("a/f.csv") == str(store.root / "a" / "f.csv")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("a/missing.csv")


def test_local_store_size_limit(store: LocalStore) -> None:
    assert store.read_bytes("a/f.csv", max_bytes=4) == b"x\n1\n"
    with pytest.raises(LoadError, match="a/f.csv"):
        store.read_bytes("a/f.csv", max_bytes=3)


def test_local_store_prefix_outside_is_a_configuration_error(store: LocalStore) -> None:
    with pytest.raises(ConfigError):
        list(store.list("../"))
    assert [o.key for o in store.list("a/")] == ["a/f.csv", "a/link.csv"]


# ------------------------------------------------------------------------------------------ key_from_uri


class _Bucketed(LocalStore):
    bucket = "my-bucket"


def test_key_from_uri_keeps_keys_exact_but_for_an_empty_prefix(tmp_path: Path) -> None:
    local, bucketed = LocalStore(tmp_path), _Bucketed(tmp_path)
    assert local.key_from_uri("/a/b") == "a/b"  # a report with an empty prefix lists /<report>/…
    assert local.key_from_uri("//a/b") == "//a/b"  # anything more is kept, and refused later as not exact
    assert local.key_from_uri("s3://any-bucket/a/b") == "a/b"
    assert bucketed.key_from_uri("s3://my-bucket/a//b") == "a//b"
    # exports copied or replicated to another bucket keep the original bucket in their manifests
    assert bucketed.key_from_uri("s3://their-bucket/a/b") == "a/b"
    for uri in ("s3://my-bucket", "s3://my-bucket/"):
        with pytest.raises(ValueError):
            bucketed.key_from_uri(uri)


# -------------------------------------------------------------------------------------------------- S3


def _s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)
    return S3Store("my-bucket", region="eu-west-1", endpoint_url="http://127.0.0.1:9", access_key_id="AKIDEXAMPLE",
                   secret_access_key="very-secret-value")


def test_s3_client_retries_in_standard_mode_with_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _s3(monkeypatch)._client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 6}  # botocore: max_attempts 5 + 1
    assert (config.connect_timeout, config.read_timeout) == (10, 60)


def test_s3store_is_importable_from_core_storage() -> None:
    import core.s3

    assert S3Store is core.s3.S3Store and issubclass(S3Store, ObjectStore)


def _client_error(status: int, code: str, message: str = "") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(
    ("exc", "key", "kind", "text"),
    [(_client_error(403, "AccessDenied"), "k", SourceError, "AccessDenied"),
     (_client_error(403, "InvalidAccessKeyId"), None, SourceError, "InvalidAccessKeyId"),
     (_client_error(404, "NoSuchBucket"), "k", SourceError, "NoSuchBucket"),
     (_client_error(404, "NoSuchKey"), "k", LoadError, "s3://my-bucket/k does not exist"),
     (_client_error(412, "PreconditionFailed"), "k", LoadError, "changed"),
     (_client_error(503, "SlowDown"), None, SourceError, "HTTP 503 SlowDown"),
     (_client_error(500, "InternalError"), "k", LoadError, "HTTP 500 InternalError"),
     (_client_error(502, "502", "<html><body>Bad Gateway</body></html>"), "k", LoadError, "HTTP 502 Bad Gateway")],
)
def test_client_errors_are_translated(monkeypatch: pytest.MonkeyPatch, exc: Exception, key: str | None,
                                      kind: type, text: str) -> None:
    error = _s3(monkeypatch)._translate(exc, key, "reading")
    assert type(error) is kind and text in error.message
    assert "<html" not in error.message and "very-secret-value" not in error.message


def test_stream_and_parser_errors_are_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ResponseStreamingError
    from botocore.parsers import ResponseParserError
    from urllib3.exceptions import ProtocolError

    store = _s3(monkeypatch)
    cut = ResponseStreamingError(error=ProtocolError("Connection broken"))
    assert type(store._translate(cut, "k", "reading")) is LoadError
    assert type(store._translate(ProtocolError("x"), None, "listing")) is SourceError
    assert type(store._translate(ResponseParserError("<html>"), "k", "reading")) is LoadError
    assert type(store._translate(NoCredentialsError(), "k", "reading")) is SourceError
    assert type(store._translate(EndpointConnectionError(endpoint_url="http://x"), "k", "reading")) is SourceError
    assert store._translate(ValueError("a bug"), "k", "reading") is None  # not ours: keeps its traceback


def test_s3_refuses_non_exact_keys_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    store = _s3(monkeypatch)  # the endpoint is closed: a request would be a connection error, not LoadError
    for key in ("/a", "a//b", "a/../b"):
        with pytest.raises(LoadError):
            store.read_head(key)
        with pytest.raises(LoadError):
            store.uri(key)
