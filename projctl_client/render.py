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
# Characters shown as "?" in a name: control characters, and the bidirectional marks,
# embeddings, overrides and isolates that make a name display as another (old events may hold
# them: hubs refuse them now).
_UNSAFE = {code: "?" for code in (*range(0x20), *range(0x7F, 0xA0), 0x61C, 0x200E, 0x200F,
                                  *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028,
                                  0x2029)}


def safe_name(name: str) -> str:
    return name.translate(_UNSAFE)


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
        return lines + [f"          try: {s}" for s in error.get("suggestions", [])[:1]] \
            + _sync_troubles(sync, style)
    parts = [_host(sync["hub"]), f"{waiting} waiting" if waiting else "up to date"]
    if sync.get("syncing"):
        parts.append("syncing…")
    parts.append(f"synced {age(now - last)}" if last else "not synced yet")
    return ["Sync      " + " · ".join(parts), *_sync_troubles(sync, style)]


def _sync_troubles(sync: dict, style: Style) -> list[str]:
    """Lines under the sync line of `status` for what needs someone: refused events, projects
    not pulled, a wrong clock, news of the hub; `projctl sync` says more."""
    lines = []
    refused = sync.get("refused") or 0
    if refused:
        reasons = sorted({group["code"] for group in sync.get("set_aside") or []})
        lines.append(style.paint("yellow", f"          {_count(refused, 'event')} refused by "
                                           f"the hub ({', '.join(reasons) or 'see why'}), "
                                           "kept here: projctl sync says why"))
    for problem in sync.get("pull_errors") or []:
        lines.append(style.paint("yellow", f"          {problem['project']} not pulled: "
                                           f"{problem['message']}"))
    clock = (sync.get("clock") or {}).get("problem")
    if clock:
        lines.append(style.paint("yellow", f"          clock: {clock['message']}"))
    if sync.get("notices"):
        lines.append(style.paint("yellow", "          news of the hub: projctl sync"))
    return lines


def _host(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


def sync_hint(sync: dict) -> str:
    """What happens to a just-recorded event: `; waiting to sync: 1`, or that it stays here."""
    if sync["hub"] is None:
        return " (no hub configured: kept on this machine)"
    hint = f"; waiting to sync: {sync['waiting']}" if sync["waiting"] else "; synced"
    return hint + (" (hub unreachable)" if sync.get("reachable") is False else "")


def noted(reply: dict) -> str:
    """`noted in web (a1b2c3d4); waiting to sync: 1`, and a warning when it is due."""
    event = reply["event"]
    note_id = str(event["payload"].get("note") or event["id"])
    verb = "edited note in" if event["type"] == "note.edited" else "noted in"
    text = f"{verb} {event['project']} ({short_note_id(note_id)}){sync_hint(reply['sync'])}"
    warning = reply.get("warning")
    return f"{text}\nwarning: {warning}" if warning else text


class LogLines:
    """`projctl log`, built a page at a time: each event is kept as the words of its line
    only, so that no history, however large, is held whole."""

    def __init__(self, project: str, stream: object = None) -> None:
        self.project = project
        self._style = Style(stream or sys.stdout)
        self._rows: list[tuple[str, str, str, str, bool]] = []
        self._started: dict[object, dict] = {}  # deployment: its start's branch and commit

    def add(self, events: list[dict]) -> None:
        for event in events:
            payload = event["payload"]
            if event["type"] == "deployment.started":
                self._started[payload.get("deployment")] = {
                    "branch": payload.get("branch"), "commit": payload.get("commit")}
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(event["created_at"]))
            # Who pushed it, as the hub says; else (not on the hub yet, or from before hubs
            # said so) who the device says it is.
            who = safe_name(event.get("user") or event["actor"])
            summary = _event_summary(event, self._started)
            if event.get("truncated"):
                summary += " (cut: larger than events may be)"
            self._rows.append((when, who, event["type"], summary, bool(event.get("waiting"))))

    def text(self, *, limit: int, filtered: bool) -> str:
        style, project, rows = self._style, self.project, self._rows
        if not rows:
            if filtered:
                return f"{project}: no events match (try without --since or --type)"
            return (f"{project}: no events yet\n"
                    f"  try: projctl note \"what happened\"  # or projctl deploy ENV, "
                    "projctl branch create NAME")
        count = len(rows)
        header = f"{project}: the newest {_count(count, 'event')}, oldest first " \
            "(--limit for more)" if count >= limit else \
            f"{project}: {_count(count, 'event')}, oldest first"
        actor_width = min(12, max(len(row[1]) for row in rows))
        type_width = max(len(row[2]) for row in rows)
        lines = [f"{style.bold}{header}{style.reset}"]
        for when, who, kind, summary, waiting in rows:
            mark = style.paint("yellow", "  (not synced yet)") if waiting else ""
            lines.append(f"{when}  {_clip(who, actor_width):<{actor_width}}  "
                         f"{kind:<{type_width}}  {summary}{mark}")
        return "\n".join(lines)


def log(view: dict, *, limit: int, filtered: bool, stream: object = None) -> str:
    """`projctl log` of one reply: a header naming the project, then one line per event."""
    lines = LogLines(view["project"], stream)
    lines.add(view["events"])
    return lines.text(limit=limit, filtered=filtered)


def short_note_id(note_id: str) -> str:
    """The last SHORT_ID characters of a note's id: its random part (a UUIDv7 begins with the
    time, so notes of the same minute share their first characters)."""
    return note_id[-SHORT_ID:]


def _event_summary(event: dict, started: dict) -> str:
    """The few words that tell one event of a type from another."""
    kind, payload = event["type"], event["payload"]
    if kind.startswith("note.") and "text" in payload:
        first, *more = str(payload["text"]).splitlines() or [""]
        text = _clip(safe_name(first), 72) + (" …" if more else "")
        return f"{short_note_id(str(payload.get('note', '')))}  {text}"
    if kind == "branch.created":
        base = f" from {payload['base']}" if payload.get("base") else ""
        at = f" at {str(payload['commit'])[:7]}" if payload.get("commit") else ""
        return f"{payload.get('name')}{base}{at}"
    if kind == "deployment.marked":
        said = "caused a failure" if payload.get("caused_failure", True) \
            else "did not cause a failure after all"
        reason = _clip(safe_name(str(payload.get("reason") or "")), 60)
        return (f"{str(payload.get('deployment', ''))[-SHORT_ID:]}  "
                f"{payload.get('environment', '?')}  {said}" + (f": {reason}" if reason else ""))
    if kind.startswith("deployment."):
        origin = started.get(payload.get("deployment"), {})
        # The id's end: what `projctl mark-failed` takes.
        parts = [str(payload.get("deployment", ""))[-SHORT_ID:],
                 str(payload.get("environment", "?")),
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
    # A plugin's type (x.NAME.TYPE) or a newer projctl's: its plain values, never a control
    # character a teammate's payload could move the terminal with.
    return _clip(safe_name(", ".join(f"{k}={v}" for k, v in payload.items()
                                     if isinstance(v, str | int | float))), 72)


def delivery(report: dict, stream: object = None) -> str:
    """`projctl report`: the four keys of the period, each beside the period before."""
    style = Style(stream or sys.stdout)
    current, previous = report["current"], report["previous"]
    days = report["days"]
    where = report["environment"] or "every environment"
    length = f"{days:g} days" if days >= 1 else span(days * 86400)
    lines = [f"{style.bold}{report['project']}, {where}: the last {length}, against the "
             f"{length} before{style.reset}"]
    rows = [
        ("deployment frequency", f"{current['deployments']} ({current['per_day']:.2f}/day)",
         f"{previous['deployments']} ({previous['per_day']:.2f}/day)"),
        ("lead time for changes", _median_text(current["lead_time"], current["lead_times"],
                                               current["deployments"]),
         _median_text(previous["lead_time"], previous["lead_times"], previous["deployments"])),
        ("change failure rate", _rate_text(current), _rate_text(previous)),
        ("time to restore", _restore_text(current), _restore_text(previous)),
    ]
    width = max(len(row[1]) for row in rows)
    for name, now, before in rows:
        lines.append(f"  {name:<22} {now:<{width}}   before: {before}")
    if not current["deployments"] and not current["failed"]:
        lines.append("  no deployment ended in this period: `projctl deploy ENV` records them")
    elif current["lead_times"] < current["deployments"]:
        lines.append(f"  lead time is known for {current['lead_times']} of "
                     f"{current['deployments']} deployments: the others carry no commit time "
                     "(recorded by an older projctl, without a checkout, or a clock far off)")
    if report["environments"] and report["environment"] is None:
        lines.append(f"  environments: {', '.join(report['environments'])} (--env for one)")
    lines.append("  from this device's log; docs/metrics.md defines each key")
    return "\n".join(lines)


def _median_text(median: float | None, known: int, total: int) -> str:
    if median is None:
        return "-"
    return f"{span(median)} median" + (f" ({known} of {total})" if known < total else "")


def _rate_text(period: dict) -> str:
    rate = period["change_failure_rate"]
    if rate is None:
        return "-"
    failures = period["failed"] + period["marked"]
    return f"{rate:.0%} ({failures} of {period['deployments'] + period['failed']})"


def _restore_text(period: dict) -> str:
    text = "-" if period["restore_time"] is None else f"{span(period['restore_time'])} median"
    if period["unrestored"]:
        text += f", {period['unrestored']} not restored yet"
    return text


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


def sync(view: dict, stream: object = None, *, demo: bool = False) -> str:
    """`projctl sync`: where the team sync stands and, on trouble, what to do. In the demo
    (`demo`), events stay in the demo: its config is built in."""
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
        if demo:
            lines.append("\nThe demo has no hub: its events stay in the demo, and `projctl "
                         "demo --stop` removes them. In your own config (`projctl config path`) "
                         "a [sync] hub shares events with your team.")
            return "\n".join(lines)
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
    if view.get("user"):
        rows.insert(2, ("you are", f"{safe_name(view['user'])} (the hub's word, from the token)"))
    lines += [f"{key:<10} {value}" for key, value in rows]
    if error and error["code"] != "upgrade_required":
        lines.append(style.paint("red", f"{'error':<10} {error['message']}"))
        lines += [f"  try: {s}" for s in error.get("suggestions", [])]
    lines += _sync_details(view, style, now)
    return "\n".join(lines)


def _sync_details(view: dict, style: Style, now: float) -> list[str]:
    """`projctl sync`: events refused, projects not pulled, the clocks, what the sync found."""
    lines = []
    for group in view.get("set_aside") or []:
        events = _count(group["events"], "event")
        lines.append(style.paint("yellow", f"{'refused':<10} {events} of {group['project']} "
                                           f"({group['code']}): {group['message']}"))
        lines.append(f"  kept on this machine since {age(now - group['since'])}; tried again "
                     f"{_until(group['retry_at'] - now)} and at `projctl sync --now`")
        lines += [f"  try: {s}" for s in group.get("suggestions", [])]
    for problem in view.get("pull_errors") or []:
        lines.append(style.paint("yellow", f"{'not pulled':<10} {problem['project']}: "
                                           f"{problem['message']}"))
        lines += [f"  try: {s}" for s in problem.get("suggestions", [])]
    clock = view.get("clock") or {}
    if clock.get("problem"):
        lines.append(style.paint("yellow", f"{'clock':<10} {clock['problem']['message']}"))
        lines += [f"  try: {s}" for s in clock["problem"].get("suggestions", [])]
    if view.get("restamped"):
        lines.append(f"{'restamped':<10} {_count(view['restamped'], 'event')} stamped again "
                     "with the hub's clock (stamped ahead of it by this machine's clock)")
    for notice in view.get("notices") or []:
        lines.append(style.paint("yellow", f"{'note':<10} {notice}"))
    return lines


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


def demo_guide(socket: str, checkout: str | None, shell: str) -> str:
    """How to try the demo by hand: which socket to point projctl at, where its checkout is,
    and the commands worth trying there (each line within 80 columns but the paths)."""
    shell = shell if shell in ("bash", "zsh", "fish") else "bash"
    init = "projctl shell-init fish | source" if shell == "fish" \
        else f'eval "$(projctl shell-init {shell})"'
    export = f"set -x PROJCTL_SOCKET {socket}" if shell == "fish" \
        else f"export PROJCTL_SOCKET={socket}"
    lines = ["", "Try it by hand. With PROJCTL_SOCKET pointed at the demo, projctl talks to",
             "the demo daemon, never to yours:", f"  {export}"]
    if checkout:
        tries = [("projctl status", "Here: its branch, pull request, CI"),
                 ("projctl prompt", "the prompt segment for it"),
                 (init, "that segment in your prompt"),
                 ('projctl note "trying projctl"', "recorded, shown by log"),
                 ("projctl deploy staging", "runs the demo's deploy command"),
                 ("projctl run hello", "a workflow, followed as it runs"),
                 ("projctl log", "the project's history"),
                 ("projctl inbox", "what asks for you, GitHub and GitLab"),
                 ("projctl watch", "status, redrawn as it changes (q)"),
                 ("projctl wait review --timeout 30", "blocks until it is decided")]
        lines += ["  # the demo's git checkout, on a branch with a pull request:",
                  f"  cd {home(checkout)}"]
        lines += [f"  {command:<34}# {what}" for command, what in tries]
    else:
        lines.append("  (no demo checkout: git was not found to make one)")
    lines += ["Stop it:  projctl demo --stop    (its state goes: nothing of it reappears)",
              "Afresh:   projctl demo --reset"]
    return "\n".join(lines)


def inbox(report: dict) -> str:
    """`projctl inbox`: one line per item, then how fresh each upstream's inbox is."""
    now = time.time()
    lines = []
    for item in report["items"]:
        lines.append(f"{item['id']:<16} {item['reason']:<18} {item['repo']}  {item['title']}"
                     f"  ({age(now - item['updated_at'])})")
    known = report["known"]
    if not report["sources"]:
        return "no inbox: no project uses GitHub or GitLab, or [desktop] inbox = false"
    if not lines:
        lines.append("not fetched yet" if known == "unknown" else
                     "nothing needs you in what could be read" if known == "partial"
                     else "nothing needs you")
    for source in report["sources"]:
        fetched = source.get("fetched_at")
        state = f"read {age(now - fetched)}" if fetched else "not fetched yet"
        error = source.get("error")
        if error:
            state += f"; last attempt failed: {error['message']}"
            state += "".join(f"\n    try: {s}" for s in error.get("suggestions") or [])
        lines.append(f"{source['upstream']}: {state}")
    return "\n".join(lines)


def notifications(report: dict) -> str:
    """`projctl notifications`: newest first, when, what, shown or why not."""
    now = time.time()
    lines = [f"desktop: {report['desktop']}"]
    if not report["notifications"]:
        lines.append("nothing notified yet")
    for note in report["notifications"]:
        shown = "shown" if note["shown"] else f"not shown: {note.get('why_not')}"
        lines.append(f"{age(now - note['at']):>10}  {note['title']}  [{', '.join(note['kinds'])}"
                     f"; {shown}]")
        lines += [f"            {line}" for line in (note.get("body") or "").splitlines()]
    return "\n".join(lines)
