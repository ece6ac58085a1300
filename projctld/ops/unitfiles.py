"""`projctld install-systemd`: the units in systemd_units/, rendered for this installation."""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Callable
from importlib import resources

from projctld import __version__
from projctld.errors import ProjctlError

USER_UNITS = ("projctld.service", "projctld.socket")
HUB_UNIT = "projctl-hub.service"
SYSTEM_DIR = "/etc/systemd/system"
# The shipped units run this; rendering puts this installation's projctld in its place.
SHIPPED_COMMAND = "/usr/local/bin/projctld"
# ProtectHome=yes in the hub's unit hides these directories from it.
HIDDEN_FROM_HUB = ("/home/", "/root/", "/run/user/")


def user_dir() -> str:
    """$XDG_CONFIG_HOME/systemd/user: where the user manager finds a user's own units."""
    config = os.environ.get("XDG_CONFIG_HOME", "")
    base = config if os.path.isabs(config) else os.path.expanduser("~/.config")
    return os.path.join(base, "systemd", "user")


def projctld_command(python: str = sys.executable) -> list[str]:
    """This installation's projctld: the script beside the interpreter, else `python -m`.

    The interpreter's path is kept as it is, not resolved: a venv's python is a symlink, and
    only through the venv's own path does it find the venv's packages.
    """
    python = os.path.abspath(python)
    script = os.path.join(os.path.dirname(python), "projctld")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [script]
    return [python, "-m", "projctld"]


def hidden_from_hub(paths: list[str]) -> str | None:
    """The first of `paths` that the hub's ProtectHome=yes hides, links resolved, if any."""
    for path in paths:
        real = os.path.realpath(path)
        if real.startswith(HIDDEN_FROM_HUB):
            return real
    return None


def _quote(word: str) -> str:
    """`word` as one word of a systemd command line (systemd.service(5), "Command lines")."""
    word = word.replace("%", "%%").replace("$", "$$")  # no specifiers, no variables
    if word and not re.search(r"[\s\"'\\;]", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(name: str, command: list[str]) -> str:
    """The shipped unit `name` with ExecStart= running `command` instead of SHIPPED_COMMAND."""
    text = (resources.files("projctld") / "systemd_units" / name).read_text()
    shipped = f"ExecStart={SHIPPED_COMMAND} "
    executable = " ".join(_quote(word) for word in command)
    lines = [f"ExecStart={executable} {line[len(shipped):]}" if line.startswith(shipped)
             else line for line in text.splitlines(keepends=True)]
    header = (f"# Written by `projctld install-systemd` of projctld {__version__}, which may\n"
              "# write it again: make changes in a drop-in (systemctl [--user] edit UNIT).\n")
    return header + "".join(lines)


def install(*, user: bool, hub: bool, directory: str | None, dry_run: bool,
            echo: Callable[[str], None], warn: Callable[[str], None]) -> None:
    """Write the user units and/or the hub's unit (or, with `dry_run`, show them), then say
    which commands to run next. Nothing is written unless every target directory is writable."""
    command = projctld_command()
    targets = [(os.path.join(directory or user_dir(), name), name) for name in USER_UNITS
               if user] + ([(os.path.join(directory or SYSTEM_DIR, HUB_UNIT), HUB_UNIT)]
                           if hub else [])
    if hub:
        # The script, the packages and the interpreter (a venv's python is a link, often to
        # a pyenv in the home directory) must all be visible to the hub.
        hidden = hidden_from_hub([command[0], sys.prefix, sys.executable, sys.base_prefix])
        if hidden:
            warn(f"warning: the hub's unit hides /home, /root and /run/user (ProtectHome=yes), "
                 f"and this projctld needs {hidden}: the hub would not start. Install projctl "
                 "with a Python outside them and run its install-systemd, e.g. "
                 "/usr/bin/python3 -m venv /opt/projctl && /opt/projctl/bin/pip install . && "
                 "/opt/projctl/bin/projctld install-systemd --hub")
    units = [(path, render(name, command)) for path, name in targets]
    if dry_run:
        for path, text in units:
            echo(f"# would write {path}:\n{text}")
    else:
        for folder in dict.fromkeys(os.path.dirname(path) for path, _ in units):
            _check_writable(folder, hub=hub, sudo=folder == SYSTEM_DIR, command=command)
        for path, text in units:
            _write(path, text, command=command)
            echo(f"wrote {path}")
    if user:
        echo(_user_steps(directory))
    if hub:
        echo(_hub_steps(command))


def _check_writable(folder: str, *, hub: bool, sudo: bool, command: list[str]) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        flags = " --hub" if hub else ""
        raise ProjctlError(
            f"cannot write the units into {folder}: {exc.strerror or exc}",
            suggestions=[
                *([f"sudo {shlex.join(command)} install-systemd{flags}"] if sudo else []),
                f"projctld install-systemd{flags} --dir DIR  # a directory you can write",
                f"projctld install-systemd{flags} --dry-run  # shows the units, writes nothing",
            ],
        ) from None


def _write(path: str, text: str, *, command: list[str]) -> None:
    partial = path + ".partial"
    try:
        with open(partial, "w") as handle:
            handle.write(text)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except OSError as exc:
        raise ProjctlError(f"cannot write {path}: {exc.strerror or exc}",
                           suggestions=["projctld install-systemd --dir DIR  # elsewhere"]) \
            from None


def _user_steps(directory: str | None) -> str:
    lines = ["next, run:",
             "  projctl daemon stop  # a daemon that projctl started would keep the socket",
             "  systemctl --user daemon-reload",
             "  systemctl --user enable --now projctld.socket",
             "the first projctl command then starts projctld; to start it at login instead:",
             "  systemctl --user enable --now projctld.service"]
    if directory and os.path.abspath(directory) != user_dir():
        units = [os.path.join(os.path.abspath(directory), name) for name in USER_UNITS]
        lines[1:1] = [f"  systemctl --user link {shlex.join(units)}  # or copy them to "
                      f"{user_dir()}"]
    return "\n".join(lines)


def _hub_steps(command: list[str]) -> str:
    return "\n".join([
        "next, as root:",
        "  systemctl daemon-reload",
        "  systemctl enable --now projctl-hub.service",
        "then a token per teammate, made as the hub's own user (it owns the database):",
        "  systemd-run --pipe --wait --quiet -p DynamicUser=yes -p User=projctl-hub "
        "-p StateDirectory=projctl-hub "
        "-E PROJCTL_HUB_DATABASE=sqlite:///var/lib/projctl-hub/hub.db "
        "-p EnvironmentFile=-/etc/projctl/hub.env "
        f"{shlex.join(command)} hub token create --user USER --project PROJECT --write",
    ])
