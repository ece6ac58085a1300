"""The team-event requests: notes, branches, deployments and the log, on top of the journal."""

from __future__ import annotations

import difflib
import math
import shlex

from projctl_client.protocol import (
    Ack,
    BranchCreated,
    Checkout,
    DeployFinish,
    DeployPlan,
    DeployStart,
    EventView,
    Log,
    LogView,
    Note,
    Recorded,
)
from projctld.daemon.context import DaemonContext
from projctld.errors import ProjctlError
from projctld.team.sync import events, hlc
from projctld.team.sync.events import Event
from projctld.team.workflows import Workflow

# Seconds: the latest time an event can be stamped with (events.Timestamp).
_LATEST = 1e11


def note(ctx: DaemonContext, request: Note) -> Recorded:
    project = resolve_project(ctx, request.project, request.checkout, "note")
    if request.edit is None:
        note_id = events.uuid7()
        kind = "note.added"
    else:
        note_id = _find_note(ctx, project, request.edit)
        kind = "note.edited"
    return _recorded(ctx, ctx.journal.record(
        project, kind, events.NoteAdded(note=note_id, text=request.text)))


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
        commit=request.commit, command=shlex.split(config.deploy))
    # Looked up before anything is recorded: a broken workflow file stops the deployment.
    workflow = ctx.runs.workflows(here.root if in_project and here else None).get("deploy")
    event = None if request.dry_run else ctx.journal.record(project, "deployment.started",
                                                             started)
    return DeployPlan(
        project=project, environment=request.environment, deployment=started.deployment,
        branch=request.branch, commit=request.commit, command=started.command,
        cwd=here.root if in_project and here else (config.paths[0] if config.paths else None),
        started=None if event is None else _event_view(ctx, event),
        workflow=workflow.name if workflow else None,
        params=_deploy_params(workflow, request, started.deployment) if workflow else {},
    )


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
    kind = "deployment.completed" if request.exit_status == 0 else "deployment.failed"
    return _recorded(ctx, ctx.journal.record(request.project, kind, events.DeploymentFinished(
        deployment=request.deployment, environment=row.environment, duration=request.duration,
        exit_status=request.exit_status, reason=request.reason)))


def log(ctx: DaemonContext, request: Log) -> LogView:
    project = resolve_project(ctx, request.project, request.checkout, "log")
    since = 0 if request.since is None else hlc.pack(_milliseconds(request.since))
    types = [_event_type(kind) for kind in request.types]
    found = ctx.journal.store.history(project, since_hlc=since, types=types,
                                      limit=request.limit)
    return LogView(project=project, events=[_event_view(ctx, e) for e in found],
                   sync=ctx.runner.view())


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
            suggestions=[f"projctl {command} --project {example} ...", _where_to_add(
                ctx, f"add the directory to paths in [projects.{example}] of "
                     f"{ctx.config_path}")],
        )
    return project


def _unknown_project(ctx: DaemonContext, name: str, command: str) -> ProjctlError:
    known = ", ".join(ctx.config.projects) or "none yet"
    return ProjctlError(
        f"no project named {name!r} (configured: {known})", code="unknown_project",
        suggestions=[_where_to_add(ctx, f"add [projects.{name}] to {ctx.config_path}"),
                     f"projctl {command} --project NAME  # one of the configured projects"])


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
    return Recorded(event=_event_view(ctx, event), sync=ctx.runner.view())


def _event_view(ctx: DaemonContext, event: Event) -> EventView:
    store = ctx.journal.store
    mine = event.device == store.device
    return EventView(
        id=event.id, device=event.device, seq=event.seq, hlc=event.hlc, project=event.project,
        actor=event.actor, type=event.type, payload=event.payload, created_at=event.created_at,
        mine=mine, waiting=mine and store.is_waiting(event.seq),
    )

