"""Turning daemon views (plain dicts from the wire) and client errors into terminal text."""

from __future__ import annotations

import os
import sys
import time

from projctl_client import __version__


def _styler(stream: object) -> tuple[str, str, str]:
    """(bold, dim, reset) escape codes, empty unless the stream is a colour terminal."""
    isatty = getattr(stream, "isatty", None)
    if isatty is None or not isatty() or "NO_COLOR" in os.environ:
        return "", "", ""
    if os.environ.get("TERM") == "dumb":
        return "", "", ""
    return "\033[1m", "\033[2m", "\033[0m"


def age(seconds: float) -> str:
    """A short, honest age: `just now`, `42 s ago`, `5 min ago`, `3 h ago`, `2 d ago`."""
    if seconds < 5:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def duration(seconds: float) -> str:
    return age(seconds).removesuffix(" ago").replace("just now", "a moment")


def home(path: str) -> str:
    """`~/src/x` for paths under the home directory."""
    prefix = os.path.expanduser("~")
    if prefix != "/" and (path == prefix or path.startswith(prefix + "/")):
        return "~" + path[len(prefix):]
    return path


def _ref(checkout: dict) -> str:
    head = (checkout.get("head") or "")[:7]
    branch = checkout.get("branch")
    if branch is None:
        return f"detached @ {head}" if head else "detached"
    return f"{branch} @ {head}" if head else f"{branch} (no commits yet)"


def status(view: dict, stream: object = None) -> str:
    """The human form of a status view."""
    bold, dim, reset = _styler(stream or sys.stdout)
    now = time.time()
    lines = []
    here = view.get("checkout")
    daemon = view["daemon"]
    if here:
        project = here.get("project")
        where = f"project {bold}{project}{reset}" if project else "in no configured project"
        lines.append(f"Here      {home(here['root'])}  {_ref(here)}  {dim}({where}){reset}")
    else:
        lines.append(f"Here      {dim}not in a git repository{reset}")
    lines.append("")
    projects = view.get("projects") or []
    if not projects:
        lines.append("No projects configured yet. Add one to " + home(daemon["config_path"]) + ":")
        lines.append('  [projects.NAME]\n  paths = ["~/src/NAME"]')
    for project in projects:
        label = f"{bold}{project['name']:<9}{reset}"
        rows = [
            f"{home(c['root']):<32} {_ref(c)}  {dim}seen {age(now - c['last_seen_at'])}{reset}"
            for c in project["checkouts"]
        ]
        seen_roots = [c["root"] for c in project["checkouts"]]
        rows += [
            f"{home(p):<32} {dim}no checkout seen yet{reset}"
            for p in project["paths"]
            if not any(root == p or root.startswith(p + "/") for root in seen_roots)
        ]
        for index, row in enumerate(rows or [f"{dim}no paths configured{reset}"]):
            lines.append(f"{label if index == 0 else ' ' * 9} {row}")
    state = view["state"]
    lines.append("")
    lines.append(
        f"{dim}projctld {daemon['version']} · up {duration(now - daemon['started_at'])} · "
        f"config read {age(now - daemon['config_loaded_at'])} · "
        f"{_count(state['checkouts_known'], 'checkout')} known · state kept since "
        f"{age(now - state['created_at'])}{reset}"
    )
    warning = version_warning(daemon)
    if warning:
        lines.append(warning)
    return "\n".join(lines)


def daemon_info(daemon: dict) -> str:
    """The `projctl daemon status` block."""
    now = time.time()
    rows = [
        ("pid", str(daemon["pid"])),
        ("version", f"{daemon['version']} (protocol {daemon['protocol']})"),
        ("up", duration(now - daemon["started_at"])),
        ("socket", home(daemon["socket_path"])),
        ("config", home(daemon["config_path"])),
        ("state", home(daemon["state_path"])),
    ]
    text = "projctld is running\n" + "\n".join(f"  {key:<8}  {value}" for key, value in rows)
    warning = version_warning(daemon)
    return f"{text}\n{warning}" if warning else text


def version_warning(daemon: dict) -> str:
    if daemon["version"] == __version__:
        return ""
    return (
        f"note: projctl is {__version__} but the running projctld is {daemon['version']}; "
        "`projctl daemon restart` runs the installed one"
    )


def error(exc: Exception) -> str:
    """`projctl: message` plus one `  try: ...` line per suggestion."""
    message = getattr(exc, "message", str(exc))
    suggestions = getattr(exc, "suggestions", [])
    return "\n".join([f"projctl: {message}", *(f"  try: {s}" for s in suggestions)])


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
