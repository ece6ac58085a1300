"""`projctl doctor`: the client's own checks (config file, socket, daemon), then the daemon's, then
the commands that plugins add.

The daemon's checks (projctld/ops/doctor.py) come over the socket; with no daemon to ask they run
in `projctld doctor --json`, started here, so that doctor helps most when the daemon is down.
It never starts the daemon (though under systemd socket activation, connecting does).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

from projctl_client import __version__, jsonout, paths, render
from projctl_client.connection import ClientError, DaemonError, NotRunning, connect, request
from projctl_client.frames import PROTOCOL_VERSION

# The daemon bounds each of its checks at 20 s (a token command, then a request); they run
# concurrently, so this leaves room for the slowest and for starting `projctld doctor`.
DAEMON_CHECKS_TIMEOUT = 60.0
OFFLINE = [sys.executable, "-m", "projctld", "doctor", "--json"]
FIELDS = ("name", "status", "detail", "fix")
_MARKS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"),
          "skip": ("-", "dim")}


def run(as_json: bool) -> int:
    """Print every check; 1 when one failed, else 0."""
    checks = gather()
    print(jsonout.dumps(checks) if as_json else text(checks, sys.stdout))
    return 1 if any(check["status"] == "fail" for check in checks) else 0


def gather() -> list[dict]:
    socket = paths.socket_path()
    info, daemon = _daemon(socket)
    checks = [_config_file(info), _socket(socket), daemon]
    found = None
    if info is not None:
        try:
            with connect(socket, timeout=DAEMON_CHECKS_TIMEOUT) as conn:
                found = conn.call(request("doctor"))["checks"]
        except ClientError as exc:  # e.g. a daemon older than `doctor`
            daemon.update(status="fail" if daemon["status"] == "fail" else "warn",
                          detail=f"{daemon['detail']}; it could not run its checks "
                                 f"({exc.message}), so they ran without it",
                          fix=daemon["fix"] or "projctl daemon restart")
    return checks + [_shaped(check) for check in (_offline() if found is None else found)] \
        + [_plugin_commands()]


def text(checks: list[dict], stream: object) -> str:
    """One line per check (mark, name, detail) with its fix indented under it; a tally."""
    style = render.Style(stream)
    width = max(len(check["name"]) for check in checks)
    lines = []
    for check in checks:
        mark, colour = _MARKS.get(check["status"], ("?", "dim"))
        detail = style.paint("dim", check["detail"]) if check["status"] == "skip" \
            else check["detail"]
        lines.append(f"{style.paint(colour, mark)} {check['name']:<{width}}  {detail}")
        if check.get("fix"):
            lines.append(f"{' ' * (width + 4)}fix: {check['fix']}")
    counts = {status: sum(check["status"] == status for check in checks) for status in _MARKS}
    tally = [f"{counts['ok']} ok"] + [
        f"{counts[status]} {word}" for status, word in
        (("warn", "to look at"), ("fail", "failed"), ("skip", "skipped")) if counts[status]]
    return "\n".join([*lines, "", ", ".join(tally)])


def _check(name: str, status: str, detail: str, fix: str | None = None) -> dict:
    return {"name": name, "status": status, "detail": detail, "fix": fix}


def _shaped(check: object) -> dict:
    """A daemon-side check with exactly the four fields, whatever else a peer added."""
    if not isinstance(check, dict):
        return _check("daemon checks", "fail", f"projctld sent a check this projctl cannot "
                      f"read: {check!r}", "projctl daemon restart")
    return {field: check.get(field) for field in FIELDS}


def _daemon(socket: str) -> tuple[dict | None, dict]:
    """The daemon's info from a ping (None when it does not answer), and the check of it."""
    try:
        with connect(socket) as conn:
            info: dict = conn.call(request("ping"))["daemon"]  # type: ignore[assignment]
    except NotRunning as exc:  # not a fault: the next command starts it
        return None, _check("daemon", "warn", f"{exc.message}: the checks below ran without "
                            "it", "projctl daemon start")
    except DaemonError as exc:  # a daemon of another protocol says which upgrade it needs
        return None, _check("daemon", "fail", exc.message,
                            exc.suggestions[0] if exc.suggestions else "projctl daemon restart")
    except ClientError as exc:
        return None, _check("daemon", "fail", f"{exc.message}: the checks below ran without it",
                            exc.suggestions[0] if exc.suggestions else "projctl daemon restart")
    running = (f"projctld {info['version']} (protocol {info['protocol']}), pid {info['pid']}, "
               f"up {render.duration(max(0.0, time.time() - info['started_at']))}")
    if info["version"] == __version__ and info["protocol"] == PROTOCOL_VERSION:
        return info, _check("daemon", "ok", f"{running}: the same as this projctl")
    if _version_key(info["version"]) > _version_key(__version__):
        fix = f"pip install --upgrade 'projctl>={info['version']}'"
    else:
        fix = "projctl daemon restart  # runs the installed projctld"
    return info, _check("daemon", "warn", f"{running}, but this projctl is {__version__} "
                        f"(protocol {PROTOCOL_VERSION})", fix)


def _version_key(version: str) -> tuple[int, ...]:
    """(1, 2, 0) for "1.2.0rc1": the leading numeric parts, enough to say which is newer."""
    parts = []
    for part in version.split("."):
        digits = part[:len(part) - len(part.lstrip("0123456789"))]
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _config_file(info: dict | None) -> dict:
    """The config file the daemon reads (else the one it would): present and readable."""
    mine = paths.config_path()
    path = info["config_path"] if info else mine
    if not path.startswith("/"):
        return _check("config file", "skip", "the sandbox daemon has no config file")
    if path != mine:
        return _check("config file", "warn", f"projctld reads {path}, but this shell's "
                      f"projctl reads {mine} ($PROJCTL_CONFIG or $XDG_CONFIG_HOME differ)",
                      "projctl daemon restart  # from this shell, to read " + mine)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return _check("config file", "warn", f"no config file at {path}: nothing is "
                      "configured, every default applies",
                      f"projctl config example > {path}  # every key, commented out; then "
                      "add a [projects.NAME] table")
    except OSError as exc:
        return _check("config file", "fail", f"cannot look at {path}: {exc.strerror}",
                      f"ls -ld {os.path.dirname(path)}  # it must be yours")
    if not os.access(path, os.R_OK):
        return _check("config file", "fail", f"{path} is not readable (mode {mode:o})",
                      f"chmod 600 {path}")
    return _check("config file", "ok", f"{path} (mode {mode:o})")


def _socket(socket: str) -> dict:
    """The socket's directory 0700 and the socket 0600, both ours (the daemon makes them so)."""
    directory = os.path.dirname(socket)
    elsewhere = (f"export PROJCTL_SOCKET={paths.private_socket_example()}  # in a directory of "
                 "your own, which projctld creates")
    try:
        folder = os.lstat(directory)
    except FileNotFoundError:
        return _check("socket", "ok", f"no {directory} yet: projctld creates it, mode 700, "
                      "when it starts")
    uid = os.getuid()
    if not stat.S_ISDIR(folder.st_mode):
        return _check("socket", "fail", f"{directory} is not a directory", elsewhere)
    if folder.st_uid != uid:
        return _check("socket", "fail", f"{directory} belongs to uid {folder.st_uid}, not to "
                      f"you (uid {uid})", elsewhere)
    problems, fixes = [], []
    mode = stat.S_IMODE(folder.st_mode)
    if mode & 0o022 and directory not in paths.own_directories():
        # Never `chmod 700 /tmp`: it is not projctl's to change, and projctld refuses it.
        return _check("socket", "fail", f"{directory} is shared (mode {mode:o}): other users "
                      "could replace the socket or its lock", elsewhere)
    if mode & 0o077:
        problems.append(f"{directory} has mode {stat.S_IMODE(folder.st_mode):o}, not 700")
        fixes.append(f"chmod 700 {directory}")
    try:
        sock = os.lstat(socket)
    except FileNotFoundError:
        sock = None
    if sock is not None and not stat.S_ISSOCK(sock.st_mode):
        problems.append(f"{socket} is not a socket")
        fixes.append(f"rm {socket}")
    elif sock is not None and sock.st_uid != uid:
        return _check("socket", "fail", f"{socket} belongs to uid {sock.st_uid}, not to you "
                      f"(uid {uid})", elsewhere)
    elif sock is not None and stat.S_IMODE(sock.st_mode) & 0o077:
        problems.append(f"{socket} has mode {stat.S_IMODE(sock.st_mode):o}, not 600")
        fixes.append(f"chmod 600 {socket}")
    if problems:
        return _check("socket", "fail", "; ".join(problems) + ": other users could reach the "
                      "daemon's socket", " && ".join(fixes))
    if sock is None:
        return _check("socket", "ok", f"{directory} is yours, mode 700; no socket in it (no "
                      "daemon)")
    return _check("socket", "ok", f"{socket} is yours, mode 600, in a directory of mode 700")


def _plugin_commands() -> dict:
    """The commands plugins add: warned about when a file or entry point found never runs (a
    built-in's name, a second copy, an unsafe place), since `projctl NAME` then is not what its
    author meant it to be."""
    from projctl_client import commands
    from projctl_client.__main__ import BUILT_IN

    found = commands.everything(BUILT_IN)
    commands.load_all(found)
    running = sorted(c.name for c in found if c.problem is None)
    names = ", ".join(running) if running else "none"
    idle = [c for c in found if c.problem is not None]
    if not idle:
        return _check("plugin commands", "ok", f"{len(running)}: {names}" if running else
                      "none (a projctl-NAME executable on PATH, or a package's projctl.commands "
                      "entry point, adds one)")
    shown = "; ".join(f"{render.home(c.path or '') or c.target}: {c.problem}" for c in idle[:3])
    more = f"; and {len(idle) - 3} more" if len(idle) > 3 else ""
    return _check("plugin commands", "warn", f"running: {names}; never run: {shown}{more}",
                  "projctl plugins  # which file runs each command, and why the others do not")


def _offline() -> list[dict]:
    """The daemon's checks, run in a `projctld doctor` of this installation."""
    try:
        result = subprocess.run(OFFLINE, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=DAEMON_CHECKS_TIMEOUT)
        checks = json.loads(result.stdout)
        if not isinstance(checks, list):
            raise ValueError(checks)
        return checks
    except subprocess.TimeoutExpired:
        problem = f"did not finish within {DAEMON_CHECKS_TIMEOUT:g} s"
    except OSError as exc:
        problem = f"could not run: {exc.strerror or exc}"
    except ValueError:
        said = result.stderr.strip().splitlines()
        problem = f"failed: {said[-1] if said else f'exit status {result.returncode}'}"
    return [_check("daemon checks", "fail", f"`projctld doctor` {problem}",
                   "projctld doctor  # shows the whole error")]
