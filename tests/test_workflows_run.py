"""Running workflows with real subprocesses: stages, conditions, retries, timeouts, cancellation."""

from __future__ import annotations

import json
import os
import shlex
import sys
import textwrap
from pathlib import Path

import anyio
import msgspec
import pytest

from projctld.errors import ProjctlError
from projctld.team.workflows import (
    GitFacts,
    RunResult,
    StepFinished,
    StepOutput,
    StepRetried,
    StepSkipped,
    StepStarted,
    Workflow,
    WorkflowError,
    WorkflowEvent,
    WorkflowFinished,
    WorkflowStarted,
    load_file,
    plan_workflow,
    run_workflow,
)

pytestmark = pytest.mark.anyio
GRACE = 0.5  # SIGTERM to SIGKILL, kept short so that the tests are quick
HANG_GUARD = 30  # only so that a broken engine fails instead of hanging


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def load(tmp_path: Path, text: str) -> Workflow:
    path = tmp_path / "wf.toml"
    path.write_text(textwrap.dedent(text))
    return load_file(str(path))


async def run(workflow: Workflow, tmp_path: Path, **options: object,
              ) -> tuple[RunResult, list[WorkflowEvent]]:
    events: list[WorkflowEvent] = []

    async def on_event(event: WorkflowEvent) -> None:
        events.append(event)

    with anyio.fail_after(HANG_GUARD):
        result = await run_workflow(workflow, cwd=str(tmp_path), on_event=on_event,
                                    kill_grace=GRACE, **options)  # type: ignore[arg-type]
    return result, events


def of(events: list[WorkflowEvent], kind: type, step: str | None = None) -> list:
    return [e for e in events if isinstance(e, kind) and (step is None or e.step == step)]


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for whoever reaps orphans here."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def q(text: str) -> str:
    """`text` as a TOML basic string."""
    return json.dumps(text)


# Each step creates its own marker, then waits for the other's: run one after the other, the
# first would wait forever (here: until its timeout), so both succeeding proves they overlap.
RENDEZVOUS = """\
[[steps]]
name = "left"
command = ["sh", "-c", "touch left; until [ -e right ]; do sleep 0.01; done"]
timeout = {timeout}
{group}

[[steps]]
name = "right"
command = ["sh", "-c", "touch right; until [ -e left ]; do sleep 0.01; done"]
timeout = {timeout}
{group}

[[steps]]
name = "after"
command = ["true"]
"""


async def test_the_steps_of_a_group_run_at_the_same_time(tmp_path: Path) -> None:
    workflow = load(tmp_path, RENDEZVOUS.format(timeout=HANG_GUARD, group='group = "g"'))
    result, events = await run(workflow, tmp_path)
    assert result.success, result
    assert [step.status for step in result.steps] == ["succeeded"] * 3
    assert of(events, WorkflowStarted)[0].stages == [["left", "right"], ["after"]]
    # the next stage starts only once the whole group is done
    order = [(type(e).__name__, e.step) for e in events
             if isinstance(e, StepStarted | StepFinished)]
    assert order.index(("StepStarted", "after")) > max(
        order.index(("StepFinished", "left")), order.index(("StepFinished", "right")))


async def test_without_a_group_the_rendezvous_cannot_happen(tmp_path: Path) -> None:
    """The control for the test above: run one after the other, the first step waits in vain."""
    workflow = load(tmp_path, RENDEZVOUS.format(timeout=0.3, group=""))
    result, events = await run(workflow, tmp_path)
    assert not result.success
    assert result.step("left").reason.startswith("timed out after 0.3 s")
    assert of(events, StepSkipped, "right")[0].reason == "not run: step 'left' failed"
    assert of(events, StepSkipped, "after")[0].reason == "not run: step 'left' failed"


async def test_conditions_decide_and_a_false_one_skips_with_its_reason(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [params.env]
        default = "staging"

        [params.count]
        type = "int"

        [[steps]]
        name = "tests"
        command = ["sh", "-c", "echo all passed"]

        [[steps]]
        name = "deploy"
        command = ["touch", "deployed"]
        condition = 'steps.tests.success and params.env == "production"'

        [[steps]]
        name = "report"
        command = ["touch", "reported"]
        condition = 'steps.deploy.skipped and "passed" in steps.tests.output and params.count > 2'

        [[steps]]
        name = "branch"
        command = ["touch", "on-main"]
        condition = 'git.branch == "main" and git.short_sha == "0123456789ab"'
    """)
    git = GitFacts(root=str(tmp_path), branch="main", commit_sha="0123456789ab" + "f" * 28)
    result, events = await run(workflow, tmp_path, params={"count": "3"}, git=git)
    assert result.success
    assert [step.status for step in result.steps] == ["succeeded", "skipped", "succeeded",
                                                      "succeeded"]
    skipped = of(events, StepSkipped, "deploy")[0]
    assert skipped.reason == ('condition is false: steps.tests.success and '
                              'params.env == "production"')
    assert not (tmp_path / "deployed").exists()
    assert (tmp_path / "reported").exists() and (tmp_path / "on-main").exists()

    result, _ = await run(workflow, tmp_path, params={"env": "production", "count": 0}, git=git)
    assert result.step("deploy").status == "succeeded" and (tmp_path / "deployed").exists()
    assert result.step("report").status == "skipped"


async def test_a_failure_stops_later_stages_but_lets_its_stage_finish(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [[steps]]
        name = "broken"
        command = ["sh", "-c", "echo boom; exit 3"]
        group = "checks"

        [[steps]]
        name = "slow"
        command = ["sh", "-c", "sleep 0.2; touch slow-done"]
        group = "checks"

        [[steps]]
        name = "deploy"
        command = ["touch", "deployed"]
    """)
    result, events = await run(workflow, tmp_path)
    assert not result.success
    assert result.step("broken").exit_code == 3 and result.step("broken").reason == "exit status 3"
    assert result.step("broken").output == ["boom"]
    assert result.step("slow").status == "succeeded" and (tmp_path / "slow-done").exists()
    assert result.step("deploy").status == "skipped" and not (tmp_path / "deployed").exists()
    finished = of(events, WorkflowFinished)[0]
    assert (finished.success, finished.failed, finished.skipped) == (False, ["broken"], ["deploy"])


async def test_continue_on_error_lets_a_later_step_react_to_the_failure(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [[steps]]
        name = "deploy"
        command = ["false"]
        continue_on_error = true

        [[steps]]
        name = "rollback"
        command = ["touch", "rolled-back"]
        condition = "steps.deploy.failed and steps.deploy.exit_code == 1"
    """)
    result, events = await run(workflow, tmp_path)
    assert result.success  # the failure was allowed to happen
    assert of(events, StepFinished, "deploy")[0].continued
    assert result.step("rollback").status == "succeeded" and (tmp_path / "rolled-back").exists()


async def test_retries_back_off_exponentially_and_report_each_attempt(tmp_path: Path) -> None:
    # Fails on its first two runs, succeeds on the third.
    script = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; ' \
             'echo "attempt $n"; [ "$n" -ge 3 ]'
    workflow = load(tmp_path, f"""\
        [[steps]]
        name = "flaky"
        command = ["sh", "-c", {q(script)}]
        retries = 4
        retry_delay = 0.01
    """)
    result, events = await run(workflow, tmp_path)
    assert result.success
    retried = of(events, StepRetried, "flaky")
    assert [(e.attempt, e.delay, e.reason) for e in retried] == [
        (1, 0.01, "exit status 1"), (2, 0.02, "exit status 1")]
    started = of(events, StepStarted, "flaky")
    assert [(e.attempt, e.attempts) for e in started] == [(1, 5), (2, 5), (3, 5)]
    finished = of(events, StepFinished, "flaky")[0]
    assert (finished.success, finished.attempts, finished.output) == (True, 3, ["attempt 3"])


async def test_a_step_that_always_fails_uses_all_its_attempts(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [[steps]]
        name = "never"
        command = ["sh", "-c", "exit 7"]
        retries = 2
        retry_delay = 0.01
    """)
    result, events = await run(workflow, tmp_path)
    assert [e.delay for e in of(events, StepRetried)] == [0.01, 0.02]
    assert (result.step("never").attempts, result.step("never").exit_code) == (3, 7)


async def test_a_timeout_kills_the_whole_process_tree(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [[steps]]
        name = "hang"
        command = ["sh", "-c", "echo $$ > child; sleep 300 & echo $! > grandchild; wait"]
        timeout = 1
    """)
    result, _ = await run(workflow, tmp_path)
    step = result.step("hang")
    assert (step.status, step.exit_code) == ("failed", None)
    assert step.reason == "timed out after 1 s; its processes were ended"
    child, grandchild = (int((tmp_path / name).read_text()) for name in ("child", "grandchild"))
    assert not alive(child) and not alive(grandchild)


async def test_a_process_left_behind_by_a_finished_step_is_ended(tmp_path: Path) -> None:
    """A background process keeps the output pipe open: the step must still finish, and the
    process must not outlive it."""
    workflow = load(tmp_path, """\
        [[steps]]
        name = "leaky"
        command = ["sh", "-c", "sleep 300 & echo $! > grandchild; echo started"]
    """)
    result, _ = await run(workflow, tmp_path)
    assert result.step("leaky").status == "succeeded"
    assert result.step("leaky").output == ["started"]
    assert not alive(int((tmp_path / "grandchild").read_text()))


async def test_a_process_that_ignores_sigterm_gets_sigkill(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [[steps]]
        name = "stubborn"
        command = ["sh", "-c", "trap '' TERM; echo $$ > child; while :; do sleep 0.05; done"]
        timeout = 1
    """)
    result, _ = await run(workflow, tmp_path)
    assert result.step("stubborn").reason.startswith("timed out")
    assert not alive(int((tmp_path / "child").read_text()))


async def test_cancelling_the_run_kills_running_steps(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [[steps]]
        name = "long"
        command = ["sh", "-c", "echo $$ > child; sleep 300 & echo $! > grandchild; wait"]
        group = "g"

        [[steps]]
        name = "longer"
        command = ["sleep", "300"]
        group = "g"

        [[steps]]
        name = "never"
        command = ["touch", "never"]
    """)
    events: list[WorkflowEvent] = []

    async def on_event(event: WorkflowEvent) -> None:
        events.append(event)

    finished = False
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as group:
            async def runner() -> None:
                nonlocal finished
                await run_workflow(workflow, cwd=str(tmp_path), on_event=on_event,
                                   kill_grace=GRACE)
                finished = True

            group.start_soon(runner)
            while not (tmp_path / "grandchild").exists() or not (tmp_path / "child").exists():
                await anyio.sleep(0.01)
            group.cancel_scope.cancel()
    assert not finished
    pids = [int((tmp_path / name).read_text()) for name in ("child", "grandchild")]
    assert not any(alive(pid) for pid in pids)
    assert not (tmp_path / "never").exists()
    assert not of(events, WorkflowFinished)
    assert not _processes_with(str(tmp_path))  # the sleep of "longer" too


def _processes_with(directory: str) -> list[int]:
    """Processes whose working directory is `directory` (every step of these tests runs there)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == directory and alive(int(entry)):
                    found.append(int(entry))
            except OSError:
                continue
    return found


async def test_output_is_bounded_to_the_last_lines_and_counts_the_rest(tmp_path: Path) -> None:
    script = "i=1; while [ $i -le 500 ]; do echo line $i; i=$((i+1)); done; " \
             "head -c 10000 /dev/zero | tr '\\0' x"  # and a last line of 10,000 bytes
    workflow = load(tmp_path, f"""\
        [[steps]]
        name = "chatty"
        command = ["sh", "-c", {q(script)}]
    """)
    result, events = await run(workflow, tmp_path, tail_lines=20)
    step = result.step("chatty")
    assert len(of(events, StepOutput, "chatty")) == 501  # every line is streamed
    assert len(step.output) == 20 and step.dropped_lines == 481
    assert step.output[:2] == ["line 482", "line 483"]
    assert step.output[-1] == "x" * 4096 + " [... 5904 bytes cut]"


VALUE = """two words, "double" 'single'; touch pwned $(touch pwned2) `touch pwned3` $HOME"""


async def test_a_templated_value_is_one_argument_never_shell(tmp_path: Path) -> None:
    dump = "import json, sys; print(json.dumps(sys.argv[1:]))"
    as_string = shlex.join([sys.executable, "-c", dump]) + " {{ params.v }} 'x {{ git.branch }}'"
    workflow = load(tmp_path, f"""\
        [params.v]
        required = true

        [[steps]]
        name = "list"
        command = [{q(sys.executable)}, "-c", {q(dump)}, "{{{{ params.v }}}}",
                   "--sha={{{{ git.commit_sha }}}}"]

        [[steps]]
        name = "string"
        command = {q(as_string)}

        [[steps]]
        name = "shell"
        shell = true
        command = "printf '%s|' {{{{ params.v }}}} > shell.txt; echo done"
    """)
    git = GitFacts(branch="feature/x y", commit_sha="abc")
    result, _ = await run(workflow, tmp_path, params={"v": VALUE}, git=git)
    assert result.success, result
    assert json.loads(result.step("list").output[0]) == [VALUE, "--sha=abc"]
    assert json.loads(result.step("string").output[0]) == [VALUE, "x feature/x y"]
    assert (tmp_path / "shell.txt").read_text() == VALUE + "|"
    assert result.step("shell").output == ["done"]
    assert not any((tmp_path / name).exists() for name in ("pwned", "pwned2", "pwned3"))


async def test_a_missing_value_fails_the_step_that_needs_it(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [[steps]]
        name = "tag"
        command = ["echo", "{{ git.branch }}"]
    """)
    result, _ = await run(workflow, tmp_path, git=GitFacts(commit_sha="abc"))
    assert result.step("tag").status == "failed"
    assert result.step("tag").reason.startswith("{{ git.branch }} has no value: HEAD is not on a "
                                                "branch")


async def test_projctl_commands_go_to_the_internal_callable(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [params.env]
        default = "prod"

        [[steps]]
        name = "note"
        command = ["projctl", "note", "deploying {{ params.env }}"]

        [[steps]]
        name = "refused"
        command = "projctl deploy {{ params.env }}"
        continue_on_error = true

        [[steps]]
        name = "raises"
        command = ["projctl", "sync"]
        continue_on_error = true
    """)
    calls: list[list[str]] = []

    async def internal(args: list[str]) -> tuple[int, str]:
        calls.append(args)
        if args[0] == "sync":
            raise ProjctlError("the hub is not configured")
        return (0, "recorded\n") if args[0] == "note" else (4, "refused\nfor a reason")

    result, events = await run(workflow, tmp_path, internal=internal)
    assert calls == [["note", "deploying prod"], ["deploy", "prod"], ["sync"]]
    assert all(e.internal for e in of(events, StepStarted))
    assert result.step("note").output == ["recorded"] and result.step("note").exit_code == 0
    assert (result.step("refused").exit_code, result.step("refused").output) == (
        4, ["refused", "for a reason"])
    assert result.step("raises").reason == "the hub is not configured"

    without, _ = await run(workflow, tmp_path)
    assert "run inside projctld" in without.step("note").reason


async def test_a_command_that_cannot_start_fails_its_step(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [[steps]]
        name = "missing"
        command = ["projctl-test-no-such-command"]
    """)
    result, _ = await run(workflow, tmp_path)
    step = result.step("missing")
    assert (step.status, step.exit_code) == ("failed", None)
    assert step.reason.startswith("could not start projctl-test-no-such-command")


async def test_events_travel_as_msgpack(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [[steps]]
        name = "hello"
        command = ["echo", "hi"]
    """)
    _, events = await run(workflow, tmp_path)
    wire = [msgspec.msgpack.encode(e) for e in events]
    decoded = [msgspec.msgpack.decode(w, type=WorkflowEvent) for w in wire]
    assert decoded == events
    assert [type(e).__name__ for e in decoded] == [
        "WorkflowStarted", "StepStarted", "StepOutput", "StepFinished", "WorkflowFinished"]


async def test_parameters_are_checked_before_anything_runs(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [params.env]
        required = true

        [params.n]
        default = 1

        [[steps]]
        name = "x"
        command = ["touch", "ran"]
    """)
    with pytest.raises(WorkflowError, match="needs a value for parameter 'env'"):
        await run(workflow, tmp_path)
    with pytest.raises(WorkflowError, match="takes an integer, not 'many'"):
        await run(workflow, tmp_path, params={"env": "x", "n": "many"})
    with pytest.raises(WorkflowError, match="has no parameter 'nv'"):
        await run(workflow, tmp_path, params={"nv": "x"})
    with pytest.raises(WorkflowError, match="no such directory"):
        await run(workflow, tmp_path / "gone", params={"env": "x"})
    assert not (tmp_path / "ran").exists()


def test_the_dry_run_resolves_what_it_can_and_runs_nothing(tmp_path: Path) -> None:
    workflow = load(tmp_path, """\
        [params.env]
        default = "staging"

        [[steps]]
        name = "tests"
        command = ["touch", "ran-tests"]

        [[steps]]
        name = "deploy"
        command = ["./deploy.sh", "{{ params.env }}", "{{ git.commit_sha }}"]
        condition = 'steps.tests.success and params.env == "production"'

        [[steps]]
        name = "announce"
        command = "projctl note 'deployed {{ params.env }}'"
        condition = "not steps.deploy.skipped"

        [[steps]]
        name = "grep"
        shell = true
        command = "echo {{ git.branch }}"
        condition = "'ok' in steps.tests.output"
    """)
    git = GitFacts(commit_sha="abc123")
    plan = plan_workflow(workflow, params={"env": "production"}, git=git)
    steps = {step.name: step for step in plan.steps}
    assert steps["tests"].would_run is True and steps["tests"].command == ["touch", "ran-tests"]
    assert steps["deploy"].would_run is True
    assert steps["deploy"].command == ["./deploy.sh", "production", "abc123"]
    assert steps["announce"].would_run is True and steps["announce"].internal
    assert steps["announce"].command == ["projctl", "note", "deployed production"]
    assert steps["grep"].would_run is None  # depends on output nobody has seen yet
    assert steps["grep"].command is None
    assert steps["grep"].problem.startswith("{{ git.branch }} has no value")

    staging = {s.name: s for s in plan_workflow(workflow, git=git).steps}
    assert staging["deploy"].would_run is False
    assert staging["deploy"].reason.startswith("condition is false")
    assert staging["announce"].would_run is False  # deploy would be skipped
    assert not (tmp_path / "ran-tests").exists()
