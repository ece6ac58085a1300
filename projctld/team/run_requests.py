"""The workflow requests: start a run (or plan it), follow one, list them; and the `projctl ...`
commands a workflow step may run inside the daemon."""

from __future__ import annotations

import shlex

import msgspec

from projctl_client.protocol import (
    Checkout,
    DeployFinish,
    Note,
    RunFollow,
    RunPlanView,
    RunProgress,
    Runs,
    RunStart,
    RunStarted,
    RunSummary,
    RunsView,
)
from projctld.daemon.context import DaemonContext
from projctld.errors import ProjctlError
from projctld.store.runs import RunRow
from projctld.team import records
from projctld.team.workflows import GitFacts, plan_workflow

# One follow reply carries at most this much of a run's events; the client asks again.
PAGE_BYTES = 256 * 1024
_encode = msgspec.msgpack.Encoder().encode
MAX_NOTE = 4000  # as protocol.Note allows


def start(ctx: DaemonContext, request: RunStart) -> RunStarted | RunPlanView:
    project = records.resolve_project(ctx, request.project, request.checkout, "run")
    cwd, repository, git = _where(ctx, project, request.checkout)
    workflow = ctx.runs.workflow(request.workflow, repository)
    # Planning checks the parameters, so a mistake is this request's error, not a failed run.
    plan = plan_workflow(workflow, params=request.params, git=git)
    if request.dry_run:
        return RunPlanView(project=project, workflow=workflow.name, source=workflow.source,
                           params=plan.params, steps=[msgspec.to_builtins(s) for s in plan.steps])
    deployment = request.deployment
    if deployment is not None:
        row = ctx.journal.store.deployment(project, deployment)
        if row is None or row.state != "running":
            raise ProjctlError(f"deployment {deployment} of {project} is not running",
                               code="not_running",
                               suggestions=[f"projctl log {project} --type deployment"])
        records.check_may_finish(ctx, project, deployment)

    def finished(run: RunRow) -> None:
        if deployment is not None:
            records.deploy_finish(ctx, DeployFinish(
                project=project, deployment=deployment,
                exit_status=0 if run.success else 1,
                duration=max(0.0, (run.finished_at or run.started_at) - run.started_at),
                reason="" if run.success else f"workflow {run.workflow} failed (run {run.id})"))

    row = ctx.runs.begin(project=project, workflow=workflow, cwd=cwd, params=request.params,
                         git=git, internal=lambda args: internal(ctx, project, args),
                         finished=finished)
    return RunStarted(run=summary(row, running=True))


async def follow(ctx: DaemonContext, request: RunFollow) -> RunProgress:
    row, running = await ctx.runs.follow(request.run, request.after, request.wait)
    events, size = [], 0
    for event in row.events[request.after:]:
        size += len(_encode(event))
        if events and size > PAGE_BYTES:
            break
        events.append(event)
    return RunProgress(run=summary(row, running), events=events,
                       next=request.after + len(events), total=len(row.events),
                       running=running, success=row.success)


def recent(ctx: DaemonContext, request: Runs) -> RunsView:
    return RunsView(runs=[summary(row, ctx.runs.is_running(row.id))
                          for row in ctx.runs.recent(request.limit, request.project)])


def summary(row: RunRow, running: bool) -> RunSummary:
    return RunSummary(id=row.id, project=row.project, workflow=row.workflow,
                      started_at=row.started_at, finished_at=row.finished_at,
                      success=row.success, running=running)


def _where(ctx: DaemonContext, project: str, here: Checkout | None
           ) -> tuple[str, str | None, GitFacts]:
    """Where a run of `project` happens: the checkout the client is in when it belongs to the
    project (its `.projctl/workflows/` count too), else the project's first path."""
    if here is not None and ctx.knowledge.project_of(here.root) == project:
        return here.root, here.root, GitFacts(root=here.root, branch=here.branch,
                                              commit_sha=here.head)
    paths = ctx.config.projects[project].paths
    if not paths:
        raise ProjctlError(
            f"project {project} has no paths, so there is nowhere to run its workflows",
            code="no_checkout",
            suggestions=["run it from a checkout of the project",
                         f"add paths to [projects.{project}] in {ctx.config_path}"])
    return paths[0], None, GitFacts(root=paths[0])


async def internal(ctx: DaemonContext, project: str, args: list[str]) -> tuple[int, str]:
    """`projctl note TEXT`, `projctl sync [--now]` and `projctl refresh` as workflow steps:
    served here, in the project of the run, without a process."""
    match args:
        case ["note", *words] if words and not words[0].startswith("-"):
            text = " ".join(words)
            if len(text) > MAX_NOTE or "\x00" in text:
                return 2, f"a note holds at most {MAX_NOTE} characters and no NUL"
            try:
                reply = records.note(ctx, Note(project=project, text=text))
            except ProjctlError as exc:
                return 1, exc.message
            return 0, f"noted in {project} ({reply.event.id[-8:]})"
        case ["sync", *rest] if rest in ([], ["--now"]):
            if rest:
                await ctx.runner.sync_now(30.0)
            view = ctx.runner.view()
            failed = view.error is not None and bool(rest)
            return (1 if failed else 0), (f"sync failed: {view.error.message}" if failed and
                                          view.error else f"{view.waiting} events waiting")
        case ["refresh"]:
            results = await ctx.poller.refresh(project, 60.0)
            lines = [f"{r.upstream}: {r.outcome}" + (f" ({r.error.message})" if r.error else "")
                     for r in results]
            return (1 if any(r.outcome != "ok" for r in results) else 0), "\n".join(lines)
    return 2, (f"`projctl {shlex.join(args)}` cannot run inside a workflow; these can: "
               "projctl note TEXT, projctl sync [--now], projctl refresh")
