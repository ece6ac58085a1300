"""Turning daemon views (plain dicts from the wire) and client errors into terminal text."""

from __future__ import annotations

import os
import sys
import time

from projctl_client import __version__, paths


class Style:
    """Escape codes, all empty unless the stream is a colour terminal (NO_COLOR, TERM=dumb)."""

    def __init__(self, stream: object) -> None:
        isatty = getattr(stream, "isatty", None)
        on = bool(isatty and isatty()) and "NO_COLOR" not in os.environ \
            and os.environ.get("TERM") != "dumb"
        codes = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33"}
        for name, code in codes.items():
            setattr(self, name, f"\033[{code}m" if on else "")
        self.reset = "\033[0m" if on else ""

    def paint(self, colour: str, text: str) -> str:
        start = getattr(self, colour)
        return f"{start}{text}{self.reset}" if start else text


# How a CI state reads, and its colour.
_CI = {
    "failure": ("✗ failing", "red"), "stuck": ("◌ stuck", "red"),
    "running": ("● running", "yellow"), "pending": ("○ pending", "yellow"),
    "manual": ("▷ manual", "yellow"), "canceled": ("⊘ canceled", "dim"),
    "success": ("✓ passing", "green"), "skipped": ("- skipped", "dim"), "none": ("· no CI", "dim"),
}
_REVIEW = {"approved": ("approved", "green"), "changes_requested": ("changes requested", "red"),
           "review_required": ("review required", "yellow"), "none": ("", "dim")}
TICKETS_PER_STATUS = 5
_DEPLOYMENT = {"completed": ("✓", "green"), "failed": ("✗", "red"), "running": ("●", "yellow")}
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
    style = Style(stream or sys.stdout)
    bold, dim, reset = style.bold, style.dim, style.reset
    now = time.time()
    lines = []
    if view.get("sandbox"):
        lines.append(style.paint("yellow", "SANDBOX: demo data from projctl's built-in fake "
                                 "GitHub, GitLab and Jira; nothing here is real"))
    here = view.get("checkout")
    daemon = view["daemon"]
    if here:
        project = here.get("project")
        where = f"project {bold}{project}{reset}" if project else "in no configured project"
        lines.append(f"Here      {home(here['root'])}  {_ref(here)}  {dim}({where}){reset}")
        lines += _branch(view.get("branch"), style)
    else:
        lines.append(f"Here      {dim}not in a git repository{reset}")
    lines += [style.paint("yellow", f"Notice    {notice}") for notice in view.get("notices") or []]
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
        lines += _upstreams(project, style, now)
        lines += _deployments(project, style, now)
    state = view["state"]
    lines.append("")
    lines += _sync_line(view.get("sync"), style, now)
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


def _ci(ci: dict | None, style: Style) -> str:
    if not ci:
        return style.paint("dim", "· no CI")
    text, colour = _CI.get(ci["state"], (ci["state"], "dim"))
    if ci.get("failing"):
        text += f" ({ci.get('failed', len(ci['failing']))}): " + ", ".join(ci["failing"][:3])
        if len(ci["failing"]) > 3:
            text += ", …"
    return style.paint(colour, text)


def _review(review: str, style: Style) -> str:
    text, colour = _REVIEW.get(review, (review, "dim"))
    return style.paint(colour, f"{text:<17}") if text else " " * 17


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _branch(branch: dict | None, style: Style) -> list[str]:
    """The current branch's change request and CI, under the `Here` line."""
    if not branch:
        return []
    lines = []
    change = branch.get("change_request")
    known = branch.get("known", "complete")
    if change:
        lines.append(f"          {change['ref']} {_clip(change['title'], 48)}  "
                     f"{_review(change['review'], style).strip()}  {_ci(change.get('ci'), style)}")
    elif known == "unknown":
        lines.append(style.paint("dim", f"          change request for {branch['branch']}: not "
                                        "known yet (nothing fetched so far)"))
    elif known == "partial":
        lines.append(style.paint("dim", f"          no open change request for "
                                        f"{branch['branch']} in what could be read"))
    else:
        lines.append(style.paint("dim", f"          no open change request for "
                                        f"{branch['branch']}"))
    pipeline = branch.get("pipeline")
    if pipeline:
        name = f" {pipeline['name']}" if pipeline.get("name") else ""
        lines.append(f"          latest CI{name}: {_ci({'state': pipeline['state']}, style)}")
    return lines


def _upstreams(project: dict, style: Style, now: float) -> list[str]:
    """A project's change requests, CI needing attention, tickets and each source's freshness."""
    sources = project.get("sources") or []
    if not sources:
        return []
    ages = {s["upstream"]: _freshness(s, now) for s in sources}
    lines = []
    change_requests = project.get("change_requests") or []
    # A plugin's upstream is shown with the kind of data it brought, or on its own line.
    plugin_sources = [u for u in ages if u not in ("github", "gitlab", "jira")]
    with_code = {item["upstream"] for item in change_requests + (project.get("pipelines") or [])}
    code_sources = [u for u in ("github", "gitlab") if u in ages] \
        + [u for u in plugin_sources if u in with_code]
    ticket_sources = (["jira"] if "jira" in ages else []) + \
        [u for u in plugin_sources if u not in with_code and project.get("tickets")]
    if code_sources:
        lines.append(_heading("Change requests", [f"{u} {ages[u]}" for u in code_sources], style))
        for change in change_requests:
            role = "mine" if change["mine"] else "review" if change["review_requested"] \
                else "assigned" if change.get("assigned") else ""
            draft = style.paint("dim", " (draft)") if change.get("draft") else ""
            lines.append(f"    {_clip(change['ref'], 26):<26} {_clip(change['title'], 34):<34}"
                         f" {role:<8} {_review(change['review'], style)} "
                         f"{_ci(change.get('ci'), style)}{draft}")
        if not change_requests:
            lines.append(style.paint("dim", "    " + _nothing(
                (project.get("known") or {}).get("change_requests", "complete"),
                "none open for you")))
        pipelines = project.get("pipelines") or []
        if pipelines:
            lines.append(_heading("CI on my branches that needs a look", [], style))
            for pipeline in pipelines:
                lines.append(f"    {_clip(pipeline['repo'], 26):<26} "
                             f"{_clip(pipeline['branch'], 34):<34} "
                             f"{_ci({'state': pipeline['state']}, style)} "
                             f"{style.paint('dim', pipeline.get('name') or '')}  "
                             f"{style.paint('dim', age(now - pipeline['updated_at']))}")
    if ticket_sources:
        lines.append(_heading("Tickets", [f"{u} {ages[u]}" for u in ticket_sources], style))
        lines += _tickets(project.get("tickets") or [], project.get("ticket_counts") or {}, style,
                          (project.get("known") or {}).get("tickets", "complete"))
    for upstream in plugin_sources:
        if upstream not in code_sources and upstream not in ticket_sources:
            lines.append(_heading(upstream, [ages[upstream]], style))
            lines.append(style.paint("dim", "    nothing for you"))
    for source in sources:
        error = source.get("error")
        if error:
            kept = f"; showing data from {age(now - source['fetched_at'])}" \
                if source.get("fetched_at") else ""
            lines.append(style.paint("red", f"  ! {source['upstream']}: {error['message']}")
                         + style.paint("dim", kept))
            lines += [f"      try: {s}" for s in error.get("suggestions", [])]
        for problem in source.get("problems") or []:
            # One part that could not be read: named, the rest of the source still shows.
            part = "" if problem["part"] == "*" else f"{problem['part']}: "
            lines.append(style.paint("red", f"  ! {source['upstream']}: {part}"
                                            f"{problem['message']}"))
            lines += [f"      try: {s}" for s in problem.get("suggestions", [])]
    return lines


def _nothing(known: str, none: str) -> str:
    """What an empty list means: none, none among what could be read, or not known yet."""
    if known == "unknown":
        return "not fetched yet"
    if known == "partial":
        return f"{none} in what could be read"
    return none


def _tickets(tickets: list[dict], counts: dict[str, int], style: Style,
             known: str = "complete") -> list[str]:
    """Tickets by status, in the daemon's order (in progress, to do, done; newest first)."""
    if not tickets:
        return [style.paint("dim", "    " + _nothing(known, "none"))]
    by_status: dict[str, list[dict]] = {}
    for ticket in tickets:
        by_status.setdefault(ticket["status"], []).append(ticket)
    lines = []
    for name, group in by_status.items():
        total = max(counts.get(name, 0), len(group))
        lines.append(f"    {style.bold}{name}{style.reset} ({total})")
        for ticket in group[:TICKETS_PER_STATUS]:
            priority = style.paint("dim", ticket.get("priority") or "")
            lines.append(f"      {ticket['key']:<10} {_clip(ticket['summary'], 60):<60} {priority}")
        if total > TICKETS_PER_STATUS:
            lines.append(style.paint("dim", f"      … {total - TICKETS_PER_STATUS} more "
                                            "(projctl status --json)"))
    return lines


def _heading(title: str, ages: list[str], style: Style) -> str:
    suffix = style.paint("dim", "  " + " · ".join(ages)) if ages else ""
    return f"  {style.bold}{title}{style.reset}{suffix}"


def _freshness(source: dict, now: float) -> str:
    """`12 s ago`, `polling…`, `stale, 2 h ago`, `12 s ago, partly fetched` or
    `not fetched yet`."""
    if source.get("polling") and not source.get("fetched_at"):
        return "polling…"
    if not source.get("fetched_at"):
        return "not fetched yet" + (" (failing)" if source.get("error") else "")
    text = age(now - source["fetched_at"])
    if source.get("problems"):
        text += ", partly fetched"
    return f"stale, {text}" if source.get("stale") else text


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


def _deployments(project: dict, style: Style, now: float) -> list[str]:
    """The latest deployment of each environment, in the order the config lists them."""
    latest: dict[str, dict] = {}
    for deployment in project.get("deployments") or []:  # newest first per environment
        latest.setdefault(deployment["environment"], deployment)
    if not latest:
        return []
    configured = project.get("environments") or []
    order = [e for e in configured if e in latest] + [e for e in latest if e not in configured]
    width = max(len(e) for e in order)
    lines = [_heading("Deployments", [], style)]
    for environment in order:
        deployment = latest[environment]
        symbol, colour = _DEPLOYMENT.get(deployment["state"], ("?", "dim"))
        where = ref(deployment.get("branch"), deployment.get("commit")) or "?"
        who = safe_name(deployment.get("actor") or "")
        lines.append(f"    {style.paint(colour, symbol)} {environment:<{width}}  {where}  {who}  "
                     + style.paint("dim", _deployment_time(deployment, now)))
    return lines


def _deployment_time(deployment: dict, now: float) -> str:
    started, finished = deployment.get("started_at"), deployment.get("finished_at")
    took = deployment.get("duration")
    if deployment["state"] == "running":
        return f"running for {duration(now - started)}" if started else "running"
    when = finished or started
    text = age(now - when) if when else ""
    if deployment["state"] == "failed":
        why = deployment.get("reason") or _exit_text(deployment.get("exit_status"))
        after = f" after {span(took)}" if took is not None else ""
        return f"{text} · failed{after}" + (f": {why}" if why else "")
    return f"{text} · took {span(took)}" if took is not None else text


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
    return _clip(", ".join(f"{k}={v}" for k, v in payload.items()
                           if isinstance(v, str | int | float)), 72)


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
    and the commands worth trying there."""
    shell = shell if shell in ("bash", "zsh", "fish") else "bash"
    init = "projctl shell-init fish | source" if shell == "fish" \
        else f'eval "$(projctl shell-init {shell})"'
    export = f"set -x PROJCTL_SOCKET {socket}" if shell == "fish" \
        else f"export PROJCTL_SOCKET={socket}"
    lines = ["", "Try it by hand: with PROJCTL_SOCKET pointed at the demo, projctl talks to the "
             "demo daemon (never to yours):", f"  {export}"]
    if checkout:
        lines += [f"  cd {home(checkout)}          # the demo's git checkout, on a branch with "
                  "a pull request",
                  "  projctl status                  # Here: its branch, pull request and CI",
                  "  projctl prompt                  # the prompt segment for this checkout",
                  f"  {init}   # the segment in your prompt, no process per prompt",
                  '  projctl note "trying projctl"   # recorded here, shown by log',
                  "  projctl deploy staging          # runs the demo's deploy command, records "
                  "it",
                  "  projctl run hello               # a workflow, followed as it runs",
                  "  projctl log                     # the project's history"]
    else:
        lines.append("  (no demo checkout: git was not found to make one)")
    lines += ["Stop it:    projctl demo --stop    (removes the demo's state: nothing of it "
              "reappears)",
              "Afresh:     projctl demo --reset"]
    return "\n".join(lines)
