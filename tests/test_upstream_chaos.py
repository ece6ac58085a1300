"""Upstream chaos: faulty upstreams leave the last good data shown, stale, until they recover."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import anyio
import httpx
import msgspec
import pytest

from projctl_client.connection import request
from projctl_client.protocol import SourceError
from projctld.config import Config, PollingConfig
from projctld.sandbox.dataset import generate
from projctld.sandbox.demo import Upstreams, sandbox_config, start_fakes
from projctld.sandbox.fakehttp import FakeServer, RequestRecord
from projctld.store.database import Database
from projctld.store.http_cache import HttpCache
from projctld.store.snapshots import SnapshotTable
from projctld.upstream.polling import Poller
from projctld.upstream.providers import create_providers, http
from projctld.upstream.providers.model import Snapshot

# Looks like a real token, so that finding it in an error or a log means it leaked.
TOKEN = "glpat-Chaos5ecretT0ken"
RETRY_AFTER = 1
REQUEST_TIMEOUT = 0.3
SKEW = 2 * 86400.0  # a server clock two days off
SENT_AT = "x-test-sent-at"


@dataclass(frozen=True)
class Target:
    """The requests of one provider's path that a fault hits."""

    upstream: str
    path: str  # a regex searched in the request's path and query
    bucket: str | None = None  # GitHub's rate-limit resource; the others have one budget

    def fake(self, up: Upstreams) -> FakeServer:
        return getattr(up, self.upstream)


TARGETS = {
    "github-graphql": Target("github", r"/graphql", "graphql"),
    "github-rest": Target("github", r"/actions/runs", "core"),
    "gitlab": Target("gitlab", r"/api/graphql"),  # the merge requests: one GraphQL request
    "jira": Target("jira", r"/search/jql"),
}


@dataclass(frozen=True)
class Fault:
    code: str  # the source's error code while it lasts
    says: tuple[str, ...]  # what the message must mention: what happened, and when it ends


# Garbage kinds are answered as 200s; see projctld/sandbox/fakehttp.py for what each one is.
FAULTS = {
    "429_retry_after": Fault("rate_limited", ("429", "next request at")),
    "5xx": Fault("server_error", ("502",)),
    "hang": Fault("timeout", ("did not answer in time",)),
    "truncated": Fault("malformed", ("cannot read",)),
    "cut_off": Fault("unreachable", ("cut off",)),
    "bad_gzip": Fault("malformed", ("cannot be decompressed",)),
    "not_json": Fault("malformed", ("cannot read", "HTML page")),
    "wrong_types": Fault("malformed", ("cannot read",)),
    "skew_ahead": Fault("rate_limited", ("rate", "next request at")),
    "skew_behind": Fault("rate_limited", ("rate", "next request at")),
}


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # Retries still happen, only sooner (the daemon test keeps the real backoff).
    monkeypatch.setattr(http, "RETRY_BASE", 0.01)


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    with contextlib.ExitStack() as stack:
        yield start_fakes(stack, generate(github_repos=2, gitlab_projects=1, changes_per_repo=4,
                                          tickets=12, jira_projects=1), token=TOKEN)


def chaos_config(up: Upstreams, upstream: str) -> Config:
    """One project on `upstream` alone, polled only when a test says so, with short timeouts."""
    config = sandbox_config(up, projects=1, my_open_tickets=False, token=TOKEN)
    none = {"github": [], "gitlab": [], "jira": ""}
    only = msgspec.structs.replace(config.projects["web"],
                                   **{key: value for key, value in none.items() if key != upstream})
    return msgspec.structs.replace(
        config, projects={"web": only},
        polling=PollingConfig(request_timeout=REQUEST_TIMEOUT, max_backoff=3600.0),
    )


def spend_budget(up: Upstreams, target: Target, skew: float, lead: float = 0.5) -> float:
    """Make the server's clock `skew` off and its budget spent until a whole second at least
    `lead` away (GitHub and GitLab send it as an integer); return that reset."""
    fake = target.fake(up)
    bucket = fake.rate[target.bucket] if target.bucket else fake.rate  # type: ignore[attr-defined]
    reset = float(math.ceil(time.time() + lead))
    fake.clock_skew = skew
    bucket.remaining, bucket.reset = 0, reset
    return reset


def inject(up: Upstreams, target: Target, fault: str) -> float | None:
    """Start `fault` on the target's path; for the skews, return when the budget renews."""
    fake = target.fake(up)
    if fault == "429_retry_after":
        fake.fail(target.path, status=429, headers={"Retry-After": str(RETRY_AFTER)})
    elif fault == "5xx":
        fake.fail(target.path, status=502, times=100)
    elif fault == "hang":
        fake.hang(target.path, 30, times=100)  # stop() cuts what is still hanging short
    elif fault.startswith("skew_"):
        return spend_budget(up, target, SKEW if fault == "skew_ahead" else -SKEW)
    else:
        fake.garbage(target.path, fault, times=100)  # type: ignore[arg-type]
    return None


def data(snapshot: Snapshot) -> Snapshot:
    """What a snapshot holds, without when its GitHub search ran."""
    return msgspec.structs.replace(snapshot, as_of=None)


def assert_says_what_and_what_next(error: SourceError | dict | None, fault: Fault) -> None:
    if isinstance(error, dict):
        error = msgspec.convert(error, SourceError)
    assert error is not None
    assert error.code == fault.code, error
    assert all(part in error.message for part in fault.says), error.message
    assert error.suggestions, f"no advice with: {error.message}"
    assert TOKEN not in error.message + " ".join(error.suggestions)


def assert_none_arrived_before(requests: list[RequestRecord], moment: float) -> None:
    """The requests sent once the client knew it had to wait reached the fake at `moment` or
    later (requests of the failed poll that were already on their way do not count)."""
    assert requests, "the recovery sent nothing"
    early = [(r.path, round(moment - r.received_at, 3)) for r in requests
             if r.received_at < moment]
    assert not early, f"requests before the wait ended (path, seconds early): {early}"


async def stamp(request: httpx.Request) -> None:
    """Say in each request when it left, so that the fake's log tells the polls apart."""
    request.headers[SENT_AT] = repr(time.time())


@dataclass
class Outcome:
    """What one fault_then_recover saw."""

    started: float | None  # what starting the fault returned
    error: SourceError  # what the source said while the fault lasted
    faulted: list[RequestRecord]  # the requests of the failed poll
    recovery: list[RequestRecord]  # the requests sent once it had failed


def fault_then_recover(db_path: str, up: Upstreams, target: Target, fault: Fault,
                       start: Callable[[], float | None]) -> Outcome:
    """Through a Poller with a real client and store: a good poll, `start` the fault, a poll
    that fails as `fault` says and keeps the good data, stale; clear it, and a poll at once
    that brings the data back fresh."""
    fake = target.fake(up)
    config = chaos_config(up, target.upstream)
    key = ("web", target.upstream)

    async def scenario() -> Outcome:
        db = Database(db_path)
        try:
            async with httpx.AsyncClient(timeout=config.polling.request_timeout,
                                         event_hooks={"request": [stamp]}) as client:
                providers = create_providers(config, client, HttpCache(db, time.time()))
                poller = Poller(config, providers, SnapshotTable(db))
                source = poller.sources[key]

                await poller.poll(key, fresh=True)
                good, good_at = data(source.snapshot), source.fetched_at
                assert source.error is None and any(good.counts()), source.error

                started = start()
                started_at = time.time()
                await poller.poll(key, fresh=True)
                view = source.view(time.time())
                assert view.stale and view.fetched_at == good_at
                assert data(source.snapshot) == good
                assert_says_what_and_what_next(source.error, fault)
                error = source.error

                failed_at = time.time()
                fake.clear_faults()
                await poller.poll(key, fresh=True)  # at once: waiting is the governor's job
                view = source.view(time.time())
                assert source.error is None, source.error
                assert not view.stale and view.fetched_at > good_at
                assert data(source.snapshot) == good
        finally:
            db.close()

        def sent(r: RequestRecord) -> float:
            return float(r.headers[SENT_AT])

        return Outcome(started, error,
                       [r for r in fake.requests if started_at <= sent(r) < failed_at],
                       [r for r in fake.requests if sent(r) >= failed_at])

    return anyio.run(scenario)


# -- every provider and every fault, through the Poller with real fakes, client and store


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("target_name", list(TARGETS))
def test_a_fault_keeps_the_last_good_data_stale_then_the_next_poll_recovers(
        tmp_path, request: pytest.FixtureRequest, upstreams: Upstreams, target_name: str,
        fault: str) -> None:
    target = TARGETS[target_name]
    outcome = fault_then_recover(str(tmp_path / "state.db"), upstreams, target, FAULTS[fault],
                                 lambda: inject(upstreams, target, fault))
    if fault == "429_retry_after":  # Retry-After holds the whole host
        refused = next(r for r in outcome.faulted if r.status == 429)
        assert_none_arrived_before(outcome.recovery, refused.received_at + RETRY_AFTER)
    elif outcome.started is not None:  # a spent budget holds the requests it counts
        assert_none_arrived_before(
            [r for r in outcome.recovery if not target.bucket or re.search(target.path, r.path)],
            outcome.started)


def test_a_retry_after_shorter_than_a_spent_budget_waits_for_the_reset(
        tmp_path, upstreams: Upstreams) -> None:
    """GitHub's secondary limit can lift before the primary budget renews: nothing goes out
    before both allow it, and the error says when that is."""
    target = TARGETS["github-graphql"]

    def start() -> float:
        renews_at = spend_budget(upstreams, target, 0.0, lead=RETRY_AFTER + 0.5)
        upstreams.github.secondary_limit(RETRY_AFTER)
        return renews_at

    outcome = fault_then_recover(str(tmp_path / "state.db"), upstreams, target,
                                 Fault("rate_limited", ("403", "next request at")), start)
    assert [r.status for r in outcome.faulted] == [403]
    assert outcome.started is not None
    reset = time.strftime("%H:%M:%S", time.localtime(outcome.started))
    assert f"next request at {reset}" in outcome.error.message
    assert_none_arrived_before(outcome.recovery, outcome.started)


# -- a real daemon polling all three, as `projctl refresh` and `projctl status --json` show it


DAEMON_FAULTS = {
    # upstream: (where the 429 lands, where the wrong types land)
    "github": (r"/graphql", r"/actions/runs"),
    "gitlab": (r"/api/graphql", r"/pipelines"),
    "jira": (r"/search/jql", r"/search/jql"),
}


def daemon_config(up: Upstreams) -> str:
    project = sandbox_config(up, projects=1, my_open_tickets=False).projects["web"]
    # Long intervals: after the first scheduled polls, only `projctl refresh` polls.
    return f"""
[polling]
request_timeout = 1.0
max_backoff = 3600

[github]
api_url = "{up.github_url}"
token_env = ""
token = "{TOKEN}"
interval = 3600

[gitlab]
url = "{up.gitlab_url}"
token_env = ""
token = "{TOKEN}"
interval = 3600

[jira]
url = "{up.jira_url}"
email = "{up.data.jira_email}"
token_env = ""
token = "{TOKEN}"
interval = 3600

[projects.web]
github = {json.dumps(project.github)}
gitlab = {json.dumps(project.gitlab)}
jira = {json.dumps(project.jira)}
"""


def wait_for(condition: Callable[[], dict | None], what: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_daemon_serves_the_last_good_state_through_faults_and_recovers(
        sandbox, upstreams: Upstreams) -> None:
    fakes: dict[str, FakeServer] = {name: getattr(upstreams, name) for name in DAEMON_FAULTS}
    sandbox.write_config(daemon_config(upstreams))
    os.chmod(sandbox.config_path, 0o600)
    assert sandbox.client("daemon", "start").returncode == 0

    def sources(web: dict) -> dict[str, dict]:
        return {source["upstream"]: source for source in web["sources"]}

    def polled() -> dict | None:
        with sandbox.connect() as conn:
            web = conn.call(request("status", checkout=None))["projects"][0]
        done = all(s["fetched_at"] and not s["polling"] for s in sources(web).values())
        return web if done else None

    # The first scheduled polls (within 2 s of the start) are the good ones; the next are far.
    first = wait_for(polled, "the first polls")
    good = {k: first[k] for k in ("change_requests", "pipelines", "tickets")}
    assert all(good.values()), good
    good_at = {name: s["fetched_at"] for name, s in sources(first).items()}  # last good poll
    assert all(s["error"] is None for s in sources(first).values()), first["sources"]
    outputs = []

    def refresh(expect: int) -> str:
        result = sandbox.client("refresh")
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == expect, result.stdout + result.stderr
        return result.stdout

    def status() -> tuple[dict, dict[str, dict]]:
        result = sandbox.client("status", "--json")
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
        web = json.loads(result.stdout)["projects"][0]
        return web, sources(web)

    def still_good_but_stale(fault: Fault) -> None:
        web, now = status()
        assert {k: web[k] for k in good} == good
        for name, source in now.items():
            assert source["stale"] and source["fetched_at"] == good_at[name], source
            assert_says_what_and_what_next(source["error"], fault)

    def recovered() -> None:
        web, now = status()
        assert {k: web[k] for k in good} == good
        for name, source in now.items():
            assert source["error"] is None and not source["stale"], source
            assert source["fetched_at"] > good_at[name]
            good_at[name] = source["fetched_at"]

    # 429 with Retry-After everywhere: stale meanwhile, and no host hears from us before it ends.
    before = {name: len(fake.requests) for name, fake in fakes.items()}
    for name, fake in fakes.items():
        fake.fail(DAEMON_FAULTS[name][0], status=429, headers={"Retry-After": str(RETRY_AFTER)})
    said = refresh(expect=1)
    assert said.count("rate-limiting") == 3 and "try: " in said
    still_good_but_stale(FAULTS["429_retry_after"])
    # What the failed polls had already sent has arrived by the time `projctl refresh` ends.
    failed_at = time.time()
    refresh(expect=0)
    recovered()
    for name, fake in fakes.items():
        refused = next(r for r in fake.requests[before[name]:] if r.status == 429)
        assert_none_arrived_before([r for r in fake.requests if r.received_at > failed_at],
                                   refused.received_at + RETRY_AFTER)

    # Valid JSON of the wrong types: stale, said so in words, then well again.
    for name, fake in fakes.items():
        fake.garbage(DAEMON_FAULTS[name][1], "wrong_types", times=100)
    said = refresh(expect=1)
    assert said.count("cannot read") == 3 and "try: " in said
    still_good_but_stale(FAULTS["wrong_types"])
    text = sandbox.client("status").stdout
    assert all(f"! {name}: " in text for name in fakes) and "showing data from" in text
    for fake in fakes.values():
        fake.clear_faults()
    refresh(expect=0)
    recovered()

    assert sandbox.client("ping").returncode == 0
    with open(os.path.join(sandbox.state_dir, "projctld.log")) as log:
        outputs.append(log.read())
    assert not [o for o in outputs if TOKEN in o]
