"""`projctl run`, `runs` and `deploy` by workflow, against a real daemon running real steps."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from test_upstream_status import git_checkout

README = os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs",
                      "workflows-and-plugins.md")
IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


@pytest.fixture
def repo(sandbox, monkeypatch) -> str:
    for name, value in IDENTITY.items():
        monkeypatch.setenv(name, value)
    sandbox.env.update(IDENTITY)
    checkout = git_checkout(os.path.join(sandbox.root, "app"), "main")
    sandbox.write_config(f'[projects.app]\npaths = ["{checkout}"]\n')
    os.makedirs(os.path.join(checkout, ".projctl", "workflows"))
    return checkout


def workflow(repo: str, name: str, text: str) -> None:
    with open(os.path.join(repo, ".projctl", "workflows", f"{name}.toml"), "w") as handle:
        handle.write(text)


def readme_release_workflow() -> str:
    with open(README) as handle:
        text = handle.read()
    match = re.search(r"```toml\n# \.projctl/workflows/release\.toml\n(.*?)```", text, re.S)
    assert match, "the docs' release workflow"
    return match[1]


def test_the_readme_release_workflow_runs_end_to_end(sandbox, repo) -> None:
    workflow(repo, "release", readme_release_workflow())
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "workflows"], cwd=repo, check=True)
    planned = sandbox.client("run", "release", "-P", "version=1.4.0", "--dry-run", cwd=repo)
    assert planned.returncode == 0, planned.stderr
    assert "- push would be skipped" in planned.stdout
    assert "nothing was run" in planned.stdout
    assert subprocess.run(["git", "tag"], cwd=repo, capture_output=True,
                          text=True).stdout == ""

    ran = sandbox.client("run", "release", "-P", "version=1.4.0", cwd=repo)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("▶ release  clean + compiles → tag → push → announce")
    assert "✓ tag" in ran.stdout and "- push skipped: condition is false" in ran.stdout
    assert lines[-1].startswith("✓ release succeeded")
    assert subprocess.run(["git", "tag"], cwd=repo, capture_output=True,
                          text=True).stdout == "v1.4.0\n"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True).stdout.strip()
    log = json.loads(sandbox.client("log", "--json", cwd=repo).stdout)
    notes = [e["payload"]["text"] for e in log["events"] if e["type"] == "note.added"]
    assert notes == [f"released v1.4.0 at {head[:12]}"]
    kinds = [e["type"] for e in log["events"] if e["type"].startswith("workflow.")]
    assert kinds[0] == "workflow.started" and kinds[-1] == "workflow.completed"
    assert kinds.count("workflow.step") == 5

    # Again: the tag exists now, so tag fails and everything after it is skipped.
    again = sandbox.client("run", "release", "-P", "version=1.4.0", cwd=repo)
    assert again.returncode == 1
    assert "✗ tag" in again.stdout and "✗ release failed (tag)" in again.stdout


def test_runs_lists_and_replays_and_mistakes_are_refused(sandbox, repo) -> None:
    workflow(repo, "hello", '[[steps]]\nname = "say"\ncommand = ["echo", "hello there"]\n')
    first = sandbox.client("run", "hello", cwd=repo)
    assert first.returncode == 0 and "say │ hello there" in first.stdout
    listed = json.loads(sandbox.client("runs", "--json").stdout)
    assert [(r["workflow"], r["success"], r["running"]) for r in listed] == \
        [("hello", True, False)]
    shown = sandbox.client("runs", "show", listed[0]["id"][-8:])
    assert shown.returncode == 0 and shown.stdout == first.stdout
    assert "succeeded" in sandbox.client("runs").stdout

    unknown = sandbox.client("run", "nope", cwd=repo)
    assert unknown.returncode == 1 and "no workflow named 'nope' (known here: hello)" in \
        unknown.stderr
    extra = sandbox.client("run", "hello", "-P", "x=1", cwd=repo)
    assert extra.returncode == 1 and "has no parameter 'x'" in extra.stderr
    assert sandbox.client("run", "hello", "-P", "novalue", cwd=repo).returncode == 2
    # -p is --project, as in note, log and deploy; a parameter given to it says so.
    old_habit = sandbox.client("run", "hello", "-p", "x=1", cwd=repo)
    assert old_habit.returncode == 2
    assert "a parameter is -P NAME=VALUE (--param)" in old_habit.stderr
    missing = sandbox.client("runs", "show", "0000000000")
    assert missing.returncode == 1 and "no run" in missing.stderr

    workflow(repo, "broken", '[[steps]]\nname = "a"\ncommand = ["true"]\n'
                             'condition = "steps.a.success or"\n')
    broken = sandbox.client("run", "broken", cwd=repo)
    assert broken.returncode != 0
    assert "broken.toml:4:" in broken.stderr, broken.stderr


def test_a_run_goes_on_when_the_client_goes_away(sandbox, repo) -> None:
    marker = os.path.join(sandbox.root, "go")
    workflow(repo, "slow", f'''[[steps]]
name = "wait"
command = ["sh", "-c", "echo waiting; while [ ! -e {marker} ]; do sleep 0.05; done"]
[[steps]]
name = "after"
command = ["echo", "done"]
''')
    watcher = subprocess.Popen([sys.executable, "-m", "projctl_client", "run", "slow"],
                               cwd=repo, env=sandbox.env, stdout=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert watcher.stdout is not None
    assert watcher.stdout.readline().startswith("▶ slow")
    while "waiting" not in watcher.stdout.readline():
        pass
    watcher.send_signal(signal.SIGINT)
    assert watcher.wait(20) == 130
    running = json.loads(sandbox.client("runs", "--json").stdout)
    assert [(r["workflow"], r["running"]) for r in running] == [("slow", True)]
    open(marker, "w").close()
    followed = sandbox.client("runs", "show", running[0]["id"])
    assert followed.returncode == 0, followed.stdout
    assert "after │ done" in followed.stdout and "✓ slow succeeded" in followed.stdout


def test_deploy_runs_the_deploy_workflow_and_records_its_outcome(sandbox, repo) -> None:
    broken = os.path.join(sandbox.root, "broken")
    workflow(repo, "deploy", '''[params.env]
required = true
[params.deployment]
required = true
[[steps]]
name = "ship"
command = ["sh", "-c", "echo shipping {{ params.env }} {{ params.deployment }}; test ! -e BROKEN"]
'''.replace("BROKEN", broken))
    ok = sandbox.client("deploy", "staging", cwd=repo)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    open(broken, "w").close()
    failed = sandbox.client("deploy", "production", cwd=repo)
    assert failed.returncode == 1 and "✗ ship" in failed.stdout

    events = json.loads(sandbox.client("log", "--json", cwd=repo).stdout)["events"]
    deployments = [e for e in events if e["type"].startswith("deployment.")]
    assert [e["type"] for e in deployments] == [
        "deployment.started", "deployment.completed", "deployment.started", "deployment.failed"]
    first, second = deployments[0]["payload"], deployments[2]["payload"]
    assert f"ship │ shipping staging {first['deployment']}" in ok.stdout
    assert f"ship │ shipping production {second['deployment']}" in failed.stdout
    assert "workflow deploy failed" in deployments[3]["payload"]["reason"]

    dry = sandbox.client("deploy", "production", "--dry-run", cwd=repo)
    assert dry.returncode == 0 and "by the deploy workflow" in dry.stdout
    assert "● ship" in dry.stdout and "nothing was run" in dry.stdout
    after = json.loads(sandbox.client("log", "--json", cwd=repo).stdout)["events"]
    assert len([e for e in after if e["type"].startswith("deployment.")]) == 4
