"""Where projctl keeps its config, state and socket (XDG base directories); the daemon reuses it."""

from __future__ import annotations

import os
import stat

APP = "projctl"


def _xdg(var: str, default: str) -> str:
    # The XDG spec says relative values are invalid and must be ignored.
    value = os.environ.get(var, "")
    return value if os.path.isabs(value) else os.path.expanduser(default)


def config_path() -> str:
    """$PROJCTL_CONFIG, else $XDG_CONFIG_HOME/projctl/config.toml."""
    explicit = os.environ.get("PROJCTL_CONFIG")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    return os.path.join(_xdg("XDG_CONFIG_HOME", "~/.config"), APP, "config.toml")


def state_dir() -> str:
    """$XDG_STATE_HOME/projctl: the state database and the daemon's log."""
    return os.path.join(_xdg("XDG_STATE_HOME", "~/.local/state"), APP)


def database_path(*, sandbox: bool = False) -> str:
    """The state database; the sandbox (`projctl demo`) keeps its own under sandbox/."""
    return os.path.join(state_dir(), "sandbox" if sandbox else "", "state.db")


def log_path(*, sandbox: bool = False) -> str:
    """Where a daemon started by the client writes its log (systemd sends it to the journal)."""
    return os.path.join(state_dir(), "sandbox" if sandbox else "", "projctld.log")


def runtime_dir() -> str:
    """$XDG_RUNTIME_DIR/projctl, or a private per-user directory under $TMPDIR without one."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(base):
        return os.path.join(base, APP)
    tmp = os.environ.get("TMPDIR", "")
    return os.path.join(tmp if os.path.isabs(tmp) else "/tmp", f"{APP}-{os.getuid()}")


def socket_path() -> str:
    """$PROJCTL_SOCKET, else projctld.sock in the runtime directory."""
    explicit = os.environ.get("PROJCTL_SOCKET")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    return os.path.join(runtime_dir(), "projctld.sock")


def sandbox_socket_path() -> str:
    """The socket of the sandbox daemon that `projctl demo` runs beside the real one."""
    return os.path.join(runtime_dir(), "sandbox.sock")


def prompt_dir(socket: str) -> str:
    """The prompt files of the daemon serving `socket`, beside it (see projctld/prompt/files.py)."""
    return os.path.splitext(socket)[0] + "-prompt"


def lock_path(socket: str) -> str:
    """The lock that makes one daemon per socket; it sits beside the socket."""
    return socket + ".lock"


class InsecureDirectory(Exception):
    """A directory that should be private to this user is not, and cannot be made so."""


def ensure_private_dir(path: str) -> None:
    """Create `path` with mode 0700 or check that the existing one is ours and private.

    A directory in /tmp could have been created by someone else to catch our socket, so an
    existing one must be a real directory owned by us; a loose mode on our own is tightened.
    """
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise InsecureDirectory(f"{path} is not a directory; remove it or set PROJCTL_SOCKET")
    if info.st_uid != os.getuid():
        raise InsecureDirectory(
            f"{path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}); "
            "remove it or set PROJCTL_SOCKET to a path in a directory of your own"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
