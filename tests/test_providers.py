"""Providers against the loopback fakes: shapes, paging, conditional requests and faults."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import anyio
import httpx
import msgspec
import pytest

from projctld.config import Config
from projctld.errors import UpstreamError
from projctld.sandbox.dataset import Dataset, generate
from projctld.sandbox.demo import Upstreams, sandbox_config, start_fakes
from projctld.store.database import Database
from projctld.store.http_cache import HttpCache
from projctld.upstream.providers import create_providers, http
from projctld.upstream.providers.model import Snapshot


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "RETRY_BASE", 0.01)


@contextlib.contextmanager
def world(data: Dataset | None = None, **fake_options: str) -> Iterator[Upstreams]:
    with contextlib.ExitStack() as stack:
        yield start_fakes(stack, data or generate(github_repos=4, gitlab_projects=3,
                                                  changes_per_repo=6, tickets=40),
                          **fake_options)


class Polling:
    """Providers built from a config, polled through one httpx client and one state file."""

    def __init__(self, config: Config, db_path: str, timeout: float = 5.0) -> None:
        self.config = config
        self.db_path = db_path
        self.timeout = timeout

    def poll(self, upstream: str, project: str, *, fresh: bool = True) -> Snapshot:
        return self.poll_many([(upstream, project)], fresh=fresh)[0]

    def poll_many(self, keys: list[tuple[str, str]], *, fresh: bool = True) -> list[Snapshot]:
        async def run() -> list[Snapshot]:
            db = Database(self.db_path)
            try:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    providers = create_providers(self.config, client, HttpCache(db, time.time()))
                    return [await providers[upstream].poll(
                        project, self.config.projects[project], fresh=fresh)
                        for upstream, project in keys]
            finally:
                db.close()

        return anyio.run(run)


def one_project(upstreams: Upstreams, **overrides: object) -> Config:
    config = sandbox_config(upstreams, projects=1, my_open_tickets=False)
    return msgspec.structs.replace(config, **overrides) if overrides else config


# GitHub


def test_github_finds_exactly_my_and_review_requested_pull_requests(tmp_path) -> None:
    with world() as up:
        snapshot = Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
    me = up.data.github_login
    expected = {
        (pr.repo, pr.number): (pr.author == me, me in pr.review_requested)
        for prs in up.data.pulls.values() for pr in prs
        if pr.state == "open" and (pr.author == me or me in pr.review_requested)
    }
    found = {(cr.repo, cr.number): (cr.mine, cr.review_requested)
             for cr in snapshot.change_requests}
    assert found == expected
    assert expected, "the dataset should hold some of my pull requests"


def test_github_ci_lists_failing_checks_of_both_kinds(tmp_path) -> None:
    with world() as up:
        snapshot = Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
    pulls = {(pr.repo, pr.number): pr for prs in up.data.pulls.values() for pr in prs}
    checked = 0
    for cr in snapshot.change_requests:
        pr = pulls[(cr.repo, cr.number)]
        failed = sorted(c.name for c in pr.checks if c.status == "completed" and c.conclusion in
                        ("failure", "error", "timed_out", "cancelled", "action_required"))
        assert sorted(cr.ci.failing) == failed
        assert (cr.ci.state == "failure") == bool(failed)
        checked += bool(failed)
    assert checked, "the dataset should hold a failing pull request of mine"


def test_github_pipelines_are_my_latest_runs_per_branch(tmp_path) -> None:
    with world() as up:
        snapshot = Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
    me = up.data.github_login
    mine = [run for runs in up.data.runs.values() for run in runs if run.actor == me]
    assert {(p.repo, p.branch) for p in snapshot.pipelines} == \
        {(run.repo, run.head_branch) for run in mine}
    assert [p.updated_at for p in snapshot.pipelines] == \
        sorted((p.updated_at for p in snapshot.pipelines), reverse=True)


def test_github_second_poll_is_conditional_and_costs_no_rest_budget(tmp_path) -> None:
    with world() as up:
        polling = Polling(one_project(up), str(tmp_path / "s.db"))
        first = polling.poll("github", "web")
        used = up.github.rate["core"].used
        up.github.reset_log()
        second = polling.poll("github", "web")
        runs = [r for r in up.github.requests if "/actions/runs" in r.path]
        assert runs and all(r.headers.get("if-none-match") for r in runs)
        assert all(r.status == 304 for r in runs)
        assert up.github.rate["core"].used == used
    assert second.pipelines == first.pipelines
    assert second.change_requests == first.change_requests


def test_github_sends_the_documented_headers(tmp_path) -> None:
    with world() as up:
        Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
        headers = up.github.requests[0].headers
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["user-agent"].startswith("projctl/")
    assert headers["authorization"] == "Bearer sandbox-token"


def test_github_search_pages_past_fifty_results(tmp_path) -> None:
    data = generate(github_repos=2, gitlab_projects=1, changes_per_repo=90, tickets=5)
    with world(data) as up:
        snapshot = Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
    me = data.github_login
    mine = [pr for prs in data.pulls.values() for pr in prs
            if pr.state == "open" and pr.author == me]
    assert len(mine) > 50
    assert len([cr for cr in snapshot.change_requests if cr.mine]) == len(mine)


def test_github_enterprise_base_url_works(tmp_path) -> None:
    with world(github_prefix="/api/v3") as up:
        assert up.github_url.endswith("/api/v3")
        snapshot = Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
        paths = {r.path.split("?")[0] for r in up.github.requests}
    assert snapshot.change_requests
    assert "/api/graphql" in paths
    assert any(p.startswith("/api/v3/repos/") for p in paths)


def test_github_shares_one_search_between_projects_within_an_interval(tmp_path) -> None:
    with world() as up:
        config = sandbox_config(up, projects=2)
        polling = Polling(config, str(tmp_path / "s.db"))
        web, platform = polling.poll_many([("github", "web"), ("github", "platform")],
                                          fresh=False)
        searches = [r for r in up.github.requests if r.path.endswith("/graphql")]
    assert len(searches) == 1
    assert {cr.repo for cr in web.change_requests} <= set(config.projects["web"].github)
    assert {cr.repo for cr in platform.change_requests} <= set(config.projects["platform"].github)


@pytest.mark.parametrize(
    ("fault", "code", "advice"),
    [
        ("bad_token", "auth", "gh auth status"),
        ("unknown_repo", "not_found", "check the names under `github`"),
        ("secondary_limit", "rate_limited", "polling waits"),
        ("not_json", "malformed", "last good data"),
        ("truncated", "malformed", "last good data"),
        ("wrong_types", "malformed", "last good data"),
    ],
)
def test_github_faults_become_errors_with_advice(tmp_path, fault: str, code: str,
                                                 advice: str) -> None:
    with world() as up:
        config = one_project(up)
        if fault == "bad_token":
            up.github.token = "another"
        elif fault == "unknown_repo":
            config.projects["web"].github.append("acme/gone")
        elif fault == "secondary_limit":
            up.github.secondary_limit(120, times=10)
        else:
            up.github.garbage(r"/actions/runs", fault, times=10)
        with pytest.raises(UpstreamError) as caught:
            Polling(config, str(tmp_path / "s.db")).poll("github", "web")
    assert caught.value.code == code, caught.value.message
    assert any(advice in s for s in caught.value.suggestions), caught.value.suggestions
    assert "sandbox-token" not in caught.value.message


def test_github_5xx_is_retried_and_then_succeeds(tmp_path) -> None:
    with world() as up:
        up.github.fail(r"/graphql", status=502, times=2)
        snapshot = Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
        statuses = [r.status for r in up.github.requests if r.path.endswith("/graphql")]
    assert statuses == [502, 502, 200]
    assert snapshot.change_requests


def test_a_hold_from_retry_after_stops_every_request_until_it_ends(tmp_path) -> None:
    with world() as up:
        up.github.secondary_limit(300)

        async def two_polls() -> tuple[str, str, int]:
            db = Database(str(tmp_path / "s.db"))
            config = one_project(up)
            async with httpx.AsyncClient() as client:
                github = create_providers(config, client, HttpCache(db, time.time()))["github"]
                codes = []
                for _ in range(2):
                    try:
                        await github.poll("web", config.projects["web"], fresh=True)
                    except UpstreamError as exc:
                        codes.append(exc.code)
            db.close()
            return codes[0], codes[1], len(up.github.requests)

        first, second, sent = anyio.run(two_polls)
    assert (first, second) == ("rate_limited", "rate_limited")
    assert sent == 1  # the second poll sent nothing


def test_an_upstream_that_hangs_times_out(tmp_path) -> None:
    with world() as up:
        up.github.hang(r"/graphql", 5, times=3)
        started = time.monotonic()
        with pytest.raises(UpstreamError) as caught:
            Polling(one_project(up), str(tmp_path / "s.db"), timeout=0.2).poll("github", "web")
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 5


def test_an_unreachable_upstream_is_reported_as_such(tmp_path) -> None:
    with world() as up:
        config = one_project(up)
    # The fakes are stopped now: nothing listens on their ports.
    with pytest.raises(UpstreamError) as caught:
        Polling(config, str(tmp_path / "s.db")).poll("github", "web")
    assert caught.value.code == "unreachable"
    assert caught.value.retryable


# GitLab: tests/test_gitlab.py


# Jira


def test_jira_pages_by_token_and_maps_every_ticket(tmp_path) -> None:
    data = generate(github_repos=1, gitlab_projects=1, changes_per_repo=2, tickets=260,
                    jira_projects=1)
    with world(data) as up:
        snapshot = Polling(one_project(up), str(tmp_path / "s.db")).poll("jira", "web")
        searches = [r for r in up.jira.requests if "/search/jql" in r.path]
    assert len(snapshot.tickets) == 260
    assert len(searches) == 3
    assert "nextPageToken=" in searches[1].path
    by_key = {t.key: t for t in data.tickets}
    for ticket in snapshot.tickets:
        source = by_key[ticket.key]
        assert (ticket.summary, ticket.status) == (source.summary, source.status)
        assert ticket.category == {"new": "todo", "indeterminate": "in_progress",
                                   "done": "done"}[source.category]
        assert ticket.url.endswith(f"/browse/{ticket.key}")


def test_jira_runs_the_projects_jql(tmp_path) -> None:
    with world() as up:
        config = sandbox_config(up, projects=1, my_open_tickets=True)
        snapshot = Polling(config, str(tmp_path / "s.db")).poll("jira", "web")
    key = up.data.jira_projects[0]
    expected = {t.key for t in up.data.tickets if t.project_key == key
                and t.assignee_account_id == up.data.jira_account_id and t.category != "done"}
    assert {t.key for t in snapshot.tickets} == expected
    assert expected


def test_jira_uses_basic_auth_with_email_and_bearer_without(tmp_path) -> None:
    with world() as up:
        config = one_project(up)
        Polling(config, str(tmp_path / "a.db")).poll("jira", "web")
        assert up.jira.requests[0].headers["authorization"].startswith("Basic ")
        up.jira.reset_log()
        bearer = msgspec.structs.replace(config, jira=msgspec.structs.replace(
            config.jira, email=""))
        Polling(bearer, str(tmp_path / "b.db")).poll("jira", "web")
        assert up.jira.requests[0].headers["authorization"] == "Bearer sandbox-token"


def test_jira_bad_jql_says_to_check_the_query(tmp_path) -> None:
    with world() as up:
        config = one_project(up)
        broken = msgspec.structs.replace(config.projects["web"], jira="project = = WEB")
        config = msgspec.structs.replace(config, projects={"web": broken})
        with pytest.raises(UpstreamError) as caught:
            Polling(config, str(tmp_path / "s.db")).poll("jira", "web")
    assert caught.value.code == "rejected"
    assert "JQL" in caught.value.message
    assert any("JQL" in s for s in caught.value.suggestions)
