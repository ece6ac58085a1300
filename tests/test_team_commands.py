"""`projctl note`, `branch create`, `deploy`, `log` and `sync` with a real daemon, git and sh."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest

from projctl_client import render
from projctl_client.cli import parse_since
from projctl_client.connection import request
from projctl_client.git import find_checkout

# demo runs tests/…/deploy.sh; plain has no deploy command; broken's command does not exist.
CONFIG = """\
[projects.demo]
paths = ["{root}/demo"]
environments = ["staging", "production", "slow"]
deploy = "sh {root}/deploy.sh"

[projects.plain]
paths = ["{root}/plain"]

[projects.broken]
paths = ["{root}/broken"]
deploy = "projctl-test-no-such-command --now"
"""

# Writes what it was given to deployed.txt; fails for staging; waits for Ctrl-C for slow.
DEPLOY_SCRIPT = """\
printf '%s\\n' "$PROJCTL_ENVIRONMENT" "$PROJCTL_BRANCH" "$PROJCTL_COMMIT" \\
    "$PROJCTL_DEPLOYMENT" "$PWD" > "{root}/deployed.txt"
echo "deploy script for $PROJCTL_ENVIRONMENT"
case "$PROJCTL_ENVIRONMENT" in
    staging) echo "staging refused: smoke test failed"; exit 3 ;;
    slow) trap 'echo cleaned up; exit 4' INT; touch "{root}/slow-started"; sleep 20 ;;
esac
exit 0
"""


def git(*args: str, cwd: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def demo(sandbox):
    """Projects demo (a git checkout on `main` with one commit), plain and broken; a daemon."""
    root = os.path.join(sandbox.root, "demo")
    os.makedirs(root)
    os.makedirs(os.path.join(sandbox.root, "broken"))
    git("init", "-q", "-b", "main", cwd=root)
    git("commit", "-q", "--allow-empty", "-m", "first", cwd=root)
    with open(os.path.join(sandbox.root, "deploy.sh"), "w") as handle:
        handle.write(DEPLOY_SCRIPT.format(root=sandbox.root))
    sandbox.write_config(CONFIG.format(root=sandbox.root))
    daemon = sandbox.start_daemon()
    yield root
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=15)


def run(sandbox, *args: str, cwd: str, code: int = 0,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = sandbox.client(*args, cwd=cwd, env=env)
    assert result.returncode == code, (result.stdout, result.stderr)
    return result


def events(sandbox, cwd: str, project: str | None = None, types: tuple[str, ...] = ()
           ) -> list[dict]:
    """The log as the daemon answers it (one in-process request: faster than `log --json`)."""
    with sandbox.connect() as conn:
        view = conn.call(request("log", checkout=find_checkout(cwd), project=project,
                                 types=list(types)))
    return view["events"]


def deployments(sandbox, project: str) -> dict[str, dict]:
    """The latest deployment of each environment of `project`, from the status view."""
    with sandbox.connect() as conn:
        view = conn.call(request("status"))
    found = next(p for p in view["projects"] if p["name"] == project)["deployments"]
    latest: dict[str, dict] = {}
    for deployment in found:
        latest.setdefault(deployment["environment"], deployment)
    return latest


def test_a_note_is_kept_here_shown_by_log_and_editable_by_its_short_id(sandbox, demo) -> None:
    noted = run(sandbox, "note", "cache flushed\nafter the incident", cwd=demo)
    match = re.fullmatch(r"noted in demo \(([0-9a-f]{8})\) \(no hub configured: kept on this "
                         r"machine\)\n", noted.stdout)
    assert match, noted.stdout
    view = json.loads(run(sandbox, "log", "--json", cwd=demo).stdout)
    assert "type" not in view and view["project"] == "demo" and view["sync"]["hub"] is None
    [event] = view["events"]
    assert event["type"] == "note.added"
    assert event["payload"]["text"] == "cache flushed\nafter the incident"
    assert event["payload"]["note"].endswith(match[1])
    assert event["waiting"] is True and event["mine"] is True

    text = run(sandbox, "log", cwd=demo).stdout.splitlines()
    assert text[0] == "demo: 1 event, oldest first"
    assert f"note.added  {match[1]}  cache flushed …  (not synced yet)" in text[1]

    edited = run(sandbox, "note", "--edit", match[1], "cache flushed twice", cwd=demo)
    assert edited.stdout.startswith(f"edited note in demo ({match[1]})")
    last = run(sandbox, "log", "--type", "note", cwd=demo).stdout.splitlines()[-1]
    assert "note.edited" in last and last.endswith(f"{match[1]}  cache flushed twice  "
                                                   "(not synced yet)")
    unknown = run(sandbox, "note", "--edit", "ffffffff", "x", cwd=demo, code=1)
    assert "no note of demo with an id starting or ending 'ffffffff'" in unknown.stderr
    assert run(sandbox, "note", "", cwd=demo, code=2).stderr.startswith("projctl: a note needs")


def test_note_takes_the_hot_path_without_click(sandbox, demo) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "projctl_client", "note", "quick one"],
        cwd=demo, env=sandbox.env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    names = {line.rsplit("|", 1)[1].strip().split(".")[0]
             for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "projctl_client" in names
    assert not names & {"click", "msgspec", "subprocess", "socket"}
    # Words without quotes and options go through click, to the same place.
    run(sandbox, "note", "-p", "plain", "two", "words", cwd=demo)
    assert events(sandbox, demo, "plain")[0]["payload"]["text"] == "two words"


def test_note_outside_any_project_says_to_name_one(sandbox, demo) -> None:
    outside = run(sandbox, "note", "lost", cwd=sandbox.root, code=1)
    assert "not in a configured project" in outside.stderr
    assert "try: projctl note --project demo" in outside.stderr
    unknown = run(sandbox, "note", "--project", "nope", "x", cwd=demo, code=1)
    assert "no project named 'nope' (configured: demo, plain, broken)" in unknown.stderr
    assert events(sandbox, demo) == []


def test_branch_create_switches_and_records_or_records_nothing_when_git_refuses(
        sandbox, demo) -> None:
    head = git("rev-parse", "HEAD", cwd=demo)
    created = run(sandbox, "branch", "create", "login-page", cwd=demo)
    assert created.stdout == (f"recorded branch login-page at {head[:7]} in demo "
                              "(no hub configured: kept on this machine)\n")
    assert "Switched to a new branch 'login-page'" in created.stderr  # git's own words
    assert git("branch", "--show-current", cwd=demo) == "login-page"
    [event] = events(sandbox, demo, types=("branch",))
    assert event["type"] == "branch.created"
    assert event["payload"] == {"name": "login-page", "base": "main", "commit": head}
    assert f"login-page from main at {head[:7]}" in run(sandbox, "log", cwd=demo).stdout

    again = run(sandbox, "branch", "create", "login-page", "--from", "main", cwd=demo, code=1)
    assert "fatal: a branch named 'login-page' already exists" in again.stderr
    assert "nothing was recorded" in again.stderr
    assert len(events(sandbox, demo, types=("branch",))) == 1

    git("commit", "-q", "--allow-empty", "-m", "second", cwd=demo)
    run(sandbox, "branch", "create", "hotfix", "--from", "main", "--no-switch", cwd=demo)
    assert git("branch", "--show-current", cwd=demo) == "login-page"
    assert events(sandbox, demo, types=("branch",))[-1]["payload"] == {
        "name": "hotfix", "base": "main", "commit": head}

    outside = run(sandbox, "branch", "create", "x", cwd=sandbox.root, code=1)
    assert "not in a git checkout" in outside.stderr


def test_deploy_without_a_command_records_started_and_completed(sandbox, demo) -> None:
    result = run(sandbox, "deploy", "production", "--project", "plain", cwd=demo)
    assert "recorded a deployment of main@" in result.stdout
    assert "no deploy command is configured, so nothing ran" in result.stdout
    assert "[projects.plain]" in result.stdout
    found = events(sandbox, demo, "plain", ("deployment",))
    assert [e["type"] for e in found] == ["deployment.started", "deployment.completed"]
    assert found[0]["payload"]["branch"] == "main"
    assert found[0]["payload"]["commit"] == git("rev-parse", "HEAD", cwd=demo)
    production = deployments(sandbox, "plain")["production"]
    assert production["state"] == "completed" and production["duration"] == 0


def test_deploy_runs_the_command_with_its_variables_and_records_how_it_went(
        sandbox, demo) -> None:
    head = git("rev-parse", "HEAD", cwd=demo)
    done = run(sandbox, "deploy", "production", cwd=demo)
    assert re.search(rf"^deployed main@{head[:7]} to production in [\d.]+ s", done.stdout, re.M)
    assert "deploy script for" not in done.stdout  # quiet unless --verbose
    with open(os.path.join(sandbox.root, "deployed.txt")) as handle:
        environment, branch, commit, deployment, cwd = handle.read().splitlines()
    assert (environment, branch, commit, cwd) == ("production", "main", head, demo)
    view = json.loads(run(sandbox, "status", "--json", cwd=demo).stdout)
    [production] = next(p for p in view["projects"] if p["name"] == "demo")["deployments"]
    assert production["deployment"] == deployment
    assert production["state"] == "completed" and production["exit_status"] == 0
    assert production["branch"] == "main" and production["commit"] == head

    failed = run(sandbox, "deploy", "staging", cwd=demo, code=1)
    assert "staging refused: smoke test failed" in failed.stderr
    assert "deployment to staging failed (exit status 3) after" in failed.stderr
    staging = deployments(sandbox, "demo")["staging"]
    assert staging["state"] == "failed" and staging["exit_status"] == 3
    assert staging["reason"] == "exited with status 3"

    git("switch", "-q", "-c", "other", cwd=demo)
    verbose = run(sandbox, "deploy", "production", "--branch", "main", "--verbose", cwd=demo)
    assert "deploy script for production" in verbose.stdout
    with open(os.path.join(sandbox.root, "deployed.txt")) as handle:
        assert handle.read().splitlines()[1:3] == ["main", head]

    # Wide enough for a failed deployment's reason on its line.
    status = run(sandbox, "status", cwd=demo, env={"COLUMNS": "120"}).stdout
    assert "  Deployments" in status
    assert re.search(rf"✗ staging     main@{head[:7]}  \S+  (just now|\d+ s ago) · failed after "
                     r"[\d.]+ s: exited with status 3", status)
    assert re.search(rf"✓ production  main@{head[:7]}  \S+  (just now|\d+ s ago) · took ", status)
    assert "Sync      no hub configured · 6 events on this machine only" in status


def test_deploy_dry_run_unknown_environment_and_bad_branch_record_nothing(
        sandbox, demo) -> None:
    dry = run(sandbox, "deploy", "production", "--dry-run", cwd=demo)
    assert f"  run  sh {sandbox.root}/deploy.sh" in dry.stdout
    assert "  in   ~/demo" in dry.stdout
    assert "nothing was run or recorded (--dry-run)" in dry.stdout
    plain = run(sandbox, "deploy", "staging", "--dry-run", "-p", "plain", cwd=demo)
    assert "no deploy command configured: would only record the deployment" in plain.stdout

    unknown = run(sandbox, "deploy", "prod", cwd=demo, code=1)
    assert "demo has no environment 'prod' (it has: staging, production, slow)" in unknown.stderr
    # The closest environment is suggested, not the first one configured.
    assert "  try: projctl deploy production" in unknown.stderr
    typo = run(sandbox, "deploy", "stagign", cwd=demo, code=1)
    assert "  try: projctl deploy staging" in typo.stderr
    bad_branch = run(sandbox, "deploy", "production", "--branch", "nope", cwd=demo, code=2)
    assert "'nope' names no commit" in bad_branch.stderr

    assert events(sandbox, demo) == []
    assert not os.path.exists(os.path.join(sandbox.root, "deployed.txt"))
    assert deployments(sandbox, "demo") == {}


def test_a_deploy_command_that_cannot_start_is_recorded_as_failed(sandbox, demo) -> None:
    result = run(sandbox, "deploy", "production", "-p", "broken", cwd=demo, code=1)
    assert "failed (command not found: projctl-test-no-such-command)" in result.stderr
    assert "try: fix deploy in [projects.broken]" in result.stderr
    production = deployments(sandbox, "broken")["production"]
    assert production["state"] == "failed"
    assert production["reason"] == "command not found: projctl-test-no-such-command"


def test_ctrl_c_waits_for_the_command_and_records_it_interrupted(sandbox, demo) -> None:
    client = subprocess.Popen(
        [sys.executable, "-m", "projctl_client", "deploy", "slow", "--verbose"], cwd=demo,
        env=sandbox.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches
        # A job started with `&` by a non-interactive shell (a CI runner) inherits SIGINT
        # ignored, and so would the client; in a terminal it is never ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    marker = os.path.join(sandbox.root, "slow-started")
    deadline = time.monotonic() + 15
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(client.pid, signal.SIGINT)
    out, err = client.communicate(timeout=15)
    assert client.returncode == 130, (out, err)
    assert "cleaned up" in out  # the command had its say before projctl recorded the end
    assert "deployment to slow failed (interrupted)" in err
    slow = deployments(sandbox, "demo")["slow"]
    assert slow["state"] == "failed" and slow["reason"] == "interrupted"


def test_log_type_takes_families_and_any_start_of_one(sandbox, demo) -> None:
    run(sandbox, "deploy", "staging", cwd=demo, code=1)  # its script refuses staging
    run(sandbox, "note", "hello", cwd=demo)
    for asked in ("deployment.failed",):
        assert "deploy" in run(sandbox, "log", "--type", asked, cwd=demo).stdout
    for asked in ("deployment", "deploy", "dep", "deployment.s"):
        shown = run(sandbox, "log", "--type", asked, cwd=demo).stdout
        assert "deploy" in shown and "hello" not in shown, asked
    assert "hello" in run(sandbox, "log", "--type", "n", cwd=demo).stdout
    # Another type (a plugin's, a newer projctl's) matches only itself.
    assert run(sandbox, "log", "--type", "x.sentry", cwd=demo).stdout.strip() == \
        "demo: no events match (try without --since or --type)"


def test_log_since_takes_durations_and_local_dates(sandbox, demo) -> None:
    now = 1_800_000_000.0
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2h", now) == now - 7200
    assert parse_since("3d", now) == now - 3 * 86400
    assert parse_since("1w", now) == now - 7 * 86400
    assert parse_since("2026-01-02", now) == datetime(2026, 1, 2).timestamp()
    assert parse_since("2026-01-02T03:04", now) == datetime(2026, 1, 2, 3, 4).timestamp()
    for bad in ("yesterday", "5", "m", "-3d", "2026-13-01", "2026-01-02 03:04", "1.5h"):
        assert parse_since(bad, now) is None, bad

    run(sandbox, "note", "recent", cwd=demo)
    assert "recent" in run(sandbox, "log", "--since", "1h", cwd=demo).stdout
    assert "recent" in run(sandbox, "log", "--since", "2020-01-01T10:00", cwd=demo).stdout
    later = run(sandbox, "log", "--since", "2100-01-01", cwd=demo).stdout
    assert later.strip() == "demo: no events match (try without --since or --type)"
    bad = run(sandbox, "log", "--since", "yesterday", cwd=demo, code=2)
    assert "30m, 2h, 3d, 1w" in bad.stderr and "YYYY-MM-DDTHH:MM" in bad.stderr
    empty = run(sandbox, "log", "plain", cwd=demo).stdout
    assert empty.startswith("plain: no events yet\n  try: projctl note")


def test_sync_without_a_hub_says_events_stay_here_and_how_to_set_one(sandbox, demo) -> None:
    assert "Sync" not in run(sandbox, "status", cwd=demo).stdout  # nothing to say yet
    run(sandbox, "note", "offline", cwd=demo)
    for args in (["sync"], ["sync", "--now", "--wait", "2"]):
        result = run(sandbox, *args, cwd=demo)
        assert result.stdout.startswith("no hub configured: events stay on this machine\n")
        assert "waiting    1 event (sent once a hub is set)" in result.stdout
        assert '[sync]\n  hub = "https://hub.example.com"' in result.stdout
        assert "PROJCTL_HUB_TOKEN" in result.stdout
    status = run(sandbox, "status", cwd=demo).stdout
    assert "\nSync      no hub configured · 1 event on this machine only\n" in status


def test_a_required_upgrade_shows_the_exact_command(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")  # the sync line whole on one line
    now = time.time()
    sync = {"hub": "https://hub.example.com", "device": "0123456789abcdef", "waiting": 2,
            "reachable": True, "syncing": False, "last_attempt": now - 3, "last_success": None,
            "next_attempt": now + 60, "failures": 1,
            "error": {"code": "upgrade_required",
                      "message": "the hub refused: this hub needs projctl 0.3.0 or newer",
                      "suggestions": ["pip install --upgrade 'projctl>=0.3.0'",
                                      "projctl daemon restart"]},
            "pushed": 0, "pulled": 0}
    lines = render.sync(sync).splitlines()
    assert lines[0] == "upgrade needed: the hub refused: this hub needs projctl 0.3.0 or newer"
    assert lines[1] == "  run: pip install --upgrade 'projctl>=0.3.0'"
    assert "waiting    2 events" in lines
    daemon = {"version": render.__version__, "started_at": now, "config_loaded_at": now,
              "config_path": "/etc/projctl.toml"}
    status = render.status({"checkout": None, "daemon": daemon, "projects": [], "sync": sync,
                            "state": {"checkouts_known": 0, "created_at": now}}).splitlines()
    index = next(i for i, line in enumerate(status) if line.startswith("Sync"))
    assert status[index] == ("Sync      hub.example.com: the hub refused: this hub needs projctl "
                             "0.3.0 or newer (2 waiting, last sync never)")
    assert status[index + 1] == "          try: pip install --upgrade 'projctl>=0.3.0'"
