"""One `match` over the request union: what each request does to the daemon and what it answers."""

from __future__ import annotations

import os
import time

from projctl_client.protocol import (
    Ack,
    BranchCreated,
    Checkout,
    DeployFinish,
    DeployMark,
    DeployStart,
    Doctor,
    Inbox,
    InboxDone,
    Log,
    Metrics,
    Note,
    Notifications,
    NotificationsReport,
    Ping,
    PluginReply,
    PluginRequest,
    Plugins,
    PluginsReport,
    Pong,
    Prompt,
    PromptText,
    RecordEvent,
    Refresh,
    RefreshReport,
    Reload,
    Reply,
    Report,
    Request,
    RunFollow,
    Runs,
    RunStart,
    Shutdown,
    Status,
    Sync,
    SyncReport,
    Wait,
    Watch,
)
from projctld.daemon import status_output, watch
from projctld.daemon.context import DaemonContext
from projctld.errors import ProjctlError
from projctld.ops import doctor
from projctld.prompt.format import Style, parse
from projctld.rpc.server import Stream
from projctld.team import records, reports, run_requests
from projctld.upstream.notify import wait
from projctld.upstream.notify.inbox import Inbox as InboxKeeper


class Handlers:
    def __init__(self, ctx: DaemonContext) -> None:
        self._ctx = ctx

    def now(self, request: Request) -> Reply | None:
        """The reply to `request` if it can be made without waiting, as most can (status
        among them); None sends the request to `__call__`, in a task of its own."""
        if self._ctx.plugins.hooks(request):
            return None
        _check_checkout(getattr(request, "checkout", None))
        return self._answer_now(request)

    async def __call__(self, request: Request) -> Reply | Stream:
        _check_checkout(getattr(request, "checkout", None))
        # Streams pass no plugin hooks: an after-hook sees one reply, and a stream has many.
        if isinstance(request, Watch):
            return watch.watch(self._ctx, request)
        if isinstance(request, Wait):
            return wait.wait(self._ctx, request)
        return await self._ctx.plugins.around_request(request, self._handle)

    async def _handle(self, request: Request) -> Reply:
        reply = self._answer_now(request)
        if reply is not None:
            return reply
        match request:
            case Status():
                # A view that plugins may change is written out afresh for each request.
                self._ctx.poller.touch()
                self._check_project(request)
                view = await self._ctx.plugins.status_view(self._ctx.status_views.get(
                    request.checkout, request.tickets_per_status))
                if request.output == "view":
                    return status_output.only(view, request.project)
                return status_output.write(view, request, self._ctx.config_error)
            case Refresh(project=project, wait=wait):
                self._ctx.poller.touch()
                if self._ctx.inbox is not None and project is None:
                    self._ctx.inbox.poll_now()
                return await self._refresh(project, wait)
            case DeployStart():
                return await records.deploy_start(self._ctx, request)
            case PluginRequest():  # the plugin's handler runs on a thread of its own
                return await self._plugin_request(request)
            case Sync(wait=wait):  # with now: the others were answered at once
                await self._ctx.runner.sync_now(wait)
                return self._sync_report()
            case RunFollow():
                return await run_requests.follow(self._ctx, request)
            case Doctor():
                return await doctor.report(self._ctx)
            case InboxDone(id=id):
                return await self._inbox().done(id)
            case Reload():
                if self._ctx.reload is None:
                    raise ProjctlError("the sandbox daemon runs built-in demo data: it has no "
                                       "config to reload", code="bad_request")
                return await self._ctx.reload()
        raise AssertionError(f"no handler for {type(request).__name__}")

    def _answer_now(self, request: Request) -> Reply | None:
        """The requests that never wait (each may write to the state database, which is
        quick), answered; None for those that may."""
        match request:
            case Ping():
                return Pong(daemon=self._ctx.info())
            case Status() if not self._ctx.plugins.transforms_status:
                return self._status(request)
            case Note():
                return records.note(self._ctx, request)
            case RecordEvent():
                return records.record_event(self._ctx, request)
            case BranchCreated():
                return records.branch_created(self._ctx, request)
            case DeployFinish():
                return records.deploy_finish(self._ctx, request)
            case DeployMark():
                return records.deploy_mark(self._ctx, request)
            case Report():
                return reports.report(self._ctx, request)
            case Log():
                return records.log(self._ctx, request)
            case Sync(now=False):
                return self._sync_report()
            case Prompt(checkout=checkout, format=fmt, style=style):
                return self._prompt(checkout, fmt, style)
            case RunStart():
                return run_requests.start(self._ctx, request)
            case Runs():
                return run_requests.recent(self._ctx, request)
            case Plugins():
                return PluginsReport(plugins=self._ctx.plugins.views())
            case Metrics():
                return self._ctx.metrics()
            case Shutdown():
                self._ctx.shutdown.set()
                return Ack(message="projctld is stopping")
            case Inbox():
                return self._inbox().report()
            case Notifications(limit=limit):
                return self._notifications(limit)
        return None

    def _inbox(self) -> InboxKeeper:
        if self._ctx.inbox is None:
            raise ProjctlError("this projctld keeps no inbox", code="no_inbox")
        return self._ctx.inbox

    def _notifications(self, limit: int) -> NotificationsReport:
        notifier = self._ctx.notifier
        if notifier is None:
            raise ProjctlError("this projctld sends no notifications", code="no_notifications")
        return NotificationsReport(notifications=notifier.recent(limit),
                                   desktop=notifier.available())

    def _sync_report(self) -> SyncReport:
        """`projctl sync`: the notices are shown here once, then let go."""
        runner = self._ctx.runner
        return SyncReport(sync=runner.view(notices=runner.take_notices()))

    def _status(self, request: Status) -> Reply:
        ctx = self._ctx
        ctx.poller.touch()
        self._check_project(request)
        views = ctx.status_views
        if request.output == "view":
            view = views.get(request.checkout, request.tickets_per_status)
            return status_output.only(view, request.project)
        problem = ctx.config_error
        return views.output(request.checkout, request.tickets_per_status,
                            status_output.key(request, problem),
                            lambda view: status_output.write(view, request, problem))

    def _check_project(self, request: Status) -> None:
        status_output.check_project(request.project, list(self._ctx.config.projects),
                                    self._ctx.config_path)

    async def _plugin_request(self, request: PluginRequest) -> PluginReply:
        """Ask a daemon plugin's request handler; the project is the one named, else the
        checkout's (None outside every project: a plugin may not need one)."""
        if request.project is not None:
            project = records.resolve_project(self._ctx, request.project, None, "call request")
        else:
            here = request.checkout
            project = self._ctx.knowledge.project_of(here.root) if here is not None else None
        reply = await self._ctx.plugins.request(request.plugin, request.name, request.args,
                                                project)
        return PluginReply(plugin=request.plugin, name=request.name, reply=reply)

    def _prompt(self, checkout: Checkout, fmt: str | None, style: Style) -> PromptText:
        ctx = self._ctx
        ctx.poller.touch()
        ctx.knowledge.observe(checkout, time.time())
        if not ctx.prompt_files.knows(checkout.root):
            ctx.prompt_files.wake()  # a checkout no prompt file covers yet
        template = parse(fmt) if fmt is not None else None
        return PromptText(text=ctx.segments.text(checkout.root, checkout.branch, style, template))

    async def _refresh(self, project: str | None, wait: float) -> RefreshReport:
        config = self._ctx.config
        broken = self._ctx.config_error
        if broken is not None:
            raise ProjctlError(f"polling is paused: the config does not load ({broken.message})",
                               code="config", suggestions=broken.suggestions,
                               context={"file": broken.path})
        if project is not None and project not in config.projects:
            known = ", ".join(config.projects) or "none yet"
            raise ProjctlError(
                f"no project named {project!r} (configured: {known})", code="unknown_project",
                suggestions=["projctl refresh  # every project",
                             f"add [projects.{project}] to {self._ctx.config_path}"],
            )
        if not any(key[0] == project or project is None for key in self._ctx.poller.sources):
            which = f"project {project!r} has" if project else "no project has"
            missing = "no github, gitlab or jira" if project else "github, gitlab or jira"
            raise ProjctlError(
                f"nothing to refresh: {which} {missing} configured",
                code="nothing_to_refresh",
                suggestions=[f"add github = [\"OWNER/NAME\"] to a [projects.NAME] table in "
                             f"{self._ctx.config_path}"],
            )
        return RefreshReport(results=await self._ctx.poller.refresh(project, wait))


def _check_checkout(checkout: Checkout | None) -> None:
    """Refuse a checkout root that is not a plain absolute path, as os.getcwd() gives it. The
    prompt files of a checkout go under its root's own path, so a `..` in it would write, and
    delete what stands in the way, outside their directory; a NUL made their writer raise and
    stop the daemon."""
    if checkout is not None and ("\x00" in checkout.root
                                 or os.path.normpath(checkout.root) != checkout.root):
        raise ProjctlError(
            f"the checkout root {checkout.root!r} is not a normalised absolute path",
            code="bad_request", suggestions=["run projctl from inside the checkout"])
