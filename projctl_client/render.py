"""Turning daemon views (plain dicts from the wire) and client errors into terminal text."""

from __future__ import annotations

import os
import sys
import time

from projctl_client import __version__, paths, terminal


class Style:
    """Escape codes, all empty unless the stream is a colour terminal (NO_COLOR, TERM=dumb)
    or `on` says so (the daemon writes status text for a client's terminal)."""

    def __init__(self, stream: object, on: bool | None = None) -> None:
        if on is None:
            on = terminal.colours(stream)
        codes = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33"}
        for name, code in codes.items():
            setattr(self, name, f"\033[{code}m" if on else "")
        self.reset = "\033[0m" if on else ""

    def paint(self, colour: str, text: str) -> str:
        start = getattr(self, colour)
        return f"{start}{text}{self.reset}" if start else text


# The tickets of each status that `projctl status` shows (and asks the daemon for).
TICKETS_PER_STATUS = 5
# How much of an id people see: a device's, and a note's (which `note --edit` takes back).
SHORT_ID = 8


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


def span(seconds: float) -> str:
    """A measured duration, exact enough to compare: `0.4 s`, `12 s`, `3 min 5 s`, `2 h 10 min`."""
    if seconds < 10:
        return f"{seconds:.1f} s" if seconds else "0 s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(whole // 60, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def ref(branch: str | None, commit: str | None) -> str:
    """`main@abc1234`, or whichever half is known."""
    short = (commit or "")[:7]
    if branch and short:
        return f"{branch}@{short}"
    return branch or short


def home(path: str, prefix: str | None = None) -> str:
    """`~/src/x` for paths under the home directory (`prefix`, else this process's)."""
    prefix = prefix or os.path.expanduser("~")
    if prefix != "/" and (path == prefix or path.startswith(prefix + "/")):
        return "~" + path[len(prefix):]
    return path


def reloaded(reply: dict) -> str:
    """What `projctl daemon reload` applied, and what waits for a restart."""
    applied = reply.get("applied") or []
    lines = [f"reloaded {home(reply.get('config_path', ''))}: "
             + (f"applied {', '.join(applied)}" if applied else "nothing had changed")]
    waiting = reply.get("restart_needed") or []
    if waiting:
        lines.append(f"  changed, and applied only by a restart: {', '.join(waiting)}")
        lines.append("  try: projctl daemon restart")
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


def version_warning(daemon: dict, client: str = __version__) -> str:
    if daemon["version"] == client:
        return ""
    return (
        f"note: projctl is {client} but the running projctld is {daemon['version']}; "
        "`projctl daemon restart` runs the installed one"
    )


def status(view: dict, stream: object = None) -> str:
    """The human form of a status view, laid out for `stream`'s terminal (status_text.py)."""
    from projctl_client import status_text  # it builds on this module

    stream = stream or sys.stdout
    return status_text.screen(view, status_text.Options(
        width=terminal.width(stream), colours=terminal.colours(stream),
        links=terminal.links(stream)))


def error(exc: Exception) -> str:
    """`projctl: message` plus one `  try: ...` line per suggestion."""
    message = getattr(exc, "message", str(exc))
    suggestions = getattr(exc, "suggestions", [])
    return "\n".join([f"projctl: {message}", *(f"  try: {s}" for s in suggestions)])


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def refresh(results: list[dict], stream: object = None) -> str:
    """One line per (project, upstream) poll of `projctl refresh`, errors with their advice."""
    style = Style(stream or sys.stdout)
    lines = []
    for result in results:
        head = f"{result['project']:<12} {result['upstream']:<7}"
        if result["outcome"] == "ok":
            found = [_count(result["change_requests"], "change request"),
                     _count(result["pipelines"], "pipeline")] \
                if result.get("kind", result["upstream"]) != "jira" \
                else [_count(result["tickets"], "ticket")]
            took = style.paint("dim", f"{result['elapsed']:.2f} s")
            problems = result.get("problems") or []
            outcome = style.paint("yellow", "partly") if problems else \
                style.paint("green", "ok") + "    "
            lines.append(f"{head} {outcome} {', '.join(found)}  {took}")
            for problem in problems:
                part = "" if problem["part"] == "*" else f"{problem['part']}: "
                lines.append(f"{' ' * 21}{style.paint('red', '!')} {part}{problem['message']}")
                lines += [f"{' ' * 23}try: {s}" for s in problem.get("suggestions", [])]
        elif result["outcome"] == "pending":
            lines.append(f"{head} {style.paint('yellow', 'still polling')}: `projctl status` "
                         "shows it when it is done")
        else:
            error = result.get("error") or {}
            lines.append(f"{head} {style.paint('red', 'failed')} {error.get('message', '')}")
            lines += [f"{' ' * 21}try: {s}" for s in error.get("suggestions", [])]
    return "\n".join(lines) if lines else "nothing to refresh"


def _exit_text(status: int | None) -> str:
    return "" if status is None else f"exit status {status}"


def _sync_line(sync: dict | None, style: Style, now: float) -> list[str]:
    """One line on the team sync; nothing when no hub is set and nothing is kept locally."""
    if not sync:
        return []
    waiting = sync["waiting"]
    if sync["hub"] is None:
        if not waiting:
            return []
        return [style.paint("dim", f"Sync      no hub configured · {_count(waiting, 'event')} "
                                   "on this machine only")]
    last = sync.get("last_success")
    error = sync.get("error")
    if error:
        problem = "hub unreachable" if sync.get("reachable") is False \
            else f"{_host(sync['hub'])}: {error['message']}"
        since = age(now - last) if last else "never"
        lines = [style.paint("red", f"Sync      {problem}")
                 + f" ({waiting} waiting, last sync {since})"]
        return lines + [f"          try: {s}" for s in error.get("suggestions", [])[:1]]
    parts = [_host(sync["hub"]), f"{waiting} waiting" if waiting else "up to date"]
    if sync.get("syncing"):
        parts.append("syncing…")
    parts.append(f"synced {age(now - last)}" if last else "not synced yet")
    return ["Sync      " + " · ".join(parts)]


def _host(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


def sync_hint(sync: dict) -> str:
    """What happens to a just-recorded event: `; waiting to sync: 1`, or that it stays here."""
    if sync["hub"] is None:
        return " (no hub configured: kept on this machine)"
    hint = f"; waiting to sync: {sync['waiting']}" if sync["waiting"] else "; synced"
    return hint + (" (hub unreachable)" if sync.get("reachable") is False else "")


def noted(reply: dict) -> str:
    """`noted in web (a1b2c3d4); waiting to sync: 1`."""
    event = reply["event"]
    note_id = str(event["payload"].get("note") or event["id"])
    verb = "edited note in" if event["type"] == "note.edited" else "noted in"
    return f"{verb} {event['project']} ({short_note_id(note_id)}){sync_hint(reply['sync'])}"


def log(view: dict, *, limit: int, filtered: bool, stream: object = None) -> str:
    """`projctl log`: a header naming the project, then one line per event, oldest first."""
    style = Style(stream or sys.stdout)
    events = view["events"]
    project = view["project"]
    if not events:
        if filtered:
            return f"{project}: no events match (try without --since or --type)"
        return (f"{project}: no events yet\n"
                f"  try: projctl note \"what happened\"  # or projctl deploy ENV, "
                "projctl branch create NAME")
    count = len(events)
    header = f"{project}: the newest {_count(count, 'event')}, oldest first (--limit for more)" \
        if count >= limit else f"{project}: {_count(count, 'event')}, oldest first"
    started = {e["payload"].get("deployment"): e["payload"] for e in events
               if e["type"] == "deployment.started"}
    actor_width = min(12, max(len(e["actor"]) for e in events))
    type_width = max(len(e["type"]) for e in events)
    lines = [f"{style.bold}{header}{style.reset}"]
    for event in events:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(event["created_at"]))
        waiting = style.paint("yellow", "  (not synced yet)") if event.get("waiting") else ""
        lines.append(f"{when}  {_clip(event['actor'], actor_width):<{actor_width}}  "
                     f"{event['type']:<{type_width}}  "
                     f"{_event_summary(event, started)}{waiting}")
    return "\n".join(lines)


def short_note_id(note_id: str) -> str:
    """The last SHORT_ID characters of a note's id: its random part (a UUIDv7 begins with the
    time, so notes of the same minute share their first characters)."""
    return note_id[-SHORT_ID:]


def _event_summary(event: dict, started: dict) -> str:
    """The few words that tell one event of a type from another."""
    kind, payload = event["type"], event["payload"]
    if kind.startswith("note.") and "text" in payload:
        first, *more = str(payload["text"]).splitlines() or [""]
        text = _clip(first, 72) + (" …" if more else "")
        return f"{short_note_id(str(payload.get('note', '')))}  {text}"
    if kind == "branch.created":
        base = f" from {payload['base']}" if payload.get("base") else ""
        at = f" at {str(payload['commit'])[:7]}" if payload.get("commit") else ""
        return f"{payload.get('name')}{base}{at}"
    if kind.startswith("deployment."):
        origin = started.get(payload.get("deployment"), {})
        parts = [str(payload.get("environment", "?")),
                 ref(origin.get("branch"), origin.get("commit"))]
        took = payload.get("duration")
        if kind == "deployment.completed" and took is not None:
            parts.append(span(took))
        elif kind == "deployment.failed":
            why = payload.get("reason") or _exit_text(payload.get("exit_status"))
            parts.append(f"after {span(took or 0)}" + (f": {why}" if why else ""))
        return "  ".join(p for p in parts if p)
    if kind.startswith("workflow."):
        return _workflow_summary(kind, payload)
    return _clip(", ".join(f"{k}={v}" for k, v in payload.items()
                           if isinstance(v, str | int | float)), 72)


def _workflow_summary(kind: str, payload: dict) -> str:
    run = f"run {str(payload.get('run', ''))[-SHORT_ID:]}"
    if kind == "workflow.started":
        params = " ".join(f"{k}={v}" for k, v in (payload.get("params") or {}).items())
        return _clip(f"{payload.get('workflow')}  {run}" + (f"  {params}" if params else ""), 72)
    if kind == "workflow.step":
        if payload.get("skipped"):
            outcome = "skipped"
        elif payload.get("success"):
            outcome = f"✓ {span(payload.get('duration') or 0)}"
        else:
            outcome = f"✗ {payload.get('reason') or _exit_text(payload.get('exit_code'))}"
        return _clip(f"{payload.get('step')}  {outcome}  {run}", 72)
    return f"{payload.get('workflow')}  {span(payload.get('duration') or 0)}  {run}"


def sync(view: dict, stream: object = None) -> str:
    """`projctl sync`: where the team sync stands and, on trouble, what to do."""
    style = Style(stream or sys.stdout)
    now = time.time()
    error = view.get("error")
    lines = []
    if error and error["code"] == "upgrade_required":
        # Nothing syncs until the client is upgraded, so this goes first and says how.
        lines.append(style.paint("red", f"{style.bold}upgrade needed:{style.reset} "
                                        f"{error['message']}"))
        lines += [f"  run: {style.bold}{s}{style.reset}" for s in error["suggestions"]]
        lines.append("")
    waiting = _count(view["waiting"], "event")
    if view["hub"] is None:
        lines.append("no hub configured: events stay on this machine")
        lines.append(f"device     {view['device'][:SHORT_ID]}")
        lines.append(f"waiting    {waiting} (sent once a hub is set)")
        lines.append(f"\nTo share events with your team, add to {home(paths.config_path())}:\n"
                     '  [sync]\n  hub = "https://hub.example.com"\n'
                     "and put the hub's token in $PROJCTL_HUB_TOKEN (`projctld hub token create` "
                     "on the hub prints one); then `projctl daemon restart`.")
        return "\n".join(lines)
    reachable = {None: "not tried yet", True: "yes", False: "no"}[view.get("reachable")]
    last = view.get("last_success")
    rows = [("hub", view["hub"]), ("device", view["device"][:SHORT_ID]),
            ("waiting", waiting), ("reachable", reachable),
            ("last sync", age(now - last) if last else "never")]
    if view.get("syncing"):
        rows.append(("next", "syncing now"))
    elif view.get("next_attempt"):
        rows.append(("next", _until(view["next_attempt"] - now)))
    lines += [f"{key:<10} {value}" for key, value in rows]
    if error and error["code"] != "upgrade_required":
        lines.append(style.paint("red", f"{'error':<10} {error['message']}"))
        lines += [f"  try: {s}" for s in error.get("suggestions", [])]
    return "\n".join(lines)


def plugins(views: list[dict], stream: object = None) -> str:
    """`projctl plugins`: one block per plugin, with its hooks and its last error."""
    style = Style(stream or sys.stdout)
    if not views:
        return ("no plugins loaded\n"
                "  to add one: install a package with a `projctl.plugins` entry point, or list "
                f"its module under [plugins] modules in {home(paths.config_path())}; then "
                "projctl daemon restart")
    now = time.time()
    lines = []
    for view in views:
        state = "disabled" if view["disabled"] else "loaded" if view["loaded"] \
            else style.paint("red", "failed to load")
        origin = style.paint("dim", f"({view['source']} {view['target']})")
        lines.append(f"{style.bold}{view['name']}{style.reset} {view['version']}  {state}  "
                     f"{origin}")
        if view["hooks"]:
            lines.append(f"  hooks       {', '.join(view['hooks'])}")
        if view.get("last_error"):
            when = f", the last {age(now - view['last_error_at'])}" \
                if view.get("last_error_at") else ""
            lines.append(style.paint("red", f"  last error  {view['last_error']}")
                         + style.paint("dim", f"  ({_count(view['errors'], 'error')}{when})"))
    return "\n".join(lines)


def _until(seconds: float) -> str:
    return "now" if seconds < 1 else f"in {duration(seconds)}"
