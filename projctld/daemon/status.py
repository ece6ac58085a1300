"""Builds the status view from the config and what the daemon knows, and reuses it while nothing
in it has changed."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import NamedTuple, Protocol

import msgspec

from projctl_client.protocol import (
    BranchView,
    ChangeRequestView,
    Checkout,
    CheckoutView,
    DaemonInfo,
    ProjectView,
    Reply,
    StateInfo,
    StatusView,
    TicketView,
)
from projctld.config import Config
from projctld.daemon.knowledge import Knowledge
from projctld.store.checkouts import CheckoutRow
from projctld.store.database import Database
from projctld.team.sync.journal import Journal
from projctld.team.sync.runner import SyncRunner
from projctld.upstream.polling import Poller, Source, branch_upstream
from projctld.upstream.providers.model import stuck_state

# Deployments shown per environment: the latest, and enough before it to see a pattern.
DEPLOYMENTS_PER_ENVIRONMENT = 3
# Pipelines shown per project are the ones that need me: failed, stuck, or still going.
_NEEDS_ATTENTION = ("failure", "stuck", "running", "pending", "manual")
_CATEGORY_ORDER = {"in_progress": 0, "todo": 1, "done": 2}
# How long a built view may be served again. What it derives from the clock (stale marks) and
# what changes without a signal (a poll or a sync starting, last_seen_at) lags by at most this.
MAX_REUSE = 1.0
# Inbox items a view carries at most (`projctl inbox` lists them all).
INBOX_ITEMS = 20
# Distinct (checkout, ticket limit) views kept; more than this and all are built afresh.
MAX_VIEWS = 64
# Outputs kept per view (text for each width and option, JSON); more and they are written
# afresh.
MAX_OUTPUTS = 16

Key = tuple[Checkout | None, int | None]


class ViewSources(Protocol):
    """What a view is built from: the daemon's context, which holds the StatusViews."""

    config: Config
    knowledge: Knowledge
    poller: Poller
    journal: Journal
    runner: SyncRunner
    db: Database
    sandbox: bool

    def info(self) -> DaemonInfo: ...


class _Built(NamedTuple):
    at: float
    version: int
    view: StatusView
    # What was written out from the view (status_output.py), by what it depends on.
    outputs: dict[Hashable, Reply]


class StatusViews:
    """The views last built, one per (checkout, ticket limit), served again until `changed()`
    (a poll, an event, a sync) or a checkout change, and for at most MAX_REUSE seconds; and
    beside each, its outputs (its JSON, its text for a width and options) for as long.

    Under load this turns a status into a lookup: many shells and editors asking at once get
    the same view or output, and the RPC server reuses its encoding too
    (projctld/rpc/server.py). The ages in a text output count from when it was written, so
    they lag by at most MAX_REUSE, as the view's data does."""

    def __init__(self, ctx: ViewSources, clock: Callable[[], float] = time.monotonic) -> None:
        self._ctx = ctx
        self._clock = clock
        self._views: dict[Key, _Built] = {}

    def changed(self) -> None:
        self._views.clear()

    def get(self, here: Checkout | None, tickets_per_status: int | None) -> StatusView:
        return self._built(here, tickets_per_status).view

    def output(self, here: Checkout | None, tickets_per_status: int | None, how: Hashable,
               write: Callable[[StatusView], Reply]) -> Reply:
        """`write(view)`, made once per view and `how` (what else the output depends on)."""
        built = self._built(here, tickets_per_status)
        reply = built.outputs.get(how)
        if reply is None:
            if len(built.outputs) >= MAX_OUTPUTS:
                built.outputs.clear()
            reply = built.outputs[how] = write(built.view)
        return reply

    def _built(self, here: Checkout | None, tickets_per_status: int | None) -> _Built:
        knowledge = self._ctx.knowledge
        if here is not None:
            knowledge.observe(here, time.time())
        now = self._clock()
        key = (here, tickets_per_status)
        cached = self._views.get(key)
        if cached is not None and now - cached.at < MAX_REUSE \
                and cached.version == knowledge.version:
            return cached
        if len(self._views) >= MAX_VIEWS:
            self._views.clear()
        view = build_status(self._ctx, here, tickets_per_status=tickets_per_status)
        built = self._views[key] = _Built(now, knowledge.version, view, {})
        return built


def build_status(ctx: ViewSources, here: Checkout | None, *,
                 tickets_per_status: int | None = None) -> StatusView:
    """The view for the client in checkout `here`, which the caller has observed already."""
    now = time.time()
    knowledge = ctx.knowledge
    current = _view(knowledge.row(here.root), knowledge.project_of(here.root)) if here else None
    sources: dict[str, list[Source]] = {name: [] for name in ctx.config.projects}
    for (project, _upstream), source in ctx.poller.sources.items():
        sources[project].append(source)
    by_project: dict[str, list[CheckoutView]] = {name: [] for name in ctx.config.projects}
    known = knowledge.checkouts()
    for row in known:
        project = knowledge.project_of(row.root)
        if project is not None:
            by_project[project].append(_view(row, project))
    return StatusView(
        generated_at=now,
        daemon=ctx.info(),
        checkout=current,
        projects=[
            msgspec.structs.replace(
                _project(name, project.paths, by_project[name], sources[name], now,
                         tickets_per_status, ctx.config.polling.stuck_after),
                environments=project.environments,
                deployments=ctx.journal.store.deployments(name, DEPLOYMENTS_PER_ENVIRONMENT),
            )
            for name, project in ctx.config.projects.items()
        ],
        sync=ctx.runner.view(),
        branch=_branch(current, sources, now, ctx.config.polling.stuck_after),
        sandbox=ctx.sandbox,
        **_inbox(ctx),
        state=StateInfo(
            path=ctx.db.path,
            schema_version=ctx.db.schema_version,
            created_at=ctx.db.created_at,
            checkouts_known=len(known),
            last_error=ctx.db.problem or knowledge.last_error,
        ),
    )


def _inbox(ctx: ViewSources) -> dict:
    inbox = getattr(ctx, "inbox", None)  # a daemon context keeps one
    if inbox is None:
        return {}
    report = inbox.report()
    return {"inbox": report.items[:INBOX_ITEMS], "inbox_known": report.known}


def _view(row: CheckoutRow, project: str | None) -> CheckoutView:
    return CheckoutView(root=row.root, branch=row.branch, head=row.head, project=project,
                        first_seen_at=row.first_seen_at, last_seen_at=row.last_seen_at)


def _project(name: str, paths: list[str], checkouts: list[CheckoutView], sources: list[Source],
             now: float, tickets_per_status: int | None, stuck_after: float) -> ProjectView:
    change_requests = [_settled(cr, now, stuck_after)
                       for s in sources for cr in s.snapshot.change_requests]
    # Work in progress first, then to do, then done; newest first within each.
    tickets = sorted((t for s in sources for t in s.snapshot.tickets),
                     key=lambda t: (_CATEGORY_ORDER.get(t.category, 3), -t.updated_at))
    counts: dict[str, int] = {}
    for ticket in tickets:
        counts[ticket.status] = counts.get(ticket.status, 0) + 1
    if tickets_per_status is not None:
        tickets = _first_per_status(tickets, tickets_per_status)
    # Mine first, then those waiting for my review, then the rest; newest first within each.
    change_requests.sort(key=lambda cr: (not cr.mine, not cr.review_requested, -cr.updated_at))
    pipelines = [msgspec.structs.replace(p, state=stuck_state(
        p.state, p.started_at or p.updated_at, now, stuck_after))
        for s in sources for p in s.snapshot.pipelines]
    return ProjectView(
        name=name, paths=paths, checkouts=checkouts,
        change_requests=change_requests,
        pipelines=[p for p in pipelines if p.state in _NEEDS_ATTENTION],
        tickets=tickets,
        ticket_counts=counts,
        sources=[s.view(now) for s in sources],
        known=_known(sources),
    )


def _settled(change: ChangeRequestView, now: float, stuck_after: float) -> ChangeRequestView:
    """The change request with CI that has not finished for too long shown as stuck."""
    ci = change.ci
    if ci is None:
        return change
    state = stuck_state(ci.state, ci.started_at or change.updated_at, now, stuck_after)
    if state == ci.state:
        return change
    return msgspec.structs.replace(change, ci=msgspec.structs.replace(ci, state=state))


# The lists each kind of source feeds; a plugin's upstream may bring any of them.
_FEEDS = {"github": ("change_requests", "pipelines"), "gitlab": ("change_requests", "pipelines"),
          "jira": ("tickets",)}
_LISTS = ("change_requests", "pipelines", "tickets")


def _known(sources: list[Source]) -> dict[str, str]:
    """How much of each list is known: a list that no source fed yet is `unknown`, not empty."""
    known: dict[str, str] = {}
    for name in _LISTS:
        feeding = [s for s in sources if name in _FEEDS.get(s.kind, _LISTS)]
        if not feeding:
            continue
        fetched = [s for s in feeding if s.fetched_at is not None]
        if not fetched:
            known[name] = "unknown"
        elif len(fetched) < len(feeding) or any(s.snapshot.problems for s in fetched):
            known[name] = "partial"
        else:
            known[name] = "complete"
    return known


def _first_per_status(tickets: list[TicketView], limit: int) -> list[TicketView]:
    seen: dict[str, int] = {}
    kept = []
    for ticket in tickets:
        seen[ticket.status] = seen.get(ticket.status, 0) + 1
        if seen[ticket.status] <= limit:
            kept.append(ticket)
    return kept


def _branch(current: CheckoutView | None, sources: dict[str, list[Source]], now: float,
            stuck_after: float) -> BranchView | None:
    """The current branch's change request and latest CI, when its project polls upstreams."""
    if current is None or current.project is None or current.branch is None:
        return None
    project_sources = sources.get(current.project, [])
    if not project_sources:
        return None
    change_request, pipeline = branch_upstream(current.branch, project_sources)
    if change_request is not None:
        change_request = _settled(change_request, now, stuck_after)
    if pipeline is not None:
        pipeline = msgspec.structs.replace(pipeline, state=stuck_state(
            pipeline.state, pipeline.started_at or pipeline.updated_at, now, stuck_after))
    return BranchView(project=current.project, branch=current.branch,
                      change_request=change_request, pipeline=pipeline,
                      known=_known(project_sources).get("change_requests", "complete"))
