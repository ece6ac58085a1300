"""Workflow definitions from TOML or YAML files and the daemon config's [workflows] table, checked
in full at load time; an error names the file, the line and, where it can, the column."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from projctld.team.workflows import template
from projctld.team.workflows.conditions import ConditionError, Symbols, check, parse
from projctld.team.workflows.errors import WorkflowError
from projctld.team.workflows.model import NAME_PATTERN, WORKFLOW_NAME_PATTERN, Param, Step, Workflow
from projctld.team.workflows.scope import param_kinds
from projctld.team.workflows.template import TemplateError

WORKFLOW_DIR = os.path.join(".projctl", "workflows")
SUFFIXES = (".toml", ".yaml", ".yml")
_CONDITION_HELP = ("conditions use steps.NAME.success|failed|skipped|exit_code|output, "
                   "params.NAME, git.branch|commit_sha|short_sha|root, quoted strings, integers, "
                   "true, false, null, [lists], and, or, not, ==, !=, <, <=, >, >=, in, not in")
_PATTERN_MEANING = {
    NAME_PATTERN: "1-64 letters, digits, `_` or `-`, starting with a letter or `_`",
    WORKFLOW_NAME_PATTERN: "1-64 letters, digits, `.`, `_` or `-`, starting with a letter or "
                           "digit",
}
_MSGSPEC_TYPES = {"`str | array`": "a string or an array of strings",
                  "`object`": "a table", "`array`": "an array", "`str`": "a string",
                  "`int`": "an integer", "`float`": "a number", "`bool`": "true or false",
                  "`null`": "nothing"}
_LOCATION = re.compile(r" - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`$")
_STEP_PATH = re.compile(r"^\.steps\[(?P<index>[0-9]+)\](?P<rest>.*)$")
_FIELD = re.compile(r"(?:unknown|required) field `(?P<field>[^`]+)`")


def load_file(path: str) -> Workflow:
    """The workflow in one .toml, .yaml or .yml file; its name is `name`, else the file's stem."""
    text = _read(path)
    raw = _parse_yaml(path, text) if path.endswith((".yaml", ".yml")) else _parse_toml(path, text)
    source = _Source(path, text)
    if not isinstance(raw, dict):
        raise source.error("a workflow file holds one table: name, description, params, steps",
                           None)
    stem = os.path.splitext(os.path.basename(path))[0]
    if "name" not in raw and not re.match(WORKFLOW_NAME_PATTERN, stem):
        raise source.error(f"the file's name {stem!r} cannot name a workflow: set `name` in it "
                           f"or rename the file ({_PATTERN_MEANING[WORKFLOW_NAME_PATTERN]})",
                           None)
    return _build({"name": stem, **raw}, source)


def load_directory(repository: str) -> dict[str, Workflow]:
    """The workflows in REPOSITORY/.projctl/workflows/*.toml|yaml|yml, by name."""
    directory = os.path.join(repository, WORKFLOW_DIR)
    try:
        entries = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        raise WorkflowError(f"cannot read {directory}: {exc.strerror}",
                            suggestions=[f"ls -ld {directory}"],
                            context={"file": directory}) from None
    found: dict[str, Workflow] = {}
    for entry in entries:
        if entry.startswith(".") or not entry.endswith(SUFFIXES):
            continue
        workflow = load_file(os.path.join(directory, entry))
        if workflow.name in found:
            raise WorkflowError(
                f"{workflow.source}: workflow {workflow.name!r} is also defined in "
                f"{found[workflow.name].source}",
                suggestions=["rename one of them (its `name`, or its file when it has none)"],
                context={"file": workflow.source, "workflow": workflow.name})
        found[workflow.name] = workflow
    return found


def load_table(table: object, *, path: str, text: str | None = None) -> dict[str, Workflow]:
    """The workflows of the config's `workflows` table (NAME -> definition, as in
    [workflows.NAME]). `path` names the config file in errors; its text (read from `path`
    unless given) is where line numbers come from."""
    if text is None:
        try:
            text = _read(path)
        except WorkflowError:
            text = ""
    if not isinstance(table, Mapping):
        raise _Source(path, text).error(
            "`workflows` is a table of workflows, e.g. [workflows.deploy]", None)
    found: dict[str, Workflow] = {}
    for name, raw in table.items():
        header = re.compile(rf"^\s*\[\[?\s*workflows\.[\"']?{re.escape(str(name))}[\"']?"
                            r"\s*[.\]]", re.MULTILINE)
        source = _Source(path, text, prefix=f"workflows.{name}: ", anchor=header)
        if not isinstance(raw, Mapping):
            raise source.error("a workflow is a table: description, params, steps",
                               source.find())
        if raw.get("name", name) != name:
            raise source.error("`name` differs from the table's name: remove `name`",
                               source.find(key="name"))
        found[str(name)] = _build({**raw, "name": name}, source)
    return found


def load_workflows(*, repository: str | None = None, config: object = None,
                   config_path: str = "") -> dict[str, Workflow]:
    """The config's workflows and the repository's, by name; a repository's workflow replaces
    a config one of the same name (it is the more specific)."""
    found = {} if config is None else load_table(config, path=config_path)
    if repository is not None:
        found.update(load_directory(repository))
    return found


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise WorkflowError(f"cannot read {path}: {why}", context={"file": path}) from None


def _parse_toml(path: str, text: str) -> object:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkflowError(f"{path} is not valid TOML: {exc}",
                            suggestions=[f"fix the line it names in {path}"],
                            context={"file": path}) from None


def _parse_yaml(path: str, text: str) -> object:
    try:
        import yaml  # only YAML workflows need PyYAML, so it is not a dependency
    except ImportError:
        raise WorkflowError(
            f"{path} is a YAML workflow, and reading YAML needs PyYAML, which is not "
            "installed: pip install pyyaml",
            suggestions=["pip install pyyaml  (into projctld's environment)",
                         f"or rewrite {os.path.basename(path)} as TOML"],
            context={"file": path}, code="yaml_missing") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorkflowError(f"{where}: not valid YAML: {problem}",
                            suggestions=[f"fix the line it names in {path}"],
                            context={"file": path}) from None


# --- validation -----------------------------------------------------------------------------

def _build(raw: dict[str, Any], source: _Source) -> Workflow:
    if "source" in raw:
        raise source.error("unknown key `source`", source.find(key="source"))
    steps = raw.get("steps")
    if isinstance(steps, list):
        raw["steps"] = [_stringify_command(step) for step in steps]
    try:
        workflow = msgspec.convert(raw, Workflow)
    except msgspec.ValidationError as exc:
        raise _explain(source, str(exc), raw) from None
    params = {name: _check_param(source, name, param) for name, param in workflow.params.items()}
    workflow = msgspec.structs.replace(workflow, source=source.path, params=params)
    return msgspec.structs.replace(workflow, steps=_check_steps(source, workflow))


def _stringify_command(step: object) -> object:
    # YAML reads `command: [sleep, 1]` with an integer in it; an argument is text either way.
    if isinstance(step, dict) and isinstance(step.get("command"), list):
        command = [str(arg) if isinstance(arg, int | float) and not isinstance(arg, bool)
                   else arg for arg in step["command"]]
        return {**step, "command": command}
    return step


def _check_param(source: _Source, name: str, param: Param) -> Param:
    inferred = {str: "string", int: "int", bool: "bool"}.get(type(param.default))
    kind = param.type or inferred or "string"
    where = source.find(anchor=rf"\bparams\.[\"']?{re.escape(name)}\b|^\s*{re.escape(name)}\s*:")
    if param.default is not None and inferred != kind:
        raise source.error(f"parameter `{name}` is of type {kind}, but its default "
                           f"{param.default!r} is not", where)
    if param.required and param.default is not None:
        raise source.error(f"parameter `{name}` is required and has a default: keep one of them",
                           where)
    return msgspec.structs.replace(param, type=kind)


def _check_steps(source: _Source, workflow: Workflow) -> list[Step]:
    steps: list[Step] = []
    seen: set[str] = set()
    finished_groups: set[str] = set()
    for index, step in enumerate(workflow.steps):
        if step.name in seen:
            raise source.error(f"two steps are named `{step.name}`: step names are unique",
                               source.find(step=step.name, nth=1))
        seen.add(step.name)
        previous = workflow.steps[index - 1].group if index else ""
        if previous and previous != step.group:
            finished_groups.add(previous)
        if step.group in finished_groups:
            raise source.error(
                f"group `{step.group}` already ran before this step: put the steps of a group "
                "next to each other (a group is one stage, run at once)",
                source.find(step=step.name, key="group"), step=step.name)
        steps.append(msgspec.structs.replace(step, command=_check_command(source, workflow,
                                                                          step)))
    workflow = msgspec.structs.replace(workflow, steps=steps)
    earlier: list[str] = []
    for stage in workflow.stages():
        for step in stage:
            if step.condition.strip():
                _check_condition(source, workflow, step, list(earlier), stage)
        earlier += [step.name for step in stage]
    return steps


def _check_command(source: _Source, workflow: Workflow, step: Step) -> list[str] | str:
    command = step.command
    if step.shell:
        if not isinstance(command, str):
            raise source.error("with shell = true, `command` is one string: the script for sh",
                               source.find(step=step.name, key="command"), step=step.name)
    elif isinstance(command, str):
        try:
            command = template.split(command)
        except ValueError as exc:
            raise source.error(f"cannot split `command` into arguments: {exc}",
                               source.find(step=step.name, key="command"),
                               step=step.name) from None
        if not command:
            raise source.error("`command` is empty", source.find(step=step.name, key="command"),
                               step=step.name)
    for text in [command] if isinstance(command, str) else command:
        try:
            template.check(text, workflow.params)
        except TemplateError as exc:
            bad = text[exc.column - 1:]
            bad = bad[:bad.find("}}") + 2] if "}}" in bad else bad
            raise source.error(exc.message, source.find(step=step.name, needle=bad),
                               column=1, step=step.name,
                               suggestions=["placeholders are {{ params.NAME }} (a declared "
                                            "parameter) or {{ git.FIELD }}"]) from None
    return command


def _check_condition(source: _Source, workflow: Workflow, step: Step, earlier: list[str],
                     stage: list[Step]) -> None:
    unavailable: dict[str, str] = {}
    for other in workflow.steps:
        if other is step:
            unavailable[other.name] = "is this step"
        elif other in stage:
            unavailable[other.name] = (f"runs at the same time as this one (both are in group "
                                       f"`{step.group}`)")
        elif other.name not in earlier:
            unavailable[other.name] = "runs after this one"
    symbols = Symbols(earlier=earlier, unavailable=unavailable,
                      params={name: param_kinds(p) for name, p in workflow.params.items()})
    try:
        check(parse(step.condition), symbols)
    except ConditionError as exc:
        where = source.find(step=step.name, needle=step.condition, key="condition")
        raise source.error(f"condition: {exc.message}", where, column=exc.column,
                           step=step.name, suggestions=[_CONDITION_HELP]) from None


def _explain(source: _Source, detail: str, raw: dict[str, Any]) -> WorkflowError:
    """A msgspec validation error, said in the file's terms and placed at its line."""
    match = _LOCATION.search(detail)
    location = match["path"] if match else ""
    problem = detail[: match.start()] if match else detail
    step = None
    if step_match := _STEP_PATH.match(location):
        steps = raw.get("steps") or []
        index = int(step_match["index"])
        entry = steps[index] if index < len(steps) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        step = name if isinstance(name, str) else f"#{index + 1}"
        location = step_match["rest"]
    field = _FIELD.search(problem)
    key = field["field"] if field else location.rpartition(".")[2] or None
    problem = problem.replace("Object contains unknown field", "unknown key").replace(
        "Object missing required field", "missing key").replace("Expected", "expected").replace(
        "of length >= 1", "with at least one item")
    for pattern, meaning in _PATTERN_MEANING.items():
        problem = problem.replace(f"`str` matching regex {pattern!r}", meaning)
    for msgspec_name, toml_name in _MSGSPEC_TYPES.items():
        problem = problem.replace(msgspec_name, toml_name)
    if match and match["key"]:
        problem = f"a name in `{location.lstrip('.')}`: {problem}"
        key = None
    elif location.lstrip("."):
        problem = f"`{location.lstrip('.')}`: {problem}"
    where = source.find(step=step, key=key) if step else source.find(key=key)
    return source.error(problem, where, step=step, suggestions=[
        "a workflow has name, description, [params.NAME] (description, type, default, "
        "required) and [[steps]] (name, command, shell, condition, timeout, retries, "
        "retry_delay, group, continue_on_error)"])


# --- where things are in the source text ----------------------------------------------------

@dataclass(frozen=True)
class _Source:
    """A definition's file and text. tomllib and yaml.safe_load give no line numbers, so errors
    find their line by searching the text: the workflow's table, then the step's `name`, then
    the text at fault or the key."""

    path: str
    text: str
    prefix: str = ""  # "workflows.NAME: " for a table of the config
    anchor: re.Pattern[str] | None = None

    def find(self, *, step: str | None = None, needle: str | None = None,
             key: str | None = None, nth: int = 0,
             anchor: str | None = None) -> tuple[int, bool] | None:
        """The offset of what an error is about, and whether it is exactly the needle's start
        (so that a column within the needle can be shown); None when nothing was found."""
        text = self.text
        start = 0
        if self.anchor and (match := self.anchor.search(text)):
            start = match.start()
        if anchor and (match := re.compile(anchor, re.MULTILINE).search(text, start)):
            return match.start() + len(match.group()) - len(match.group().lstrip()), False
        found: tuple[int, bool] | None = None
        if step is not None:
            name = re.compile(rf"\bname\s*[=:]\s*([\"']?){re.escape(step)}\1(?=[\s,}}#]|$)",
                              re.MULTILINE)
            matches = list(name.finditer(text, start))
            if len(matches) > nth:
                found = (matches[nth].start(), False)
        for begin in ([found[0]] if found else []) + [start]:
            if needle:
                at = text.find(needle, begin)
                if at >= 0:
                    return at, True
                for variant in (json.dumps(needle)[1:-1], needle.replace("'", "''")):
                    at = text.find(variant, begin)
                    if at >= 0:
                        return at, False
            if key:
                keyed = re.compile(rf"^[ \t-]*[\"']?{re.escape(key)}[\"']?\s*[=:]", re.MULTILINE)
                if match := keyed.search(text, begin):
                    return match.start() + len(match.group()) - len(match.group().lstrip(" \t-")), \
                        False
        return found

    def error(self, message: str, where: tuple[int, bool] | None, *, column: int = 0,
              step: str | None = None,
              suggestions: list[str] | None = None) -> WorkflowError:
        """`FILE:LINE:COL: message`, then the line and a caret under the column."""
        context = {"file": self.path}
        if step is not None:
            context["step"] = step
            message = f"step `{step}`: {message}"
        message = self.prefix + message
        if where is None:
            return WorkflowError(f"{self.path}: {message}", suggestions=suggestions,
                                 context=context)
        offset, exact = where
        if exact and column:
            offset += column - 1
        line_start = self.text.rfind("\n", 0, offset) + 1
        line_end = self.text.find("\n", offset)
        source_line = self.text[line_start:line_end if line_end >= 0 else len(self.text)]
        line = self.text.count("\n", 0, offset) + 1
        context["line"] = str(line)
        if exact and column:
            col = offset - line_start + 1
            context["column"] = str(col)
            caret = "".join("\t" if c == "\t" else " " for c in source_line[:col - 1]) + "^"
            text = f"{self.path}:{line}:{col}: {message}\n    {source_line}\n    {caret}"
        else:
            text = f"{self.path}:{line}: {message}\n    {source_line}"
        return WorkflowError(text, suggestions=[*(suggestions or []), f"edit {self.path}:{line}"],
                             context=context)
