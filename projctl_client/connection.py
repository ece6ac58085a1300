"""Blocking AF_UNIX client for projctld: one request frame out, one reply frame back.

It uses the C module `_socket` rather than `socket`: `import socket` spends about 7 ms building
enums, which is a third of what a `projctl status` may cost in all (bench/client_latency.py).
"""

from __future__ import annotations

import _socket
import os
import struct
import time

from projctl_client import __version__, minipack, paths
from projctl_client.frames import HEADER_SIZE, PROTOCOL_VERSION, FrameTooLarge, body_length, frame


def seconds_from_env(name: str, default: float) -> float:
    """A duration in seconds from the environment variable `name`, else `default`."""
    try:
        return float(os.environ[name])
    except (KeyError, ValueError):
        return default

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ClientError(Exception):
    """Something the user must act on; `exit_code` follows the exit codes in the README."""

    exit_code = 1

    def __init__(self, message: str, suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.suggestions = suggestions or []


class DaemonUnavailable(ClientError):
    """projctld is not running, cannot be reached, or stopped answering (exit code 3)."""

    exit_code = 3


class DaemonError(ClientError):
    """projctld answered with an Error reply; one about the config exits 2, like any bad
    config."""

    def __init__(
        self, code: str, message: str, suggestions: list[str], context: dict[str, str]
    ) -> None:
        super().__init__(message, suggestions)
        self.code = code
        self.context = context
        if code == "config":
            self.exit_code = 2


_config_warned = False


def warn_config(problem: object) -> None:
    """Say once per command, on stderr, that the daemon runs without its config."""
    global _config_warned
    if _config_warned or not isinstance(problem, dict):
        return
    _config_warned = True
    lines = [f"projctl: warning: the config does not load: {problem.get('message')}",
             f"  projctld runs {problem.get('running') or 'without it'}"]
    lines += [f"  try: {s}" for s in problem.get("suggestions") or []]
    os.write(2, ("\n".join(lines) + "\n").encode(errors="replace"))


# The projctl command this process runs (`status`, `deploy`, ...), sent with each request so
# that `projctl metrics` can count by command; __main__ sets it.
command = ""


def request(kind: str, **fields: object) -> dict[str, object]:
    """A request as the daemon expects it: tagged, with the protocol and client version."""
    return {"type": kind, "protocol": PROTOCOL_VERSION, "client": __version__,
            "command": command, **fields}


class Connection:
    """One open connection to the daemon; reusable for many requests."""

    def __init__(self, sock: _socket.socket, path: str, deadline: float | None = None) -> None:
        self._sock = sock
        self.path = path
        # Whether a reply saying that the daemon runs without its config is told on stderr
        # (not by a prompt, which prints nothing but its segment).
        self.warn_config = True
        # With a deadline (time.monotonic), the whole exchange ends by then, not each step.
        self._deadline = deadline

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, message: dict[str, object]) -> dict[str, object]:
        """Send one request; return the reply, or raise DaemonError for an Error reply."""
        return self._checked(minipack.decode(self.exchange(minipack.encode(message))))

    def _checked(self, reply: object) -> dict[str, object]:
        if not isinstance(reply, dict) or not isinstance(reply.get("type"), str):
            raise DaemonUnavailable(
                "projctld sent a reply this client does not understand",
                ["projctl daemon restart"],
            )
        if reply.get("config_error") and self.warn_config:
            warn_config(reply["config_error"])
        if reply["type"] == "error":
            raise DaemonError(
                str(reply.get("code", "error")),
                str(reply.get("message", "projctld reported an error")),
                list(reply.get("suggestions") or []),  # type: ignore[call-overload]
                dict(reply.get("context") or {}),  # type: ignore[call-overload]
            )
        return reply

    def send(self, message: dict[str, object]) -> None:
        """Send one request whose answer is a stream: read it with `receive`, which waits as
        long as the stream has nothing to say."""
        self.exchange(minipack.encode(message), reply=False)
        if self._deadline is None:
            self._sock.settimeout(None)

    def receive(self) -> dict[str, object]:
        """The next frame of a stream, decoded; an Error frame raises DaemonError."""
        return self._checked(minipack.decode(self.exchange(None)))

    def fileno(self) -> int:
        return self._sock.fileno()

    def exchange(self, body: bytes | None, *, reply: bool = True) -> bytes:
        """Send one frame (unless None) and read one frame back (unless not `reply`)."""
        try:
            self._keep_deadline()
            if body is not None:
                self._sock.sendall(frame(body))
            if not reply:
                return b""
            length = body_length(self._recv_exactly(HEADER_SIZE))
            return self._recv_exactly(length)
        except TimeoutError:
            raise DaemonUnavailable(
                f"projctld did not answer within {self._sock.gettimeout():g} s",
                ["projctl daemon restart"],
            ) from None
        except FrameTooLarge as exc:
            raise DaemonUnavailable(f"projctld sent a reply that is too large: {exc}") from None
        except OSError as exc:
            raise DaemonUnavailable(
                f"lost the connection to projctld: {exc.strerror or exc}",
                ["projctl daemon status", "projctl daemon restart"],
            ) from None

    def _keep_deadline(self) -> None:
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(left)

    def _recv_exactly(self, size: int) -> bytes:
        buffer = bytearray(size)
        view = memoryview(buffer)
        received = 0
        while received < size:
            self._keep_deadline()
            count = self._sock.recv_into(view[received:])
            if count == 0:
                raise ConnectionResetError(0, "projctld closed the connection")
            received += count
        return bytes(buffer)


def connect(path: str | None = None, *, timeout: float | None = None,
            deadline: float | None = None) -> Connection:
    """Connect to a running daemon; raise DaemonUnavailable if there is none (no autostart).

    `timeout` bounds each step; `deadline` (time.monotonic) bounds connecting and every
    exchange on the connection together.
    """
    path = path or paths.socket_path()
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    if deadline is not None:
        timeout = max(deadline - time.monotonic(), 1e-6)
    sock.settimeout(timeout or seconds_from_env("PROJCTL_TIMEOUT", 10.0))
    try:
        sock.connect(path)
        _check_peer(sock, path)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
            raise NotRunning(path) from None
        if isinstance(exc, PermissionError):
            raise DaemonUnavailable(
                f"permission denied on {path}: the socket belongs to another user",
                ["set PROJCTL_SOCKET to a socket of your own"],
            ) from None
        if isinstance(exc, OSError):
            raise DaemonUnavailable(
                f"cannot connect to {path}: {exc.strerror or exc}",
                [f"export PROJCTL_SOCKET={paths.private_socket_example()}  # a shorter path"]
                if "too long" in str(exc) else [],
            ) from None
        raise
    return Connection(sock, path, deadline)


class NotRunning(DaemonUnavailable):
    """No daemon listens on the socket (no file, or a stale file nobody accepts on)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"projctld is not running (no daemon at {path})", ["projctl daemon start"])
        self.path = path


def _check_peer(sock: _socket.socket, path: str) -> None:
    # The daemon checks us; we check it too, so another user's socket cannot impersonate it.
    _pid, uid, _gid = _PEERCRED.unpack(
        sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _PEERCRED.size)
    )
    if uid != os.getuid():
        raise PermissionError(f"{path} is served by uid {uid}")
