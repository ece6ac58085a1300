"""Tokens never show: planted tokens are searched for in every log, error, metric and --json
output that a day with good and refused tokens produces, on the daemon and on the hub."""

from __future__ import annotations

import base64
import contextlib
import json
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


def _state_files(sandbox: Sandbox) -> str:
    """The state database and its WAL and shared memory as they are on disk now, as text."""
    found = []
    for suffix in ("", "-wal", "-shm"):
        path = os.path.join(sandbox.state_dir, "state.db" + suffix)
        if os.path.exists(path):
            with open(path, "rb") as handle:
                found.append(handle.read().decode("latin-1"))
    assert found, "no state database to search"
    return "\n".join(found)


def test_tokens_echoed_in_upstream_errors_are_redacted_everywhere(sandbox: Sandbox,
                                                                  planted: Upstreams) -> None:
    """Servers and proxies that quote the request's credentials in their error bodies: the
    token never reaches status, refresh, metrics, doctor, the log or the state database."""
    email = planted.data.jira_email
    basic = base64.b64encode(f"{email}:{GOOD}".encode()).decode()
    for fake, status, body in (
        (planted.github, 401, {"message": f'Bad credentials "{GOOD}" (Authorization: token '
                                          f'{GOOD})'}),
        (planted.gitlab, 403, {"message": f"403 Forbidden - PRIVATE-TOKEN: {GOOD} has no "
                                          "access"}),
        (planted.jira, 400, {"errorMessages": [f"Request with Authorization: Basic {basic} "
                                               f"refused: the token {GOOD} is revoked"]}),
    ):
        fake.fail(".", status=status, body=json.dumps(body).encode(), times=1000)
    checkout = git_checkout(os.path.join(sandbox.root, "web"), my_pull(planted).head_ref)
    configure(sandbox, '[daemon]\nlog_level = "debug"\nlog_format = "json"\n'
              + config_text(planted, paths=[checkout], token_line=f'token = "{GOOD}"'))
    os.makedirs(sandbox.state_dir, mode=0o700)
    process = sandbox.start_daemon("--log-file", os.path.join(sandbox.state_dir, "projctld.log"))
    seen = []
    for args in (["refresh"], ["status"], ["status", "--json"], ["metrics"],
                 ["metrics", "--json"], ["doctor", "--json"], ["daemon", "status"]):
        result = sandbox.client(*args, cwd=checkout)
        seen += [result.stdout, result.stderr]
    seen.append(_state_files(sandbox))  # the WAL holds the latest writes while it runs
    process.terminate()
    out, err = process.communicate(timeout=30)
    seen += [out.decode(), err.decode(), _state_files(sandbox)]
    with open(os.path.join(sandbox.state_dir, "projctld.log")) as handle:
        seen.append(handle.read())

    everything = "\n".join(seen)
    # Each upstream's refusal did arrive and is shown, with the credentials blanked.
    assert "Bad credentials" in everything and "PRIVATE-TOKEN: [redacted]" in everything
    assert "Authorization: Basic [redacted]" in everything
    assert "the token [redacted] is revoked" in everything
    for secret in forms(GOOD, email):
        assert secret not in everything, f"a token leaked: {secret[:6]}…"
