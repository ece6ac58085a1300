"""Tokens never show: planted tokens are searched for in every log, error, metric and --json
output that a day with good and refused tokens produces, on the daemon and on the hub."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator

import httpx
import pytest
from conftest import HubProcess, Sandbox, free_port
from test_upstream_status import config_text, configure, git_checkout, my_pull

from projctld.sandbox.dataset import generate
from projctld.sandbox.demo import Upstreams, start_fakes

GOOD = "pjt-planted-good-7f3a9c51e2"
WRONG = "pjt-planted-wrong-0b8d44f6aa"


def forms(token: str, email: str) -> list[str]:
    """The token as it could leak: itself, or inside Jira's Basic credentials."""
    basic = base64.b64encode(f"{email}:{token}".encode()).decode()
    return [token, basic, token[4:-4]]


@pytest.fixture
def planted() -> Iterator[Upstreams]:
    with contextlib.ExitStack() as stack:
        yield start_fakes(stack, generate(github_repos=2, gitlab_projects=1, changes_per_repo=3,
                                          tickets=10, jira_projects=1), token=GOOD)


def _daemon_day(sandbox: Sandbox, up: Upstreams, hub: HubProcess, token: str,
                hub_token: str, checkout: str) -> list[str]:
    """Everything a user, a script and a scraper see in one daemon's life, and its log."""
    port = free_port()
    configure(sandbox, f"""
[daemon]
log_level = "debug"
log_format = "json"
metrics_listen = "{port}"

[sync]
hub = "{hub.url}"
""" + config_text(up, paths=[checkout], token_line=f'token = "{token}"'))
    sandbox.env["PROJCTL_HUB_TOKEN"] = hub_token
    process = sandbox.start_daemon()
    seen = []
    for args in (["refresh"], ["status"], ["status", "--json"], ["note", "planted test"],
                 ["sync", "--now"], ["sync"], ["log"], ["metrics"], ["metrics", "--json"],
                 ["daemon", "status"], ["prompt"]):
        result = sandbox.client(*args, cwd=checkout)
        seen += [result.stdout, result.stderr]
    seen.append(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    process.terminate()
    out, err = process.communicate(timeout=30)
    seen += [out.decode(), err.decode()]
    log = os.path.join(sandbox.state_dir, "projctld.log")
    if os.path.exists(log):
        with open(log) as handle:
            seen.append(handle.read())
    return seen


def test_no_output_log_or_metric_holds_a_token(sandbox: Sandbox, planted: Upstreams,
                                               hub_server) -> None:
    hub: HubProcess = hub_server()
    hub_good = hub.token("ada", "web")
    checkout = git_checkout(os.path.join(sandbox.root, "web"), my_pull(planted).head_ref)

    seen = _daemon_day(sandbox, planted, hub, GOOD, hub_good, checkout)
    # The same day with tokens every upstream and the hub refuse: the errors name where the
    # token came from, never what it is.
    seen += _daemon_day(sandbox, planted, hub, WRONG, "pjh_" + WRONG, checkout)
    hub_scrape = httpx.get(f"{hub.url}/metrics", timeout=10).text
    hub.stop()
    seen += [hub_scrape, hub.process.stdout.read(), hub.process.stderr.read()]

    everything = "\n".join(seen)
    assert "refused the token" in everything  # the refused day did reach the upstreams
    assert "planted test" in everything  # and the note went through the good day
    email = planted.data.jira_email
    for secret in [*forms(GOOD, email), *forms(WRONG, email), hub_good, hub_good[4:-4]]:
        assert secret not in everything, f"a token leaked: {secret[:6]}…"
