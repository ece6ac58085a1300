"""`projctl prompt` and the shell snippets, against a real daemon polling the fake upstreams."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from test_upstream_status import config_text, configure, git_checkout, my_pull

from projctl_client import paths
from projctld.prompt.files import _safe_branch
from projctld.sandbox.dataset import generate
from projctld.sandbox.demo import Upstreams, start_fakes

FORMAT = "{project}[ {ref}][ {review}][ {ci}][ ↑{waiting}][ {stale}]"
# The prompt's words and symbols for each review and CI state (projctld/prompt/format.py).
REVIEW = {"approved": "approved", "changes_requested": "changes", "review_required": "review",
          "none": ""}
CI = {"success": "✓", "failure": "✗", "running": "●", "pending": "○", "canceled": "⊘",
      "skipped": "-", "none": ""}
SHELL_STYLE = {"bash": "bash", "zsh": "zsh", "fish": "ansi"}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    with contextlib.ExitStack() as stack:
        yield start_fakes(stack, generate(github_repos=2, gitlab_projects=1, changes_per_repo=5,
                                          tickets=5, jira_projects=1))


@pytest.fixture
def team(sandbox, upstreams) -> dict[str, str]:
    """Checkouts of project web under src/: mine on my pull request's branch, a linked worktree
    on a teammate's, a detached HEAD; the daemon has polled and written the prompt files."""
    pull = my_pull(upstreams)
    other = next(pr for prs in upstreams.data.pulls.values() for pr in prs
                 if pr.head_ref != pull.head_ref and pr.state == "open")
    src = os.path.join(sandbox.root, "src")
    mine = git_checkout(os.path.join(src, "web"), pull.head_ref)
    os.makedirs(os.path.join(mine, "deep", "er"))
    worktree, detached = os.path.join(src, "web-wt"), os.path.join(src, "web-detached")
    for args in (["worktree", "add", "-q", "-b", other.head_ref, worktree],
                 ["worktree", "add", "-q", "--detach", detached]):
        subprocess.run(["git", *args], cwd=mine, check=True)
    configure(sandbox, config_text(upstreams, paths=[src]) + f"\n[prompt]\nformat = {FORMAT!r}\n")
    assert sandbox.client("refresh", "web").returncode == 0
    prompt_dir = paths.prompt_dir(sandbox.socket_path)
    wanted = [os.path.join(prompt_dir, mine.lstrip("/"), ".branch", pull.head_ref),
              os.path.join(prompt_dir, os.path.realpath(worktree).lstrip("/"), ".branch",
                           other.head_ref)]
    _wait_for(lambda: all(os.path.exists(path) for path in wanted), "the prompt files")
    return {"mine": mine, "sub": os.path.join(mine, "deep", "er"),
            "worktree": os.path.realpath(worktree), "detached": os.path.realpath(detached),
            "prompt_dir": prompt_dir}


def _wait_for(check, what: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.05)


def prompt(sandbox, cwd: str, *args: str) -> subprocess.CompletedProcess[str]:
    return sandbox.client("prompt", *args, cwd=cwd, timeout=20)


def test_prompt_shows_my_change_request_its_review_and_its_ci(sandbox, team) -> None:
    view = json.loads(sandbox.client("status", "--json", cwd=team["mine"]).stdout)
    request = view["branch"]["change_request"]
    expected = " ".join(part for part in (
        "web", f"#{request['number']}", REVIEW[request["review"]],
        CI[(request["ci"] or {"state": "none"})["state"]]) if part)
    for where in ("mine", "sub"):
        shown = prompt(sandbox, team[where])
        assert (shown.returncode, shown.stdout, shown.stderr) == (0, expected + "\n", "")
    custom = prompt(sandbox, team["mine"], "--format", "{number}/{project}")
    assert custom.stdout == f"{request['number']}/web\n"


def test_waiting_events_and_a_detached_head(sandbox, team, hub_server) -> None:
    assert prompt(sandbox, team["detached"]).stdout == "web\n"
    # Without a hub nothing is waiting to sync, however many events there are.
    assert sandbox.client("note", "a", cwd=team["detached"]).returncode == 0
    assert prompt(sandbox, team["detached"]).stdout == "web\n"
    hub = hub_server()
    with open(sandbox.config_path, "a") as handle:
        handle.write(f'\n[sync]\nhub = "{hub.url}"\ntoken = "pjh_refused"\n')
    assert sandbox.client("daemon", "restart").returncode == 0
    assert sandbox.client("note", "b", cwd=team["detached"]).returncode == 0
    assert prompt(sandbox, team["detached"]).stdout == "web ↑2\n"


def test_outside_a_project_or_a_repository_the_prompt_is_empty(sandbox, team, tmp_path) -> None:
    elsewhere = git_checkout(os.path.join(sandbox.root, "elsewhere"), "main")
    for cwd in (elsewhere, str(tmp_path)):
        shown = prompt(sandbox, cwd)
        assert (shown.returncode, shown.stdout, shown.stderr) == (0, "", "")


def test_without_a_daemon_the_prompt_is_empty_and_starts_none(sandbox) -> None:
    checkout = git_checkout(os.path.join(sandbox.root, "web"), "main")
    sandbox.write_config(f'[projects.web]\npaths = ["{checkout}"]\n')
    shown = prompt(sandbox, checkout)
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, "", "")
    # A socket file nobody listens on (a daemon killed with -9).
    os.makedirs(os.path.dirname(sandbox.socket_path), mode=0o700, exist_ok=True)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(sandbox.socket_path)
    dead.close()
    shown = prompt(sandbox, checkout)
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, "", "")
    # A broken config: still nothing, and still no daemon started to report it.
    os.unlink(sandbox.socket_path)
    sandbox.write_config("[projects.web\n")
    shown = prompt(sandbox, checkout)
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, "", "")
    assert not os.path.exists(sandbox.socket_path)
    assert not os.path.exists(os.path.join(sandbox.state_dir, "state.db"))


def test_a_daemon_that_does_not_answer_is_given_up_on(sandbox) -> None:
    checkout = git_checkout(os.path.join(sandbox.root, "web"), "main")
    os.makedirs(os.path.dirname(sandbox.socket_path), mode=0o700, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(sandbox.socket_path)
    listener.listen()
    held: list[socket.socket] = []
    accepting = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    accepting.start()
    try:
        # Far below the 20 s this test waits: only giving up can end it in time.
        shown = prompt(sandbox, checkout, "--timeout", "100")
        assert (shown.returncode, shown.stdout, shown.stderr) == (0, "", "")
        accepting.join(5)
        assert held, "the client never connected"
    finally:
        for conn in held:
            conn.close()
        listener.close()


def test_mistakes_in_the_command_line_are_reported(sandbox, team) -> None:
    bad = prompt(sandbox, team["mine"], "--format", "{branch}")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "unknown placeholder {branch}" in bad.stderr and "try:" in bad.stderr
    for args, problem in ((["--colour"], "unknown option '--colour'"),
                          (["--style", "neon"], "--style is one of plain, ansi, bash, zsh"),
                          (["--timeout", "soon"], "--timeout is in milliseconds"),
                          (["--format"], "--format needs a value")):
        result = prompt(sandbox, team["mine"], *args)
        assert result.returncode == 2 and problem in result.stderr, (args, result.stderr)
    assert "--style" in sandbox.client("prompt", "--help").stdout


def test_the_daemon_keeps_prompt_files_and_marks_them_when_it_stops(sandbox, team) -> None:
    directory = team["prompt_dir"]
    repo = os.path.join(directory, team["mine"].lstrip("/"), ".repo")
    with open(repo) as handle:
        lines = handle.read().split("\n")
    assert len(lines) == 9 and lines[8] == ""  # four styles, each fresh and gone
    assert lines[0] == "web" and lines[1] == "web ≈"
    assert lines[4] == "web" and lines[5] == "web \x01\x1b[2m\x02≈\x01\x1b[0m\x02"
    assert os.stat(directory).st_mode & 0o777 == 0o700
    assert os.path.exists(os.path.join(directory, ".alive"))
    assert sandbox.client("daemon", "stop").returncode == 0
    assert not os.path.exists(os.path.join(directory, ".alive"))
    assert os.path.exists(repo)


def _shell_prompt(shell: str, snippet: str, cwd: str) -> tuple[str, str]:
    """($PROJCTL_PROMPT, the prompt the shell printed) after `cd cwd` in an interactive shell."""
    if shell == "fish":
        script = (f"function fish_prompt; echo -n 'END> '; end; source {snippet}; cd {cwd}; "
                  "echo @''@; fish_prompt; echo; echo \"[$PROJCTL_PROMPT]\"")
        result = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True,
                                text=True, timeout=20)
    else:
        setup = {"bash": "PS1='END> '",
                 "zsh": "setopt no_prompt_sp no_prompt_cr; PROMPT='END> '"}
        lines = [f"{setup[shell]}; source {snippet}", f"cd {cwd}; echo @''@",
                 'echo "[$PROJCTL_PROMPT]"', "exit"]
        argv = ["bash", "--norc", "--noprofile", "-i"] if shell == "bash" else ["zsh", "-f", "-i"]
        result = subprocess.run(argv, input="\n".join(lines) + "\n", stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=20,
                                env={**os.environ, "TERM": "dumb"})
    # bash echoes the command after its prompt, zsh does not.
    match = re.search(r"@@\n(.*?)END> (?:[^\n]*\n)?\[(.*?)\]\n", result.stdout, re.S)
    assert match, result.stdout + (result.stderr or "")
    return match[2], match[1]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_shell_snippet_shows_what_projctl_prompt_shows(sandbox, team, shell) -> None:
    snippet = os.path.join(sandbox.root, f"init.{shell}")
    with open(snippet, "w") as handle:
        handle.write(sandbox.client("shell-init", shell).stdout)
    style = SHELL_STYLE[shell]
    for where in ("mine", "sub", "worktree", "detached"):
        expected = prompt(sandbox, team[where], "--style", style).stdout.rstrip("\n")
        assert expected.startswith("web"), (where, expected)
        segment, printed = _shell_prompt(shell, snippet, team[where])
        assert segment == expected, where
        assert _visible(printed) == _visible(segment) + " ", where
    outside, _ = _shell_prompt(shell, snippet, sandbox.root)
    assert outside == ""
    # With the daemon gone, the last segment shows, marked stale.
    assert sandbox.client("daemon", "stop").returncode == 0
    segment, _ = _shell_prompt(shell, snippet, team["detached"])
    assert _visible(segment) == "web ≈"


def _visible(text: str) -> str:
    """What a terminal shows of a segment: no colour codes or zero-width markers."""
    return re.sub(r"\x1b\[[0-9;]*m|[\x01\x02]|%\{|%\}", "", text)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_a_prompt_spawns_no_process(sandbox, team, shell) -> None:
    strace = shutil.which("strace")
    assert strace, "strace is needed (.ci/run installs it)"
    snippet = os.path.join(sandbox.root, f"init.{shell}")
    with open(snippet, "w") as handle:
        handle.write(sandbox.client("shell-init", shell).stdout)
    loop = {"bash": "for i in 1 2 3; do __projctl_prompt; done; echo \"$PROJCTL_PROMPT\"",
            "zsh": "for i in 1 2 3; do __projctl_prompt; done; echo \"$PROJCTL_PROMPT\"",
            "fish": "for i in 1 2 3; __projctl_prompt; end; echo \"$PROJCTL_PROMPT\""}[shell]
    argv = {"bash": ["bash", "--norc", "--noprofile", "-c"], "zsh": ["zsh", "-f", "-c"],
            "fish": ["fish", "--no-config", "-c"]}[shell]
    trace = os.path.join(sandbox.root, "trace")
    result = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork,execve", "-o", trace,
         *argv, f"source {snippet}; cd {team['mine']}; {loop}"],
        capture_output=True, text=True, timeout=30)
    assert _visible(result.stdout).startswith("web #"), result.stdout + result.stderr
    with open(trace) as handle:
        calls = [line for line in handle if "resumed" not in line]
    # The shell's own exec, and threads (fish starts some), are not processes spawned.
    spawned = [line for line in calls[1:] if "CLONE_THREAD" not in line]
    assert "execve" in calls[0] and spawned == []


@pytest.mark.parametrize(("branch", "safe"), [
    ("feature/login", True), ("fix-42", True), ("../../etc/passwd", False), ("a/../b", False),
    (".hidden", False), ("a//b", False), ("", False), ("tab\there", False),
])
def test_branch_names_from_upstream_cannot_escape_the_prompt_directory(branch, safe) -> None:
    assert _safe_branch(branch) is safe
