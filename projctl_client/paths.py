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


def environment_path() -> str:
    """$XDG_CONFIG_HOME/projctl/environment: variables (tokens) the daemon always reads, and
    systemd's projctld.service too."""
    return os.path.join(_xdg("XDG_CONFIG_HOME", "~/.config"), APP, "environment")


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
    return _tmp_runtime_dir()


def _tmp_runtime_dir() -> str:
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


def own_directories() -> tuple[str, ...]:
    """The directories that are projctl's by name: made 0700, and tightened when found looser."""
    state = state_dir()
    return runtime_dir(), _tmp_runtime_dir(), state, os.path.join(state, "sandbox")


def private_socket_example() -> str:
    """A socket path that is short and in a directory of this user's own (which the daemon
    creates, mode 0700), for when the usual one is too long or in a shared directory: the
    default without $XDG_RUNTIME_DIR."""
    return os.path.join(_tmp_runtime_dir(), "projctld.sock")


class InsecureDirectory(Exception):
    """A directory that should be private to this user is not, and is not ours to change."""


def ensure_private_dir(path: str) -> bool:
    """Create `path` with mode 0700 and return True, or check the existing one and return False.

    Only projctl's own directories (own_directories) are tightened when found looser. Any
    other existing directory was made by someone else, for other uses, so its mode is never
    changed: it must be a real directory (not a link), owned by us, that no one else may write
    in. A shared one such as /tmp is refused: another user could replace what we put there.
    """
    parent = os.path.dirname(path)
    if parent in own_directories():
        ensure_private_dir(parent)  # os.makedirs would give it the umask's mode
    elif parent:
        os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
        return True
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise InsecureDirectory(f"{path} is a symbolic link, not a directory; replace it with "
                                "the directory itself")
    if not stat.S_ISDIR(info.st_mode):
        raise InsecureDirectory(f"{path} is not a directory; move it away")
    if info.st_uid != os.getuid():
        raise InsecureDirectory(
            f"{path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077 and path in own_directories():
        os.chmod(path, 0o700)
    elif mode & 0o022:
        raise InsecureDirectory(
            f"{path} is shared: other users may write in it (mode {mode:o}), so they could "
            "replace or redirect what projctld keeps there; projctld uses only a directory of "
            "your own and never changes the mode of one it did not create")
    return False
