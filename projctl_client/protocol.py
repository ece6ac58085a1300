"""THE wire schema between projctl and projctld: request and reply Structs, versions, frame limit.

Frames are laid out by frames.py. The daemon decodes requests into `Request` with msgspec and
answers with one `Reply`; the client's hot path builds the same maps with minipack
(tests/test_protocol.py holds the two together). Fields are only ever added, with defaults, so
an older peer of the same PROTOCOL_VERSION can still be understood.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from projctl_client import __version__
from projctl_client.frames import MAX_FRAME, PROTOCOL_VERSION

__all__ = [
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "Ack",
    "BranchCreated",
    "BranchView",
    "ChangeRequestView",
    "CheckView",
    "Checkout",
    "CheckoutView",
    "CiView",
    "ClockView",
    "ConfigProblem",
    "DaemonInfo",
    "DaemonMetric",
    "DeliveryBucket",
    "DeliveryPeriod",
    "DeliveryReport",
    "DeployFinish",
    "DeployMark",
    "DeployPlan",
    "DeployStart",
    "DeploymentView",
    "Doctor",
    "DoctorReport",
    "Envelope",
    "Error",
    "EventView",
    "Inbox",
    "InboxDone",
    "InboxItemView",
    "InboxReport",
    "InboxSourceView",
    "LatencyView",
    "Log",
    "LogView",
    "Metrics",
    "MetricsReport",
    "Note",
    "NotificationView",
    "Notifications",
    "NotificationsReport",
    "Ping",
    "PipelineView",
    "PluginReply",
    "PluginRequest",
    "PluginView",
    "Plugins",
    "PluginsReport",
    "PollResult",
    "Pong",
    "ProjectView",
    "Prompt",
    "PromptText",
    "RateLimitView",
    "RecordEvent",
    "Recorded",
    "Refresh",
    "RefreshReport",
    "Reload",
    "Reloaded",
    "Reply",
    "Report",
    "Request",
    "RequestMetric",
    "RunFollow",
    "RunPlanView",
    "RunProgress",
    "RunStart",
    "RunStarted",
    "RunSummary",
    "Runs",
    "RunsView",
    "SetAsideView",
    "Shutdown",
    "SourceError",
    "SourceProblem",
    "SourceView",
    "StateInfo",
    "Status",
    "StatusOutput",
    "StatusView",
    "StreamEnd",
    "Sync",
    "SyncProblem",
    "SyncReport",
    "SyncView",
    "TicketView",
    "UpstreamMetric",
    "Wait",
    "WaitProgress",
    "Watch",
]


class Envelope(msgspec.Struct):
    """What every request carries whatever its type: read first when a request will not decode."""

    protocol: int = 0
    client: str = ""


class _Request(msgspec.Struct, tag_field="type", kw_only=True, frozen=True):
    protocol: int = PROTOCOL_VERSION
    client: str = __version__
    # The projctl command that sent it (`status`, `prompt`, ...), for `projctl metrics`.
    command: Annotated[str, msgspec.Meta(max_length=64)] = ""


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
    (`ticket_counts` still counts them all); with `project`, only that project (one not
    configured is an Error, code `unknown_project`).

    With `output` other than "view" the answer is StatusOutput: the view as `projctl status
    --json` prints it ("json"), or as its text for a terminal of `width` columns, in full
    ("text") or one line per project ("short"), with colours and OSC 8 links or not, paths
    under `home` written with `~`.
    """

    checkout: Checkout | None = None
    tickets_per_status: Annotated[int, msgspec.Meta(ge=1)] | None = None
    project: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    output: Literal["view", "json", "text", "short"] = "view"
    width: Annotated[int, msgspec.Meta(ge=20, le=1000)] = 80
    colours: bool = False
    links: bool = False
    home: Annotated[str, msgspec.Meta(max_length=4096)] = ""


class Shutdown(_Request, tag="shutdown"):
    """Stop the daemon in order; answered with Ack before the shutdown begins."""


class Refresh(_Request, tag="refresh"):
    """Poll the upstreams of one project (or all) now; answered with RefreshReport after at
    most `wait` seconds, with the polls still running then reported as pending (they go on)."""

    project: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    wait: Annotated[float, msgspec.Meta(ge=0, le=600)] = 30.0


_Project = Annotated[str, msgspec.Meta(max_length=64)]
_Name = Annotated[str, msgspec.Meta(max_length=256)]


class Note(_Request, tag="note", kw_only=True):
    """Record a note in the project of `project` or else of the checkout; with `edit`, replace
    the text of that note (its id, or a unique start or end of it) instead."""

    checkout: Checkout | None = None
    project: _Project | None = None
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
    edit: Annotated[str, msgspec.Meta(min_length=4, max_length=36)] | None = None


class BranchCreated(_Request, tag="branch_created", kw_only=True):
    """Record that the client created git branch `name` (from `base`, at `commit`). With
    `dry_run`, only say which project it would go to (Ack), before git makes the branch."""

    checkout: Checkout | None = None
    project: _Project | None = None
    name: _Name
    base: _Name | None = None
    commit: _Name | None = None
    dry_run: bool = False


class DeployStart(_Request, tag="deploy_start", kw_only=True):
    """Plan a deployment and, unless `dry_run`, record that it started; answered DeployPlan."""

    checkout: Checkout | None = None
    project: _Project | None = None
    environment: _Name
    branch: _Name | None = None
    commit: _Name | None = None
    dry_run: bool = False
    # The commit's committer time (Unix seconds), as git tells it: what lead time counts from.
    commit_time: Annotated[float, msgspec.Meta(ge=0, le=1e11)] | None = None


class DeployFinish(_Request, tag="deploy_finish", kw_only=True):
    """Record how a started deployment ended: completed when `exit_status` is 0."""

    project: _Project
    deployment: Annotated[str, msgspec.Meta(max_length=36)]
    exit_status: int | None = None
    duration: Annotated[float, msgspec.Meta(ge=0)]
    reason: Annotated[str, msgspec.Meta(max_length=4000)] = ""


class DeployMark(_Request, tag="deploy_mark", kw_only=True):
    """Record that a finished deployment (its id, or a unique start or end of it) caused a
    failure in its environment, or with `caused_failure` false that it did not after all."""

    checkout: Checkout | None = None
    project: _Project | None = None
    deployment: Annotated[str, msgspec.Meta(min_length=4, max_length=36)]
    caused_failure: bool = True
    reason: Annotated[str, msgspec.Meta(max_length=4000)] = ""


class Report(_Request, tag="report", kw_only=True):
    """The delivery metrics of a project (one environment, or all) over the `days` before now
    and the `days` before those, from this device's log; answered with DeliveryReport."""

    checkout: Checkout | None = None
    project: _Project | None = None
    environment: _Name | None = None
    days: Annotated[float, msgspec.Meta(ge=1 / 24, le=365)] = 30.0


class Log(_Request, tag="log", kw_only=True):
    """The newest `limit` events of one project, oldest first; `since` is Unix seconds and
    `types` are event types or their prefixes (`deployment`).

    With `paged`, the reply holds as many as fit in a frame with room to spare, and `next`
    names where the next page starts: send it back as `cursor` (with `limit` the number still
    wanted) until `next` is null. Without it (older clients), one reply holds them all."""

    checkout: Checkout | None = None
    project: _Project | None = None
    since: float | None = None
    types: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]],
                     msgspec.Meta(max_length=16)] = []
    limit: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 50
    paged: bool = False
    cursor: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class Sync(_Request, tag="sync", kw_only=True):
    """The sync state; with `now`, after an attempt made at once (waiting at most `wait` s)."""

    now: bool = False
    wait: Annotated[float, msgspec.Meta(ge=0, le=600)] = 30.0


class Plugins(_Request, tag="plugins"):
    """The daemon's plugins: what each implements, whether it loaded, its errors."""


class Prompt(_Request, tag="prompt", kw_only=True):
    """The prompt segment for a checkout: `format` (default: the config's) rendered in `style`:
    plain, ansi, or ansi marked as zero-width for bash or zsh."""

    checkout: Checkout
    format: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    style: Literal["plain", "ansi", "bash", "zsh"] = "plain"


_Param = Annotated[str, msgspec.Meta(max_length=4000, pattern="^[^\x00]*$")]


class RunStart(_Request, tag="run_start", kw_only=True):
    """Run the workflow `workflow` of the checkout's repository or of the config, in the
    daemon; with `dry_run`, say what it would do instead."""

    checkout: Checkout | None = None
    project: _Project | None = None
    workflow: _Name
    params: dict[_Name, _Param] = {}
    dry_run: bool = False
    # A started deployment (DeployPlan) that this run carries out: the daemon records how it
    # ended when the run ends, even if the client has gone.
    deployment: Annotated[str, msgspec.Meta(max_length=36)] | None = None


class RunFollow(_Request, tag="run_follow", kw_only=True):
    """A run's events from number `after` on (its id, or a unique start or end of it); while it
    runs and has nothing new, wait up to `wait` seconds for something."""

    run: Annotated[str, msgspec.Meta(min_length=4, max_length=36)]
    after: Annotated[int, msgspec.Meta(ge=0)] = 0
    wait: Annotated[float, msgspec.Meta(ge=0, le=30)] = 0.0


class Runs(_Request, tag="runs", kw_only=True):
    """The newest workflow runs started on this machine."""

    project: _Project | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 20


class Metrics(_Request, tag="metrics"):
    """The daemon's counters and latency histograms; answered with MetricsReport."""


class Doctor(_Request, tag="doctor"):
    """Run the daemon's checks (config, tokens and what they may do, hub, state database,
    systemd); answered with DoctorReport."""


# A team event type that a plugin defines: `x.NAME.TYPE`, lower case (the `x.` keeps it apart
# from projctl's own types, present and future). Kept, synced and shown by `projctl log` like
# any event; never folded into state. ($(?!\n): Python's `$` also matches before a last "\n".)
PLUGIN_EVENT_TYPE = r"^x\.[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$(?!\n)"
_PluginName = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class RecordEvent(_Request, tag="record_event", kw_only=True):
    """Record a team event of a plugin-defined type `event_type` (`x.NAME.TYPE`) in the project
    of `project` or else of the checkout; answered Recorded. The payload holds JSON values
    only, and the whole event at most 64 KiB, as for every event."""

    checkout: Checkout | None = None
    project: _Project | None = None
    event_type: Annotated[str, msgspec.Meta(max_length=64, pattern=PLUGIN_EVENT_TYPE)]
    payload: dict[str, Any] = {}


class PluginRequest(_Request, tag="plugin_request", kw_only=True):
    """Ask daemon plugin `plugin` (its name in `projctl plugins`) for `name` with `args` (JSON
    values, at most 64 KiB): its projctl_request hook answers; answered PluginReply. `project`
    (else the checkout's, when it is in one) is handed to the hook."""

    checkout: Checkout | None = None
    project: _Project | None = None
    plugin: _PluginName
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    args: Any = None


class Reload(_Request, tag="reload"):
    """Read the config file and the environment file again and apply them; answered with
    Reloaded, or an Error (code `config`) that leaves the running config as it was."""


class Watch(_Request, tag="watch", kw_only=True):
    """Stream the status view as Status would write it (`output` json, text or short), one
    StatusOutput each time what it shows changes, ended by StreamEnd. The client never polls:
    the daemon pushes."""

    checkout: Checkout | None = None
    tickets_per_status: Annotated[int, msgspec.Meta(ge=1)] | None = None
    project: _Project | None = None
    output: Literal["json", "text", "short"] = "text"
    width: Annotated[int, msgspec.Meta(ge=20, le=1000)] = 80
    colours: bool = False
    links: bool = False
    home: Annotated[str, msgspec.Meta(max_length=4096)] = ""


class Wait(_Request, tag="wait", kw_only=True):
    """Stream WaitProgress until the CI (`what` ci) or the review (`what` review) of a change
    request (`url`), or of the checkout's branch, has an outcome, or `timeout` seconds pass;
    ended by StreamEnd. The daemon polls that source faster meanwhile."""

    what: Literal["ci", "review"]
    checkout: Checkout | None = None
    url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    timeout: Annotated[float, msgspec.Meta(gt=0, le=7 * 86400)] = 3600.0


class Inbox(_Request, tag="inbox", kw_only=True):
    """What needs me upstream: GitHub notifications and GitLab to-dos; answered InboxReport."""


class InboxDone(_Request, tag="inbox_done", kw_only=True):
    """Mark inbox item `id` (as InboxReport shows it, `UPSTREAM:ID`, or its ID alone when that
    is unique) read or done upstream; answered InboxReport."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Notifications(_Request, tag="notifications", kw_only=True):
    """What the daemon notified (or would have), newest first; answered NotificationsReport."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50


Request = (Ping | Status | Shutdown | Refresh | Note | BranchCreated | DeployStart
           | DeployFinish | Log | Sync | Prompt | Plugins | RunStart | RunFollow | Runs
           | Metrics | Doctor | Reload | RecordEvent | PluginRequest | DeployMark | Report
           | Watch | Wait | Inbox | InboxDone | Notifications)


class ConfigProblem(msgspec.Struct, kw_only=True):
    """The config (or the environment file) the daemon started with does not load: it serves
    the team's event log on `running` (the last config that loaded) and polls nothing."""

    path: str
    message: str
    suggestions: list[str] = []
    running: str = ""


class _Reply(msgspec.Struct, tag_field="type", kw_only=True):
    # Set on every reply while the daemon runs without its config (a start with a broken one).
    config_error: ConfigProblem | None = None


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

    `state` is one of failure, stuck, running, pending, manual, canceled, success, skipped,
    none. The counts are the upstream's own (every check, however many); `failing` names each
    failed one the daemon could read, `started_at` is when the oldest unfinished one started.
    """

    state: str
    url: str | None = None
    passed: int = 0
    failed: int = 0
    running: int = 0
    failing: list[str] = []
    pending: int = 0  # queued, waiting, or expected and not yet reported
    started_at: float | None = None


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
    reviewed: bool = False  # I have reviewed it, and it is still open
    conflicts: bool | None = None  # None: the upstream has not worked it out (yet)
    # The upstream's own word for what stands between it and a merge, lower case: GitHub's
    # mergeStateStatus (clean, blocked, behind, dirty, unstable, ...) or GitLab's
    # detailed_merge_status (mergeable, not_approved, ci_must_pass, conflict, ...).
    merge_status: str | None = None
    approvals_left: int | None = None  # GitLab, where approval rules exist
    approved_by: list[str] = []
    head: str | None = None  # the commit its source branch is at, as the upstream last said
    # The hub's team scope (GitLab): who is asked to review it and has not yet; each device
    # sets review_requested from it by its user's name (upstream/viahub.py).
    review_requested_from: list[str] = []


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
    started_at: float | None = None


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
    sprint: str | None = None  # the active (else the latest) sprint's name
    due: str | None = None  # YYYY-MM-DD


class SourceError(msgspec.Struct, kw_only=True):
    code: str
    message: str
    suggestions: list[str] = []


class SourceProblem(msgspec.Struct, kw_only=True):
    """One part of a source that could not be read at the last poll: a repository, a GitLab
    project, a query, or what an organisation's single sign-on hides. The rest was read."""

    part: str
    code: str
    message: str
    suggestions: list[str] = []


class SourceView(msgspec.Struct, kw_only=True):
    """How fresh one upstream instance's data is for a project, and why not if it is not.

    `upstream` names the instance (`github`, or a named one such as `ghe`), `kind` what it is
    (github, gitlab, jira, or plugin). Never fetched: `fetched_at` is None, and its lists are
    not known. Fetched with `problems`: partly fetched, each problem naming the part it costs.
    """

    upstream: str
    fetched_at: float | None = None
    attempted_at: float | None = None
    next_poll_at: float | None = None
    polling: bool = False
    stale: bool = False
    error: SourceError | None = None
    kind: str = ""
    host: str | None = None
    problems: list[SourceProblem] = []


class DeploymentView(msgspec.Struct, kw_only=True):
    """One deployment as the team's events tell it; `state` is running, completed or failed."""

    deployment: str
    environment: str
    state: str
    actor: str | None = None
    branch: str | None = None
    commit: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    exit_status: int | None = None
    reason: str | None = None


class ProjectView(msgspec.Struct, kw_only=True):
    name: str
    paths: list[str]
    checkouts: list[CheckoutView]
    change_requests: list[ChangeRequestView] = []
    pipelines: list[PipelineView] = []
    tickets: list[TicketView] = []
    ticket_counts: dict[str, int] = {}
    sources: list[SourceView] = []
    environments: list[str] = []
    deployments: list[DeploymentView] = []
    # For each list some source feeds (change_requests, pipelines, tickets): "complete" (every
    # source feeding it was fetched whole), "partial" (some part or source is missing) or
    # "unknown" (none was ever fetched: an empty list means nothing, not "none").
    known: dict[str, str] = {}


class SetAsideView(msgspec.Struct, kw_only=True):
    """Events of this device that the hub refused, for one reason in one project: they wait
    on this device, are tried again at `retry_at` (and at `projctl sync --now`)."""

    code: str
    message: str
    suggestions: list[str] = []
    project: str
    events: int
    since: float
    retry_at: float


class SyncProblem(msgspec.Struct, kw_only=True):
    """A pull of one project that failed while the others went on."""

    project: str
    code: str
    message: str
    suggestions: list[str] = []


class ClockView(msgspec.Struct, kw_only=True):
    """How this device's clock and the hub's compare. `device_ahead_s`: this clock against
    the hub's (negative: behind); `hub_behind_s`: the hub's against its devices', when the hub
    can tell; `problem` says which clock is wrong, when one is (codes device_clock, hub_clock,
    clock_disagreement)."""

    device_ahead_s: float
    hub_behind_s: float | None = None
    problem: SourceError | None = None


class SyncView(msgspec.Struct, kw_only=True):
    """Where the event sync stands. `hub` is None when none is configured (events stay local);
    `reachable` is None before the first attempt. `waiting` counts this device's events the hub
    does not hold, `refused` of them are set aside (`set_aside` says why); `notices` are what
    the sync found and did since `projctl sync` last showed them (a restored or new hub)."""

    hub: str | None
    device: str
    waiting: int
    reachable: bool | None = None
    syncing: bool = False
    last_attempt: float | None = None
    last_success: float | None = None
    next_attempt: float | None = None
    failures: int = 0
    error: SourceError | None = None
    pushed: int = 0
    pulled: int = 0
    refused: int = 0
    set_aside: list[SetAsideView] = []
    pull_errors: list[SyncProblem] = []
    notices: list[str] = []
    hub_id: str | None = None
    user: str | None = None
    clock: ClockView | None = None
    restamped: int = 0


class EventView(msgspec.Struct, kw_only=True):
    """One team event; `waiting` while this device's event has not reached the hub. `user` is
    who pushed it, as the hub says (None: not on the hub yet, or pulled before hubs said so);
    `actor` is only what the recording device called its user. `truncated`: the payload was
    cut to fit a reply (an event recorded before events were bounded)."""

    id: str
    device: str
    seq: int
    hlc: int
    project: str
    actor: str
    type: str
    payload: dict[str, Any]
    created_at: float
    mine: bool = False
    waiting: bool = False
    user: str | None = None
    truncated: bool = False


class BranchView(msgspec.Struct, kw_only=True):
    """The current checkout's branch upstream: its change request and its latest CI."""

    project: str
    branch: str
    change_request: ChangeRequestView | None = None
    pipeline: PipelineView | None = None
    # As ProjectView.known for change requests: with "unknown", no change request means
    # nothing yet, and with "partial" it may be in a part that could not be read.
    known: str = "complete"


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
    sync: SyncView | None = None
    # Lines that plugins add (their projctl_status_view hook), shown under the checkout.
    notices: list[str] = []
    # What needs me upstream (GitHub notifications, GitLab to-dos), newest first; `inbox_known`
    # as ProjectView.known, "" when no inbox is kept.
    inbox: list[InboxItemView] = []
    inbox_known: str = ""


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
    problems: list[SourceProblem] = []  # outcome ok, but these parts could not be read
    kind: str = ""  # as SourceView.kind


class RefreshReport(_Reply, tag="refresh"):
    results: list[PollResult]


class Recorded(_Reply, tag="recorded"):
    """An event stored on this device (it syncs in the background). `warning`: it was
    recorded, but does not do what was asked (an edit that another, later edit outranks)."""

    event: EventView
    sync: SyncView
    warning: str | None = None


class DeployPlan(_Reply, tag="deploy_plan"):
    """What `projctl deploy` runs: `command` (empty when none is configured) in `cwd`; with
    `started` the deployment.started event is recorded and `deployment` is its id."""

    project: str
    environment: str
    deployment: str
    branch: str | None
    commit: str | None
    command: list[str]
    cwd: str | None
    started: EventView | None = None
    # The project's `deploy` workflow, when it has one: run instead of `command`, with these
    # parameters (those of env, environment, branch, commit, deployment that it declares).
    workflow: str | None = None
    params: dict[str, str] = {}


class LogView(_Reply, tag="log"):
    """With a paged request, `next` is the cursor of the next page (None after the last)."""

    project: str
    events: list[EventView]
    sync: SyncView
    next: str | None = None


class SyncReport(_Reply, tag="sync"):
    sync: SyncView


class StatusOutput(_Reply, tag="status_output"):
    """The status view written out as the Status request asked (its `output`): UTF-8 text
    ending in a newline, ready to print as it is."""

    output: bytes


class Pong(_Reply, tag="pong"):
    daemon: DaemonInfo


class Ack(_Reply, tag="ack"):
    message: str


class PromptText(_Reply, tag="prompt_text"):
    """The prompt segment, ready to print; empty outside every configured project."""

    text: str


class PluginView(msgspec.Struct, kw_only=True):
    """One plugin. `source` is entry point, module or built-in; `version` its distribution's
    ("-" for a module named in the config); `loaded` is false when it failed to load (see
    `last_error`) or is `disabled` in the config."""

    name: str
    source: str
    target: str
    version: str
    loaded: bool
    disabled: bool = False
    hooks: list[str] = []
    errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None


class PluginsReport(_Reply, tag="plugins"):
    plugins: list[PluginView]


class PluginReply(_Reply, tag="plugin_reply"):
    """What a daemon plugin's request handler answered: JSON values, at most 256 KiB."""

    plugin: str
    name: str
    reply: Any = None


class Error(_Reply, tag="error"):
    """Any refusal. `suggestions` are what the user should type next."""

    code: str
    message: str
    context: dict[str, str] = {}
    suggestions: list[str] = []


class RunSummary(msgspec.Struct, kw_only=True):
    id: str
    project: str
    workflow: str
    started_at: float
    finished_at: float | None = None
    success: bool | None = None  # None: running, or ended when projctld stopped
    running: bool = False


class RunStarted(_Reply, tag="run_started"):
    run: RunSummary


class RunPlanView(_Reply, tag="run_plan"):
    """The dry run: per step, whether it would run (`would_run` true, false or null: cannot
    tell without running), why, and the command it would run."""

    project: str
    workflow: str
    source: str
    params: dict[str, Any]
    steps: list[dict[str, Any]]


class RunProgress(_Reply, tag="run_progress"):
    """Events `after` to `next` of a run, of `total` so far; see projctld/team/workflows/events.py
    for their shapes (each has `event`, `workflow` and `at`)."""

    run: RunSummary
    events: list[dict[str, Any]]
    next: int
    total: int
    running: bool
    success: bool | None = None


class RunsView(_Reply, tag="runs"):
    runs: list[RunSummary]


class LatencyView(msgspec.Struct, kw_only=True):
    """A latency histogram: `buckets[i]` requests took at most `latency_bounds[i]` seconds
    (and more than the bound before it); `over` took longer than the last bound. The quantiles
    are read off the histogram, so they are as fine as its buckets."""

    count: int = 0
    sum_s: float = 0.0
    max_s: float = 0.0
    buckets: list[int] = []
    over: int = 0
    p50_s: float = 0.0
    p90_s: float = 0.0
    p99_s: float = 0.0


class RequestMetric(msgspec.Struct, kw_only=True):
    """Requests of one type from one projctl command since the daemon started."""

    rpc: str
    command: str
    count: int
    errors: int
    latency: LatencyView


class RateLimitView(msgspec.Struct, kw_only=True):
    """One rate-limit budget of an upstream host, as its last response described it."""

    resource: str
    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None


class UpstreamMetric(msgspec.Struct, kw_only=True):
    """What one upstream has cost and how it answered since the daemon started."""

    upstream: str
    host: str
    requests: int
    conditional_hits: int
    retries: int
    errors: int
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    hold_until: float | None = None
    rate_limits: list[RateLimitView] = []


class DaemonMetric(msgspec.Struct, kw_only=True):
    version: str
    pid: int
    uptime_s: float
    rss_bytes: int
    peak_rss_bytes: int
    open_connections: int
    slow_requests: int
    slow_request_threshold_s: float


class MetricsReport(_Reply, tag="metrics"):
    daemon: DaemonMetric
    latency_bounds: list[float]
    requests: list[RequestMetric]
    upstreams: list[UpstreamMetric]
    sync: SyncView


class CheckView(msgspec.Struct, kw_only=True):
    """One check of `projctl doctor`. `fix` is the exact command or config edit that mends
    it, null when there is nothing to mend; `detail` never holds a token."""

    name: str
    status: Literal["ok", "warn", "fail", "skip"]
    detail: str
    fix: str | None = None


class DoctorReport(_Reply, tag="doctor"):
    checks: list[CheckView]


class DeliveryBucket(msgspec.Struct, kw_only=True):
    """One day (or week) of a period: deployments that completed, failures (failed, or marked
    as causing a failure), and the medians of lead time and of time to restore, in seconds."""

    start: float
    end: float
    deployments: int = 0
    failures: int = 0
    lead_time: float | None = None
    restore_time: float | None = None
    failed: int = 0  # of the failures, those that failed (the rest: marked)


class DeliveryPeriod(msgspec.Struct, kw_only=True):
    """DORA's four keys over [start, end) (docs/metrics.md). `deployments` completed there,
    `failed` failed, `marked` of the completed ones were marked as causing a failure;
    `change_failure_rate` is (failed + marked) / (deployments + failed), None without any;
    `lead_time` the median from commit to completed deployment over the `lead_times`
    deployments whose commit time is known; `restore_time` the median from a failure to the
    next completed deployment of its environment, over the `restored` failures (`unrestored`:
    not restored yet). Times in seconds; a median is None when there is nothing to take it of."""

    start: float
    end: float
    deployments: int = 0
    failed: int = 0
    marked: int = 0
    per_day: float = 0.0
    change_failure_rate: float | None = None
    lead_time: float | None = None
    lead_times: int = 0
    restore_time: float | None = None
    restored: int = 0
    unrestored: int = 0
    buckets: list[DeliveryBucket] = []


class DeliveryReport(_Reply, tag="delivery", kw_only=True):
    """`projctl report` (and the hub's /v1/metrics): `current` is the `days` before
    `generated_at`, `previous` the `days` before those; `environment` None covers all."""

    project: str
    environment: str | None = None
    days: float
    generated_at: float
    current: DeliveryPeriod
    previous: DeliveryPeriod
    environments: list[str] = []


class Reloaded(_Reply, tag="reloaded"):
    """A reload that applied the config: `applied` names the sections that changed and took
    effect; `restart_needed` the changed keys that only `projctl daemon restart` applies."""

    config_path: str
    applied: list[str] = []
    restart_needed: list[str] = []


class InboxItemView(msgspec.Struct, kw_only=True):
    """One GitHub notification thread or GitLab to-do. `id` is `UPSTREAM:ID`; `reason` the
    upstream's own word (GitHub: review_requested, mention, assign, ci_activity, ...; GitLab:
    review_requested, mentioned, assigned, build_failed, ...)."""

    id: str
    upstream: str
    kind: str  # github or gitlab
    reason: str
    title: str
    subject: str  # PullRequest, Issue, MergeRequest, CheckSuite, ...
    repo: str
    url: str | None = None
    author: str | None = None
    updated_at: float


class InboxSourceView(msgspec.Struct, kw_only=True):
    """How fresh one upstream's inbox is. Never fetched: `fetched_at` is None and its items
    are not known; with `error`, the items are the last that were read."""

    upstream: str
    fetched_at: float | None = None
    attempted_at: float | None = None
    next_poll_at: float | None = None
    poll_interval: float | None = None  # GitHub's X-Poll-Interval, when it said one
    error: SourceError | None = None


class InboxReport(_Reply, tag="inbox", kw_only=True):
    """`known`: "complete", "partial" (an upstream could not be read) or "unknown" (none was
    ever read: no items means nothing, not "none"); `done` names the item just marked."""

    items: list[InboxItemView]
    sources: list[InboxSourceView]
    known: str
    done: InboxItemView | None = None


class NotificationView(msgspec.Struct, kw_only=True):
    """One desktop notification: `kinds` of the transitions it tells (one, or several grouped),
    `shown` whether the desktop took it, else `why_not` (no session bus, quiet hours, the rate
    bound, switched off, ...)."""

    id: int
    at: float
    project: str
    kinds: list[str]
    title: str
    body: str
    url: str | None = None
    shown: bool
    why_not: str | None = None


class NotificationsReport(_Reply, tag="notifications", kw_only=True):
    notifications: list[NotificationView]
    desktop: str  # what delivery is possible: "dbus", "none (no session bus)", "disabled", ...


class WaitProgress(_Reply, tag="wait_progress", kw_only=True):
    """Where a wait stands. `outcome` is None until it is decided, then passed, failed,
    approved, changes_requested, closed or timeout. `state` is the CI state or the review
    decision now; `known` is "complete", "partial" or "unknown" (never fetched) as in views."""

    what: str
    target: str  # acme/web#42, or the branch
    url: str | None = None
    state: str
    known: str = "complete"
    outcome: str | None = None
    failing: list[str] = []
    ci_url: str | None = None
    note: str | None = None
    fetched_at: float | None = None


class StreamEnd(_Reply, tag="stream_end", kw_only=True):
    """The last frame of a stream: `reason` is "done", or "stopping" when the daemon stops
    (a client that waits connects again)."""

    reason: str = "done"


Reply = (StatusView | StatusOutput | Pong | Ack | RefreshReport | Recorded | DeployPlan
         | LogView | SyncReport | PromptText | PluginsReport | RunStarted | RunPlanView
         | RunProgress | RunsView | MetricsReport | DoctorReport | Reloaded | PluginReply
         | DeliveryReport | Error | InboxReport | NotificationsReport | WaitProgress
         | StreamEnd)
