"""The daemon's environment file, `$XDG_CONFIG_HOME/projctl/environment`: the variables (tokens
above all) that projctld reads at every start and reload, whichever shell started it.

Without it a daemon has the environment of the shell that happened to start it: after a crash,
one started from a shell without `GITHUB_TOKEN` has no GitHub token, and nothing else says so.
systemd reads the same file for projctld.service (`EnvironmentFile=`), so it takes what systemd
takes: `NAME=VALUE` lines, `#` or `;` comments, a value optionally in single or double quotes.
Its variables win over the environment the daemon was started with, so that the daemon's
tokens do not depend on which shell started it. It must be private (mode 0600): it holds
tokens.
"""

from __future__ import annotations

import os
import re
import stat

from projctl_client import paths
from projctld.errors import ConfigError

# Bounds: a file of tokens is a few hundred bytes.
MAX_BYTES = 64 * 1024
MAX_VARIABLES = 256
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# What the file set in os.environ, and what was there before it (None: nothing), so that a
# reload can take back a variable that left the file.
_applied: dict[str, str] = {}
_before: dict[str, str | None] = {}


def path() -> str:
    return paths.environment_path()


def shown(path: str) -> str:
    """`~/.config/projctl/environment` for a path under the home directory."""
    home = os.path.expanduser("~")
    return "~" + path[len(home):] if home != "/" and path.startswith(home + "/") else path


def read(path: str) -> dict[str, str]:
    """The variables of the file at `path` ({} when there is none); ConfigError when it is
    not private or not in the format systemd reads."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _error(path, f"cannot read it: {exc.strerror}", f"ls -l {path}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid != os.getuid():
            raise _error(path, f"it belongs to uid {info.st_uid}, not to you", f"ls -l {path}")
        if mode & 0o077:
            raise _error(path, f"it holds tokens but other users can read it (mode {mode:o})",
                         f"chmod 600 {path}")
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise _error(path, f"it is larger than {MAX_BYTES // 1024} KiB", f"edit {path}")
    return _parse(path, data.decode("utf-8", errors="replace"))


def _parse(path: str, text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or not _NAME.match(name):
            hint = " (no `export`: systemd reads this file too)" \
                if name.startswith("export ") else ""
            raise _error(path, f"line {number}: expected NAME=VALUE{hint}",
                         f"edit line {number} of {path}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
        if len(values) > MAX_VARIABLES:
            raise _error(path, f"it sets more than {MAX_VARIABLES} variables", f"edit {path}")
    return values


def _error(path: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path}: {problem}", suggestions=[fix], context={"file": path})


def apply(path: str | None = None) -> dict[str, str]:
    """Read the file and put its variables in this process's environment, taking back those
    that left it since the last call; on a ConfigError nothing changes."""
    path = path or paths.environment_path()
    values = read(path)
    for name in set(_applied) - set(values):
        previous = _before.pop(name)
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
        del _applied[name]
    for name, value in values.items():
        if name not in _applied:
            _before[name] = os.environ.get(name)
        os.environ[name] = value
        _applied[name] = value
    return values


def applied() -> dict[str, str]:
    """The variables the file has set in this process."""
    return dict(_applied)


def from_file(name: str) -> bool:
    """Whether this process's variable `name` came from the file (else it was inherited)."""
    return name in _applied
