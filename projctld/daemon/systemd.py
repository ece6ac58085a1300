"""systemd integration, stdlib only: sd_notify messages and socket activation (LISTEN_FDS)."""

from __future__ import annotations

import os
import socket

from projctld import logging as logs
from projctld.errors import StartupError

log = logs.get_logger(__name__)

# sd_listen_fds(3): passed descriptors start at 3.
LISTEN_FDS_START = 3


class Notifier:
    """Tells the service manager how the daemon is doing; does nothing when none listens."""

    def __init__(self, address: str | None, watchdog_interval: float | None) -> None:
        self.address = address
        # How often to send WATCHDOG=1: half of WatchdogSec=, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval = watchdog_interval
        self._failed = False

    @classmethod
    def from_environ(cls) -> Notifier:
        """The notifier that $NOTIFY_SOCKET and $WATCHDOG_USEC / $WATCHDOG_PID describe.

        They are removed from the environment: they are meant for this process only, and a
        child that inherited them (a token command, git) could speak for the daemon.
        """
        address = os.environ.pop("NOTIFY_SOCKET", "") or None
        usec = os.environ.pop("WATCHDOG_USEC", "")
        pid = os.environ.pop("WATCHDOG_PID", "")
        interval = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            interval = int(usec) / 2e6
        return cls(address, interval)

    def notify(self, *assignments: str) -> None:
        """Send `READY=1`-style assignments; a manager that is gone is logged once, never raised."""
        if self.address is None:
            return
        # An address starting with "@" is in the abstract namespace (sd_notify(3)).
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never block the event loop on a manager that does not read.
                sock.setblocking(False)
                sock.sendto("\n".join(assignments).encode(), target)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("systemd_notify_failed", socket=self.address,
                            error=exc.strerror or str(exc), sent="\n".join(assignments))


def inherited_socket() -> socket.socket | None:
    """The listening socket systemd passed us (socket activation), or None if it passed none.

    The LISTEN_* variables are removed from the environment so that children do not take the
    descriptor for theirs, and the descriptor is made close-on-exec for the same reason.
    """
    pid = os.environ.pop("LISTEN_PID", "")
    count = os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if pid != str(os.getpid()) or not count:
        return None
    fix = ["check projctld.socket: one ListenStream= with a path, Accept=no "
           "(`projctld install-systemd` writes a good one)"]
    if count != "1":
        raise StartupError(
            f"systemd passed {count} sockets (LISTEN_FDS); projctld serves exactly one",
            suggestions=fix)
    try:
        sock = socket.socket(fileno=LISTEN_FDS_START)
    except OSError as exc:
        raise StartupError(
            f"systemd passed descriptor {LISTEN_FDS_START}, which is not an open socket: "
            f"{exc.strerror}", suggestions=fix) from None
    sock.set_inheritable(False)
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM or not listening:
        kind = " ".join(str(getattr(v, "name", v)) for v in (sock.family, sock.type))
        if sock.type == socket.SOCK_STREAM and not listening:
            kind += ", not listening"  # Accept=yes passes each connection instead
        sock.close()
        raise StartupError(
            f"systemd passed an unusable socket ({kind}): projctld serves a listening AF_UNIX "
            "stream socket", suggestions=fix)
    return sock


def bound_path(sock: socket.socket) -> str:
    """The absolute path `sock` is bound to; an abstract or unbound socket is refused."""
    name = sock.getsockname()
    if not isinstance(name, str) or not name.startswith("/"):
        raise StartupError(
            f"systemd passed a socket bound to {name!r}, not to an absolute path: projctld "
            "keeps its lock beside the socket",
            suggestions=["set ListenStream=%t/projctl/projctld.sock in projctld.socket"])
    return name


def is_listening(path: str) -> bool:
    """True if a live socket listens at `path` (from /proc/net/unix; False if unreadable).

    A socket file nobody listens on is a dead daemon's and may go; one that systemd (or
    systemd-socket-activate) listens on must stay, or socket activation breaks silently.
    """
    try:
        with open("/proc/net/unix", "rb") as table:
            lines = table.read().splitlines()[1:]
    except OSError:
        return False
    wanted = os.fsencode(path)
    for line in lines:
        # Num RefCount Protocol Flags Type St Inode Path; the path may hold spaces.
        fields = line.split(None, 7)
        # __SO_ACCEPTCON in the flags marks a listening socket.
        if len(fields) == 8 and fields[7] == wanted and int(fields[3], 16) & 0x10000:
            return True
    return False
