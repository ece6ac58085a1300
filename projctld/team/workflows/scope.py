"""What names mean during a run: parameter values (checked and converted), git facts, results."""

from __future__ import annotations

from collections.abc import Mapping

from projctld.team.workflows.conditions import UNKNOWN
from projctld.team.workflows.errors import WorkflowError
from projctld.team.workflows.model import GIT_FIELDS, GitFacts, Param, Value, Workflow
from projctld.team.workflows.template import TemplateError

_KIND = {"string": "str", "int": "int", "bool": "bool"}
_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def param_kinds(param: Param) -> frozenset[str]:
    """The kinds of value a parameter can hold in a condition (null when it may be unset)."""
    kind = _KIND[param.type or "string"]
    unset = not param.required and param.default is None
    return frozenset({kind, "null"} if unset else {kind})


def resolve_params(workflow: Workflow, given: Mapping[str, object]) -> dict[str, Value]:
    """Every declared parameter's value: the given one (strings converted to the declared type),
    else its default; WorkflowError for an unknown or missing parameter or a malformed value."""
    unknown = sorted(set(given) - set(workflow.params))
    if unknown:
        declared = ", ".join(workflow.params) or "none"
        raise WorkflowError(
            f"workflow {workflow.name} has no parameter {unknown[0]!r} (declared: {declared})",
            code="unknown_param",
            suggestions=[f"declare it in [params.{unknown[0]}] of {workflow.source}"],
            context={"workflow": workflow.name, "param": unknown[0]})
    values: dict[str, Value] = {}
    for name, param in workflow.params.items():
        if name in given:
            values[name] = _convert(workflow, name, param, given[name])
        elif param.required:
            raise WorkflowError(
                f"workflow {workflow.name} needs a value for parameter {name!r}"
                + (f" ({param.description})" if param.description else ""),
                code="missing_param", suggestions=[f"give {name}=VALUE"],
                context={"workflow": workflow.name, "param": name})
        else:
            values[name] = param.default
    return values


def _convert(workflow: Workflow, name: str, param: Param, value: object) -> Value:
    kind = param.type or "string"
    if isinstance(value, str) and kind == "int":
        try:
            return int(value, 10)
        except ValueError:
            pass
    elif isinstance(value, str) and kind == "bool":
        if value.lower() in _BOOLS:
            return _BOOLS[value.lower()]
    elif type(value) is {"string": str, "int": int, "bool": bool}[kind]:
        return value  # type: ignore[return-value]
    expected = {"string": "a string", "int": "an integer", "bool": "true or false"}[kind]
    raise WorkflowError(
        f"parameter {name!r} of workflow {workflow.name} takes {expected}, not {value!r}",
        code="bad_param", suggestions=[f"give {name}=VALUE with VALUE {expected}"],
        context={"workflow": workflow.name, "param": name})


class Scope:
    """Resolves steps.*, params.* and git.* for conditions and templates. A step's fields come
    from `steps` (the dry run puts UNKNOWN where it cannot know)."""

    def __init__(self, params: Mapping[str, Value], git: GitFacts,
                 steps: Mapping[str, Mapping[str, object]]) -> None:
        self.params = params
        self.git = git
        self.steps = steps

    def resolve(self, parts: tuple[str, ...]) -> object:
        # Conditions were checked at load time, so every name here is well formed.
        root = parts[0]
        if root == "steps":
            return self.steps.get(parts[1], {}).get(parts[2], UNKNOWN)
        if root == "params":
            return self.params.get(parts[1])
        return self.git.get(parts[1])

    def template_value(self, name: str) -> Value:
        root, field = name.split(".", 1)
        value = self.params.get(field) if root == "params" else self.git.get(field)
        if value is None:
            why = (f"parameter {field!r} has no default and none was given" if root == "params"
                   else GIT_FIELDS[field])
            raise TemplateError(f"{{{{ {name} }}}} has no value: {why}")
        return value
