"""The team-event requests: notes, branches, deployments, plugins' events and the log, on top of
the journal."""

from __future__ import annotations

import difflib
import math
import shlex
from typing import Any

import msgspec

from projctl_client.protocol import (
    Ack,
    BranchCreated,
    Checkout,
    DeployFinish,
    DeployMark,
    DeployPlan,
    DeployStart,
    EventView,
    Log,
    LogView,
    Note,
    Recorded,
    RecordEvent,
)
from projctld.daemon.context import DaemonContext
from projctld.errors import ProjctlError
from projctld.team.sync import events, hlc
from projctld.team.sync.events import Event
from projctld.team.sync.wire import MAX_EVENT
from projctld.team.workflows import Workflow
from projctld.upstream.polling import branch_upstream

# Seconds: the latest time an event can be stamped with (events.Timestamp).
_LATEST = 1e11
# The payloads of one page of `projctl log` stop growing here: a quarter of the RPC frame, so
# that with their other fields (an event's are bounded too) the reply stays far inside it.
LOG_PAGE_BYTES = 256 << 10
_encode = msgspec.msgpack.Encoder().encode


def note(ctx: DaemonContext, request: Note) -> Recorded:
    project = resolve_project(ctx, request.project, request.checkout, "note")
    store = ctx.journal.store
    if request.edit is None:
        event = ctx.journal.record(project, "note.added", events.NoteAdded(
            note=events.uuid7(), text=request.text))
        return _recorded(ctx, event)
    note_id = _find_note(ctx, project, request.edit)
    # Stamped after the text it replaces, so that it wins here at once, whatever this clock.
    event = ctx.journal.record(project, "note.edited", events.NoteAdded(
        note=note_id, text=request.text), after_hlc=store.note_write_hlc(project, note_id))
    reply = _recorded(ctx, event)
    if store.note_text(project, note_id) != request.text:
        reply.warning = ("the edit is recorded, but the note shows another text: an edit "
                         "stamped later by another device outranks it (a clock far ahead)")
    return reply


def record_event(ctx: DaemonContext, request: RecordEvent) -> Recorded:
    """A team event of a plugin's own type (x.NAME.TYPE): kept, synced and shown by `log` like
    any other, never folded into state (fold.py does not know it)."""
    project = resolve_project(ctx, request.project, request.checkout, "call event")
    if not events.json_only(request.payload):
        raise ProjctlError(
            f"cannot record this {request.event_type} event: its payload holds a value JSON cannot "
            "carry (binary, an extension type, a non-string key, NaN, an infinity or an "
            "integer beyond 64 bits), which no hub would take", code="bad_request",
            suggestions=["keep payloads to strings, numbers, booleans, null, arrays and "
                         "objects"])
    return _recorded(ctx, ctx.journal.record(project, request.event_type, request.payload))


def branch_created(ctx: DaemonContext, request: BranchCreated) -> Recorded | Ack:
    project = resolve_project(ctx, request.project, request.checkout, "branch create")
    if request.dry_run:
        return Ack(message=project)
    return _recorded(ctx, ctx.journal.record(project, "branch.created", events.BranchCreated(
        name=request.name, base=request.base, commit=request.commit)))


async def deploy_start(ctx: DaemonContext, request: DeployStart) -> DeployPlan:
    project = resolve_project(ctx, request.project, request.checkout, "deploy")
    config = ctx.config.projects[project]
    if request.environment not in config.environments:
        # The closest name first (prod: production), else the first one configured.
        closest = [name for name in config.environments
                   if name.startswith(request.environment)] or difflib.get_close_matches(
            request.environment, config.environments, n=1, cutoff=0.5) or \
            config.environments[:1]
        raise ProjctlError(
            f"{project} has no environment {request.environment!r} "
            f"(it has: {', '.join(config.environments)})",
            code="unknown_environment",
            suggestions=[f"projctl deploy {closest[0]}", _where_to_add(
                ctx, f"add it to environments in [projects.{project}] of {ctx.config_path}")],
        )
    await _check_with_plugins(ctx, project, request)
    here = request.checkout
    in_project = here is not None and ctx.knowledge.project_of(here.root) == project
    started = events.DeploymentStarted(
        deployment=events.uuid7(), environment=request.environment, branch=request.branch,
        commit=request.commit, command=shlex.split(config.deploy),
        commit_time=request.commit_time, change_request=_change_request(ctx, project,
                                                                        request.branch))
    # Looked up before anything is recorded: a broken workflow file stops the deployment.
    workflow = ctx.runs.workflows(here.root if in_project and here else None).get("deploy")
    event = None if request.dry_run else ctx.journal.record(project, "deployment.started",
                                                             started)
    return DeployPlan(
        project=project, environment=request.environment, deployment=started.deployment,
        branch=request.branch, commit=request.commit, command=started.command,
        cwd=here.root if in_project and here else (config.paths[0] if config.paths else None),
        started=None if event is None else _event_view(ctx, event, ctx.journal.store.hub_user),
        workflow=workflow.name if workflow else None,
        params=_deploy_params(workflow, request, started.deployment) if workflow else {},
    )


def _change_request(ctx: DaemonContext, project: str, branch: str | None) -> str | None:
    """The change request (`acme/web#42`) the deployed branch belongs to, as the last poll of
    the project's upstreams found it; None when the branch has none known (or is the one
    every change request targets, which no single change request stands for)."""
    if branch is None:
        return None
    sources = [source for (name, _), source in ctx.poller.sources.items() if name == project]
    change_request, _ = branch_upstream(branch, sources)
    return change_request.ref if change_request is not None else None


def _deploy_params(workflow: Workflow, request: DeployStart, deployment: str) -> dict[str, str]:
    """What a deploy workflow is told, for each of these parameters that it declares."""
    known = {"env": request.environment, "environment": request.environment,
             "branch": request.branch, "commit": request.commit, "deployment": deployment}
    return {name: value for name, value in known.items()
            if name in workflow.params and value is not None}


async def _check_with_plugins(ctx: DaemonContext, project: str, request: DeployStart) -> None:
    """Plugins may refuse a deployment (projctl_validate_deployment): then nothing is recorded."""
    refusals = await ctx.plugins.validate_deployment(
        project=project, environment=request.environment, branch=request.branch,
        commit=request.commit, actor=ctx.journal.actor, dry_run=request.dry_run)
    if refusals:
        plugins = sorted({plugin for plugin, _ in refusals})
        raise ProjctlError(
            f"the deployment of {project} to {request.environment} was refused by "
            f"{'plugin' if len(plugins) == 1 else 'plugins'} {', '.join(plugins)}:\n"
            + "\n".join(f"  - {message}" + (f" ({plugin})" if len(plugins) > 1 else "")
                        for plugin, message in refusals)
            + "\nnothing was recorded or run",
            code="deployment_refused", context={"plugins": ", ".join(plugins)},
            suggestions=["do what the message says, then run projctl deploy again",
                         "projctl plugins  # the plugins and the hooks they implement"])


def deploy_finish(ctx: DaemonContext, request: DeployFinish) -> Recorded:
    if request.project not in ctx.config.projects:
        raise _unknown_project(ctx, request.project, "deploy")
    row = ctx.journal.store.deployment(request.project, request.deployment)
    if row is None or row.state != "running":
        raise ProjctlError(
            f"deployment {request.deployment} of {request.project} is "
            + ("unknown" if row is None else f"already {row.state}"),
            code="not_running", suggestions=[f"projctl log {request.project} --type deployment"])
    check_may_finish(ctx, request.project, request.deployment)
    kind = "deployment.completed" if request.exit_status == 0 else "deployment.failed"
    return _recorded(ctx, ctx.journal.record(request.project, kind, events.DeploymentFinished(
        deployment=request.deployment, environment=row.environment, duration=request.duration,
        exit_status=request.exit_status, reason=request.reason)))


def deploy_mark(ctx: DaemonContext, request: DeployMark) -> Recorded:
    """Record that a completed deployment caused a failure (or, taken back, that it did not):
    anyone who may write the project may say so; the latest mark stands."""
    project = resolve_project(ctx, request.project, request.checkout, "mark-failed")
    store = ctx.journal.store
    found = store.deployments_matching(project, request.deployment.lower())
    if len(found) != 1:
        problem = "no deployment" if not found else f"{len(found)} deployments"
        raise ProjctlError(
            f"{problem} of {project} with an id starting or ending {request.deployment!r}",
            code="unknown_deployment",
            suggestions=[f"projctl log {project} --type deployment  # shows deployment ids"])
    row = store.deployment(project, found[0])
    assert row is not None
    if row.state != "completed":
        why = "it still runs" if row.state == "running" else \
            "it failed, and so already counts as a failure"
        raise ProjctlError(
            f"deployment {row.deployment} of {project} to {row.environment} cannot be marked: "
            f"{why}", code="not_completed",
            suggestions=[f"projctl log {project} --type deployment"])
    return _recorded(ctx, ctx.journal.record(project, "deployment.marked", events.DeploymentMarked(
        deployment=row.deployment, environment=row.environment,
        caused_failure=request.caused_failure, reason=request.reason)))


def check_may_finish(ctx: DaemonContext, project: str, deployment: str) -> None:
    """Refuse to end a deployment this device's user did not start, on another device: the
    fold would not let such an end count (team/sync/fold.py), so it is not recorded."""
    store = ctx.journal.store
    device, user = store.started_by(project, deployment)
    if device is None or device == store.device or (user is not None
                                                    and user == store.hub_user):
        return
    who = user or "another user"
    raise ProjctlError(
        f"deployment {deployment} of {project} was started by {who} on device {device[:8]}: "
        "only that user, or that device, may say how it ended",
        code="not_yours",
        suggestions=[f"ask {who} to end it from their machine",
                     f"projctl log {project} --type deployment"])


def log(ctx: DaemonContext, request: Log) -> LogView:
    project = resolve_project(ctx, request.project, request.checkout, "log")
    since = 0 if request.since is None else hlc.pack(_milliseconds(request.since))
    after = None if request.cursor is None else _parse_cursor(request.cursor)
    types = [_event_type(kind) for kind in request.types]
    found, users, more = ctx.journal.store.history(
        project, since_hlc=since, types=types, limit=request.limit, after=after,
        # A reply of one page stays well inside the frame, whatever the events hold.
        max_bytes=LOG_PAGE_BYTES if request.paged else None)
    views = [_event_view(ctx, e, user) for e, user in zip(found, users, strict=True)]
    next_page = None
    if request.paged and more:
        last = found[-1]
        next_page = f"{last.hlc}:{last.device}:{last.seq}"
    return LogView(project=project, events=views, sync=ctx.runner.view(), next=next_page)


def _parse_cursor(cursor: str) -> tuple[int, str, int]:
    try:
        hlc_text, device, seq_text = cursor.split(":")
        return int(hlc_text), device, int(seq_text)
    except ValueError:
        raise ProjctlError(f"the log cursor {cursor!r} is not one this daemon gave",
                           code="bad_request",
                           suggestions=["projctl log  # starts again from the newest"]) from None


def _event_type(asked: str) -> str:
    """A type or family as `log --type` takes it: a whole type (note.added), a family
    (deployment), or any start of one that fits a single family or type (deploy, dep, note.e).
    Anything else is taken as it is: a type of a plugin's or of a newer projctl matches only
    itself."""
    known = sorted(events.PAYLOADS)
    families = sorted({kind.split(".")[0] for kind in known})
    if asked in known or asked in families:
        return asked
    matches = [family for family in families if family.startswith(asked)] or \
        [kind for kind in known if kind.startswith(asked)]
    return matches[0] if len(matches) == 1 else asked


def _milliseconds(since: float) -> int:
    """Log's `since` (Unix seconds, any float the protocol lets through) as HLC milliseconds:
    before 1970 is 1970, and past the latest time an event may carry is that time (unclamped, a
    huge or infinite one overflowed SQLite's integers and failed the request)."""
    if math.isnan(since):
        raise ProjctlError("`since` is not a number", code="bad_request",
                           suggestions=["projctl log --since 2d"])
    return int(min(max(since, 0.0), _LATEST) * 1000)


def resolve_project(ctx: DaemonContext, explicit: str | None, here: Checkout | None,
                    command: str) -> str:
    """The project a command acts on: the one named, else the one of the current checkout."""
    if explicit is not None:
        if explicit not in ctx.config.projects:
            raise _unknown_project(ctx, explicit, command)
        return explicit
    project = ctx.knowledge.project_of(here.root) if here is not None else None
    if project is None:
        where = f"{here.root} is not in" if here is not None else "this directory is not in"
        example = next(iter(ctx.config.projects), "NAME")
        raise ProjctlError(
            f"{where} a configured project, so projctl cannot tell which project this is for",
            code="no_project",
            suggestions=[_with_project(command, example), _where_to_add(
                ctx, f"add the directory to paths in [projects.{example}] of "
                     f"{ctx.config_path}")],
        )
    return project


def _unknown_project(ctx: DaemonContext, name: str, command: str) -> ProjctlError:
    known = ", ".join(ctx.config.projects) or "none yet"
    return ProjctlError(
        f"no project named {name!r} (configured: {known})", code="unknown_project",
        suggestions=[_where_to_add(ctx, f"add [projects.{name}] to {ctx.config_path}"),
                     f"{_with_project(command, 'NAME')}  # one of the configured projects"])


def _with_project(command: str, project: str) -> str:
    """`command` as the user would type it for `project`: `projctl call` takes it as a key of
    its JSON arguments, the other commands as --project."""
    if command.startswith("call "):
        return f"projctl {command} '{{\"project\": \"{project}\", ...}}'"
    return f"projctl {command} --project {project} ..."


def _where_to_add(ctx: DaemonContext, advice: str) -> str:
    """Advice to change the config, or, in the demo (whose config is built in), where that
    change belongs instead."""
    if ctx.sandbox:
        return "the demo's projects are built in; in your own config (`projctl config path`) " \
            "it would be: " + advice.split(" of ")[0].split(" to ")[0]
    return advice


def _find_note(ctx: DaemonContext, project: str, fragment: str) -> str:
    found = ctx.journal.store.notes_matching(project, fragment.lower())
    if len(found) == 1:
        return found[0]
    problem = "no note" if not found else f"{len(found)} notes"
    raise ProjctlError(f"{problem} of {project} with an id starting or ending {fragment!r}",
                       code="unknown_note",
                       suggestions=[f"projctl log {project} --type note  # shows note ids"])


def _recorded(ctx: DaemonContext, event: Event) -> Recorded:
    return Recorded(event=_event_view(ctx, event, ctx.journal.store.hub_user),
                    sync=ctx.runner.view())


def _event_view(ctx: DaemonContext, event: Event, user: str | None = None) -> EventView:
    store = ctx.journal.store
    mine = event.device == store.device
    payload, truncated = _bounded(event.payload)
    return EventView(
        id=event.id, device=event.device, seq=event.seq, hlc=event.hlc, project=event.project,
        actor=event.actor, type=event.type, payload=payload, created_at=event.created_at,
        mine=mine, waiting=mine and store.is_waiting(event.seq), user=user,
        truncated=truncated,
    )


def _bounded(payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The payload, or, when it is larger than an event may be (recorded before events were
    bounded), its first MAX_EVENT bytes' worth: strings cut, deep or long parts left out."""
    if len(_encode(payload)) <= MAX_EVENT:
        return payload, False
    budget = [MAX_EVENT // 2]

    def cut(value: Any, depth: int) -> Any:
        if budget[0] <= 0 or depth > 8:
            return "…"
        if isinstance(value, str):
            text = value[:max(0, budget[0] // 4)]
            budget[0] -= len(text) * 4 + 8
            return text + ("…" if len(text) < len(value) else "")
        budget[0] -= 8
        if isinstance(value, dict):
            return {str(k)[:64]: cut(v, depth + 1) for k, v in list(value.items())[:256]}
        if isinstance(value, list):
            return [cut(v, depth + 1) for v in value[:256]]
        return value if isinstance(value, int | float | bool) or value is None else "…"

    return cut(payload, 0), True
