"""Commands that plugins add: `projctl-NAME` executables on PATH and the click commands of the
`projctl.commands` entry points; found under the safety rules below, listed, and run.

__main__ imports this only when the first argument is no built-in command, and execs an
executable before click is imported, so `projctl status` and the other built-ins never look.
Entry points are read (importlib.metadata) only by cli.py: for a name that is neither built in
nor an executable's, for `--help`, `projctl plugins`, doctor, and "No such command".

Safety, as kubectl and Go's os/exec (since 1.19) do it: a relative PATH entry (`.`, `bin`, or
an empty one, which means the current directory) is never searched, so that no command runs
from wherever the shell happens to be; nor is a file others may write to, or one in a directory
others may write to. A built-in command always wins over a plugin of the same name, an
executable over an entry point, and the first of either in PATH (or entry point) order over
the rest; `projctl plugins` names the file that runs and why each other one does not.

Kept light (no dataclasses, re or typing at import): it is on the way to every executable.
"""

from __future__ import annotations

import os
import stat
import sys
import time

from projctl_client import __version__, paths

PREFIX = "projctl-"
ENTRY_POINT_GROUP = "projctl.commands"
# The version of what plugins may rely on: the environment below and `projctl call`
# (projctl_client/api.py). Raised only when something is taken away or changed.
API_VERSION = 1
MAX_NAME = 64
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
# How long an executable's start waits for the running daemon to say its version.
DAEMON_VERSION_TIMEOUT = 0.5
EXECUTABLE, ENTRY_POINT = "executable", "entry point"


def valid_name(name: str) -> bool:
    """A command name a plugin may take: 1-64 lower-case letters, digits, - and _, starting with
    a letter or digit (so never a path, an option or a hidden file)."""
    return 0 < len(name) <= MAX_NAME and name[0] not in "-_" and set(name) <= _NAME_CHARS


def _path_entries() -> list[str]:
    return os.environ.get("PATH", os.defpath).split(os.pathsep)


def _refusal(directory: str, path: str, info: os.stat_result) -> str | None:
    """Why the file at `path` (in PATH entry `directory`) must not run, or None."""
    if not stat.S_ISREG(info.st_mode):
        return "it is not a file"
    if not os.access(path, os.X_OK):
        return f"it is not executable (chmod +x {path})"
    if info.st_mode & stat.S_IWOTH:
        return f"others may write to it (mode {stat.S_IMODE(info.st_mode):o}; chmod o-w {path})"
    try:
        folder = os.stat(directory)
    except OSError:
        return f"its directory {directory} cannot be read"
    if folder.st_mode & stat.S_IWOTH:
        return (f"others may write to its directory {directory} (mode "
                f"{stat.S_IMODE(folder.st_mode):o}), so anyone could have put it there")
    return None


def find_executable(name: str) -> str | None:
    """The file that `projctl NAME` runs: the first `projctl-NAME` in an absolute PATH entry
    that is safe to run (see the module's docstring), or None."""
    if not valid_name(name):
        return None
    for directory in _path_entries():
        if not os.path.isabs(directory):
            continue
        path = os.path.join(directory, PREFIX + name)
        try:
            info = os.stat(path)
        except OSError:
            continue
        if _refusal(directory, path, info) is None:
            return path
    return None


def daemon_version(socket: str) -> str:
    """The running daemon's version, or "" when none answers within DAEMON_VERSION_TIMEOUT (it is
    not started for this: the plugin's own `projctl call` starts it when it needs it)."""
    from projctl_client.connection import ClientError, connect, request

    try:
        with connect(socket, deadline=time.monotonic() + DAEMON_VERSION_TIMEOUT) as conn:
            conn.warn_config = False  # the plugin's own requests will say it
            daemon = conn.call(request("ping")).get("daemon")
    except ClientError:
        return ""
    return str(daemon.get("version", "")) if isinstance(daemon, dict) else ""


def environment() -> dict[str, str]:
    """The environment a plugin command runs with: the caller's, and where projctl is."""
    socket = paths.socket_path()
    return {**os.environ, "PROJCTL_SOCKET": socket, "PROJCTL_CONFIG": paths.config_path(),
            "PROJCTL_STATE_DIR": paths.state_dir(), "PROJCTL_VERSION": __version__,
            "PROJCTL_DAEMON_VERSION": daemon_version(socket),
            "PROJCTL_API_VERSION": str(API_VERSION)}


def run_executable(args: list[str]) -> int | None:
    """Become `projctl-NAME ARGS` (exec: its signals, exit status, terminal and streams are the
    plugin's) when there is one to run for NAME = args[0]; None when there is none. Returns 126
    (as shells do) only when the system refuses to run it."""
    path = find_executable(args[0])
    if path is None:
        return None
    env = environment()
    import _signal

    # Python ignores SIGPIPE (and SIGXFSZ); an ignored signal stays ignored across exec, and a
    # plugin in a pipeline (`projctl NAME | head`) must die of it as it would when run alone.
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(_signal, name):
            _signal.signal(getattr(_signal, name), _signal.SIG_DFL)
    try:
        os.execve(path, [path, *args[1:]], env)
    except OSError as exc:
        why = {2: "the interpreter its #! line names is not there",  # ENOENT: the file is
               8: "it has no #! line naming its interpreter, or is not a program for this "
                  "system"}.get(exc.errno or 0, exc.strerror)  # ENOEXEC
        sys.stderr.write(f"projctl: cannot run {path}: {why}\n"
                         f"  try: projctl plugins  # says which file each command runs\n")
        return 126
    return 126  # not reached: execve returns only by raising


class Candidate:
    """A plugin's command as found: an executable (`path`) or an entry point (`target`, of a
    `distribution`). `problem` says why it never runs (None: it is the one that runs)."""

    __slots__ = ("distribution", "entry", "help", "kind", "name", "path", "problem", "target",
                 "version")

    def __init__(self, kind: str, name: str, *, path: str | None = None,
                 target: str | None = None, distribution: str | None = None,
                 version: str | None = None, entry: object = None) -> None:
        self.kind, self.name, self.path, self.target = kind, name, path, target
        self.distribution, self.version, self.entry = distribution, version, entry
        self.problem: str | None = None
        self.help: str | None = None

    def view(self) -> dict[str, object]:
        """As `projctl plugins --json` shows it."""
        return {"name": self.name, "kind": self.kind, "path": self.path, "target": self.target,
                "distribution": self.distribution, "version": self.version,
                "runs": self.problem is None, "problem": self.problem, "help": self.help}


def executables(built_in: frozenset[str]) -> list[Candidate]:
    """Every `projctl-*` file in the PATH's directories, in PATH order, each with why it does
    not run (None for the one that runs for its name)."""
    found: list[Candidate] = []
    runs: dict[str, str] = {}
    seen: set[str] = set()
    for directory in _path_entries():
        # A relative entry is listed as it is written (it means another directory wherever
        # projctl runs); an absolute one once, however it is spelt.
        key = os.path.normpath(directory) if os.path.isabs(directory) else f"./{directory}"
        if key in seen:
            continue
        seen.add(key)
        where = os.path.abspath(directory or ".")
        try:
            names = sorted(entry.name for entry in os.scandir(where)
                           if entry.name.startswith(PREFIX))
        except OSError:
            continue
        for file_name in names:
            name = file_name[len(PREFIX):]
            path = os.path.join(where if os.path.isabs(directory) else directory or ".",
                                file_name)
            candidate = Candidate(EXECUTABLE, name, path=path)
            found.append(candidate)
            candidate.problem = _executable_problem(directory, path, name, built_in, runs)
            if candidate.problem is None:
                runs[name] = path
    return found


def _executable_problem(directory: str, path: str, name: str, built_in: frozenset[str],
                        runs: dict[str, str]) -> str | None:
    if not os.path.isabs(directory):
        shown = directory or "(empty: the current directory)"
        return (f"its PATH entry {shown} is relative: it would run whatever the current "
                "directory holds, so projctl never looks there")
    if not valid_name(name):
        return f"{name!r} is not a command name (lower-case letters, digits, - and _)"
    try:
        refusal = _refusal(directory, path, os.stat(path))
    except OSError as exc:
        refusal = f"it cannot be read: {exc.strerror}"
    if refusal is not None:
        return refusal
    if name in built_in:
        return f"the built-in command `projctl {name}` always comes first"
    if name in runs:
        return f"{runs[name]} comes first on PATH"
    return None


def entry_points(built_in: frozenset[str], executables_run: set[str]) -> list[Candidate]:
    """The `projctl.commands` entry points of installed packages (not loaded), each with why it
    does not run (None for the one that runs for its name)."""
    from importlib.metadata import entry_points as find

    found = []
    runs: dict[str, Candidate] = {}
    for entry in find(group=ENTRY_POINT_GROUP):
        dist = getattr(entry, "dist", None)
        candidate = Candidate(ENTRY_POINT, entry.name, target=entry.value,
                              distribution=dist.name if dist is not None else None,
                              version=dist.version if dist is not None else None, entry=entry)
        found.append(candidate)
        if not valid_name(entry.name):
            candidate.problem = f"{entry.name!r} is not a command name (lower-case letters, " \
                "digits, - and _)"
        elif entry.name in built_in:
            candidate.problem = f"the built-in command `projctl {entry.name}` always comes first"
        elif entry.name in executables_run:
            candidate.problem = f"the executable {PREFIX}{entry.name} on PATH comes first"
        elif entry.name in runs:
            earlier = runs[entry.name]
            candidate.problem = f"the entry point of {earlier.distribution} comes first"
        else:
            runs[entry.name] = candidate
    return found


def everything(built_in: frozenset[str]) -> list[Candidate]:
    """Executables, then entry points: every plugin command found, in the order they win."""
    files = executables(built_in)
    return files + entry_points(built_in, {c.name for c in files if c.problem is None})


class LoadError(Exception):
    """An entry point's command that cannot be used: it does not import, or is no command."""


def load(candidate: Candidate) -> object:
    """Import an entry point's click command (a click.Command); LoadError says why not."""
    import click

    try:
        command = candidate.entry.load()  # type: ignore[attr-defined]
    except (Exception, SystemExit) as exc:
        raise LoadError(f"{candidate.target} does not import: {type(exc).__name__}: {exc}") \
            from None
    if not isinstance(command, click.Command):
        raise LoadError(f"{candidate.target} is a {type(command).__name__}, not a click "
                        "command")
    return command


def load_all(candidates: list[Candidate], width: int = 80) -> None:
    """Load the entry points that would run, for their help (at most `width` characters); one
    that cannot be loaded gets that as its problem. What a module prints as it is imported goes
    to stderr: the listing on stdout (`projctl plugins --json`) stays what it says it is."""
    import contextlib

    for candidate in candidates:
        if candidate.kind != ENTRY_POINT or candidate.problem is not None:
            continue
        try:
            with contextlib.redirect_stdout(sys.stderr):
                command = load(candidate)
            candidate.help = command.get_short_help_str(width)  # type: ignore[attr-defined]
        except LoadError as exc:
            candidate.problem = str(exc)


def text(candidates: list[Candidate], stream: object) -> str:
    """The commands section of `projctl plugins`: each name with the file or entry point that
    runs it, and every other one found with why it does not run."""
    from projctl_client import render

    style = render.Style(stream)
    heading = f"{style.bold}Commands{style.reset} (projctl NAME)"
    if not candidates:
        return (f"{heading}\n  none: put an executable {PREFIX}NAME in a directory on PATH, or "
                f"install a package with a `{ENTRY_POINT_GROUP}` entry point")
    width = min(16, max(len(c.name) for c in candidates))
    lines = [heading]
    for candidate in sorted(candidates, key=lambda c: (c.name, c.problem is not None)):
        where = render.home(candidate.path) if candidate.path else \
            f"{candidate.distribution or '?'} {candidate.version or '-'} " \
            f"(entry point {candidate.target})"
        line = f"  {candidate.name:<{width}}  {where}"
        if candidate.problem is None:
            lines.append(line + (f"  {candidate.help}" if candidate.help else ""))
        else:
            lines.append(style.paint("dim", line))
            lines.append(style.paint("yellow", f"  {'':<{width}}  never runs: "
                                               f"{candidate.problem}"))
    return "\n".join(lines)


def help_rows(candidates: list[Candidate]) -> list[tuple[str, str]]:
    """`projctl --help`'s rows for the plugin commands that run."""
    from projctl_client import render

    rows = []
    for candidate in candidates:
        if candidate.problem is not None:
            continue
        if candidate.kind == EXECUTABLE:
            rows.append((candidate.name, f"Runs {render.home(candidate.path or '')}"))
        else:
            rows.append((candidate.name, candidate.help or ""))
    return sorted(rows)
