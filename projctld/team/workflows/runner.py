"""Running a workflow: stages in order, the steps of a stage at once, retries, events."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping

import anyio

from projctld.errors import ProjctlError
from projctld.team.workflows import template
from projctld.team.workflows.conditions import UNKNOWN, ConditionError, evaluate, parse, truthy
from projctld.team.workflows.errors import WorkflowError
from projctld.team.workflows.events import (
    RunResult,
    StepFinished,
    StepOutput,
    StepResult,
    StepRetried,
    StepSkipped,
    StepStarted,
    WorkflowEvent,
    WorkflowFinished,
    WorkflowStarted,
)
from projctld.team.workflows.model import GitFacts, Step, Value, Workflow
from projctld.team.workflows.output import TAIL_LINES, LineSplitter, OutputTail
from projctld.team.workflows.process import KILL_GRACE, Exit, run_process
from projctld.team.workflows.scope import Scope, resolve_params
from projctld.team.workflows.template import TemplateError

# Serves a `projctl ...` step inside the daemon: gets the arguments after `projctl`, returns
# the exit code and the output.
Internal = Callable[[list[str]], Awaitable[tuple[int, str]]]
EventSink = Callable[[WorkflowEvent], Awaitable[None]]
SHELL = "/bin/sh"


async def run_workflow(workflow: Workflow, *, cwd: str, params: Mapping[str, object] | None = None,
                       git: GitFacts | None = None, env: Mapping[str, str] | None = None,
                       internal: Internal | None = None, on_event: EventSink | None = None,
                       kill_grace: float = KILL_GRACE, tail_lines: int = TAIL_LINES) -> RunResult:
    """Run `workflow` in `cwd` and return how each step went; see the package docstring.

    Raises WorkflowError, before anything runs, when `params` do not fit the declared ones or
    `cwd` is not a directory.
    Cancelling the caller's scope ends every running step's process tree before returning.
    """
    values = resolve_params(workflow, params or {})
    if not os.path.isdir(cwd):
        raise WorkflowError(f"cannot run workflow {workflow.name} in {cwd}: no such directory",
                            suggestions=["run it from a checkout that exists"],
                            context={"workflow": workflow.name, "cwd": cwd})
    run = _Run(workflow, cwd=cwd, params=values, git=git or GitFacts(),
               env={**os.environ, **(env or {})}, internal=internal, on_event=on_event,
               kill_grace=kill_grace, tail_lines=tail_lines)
    return await run.run()


class _Run:
    def __init__(self, workflow: Workflow, *, cwd: str, params: dict[str, Value], git: GitFacts,
                 env: dict[str, str], internal: Internal | None, on_event: EventSink | None,
                 kill_grace: float, tail_lines: int) -> None:
        self.workflow = workflow
        self.cwd = cwd
        self.fields: dict[str, dict[str, object]] = {}  # steps.NAME.* of finished steps
        self.scope = Scope(params, git, self.fields)
        self.env = env
        self.internal = internal
        self.on_event = on_event
        self.kill_grace = kill_grace
        self.tail_lines = tail_lines
        self.results: dict[str, StepResult] = {}

    async def emit(self, event: WorkflowEvent) -> None:
        if self.on_event is not None:
            await self.on_event(event)

    async def run(self) -> RunResult:
        workflow = self.workflow
        started = time.monotonic()
        stages = workflow.stages()
        await self.emit(WorkflowStarted(
            workflow=workflow.name, source=workflow.source, params=dict(self.scope.params),
            stages=[[step.name for step in stage] for stage in stages]))
        stopped_by: str | None = None
        for index, stage in enumerate(stages):
            if stopped_by is not None:
                for step in stage:
                    await self.skip(step, index, f"not run: step {stopped_by!r} failed")
                continue
            await self.run_stage(stage, index)
            stopped_by = next((step.name for step in stage if not step.continue_on_error
                               and self.results[step.name].status == "failed"), None)
        steps = [self.results[step.name] for step in workflow.steps]
        failed = [step.name for step in steps if step.status == "failed"]
        result = RunResult(workflow=workflow.name, success=stopped_by is None,
                           duration=time.monotonic() - started, steps=steps)
        await self.emit(WorkflowFinished(
            workflow=workflow.name, success=result.success, duration=result.duration,
            failed=failed, skipped=[step.name for step in steps if step.status == "skipped"]))
        return result

    async def run_stage(self, stage: list[Step], index: int) -> None:
        # Conditions see only earlier stages, so all of them can be decided before any starts.
        runnable = []
        for step in stage:
            try:
                go = not step.condition.strip() or self.decide(step.condition)
            except ConditionError as exc:
                await self.finish(step, index, StepResult(
                    name=step.name, status="failed", reason=f"condition: {exc.message}"))
                continue
            if go:
                runnable.append(step)
            else:
                await self.skip(step, index, f"condition is false: {step.condition.strip()}")
        async with anyio.create_task_group() as group:
            for step in runnable:
                group.start_soon(self.run_step, step, index)

    def decide(self, condition: str) -> bool:
        value = evaluate(parse(condition), self.scope.resolve)
        if value is UNKNOWN:  # the loader lets conditions name earlier steps only
            raise ConditionError("it names a step that has no result yet", 1)
        return truthy(value)

    async def skip(self, step: Step, index: int, reason: str) -> None:
        self.record(StepResult(name=step.name, status="skipped", reason=reason))
        await self.emit(StepSkipped(workflow=self.workflow.name, step=step.name, stage=index,
                                    reason=reason))

    async def run_step(self, step: Step, index: int) -> None:
        started = time.monotonic()
        try:
            argv = command_of(step, self.scope)
        except TemplateError as exc:
            await self.finish(step, index, StepResult(name=step.name, status="failed",
                                                      reason=exc.message))
            return
        internal = is_internal(step)
        attempts = 1 + step.retries
        for attempt in range(1, attempts + 1):
            tail = OutputTail(self.tail_lines)
            await self.emit(StepStarted(
                workflow=self.workflow.name, step=step.name, stage=index, attempt=attempt,
                attempts=attempts, command=argv, internal=internal))
            outcome = await self.attempt(step, argv, internal, attempt, tail)
            if outcome.exit_code == 0 or attempt == attempts:
                break
            delay = step.backoff(attempt)
            await self.emit(StepRetried(workflow=self.workflow.name, step=step.name,
                                        attempt=attempt, delay=delay, reason=outcome.reason))
            await anyio.sleep(delay)
        await self.finish(step, index, StepResult(
            name=step.name, status="succeeded" if outcome.exit_code == 0 else "failed",
            exit_code=outcome.exit_code, attempts=attempt, duration=time.monotonic() - started,
            reason=outcome.reason, output=tail.lines, dropped_lines=tail.dropped))

    async def attempt(self, step: Step, argv: list[str], internal: bool, attempt: int,
                      tail: OutputTail) -> Exit:
        async def on_line(line: str) -> None:
            tail.add(line)
            await self.emit(StepOutput(workflow=self.workflow.name, step=step.name,
                                       attempt=attempt, line=line))

        if internal:
            return await self.call_internal(step, argv[1:], on_line)
        env = {**self.env, "PROJCTL_WORKFLOW": self.workflow.name, "PROJCTL_STEP": step.name}
        return await run_process(argv, cwd=self.cwd, env=env, timeout=step.timeout,
                                 on_line=on_line, grace=self.kill_grace)

    async def call_internal(self, step: Step, args: list[str],
                            on_line: Callable[[str], Awaitable[None]]) -> Exit:
        if self.internal is None:
            return Exit(None, "`projctl` steps run inside projctld, and this run has no way to "
                              "serve them")
        with anyio.move_on_after(step.timeout) as deadline:
            try:
                code, output = await self.internal(args)
            except ProjctlError as exc:
                return Exit(None, exc.message)
        if deadline.cancelled_caught:
            return Exit(None, f"timed out after {step.timeout:g} s")
        lines = LineSplitter()
        for line in [*lines.feed(output.encode()), *lines.flush()]:
            await on_line(line)
        return Exit(code, f"exit status {code}" if code else "")

    async def finish(self, step: Step, index: int, result: StepResult) -> None:
        self.record(result)
        failed = result.status == "failed"
        await self.emit(StepFinished(
            workflow=self.workflow.name, step=step.name, stage=index, success=not failed,
            exit_code=result.exit_code, duration=result.duration, attempts=result.attempts,
            reason=result.reason, output=result.output, dropped_lines=result.dropped_lines,
            continued=failed and step.continue_on_error))

    def record(self, result: StepResult) -> None:
        self.results[result.name] = result
        self.fields[result.name] = result.fields()


def command_of(step: Step, scope: Scope) -> list[str]:
    """The step's command with its placeholders filled in: what runs (TemplateError if a value
    is missing)."""
    if isinstance(step.command, str):
        return [SHELL, "-c", template.render(step.command, scope.template_value, quote=True)]
    return [template.render(arg, scope.template_value) for arg in step.command]


def is_internal(step: Step) -> bool:
    """A `projctl ...` step (not a shell one) is served by the daemon, not spawned."""
    return not step.shell and step.command[0] == "projctl"
