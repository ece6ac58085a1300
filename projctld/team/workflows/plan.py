"""The dry run: what a workflow would run with these parameters, running nothing."""

from __future__ import annotations

from collections.abc import Mapping

from projctld.team.workflows.conditions import UNKNOWN, ConditionError, evaluate, parse, truthy
from projctld.team.workflows.events import PlannedStep, WorkflowPlan
from projctld.team.workflows.model import GitFacts, Workflow
from projctld.team.workflows.runner import command_of, is_internal
from projctld.team.workflows.scope import Scope, resolve_params
from projctld.team.workflows.template import TemplateError

_SUCCEEDS = {"success": True, "failed": False, "skipped": False, "exit_code": 0,
             "output": UNKNOWN}
_SKIPPED = {"success": False, "failed": False, "skipped": True, "exit_code": None, "output": ""}
_FAILS = {"success": False, "failed": True, "skipped": False, "exit_code": None, "output": ""}
_UNKNOWN = dict.fromkeys(_SUCCEEDS, UNKNOWN)


def plan_workflow(workflow: Workflow, *, params: Mapping[str, object] | None = None,
                  git: GitFacts | None = None) -> WorkflowPlan:
    """Each step's resolved command and whether it would run, assuming that every step that
    runs succeeds (a step whose command cannot be resolved would fail). A condition that
    depends on what cannot be known before running (a step's output) leaves `would_run` None.
    WorkflowError when `params` do not fit the declared ones."""
    values = resolve_params(workflow, params or {})
    fields: dict[str, Mapping[str, object]] = {}
    scope = Scope(values, git or GitFacts(), fields)
    planned = []
    stopped_by: str | None = None
    for index, stage in enumerate(workflow.stages()):
        failing = None
        for step in stage:
            would_run, reason, problem = _decide(step.condition.strip(), scope, stopped_by)
            try:
                command: list[str] | None = command_of(step, scope)
            except TemplateError as exc:
                command, problem = None, problem or exc.message
            planned.append(PlannedStep(
                name=step.name, stage=index, would_run=would_run, reason=reason,
                command=command, internal=is_internal(step), problem=problem,
                timeout=step.timeout, retries=step.retries))
            if would_run is None:
                fields[step.name] = _UNKNOWN
            elif not would_run:
                fields[step.name] = _SKIPPED
            elif problem:
                fields[step.name] = _FAILS
                if not step.continue_on_error:
                    failing = failing or step.name
            else:
                fields[step.name] = _SUCCEEDS
        stopped_by = stopped_by or failing
    return WorkflowPlan(workflow=workflow.name, source=workflow.source, params=values,
                        steps=planned)


def _decide(condition: str, scope: Scope,
            stopped_by: str | None) -> tuple[bool | None, str, str]:
    """Whether the step would run, why, and the problem that would make it fail."""
    if stopped_by is not None:
        return False, f"not run: step {stopped_by!r} would fail", ""
    if not condition:
        return True, "no condition", ""
    try:
        value = evaluate(parse(condition), scope.resolve)
    except ConditionError as exc:
        return True, f"condition: {condition}", f"condition: {exc.message}"
    if value is UNKNOWN:
        return None, f"depends on how earlier steps go: {condition}", ""
    if truthy(value):
        return True, f"condition is true: {condition}", ""
    return False, f"condition is false: {condition}", ""
