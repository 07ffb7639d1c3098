"""The contract's S3 promises, proven through a small proxy in front of the loopback S3 API server.

moto accepts any key, so a proxy between ``finops`` and moto refuses the requests signed with a given access key
id (403 ``InvalidAccessKeyId``, as S3 answers), records who asked for what (the DuckDB native reader announces
itself in its User-Agent), and can hold one GET until the test lets it go (a load caught in the middle).
"""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tests.conftest import ROOT, cli_env, run_cli
from tests.integration.conftest import S3
from tests.integration.targets import DuckDBTarget, MariaDBTarget, PostgreSQLTarget, SQLiteTarget, Target

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


@dataclass
class Seen:
    method: str
    path: str
    key_id: str | None
    agent: str


@dataclass
class S3Proxy:
    """A forwarding proxy for the S3 API with access-key refusal, a request log and one stallable GET."""

    upstream: str
    refused_keys: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)
    stall_suffix: str | None = None
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    endpoint: str = ""

    def reset(self) -> None:
        self.refused_keys.clear()
        self.seen.clear()
        self.stall_suffix = None
        self.stalled.clear()
        self.release.clear()



def _handler(proxy: S3Proxy) -> type[BaseHTTPRequestHandler]:
    upstream = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            auth = self.headers.get("Authorization", "")
            match = _CREDENTIAL.search(auth)
            key_id = match.group(1) if match else None
            proxy.seen.append(Seen(self.command, unquote(self.path.split("?")[0]), key_id, self.headers.get("User-Agent", "")))
            if key_id in proxy.refused_keys:
                payload = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidAccessKeyId</Code>'
                           b"<Message>The AWS Access Key Id you provided does not exist in our records.</Message>"
                           b"<RequestId>finops-test</RequestId></Error>")
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                return
            if (self.command == "GET" and proxy.stall_suffix
                    and unquote(self.path.split("?")[0]).endswith(proxy.stall_suffix)
                    and not proxy.stalled.is_set()):
                proxy.stalled.set()
                proxy.release.wait(timeout=120)
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                    self.send_header(name, value)
            # HEAD: the object's length, as upstream said; otherwise the length of the body we send
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

    return Handler


@pytest.fixture(scope="session")
def s3_proxy_server(s3_server: S3) -> Iterator[S3Proxy]:
    proxy = S3Proxy(s3_server.endpoint)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture()
def proxy(s3_proxy_server: S3Proxy) -> Iterator[S3Proxy]:
    s3_proxy_server.reset()
    yield s3_proxy_server
    s3_proxy_server.reset()


TARGETS = [
    pytest.param("duckdb", marks=pytest.mark.duckdb),
    pytest.param("postgresql", marks=pytest.mark.postgresql),
    pytest.param("sql", marks=pytest.mark.sql),
    pytest.param("mariadb", marks=[pytest.mark.sql, pytest.mark.mariadb]),
]


def _target(request: pytest.FixtureRequest, name: str, tmp_path: Path) -> Target:
    if name == "postgresql":
        return PostgreSQLTarget(request.getfixturevalue("pg_server"), request.getfixturevalue("pg_schema"),
                                tmp_path / "work")
    if name == "sql":
        return SQLiteTarget(tmp_path)
    if name == "mariadb":
        return MariaDBTarget(request.getfixturevalue("maria_server"), request.getfixturevalue("maria_dataset"),
                             tmp_path / "work")
    return DuckDBTarget(tmp_path)


@pytest.fixture(scope="module")
def small_bucket(s3_server: S3, tmp_path_factory: pytest.TempPathFactory, gen: Any) -> tuple[str, Any]:
    """One small CUR 2.0 export, uploaded once for the module (the tests here only read it)."""
    root = tmp_path_factory.mktemp("bucket")
    truth = gen.write_cur2_export(root, prefix="exports", export_name="cur2-daily", periods=["2024-01"],
                                  rows_per_period=60, seed=21)
    bucket = s3_server.new_bucket()
    s3_server.upload_tree(root, bucket)
    return bucket, truth


def _proxy_env(proxy: S3Proxy, bucket: str, key: str = "testing") -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": proxy.endpoint, "AWS_MAX_ATTEMPTS": "1", "OPEN_FINOPS_AWS_BUCKET": bucket}


@pytest.mark.parametrize("backend", TARGETS)
def test_rejected_credentials_exit_3(backend: str, request: pytest.FixtureRequest, tmp_path: Path, proxy: S3Proxy,
                                     small_bucket: tuple[str, Any]) -> None:
    target = _target(request, backend, tmp_path)
    proxy.refused_keys.add("AKIAREFUSED")
    env = {**target.env(), **_proxy_env(proxy, small_bucket[0], key="AKIAREFUSED")}
    result = run_cli("aws", "import-cur", "--json", env=env)
    assert result.code == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    document = result.json()
    assert document["exit_code"] == 3 and "periods" not in document
    assert "InvalidAccessKeyId" in document["error"]["message"] or "credentials" in document["error"]["message"].lower()
    assert any(s.key_id == "AKIAREFUSED" for s in proxy.seen)  # it did ask S3, with that key
    listed = run_cli("aws", "list-manifests", env=env)
    assert listed.code == 3 and "Traceback" not in listed.stderr and listed.stderr.strip()
    # Nothing was written on the destination side: the same import with accepted keys loads everything.
    proxy.refused_keys.clear()
    ok = run_cli("aws", "import-cur", "--json", env=env)
    assert ok.code == 0 and ok.json()["summary"]["loaded"] == 1, ok.stderr


def _duckdb_reads_through_proxy(proxy: S3Proxy, truth: Any, key: str) -> None:
    """The data file was read by DuckDB itself (its User-Agent), through the proxy, signed with ``key``."""
    data_key = truth.periods["2024-01"].data_keys[0]
    reads = [s for s in proxy.seen if s.method == "GET" and s.path.endswith(data_key)]
    assert reads, [s.path for s in proxy.seen]
    assert any("duckdb" in s.agent.lower() for s in reads), {s.agent for s in reads}
    assert {s.key_id for s in reads if "duckdb" in s.agent.lower()} == {key}


def _assert_loaded(target: DuckDBTarget, truth: Any) -> None:
    rows, cost = target.period_totals("cur2_daily")["2024-01"]
    assert rows == truth.periods["2024-01"].rows
    assert Decimal(str(cost)) == pytest.approx(truth.periods["2024-01"].unblended_cost, abs=Decimal("1e-6"))


@pytest.mark.duckdb
@pytest.mark.parametrize("how", ["config endpoint_url", "AWS_ENDPOINT_URL"])
def test_duckdb_native_reader_uses_the_resolved_endpoint(how: str, tmp_path: Path, proxy: S3Proxy,
                                                         small_bucket: tuple[str, Any]) -> None:
    target = DuckDBTarget(tmp_path)
    bucket, truth = small_bucket
    env = {**target.env(), **_proxy_env(proxy, bucket)}
    del env["AWS_ENDPOINT_URL_S3"]  # only the way under test names the endpoint
    args: list[str] = []
    if how == "AWS_ENDPOINT_URL":
        env["AWS_ENDPOINT_URL"] = proxy.endpoint
    else:
        config = tmp_path / "config.toml"
        config.write_text(f'[aws]\nendpoint_url = "{proxy.endpoint}"\n')
        args = ["--config", str(config)]
    result = run_cli("aws", "import-cur", "--json", *args, env=env)
    assert result.code == 0, result.stderr
    _assert_loaded(target, truth)
    _duckdb_reads_through_proxy(proxy, truth, "testing")


@pytest.mark.duckdb
def test_duckdb_native_reader_uses_the_aws_profile(tmp_path: Path, proxy: S3Proxy,
                                                   small_bucket: tuple[str, Any]) -> None:
    target = DuckDBTarget(tmp_path)
    bucket, truth = small_bucket
    credentials, config = tmp_path / "aws-credentials", tmp_path / "aws-config"
    credentials.write_text("[default]\naws_access_key_id = AKIADEFAULTREFUSED\naws_secret_access_key = nope\n"
                           "[finops-test]\naws_access_key_id = AKIAPROFILEOK\naws_secret_access_key = fine\n")
    config.write_text("[default]\nregion = us-east-1\n[profile finops-test]\nregion = us-east-1\n")
    proxy.refused_keys.add("AKIADEFAULTREFUSED")
    env = {**target.env(), "AWS_ENDPOINT_URL_S3": proxy.endpoint, "AWS_MAX_ATTEMPTS": "1",
           "OPEN_FINOPS_AWS_BUCKET": bucket, "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
           "AWS_CONFIG_FILE": str(config)}
    refused = run_cli("aws", "import-cur", env=env)  # the default profile: refused, exit 3
    assert refused.code == 3, refused.stderr
    proxy.seen.clear()
    result = run_cli("aws", "import-cur", "--json", env={**env, "AWS_PROFILE": "finops-test"})
    assert result.code == 0, result.stderr
    _assert_loaded(target, truth)
    _duckdb_reads_through_proxy(proxy, truth, "AKIAPROFILEOK")
    assert not any(s.key_id == "AKIADEFAULTREFUSED" for s in proxy.seen)


@pytest.mark.parametrize("backend", [pytest.param("duckdb", marks=pytest.mark.duckdb),
                                     pytest.param("mariadb", marks=[pytest.mark.sql, pytest.mark.mariadb])])
def test_readers_see_the_old_or_the_new_version_during_a_load(backend: str, request: pytest.FixtureRequest,
                                                              tmp_path: Path, proxy: S3Proxy, s3: S3,
                                                              gen: Any) -> None:
    """A restated month loads while the proxy holds its last data file: readers see the old month, never a gap or
    a mix, and the new one once the import returns."""
    target = _target(request, backend, tmp_path)
    root, bucket = tmp_path / "bucket", s3.new_bucket()
    old = gen.write_cur2_export(root, prefix="exports", export_name="cur2-daily", periods=["2024-01", "2024-02"],
                                rows_per_period=300, seed=41)
    s3.sync_tree(root, bucket)
    env = {**target.env(), **_proxy_env(proxy, bucket)}
    first = run_cli("aws", "import-cur", "--json", env=env)
    assert first.code == 0, first.stderr
    new = gen.write_cur2_export(root, prefix="exports", export_name="cur2-daily", periods=["2024-02"],
                                rows_per_period=900, files_per_period=3, seed=42,
                                execution_ids={"2024-02": "exec-restated"})
    s3.sync_tree(root, bucket)

    def state(p: Any) -> tuple[int, Decimal]:
        return p.rows, p.unblended_cost

    allowed = {"old": state(old.periods["2024-02"]), "new": state(new.periods["2024-02"])}
    january = state(old.periods["2024-01"])

    def observe() -> dict[str, tuple[int, Decimal]]:
        if backend == "duckdb":  # another process: through the CLI, which waits while an import holds the file
            listed = run_cli("aws", "list-exports", "--json", env=env, timeout=120)
            assert listed.code == 0, listed.stderr
            periods = listed.json()["exports"][0]["periods"]
            return {p["billing_period"]: (p["rows"], Decimal(str(p["unblended_cost"]))) for p in periods}
        return {p: (n, Decimal(str(c))) for p, (n, c) in target.period_totals("cur2_daily").items()}

    def classify(seen: dict[str, tuple[int, Decimal]]) -> str:
        assert set(seen) == {"2024-01", "2024-02"}, seen  # no gap
        assert seen["2024-01"][0] == january[0]
        for name, (rows, cost) in allowed.items():
            if seen["2024-02"][0] == rows and seen["2024-02"][1] == pytest.approx(cost, abs=Decimal("1e-6")):
                return name
        raise AssertionError(f"a mix: {seen['2024-02']} is neither {allowed}")

    proxy.stall_suffix = new.periods["2024-02"].data_keys[-1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "finops"), "aws", "import-cur", "--json"],
                            env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proxy.stalled.wait(timeout=120), "the load never asked for its last file"
        during: list[str] = []
        if backend == "duckdb":
            # The reader starts while the load is held mid-way; it can only answer once the import lets go.
            reader: list[dict[str, tuple[int, Decimal]]] = []
            thread = threading.Thread(target=lambda: reader.append(observe()))
            thread.start()
            time.sleep(1.5)
            assert proc.poll() is None and thread.is_alive()  # both are running at once
            proxy.release.set()
            thread.join(timeout=120)
            during = [classify(reader[0])]
        else:
            for _ in range(5):
                during.append(classify(observe()))
                assert proc.poll() is None
            proxy.release.set()
        out, err = proc.communicate(timeout=300)
    finally:
        proxy.release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    if backend != "duckdb":
        assert during == ["old"] * 5  # mid-load, the old version in full
    assert set(during) <= {"old", "new"}
    assert classify(observe()) == "new"
