"""End to end: a real projctld polls the fake upstreams; `projctl` shows, refreshes, survives."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

from projctl_client.connection import request
from projctld.sandbox.demo import TOKEN, Upstreams


def git_checkout(path: str, branch: str) -> str:
    os.makedirs(path)
    for command in (["init", "-q", "-b", branch], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", *command],
                       cwd=path, check=True)
    return os.path.realpath(path)


def config_text(up: Upstreams, *, paths: list[str] = (), token_line: str | None = None,
                jql: str | None = None) -> str:
    token = token_line or f'token = "{TOKEN}"'
    key = up.data.jira_projects[0]
    return f"""
[github]
api_url = "{up.github_url}"
token_env = ""
{token}

[gitlab]
url = "{up.gitlab_url}"
token_env = ""
{token}

[jira]
url = "{up.jira_url}"
email = "{up.data.jira_email}"
token_env = ""
{token}

[projects.web]
paths = {json.dumps(list(paths))}
github = {json.dumps(up.data.github_repos)}
gitlab = {json.dumps(up.data.gitlab_projects)}
jira = "{jql or f'project = {key} AND assignee = currentUser() ORDER BY updated DESC'}"
"""


def configure(sandbox, text: str) -> None:
    sandbox.write_config(text)
    os.chmod(sandbox.config_path, 0o600)


def my_pull(up: Upstreams):
    me = up.data.github_login
    return next(pr for prs in up.data.pulls.values() for pr in prs
                if pr.author == me and pr.state == "open")


def test_refresh_then_status_shows_my_work_and_my_branch(sandbox, upstreams) -> None:
    pull = my_pull(upstreams)
    checkout = git_checkout(os.path.join(sandbox.root, "web"), pull.head_ref)
    configure(sandbox, config_text(upstreams, paths=[checkout]))

    refreshed = sandbox.client("refresh", "web")
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    assert "github" in refreshed.stdout and "ok" in refreshed.stdout
    assert "tickets" in refreshed.stdout

    text = sandbox.client("status", cwd=checkout)
    assert text.returncode == 0, text.stderr
    assert "Change requests" in text.stdout and "Tickets" in text.stdout
    ref = f"{pull.repo}#{pull.number}"
    here = text.stdout.split("\n\n")[0]
    assert ref in here  # the current branch's pull request, under `Here`

    view = json.loads(sandbox.client("status", "--json", cwd=checkout).stdout)
    assert view["branch"]["change_request"]["ref"] == ref
    web = view["projects"][0]
    assert {s["upstream"] for s in web["sources"]} == {"github", "gitlab", "jira"}
    assert all(s["error"] is None and s["fetched_at"] for s in web["sources"])
    assert web["tickets"] and web["change_requests"]


def test_the_first_poll_runs_on_schedule_without_a_refresh(sandbox, upstreams, daemon) -> None:
    configure(sandbox, config_text(upstreams))
    sandbox.client("daemon", "restart")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        view = json.loads(sandbox.client("status", "--json").stdout)
        if all(s["fetched_at"] for s in view["projects"][0]["sources"]):
            break
        time.sleep(0.2)
    assert all(s["fetched_at"] for s in view["projects"][0]["sources"]), view["projects"][0]


def test_after_a_restart_status_is_instant_and_the_next_poll_conditional(
        sandbox, upstreams) -> None:
    configure(sandbox, config_text(upstreams))
    assert sandbox.client("refresh").returncode == 0
    before = json.loads(sandbox.client("status", "--json").stdout)["projects"][0]
    assert sandbox.client("daemon", "stop").returncode == 0
    stopped_at = time.time()

    for fake in (upstreams.github, upstreams.gitlab, upstreams.jira):
        fake.latency = 3.0  # a first poll after the restart cannot have finished
    after = json.loads(sandbox.client("status", "--json").stdout)["projects"][0]
    # (A scheduled poll may have landed between `before` and the stop; the data is the same.)
    assert after["change_requests"] == before["change_requests"]
    assert after["tickets"] == before["tickets"]
    assert all(s["fetched_at"] < stopped_at for s in after["sources"]), after["sources"]

    for fake in (upstreams.github, upstreams.gitlab, upstreams.jira):
        fake.latency = 0.0
        fake.reset_log()
    assert sandbox.client("refresh").returncode == 0
    rest = [r for r in upstreams.github.requests + upstreams.gitlab.requests
            if r.method == "GET"]
    assert rest and all(r.status == 304 for r in rest), [(r.path, r.status) for r in rest]


def test_a_broken_upstream_keeps_the_last_good_data_and_says_why(sandbox, upstreams) -> None:
    configure(sandbox, config_text(upstreams))
    assert sandbox.client("refresh").returncode == 0
    good = json.loads(sandbox.client("status", "--json").stdout)["projects"][0]["tickets"]
    upstreams.jira.garbage(r"/search/jql", "not_json", times=50)

    refreshed = sandbox.client("refresh")
    assert refreshed.returncode == 1
    assert "jira" in refreshed.stdout and "failed" in refreshed.stdout
    assert "Jira sent search results that projctld cannot read" in refreshed.stdout

    text = sandbox.client("status").stdout
    assert "! jira: Jira sent search results" in text
    assert "showing data from" in text
    view = json.loads(sandbox.client("status", "--json").stdout)["projects"][0]
    assert view["tickets"] == good
    jira = next(s for s in view["sources"] if s["upstream"] == "jira")
    assert jira["stale"] and jira["error"]["code"] == "malformed"
    assert sandbox.client("ping").returncode == 0


def test_a_refused_token_names_its_source_and_never_shows_it(sandbox, upstreams) -> None:
    secret = "ghp_" + "S3cr3tV4lu3" * 3
    configure(sandbox, config_text(upstreams, token_line=f'token = "{secret}"'))
    refreshed = sandbox.client("refresh")
    assert refreshed.returncode == 1
    assert "GitHub refused the token from `token` in [github] (401" in refreshed.stdout
    assert "try: gh auth status" in refreshed.stdout
    outputs = refreshed.stdout + sandbox.client("status", "--json").stdout
    with open(os.path.join(sandbox.state_dir, "projctld.log")) as log:
        outputs += log.read()
    assert secret not in outputs


def test_a_token_from_a_command(sandbox, upstreams) -> None:
    command = shlex.join([sys.executable, "-c", f"print({TOKEN!r})"])
    configure(sandbox, config_text(upstreams, token_line=f"token_command = {json.dumps(command)}"))
    refreshed = sandbox.client("refresh")
    assert refreshed.returncode == 0, refreshed.stdout


def test_a_token_in_a_config_others_can_read_is_refused(sandbox, upstreams) -> None:
    sandbox.write_config(config_text(upstreams))
    os.chmod(sandbox.config_path, 0o644)
    result = sandbox.client("status")
    assert result.returncode == 0  # the daemon runs without that config, and says why
    assert "`github.token`: this file holds a token but other users can read it" in result.stderr
    assert f"try: chmod 600 {sandbox.config_path}" in result.stderr
    assert upstreams.github.requests == []  # the token was not used


def test_refresh_of_an_unknown_project_lists_the_known_ones(sandbox, upstreams) -> None:
    configure(sandbox, config_text(upstreams))
    result = sandbox.client("refresh", "nope")
    assert result.returncode == 1
    assert "no project named 'nope' (configured: web)" in result.stderr


def test_refresh_without_upstreams_says_what_to_configure(sandbox) -> None:
    result = sandbox.client("refresh")
    assert result.returncode == 1
    assert "nothing to refresh: no project has github, gitlab or jira configured" \
        in result.stderr
    assert 'github = ["OWNER/NAME"]' in result.stderr


def test_demo_shows_everything_in_a_checkout_of_its_own_and_stops_without_a_trace(
        sandbox) -> None:
    shown = sandbox.client("demo", timeout=90)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("SANDBOX: demo data")
    assert "Change requests" in shown.stdout and "Tickets" in shown.stdout
    # `Here` is the demo's own git checkout, on the branch of one of my pull requests.
    here = shown.stdout.split("\n\n")[0]
    assert "Here      " in here and "(project web)" in here and "#" in here, here
    socket = os.path.join(os.path.dirname(sandbox.socket_path), "sandbox.sock")
    assert f"export PROJCTL_SOCKET={socket}" in shown.stdout
    checkout = os.path.join(sandbox.env["XDG_STATE_HOME"], "projctl", "sandbox", "checkout",
                            "web")
    assert "cd ~" not in shown.stdout or "checkout/web" in shown.stdout
    assert "projctl demo --stop" in shown.stdout
    assert not os.path.exists(sandbox.socket_path)  # the real daemon was not started

    def demo(*args: str, code: int = 0):
        done = sandbox.client(*args, cwd=checkout, env={"PROJCTL_SOCKET": socket}, timeout=60)
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done

    prompt = demo("prompt").stdout.split()
    assert prompt[0].startswith("#"), prompt
    demo("note", "trying projctl")
    assert "deploying" in demo("deploy", "staging").stdout
    assert demo("run", "hello").returncode == 0
    log = demo("log").stdout
    assert "trying projctl" in log and "the hello workflow ran" in log and "staging" in log
    assert "The demo has no hub" in demo("sync").stdout
    # The inbox holds what asks for me on both upstreams, and the checkout's HEAD is its pull
    # request's head, so `wait` answers from the demo's CI and review as they stand.
    inbox = demo("inbox").stdout
    assert "review_requested" in inbox and "mention" in inbox and "build_failed" in inbox, inbox
    waited = demo("wait", "ci", "--timeout", "30", code=1)  # the demo's pull request fails CI
    assert "CI failed" in waited.stdout and "waiting for your HEAD" not in waited.stderr
    assert "review approved" in demo("wait", "review", "--timeout", "30").stdout
    wrong = demo("deploy", "prod", code=1)
    assert "projctl deploy production" in wrong.stderr
    assert "the demo's projects are built in" in wrong.stderr
    assert not os.path.exists(sandbox.socket_path)

    stopped = sandbox.client("demo", "--stop")
    assert stopped.returncode == 0 and "state removed" in stopped.stdout
    assert not os.path.exists(os.path.dirname(os.path.dirname(checkout)))
    assert not os.path.exists(socket)
    # Started again, the demo holds nothing of before.
    assert sandbox.client("demo", "--reset", timeout=90).returncode == 0
    assert "trying projctl" not in demo("log").stdout
    assert sandbox.client("demo", "--stop").returncode == 0


def test_a_ticket_limit_trims_the_view_but_still_counts_every_ticket(sandbox, upstreams) -> None:
    configure(sandbox, config_text(upstreams))
    assert sandbox.client("refresh").returncode == 0
    with sandbox.connect() as conn:
        full = conn.call(request("status", checkout=None))["projects"][0]
        trimmed = conn.call(request("status", checkout=None, tickets_per_status=1))["projects"][0]
    statuses = [t["status"] for t in full["tickets"]]
    assert len(set(statuses)) < len(statuses), "the test needs a status with several tickets"
    assert trimmed["ticket_counts"] == full["ticket_counts"] == \
        {s: statuses.count(s) for s in set(statuses)}
    assert sorted(t["status"] for t in trimmed["tickets"]) == sorted(set(statuses))
    # The one kept per status is its most recently updated.
    for ticket in trimmed["tickets"]:
        same = [t for t in full["tickets"] if t["status"] == ticket["status"]]
        assert ticket["updated_at"] == max(t["updated_at"] for t in same)
