"""`projctl report` and `projctl mark-failed` with a real daemon, git and a deploy script; the
deployment's start carries its commit's time."""

from __future__ import annotations

import json
import os
import time

import pytest
from test_team_commands import demo as demo  # the fixture
from test_team_commands import events, git, run
from test_upstream_status import config_text, configure, git_checkout, my_pull

from projctl_client.connection import request


def test_a_deployment_carries_its_commit_time_and_report_measures_it(sandbox, demo) -> None:
    committed = float(git("show", "-s", "--format=%ct", "HEAD", cwd=demo))
    run(sandbox, "deploy", "production", cwd=demo)
    run(sandbox, "deploy", "staging", cwd=demo, code=1)  # the script fails staging

    (started, _) = [e for e in events(sandbox, demo, types=("deployment.started",))]
    assert started["payload"]["commit_time"] == committed
    assert started["payload"]["commit"] == git("rev-parse", "HEAD", cwd=demo)

    report = json.loads(run(sandbox, "report", "--json", "--since", "7d", cwd=demo).stdout)
    current = report["current"]
    assert (report["project"], report["environment"], report["days"]) == ("demo", None, 7)
    assert (current["deployments"], current["failed"], current["marked"]) == (1, 1, 0)
    assert current["change_failure_rate"] == 0.5
    assert current["lead_times"] == 1
    assert 0 <= current["lead_time"] <= time.time() - committed + 1
    assert report["environments"] == ["production", "staging"]
    assert report["previous"]["deployments"] == 0

    text = run(sandbox, "report", "--env", "production", cwd=demo).stdout
    assert "demo, production: the last 30 days" in text
    assert "deployment frequency" in text and "1 (0.03/day)" in text
    assert "change failure rate" in text and "0% (0 of 1)" in text


def test_a_deployment_marked_as_failed_counts_as_a_failure_until_taken_back(
        sandbox, demo) -> None:
    run(sandbox, "deploy", "production", cwd=demo)
    run(sandbox, "deploy", "staging", cwd=demo, code=1)
    log = run(sandbox, "log", "--type", "deployment", cwd=demo).stdout
    production, staging = (e["payload"]["deployment"] for e in events(
        sandbox, demo, types=("deployment.started",)))
    assert production[-8:] in log and staging[-8:] in log

    marked = run(sandbox, "mark-failed", production[-8:], "--reason", "rolled back", cwd=demo)
    assert f"deployment {production[-8:]} to production counts as a failure" in marked.stdout
    assert "caused a failure: rolled back" in run(sandbox, "log", cwd=demo).stdout
    report = json.loads(run(sandbox, "report", "--json", "--env", "production",
                            cwd=demo).stdout)
    assert (report["current"]["marked"], report["current"]["change_failure_rate"]) == (1, 1.0)
    assert report["current"]["unrestored"] == 1

    refused = run(sandbox, "mark-failed", staging, cwd=demo, code=1)
    assert "already counts as a failure" in refused.stderr
    unknown = run(sandbox, "mark-failed", "ffffffff", cwd=demo, code=1)
    assert "no deployment of demo" in unknown.stderr and "projctl log demo" in unknown.stderr

    run(sandbox, "mark-failed", production, "--undo", cwd=demo)
    report = json.loads(run(sandbox, "report", "--json", "--env", "production",
                            cwd=demo).stdout)
    assert (report["current"]["marked"], report["current"]["change_failure_rate"]) == (0, 0.0)


@pytest.mark.parametrize("span", ["0d", "366d", "30", "1y", "-2d"])
def test_report_refuses_a_period_it_cannot_measure(sandbox, demo, span: str) -> None:
    result = run(sandbox, "report", "--since", span, cwd=demo, code=2)
    assert "--since" in result.stderr


def test_a_deployment_names_the_change_request_of_its_branch(sandbox, upstreams) -> None:
    pull = my_pull(upstreams)
    checkout = git_checkout(os.path.join(sandbox.root, "web"), pull.head_ref)
    configure(sandbox, config_text(upstreams, paths=[checkout]))
    assert sandbox.client("refresh", "web").returncode == 0

    deployed = sandbox.client("deploy", "production", "--project", "web", cwd=checkout)
    assert deployed.returncode == 0, deployed.stderr
    with sandbox.connect() as conn:
        (started,) = conn.call(request("log", project="web", types=["deployment.started"]))[
            "events"]
    assert started["payload"]["change_request"] == f"{pull.repo}#{pull.number}"
    assert started["payload"]["branch"] == pull.head_ref
    assert started["payload"]["commit_time"] == float(
        git("show", "-s", "--format=%ct", "HEAD", cwd=checkout))

    # A branch no change request comes from names none: nothing is guessed.
    git("switch", "-q", "-c", "no-such-pull", cwd=checkout)
    sandbox.client("deploy", "production", "--project", "web", cwd=checkout)
    with sandbox.connect() as conn:
        second = conn.call(request("log", project="web", types=["deployment.started"]))[
            "events"][-1]
    assert second["payload"]["branch"] == "no-such-pull"
    assert second["payload"]["change_request"] is None
