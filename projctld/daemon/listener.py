"""The daemon's Unix socket: one daemon per socket (a lock), a private directory, no stale file."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from collections.abc import Iterator

from projctl_client.paths import (
    InsecureDirectory,
    ensure_private_dir,
    lock_path,
    private_socket_example,
)
from projctld import logging as logs
from projctld.daemon import systemd
from projctld.errors import StartupError

log = logs.get_logger(__name__)

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107
# Clients that connect while the daemon starts, or in a burst, wait here rather than fail.
BACKLOG = 512
# What to do when the socket's place will not do: one that works for any user, root or not.
_ELSEWHERE = (f"export PROJCTL_SOCKET={private_socket_example()}  # short, and in a directory "
              "of your own that projctld creates (mode 700)")


@contextlib.contextmanager
def instance_lock(socket_path: str) -> Iterator[None]:
    """Hold the lock beside the socket for as long as this daemon lives.

    flock is released by the kernel when the process dies, however it dies, so whoever holds it
    owns the socket path, and a socket file found there without a holder is a dead daemon's.
    """
    _private_dir(os.path.dirname(socket_path))
    path = lock_path(socket_path)
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StartupError(
            f"another projctld (pid {holder}) already serves {socket_path}",
            suggestions=["projctl daemon status", "projctl daemon restart"],
            code="already_running",
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    try:
        yield
    finally:
        os.close(fd)


def _open_lock(path: str) -> int:
    """The lock file, never through a link (which could point at any file to truncate) and
    only if it is a plain file of ours."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK,
                     0o600)
    except OSError as exc:
        problem = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be opened: " \
            f"{exc.strerror}"
        raise StartupError(f"the lock file {path} {problem}; projctld will not use it",
                           suggestions=[f"rm {path}  # if it is not yours, ask who put it there",
                                        _ELSEWHERE]) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        os.close(fd)
        raise StartupError(f"the lock file {path} is not a plain file of yours; projctld will "
                           "not use it", suggestions=[_ELSEWHERE])
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.fchmod(fd, 0o600)
    return fd


@contextlib.contextmanager
def listen(socket_path: str) -> Iterator[tuple[socket.socket, str]]:
    """Hold the instance lock and a listening socket; yield the socket and the path it serves.

    Under socket activation the socket is systemd's, bound where its unit says: we serve it but
    neither bind nor remove it. Otherwise we bind `socket_path` and remove it again on exit.
    """
    with contextlib.ExitStack() as stack:
        inherited = systemd.inherited_socket()
        if inherited is not None:
            stack.enter_context(inherited)
            activated_path = systemd.bound_path(inherited)
            log.info("socket_activated", socket=activated_path)
            if activated_path != socket_path:
                # Clients that look at socket_path will not find this daemon.
                log.warning("socket_path_differs", socket=activated_path, expected=socket_path)
            stack.enter_context(instance_lock(activated_path))
            yield inherited, activated_path
            return
        # Said before the directory is judged: the fix for both is the same path elsewhere,
        # and a path that cannot be bound makes the directory's state beside the point.
        check_length(socket_path)
        stack.enter_context(instance_lock(socket_path))
        sock = stack.enter_context(bind(socket_path))
        stack.callback(remove, socket_path)
        yield sock, socket_path


def bind(socket_path: str, backlog: int = BACKLOG) -> socket.socket:
    """A listening socket at `socket_path` (its length checked), mode 0600. Call only while
    holding instance_lock."""
    remove_stale(socket_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask makes the socket 0600 from the moment it exists, not just after the chmod.
    previous = os.umask(0o177)
    try:
        sock.bind(socket_path)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot bind {socket_path}: {exc.strerror}") from None
    finally:
        os.umask(previous)
    os.chmod(socket_path, 0o600)
    sock.listen(backlog)
    return sock


def check_length(socket_path: str) -> None:
    """Refuse a path longer than a Unix socket's address can hold."""
    if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
        raise StartupError(
            f"the socket path {socket_path} is {len(os.fsencode(socket_path))} bytes; "
            f"Unix sockets allow {MAX_SOCKET_PATH}", suggestions=[_ELSEWHERE],
        )


def remove_stale(socket_path: str) -> None:
    """Remove a socket file left by a dead daemon; refuse to touch anything else."""
    try:
        info = os.lstat(socket_path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise StartupError(
            f"{socket_path} exists and is not a socket",
            suggestions=[f"move {socket_path} away, or set PROJCTL_SOCKET elsewhere"],
        )
    if systemd.is_listening(socket_path):
        # Held by systemd's projctld.socket, which starts a daemon on the next connection: a
        # daemon of our own would take its path away. The client waits for that one instead.
        raise StartupError(
            f"another projctld serves {socket_path} on demand: a process that listens there "
            "(systemd's projctld.socket) starts it on the first connection",
            suggestions=["projctl ping  # connects, which starts it",
                         "systemctl --user status projctld.socket projctld.service",
                         "systemctl --user stop projctld.socket  # to run projctld yourself"],
            code="already_running",
        )
    os.unlink(socket_path)


def remove(socket_path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)


def _private_dir(path: str) -> None:
    try:
        ensure_private_dir(path)
    except InsecureDirectory as exc:
        raise StartupError(str(exc), suggestions=[_ELSEWHERE]) from None
    except OSError as exc:
        raise StartupError(f"cannot create {path}: {exc.strerror}") from None
