"""Hostile and careless clients against a real projctld: each is refused alone, the rest served."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from conftest import Sandbox

from projctl_client import minipack
from projctl_client.frames import MAX_FRAME, PROTOCOL_VERSION

HEADER = struct.Struct(">I")
TIMEOUT = 10.0  # every socket gets one, so no test can hang on a daemon that stopped answering
NOBODY = 65534

# --------------------------------------------------------------------------------------------
# Helpers: frames over plain stdlib sockets


def request(kind: str = "ping", **fields: object) -> dict[str, object]:
    return {"type": kind, "protocol": PROTOCOL_VERSION, "client": "robustness-test", **fields}


def encode(value: object) -> bytes:
    return minipack.encode(value)


def header(length: int) -> bytes:
    return HEADER.pack(length)


def open_client(path: str, timeout: float = TIMEOUT) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def send_frame(sock: socket.socket, body: bytes) -> None:
    sock.sendall(header(len(body)) + body)


def recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    """`size` bytes, or None when the daemon closed the connection first (EOF or reset)."""
    data = bytearray()
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def recv_frame(sock: socket.socket) -> dict[object, object] | None:
    """The next reply as a map, or None if the connection was closed instead."""
    head = recv_exactly(sock, HEADER.size)
    if head is None:
        return None
    (length,) = HEADER.unpack(head)
    assert length <= MAX_FRAME, f"daemon announced a {length}-byte reply"
    body = recv_exactly(sock, length)
    assert body is not None, "daemon closed the connection in the middle of a reply"
    reply = minipack.decode(body)
    assert isinstance(reply, dict) and "type" in reply, f"reply is not a tagged map: {reply!r}"
    return reply


def exchange(path: str, body: bytes) -> dict[object, object] | None:
    """Send one raw body in a well-formed frame on a new connection and read the answer."""
    with open_client(path) as sock:
        send_frame(sock, body)
        return recv_frame(sock)


def assert_closed(sock: socket.socket) -> None:
    """The daemon has closed this connection (pending replies may be read first)."""
    try:
        rest = sock.recv(65536)
    except ConnectionResetError:
        return
    assert rest == b"", f"expected the connection to be closed, got {rest[:80]!r}"


def assert_error(reply: dict[object, object] | None, code: str) -> dict[object, object]:
    assert reply is not None, f"expected an error {code!r}, the connection was closed"
    assert reply["type"] == "error", f"expected an error {code!r}, got {reply!r}"
    assert reply["code"] == code, f"expected code {code!r}, got {reply!r}"
    assert isinstance(reply["message"], str) and reply["message"]
    assert isinstance(reply.get("suggestions", []), list)
    assert isinstance(reply.get("context", {}), dict)
    return reply


def assert_pong(reply: dict[object, object] | None, pid: int) -> None:
    assert reply is not None, "expected a pong, the connection was closed"
    assert reply["type"] == "pong", f"expected a pong, got {reply!r}"
    info = reply["daemon"]
    assert isinstance(info, dict)
    assert info["protocol"] == PROTOCOL_VERSION
    assert info["pid"] == pid


def ping_on(sock: socket.socket, pid: int) -> None:
    send_frame(sock, encode(request()))
    assert_pong(recv_frame(sock), pid)


# --------------------------------------------------------------------------------------------
# The daemon under test


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    path: str
    output: list[bytes] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def ping_ok(self) -> None:
        """A well-behaved client on a fresh connection gets a correct pong, the daemon lives."""
        assert self.process.poll() is None, f"projctld died:\n{self.log()}"
        with open_client(self.path) as sock:
            ping_on(sock, self.pid)
        assert self.process.poll() is None, f"projctld died:\n{self.log()}"

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS for projctld")

    def log(self) -> str:
        return b"".join(self.output).decode(errors="replace")[-4000:]


def _drain(stream: object, sink: list[bytes]) -> None:
    # The daemon logs to a pipe; read it so that a chatty test cannot block the daemon on write.
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        sink.append(line)


def _wait_ready(daemon: Daemon) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert daemon.process.poll() is None, f"projctld exited:\n{daemon.log()}"
        try:
            daemon.ping_ok()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"projctld did not answer on {daemon.path} in 15 s")


@pytest.fixture
def projctld(sandbox: Sandbox) -> Iterator[Callable[..., Daemon]]:
    """Start projctld with `[daemon]` settings given as keywords, and any further tables of
    config in `config`; stopped after the test."""
    started: list[Daemon] = []

    def launch(socket_path: str | None = None, config: str = "", **settings: object) -> Daemon:
        lines = ["[daemon]", 'log_level = "warning"']
        lines += [f"{key} = {value!r}" for key, value in settings.items()]
        sandbox.write_config("\n".join(lines) + "\n" + config)
        if socket_path is None:
            daemon = Daemon(sandbox.start_daemon(), sandbox.socket_path)
        else:
            sandbox.env["PROJCTL_SOCKET"] = socket_path
            daemon = Daemon(sandbox.spawn_daemon(), socket_path)
        started.append(daemon)
        for stream in (daemon.process.stdout, daemon.process.stderr):
            threading.Thread(target=_drain, args=(stream, daemon.output), daemon=True).start()
        if socket_path is not None:
            _wait_ready(daemon)
        return daemon

    yield launch
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGTERM)
            try:
                daemon.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.process.kill()
                daemon.process.wait()


GARBAGE = b"\xc1" + bytes(range(256)) * 4  # 0xc1 is the one byte msgpack never uses


# --------------------------------------------------------------------------------------------
# 1-3: garbage and absurd headers


def test_garbage_body_is_a_bad_request_and_the_connection_stays_usable(projctld) -> None:
    daemon = projctld()
    with open_client(daemon.path) as sock:
        send_frame(sock, GARBAGE)
        reply = assert_error(recv_frame(sock), "bad_request")
        assert "malformed" in str(reply["message"])
        ping_on(sock, daemon.pid)  # the frame was read whole, so the stream is still in step
        send_frame(sock, b"\xc1\xc1\xc1")
        assert_error(recv_frame(sock), "bad_request")
        ping_on(sock, daemon.pid)
    daemon.ping_ok()


def test_a_stream_that_is_not_frames_is_refused_or_closed(projctld) -> None:
    daemon = projctld()
    for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\xff" * 64, b"SSH-2.0-OpenSSH_9.6\r\n"):
        with open_client(daemon.path) as sock:
            sock.sendall(garbage)
            reply = recv_frame(sock)
            if reply is not None:
                assert_error(reply, "frame_too_large")
            assert_closed(sock)
    daemon.ping_ok()


def test_a_4_gib_header_is_refused_before_any_body_then_closed(projctld) -> None:
    daemon = projctld()
    with open_client(daemon.path) as sock:
        sock.sendall(header(0xFFFFFFFF))  # and not one byte of body
        reply = assert_error(recv_frame(sock), "frame_too_large")
        assert reply["context"] == {"limit": str(MAX_FRAME)}
        assert str(0xFFFFFFFF) in str(reply["message"])
        assert_closed(sock)
    with open_client(daemon.path) as sock:  # one byte over the limit, with some body behind it
        sock.sendall(header(MAX_FRAME + 1) + b"\0" * 4096)
        assert_error(recv_frame(sock), "frame_too_large")
        assert_closed(sock)
    with open_client(daemon.path) as sock:  # exactly the limit is a frame like any other
        send_frame(sock, b"\xc1" * MAX_FRAME)
        assert_error(recv_frame(sock), "bad_request")
        ping_on(sock, daemon.pid)
    daemon.ping_ok()


# --------------------------------------------------------------------------------------------
# 4, 9: truncated, stalled and silent clients


def test_a_truncated_frame_then_eof_closes_that_connection_only(projctld) -> None:
    daemon = projctld()
    with open_client(daemon.path) as sock:
        sock.sendall(header(100) + b"x" * 10)
        sock.shutdown(socket.SHUT_WR)
        assert recv_frame(sock) is None
    with open_client(daemon.path) as sock:  # half a header
        sock.sendall(b"\0\0")
        sock.shutdown(socket.SHUT_WR)
        assert recv_frame(sock) is None
    with open_client(daemon.path) as sock:  # a complete ping, then EOF: answered, then closed
        send_frame(sock, encode(request()))
        sock.shutdown(socket.SHUT_WR)
        assert_pong(recv_frame(sock), daemon.pid)
        assert recv_frame(sock) is None
    daemon.ping_ok()


def test_stalled_clients_are_dropped_by_the_idle_timeout(projctld) -> None:
    daemon = projctld(idle_timeout=1.0)
    stalled = [open_client(daemon.path, timeout=15) for _ in range(3)]
    try:
        stalled[0].sendall(header(100) + b"x" * 10)  # stalls inside a body
        stalled[1].sendall(header(100))  # stalls right after a header
        stalled[2].sendall(b"\0\0")  # stalls inside a header
        daemon.ping_ok()  # served while the others stall
        for sock in stalled:  # each is closed by the daemon; the 15 s timeout only guards a hang
            assert recv_frame(sock) is None
    finally:
        for sock in stalled:
            sock.close()
    daemon.ping_ok()


def test_a_silent_client_does_not_hold_up_another(projctld) -> None:
    daemon = projctld(idle_timeout=1.0)
    with open_client(daemon.path, timeout=15) as silent:
        with open_client(daemon.path) as active:
            for _ in range(20):
                ping_on(active, daemon.pid)
        daemon.ping_ok()
        assert recv_frame(silent) is None  # and the silent one is dropped in the end
    daemon.ping_ok()


# --------------------------------------------------------------------------------------------
# 5-8: requests that decode as msgpack but not as a request


def test_an_unknown_request_type_is_a_bad_request(projctld) -> None:
    daemon = projctld()
    reply = assert_error(exchange(daemon.path, encode(request("nope"))), "bad_request")
    assert "type" in str(reply["message"]) and "nope" in str(reply["message"])
    reply = assert_error(exchange(daemon.path, encode({"protocol": 1, "client": "x"})),
                         "bad_request")
    assert "type" in str(reply["message"])
    daemon.ping_ok()


def test_a_huge_unknown_request_type_is_still_a_bad_request(projctld) -> None:
    daemon = projctld()
    try:
        reply = exchange(daemon.path, encode(request("n" * (MAX_FRAME - 64))))
        assert_error(reply, "bad_request")
    finally:
        daemon.ping_ok()


@pytest.mark.parametrize("fields", [
    {"checkout": {"root": 5}},
    {"checkout": {"root": "relative/path"}},
    {"checkout": "/tmp"},
    {"protocol": "1"},
    {"protocol": 1.5},
    {"protocol": None},
    {"client": 7},
], ids=lambda fields: repr(fields))
def test_wrong_field_types_are_bad_requests(projctld, fields: dict[str, object]) -> None:
    daemon = projctld()
    with open_client(daemon.path) as sock:
        send_frame(sock, encode(request("status", **fields)))
        reply = assert_error(recv_frame(sock), "bad_request")
        assert "$." in str(reply["message"])  # it names the field that was wrong
        ping_on(sock, daemon.pid)
    daemon.ping_ok()


def test_a_checkout_root_must_be_a_plain_absolute_path(projctld, sandbox: Sandbox) -> None:
    # A checkout's prompt files go under its root's own path: a `..` in the root wrote them
    # (deleting whatever stood in the way) outside their directory, and a NUL stopped the daemon.
    app = os.path.join(sandbox.root, "app")
    daemon = projctld(config=f'[projects.app]\npaths = ["{app}"]\n')
    for root in (app + "/.." * 12 + sandbox.root + "/victim/x", app + "/a\x00b", app + "/./a",
                 app + "/a/"):
        for kind in ("status", "prompt", "note"):
            fields = {"checkout": {"root": root}, **({"text": "x"} if kind == "note" else {})}
            reply = assert_error(exchange(daemon.path, encode(request(kind, **fields))),
                                 "bad_request")
            assert "normalised" in str(reply["message"])
    reply = exchange(daemon.path, encode(request("prompt", checkout={"root": app + "/a"})))
    assert reply is not None and reply["type"] == "prompt_text", reply
    daemon.ping_ok()


def test_a_str_that_is_not_utf8_is_a_bad_request(projctld) -> None:
    daemon = projctld()
    with open_client(daemon.path) as sock:
        for body in (b"\x82\xa4type\xa4ping\xa6client\xa2\xff\xfe",  # in a field
                     b"\x81\xa4type\xa2\xff\xfe"):  # in the type tag
            send_frame(sock, body)
            assert_error(recv_frame(sock), "bad_request")
            ping_on(sock, daemon.pid)
    daemon.ping_ok()


def test_values_no_event_can_hold_are_refused_not_failed(projctld) -> None:
    daemon = projctld(config='[projects.app]\npaths = ["/nowhere"]\n')
    for kind, fields in (("note", {"text": "a\x00b"}), ("branch_created", {"name": "a\x00b"}),
                         ("log", {"since": float("nan")})):
        reply = exchange(daemon.path, encode(request(kind, project="app", **fields)))
        assert_error(reply, "bad_request")
    for since in (1e300, float("inf"), float("-inf")):  # beyond what an HLC holds: clamped
        reply = exchange(daemon.path, encode(request("log", project="app", since=since)))
        assert reply is not None and reply["type"] == "log", reply
    reply = exchange(daemon.path, encode(request("log", project="app")))
    assert reply is not None and reply["events"] == [], reply  # nothing was recorded
    daemon.ping_ok()


def test_a_newer_protocol_is_unsupported_with_a_suggestion(projctld) -> None:
    daemon = projctld()
    for body in (
        request(protocol=99),  # a valid v1 ping, but for v99
        {"type": "frobnicate", "protocol": 99, "client": "9.9", "x": [1, {"y": b"z"}]},
    ):
        with open_client(daemon.path) as sock:
            send_frame(sock, encode(body))
            reply = assert_error(recv_frame(sock), "unsupported_protocol")
            assert reply["suggestions"] and all(isinstance(s, str) for s in reply["suggestions"])
            assert "projctl daemon restart" in reply["suggestions"]
            context = reply["context"]
            assert isinstance(context, dict)
            assert context["client_protocol"] == "99"
            assert context["daemon_protocol"] == str(PROTOCOL_VERSION)
            ping_on(sock, daemon.pid)  # the connection is still in step
    daemon.ping_ok()


def test_an_older_or_absent_protocol(projctld) -> None:
    daemon = projctld()
    # protocol 0 on a request that decodes: an older client, told to upgrade.
    for old in (0, -1):
        reply = assert_error(exchange(daemon.path, encode(request(protocol=old))),
                             "unsupported_protocol")
        assert "older than the daemon" in str(reply["message"])
        assert any("upgrade" in s for s in reply["suggestions"])
        assert reply["context"]["client_protocol"] == str(old)
    # protocol 0 on one that does not decode: 0 is also "not stated", so just a bad request.
    assert_error(exchange(daemon.path, encode(request("nope", protocol=0))), "bad_request")
    # No protocol at all on a valid request: today's version is assumed.
    assert_pong(exchange(daemon.path, encode({"type": "ping"})), daemon.pid)
    # A protocol number too large for any int64 is still just "newer".
    reply = assert_error(exchange(daemon.path, encode(request(protocol=2**64 - 1))),
                         "unsupported_protocol")
    assert reply["context"]["client_protocol"] == str(2**64 - 1)
    daemon.ping_ok()


def nested_arrays(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


@pytest.mark.parametrize("body", [
    encode(5),
    encode([1, 2, 3]),
    encode("ping"),
    encode(None),
    b"",
    encode(request()) + b"\x00",  # trailing bytes
    b"\xd4\x01\x00",  # an ext type
    nested_arrays(10_000),
    encode({"type": "ping"})[:-2],  # truncated msgpack
], ids=["int", "list", "str", "nil", "empty", "trailing", "ext", "deep-array", "truncated"])
def test_bodies_that_are_not_maps_are_bad_requests(projctld, body: bytes) -> None:
    daemon = projctld()
    with open_client(daemon.path) as sock:
        send_frame(sock, body)
        assert_error(recv_frame(sock), "bad_request")
        ping_on(sock, daemon.pid)
    daemon.ping_ok()


@pytest.mark.parametrize("body", [
    encode(request()).replace(b"\x83", b"\x84", 1) + encode("pad") + nested_arrays(10_000),
    b"\x81\xa1a" * 10_000 + b"\xc0",  # 10,000 nested maps
], ids=["deep-unknown-field", "deep-maps"])
def test_deep_nesting_inside_a_map_is_a_bad_request(projctld, body: bytes) -> None:
    daemon = projctld()
    assert body[0] in (0x81, 0x84)  # a map, so the decoder has to walk into it
    reply = exchange(daemon.path, body)
    if reply is None:  # let a dying daemon finish writing its traceback
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.process.wait(timeout=5)
    assert reply is not None, f"connection closed; projctld log:\n{daemon.log()}"
    assert_error(reply, "bad_request")
    daemon.ping_ok()


# --------------------------------------------------------------------------------------------
# 10: many clients at once


def _ping_many(path: str, count: int) -> list[dict[object, object] | None]:
    """Open `count` connections at once, ping on each, read every answer, then close them all.

    All of them are open together from the first connect to the last reply, so the daemon sees
    `count` concurrent clients however it schedules them.
    """
    socks = [open_client(path) for _ in range(count)]
    try:
        ping = header(len(encode(request()))) + encode(request())
        for sock in socks:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(ping)  # a refused client may already be closed by the daemon
        return [recv_frame(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def test_past_max_connections_clients_are_told_busy(projctld) -> None:
    daemon = projctld()  # max_connections defaults to 256
    replies = _ping_many(daemon.path, 300)
    pongs = [r for r in replies if r is not None and r["type"] == "pong"]
    busy = [r for r in replies if r is not None and r.get("code") == "busy"]
    assert len(pongs) + len(busy) == 300, [r for r in replies if r not in pongs + busy][:3]
    assert 200 <= len(pongs) <= 256  # all 300 are open together, so never more than the cap
    for reply in pongs:
        assert_pong(reply, daemon.pid)
    for reply in busy:
        assert_error(reply, "busy")
        assert reply["suggestions"]
    daemon.ping_ok()


def test_300_clients_at_once_within_max_connections(projctld) -> None:
    daemon = projctld(max_connections=1000)
    replies = _ping_many(daemon.path, 300)
    for reply in replies:
        assert_pong(reply, daemon.pid)
    daemon.ping_ok()


# --------------------------------------------------------------------------------------------
# 11: memory under hostile load


BIG_GARBAGE = b"\xc1" + os.urandom(MAX_FRAME - 1)
BIG_PING = encode({**request(), "pad": "x" * (MAX_FRAME - 100)})
WRONG = encode(request("status", checkout={"root": 5}))
NEWER = encode(request(protocol=99))


def _hostile(path: str, kind: int) -> None:
    """One hostile connection of the given kind; asserts what the daemon answers."""
    with open_client(path) as sock:
        if kind == 0:  # garbage body
            send_frame(sock, GARBAGE)
            assert_error(recv_frame(sock), "bad_request")
        elif kind == 1:  # a 1 MiB frame announced, a quarter of it sent, then gone
            sock.sendall(header(MAX_FRAME) + b"\xc1" * (MAX_FRAME // 4))
        elif kind == 2:  # a whole max-size frame of garbage
            send_frame(sock, BIG_GARBAGE)
            assert_error(recv_frame(sock), "bad_request")
        elif kind == 3:  # an absurd header
            sock.sendall(header(0xFFFFFFFF))
            assert_error(recv_frame(sock), "frame_too_large")
        elif kind == 4:  # unknown type
            send_frame(sock, encode(request("nope")))
            assert_error(recv_frame(sock), "bad_request")
        elif kind == 5:  # not a frame at all
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            reply = recv_frame(sock)
            assert reply is None or reply["code"] == "frame_too_large"
        elif kind == 6:  # a 1 MiB frame announced, most of it sent, then EOF
            sock.sendall(header(MAX_FRAME) + b"\xc1" * (MAX_FRAME - 100))
            sock.shutdown(socket.SHUT_WR)
            assert recv_frame(sock) is None
        elif kind == 7:  # a near-max valid ping padded with an unknown field: answered
            send_frame(sock, BIG_PING)
            assert recv_frame(sock) is not None
        elif kind == 8:  # wrong types, then a newer protocol, pipelined
            sock.sendall(header(len(WRONG)) + WRONG + header(len(NEWER)) + NEWER)
            assert_error(recv_frame(sock), "bad_request")
            assert_error(recv_frame(sock), "unsupported_protocol")
        # kind 9: connect and leave at once



def test_memory_stays_bounded_under_hostile_load(projctld) -> None:
    daemon = projctld(idle_timeout=2.0)
    daemon.ping_ok()
    before = daemon.rss_kib()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for result in pool.map(lambda i: _hostile(daemon.path, i % 10), range(2000)):
            assert result is None
    daemon.ping_ok()
    after = daemon.rss_kib()
    print(f"projctld VmRSS: before {before} KiB, after 2000 hostile connections {after} KiB, "
          f"growth {after - before} KiB")
    assert after - before < 64 * 1024


# --------------------------------------------------------------------------------------------
# 12: pipelining


def test_pipelined_requests_are_answered_in_order(projctld) -> None:
    daemon = projctld()
    with open_client(daemon.path) as sock:
        ping = encode(request())
        sock.sendall(header(len(ping)) + ping + header(len(ping)) + ping)
        assert_pong(recv_frame(sock), daemon.pid)
        assert_pong(recv_frame(sock), daemon.pid)
        bad = encode(request("nope"))
        sock.sendall(header(len(ping)) + ping + header(len(bad)) + bad + header(len(ping)) + ping)
        assert_pong(recv_frame(sock), daemon.pid)
        assert_error(recv_frame(sock), "bad_request")
        assert_pong(recv_frame(sock), daemon.pid)
    daemon.ping_ok()


def test_a_client_sending_a_thousand_requests_at_once_takes_turns_with_others(projctld) -> None:
    daemon = projctld()
    ping, bad = encode(request()), encode(request("nope"))
    burst = b"".join(header(len(body)) + body for body in [ping, ping, bad] * 400)
    with open_client(daemon.path) as flood, open_client(daemon.path) as other:
        sender = threading.Thread(target=flood.sendall, args=(burst,))
        sender.start()
        ping_on(other, daemon.pid)  # answered while the flood is being answered
        for _ in range(400):  # and the flood's replies come in the order it asked
            assert_pong(recv_frame(flood), daemon.pid)
            assert_pong(recv_frame(flood), daemon.pid)
            assert_error(recv_frame(flood), "bad_request")
        sender.join()
        ping_on(flood, daemon.pid)
    daemon.ping_ok()


# --------------------------------------------------------------------------------------------
# 13: other users


def _as_nobody(action: Callable[[], str]) -> str:
    """Run `action` in a forked child as uid/gid 65534; what it returned, or what it raised."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_end)
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                result = action()
            except BaseException as exc:
                result = f"raised {type(exc).__name__}: {exc}"
            os.write(write_end, result.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as reader:
        chunks.append(reader.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode()


def _nobody_pings(path: str) -> Callable[[], str]:
    def action() -> str:
        with open_client(path, timeout=5) as sock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                send_frame(sock, encode(request()))
            reply = recv_frame(sock)
        if reply is None:
            return "closed"
        return f"{reply['type']}:{reply.get('code', '')}"
    return action


def test_socket_and_its_directory_are_private(projctld) -> None:
    daemon = projctld()
    assert stat.S_IMODE(os.stat(os.path.dirname(daemon.path)).st_mode) == 0o700
    info = os.stat(daemon.path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()
    daemon.ping_ok()


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another uid")


@pytest.fixture
def shared_socket_path() -> Iterator[str]:
    """A socket path whose parents uid 65534 may traverse (the sandbox's /tmp may be 0700)."""
    bases = [b for b in ("/var/tmp", "/dev/shm", "/tmp")
             if os.path.isdir(b) and os.stat(b).st_mode & 0o001]
    if not bases:
        pytest.skip("no world-searchable directory to put a shared socket in")
    base = tempfile.mkdtemp(prefix="pj", dir=bases[0])
    os.chmod(base, 0o711)
    yield os.path.join(base, "projctl", "projctld.sock")
    shutil.rmtree(base, ignore_errors=True)


@needs_root
def test_another_uid_cannot_reach_the_default_socket(projctld, shared_socket_path: str) -> None:
    daemon = projctld(socket_path=shared_socket_path)
    socket_dir = os.path.dirname(daemon.path)
    assert stat.S_IMODE(os.stat(socket_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(daemon.path).st_mode) == 0o600
    # Only projctl's own directory (0700) and socket (0600) stand in the way: a probe shows
    # that uid 65534 does reach the directory above them.
    probe = _as_nobody(lambda: str(os.path.isdir(os.path.dirname(socket_dir))))
    assert probe == "True", probe
    result = _as_nobody(_nobody_pings(daemon.path))
    assert result.startswith("raised PermissionError"), result
    # With the directory opened up, the 0600 socket alone still keeps them out.
    os.chmod(socket_dir, 0o755)
    result = _as_nobody(_nobody_pings(daemon.path))
    assert result.startswith("raised PermissionError"), result
    daemon.ping_ok()


@needs_root
def test_another_uid_is_refused_even_with_an_open_socket(projctld, shared_socket_path: str) -> None:
    daemon = projctld(socket_path=shared_socket_path)
    os.chmod(os.path.dirname(daemon.path), 0o755)
    os.chmod(daemon.path, 0o666)
    for _ in range(3):
        result = _as_nobody(_nobody_pings(daemon.path))
        assert result in ("error:forbidden", "closed"), result
    daemon.ping_ok()


# A client that sends but never reads its replies.


def test_a_client_that_never_reads_is_dropped(projctld) -> None:
    daemon = projctld(idle_timeout=1.0, max_connections=1)
    hog = open_client(daemon.path, timeout=0.5)
    try:
        ping = encode(request())
        burst = (header(len(ping)) + ping) * 2000
        with contextlib.suppress(TimeoutError, BrokenPipeError, ConnectionResetError):
            hog.sendall(burst)  # fills the daemon's send buffer with pongs nobody reads
        deadline = time.monotonic() + 6  # idle_timeout is 1 s
        reply = None
        while time.monotonic() < deadline:
            reply = exchange(daemon.path, ping)
            if reply is not None and reply["type"] == "pong":
                break
            time.sleep(0.2)
        assert_pong(reply, daemon.pid)
    finally:
        hog.close()
    daemon.ping_ok()
