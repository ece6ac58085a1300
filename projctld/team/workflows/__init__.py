"""The workflow engine: workflows defined in TOML or YAML, run as stages of steps, with events.

Defining. A workflow lives in REPOSITORY/.projctl/workflows/NAME.toml (or .yaml / .yml, which
need PyYAML) or in the daemon's config as [workflows.NAME]:

    description = "Check, then deploy"

    [params.env]                  # type: string (default), int or bool; inferred from default
    description = "where to deploy"
    default = "staging"           # or required = true

    [[steps]]
    name = "lint"
    command = ["ruff", "check", "."]
    group = "checks"              # consecutive steps of one group form one stage, run at once

    [[steps]]
    name = "tests"
    command = "pytest -q"         # a string is split like a shell would, but no shell runs
    group = "checks"
    timeout = 600                 # seconds; then the step's whole process tree is ended
    retries = 2                   # attempts = 1 + retries
    retry_delay = 1.0             # backoff: retry_delay * 2**(attempt - 1), at most 60 s

    [[steps]]
    name = "deploy"
    command = ["./deploy.sh", "{{ params.env }}", "--sha={{ git.commit_sha }}"]
    condition = 'steps.tests.success and params.env in ["staging", "production"]'

Everything is checked at load time: keys and types, conditions (syntax, names, kinds) and
placeholders. A WorkflowError names the file, the line and, where it can, the column.

Semantics.
- Stages run in file order. Each step without a group is a stage of its own; a maximal run of
  consecutive steps with the same `group` is one stage whose steps run concurrently. Using a
  group again after other steps is refused at load time, so file order is run order.
- A condition is evaluated when its stage starts; it may use the results of steps in earlier
  stages only (steps.NAME.success | failed | skipped | exit_code | output), params.NAME and
  git.branch | commit_sha | short_sha | root. False: the step is skipped (StepSkipped says why).
  The language (see conditions.py) is parsed by hand and never eval'ed.
- A step succeeds when it exits with status 0. When a step of a stage fails (after its retries),
  its siblings in that stage still finish, then every later stage is skipped and the workflow
  fails, unless that step has `continue_on_error = true`: then it is reported failed (and
  steps.NAME.failed is true, for a clean-up or notify step) but the workflow goes on and can
  still succeed. A step whose condition is false is skipped, which is not a failure.
- `command` is a list of arguments, or a string split into arguments with shlex. Placeholders
  ({{ params.NAME }}, {{ git.FIELD }}) are replaced inside the one argument they sit in, so a
  value never becomes several arguments or shell syntax. With `shell = true` the command is one
  string run by /bin/sh -c, and each value is shlex-quoted into it (so do not quote
  placeholders yourself). A value that is missing at run time fails that step.
- A step whose command's first word is literally `projctl` (not a shell step) is served by the
  `internal` callable given to run_workflow, with the arguments after `projctl`; anything else
  runs as a subprocess in `cwd`, in a session of its own, stdin closed, stdout and stderr merged,
  with PROJCTL_WORKFLOW and PROJCTL_STEP in its environment.
- Output is streamed as StepOutput events line by line (a line is cut after 4 KiB) and the last
  200 lines (64 KiB) are kept in StepFinished; `dropped_lines` counts the rest.
- A timeout, a cancellation, or the end of a step's main process ends its whole process group:
  SIGTERM, then SIGKILL after `kill_grace` seconds. Nothing is left running.
- Cancelling the caller's scope stops the run: running steps' trees are ended first, then the
  cancellation propagates; no WorkflowFinished is emitted (the canceller knows).

API (what the daemon calls):

    load_workflows(*, repository=None, config=None, config_path="") -> dict[str, Workflow]
        the config table's workflows and the repository's (which win on a name clash)
    load_file(path) -> Workflow;  load_directory(repository) -> dict[str, Workflow]
    load_table(table, *, path, text=None) -> dict[str, Workflow]
    await run_workflow(workflow, *, cwd, params=None, git=None, env=None, internal=None,
                       on_event=None, kill_grace=3.0, tail_lines=200) -> RunResult
        params: NAME -> value (strings are converted to the declared type);
        git: GitFacts(root=, branch=, commit_sha=);
        internal: async (args after `projctl`) -> (exit_code, output);
        on_event: async (WorkflowEvent) -> None, awaited in order (its slowness holds the step)
    plan_workflow(workflow, *, params=None, git=None) -> WorkflowPlan      (the dry run)

run_workflow and plan_workflow raise WorkflowError before running anything when the parameters
do not fit; step failures are never exceptions. Events (a msgspec tagged union on `event`,
each with `workflow` and `at`): WorkflowStarted, StepStarted, StepOutput, StepRetried,
StepSkipped, StepFinished, WorkflowFinished.
"""

from __future__ import annotations

from projctld.team.workflows.errors import WorkflowError
from projctld.team.workflows.events import (
    PlannedStep,
    RunResult,
    StepFinished,
    StepOutput,
    StepResult,
    StepRetried,
    StepSkipped,
    StepStarted,
    WorkflowEvent,
    WorkflowFinished,
    WorkflowPlan,
    WorkflowStarted,
)
from projctld.team.workflows.loader import (
    WORKFLOW_DIR,
    load_directory,
    load_file,
    load_table,
    load_workflows,
)
from projctld.team.workflows.model import GitFacts, Param, Step, Workflow
from projctld.team.workflows.plan import plan_workflow
from projctld.team.workflows.runner import EventSink, Internal, run_workflow

__all__ = [
    "WORKFLOW_DIR", "EventSink", "GitFacts", "Internal", "Param", "PlannedStep", "RunResult",
    "Step", "StepFinished", "StepOutput", "StepResult", "StepRetried", "StepSkipped",
    "StepStarted", "Workflow", "WorkflowError", "WorkflowEvent", "WorkflowFinished",
    "WorkflowPlan", "WorkflowStarted", "load_directory", "load_file", "load_table",
    "load_workflows", "plan_workflow", "run_workflow",
]
