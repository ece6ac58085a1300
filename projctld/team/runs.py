"""Workflow runs in the daemon: started for a client, outliving it, followed live, recorded.

A run belongs to the daemon's task group, not to the connection that asked for it, so a client
that goes away (Ctrl-C, a closed terminal) leaves it running; `projctl runs show ID` follows it
again. Every progress event is kept in memory while the run lives and saved with the run
(store/runs.py); its start, each step's outcome and its end also go to the team event log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import msgspec
from anyio.abc import TaskGroup

from projctld.errors import ProjctlError
from projctld.logging import get_logger
from projctld.store.runs import RunRow, RunTable
from projctld.team.sync import events as team_events
from projctld.team.sync.journal import Journal
from projctld.team.workflows import (
    GitFacts,
    StepFinished,
    StepSkipped,
    Workflow,
    WorkflowEvent,
    WorkflowFinished,
    WorkflowStarted,
    load_directory,
    run_workflow,
)

log = get_logger(__name__)

# Output lines kept per run for following and replaying; past that they are counted only
# (each step's last lines are in its step.finished event anyway).
MAX_OUTPUT_EVENTS = 5000
Internal = Callable[[list[str]], Awaitable[tuple[int, str]]]
Finished = Callable[[RunRow], None]


@dataclass
class LiveRun:
    row: RunRow
    output_events: int = 0
    dropped_output: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)

    def add(self, event: dict) -> None:
        if event["event"] == "step.output":
            if self.output_events >= MAX_OUTPUT_EVENTS:
                self.dropped_output += 1
                return
            self.output_events += 1
        self.row.events.append(event)
        self.changed.set()
        self.changed = anyio.Event()


class Runs:
    def __init__(self, table: RunTable, journal: Journal,
                 config_workflows: dict[str, Workflow]) -> None:
        self._table = table
        self._journal = journal
        self._config_workflows = config_workflows
        self._live: dict[str, LiveRun] = {}
        self._tasks: TaskGroup | None = None
        # Told of every run that ends (desktop notifications).
        self.on_finished: Callable[[RunRow], None] = lambda row: None

    def configure(self, config_workflows: dict[str, Workflow]) -> None:
        """The config's workflows changed (a reload); runs under way go on as they started."""
        self._config_workflows = config_workflows

    def start(self, tasks: TaskGroup) -> None:
        """Runs outlive the request that started them: they run in `tasks`."""
        self._tasks = tasks

    def workflows(self, repository: str | None) -> dict[str, Workflow]:
        """The config's workflows, and the repository's `.projctl/workflows/`, which win."""
        found = dict(self._config_workflows)
        if repository is not None:
            found.update(load_directory(repository))
        return found

    def workflow(self, name: str, repository: str | None) -> Workflow:
        found = self.workflows(repository)
        if name not in found:
            known = ", ".join(sorted(found)) or "none"
            where = os.path.join(repository, ".projctl", "workflows") if repository \
                else "[workflows.NAME] in the config"
            raise ProjctlError(
                f"no workflow named {name!r} (known here: {known})", code="unknown_workflow",
                suggestions=[f"define it in {where}", "projctl runs  # the runs so far"])
        return found[name]

    def begin(self, *, project: str, workflow: Workflow, cwd: str,
              params: dict[str, str], git: GitFacts, internal: Internal,
              finished: Finished | None = None) -> RunRow:
        """Start a run in the background; return its row at once. `finished` is called with
        the row when the run has ended, however it ended."""
        assert self._tasks is not None, "Runs.start was not called"
        run_id = team_events.uuid7()
        live = LiveRun(RunRow(id=run_id, project=project, workflow=workflow.name,
                              started_at=time.time(), events=[]))
        self._live[run_id] = live
        self._save(live)
        self._tasks.start_soon(self._run, live, workflow, cwd, params, git, internal, finished)
        return live.row

    def is_running(self, run_id: str) -> bool:
        return run_id in self._live

    async def _run(self, live: LiveRun, workflow: Workflow, cwd: str,
                   params: dict[str, str], git: GitFacts, internal: Internal,
                   finished: Finished | None) -> None:
        async def on_event(event: WorkflowEvent) -> None:
            live.add(msgspec.to_builtins(event))
            self._record(live.row, event)

        try:
            result = await run_workflow(workflow, cwd=cwd, params=params, git=git,
                                        internal=internal, on_event=on_event)
            live.row.success = result.success
        except ProjctlError as exc:  # parameters that do not fit, a missing directory
            live.add({"event": "workflow.failed", "workflow": workflow.name, "at": time.time(),
                      "message": exc.message, "suggestions": exc.suggestions})
            live.row.success = False
        except Exception:  # a bug: the run fails, the daemon goes on
            log.exception("workflow_run_failed", run=live.row.id)
            live.add({"event": "workflow.failed", "workflow": workflow.name, "at": time.time(),
                      "message": "projctld failed while running this workflow; its log has "
                      "the details", "suggestions": []})
            live.row.success = False
        finally:
            live.row.finished_at = time.time()
            if live.dropped_output:
                live.row.events.append({"event": "output.dropped", "workflow": workflow.name,
                                        "at": time.time(), "lines": live.dropped_output})
            self._save(live)
            del self._live[live.row.id]
            live.changed.set()
            self.on_finished(live.row)
            if finished is not None:
                try:
                    finished(live.row)
                except ProjctlError as exc:
                    log.warning("run_finish_not_recorded", run=live.row.id, error=exc.message)

    async def follow(self, run: str, after: int, wait: float) -> tuple[RunRow, bool]:
        """The run's row with its events; waits up to `wait` s for events past `after` while it
        runs. Also says whether the run is still going."""
        live = self._find_live(run)
        if live is None:
            return self._stored(run), False
        if len(live.row.events) <= after and wait > 0:
            with anyio.move_on_after(wait):
                await live.changed.wait()
        return live.row, live.row.finished_at is None

    def recent(self, limit: int, project: str | None) -> list[RunRow]:
        return self._table.recent(limit, project)

    def _find_live(self, run: str) -> LiveRun | None:
        matches = [live for run_id, live in self._live.items()
                   if run_id.startswith(run) or run_id.endswith(run)]
        return matches[0] if len(matches) == 1 else None

    def _stored(self, run: str) -> RunRow:
        found = self._table.find(run)
        if len(found) != 1:
            problem = "no run" if not found else "more than one run"
            raise ProjctlError(f"{problem} with an id starting or ending with {run!r}",
                               code="unknown_run",
                               suggestions=["projctl runs  # recent runs and their ids"])
        return found[0]

    def _save(self, live: LiveRun) -> None:
        try:
            self._table.save(live.row)
        except ProjctlError as exc:  # disk full: the run goes on, the record may be missing
            log.warning("run_save_failed", run=live.row.id, error=exc.message)

    def _record(self, row: RunRow, event: WorkflowEvent) -> None:
        """The run's outline in the team log: started, each step's outcome, finished."""
        match event:
            case WorkflowStarted():
                payload: msgspec.Struct = team_events.WorkflowRunStarted(
                    run=row.id, workflow=row.workflow,
                    params={k: str(v) for k, v in event.params.items()})
                kind = "workflow.started"
            case StepFinished() | StepSkipped():
                payload = team_events.WorkflowStepFinished(
                    run=row.id, step=event.step, skipped=isinstance(event, StepSkipped),
                    success=isinstance(event, StepFinished) and event.success,
                    exit_code=event.exit_code if isinstance(event, StepFinished) else None,
                    duration=event.duration if isinstance(event, StepFinished) else 0.0,
                    reason=event.reason[:team_events.MAX_TEXT])
                kind = "workflow.step"
            case WorkflowFinished():
                payload = team_events.WorkflowRunFinished(
                    run=row.id, workflow=row.workflow, success=event.success,
                    duration=event.duration)
                kind = "workflow.completed" if event.success else "workflow.failed"
            case _:  # output lines stay with the run, not in the team log
                return
        try:
            self._journal.record(row.project, kind, payload)
        except ProjctlError as exc:
            log.warning("run_event_not_recorded", run=row.id, error=exc.message)
