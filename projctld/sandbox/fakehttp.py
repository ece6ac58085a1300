"""The common part of the fake upstreams: a threaded HTTP/1.1 server on loopback, with faults."""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import math
import re
import selectors
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlencode, urlsplit

JSON_TYPE = "application/json; charset=utf-8"
# truncated: half a document, and a Content-Length that says so; cut_off: the connection drops
# halfway through a body whose Content-Length promised all of it; bad_gzip: labelled gzip, is not.
GarbageKind = Literal["not_json", "truncated", "cut_off", "bad_gzip", "wrong_types", "empty"]
GARBAGE_KINDS = ("not_json", "truncated", "cut_off", "bad_gzip", "wrong_types", "empty")
# What a captive portal or an SSO proxy answers in place of the API.
HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
             b"<body><h1>Sign in to continue</h1></body></html>\n")


@dataclass
class Request:
    method: str
    target: str  # path and query, as sent
    path: str  # without the query, still percent-encoded (GitLab puts "%2F" in project paths)
    query: dict[str, str]  # the last value of each parameter
    headers: dict[str, str]  # names lower-cased
    body: bytes
    host: str

    def url(self, path: str, params: dict[str, str]) -> str:
        """An absolute URL on this server, addressed as the client addressed it (for Link)."""
        query = urlencode(params)
        return f"http://{self.host}{path}" + (f"?{query}" if query else "")


@dataclass
class Reply:
    status: int
    data: Any = None  # a JSON document, encoded when sent, unless raw is given
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def body(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.data, separators=(",", ":")).encode()


@dataclass
class RequestRecord:
    method: str
    path: str  # with the query
    headers: dict[str, str]  # names lower-cased
    status: int
    was_conditional_hit: bool
    received_at: float  # time.time() (never skewed) when the request arrived


class RateLimit:
    """One rate-limit bucket: `remaining` of `limit` until `reset` (epoch), then a fresh window.

    Tests may set `remaining`, `used` and `reset` at any time.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.remaining = limit
        self.used = 0
        self.reset = time.time() + window
        self._lock = threading.Lock()

    def exhausted(self) -> bool:
        with self._lock:
            self._renew()
            return self.remaining <= 0

    def take(self, cost: int) -> bool:
        """Spend `cost` if that much is left; otherwise spend nothing and say so."""
        with self._lock:
            self._renew()
            if self.remaining < cost:
                return False
            self.remaining -= cost
            self.used += cost
            return True

    def seconds_to_reset(self) -> int:
        return max(1, math.ceil(self.reset - time.time()))

    def _renew(self) -> None:
        now = time.time()
        if now >= self.reset:
            self.remaining, self.used, self.reset = self.limit, 0, now + self.window


@dataclass
class _Fault:
    pattern: re.Pattern[str]
    kind: Literal["fail", "hang"] | GarbageKind
    times: int
    reply: Reply | None = None  # for "fail"
    seconds: float = 0.0  # stalled before answering


class FakeServer(abc.ABC):
    """A fake upstream on 127.0.0.1: the subclass says who may call, what it answers and costs.

    Every request: `latency` sleep, then an injected fault if one matches its path and query,
    else authentication, rate limit and the route; GET answers of 200 carry a weak ETag and
    become 304 for a matching If-None-Match. Usable as a context manager.

    `clock_skew` seconds are added to the server's clock where it shows (the Date header and the
    reset times of the rate-limit headers), as on a server whose clock is wrong.
    """

    def __init__(self, *, token: str, prefix: str = "") -> None:
        self.token = token
        self.prefix = prefix.rstrip("/")
        self.latency = 0.0
        self.clock_skew = 0.0
        self.requests: list[RequestRecord] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- what a subclass provides

    @abc.abstractmethod
    def authorized(self, request: Request) -> bool: ...

    @abc.abstractmethod
    def unauthorized(self, request: Request) -> Reply: ...

    @abc.abstractmethod
    def refuse(self, request: Request) -> Reply | None:
        """The answer when the caller may not be served now (rate limits), else None."""

    @abc.abstractmethod
    def route(self, request: Request) -> Reply: ...

    @abc.abstractmethod
    def charge(self, request: Request, reply: Reply) -> None:
        """Count a served request against the rate limit (never called for a 304)."""

    @abc.abstractmethod
    def rate_headers(self, request: Request) -> dict[str, str]: ...

    # -- life cycle

    @property
    def server_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake server is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.server_url + self.prefix

    def start(self) -> str:
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve, name=f"{type(self).__name__}-server", daemon=True
            )
            self._thread.start()
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping for latency, delay or hang
        server.wake()
        if self._thread is not None:
            self._thread.join()
        server.close_connections()
        server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- faults and the log

    def fail(self, path_regex: str, *, status: int = 500, times: int = 1,
             body: bytes | None = None, headers: dict[str, str] | None = None,
             delay: float = 0.0) -> None:
        """Answer the next `times` requests matching `path_regex` (searched in the path and
        query) with this status, body and headers, after `delay` seconds."""
        if body is None:
            body = json.dumps({"message": HTTPStatus(status).phrase}).encode()
        headers = dict(headers or {})
        if not _has(headers, "content-type"):
            headers["Content-Type"] = JSON_TYPE if _is_json(body) else "text/plain; charset=utf-8"
        self._add(_Fault(re.compile(path_regex), "fail", times, Reply(status, None, headers, body),
                         delay))

    def garbage(self, path_regex: str, kind: GarbageKind, times: int = 1) -> None:
        """Answer the next `times` matching requests that would be served (authorized, within
        the rate limit) with a broken 200 of this kind, made from the real answer."""
        if kind not in GARBAGE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(GARBAGE_KINDS)}, not {kind!r}")
        self._add(_Fault(re.compile(path_regex), kind, times))

    def hang(self, path_regex: str, seconds: float, times: int = 1) -> None:
        """Stall the next `times` matching requests for `seconds`, then answer them as usual."""
        self._add(_Fault(re.compile(path_regex), "hang", times, seconds=seconds))

    def clear_faults(self) -> None:
        """Drop the injected faults that have not answered yet (the upstream is well again)."""
        with self._lock:
            self._faults.clear()

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def _add(self, fault: _Fault) -> None:
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, target: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.pattern.search(target):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- serving

    def _serve(self, handler: _Handler) -> None:
        request = _read(handler)
        received_at = time.time()
        if self.latency > 0:
            self._stopping.wait(self.latency)
        fault = self._take_fault(request.target)
        hit = False
        if fault is not None and fault.reply is not None:
            self._stopping.wait(fault.seconds)
            reply = fault.reply
        else:
            if fault is not None:
                self._stopping.wait(fault.seconds)
            garbage = fault.kind if fault is not None and fault.kind != "hang" else None
            reply, hit = self._answer(request, garbage)
        # Logged before it is sent, so that a client holding the answer finds it in the log.
        with self._lock:
            self.requests.append(RequestRecord(
                request.method, request.target, request.headers, reply.status, hit, received_at
            ))
        _send(handler, reply)

    def _answer(self, request: Request, garbage: str | None) -> tuple[Reply, bool]:
        hit = False
        if not self.authorized(request):
            reply = self.unauthorized(request)
        elif (refusal := self.refuse(request)) is not None:
            reply = refusal
        else:
            reply = self.route(request)
            if garbage is not None:
                reply = _garbage(reply, garbage)
            elif request.method == "GET" and reply.status == 200 and reply.raw is None:
                reply, hit = _conditional(request, reply)
            if not hit:
                self.charge(request, reply)
        reply.headers.update(self.rate_headers(request))
        return reply, hit


def link_header(links: list[tuple[str, str]]) -> str:
    """A Link header from (rel, url) pairs."""
    return ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links)


def int_param(request: Request, name: str, default: int, high: int | None = None) -> int:
    """A positive integer query parameter; anything else gives the default, as the APIs do."""
    try:
        value = int(request.query[name])
    except (KeyError, ValueError):
        return default
    if value < 1:
        return default
    return min(value, high) if high is not None else value


def http_date(epoch: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(epoch))


def _conditional(request: Request, reply: Reply) -> tuple[Reply, bool]:
    body = reply.body()
    etag = f'W/"{hashlib.sha1(body).hexdigest()}"'
    reply.headers["ETag"] = etag
    wanted = request.headers.get("if-none-match")
    if wanted is None:
        return reply, False
    tags = [tag.strip().removeprefix("W/") for tag in wanted.split(",")]
    if "*" not in tags and etag.removeprefix("W/") not in tags:
        return reply, False
    # The length of the body a 200 would have had, as RFC 9110 allows on a 304; no body follows.
    headers = {"ETag": etag, "Content-Length": str(len(body))}
    return Reply(304, None, headers, b""), True


def _garbage(reply: Reply, kind: str) -> Reply:
    headers = {k: v for k, v in reply.headers.items() if k.lower() != "content-type"}
    if kind == "not_json":
        return Reply(200, None, {**headers, "Content-Type": "text/html; charset=utf-8"}, HTML_PAGE)
    if kind == "truncated":
        body = reply.body()
        return Reply(200, None, {**headers, "Content-Type": JSON_TYPE}, body[: len(body) // 2])
    if kind == "cut_off":
        body = reply.body()
        return Reply(200, None, {**headers, "Content-Type": JSON_TYPE,
                                 "Content-Length": str(len(body))}, body[: len(body) // 2])
    if kind == "bad_gzip":
        return Reply(200, None, {**headers, "Content-Type": JSON_TYPE,
                                 "Content-Encoding": "gzip"}, reply.body())
    if kind == "wrong_types":
        return Reply(200, _wrong_types(reply.data), headers)
    return Reply(200, None, {**headers, "Content-Type": JSON_TYPE}, b"")


def _wrong_types(value: Any) -> Any:
    """The same document with every string made an int and every list made an object."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return {str(i): _wrong_types(item) for i, item in enumerate(value)}
    if isinstance(value, dict):
        return {key: _wrong_types(item) for key, item in value.items()}
    return value


def _read(handler: _Handler) -> Request:
    headers = {name.lower(): value for name, value in handler.headers.items()}
    length = int(headers.get("content-length") or 0)
    body = handler.rfile.read(length) if length > 0 else b""
    split = urlsplit(handler.path)
    query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
    host = headers.get("host") or f"127.0.0.1:{handler.server.server_address[1]}"
    target = split.path + (f"?{split.query}" if split.query else "")
    return Request(handler.command, target, split.path, query, headers, body, host)


def _send(handler: _Handler, reply: Reply) -> None:
    body = reply.body()
    headers = dict(reply.headers)
    if reply.raw is None and not _has(headers, "content-type"):
        headers["Content-Type"] = JSON_TYPE
    if not _has(headers, "content-length"):
        headers["Content-Length"] = str(len(body))
    handler.send_response(reply.status)
    declared = 0
    for name, value in headers.items():
        handler.send_header(name, value)
        if name.lower() == "content-length":
            declared = int(value)
    handler.end_headers()
    if reply.status != 304:
        handler.wfile.write(body)
        # Less than the promised length (a cut_off fault): hang up, as a dropped connection does.
        if declared > len(body):
            handler.close_connection = True


def _has(headers: dict[str, str], name: str) -> bool:
    return any(key.lower() == name for key in headers)


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer has a Content-Length
    server_version = "projctl-fake"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self.server.fake._serve(self)

    do_POST = do_PATCH = do_GET

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header, on the fake's clock (skewed when a test says so)."""
        if timestamp is None:
            timestamp = time.time() + self.server.fake.clock_skew
        return super().date_time_string(timestamp)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: FakeServer.requests is the log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Fifty clients connecting at once must not overflow the listen backlog (SYN retries cost 1 s).
    request_queue_size = 128

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._wake_in, self._wake_out = socket.socketpair()
        super().__init__(("127.0.0.1", 0), _Handler)

    def serve(self) -> None:
        """Accept connections until wake(). (serve_forever would notice a shutdown only at its
        next poll, which costs every stop() the poll interval.)"""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_in, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_in:
                        return
                    self._handle_request_noblock()

    def wake(self) -> None:
        self._wake_out.send(b"\0")

    def server_close(self) -> None:
        super().server_close()
        self._wake_in.close()
        self._wake_out.close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can take seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections, whose handler threads would otherwise linger."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (or stop() cutting a connection) is not a fault.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)
