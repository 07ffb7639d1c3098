"""A fault-injecting HTTP proxy in front of an S3 API server (moto), for tests of what the tool does when S3
misbehaves: 5xx and throttling, bodies cut mid-stream, a proxy's HTML error page, 416, a dropped ``Range``.

Loopback only, one thread per connection, every request bounded by a timeout. Usage::

    with FaultProxy(s3.endpoint) as proxy:
        proxy.add(Fault.error(503, "SlowDown", method="GET", times=2))
        proxy.add(Fault.cut(after=100, path="/data.csv"))
        store = S3Store(bucket, endpoint_url=proxy.endpoint, ...)
        ...
        assert proxy.count(method="GET") == 3

A :class:`Fault` matches requests by method, path substring, query substring and whether they carry a
``Range`` header; it applies to its first ``times`` matches (``None``: all of them). Rules are tried in the
order added; a request matching none is forwarded untouched. :attr:`FaultProxy.seen` records every request.
"""

from __future__ import annotations

import http.client
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


@dataclass
class Fault:
    """One rule. ``status`` answers instead of forwarding; ``cut_after`` / ``drop_range`` alter a forwarded one."""

    method: str | None = None
    path: str | None = None
    query: str | None = None
    ranged: bool | None = None
    times: int | None = 1
    status: int | None = None
    code: str = "InternalError"
    html: bool = False
    cut_after: int | None = None
    drop_range: bool = False
    hits: int = field(default=0, init=False)

    @classmethod
    def error(cls, status: int, code: str = "InternalError", **match: Any) -> Fault:
        """Answer ``status`` with S3's XML error body carrying ``code`` (``SlowDown``, ``AccessDenied``…)."""
        return cls(status=status, code=code, **match)

    @classmethod
    def html_page(cls, status: int = 502, **match: Any) -> Fault:
        """Answer ``status`` with an HTML page, as a corporate proxy or a load balancer does."""
        return cls(status=status, html=True, **match)

    @classmethod
    def range_not_satisfiable(cls, **match: Any) -> Fault:
        """Answer 416 ``InvalidRange``, as S3 does to any range on a zero-byte object."""
        return cls(status=416, code="InvalidRange", **match)

    @classmethod
    def cut(cls, after: int, **match: Any) -> Fault:
        """Forward, announce the whole body, send ``after`` bytes of it and close the connection."""
        return cls(cut_after=after, **match)

    @classmethod
    def ignore_range(cls, **match: Any) -> Fault:
        """Forward without the ``Range`` header: the whole object comes back with 200."""
        return cls(drop_range=True, ranged=True, **match)

    def matches(self, method: str, path: str, query: str, ranged: bool) -> bool:
        return ((self.method is None or self.method == method) and (self.path is None or self.path in path)
                and (self.query is None or self.query in query) and (self.ranged is None or self.ranged == ranged)
                and (self.times is None or self.hits < self.times))


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: str
    range: str | None
    fault: Fault | None


class FaultProxy:
    """The proxy; ``endpoint`` is what to give boto3 (or the tool) as the S3 endpoint URL."""

    def __init__(self, upstream: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"FaultProxy forwards to loopback only, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.timeout = timeout
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------------- API

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.seen.clear()

    def count(self, *, method: str | None = None, path: str | None = None, query: str | None = None) -> int:
        """Requests seen that match (same rules as a :class:`Fault`, without ``times``)."""
        probe = Fault(method=method, path=path, query=query, times=None)
        with self._lock:
            return sum(probe.matches(s.method, s.path, s.query, s.range is not None) for s in self.seen)

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() the proxy first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------------------------------- internals

    def _pick(self, method: str, path: str, query: str, range_header: str | None) -> Fault | None:
        with self._lock:
            chosen = next((f for f in self.faults if f.matches(method, path, query, range_header is not None)), None)
            if chosen is not None:
                chosen.hits += 1
            self.seen.append(Seen(method, path, query, range_header, chosen))
            return chosen


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        self.connection.settimeout(self.owner.timeout)
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.owner._pick(self.command, path, query, self.headers.get("Range"))
        if fault is not None and fault.status is not None:
            self._answer(fault)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        if fault is not None and fault.drop_range:
            headers = {k: v for k, v in headers.items() if k.lower() != "range"}
        if body:
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(*self.owner.upstream, timeout=self.owner.timeout)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_HEADERS:
                    self.send_header(name, value)
            announced = int(response.getheader("Content-Length") or len(payload))
            self.send_header("Content-Length", str(announced if self.command == "HEAD" else len(payload)))
            if fault is not None and fault.cut_after is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            if fault is not None and fault.cut_after is not None:
                self.wfile.write(payload[: fault.cut_after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(payload)
        finally:
            upstream.close()

    def _answer(self, fault: Fault) -> None:
        status = fault.status or 500
        if fault.html:
            payload = (f"<html><head><title>{status} Bad Gateway</title></head><body><center><h1>{status} Bad "
                       "Gateway</h1></center><hr><center>nginx</center></body></html>").encode()
            content_type = "text/html"
        else:
            payload = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{fault.code}</Code>'
                       f"<Message>injected by FaultProxy</Message><RequestId>FAULT</RequestId></Error>").encode()
            content_type = "application/xml"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle
