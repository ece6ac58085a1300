"""The `projctl status` screen from a view (plain dicts): every section laid out for the
terminal's width, what needs you first, and `--short`, one line per project.

Rows never wrap in the terminal: tables (columns.py) give titles what the fixed columns leave
and shorten the rest (`✗ 3 failing: lint, +2`), and the other lines are broken at spaces under
their own indent. The daemon writes this text for the client (projctld/daemon/status_output.py),
so its cost is paid once per view and layout, not per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from projctl_client import __version__, render, terminal
from projctl_client.columns import EMPTY, Canvas, Cell, Column, table, text, widths
from projctl_client.render import age, duration, ref, span
from projctl_client.terminal import printable, text_width

# The label column of `Here`, `Notice`, `Sync` and of each project's name.
LABEL = 10
# Change requests lay out on one line while their titles get at least this many columns,
# else on two (ref and title, then the rest under it).
TITLE_MIN = 24
# How many failing checks a CI cell names at most before `+N`.
FAILING_NAMED = 5

# How a CI state reads, and its colour.
_CI = {
    "failure": ("✗", "failing", "red"), "stuck": ("◌", "stuck", "red"),
    "running": ("●", "running", "yellow"), "pending": ("○", "pending", "yellow"),
    "manual": ("▷", "manual", "yellow"), "canceled": ("⊘", "canceled", "dim"),
    "success": ("✓", "passing", "green"), "skipped": ("-", "skipped", "dim"),
    "none": ("·", "no CI", "dim"),
}
_CI_ORDER = {state: index for index, state in enumerate(_CI)}
# A review state's words (the shorter for narrow terminals) and colour.
_REVIEW = {"approved": (("approved",), "green"),
           "changes_requested": (("changes requested", "changes wanted"), "red"),
           "review_required": (("review required", "needs review"), "yellow")}
_DEPLOYMENT = {"completed": ("✓", "green"), "failed": ("✗", "red"), "running": ("●", "yellow")}
_DRAFT_PREFIXES = ("draft:", "[draft]", "(draft)", "wip:", "[wip]")
# Tables laid out before, by all they show and how: a view built again after a poll that
# brought nothing new to them (or for the clock) costs little to write. Kept up to this many.
_LAID_OUT_KEPT = 256
_laid_out: dict[tuple, list[str]] = {}


class Options(NamedTuple):
    """How to write the screen: for how many columns, with colours and links or not, in full
    or one line per project, for whose home directory (None: this process's) and client."""

    width: int = terminal.PIPE_WIDTH
    colours: bool = False
    links: bool = False
    short: bool = False
    home: str | None = None
    client: str = __version__
    # The view's strings are known to be printable as they are (the daemon checks its JSON
    # at once); else each is looked at.
    printable: bool = False


class _Page(Canvas):
    """What every section needs: the canvas, the options, and the time the ages count from."""

    def __init__(self, options: Options, now: float) -> None:
        super().__init__(max(options.width, terminal.MIN_WIDTH), options.colours,
                         options.links)
        self.options = options
        self.now = now

    def home(self, path: str) -> str:
        return render.home(path, self.options.home)


# Inbox items listed under its line; the rest are counted in it.
INBOX_SHOWN = 3


def screen(view: dict, options: Options, now: float | None = None) -> str:
    """The text of `projctl status` (or, with options.short, `projctl status --short`)."""
    page = _Page(options, time.time() if now is None else now)
    if not options.printable:
        view = _printable(view)
    style = page.style
    lines: list[str] = []
    if view.get("sandbox"):
        lines += page.wrap(page.paint("yellow", "SANDBOX: demo data from projctl's built-in fake "
                                                "GitHub, GitLab and Jira; nothing here is real"))
    lines += _here(view, page)
    for notice in view.get("notices") or []:
        lines += page.wrap(page.paint("yellow", f"Notice    {notice}"), LABEL)
    lines += _inbox(view, page)
    lines.append("")
    daemon = view["daemon"]
    projects = view.get("projects") or []
    if not projects:
        lines += page.wrap("No projects configured yet. Add one to "
                           + page.home(daemon["config_path"]) + ":")
        lines += page.wrap("  [projects.NAME]") + page.wrap('  paths = ["~/src/NAME"]', 4)
    if options.short:
        lines += _short_projects(projects, page)
    else:
        for project in projects:
            lines += _project(project, page)
    sync = [line for raw in render._sync_line(view.get("sync"), style, page.now)
            for line in page.wrap(raw, LABEL)]
    if sync or not options.short:
        lines.append("")
    lines += sync
    if not options.short:
        state = view["state"]
        now = page.now
        lines += page.wrap(page.paint("dim", " · ".join([
            f"projctld {daemon['version']}", f"up {duration(now - daemon['started_at'])}",
            f"config read {age(now - daemon['config_loaded_at'])}",
            f"{_count(state['checkouts_known'], 'checkout')} known",
            f"state kept since {age(now - state['created_at'])}"])))
    warning = render.version_warning(daemon, options.client)
    if warning:
        lines += page.wrap(warning)
    # Every line was made to fit: tables by their columns, the rest by page.wrap.
    return "\n".join(lines)


def _printable(value: object) -> object:
    """The view with every string safe to print (upstream text may hold escape codes)."""
    kind = type(value)
    if kind is str:
        return value if value.isprintable() else printable(value)  # type: ignore[union-attr]
    if kind is dict:
        return {key: _printable(item) for key, item in value.items()}  # type: ignore[union-attr]
    if kind is list:
        return [_printable(item) for item in value]  # type: ignore[union-attr]
    return value


# The current checkout.

def _here(view: dict, page: _Page) -> list[str]:
    here = view.get("checkout")
    dim, bold, reset = page.style.dim, page.style.bold, page.style.reset
    if not here:
        return [f"Here      {dim}not in a git repository{reset}"]
    project = here.get("project")
    where = f"project {bold}{project}{reset}" if project else "in no configured project"
    lines = page.wrap(f"Here      {page.home(here['root'])}  {_checkout_ref(here)}  "
                      f"{dim}({where}){reset}", LABEL)
    return lines + _branch(view.get("branch"), page)


def _checkout_ref(checkout: dict) -> str:
    head = (checkout.get("head") or "")[:7]
    branch = checkout.get("branch")
    if branch is None:
        return f"detached @ {head}" if head else "detached"
    return f"{branch} @ {head}" if head else f"{branch} (no commits yet)"


def _branch(branch: dict | None, page: _Page) -> list[str]:
    """The current branch's change request and latest CI, under the `Here` line."""
    if not branch:
        return []
    lines = []
    change = branch.get("change_request")
    known = branch.get("known", "complete")
    if change:
        # The change request of the branch I am on is shown whole, on two lines if need be.
        lines += _change_rows(page, [change], LABEL, LABEL + 2, whole=True)
    elif known == "unknown":
        lines += page.wrap(page.paint("dim", f"{'':{LABEL}}change request for {branch['branch']}:"
                                             " not known yet (nothing fetched so far)"), LABEL)
    elif known == "partial":
        lines += page.wrap(page.paint("dim", f"{'':{LABEL}}no open change request for "
                                             f"{branch['branch']} in what could be read"), LABEL)
    else:
        lines += page.wrap(page.paint("dim", f"{'':{LABEL}}no open change request for "
                                             f"{branch['branch']}"), LABEL)
    pipeline = branch.get("pipeline")
    if pipeline:
        cell = _ci_cell({"state": pipeline["state"], "url": pipeline.get("url")})
        name = pipeline.get("name") or ""
        which = f" ({name})" if name and name != "pipeline" else ""
        when = f", {age(page.now - pipeline['updated_at'])}" if pipeline.get("updated_at") \
            else ""
        lines += page.wrap(f"{'':{LABEL}}latest CI on this branch: "
                           f"{page.cell(cell, cell.forms[0], cell.natural, 0)}{which}"
                           + page.paint("dim", when), LABEL + 2)
    return lines


# A project in full.

def _project(project: dict, page: _Page) -> list[str]:
    lines = _checkouts(project, page)
    lines += _problems(project, page)
    lines += _upstreams(project, page)
    lines += _deployments(project, page)
    return lines


def _checkouts(project: dict, page: _Page) -> list[str]:
    """The project's name, and one row per checkout seen or path configured."""
    rows = [[text(page.home(c["root"]), clips=True), text(_checkout_ref(c), clips=True),
             Cell((f"seen {age(page.now - c['last_seen_at'])}",
                   age(page.now - c["last_seen_at"])), "dim")]
            for c in project["checkouts"]]
    seen_roots = [c["root"] for c in project["checkouts"]]
    rows += [[text(page.home(p), clips=True), text("no checkout seen yet", "dim"), EMPTY]
             for p in project["paths"]
             if not any(root == p or root.startswith(p + "/") for root in seen_roots)]
    if not rows:
        rows = [[text("no paths configured", "dim"), EMPTY, EMPTY]]
    name = Cell((f"{project['name']:<{LABEL - 1}}",), "bold")
    rows = [[name if index == 0 else text(" " * (LABEL - 1)), *row]
            for index, row in enumerate(rows)]
    columns = [Column(), Column(least=12), Column(flex=True, gap=2), Column(gap=2, uniform=True)]
    return table(page, rows, columns, 0, grow=(3, 1))


def _problems(project: dict, page: _Page) -> list[str]:
    """Each source's error and each part it could not read, with what to do: first, since
    they say what the lists below lack."""
    lines = []
    for source in project.get("sources") or []:
        error = source.get("error")
        if error:
            kept = f"; showing data from {age(page.now - source['fetched_at'])}" \
                if source.get("fetched_at") else ""
            lines += page.wrap(page.paint("red", f"  ! {source['upstream']}: {error['message']}")
                               + page.paint("dim", kept), 6)
            lines += [line for s in error.get("suggestions", [])
                      for line in page.wrap(f"      try: {s}", 11)]
        for problem in source.get("problems") or []:
            # One part that could not be read: named, the rest of the source still shows.
            part = "" if problem["part"] == "*" else f"{problem['part']}: "
            lines += page.wrap(page.paint("red", f"  ! {source['upstream']}: {part}"
                                                 f"{problem['message']}"), 6)
            lines += [line for s in problem.get("suggestions", [])
                      for line in page.wrap(f"      try: {s}", 11)]
    return lines


def _upstreams(project: dict, page: _Page) -> list[str]:
    """A project's change requests (what needs you first), CI needing a look, tickets."""
    sources = project.get("sources") or []
    if not sources:
        return []
    ages = {s["upstream"]: _freshness(s, page.now) for s in sources}
    known = project.get("known") or {}
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
        lines += _heading(page, "Change requests", [f"{u} {ages[u]}" for u in code_sources])
        lines += _change_requests(change_requests, page,
                                  known.get("change_requests", "complete"))
        lines += _pipelines(project.get("pipelines") or [], page)
    if ticket_sources:
        lines += _heading(page, "Tickets", [f"{u} {ages[u]}" for u in ticket_sources])
        lines += _tickets(project.get("tickets") or [], project.get("ticket_counts") or {},
                          page, known.get("tickets", "complete"))
    for upstream in plugin_sources:
        if upstream not in code_sources and upstream not in ticket_sources:
            lines += _heading(page, upstream, [ages[upstream]])
            lines += page.wrap(page.paint("dim", "    nothing for you"))
    return lines


def needs_me(change: dict) -> int | None:
    """Why a change request waits for me, most pressing first: my review (0), my CI failing
    or stuck (1), changes requested on mine (2), mine in conflict (3); None if it does not."""
    if change.get("review_requested"):
        return 0
    if not change.get("mine"):
        return None
    if (change.get("ci") or {}).get("state") in ("failure", "stuck"):
        return 1
    if change.get("review") == "changes_requested":
        return 2
    if change.get("conflicts"):
        return 3
    return None


# The groups of change requests, in the order shown (what needs me first); each goes in the
# first group it belongs to. The group says what I have to do with it, so rows need no role.
_GROUPS = (
    ("waiting for your review", "yellow", lambda c: c.get("review_requested")),
    ("yours, to fix", "yellow", lambda c: c.get("mine") and needs_me(c) is not None),
    ("yours", "dim", lambda c: c.get("mine")),
    ("assigned to you", "dim", lambda c: c.get("assigned")),
    ("reviewed by you", "dim", lambda c: c.get("reviewed")),
    ("others", "dim", lambda c: True),
)


def _memo(key: tuple, make: Callable[[], list[str]]) -> list[str]:
    """The lines `make()` lays out, made once for `key` (which names all they depend on)."""
    lines = _laid_out.get(key)
    if lines is None:
        if len(_laid_out) >= _LAID_OUT_KEPT:
            _laid_out.clear()
        lines = _laid_out[key] = make()
    return lines


def _layout(page: _Page) -> tuple:
    return page.width, page.colours, page.links


def _change_requests(changes: list[dict], page: _Page, known: str) -> list[str]:
    # Nothing in these rows depends on the clock: they are laid out again only when one of
    # these fields changes.
    key = ("change requests", _layout(page), known, tuple(
        (c["ref"], c["title"], c.get("url"), c.get("draft"), c.get("review"),
         c.get("conflicts"), c.get("mine"), c.get("review_requested"), c.get("assigned"),
         c.get("reviewed"), c.get("updated_at"), _ci_key(c.get("ci"))) for c in changes))
    return _memo(key, lambda: _change_lines(changes, page, known))


def _ci_key(ci: dict | None) -> tuple | None:
    if not ci:
        return None
    return ci["state"], ci.get("url"), ci.get("failed"), tuple(ci.get("failing") or ())


def _change_lines(changes: list[dict], page: _Page, known: str) -> list[str]:
    if not changes:
        return [page.paint("dim", "    " + _nothing(known, "none open for you"))]
    groups: list[list[dict]] = [[] for _ in _GROUPS]
    for change in changes:
        index = next(i for i, (_, _, belongs) in enumerate(_GROUPS) if belongs(change))
        groups[index].append(change)
    groups[1].sort(key=lambda c: (needs_me(c), -c.get("updated_at", 0)))
    ordered = [change for group in groups for change in group]
    # One table for every group, so that their columns line up.
    rows = _change_rows(page, ordered, 4, 6)
    per_change = len(rows) // len(ordered)
    lines, start = [], 0
    for (heading, colour, _), group in zip(_GROUPS, groups, strict=True):
        if group:
            lines += page.wrap(page.paint(colour, f"    {heading} ({len(group)})"), 6)
            lines += rows[start:start + len(group) * per_change]
            start += len(group) * per_change
    return lines


def _change_rows(page: _Page, changes: list[dict], indent: int, second_indent: int,
                 whole: bool = False) -> list[str]:
    """One row per change request (ref, title, review, conflicts, CI), or two when the title
    would get fewer than TITLE_MIN columns (ref and title, then the rest under it), or with
    `whole` when anything would be shortened; the same number of lines for each."""
    heads = [[Cell((c["ref"], _short_ref(c["ref"])), url=c.get("url")),
              Cell((c["title"],), clips=True, keep=_draft(c))] for c in changes]
    tails = [[_review_cell(c.get("review", "none")),
              text("conflicts", "red") if c.get("conflicts") else EMPTY,
              _ci_cell(c.get("ci"))] for c in changes]
    rows = [head + tail for head, tail in zip(heads, tails, strict=True)]
    wanted = min(max(head[1].natural for head in heads), TITLE_MIN)
    for gap in (2, 1):
        columns = [Column(uniform=True), Column(flex=True), Column(gap=gap, uniform=True),
                   Column(gap=gap), Column(gap=gap)]
        grow = () if whole else (2, 4, 0)
        sizes = widths(page, rows, columns, indent, grow)
        natural = [max(row[i].natural for row in rows) for i in range(len(columns))]
        if sizes == natural if whole else sizes[1] >= wanted:
            return table(page, rows, columns, indent, sizes=sizes)
    firsts = table(page, heads, [Column(uniform=True), Column(flex=True)], indent, grow=(0,))
    seconds = table(page, tails, [Column(uniform=True), Column(gap=2), Column(gap=2)],
                    second_indent, grow=(0, 2))
    return [line for pair in zip(firsts, seconds, strict=True) for line in pair]


def _short_ref(full: str) -> str:
    """`web#42` for `acme/web#42`: the repository without its owner or group."""
    return full.rsplit("/", 1)[-1]


def _draft(change: dict) -> str:
    if not change.get("draft") or change["title"].lower().startswith(_DRAFT_PREFIXES):
        return ""
    return " (draft)"


def _review_cell(review: str) -> Cell:
    words, colour = _REVIEW.get(review, (("",) if review == "none" else (review,), "dim"))
    return Cell(words, colour)


def _ci_cell(ci: dict | None) -> Cell:
    """`✓ passing`, `✗ 3 failing: lint, e2e, +1`, `● running, 1 failing: lint`, with the
    shorter forms a narrow column takes, down to `✗ 3 failing`."""
    if not ci:
        return Cell(("· no CI",), "dim")
    symbol, word, colour = _CI.get(ci["state"], ("?", ci["state"], "dim"))
    names = list(ci.get("failing") or [])
    count = max(ci.get("failed") or 0, len(names))
    if not count:
        return Cell((f"{symbol} {word}",), colour, ci.get("url"))
    base = f"{symbol} {count} failing" if ci["state"] == "failure" \
        else f"{symbol} {word}, {count} failing"
    forms = []
    for shown in range(min(len(names), FAILING_NAMED), 0, -1):
        more = f", +{count - shown}" if count > shown else ""
        forms.append(f"{base}: {', '.join(names[:shown])}{more}")
    return Cell((*forms, base), colour, ci.get("url"))


def _pipelines(pipelines: list[dict], page: _Page) -> list[str]:
    """The latest CI of my branches that failed, is stuck or still runs: worst first."""
    if not pipelines:
        return []
    ordered = sorted(pipelines, key=lambda p: (_CI_ORDER.get(p["state"], len(_CI)),
                                               -p.get("updated_at", 0)))
    rows = [[Cell((p["repo"], _short_ref(p["repo"]))), text(p["branch"], clips=True),
             _ci_cell({"state": p["state"], "url": p.get("url")}),
             Cell((p.get("name") or "", ""), "dim"),
             text(age(page.now - p["updated_at"]), "dim")] for p in ordered]
    columns = [Column(uniform=True), Column(flex=True), Column(), Column(gap=2, uniform=True),
               Column(gap=2)]
    return _heading(page, "CI on my branches that needs a look", []) \
        + table(page, rows, columns, 4, grow=(0, 3))


def _nothing(known: str, none: str) -> str:
    """What an empty list means: none, none among what could be read, or not known yet."""
    if known == "unknown":
        return "not fetched yet"
    if known == "partial":
        return f"{none} in what could be read"
    return none


def _tickets(tickets: list[dict], counts: dict[str, int], page: _Page,
             known: str = "complete") -> list[str]:
    """Tickets by status, in the daemon's order (in progress, to do, done; newest first)."""
    key = ("tickets", _layout(page), known, tuple(sorted(counts.items())), tuple(
        (t["key"], t["summary"], t.get("url"), t.get("priority"), t["status"])
        for t in tickets))
    return _memo(key, lambda: _ticket_lines(tickets, counts, page, known))


def _ticket_lines(tickets: list[dict], counts: dict[str, int], page: _Page,
                  known: str) -> list[str]:
    if not tickets:
        return [page.paint("dim", "    " + _nothing(known, "none"))]
    by_status: dict[str, list[dict]] = {}
    for ticket in tickets:
        by_status.setdefault(ticket["status"], []).append(ticket)
    # Every group in one table, so that their columns line up.
    rows: list[list[Cell]] = []
    marks: list[tuple[int, str, str]] = []  # (row index, line before it, line after the group)
    for name, group in by_status.items():
        total = max(counts.get(name, 0), len(group))
        shown = group[:render.TICKETS_PER_STATUS]
        more = "" if total <= len(shown) else \
            page.paint("dim", f"      … {total - len(shown)} more (projctl status --json)")
        marks.append((len(rows), f"    {page.style.bold}{name}{page.style.reset} ({total})",
                      more))
        rows += [[text(t["key"], url=t.get("url")), text(t["summary"], clips=True),
                  Cell((t.get("priority") or "", ""), "dim")] for t in shown]
    columns = [Column(), Column(flex=True), Column(gap=2, uniform=True)]
    laid = table(page, rows, columns, 6, grow=(2,))
    lines = []
    for index, (start, heading, more) in enumerate(marks):
        end = marks[index + 1][0] if index + 1 < len(marks) else len(laid)
        lines += page.wrap(heading, 6)
        lines += laid[start:end]
        if more:
            lines += page.wrap(more, 8)
    return lines


def _inbox(view: dict, page: _Page) -> list[str]:
    """What needs me upstream, when something does: a count by reason, then the newest few
    (`projctl inbox` has them all). Nothing when none is known to."""
    items = view.get("inbox") or []
    if not items:
        return []
    reasons: dict[str, int] = {}
    for item in items:
        reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
    partly = ", partly fetched" if view.get("inbox_known") == "partial" else ""
    summary = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in reasons.items())
    lines = page.wrap(page.paint("yellow", f"Inbox     {_count(len(items), 'item')} need you: "
                                 f"{summary}{partly}") + page.paint("dim", "  projctl inbox"),
                      LABEL)
    if page.options.short:
        return lines
    for item in items[:INBOX_SHOWN]:
        lines += page.wrap(f"          {item['repo']}  {item['title']}", LABEL)
    return lines


def _heading(page: _Page, title: str, ages: list[str]) -> list[str]:
    suffix = page.paint("dim", "  " + " · ".join(ages)) if ages else ""
    return page.wrap(f"  {page.style.bold}{title}{page.style.reset}{suffix}", 4)


def _freshness(source: dict, now: float) -> str:
    """`12 s ago`, `polling…`, `stale, 2 h ago`, `12 s ago, partly fetched` or
    `not fetched yet`."""
    if source.get("polling") and not source.get("fetched_at"):
        return "polling…"
    if not source.get("fetched_at"):
        return "not fetched yet" + (" (failing)" if source.get("error") else "")
    words = age(now - source["fetched_at"])
    if source.get("problems"):
        words += ", partly fetched"
    return f"stale, {words}" if source.get("stale") else words


def _deployments(project: dict, page: _Page) -> list[str]:
    """The latest deployment of each environment, in the order the config lists them."""
    latest: dict[str, dict] = {}
    for deployment in project.get("deployments") or []:  # newest first per environment
        latest.setdefault(deployment["environment"], deployment)
    if not latest:
        return []
    configured = project.get("environments") or []
    order = [e for e in configured if e in latest] + [e for e in latest if e not in configured]
    rows = []
    for environment in order:
        deployment = latest[environment]
        symbol, colour = _DEPLOYMENT.get(deployment["state"], ("?", "dim"))
        rows.append([text(symbol, colour), text(environment),
                     text(ref(deployment.get("branch"), deployment.get("commit")) or "?",
                          clips=True),
                     text(deployment.get("actor") or "", clips=True),
                     text(_deployment_time(deployment, page.now), "dim")])
    columns = [Column(), Column(), Column(gap=2, least=12), Column(gap=2, least=8),
               Column(gap=2)]
    # A line too long for the terminal goes on under where its time begins.
    sizes = widths(page, rows, columns, 4, grow=(2, 3))
    start = 4 + sum(size + column.gap for size, column in zip(sizes[:4], columns[:4],
                                                               strict=True) if size) - 1
    return _heading(page, "Deployments", []) \
        + table(page, rows, columns, 4, overflow_indent=min(start, page.width // 2),
                sizes=sizes)


def _deployment_time(deployment: dict, now: float) -> str:
    started, finished = deployment.get("started_at"), deployment.get("finished_at")
    took = deployment.get("duration")
    if deployment["state"] == "running":
        return f"running for {duration(now - started)}" if started else "running"
    when = finished or started
    words = age(now - when) if when else ""
    if deployment["state"] == "failed":
        why = deployment.get("reason") or render._exit_text(deployment.get("exit_status"))
        after = f" after {span(took)}" if took is not None else ""
        return f"{words} · failed{after}" + (f": {why}" if why else "")
    return f"{words} · took {span(took)}" if took is not None else words


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


# A project on one line (`--short`).

# How soon a part of the line goes when the line is too long: never (0), or later the lower.
_ESSENTIAL, _AGE, _COUNT, _CI_COUNT = 0, 1, 2, 3


class _Part(NamedTuple):
    words: str
    colour: str
    rank: int  # _ESSENTIAL, ... : how soon it goes when the line is too long
    short: str = ""  # the words where the line is still too long


def _short_projects(projects: list[dict], page: _Page) -> list[str]:
    """Per project: its name, what needs me and how much there is, how fresh; then its
    problems, each with its fix, as in full. While a line is too long, what the full status
    shows anyway goes (counts, the age of fresh data), then the shorter words are taken; on
    every line alike, so that they read alike."""
    every = [(project, _short_parts(project, page.now)) for project in projects]

    def fits(chosen: list[tuple[dict, list[_Part]]]) -> bool:
        return all(text_width(" · ".join(part.words for part in parts))
                   <= page.width - max(LABEL, text_width(project["name"]) + 1)
                   for project, parts in chosen)

    for cutoff in (_CI_COUNT, _COUNT, _AGE, _ESSENTIAL):
        chosen = [(project, [part for part in parts if part.rank <= cutoff])
                  for project, parts in every]
        if fits(chosen):
            break
    else:
        chosen = [(project, [part._replace(words=part.short or part.words) for part in parts])
                  for project, parts in chosen]
    lines = []
    for project, parts in chosen:
        label = page.paint("bold", f"{project['name']:<{LABEL - 1}}") + " "
        lines += page.wrap(label + page.paint("dim", " · ").join(
            page.paint(part.colour, part.words) for part in parts), LABEL)
        lines += _problems(project, page)
    return lines


def _short_parts(project: dict, now: float) -> list[_Part]:
    """The parts of a project's line."""
    sources = project.get("sources") or []
    known = project.get("known") or {}
    if not sources:
        checkouts = project.get("checkouts") or []
        seen = f"{_count(len(checkouts), 'checkout')} seen" if checkouts \
            else "no checkout seen yet"
        return [_Part(seen, "dim", _ESSENTIAL),
                _Part("no github, gitlab or jira configured", "dim", _COUNT)]
    parts: list[_Part] = []
    changes = project.get("change_requests") or []
    if "change_requests" in known:
        if known["change_requests"] == "unknown":
            parts.append(_Part("change requests not fetched yet", "yellow", _ESSENTIAL))
        else:
            parts += _needs_parts(changes, known["change_requests"])
            parts.append(_Part(_count(len(changes), "change request"), "dim", _COUNT))
    pipelines = project.get("pipelines") or []
    if pipelines:
        branches = "branch" if len(pipelines) == 1 else "branches"
        parts.append(_Part(f"CI on {len(pipelines)} {branches} to look at", "dim", _CI_COUNT))
    if "tickets" in known:
        if known["tickets"] == "unknown":
            parts.append(_Part("tickets not fetched yet", "yellow", _ESSENTIAL))
        else:
            total = sum((project.get("ticket_counts") or {}).values())
            parts.append(_Part(_count(total, "ticket"), "dim", _COUNT))
    return parts + _short_freshness(sources, now)


def _needs_parts(changes: list[dict], known: str) -> list[_Part]:
    """What waits for me, counted as in the full status's first groups."""
    mine = [c for c in changes if c.get("mine")]
    states = [(c.get("ci") or {}).get("state") for c in mine]
    found = [
        (sum(1 for c in changes if c.get("review_requested")), "to review", "to review",
         "yellow"),
        (states.count("failure"), "failing CI", "failing", "red"),
        (states.count("stuck"), "stuck CI", "stuck", "red"),
        (sum(1 for c in mine if c.get("review") == "changes_requested"), "changes requested",
         "to rework", "red"),
        (sum(1 for c in mine if c.get("conflicts")), "in conflict", "in conflict", "red"),
    ]
    parts = [_Part(f"{count} {words}", colour, _ESSENTIAL, f"{count} {short}")
             for count, words, short, colour in found if count]
    if parts:
        return parts
    if known == "complete":
        return [_Part("nothing needs you", "green", _ESSENTIAL)]
    return [_Part(_nothing(known, "nothing needs you"), "dim", _ESSENTIAL)]


def _short_freshness(sources: list[dict], now: float) -> list[_Part]:
    """How old the project's data is: the oldest source's age, and what is not fresh or
    whole (never left out): stale, failing, partly fetched, still polling."""
    parts: list[_Part] = []
    failing = [s["upstream"] for s in sources if s.get("error")]
    # (A failing source is stale too; it is said once.)
    stale = [s["upstream"] for s in sources
             if s.get("stale") and s.get("fetched_at") and not s.get("error")]
    partial = [s["upstream"] for s in sources if s.get("problems")]
    polling = [s["upstream"] for s in sources if s.get("polling") and not s.get("fetched_at")]
    if stale:
        parts.append(_Part(f"stale: {', '.join(stale)}", "red", _ESSENTIAL))
    if failing:
        parts.append(_Part(f"failing: {', '.join(failing)}", "red", _ESSENTIAL))
    if partial:
        parts.append(_Part(f"partly fetched: {', '.join(partial)}", "yellow", _ESSENTIAL))
    if polling:
        parts.append(_Part(f"polling {', '.join(polling)}…", "dim", _ESSENTIAL))
    fetched = [s["fetched_at"] for s in sources if s.get("fetched_at")]
    if fetched:
        parts.append(_Part(f"as of {age(now - min(fetched))}", "dim", _AGE))
    return parts
