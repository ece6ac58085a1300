"""Desktop notifications on a real session bus, the inbox against the fakes, watch and wait.

The bus is `dbus-daemon --session` with a notification server of ours (notification_server.py)
that records what it is asked to show, as the Desktop Notifications Specification defines it.
The fakes answer as GitHub documents /notifications (docs.github.com/rest/activity/
notifications: Last-Modified, If-Modified-Since answered 304 at no rate cost, X-Poll-Interval,
PATCH /notifications/threads/{id} answered 205) and GitLab /todos (docs.gitlab.com/api/todos:
GET /todos, POST /todos/:id/mark_as_done, which needs the `api` scope).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta

import msgspec
import pytest
from notification_server import start_session_bus
from test_upstream_status import config_text, configure, git_checkout, my_pull

from projctl_client.protocol import DeploymentView
from projctld.config import DesktopConfig
from projctld.sandbox.dataset import Thread, Todo
from projctld.store.database import Database
from projctld.store.notifications import NotificationTable
from projctld.store.runs import RunRow
from projctld.upstream.notify.desktop import Desktop
from projctld.upstream.notify.notifier import Notifier
from projctld.upstream.notify.transitions import Transition


@pytest.fixture
def bus():
    session = start_session_bus()
    session.serve_notifications()
    yield session
    session.stop()


def _ci(pull, state: str) -> None:
    """Every check of `pull` running, or completed with conclusion `state`."""
    for check in pull.checks:
        if state == "running":
            check.status, check.conclusion = "in_progress", None
        else:
            check.status, check.conclusion = "completed", state
            if check.kind == "status":
                check.conclusion = state
    pull.updated_at = time.time()


def _refresh(sandbox) -> None:
    done = sandbox.client("refresh", "--wait", "30")
    assert done.returncode == 0, done.stdout + done.stderr


def _notifications(sandbox) -> list[dict]:
    listed = sandbox.client("notifications", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["notifications"]


def _with_desktop(up, extra: str = "", paths: list[str] = ()) -> str:
    return config_text(up, paths=list(paths)) + f"\n[desktop]\nburst = 0.3\n{extra}\n"


def test_a_change_is_told_once_grouped_never_at_start_or_after_a_restart(
        sandbox, upstreams, bus) -> None:
    pull = my_pull(upstreams)
    _ci(pull, "running")
    pull.review_decision, pull.reviews = "REVIEW_REQUIRED", []
    configure(sandbox, _with_desktop(upstreams))
    browser = os.path.join(sandbox.root, "browser")
    opened = os.path.join(sandbox.root, "opened")
    with open(browser, "w") as handle:
        handle.write(f"#!/bin/sh\necho \"$1\" >> {opened}\n")
    os.chmod(browser, 0o755)
    sandbox.env.update(DBUS_SESSION_BUS_ADDRESS=bus.address, BROWSER=browser)
    sandbox.start_daemon()
    _refresh(sandbox)  # the state found at start-up: nothing to tell
    _refresh(sandbox)
    time.sleep(0.6)
    assert bus.shown == [] and _notifications(sandbox) == []

    _ci(pull, "success")  # CI passed and approved, in one poll: one grouped notification
    pull.review_decision = "APPROVED"
    _refresh(sandbox)
    shown = bus.wait_for(1)
    ref = f"{pull.repo}#{pull.number}"
    assert len(shown) == 1, shown
    assert shown[0].summary == f"2 updates on {ref}"
    assert "CI passed" in shown[0].body and "approved" in shown[0].body
    assert shown[0].actions[:1] == ["default"]  # clicking opens it
    told = _notifications(sandbox)
    assert len(told) == 1 and told[0]["shown"], told
    assert told[0]["kinds"] == ["approved", "ci"]

    bus.click(shown[0].id)
    deadline = time.monotonic() + 10
    # The shell creates the file for its `>>` before echo writes the line: wait for the line.
    while not (os.path.exists(opened) and os.path.getsize(opened)) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(opened) as handle:
        assert handle.read().strip().startswith("http")

    # A restart tells nothing: neither the state found nor what was told already.
    assert sandbox.client("daemon", "restart").returncode == 0
    _refresh(sandbox)
    _refresh(sandbox)
    time.sleep(0.6)
    assert len(bus.shown) == 1 and len(_notifications(sandbox)) == 1

    # A new push, its CI run and pass: a new run, told (the checks page is the same address).
    _ci(pull, "running")
    _refresh(sandbox)
    _ci(pull, "success")
    _refresh(sandbox)
    shown = bus.wait_for(2)
    assert len(shown) == 2 and shown[1].summary == f"{ref}: CI passed (30 checks)", shown


def _notifier(tmp: str, **config: object) -> tuple[Notifier, NotificationTable]:
    table = NotificationTable(Database(os.path.join(tmp, "state.db")))
    return Notifier(DesktopConfig(burst=0.0, **config), table, Desktop()), table


def _told(notifier: Notifier, *batches: list[Transition]) -> None:
    """Each batch added and delivered in turn, on one event loop (as in the daemon)."""
    async def go() -> None:
        for found in batches:
            notifier.add(found)
            for group in sorted(notifier._pending.values()):
                await notifier._deliver(group[1])
            notifier._pending.clear()

    asyncio.run(go())


def _transition(n: int, kind: str = "ci") -> Transition:
    return Transition(kind, f"{kind}:{n}", "web", f"acme/web#{n}", "CI passed", None)


def test_quiet_hours_the_rate_bound_and_switches_record_without_showing(
        tmp_path, bus, monkeypatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
    now = datetime.now()
    quiet = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"
    notifier, table = _notifier(str(tmp_path / "a"), quiet_hours=quiet)
    os.makedirs(tmp_path / "a", exist_ok=True)
    _told(notifier, [_transition(1)])
    assert bus.shown == []
    assert table.recent(5)[0].why_not == f"quiet hours ({quiet})"

    os.makedirs(tmp_path / "b")
    notifier, table = _notifier(str(tmp_path / "b"), per_minute=2, approved=False)
    _told(notifier, [_transition(1)], [_transition(2)], [_transition(3)],
          [_transition(4, "approved")],
          [_transition(1)])  # told already: nothing
    assert [s.summary for s in bus.wait_for(2)] == ["acme/web#1: CI passed",
                                                   "acme/web#2: CI passed"]
    reasons = [note.why_not for note in table.recent(10)]
    assert reasons == ["switched off ([desktop] approved = false)",
                       "over the rate bound ([desktop] per_minute = 2)", None, None]


def test_a_finished_workflow_run_and_a_teammates_failed_deployment_are_told(
        tmp_path, bus, monkeypatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
    notifier, table = _notifier(str(tmp_path))
    notifier.run_finished(RunRow(id="0190abcd-run", project="web", workflow="release",
                                 started_at=1.0, finished_at=2.0, success=False))
    running = DeploymentView(deployment="d1", environment="staging", state="running",
                             actor="lee")
    notifier.deployments("web", [running], mine=set())  # the first look: only remembered
    notifier.deployments("web", [msgspec.structs.replace(running, state="failed")], mine=set())
    _told(notifier, [])
    assert [s.summary for s in bus.wait_for(2)] == [
        "web: workflow release failed (run abcd-run)",
        "staging: lee's deployment failed"]
    assert [n.kinds for n in table.recent(5)] == [["deployment_failed"], ["workflow_finished"]]


def test_no_session_bus_is_harmless_and_says_why(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # no `bus` in it
    notifier, table = _notifier(str(tmp_path))
    _told(notifier, [_transition(1)])
    note = table.recent(1)[0]
    assert not note.shown and note.why_not.startswith("no desktop session bus")


def test_the_inbox_lists_polls_conditionally_and_marks_done_upstream(sandbox, upstreams) -> None:
    data, now = upstreams.data, time.time()
    pull = my_pull(upstreams)
    data.notifications.append(Thread("901", "review_requested", pull.repo, "Please look",
                                     number=pull.number, updated_at=now - 60))
    data.todos.append(Todo(77, "build_failed", data.gitlab_projects[0], "Fix the build",
                           iid=3, author="lee", created_at=now - 30))
    upstreams.github.notifications_touched()
    configure(sandbox, config_text(upstreams))
    sandbox.start_daemon()
    _refresh(sandbox)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        report = json.loads(sandbox.client("inbox", "--json").stdout)
        if report["known"] == "complete":
            break
        time.sleep(0.1)
    assert report["known"] == "complete", report
    ids = {item["id"]: item for item in report["items"]}
    assert set(ids) == {"github:901", "gitlab:77"}
    assert ids["github:901"]["url"] == f"{upstreams.github_url}/{pull.repo}/pull/{pull.number}"
    assert ids["github:901"]["reason"] == "review_requested"
    assert {s["upstream"]: s["poll_interval"] for s in report["sources"]}["github"] == 60
    text = sandbox.client("status")
    assert "Inbox     2 items need you" in text.stdout, text.stdout

    upstreams.github.reset_log()
    _refresh(sandbox)  # nothing changed: If-Modified-Since, answered 304
    asked = [r for r in upstreams.github.requests if r.path.startswith("/notifications")]
    assert asked and asked[-1].status == 304 and "if-modified-since" in asked[-1].headers

    done = sandbox.client("inbox", "done", "901")
    assert done.returncode == 0, done.stderr
    assert not data.notifications[0].unread
    assert any(r.method == "PATCH" and r.status == 205 for r in upstreams.github.requests)
    refused = sandbox.client("inbox", "done", "gitlab:77")  # read_api cannot write
    assert refused.returncode == 1 and "api" in refused.stderr, refused.stderr
    upstreams.gitlab.scopes = ["api"]
    assert sandbox.client("inbox", "done", "gitlab:77").returncode == 0
    assert data.todos[0].state == "done"
    report = json.loads(sandbox.client("inbox", "--json").stdout)
    assert report["items"] == []
    unknown = sandbox.client("inbox", "done", "nosuch")
    assert unknown.returncode == 1 and "projctl inbox" in unknown.stderr


def _wait(sandbox, checkout: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "projctl_client", "wait", *args],
                            cwd=checkout, env=sandbox.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_wait_exits_0_passed_1_failed_124_timeout_2_bad_usage_across_a_restart(
        sandbox, upstreams) -> None:
    pull = my_pull(upstreams)
    _ci(pull, "running")
    checkout = git_checkout(os.path.join(sandbox.root, "web"), pull.head_ref)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True,
                          text=True, check=True).stdout.strip()
    before_push = pull.head_sha  # the upstream shows the CI of a commit before ours
    configure(sandbox, config_text(upstreams, paths=[checkout]))
    sandbox.start_daemon()
    _refresh(sandbox)

    timed_out = _wait(sandbox, checkout, "ci", "--timeout", "1")
    assert timed_out.wait(20) == 124, timed_out.stderr.read()

    bad = _wait(sandbox, checkout, "ci", "nosuch#1")
    assert bad.wait(20) == 2

    waiting = _wait(sandbox, checkout, "ci", "--timeout", "60")
    time.sleep(1)
    assert waiting.poll() is None
    _ci(pull, "failure")  # of the commit before ours: not our outcome
    _refresh(sandbox)
    time.sleep(1)
    assert waiting.poll() is None, waiting.stdout.read()
    pull.head_sha = head  # pushed: the upstream's head is ours, and its CI failed
    _refresh(sandbox)
    assert waiting.wait(20) == 1
    out, progress = waiting.stdout.read(), waiting.stderr.read()
    assert "CI failed" in out and f"{pull.repo}#{pull.number}" in out
    assert f"that is the CI of {before_push[:8]}; waiting for your HEAD {head[:8]}" in progress

    _ci(pull, "running")
    _refresh(sandbox)
    waiting = _wait(sandbox, checkout, "ci", f"#{pull.number}", "--timeout", "60")
    time.sleep(1)
    assert sandbox.client("daemon", "restart").returncode == 0  # the client reconnects
    time.sleep(1)
    assert waiting.poll() is None
    _ci(pull, "success")
    _refresh(sandbox)
    assert waiting.wait(30) == 0, waiting.stderr.read()
    assert "CI passed" in waiting.stdout.read()

    pull.review_decision, pull.reviews = "REVIEW_REQUIRED", []
    _refresh(sandbox)
    reviewing = _wait(sandbox, checkout, "review", "--timeout", "60")
    time.sleep(1)
    assert reviewing.poll() is None
    pull.review_decision, pull.updated_at = "CHANGES_REQUESTED", time.time()
    _refresh(sandbox)
    assert reviewing.wait(20) == 1
    assert "review changes requested" in reviewing.stdout.read()
