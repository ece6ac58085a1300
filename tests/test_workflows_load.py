"""Loading workflows: TOML, YAML and the config table, with load-time errors at file:line:col."""

from __future__ import annotations

import builtins
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projctld.team.workflows import (
    WorkflowError,
    load_directory,
    load_file,
    load_table,
    load_workflows,
)
from projctld.team.workflows.conditions import (
    UNKNOWN,
    ConditionError,
    Symbols,
    check,
    evaluate,
    parse,
)
from projctld.team.workflows.model import MAX_RETRY_DELAY, Step
from projctld.team.workflows.template import split

HEADER = """\
description = "checks, then deploy"

[params.env]
default = "staging"

[params.count]
default = 2

[[steps]]
name = "lint"
command = ["true"]
group = "checks"

[[steps]]
name = "tests"
command = "pytest -q"
group = "checks"

[[steps]]
name = "deploy"
command = ["./deploy.sh", "{{ params.env }}"]
"""


def write(tmp_path: Path, text: str, name: str = "deploy.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def load_error(path: str) -> WorkflowError:
    with pytest.raises(WorkflowError) as caught:
        load_file(path)
    return caught.value


def test_a_workflow_loads_with_its_stages_params_and_defaults(tmp_path: Path) -> None:
    condition = 'steps.tests.success and params.env == "production"'
    path = write(tmp_path, HEADER + f"condition = '{condition}'\n")
    workflow = load_file(path)
    assert workflow.name == "deploy" and workflow.source == path
    assert workflow.description == "checks, then deploy"
    assert workflow.params["env"].type == "string" and workflow.params["count"].type == "int"
    assert [[s.name for s in stage] for stage in workflow.stages()] == [
        ["lint", "tests"], ["deploy"]]
    assert workflow.steps[1].command == ["pytest", "-q"]  # a string is split into arguments
    assert workflow.steps[2].retries == 0 and workflow.steps[2].timeout is None


@pytest.mark.parametrize(("condition", "problem", "column"), [
    ("steps.tset.success", "no step named `tset` (steps before this one: lint, tests)", 1),
    ("steps.deploy.success", "step `deploy` is this step", 1),
    ("steps.tests.succes", "write steps.tests.FIELD", 1),
    ("step.tests.success", "unknown name `step.tests.success`", 1),
    ("params.nope == 1", "no parameter `nope` is declared (declared: env, count)", 1),
    ("git.sha", "unknown git fact `git.sha`", 1),
    ("steps.tests.success and", "the condition ends too soon", 24),
    ("steps.tests.success && true", "write `and`", 21),
    ("params.env = 'x'", "write `==`", 12),
    ("params.env == 'x", "has no closing '", 15),
    ("(params.env == 'x'", "expected `)`", 19),
    ("params.count == '2'", "compares an integer with a string", 14),
    ("params.env < 3", "compares two integers or two strings", 12),
    ("1 < 2 < 3", "cannot be chained", 7),
    ("steps.tests.exit_code in 3", "needs a string or a list on its right", 23),
    ("__import__('os')", "conditions have no function calls", 11),
])
def test_a_malformed_condition_is_refused_at_load_time_with_file_line_and_column(
        tmp_path: Path, condition: str, problem: str, column: int) -> None:
    path = write(tmp_path, HEADER + f'condition = "{condition}"\n')
    error = load_error(path)
    line = HEADER.count("\n") + 1
    where = len('condition = "') + column
    assert error.message.startswith(f"{path}:{line}:{where}: step `deploy`: condition: ")
    assert problem in error.message
    # the line itself, then a caret under the column
    assert error.message.splitlines()[1:] == [f'    condition = "{condition}"',
                                              "    " + " " * (where - 1) + "^"]
    assert error.context == {"file": path, "step": "deploy", "line": str(line),
                             "column": str(where)}
    assert error.code == "workflow" and error.exit_code == 2


def test_a_condition_on_a_step_of_the_same_stage_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        [[steps]]
        name = "a"
        command = ["true"]
        group = "g"

        [[steps]]
        condition = "steps.a.success"
        name = "b"
        command = ["true"]
        group = "g"
    """)
    error = load_error(path)
    assert error.message.startswith(f"{path}:7:14: step `b`: condition: step `a` runs at the "
                                    "same time as this one (both are in group `g`)")


def test_a_later_step_is_named_as_such(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        [[steps]]
        name = "a"
        command = ["true"]
        condition = "steps.b.failed"

        [[steps]]
        name = "b"
        command = ["true"]
    """)
    assert "step `b` runs after this one" in load_error(path).message


def test_the_error_points_at_the_condition_even_when_written_with_escapes(
        tmp_path: Path) -> None:
    # The TOML text holds \" where the value holds ": the line is still found, without a column.
    path = write(tmp_path, HEADER + 'condition = "params.env == \\"x\\" and steps.nope.success"\n')
    error = load_error(path)
    assert error.message.startswith(f"{path}:{HEADER.count(chr(10)) + 1}: step `deploy`: ")
    assert "no step named `nope`" in error.message


@pytest.mark.parametrize("condition", [
    "__import__('os').system('touch pwned')",
    "eval('1')",
    "exec('import os')",
    "open('pwned', 'w')",
    "().__class__.__bases__",
    "steps.lint.__class__",
    "params.env.__len__",
    "lambda: 1",
    "[x for x in params.env]",
    "1 if true else 2",
    "params.env[0]",
    "f'{params.env}'",
    "1 + 1",
    "params.env; import os",
    "globals()",
])
def test_python_is_never_evaluated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   condition: str) -> None:
    """Whatever the text, it is a syntax or name error, and nothing reaches eval or exec."""
    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, _forbidden)
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, HEADER + f"condition = {condition!r}\n".replace("\\'", "'"))
    error = load_error(path)
    assert "condition: " in error.message
    assert not (tmp_path / "pwned").exists()


def _forbidden(*args: object, **kwargs: object) -> None:
    raise AssertionError("the condition language must never call eval, exec or compile")


SYMBOLS = Symbols(earlier=["a", "b"], unavailable={"c": "runs after this one"},
                  params={"env": frozenset({"str"}), "n": frozenset({"int", "null"})})
VOCABULARY = ["steps.a.success", "steps.b.exit_code", "steps.a.output", "steps.c.failed",
              "params.env", "params.n", "git.branch", "and", "or", "not", "in", "==", "!=", "<",
              ">=", "(", ")", "[", "]", ",", ".", '"x"', "'y'", "1", "-2", "true", "false",
              "null", "__import__", "os", "=", "!", "&&", "lambda", ":", "+", "\\", '"', "{"]


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(VOCABULARY), max_size=12).map(" ".join),
    st.lists(st.sampled_from(VOCABULARY), max_size=12).map("".join),
))
def test_any_text_parses_or_is_a_condition_error_never_python(text: str) -> None:
    real = (builtins.eval, builtins.exec, builtins.compile)
    builtins.eval = builtins.exec = builtins.compile = _forbidden  # type: ignore[assignment]
    try:
        try:
            expr = parse(text)
            check(expr, SYMBOLS)
        except ConditionError as exc:
            assert 1 <= exc.column <= len(text) + 1
            return
        values = {("steps", "a", "success"): True, ("steps", "b", "exit_code"): None,
                  ("steps", "a", "output"): "x y", ("params", "env"): "x", ("params", "n"): 3,
                  ("git", "branch"): None}
        try:
            result = evaluate(expr, values.__getitem__)
        except ConditionError:
            return  # a mixed list compared with `<`, say: a clear error, not a crash
        assert result is None or isinstance(result, bool | int | str | list)
    finally:
        builtins.eval, builtins.exec, builtins.compile = real


@pytest.mark.parametrize(("condition", "expected"), [
    ("1 == true", False),  # strict: an integer is not a boolean
    ('"1" == 1', False),
    ("params.env == 'prod' and steps.a.success", True),
    ("params.env in ['dev', 'prod']", True),
    ("params.env not in ['dev', 'prod']", False),
    ("'ro' in params.env", True),
    ("steps.b.exit_code < 2", False),  # null compares false
    ("steps.b.exit_code == null", True),
    ("not steps.b.exit_code", True),
    ("params.n >= 3 or false", True),
    ("not (params.n > 3)", True),
    ("-1 < params.n", True),
    ("'say \\'hi\\'' == \"say 'hi'\"", True),
    ("steps.c.output == 'x'", UNKNOWN),  # the dry run: not known before running
    ("steps.c.output == 'x' and false", False),
    ("steps.c.output == 'x' or true", True),
    ("not steps.c.failed", UNKNOWN),
])
def test_the_language_means_what_it_says(condition: str, expected: object) -> None:
    values = {("steps", "a", "success"): True, ("steps", "b", "exit_code"): None,
              ("params", "env"): "prod", ("params", "n"): 3,
              ("steps", "c", "output"): UNKNOWN, ("steps", "c", "failed"): UNKNOWN}
    assert evaluate(parse(condition), values.__getitem__) == expected


def test_backoff_doubles_and_is_capped() -> None:
    step = Step(name="s", command=["true"], retry_delay=0.5)
    assert [step.backoff(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert step.backoff(30) == MAX_RETRY_DELAY


def test_a_string_command_splits_with_placeholders_kept_whole() -> None:
    assert split("deploy {{ params.env }} --msg='{{ git.branch }} x' \"a b\"") == [
        "deploy", "{{ params.env }}", "--msg={{ git.branch }} x", "a b"]


@pytest.mark.parametrize(("command", "problem"), [
    ('["echo", "{{ params.nope }}"]', "`{{ params.nope }}`: no such parameter is declared"),
    ('["echo", "--sha={{ git.sha }}"]', "`{{ git.sha }}`: unknown git fact"),
    ('["echo", "{{ steps.lint.output }}"]', "step results cannot be substituted"),
    ('["echo", "{{ os.system }}"]', "templates use params.NAME or git.FIELD"),
    ('["echo", "{{ params.env"]', "`{{` has no closing `}}`"),
    ('["echo", "{{ 1 + 1 }}"]', "is not a name like"),
    ('"echo \'unclosed"', "cannot split `command` into arguments"),
])
def test_a_bad_command_is_refused_at_load_time_at_its_line(tmp_path: Path, command: str,
                                                           problem: str) -> None:
    path = write(tmp_path, HEADER.replace('["./deploy.sh", "{{ params.env }}"]', command))
    error = load_error(path)
    line = HEADER.count("\n")  # the deploy step's command line
    assert error.message.startswith(f"{path}:{line}:")
    assert problem in error.message


@pytest.mark.parametrize(("text", "problem", "line"), [
    ('[[steps]]\nname = "a"\ncommand = ["true"]\nretries = "x"\n',
     "step `a`: `retries`: expected an integer, got a string", 4),
    ('[[steps]]\nname = "a"\ncomand = ["true"]\n', "step `a`: unknown key `comand`", 3),
    ('[[steps]]\nname = "a b"\ncommand = ["true"]\n', "1-64 letters, digits", 2),
    ('[[steps]]\nname = "a"\ncommand = ["true"]\nretries = 11\n', "<= 10", 4),
    ('[[steps]]\nname = "a"\ncommand = ["true"]\n[[steps]]\nname = "a"\ncommand = ["true"]\n',
     "two steps are named `a`", 5),
    ('[[steps]]\nname = "a"\ncommand = ["x"]\ngroup = "g"\n[[steps]]\nname = "b"\n'
     'command = ["x"]\n[[steps]]\nname = "c"\ncommand = ["x"]\ngroup = "g"\n',
     "group `g` already ran before this step", 11),
    ('[[steps]]\nname = "a"\ncommand = ["echo", "x"]\nshell = true\n',
     "with shell = true, `command` is one string", 3),
    ('[params.n]\ntype = "int"\ndefault = "3"\n[[steps]]\nname = "a"\ncommand = ["x"]\n',
     "parameter `n` is of type int, but its default '3' is not", 1),
    ('[params.n]\nrequired = true\ndefault = "3"\n[[steps]]\nname = "a"\ncommand = ["x"]\n',
     "is required and has a default", 1),
    ('description = "no steps"\n', "missing key `steps`", None),
])
def test_schema_errors_name_the_key_and_its_line(tmp_path: Path, text: str, problem: str,
                                                 line: int | None) -> None:
    path = write(tmp_path, text)
    error = load_error(path)
    assert problem in error.message
    where = f"{path}:{line}:" if line else f"{path}: "
    assert error.message.startswith(where), error.message


def test_yaml_workflows_load_and_their_errors_have_lines(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    good = write(tmp_path, """\
        description: from YAML
        params:
          env: {default: staging}
        steps:
          - name: build
            command: [sleep, 0]
            group: g
          - name: lint
            command: echo '{{ params.env }}'
            group: g
          - name: deploy
            command: [echo, deploy]
            condition: steps.build.success and params.env == "production"
    """, name="ship.yml")
    workflow = load_file(good)
    assert workflow.name == "ship"
    assert workflow.steps[0].command == ["sleep", "0"]  # YAML's integer 0, as an argument
    assert workflow.steps[1].command == ["echo", "{{ params.env }}"]
    assert [len(stage) for stage in workflow.stages()] == [2, 1]

    bad = write(tmp_path, """\
        steps:
          - name: build
            command: [make]
          - name: deploy
            command: [echo, deploy]
            condition: steps.build.success and steps.biuld.success
    """, name="bad.yaml")
    error = load_error(bad)
    assert error.message.startswith(f"{bad}:6:40: step `deploy`: condition: no step named "
                                    "`biuld`")


def test_yaml_without_pyyaml_says_what_to_install(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    path = write(tmp_path, "steps: []\n", name="ship.yaml")
    error = load_error(path)
    assert "pip install pyyaml" in error.message
    assert error.suggestions[0].startswith("pip install pyyaml")
    assert error.code == "yaml_missing"


CONFIG = """\
[daemon]
log_level = "info"

[workflows.release]
description = "first"

[[workflows.release.steps]]
name = "deploy"
command = ["true"]

[workflows.hotfix]
description = "second"

[workflows.hotfix.params.env]
default = "prod"

[[workflows.hotfix.steps]]
name = "build"
command = ["true"]

[[workflows.hotfix.steps]]
name = "deploy"
command = ["true"]
condition = "steps.build.success and params.enviroment == 'prod'"
"""


def test_config_table_errors_point_into_the_right_workflow(tmp_path: Path) -> None:
    import tomllib

    path = write(tmp_path, CONFIG, name="config.toml")
    table = tomllib.loads(CONFIG)["workflows"]
    with pytest.raises(WorkflowError) as caught:
        load_table(table, path=path)
    message = caught.value.message
    assert message.startswith(f"{path}:24:38: workflows.hotfix: step `deploy`: condition: "
                              "no parameter `enviroment` is declared (declared: env)")
    fixed = CONFIG.replace("params.enviroment", "params.env")
    workflows = load_table(tomllib.loads(fixed)["workflows"], path=path, text=fixed)
    assert sorted(workflows) == ["hotfix", "release"]
    assert workflows["hotfix"].source == path


def test_repository_workflows_override_config_ones_and_clash_among_themselves(
        tmp_path: Path) -> None:
    import tomllib

    directory = tmp_path / ".projctl" / "workflows"
    directory.mkdir(parents=True)
    (directory / "release.toml").write_text('[[steps]]\nname = "x"\ncommand = ["true"]\n')
    (directory / "notes.txt").write_text("not a workflow")
    config = tomllib.loads(CONFIG.replace("params.enviroment", "params.env"))["workflows"]
    found = load_workflows(repository=str(tmp_path), config=config,
                           config_path=str(tmp_path / "config.toml"))
    assert found["release"].source == str(directory / "release.toml")
    assert found["hotfix"].source == str(tmp_path / "config.toml")
    assert load_directory(str(tmp_path / "elsewhere")) == {}

    (directory / "other.toml").write_text('name = "release"\n[[steps]]\nname = "x"\n'
                                          'command = ["true"]\n')
    with pytest.raises(WorkflowError, match="workflow 'release' is also defined in"):
        load_directory(str(tmp_path))
