"""S3 misbehaving behind :class:`S3Store`: every failure becomes SourceError (the whole source, exit 3) or a
per-file LoadError (that period, exit 1), with a clean message naming the object; transient ones are retried
a bounded number of times. moto serves the bucket; :mod:`tests.integration.s3_faults` injects the faults."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from core.errors import LoadError, SourceError
from core.storage import S3Store
from tests.integration.conftest import S3
from tests.integration.s3_faults import Fault, FaultProxy

DATA = bytes(range(256)) * 4096  # 1 MiB, every offset distinguishable


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """No sleeping between attempts: what is tested is how many there are and what comes out."""
    import botocore.retries.standard

    import core.s3

    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    monkeypatch.setattr(core.s3, "BODY_BACKOFF", 0)


@pytest.fixture()
def proxy(s3: S3) -> Iterator[FaultProxy]:
    with FaultProxy(s3.endpoint) as running:
        yield running


@pytest.fixture()
def bucket(s3: S3) -> str:
    name = s3.new_bucket()
    s3.client.put_object(Bucket=name, Key="exp/data.bin", Body=DATA)
    s3.client.put_object(Bucket=name, Key="exp/empty.csv", Body=b"")
    s3.client.put_object(Bucket=name, Key="exp/m-Manifest.json", Body=b'{"a": 1}')
    return name


def store_for(proxy: FaultProxy, bucket: str) -> S3Store:
    return S3Store(bucket, endpoint_url=proxy.endpoint, region="us-east-1", access_key_id="testing",
                   secret_access_key="testing-secret")


def assert_clean(message: str) -> None:
    for fragment in ("<html", "<?xml", "Traceback", "testing-secret"):
        assert fragment not in message


# ------------------------------------------------------------------------------------- 5xx / throttling


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (503, "SlowDown"), (503, "ServiceUnavailable")])
def test_transient_errors_are_retried(proxy: FaultProxy, bucket: str, status: int, code: str) -> None:
    proxy.add(Fault.error(status, code, method="GET", path="/exp/data.bin", times=2))
    proxy.add(Fault.error(status, code, method="GET", query="list-type=2", times=2))
    store = store_for(proxy, bucket)
    assert store.read_bytes("exp/data.bin") == DATA
    assert [o.key for o in store.list("exp/")] == ["exp/data.bin", "exp/empty.csv", "exp/m-Manifest.json"]
    assert proxy.count(method="GET", path="/exp/data.bin") == 3


def test_a_listing_that_keeps_failing_is_a_source_error_after_bounded_attempts(proxy: FaultProxy,
                                                                              bucket: str) -> None:
    proxy.add(Fault.error(503, "SlowDown", query="list-type=2", times=None))
    with pytest.raises(SourceError) as caught:
        list(store_for(proxy, bucket).list("exp/"))
    assert f"s3://{bucket}" in caught.value.message and "503" in caught.value.message
    assert proxy.count(query="list-type=2") == 6  # 1 + MAX_RETRIES, no more


def test_an_object_that_keeps_failing_fails_that_file_only(proxy: FaultProxy, bucket: str) -> None:
    proxy.add(Fault.error(500, method="GET", path="/exp/data.bin", times=None))
    with pytest.raises(LoadError) as caught:
        store_for(proxy, bucket).read_bytes("exp/data.bin")
    assert f"s3://{bucket}/exp/data.bin" in caught.value.message
    assert proxy.count(path="/exp/data.bin") == 6


# -------------------------------------------------------------------------------------------- access


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"])
def test_access_refused_is_a_source_error(proxy: FaultProxy, bucket: str, code: str) -> None:
    proxy.add(Fault.error(403, code, times=None))
    store = store_for(proxy, bucket)
    with pytest.raises(SourceError) as listing:
        list(store.list("exp/"))
    with pytest.raises(SourceError) as reading:
        store.read_head("exp/data.bin")
    for error in (listing.value, reading.value):
        assert code in error.message and error.exit_code == 3
        assert_clean(error.message)


def test_a_missing_bucket_is_a_source_error(proxy: FaultProxy) -> None:
    with pytest.raises(SourceError):
        list(store_for(proxy, "no-such-bucket-here").list(""))


def test_a_missing_data_file_fails_that_file_only(proxy: FaultProxy, bucket: str) -> None:
    store = store_for(proxy, bucket)
    for call in (store.read_head, store.read_bytes, store.open, store.open_random):
        with pytest.raises(LoadError) as caught:
            call("exp/gone.csv.gz")
        assert f"s3://{bucket}/exp/gone.csv.gz" in caught.value.message


# ---------------------------------------------------------------------------------------- cut bodies


def test_a_ranged_read_cut_once_resumes_from_where_it_stopped(proxy: FaultProxy, bucket: str) -> None:
    proxy.add(Fault.cut(after=1000, method="GET", path="/exp/data.bin", ranged=True))
    with store_for(proxy, bucket).open_random("exp/data.bin") as handle:
        handle.seek(5000)
        assert handle.read(300_000) == DATA[5000:305_000]
    ranges = [s.range for s in proxy.seen if s.method == "GET"]
    assert ranges[:2] == ["bytes=5000-1048575", "bytes=6000-1048575"]  # the second asks only for the rest


def test_a_ranged_read_cut_every_time_fails_that_file_after_bounded_retries(proxy: FaultProxy,
                                                                            bucket: str) -> None:
    proxy.add(Fault.cut(after=10, method="GET", path="/exp/data.bin", times=None))
    with pytest.raises(LoadError) as caught, store_for(proxy, bucket).open_random("exp/data.bin") as handle:
        handle.read()
    assert f"s3://{bucket}/exp/data.bin" in caught.value.message
    assert proxy.count(method="GET", path="/exp/data.bin") == 4  # first try + BODY_RETRIES


@pytest.mark.parametrize("reader", ["open", "read_bytes"])
def test_a_streamed_read_cut_once_resumes(proxy: FaultProxy, bucket: str, reader: str) -> None:
    proxy.add(Fault.cut(after=70_000, method="GET", path="/exp/data.bin"))
    store = store_for(proxy, bucket)
    if reader == "open":
        with store.open("exp/data.bin") as handle:
            assert handle.read() == DATA
    else:
        assert store.read_bytes("exp/data.bin") == DATA
    assert [s.range for s in proxy.seen if s.method == "GET"] == [None, "bytes=70000-"]


@pytest.mark.parametrize("reader", ["open", "read_bytes"])
def test_a_streamed_read_cut_every_time_fails_that_file(proxy: FaultProxy, bucket: str, reader: str) -> None:
    proxy.add(Fault.cut(after=0, method="GET", path="/exp/data.bin", times=None))
    store = store_for(proxy, bucket)
    with pytest.raises(LoadError) as caught:
        if reader == "open":
            with store.open("exp/data.bin") as handle:
                handle.read()
        else:
            store.read_bytes("exp/data.bin")
    assert "exp/data.bin" in caught.value.message and "4 times" in caught.value.message


def test_an_object_replaced_while_read_is_not_stitched(s3: S3, proxy: FaultProxy, bucket: str) -> None:
    s3.client.put_object(Bucket=bucket, Key="exp/big.bin", Body=DATA * 10)
    store = store_for(proxy, bucket)
    with store.open_random("exp/big.bin") as handle:
        assert handle.read(10) == DATA[:10]  # buffers the first 8 MiB
        s3.client.put_object(Bucket=bucket, Key="exp/big.bin", Body=b"new version" * 1_000_000)
        handle.seek(9_000_000)
        with pytest.raises(LoadError) as caught:
            handle.read(10)
    assert "changed while it was being read" in caught.value.message


def test_a_range_ignored_by_a_middlebox_is_refused(proxy: FaultProxy, bucket: str) -> None:
    proxy.add(Fault.ignore_range(method="GET", path="/exp/data.bin", times=None))
    with pytest.raises(LoadError) as caught, store_for(proxy, bucket).open_random("exp/data.bin") as handle:
        handle.seek(100)
        handle.read(10)
    assert "ignored a range request" in caught.value.message


# ----------------------------------------------------------------------------------- HTML pages / 416


def test_an_html_502_page_becomes_a_clean_message(proxy: FaultProxy, bucket: str) -> None:
    proxy.add(Fault.html_page(502, times=None))
    store = store_for(proxy, bucket)
    with pytest.raises(LoadError) as reading:
        store.read_bytes("exp/data.bin")
    with pytest.raises(SourceError) as listing:
        list(store.list("exp/"))
    for error in (reading.value, listing.value):
        assert "HTTP 502 Bad Gateway" in error.message
        assert_clean(error.message)


def test_an_html_page_answered_with_200_to_a_listing_is_a_source_error(proxy: FaultProxy, bucket: str) -> None:
    proxy.add(Fault.html_page(200, query="list-type=2", times=None))
    with pytest.raises(SourceError) as caught:
        list(store_for(proxy, bucket).list("exp/"))
    assert_clean(caught.value.message)


def test_read_head_of_an_empty_object_is_empty(proxy: FaultProxy, bucket: str) -> None:
    store = store_for(proxy, bucket)
    assert store.read_head("exp/empty.csv") == b""  # moto answers 416 itself, as S3 does
    proxy.add(Fault.range_not_satisfiable(method="GET", path="/exp/empty.csv"))
    assert store.read_head("exp/empty.csv") == b""
    assert store.read_head("exp/data.bin") == DATA[:8]
    with store.open_random("exp/empty.csv") as handle:
        assert handle.read() == b""


def test_the_data_reader_reports_a_cut_file_as_that_file_failing(proxy: FaultProxy, bucket: str) -> None:
    from core.backends.readers import Boto3DataReader

    proxy.add(Fault.cut(after=0, method="GET", path="/exp/data.bin", times=None))
    with pytest.raises(LoadError) as caught:
        Boto3DataReader(store_for(proxy, bucket)).describe("exp/data.bin")
    assert not isinstance(caught.value, SourceError)
    assert "exp/data.bin" in caught.value.message


# ------------------------------------------------------------------------------------------- buckets


def test_manifest_uris_are_read_from_the_store_bucket(proxy: FaultProxy, bucket: str) -> None:
    store = store_for(proxy, bucket)
    assert store.key_from_uri(f"s3://{bucket}/exp/data.bin") == "exp/data.bin"
    # an export copied or replicated to this bucket still names the bucket it was delivered to
    assert store.key_from_uri("s3://other-bucket/exp/data.bin") == "exp/data.bin"
    with pytest.raises(ValueError, match="names no object"):
        store.key_from_uri(f"s3://{bucket}/")


def test_keys_are_used_exactly(proxy: FaultProxy, bucket: str) -> None:
    store = store_for(proxy, bucket)
    for key in ("/exp/data.bin", "exp//data.bin", "exp/./data.bin"):
        with pytest.raises(LoadError):
            store.read_head(key)
        with pytest.raises(LoadError):
            store.uri(key)
    assert proxy.count() == 0
    with store.open("exp/data.bin") as handle:
        assert isinstance(handle, io.BufferedReader)
