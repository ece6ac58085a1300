"""THE wire schema between projctl and projctld: request and reply Structs, versions, frame limit.

Frames are laid out by frames.py. The daemon decodes requests into `Request` with msgspec and
answers with one `Reply`; the client's hot path builds the same maps with minipack
(tests/test_protocol.py holds the two together). Fields are only ever added, with defaults, so
an older peer of the same PROTOCOL_VERSION can still be understood.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from projctl_client import __version__
from projctl_client.frames import MAX_FRAME, PROTOCOL_VERSION

__all__ = [
    "MAX_FRAME", "PROTOCOL_VERSION", "Ack", "BranchView", "ChangeRequestView", "Checkout",
    "CheckoutView", "CiView", "DaemonInfo", "Envelope", "Error", "Ping", "PipelineView",
    "PollResult", "Pong", "ProjectView", "Refresh", "RefreshReport", "Reply", "Request",
    "Shutdown", "SourceError", "SourceView", "StateInfo", "Status", "StatusView", "TicketView",
]


class Envelope(msgspec.Struct):
    """What every request carries whatever its type: read first when a request will not decode."""

    protocol: int = 0
    client: str = ""


class _Request(msgspec.Struct, tag_field="type", kw_only=True, frozen=True):
    protocol: int = PROTOCOL_VERSION
    client: str = __version__


class Checkout(msgspec.Struct, frozen=True):
    """A git checkout as the client found it: root directory, branch (None when detached), HEAD."""

    root: Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern="^/")]
    branch: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    head: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class Ping(_Request, tag="ping"):
    """Liveness and version: answered with Pong."""


class Status(_Request, tag="status"):
    """The status view, for the client's current checkout if it is in one; with
    `tickets_per_status`, only the newest that many tickets of each status are sent
    (`ticket_counts` still counts them all)."""

    checkout: Checkout | None = None
    tickets_per_status: Annotated[int, msgspec.Meta(ge=1)] | None = None


class Shutdown(_Request, tag="shutdown"):
    """Stop the daemon in order; answered with Ack before the shutdown begins."""


class Refresh(_Request, tag="refresh"):
    """Poll the upstreams of one project (or all) now; answered with RefreshReport after at
    most `wait` seconds, with the polls still running then reported as pending (they go on)."""

    project: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    wait: Annotated[float, msgspec.Meta(ge=0, le=600)] = 30.0


Request = Ping | Status | Shutdown | Refresh


class _Reply(msgspec.Struct, tag_field="type", kw_only=True):
    pass


class DaemonInfo(msgspec.Struct, kw_only=True):
    version: str
    protocol: int
    pid: int
    started_at: float
    config_path: str
    config_loaded_at: float
    socket_path: str
    state_path: str


class CheckoutView(msgspec.Struct, kw_only=True):
    root: str
    branch: str | None
    head: str | None
    project: str | None
    first_seen_at: float
    last_seen_at: float


class CiView(msgspec.Struct, kw_only=True):
    """The CI of one commit: its overall state, check counts and the names of failing checks.

    `state` is one of success, failure, running, pending, canceled, skipped, none.
    """

    state: str
    url: str | None = None
    passed: int = 0
    failed: int = 0
    running: int = 0
    failing: list[str] = []


class ChangeRequestView(msgspec.Struct, kw_only=True):
    """A GitHub pull request or GitLab merge request.

    `review` is one of approved, changes_requested, review_required, none.
    """

    upstream: str
    repo: str
    number: int
    ref: str
    title: str
    url: str
    author: str
    source_branch: str
    target_branch: str
    draft: bool = False
    review: str = "none"
    ci: CiView | None = None
    mine: bool = False
    review_requested: bool = False
    assigned: bool = False
    updated_at: float


class PipelineView(msgspec.Struct, kw_only=True):
    """The latest CI on one of my branches (GitHub Actions runs, GitLab pipelines).

    `state` as in CiView; `name` names the workflows that decided it.
    """

    upstream: str
    repo: str
    branch: str
    sha: str | None = None
    state: str
    name: str = ""
    url: str | None = None
    updated_at: float


class TicketView(msgspec.Struct, kw_only=True):
    """A Jira issue; `category` is todo, in_progress or done (Jira's status category)."""

    key: str
    summary: str
    status: str
    category: str
    priority: str | None = None
    type: str | None = None
    assignee: str | None = None
    url: str
    updated_at: float


class SourceError(msgspec.Struct, kw_only=True):
    code: str
    message: str
    suggestions: list[str] = []


class SourceView(msgspec.Struct, kw_only=True):
    """How fresh one upstream's data is for a project, and why not if it is not."""

    upstream: str
    fetched_at: float | None = None
    attempted_at: float | None = None
    next_poll_at: float | None = None
    polling: bool = False
    stale: bool = False
    error: SourceError | None = None


class ProjectView(msgspec.Struct, kw_only=True):
    name: str
    paths: list[str]
    checkouts: list[CheckoutView]
    change_requests: list[ChangeRequestView] = []
    pipelines: list[PipelineView] = []
    tickets: list[TicketView] = []
    ticket_counts: dict[str, int] = {}
    sources: list[SourceView] = []


class BranchView(msgspec.Struct, kw_only=True):
    """The current checkout's branch upstream: its change request and its latest CI."""

    project: str
    branch: str
    change_request: ChangeRequestView | None = None
    pipeline: PipelineView | None = None


class StateInfo(msgspec.Struct, kw_only=True):
    path: str
    schema_version: int
    created_at: float
    checkouts_known: int
    last_error: str | None = None


class StatusView(_Reply, tag="status"):
    generated_at: float
    daemon: DaemonInfo
    checkout: CheckoutView | None
    projects: list[ProjectView]
    state: StateInfo
    branch: BranchView | None = None
    sandbox: bool = False


class PollResult(msgspec.Struct, kw_only=True):
    """One (project, upstream) poll forced by Refresh; `outcome` is ok, error or pending."""

    project: str
    upstream: str
    outcome: str
    elapsed: float
    error: SourceError | None = None
    change_requests: int = 0
    pipelines: int = 0
    tickets: int = 0


class RefreshReport(_Reply, tag="refresh"):
    results: list[PollResult]


class Pong(_Reply, tag="pong"):
    daemon: DaemonInfo


class Ack(_Reply, tag="ack"):
    message: str


class Error(_Reply, tag="error"):
    """Any refusal. `suggestions` are what the user should type next."""

    code: str
    message: str
    context: dict[str, str] = {}
    suggestions: list[str] = []


Reply = StatusView | Pong | Ack | RefreshReport | Error
