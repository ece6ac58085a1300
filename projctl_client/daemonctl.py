"""Starting and stopping projctld from the client: spawn, bounded readiness wait, ordered stop.

connect_or_start is on the hot path (every command that needs the daemon connects through it), so
subprocess, select and fcntl are imported where they are used: connecting to a running daemon
costs no more than connection.py does.
"""

from __future__ import annotations

import os
import sys
import time

from projctl_client import paths
from projctl_client.connection import (
    Connection,
    DaemonUnavailable,
    NotRunning,
    connect,
    seconds_from_env,
)


def connect_or_start(path: str | None = None, *, timeout: float | None = None,
                     sandbox: bool = False) -> Connection:
    """Connect to the daemon, starting it first unless PROJCTL_NO_AUTOSTART=1."""
    try:
        return connect(path, timeout=timeout)
    except NotRunning as exc:
        if os.environ.get("PROJCTL_NO_AUTOSTART", "") not in ("", "0"):
            raise DaemonUnavailable(
                f"projctld is not running (no daemon at {exc.path}) and "
                "PROJCTL_NO_AUTOSTART is set",
                ["projctl daemon start"],
            ) from None
    start(path, sandbox=sandbox)
    return connect(path, timeout=timeout)


def start(socket: str | None = None, *, sandbox: bool = False) -> None:
    """Start projctld in the background and return once a daemon serves `socket`.

    The daemon reports on an inherited pipe (`--ready-fd`): `ready`, or `error: ...` lines that
    are shown to the user as they are. Its log goes to paths.log_path(), which the daemon keeps
    bounded (`--log-file`). With `sandbox`, it is the demo daemon that polls built-in fake
    upstreams.
    """
    import subprocess

    socket = socket or paths.socket_path()
    # The demo's socket (PROJCTL_SOCKET pointed at it, to try the demo) only ever starts the
    # demo: a real daemon there would serve the user's config where the demo was asked for.
    sandbox = sandbox or socket == paths.sandbox_socket_path()
    timeout = seconds_from_env("PROJCTL_START_TIMEOUT", 10.0)
    log = paths.log_path(sandbox=sandbox)
    try:
        log_file = _open_log(log)
    except (OSError, paths.InsecureDirectory) as exc:
        raise DaemonUnavailable(f"cannot write projctld's log {log}: "
                                f"{getattr(exc, 'strerror', None) or exc}",
                                [f"ls -ld {os.path.dirname(log)}  # it must be yours"]) from None
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, PROJCTL_SOCKET=socket)
    try:
        with log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "projctld", "run", "--ready-fd", str(write_fd),
                 "--log-file", log, *(["--sandbox"] if sandbox else [])],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                pass_fds=(write_fd,), start_new_session=True, env=env,
            )
    except OSError as exc:
        os.close(read_fd)
        raise DaemonUnavailable(f"could not run projctld: {exc}", ["projctld run"]) from None
    finally:
        os.close(write_fd)
    deadline = time.monotonic() + timeout
    with os.fdopen(read_fd, "rb") as ready_pipe:
        report = _read_report(ready_pipe, deadline)
    if report == "ready":
        return
    # Another client started a daemon at the same moment: that one will serve us once ready.
    if report.startswith("error: another projctld") and _wait_serving(socket, deadline):
        return
    if not report:
        state = "stopped" if process.poll() is not None else "is still starting"
        raise DaemonUnavailable(
            f"projctld did not become ready within {timeout:g} s (it {state})",
            [f"projctld run  # in the foreground, to see why; its log is {log}"],
        )
    lines = report.splitlines()
    message = lines[0].removeprefix("error: ")
    suggestions = [line.removeprefix("try: ") for line in lines[1:] if line.startswith("try: ")]
    raise DaemonUnavailable(f"projctld could not start: {message}", suggestions)


def _open_log(path: str) -> object:
    """The daemon's log, for appending: private (0600, in a 0700 directory), like all it holds."""
    paths.ensure_private_dir(os.path.dirname(path))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, 0o600)  # written by an older projctl
    return os.fdopen(fd, "ab")


def _read_report(pipe: object, deadline: float) -> str:
    """Everything the daemon writes on the ready pipe until it closes it or says `ready`."""
    import select

    data = b""
    fd = pipe.fileno()  # type: ignore[attr-defined]
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        if data.startswith(b"ready\n"):
            return "ready"
    return data.decode(errors="replace").strip()


def _wait_serving(socket: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            connect(socket).close()
            return True
        except DaemonUnavailable:
            time.sleep(0.01)
    return False


def wait_until_stopped(socket: str | None = None) -> bool:
    """Wait (bounded) until the daemon on `socket` has released its lock, i.e. has exited."""
    import fcntl

    lock = paths.lock_path(socket or paths.socket_path())
    deadline = time.monotonic() + seconds_from_env("PROJCTL_STOP_TIMEOUT", 15.0)
    while time.monotonic() < deadline:
        try:
            # Read-only, never created, never through a link: only a daemon's lock counts.
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # gone, or a link no daemon of ours would have made
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.02)
        finally:
            os.close(fd)
    return False
