"""What a run reports, as msgspec Structs: progress events, the result and the dry-run plan."""

from __future__ import annotations

import time
from typing import Literal

import msgspec

from projctld.team.workflows.model import Value


class _Event(msgspec.Struct, tag_field="event", frozen=True, kw_only=True):
    workflow: str
    at: float = msgspec.field(default_factory=time.time)  # wall clock, for the record


class WorkflowStarted(_Event, tag="workflow.started", kw_only=True):
    source: str
    params: dict[str, Value]
    stages: list[list[str]]  # step names, stage by stage


class StepStarted(_Event, tag="step.started", kw_only=True):
    step: str
    stage: int
    attempt: int  # 1-based
    attempts: int  # 1 + retries
    command: list[str]  # as run: the argument list, or ["/bin/sh", "-c", SCRIPT]
    internal: bool  # a `projctl ...` command, served in the daemon


class StepOutput(_Event, tag="step.output", kw_only=True):
    step: str
    attempt: int
    line: str  # stdout and stderr merged, without the newline; cut if very long


class StepRetried(_Event, tag="step.retried", kw_only=True):
    step: str
    attempt: int  # the attempt that failed
    delay: float  # seconds until the next one
    reason: str


class StepSkipped(_Event, tag="step.skipped", kw_only=True):
    step: str
    stage: int
    reason: str


class StepFinished(_Event, tag="step.finished", kw_only=True):
    step: str
    stage: int
    success: bool
    exit_code: int | None  # None: did not exit by itself (timed out, could not start)
    duration: float  # seconds, all attempts and delays included
    attempts: int
    reason: str  # why it failed; "" on success
    output: list[str]  # the last lines of the last attempt
    dropped_lines: int  # lines of that attempt not kept in `output`
    continued: bool = False  # failed, but continue_on_error let the workflow go on


class WorkflowFinished(_Event, tag="workflow.finished", kw_only=True):
    success: bool
    duration: float
    failed: list[str]  # steps that failed, continue_on_error ones included
    skipped: list[str]


WorkflowEvent = (WorkflowStarted | StepStarted | StepOutput | StepRetried | StepSkipped
                 | StepFinished | WorkflowFinished)


class StepResult(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    status: Literal["succeeded", "failed", "skipped"]
    exit_code: int | None = None
    attempts: int = 0
    duration: float = 0.0
    reason: str = ""  # why it failed or was skipped
    output: list[str] = []
    dropped_lines: int = 0

    def fields(self) -> dict[str, object]:
        """The steps.NAME.* values of conditions."""
        return {"success": self.status == "succeeded", "failed": self.status == "failed",
                "skipped": self.status == "skipped", "exit_code": self.exit_code,
                "output": "\n".join(self.output)}


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    workflow: str
    success: bool
    duration: float
    steps: list[StepResult]  # in definition order

    def step(self, name: str) -> StepResult:
        return next(step for step in self.steps if step.name == name)


class PlannedStep(msgspec.Struct, frozen=True, kw_only=True):
    """What the dry run says of one step: `would_run` is True, False, or None when its condition
    depends on what cannot be known without running (an earlier step's output)."""

    name: str
    stage: int
    would_run: bool | None
    reason: str  # the condition and how it came out, or why it cannot tell
    command: list[str] | None  # resolved; None when a value is missing (see `problem`)
    internal: bool
    problem: str = ""
    timeout: float | None = None
    retries: int = 0


class WorkflowPlan(msgspec.Struct, frozen=True, kw_only=True):
    workflow: str
    source: str
    params: dict[str, Value]
    steps: list[PlannedStep]
