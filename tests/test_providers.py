"""Providers against the loopback fakes: shapes, paging, conditional requests and faults."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import re
import time
from collections.abc import Iterator

import anyio
import graphql
import httpx
import msgspec
import pytest

from projctld.config import Config
from projctld.errors import UpstreamError
from projctld.sandbox import github_graphql, github_resolvers
from projctld.sandbox.dataset import Dataset, generate
from projctld.sandbox.demo import Upstreams, sandbox_config, start_fakes
from projctld.store.database import Database
from projctld.store.http_cache import HttpCache
from projctld.upstream.providers import create_providers, http
from projctld.upstream.providers import github as github_provider
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


def github_roles(pr, me: str) -> tuple[bool, bool, bool, bool]:
    """What GitHub's qualifiers find of a pull request for `me`: author:@me,
    review-requested:@me, assignee:@me, reviewed-by:@me (a submitted review)."""
    return (pr.author == me, me in pr.review_requested, me in pr.assignees,
            any(r.author == me and r.submitted_at is not None for r in pr.reviews))


def test_github_finds_exactly_the_pull_requests_that_concern_me(tmp_path) -> None:
    with world() as up:
        snapshot = Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
    me = up.data.github_login
    expected = {
        (pr.repo, pr.number): github_roles(pr, me)
        for prs in up.data.pulls.values() for pr in prs
        if pr.state == "open" and any(github_roles(pr, me))
    }
    found = {(cr.repo, cr.number): (cr.mine, cr.review_requested, cr.assigned, cr.reviewed)
             for cr in snapshot.change_requests}
    assert found == expected
    for role in range(4):  # the dataset holds one of each
        assert any(roles[role] for roles in expected.values()), role


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


def test_github_counts_every_check_and_names_a_failure_past_the_first_page(tmp_path) -> None:
    # The rollup's checkRunCountsByState / statusContextCountsByState count every context,
    # however many; `contexts` is a connection, paged with first/after (GitHub's GraphQL
    # pagination docs). One pull request of mine has 30 checks, the only failure the 27th.
    data = generate(github_repos=4, gitlab_projects=1, changes_per_repo=6, tickets=5)
    with world(data) as up:
        many = next(pr for prs in up.data.pulls.values() for pr in prs if len(pr.checks) >= 30)
        # With contexts asked 100 at a time, page them 10 at a time here: shrink the page so
        # the provider has to follow the cursor to find the failure.
        snapshot = Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
    cr = next(cr for cr in snapshot.change_requests if cr.number == many.number
              and cr.repo == many.repo)
    failing = [c.name for c in many.checks if c.conclusion in ("failure", "timed_out")]
    assert cr.ci.state == "failure" and cr.ci.failing == failing
    assert cr.ci.passed + cr.ci.failed + cr.ci.running + cr.ci.pending == len(many.checks)


def test_github_pages_contexts_until_every_failure_is_named(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(github_provider, "CONTEXTS_PAGE", 10)
    with world() as up:
        many = next(pr for prs in up.data.pulls.values() for pr in prs if len(pr.checks) >= 30)
        snapshot = Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
        graphql = [r for r in up.github.requests if r.path.endswith("/graphql")]
    cr = next(cr for cr in snapshot.change_requests if cr.number == many.number
              and cr.repo == many.repo)
    assert cr.ci.failing == [c.name for c in many.checks if c.conclusion == "failure"]
    assert cr.ci.failed == 1 and cr.ci.passed == len(many.checks) - 1
    # The look-up, the search, then the commit's contexts paged (node(id), after) to the 27th.
    assert len(graphql) == 4


def test_an_older_enterprise_server_without_counts_or_merge_state(
        tmp_path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    # GitHub Enterprise Server before the rollup counts and PullRequest.statusCheckRollup (and
    # with mergeStateStatus still a preview) refuses a query naming them: undefinedField, "Field
    # 'x' doesn't exist on type 'Y'". The provider asks again without them (the rollup of the
    # head commit instead), counts the contexts it reads, and remembers.
    sdl = importlib.resources.files("projctld.sandbox").joinpath(
        "github_schema.graphql").read_text()
    older = re.sub(r"\n  (checkRunCountsByState|statusContextCountsByState|mergeStateStatus):"
                   r"[^\n]*", "", sdl)
    # ... nor the pull request's own rollup: the head commit's is read instead.
    own = '\n  """Check and Status rollup information for the PR\'s head ref."""\n' \
          '  statusCheckRollup: StatusCheckRollup\n'
    assert own in older
    older = older.replace(own, "\n")
    schema = graphql.build_schema(older)
    github_resolvers.bind(schema)
    monkeypatch.setattr(github_graphql, "SCHEMA", schema)
    # The fake caches validated queries: none may cross from one schema to the other.
    github_graphql._prepare.cache_clear()
    request.addfinalizer(github_graphql._prepare.cache_clear)
    with world() as up:
        polling = Polling(one_project(up), str(tmp_path / "s.db"))
        snapshot = polling.poll("github", "web")
        refused = [r for r in up.github.requests if r.path.endswith("/graphql")]
    assert snapshot.change_requests and not snapshot.problems
    failing = [cr for cr in snapshot.change_requests if cr.ci and cr.ci.failing]
    assert failing and all(cr.ci.failed == len(cr.ci.failing) for cr in failing)
    assert all(cr.merge_status is None for cr in snapshot.change_requests)
    # The look-up, the searches refused (the head commit's rollup is only looked into once the
    # pull request's is left out), the search without those fields.
    assert len(refused) == 4


@pytest.mark.parametrize("kind", ["RATE_LIMITED", "RATE_LIMIT"])
def test_github_graphql_rate_limit_of_either_type_is_a_rate_limit(tmp_path, kind: str) -> None:
    # GitHub documents RATE_LIMITED (docs.github.com, rate limits for the GraphQL API); older
    # answers say RATE_LIMIT with code graphql_rate_limit (githubkit#271). Either, in a 200,
    # is a rate limit, never a bad repository name.
    with world() as up:
        up.github.graphql_limit_type = kind
        up.github.rate["graphql"].take(up.github.rate["graphql"].limit)
        with pytest.raises(UpstreamError) as caught:
            Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
    assert caught.value.code == "rate_limited", caught.value.message
    assert "next request at" in caught.value.message
    assert caught.value.context.get("wait_s")


def test_github_rate_limited_with_points_left_is_still_a_rate_limit(tmp_path) -> None:
    with world() as up:
        up.github.graphql_rate_limited(times=2)
        with pytest.raises(UpstreamError) as caught:
            Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
    assert caught.value.code == "rate_limited"


def move_repo(data: Dataset, old: str, new: str) -> None:
    """Let a repository live under another name (another organisation)."""
    data.github_repos[data.github_repos.index(old)] = new
    data.pulls[new] = [dataclasses.replace(pr, repo=new) for pr in data.pulls.pop(old)]
    data.runs[new] = [dataclasses.replace(run, repo=new) for run in data.runs.pop(old)]


def test_github_saml_hides_one_organisation_and_keeps_the_rest(tmp_path) -> None:
    # An organisation that enforces SAML SSO, for a token not authorised there: its pull
    # requests come back as null nodes with FORBIDDEN errors (extensions.saml_failure) beside
    # the other nodes, and repository(owner, name) of it is null with FORBIDDEN
    # (docs.github.com: authenticating with SAML single sign-on; fwouts/prmonitor#1042).
    data = generate(github_repos=3, gitlab_projects=1, changes_per_repo=6, tickets=5)
    move_repo(data, "acme/web-1", "secure/web-1")
    data.saml_orgs.add("secure")
    with world(data) as up:
        config = one_project(up)
        polling = Polling(config, str(tmp_path / "s.db"))
        snapshot = polling.poll("github", "web")
    (problem,) = snapshot.problems
    assert (problem.part, problem.code) == ("secure/web-1", "saml")
    assert "secure organisation enforces SAML single sign-on" in problem.message
    assert any("https://github.com/orgs/secure/sso" in s for s in problem.suggestions), \
        problem.suggestions
    me = data.github_login
    expected = {(pr.repo, pr.number) for repo in ("acme/web-0", "acme/web-2")
                for pr in data.pulls[repo] if pr.state == "open" and any(github_roles(pr, me))}
    assert {(cr.repo, cr.number) for cr in snapshot.change_requests} == expected
    assert {p.repo for p in snapshot.pipelines} <= {"acme/web-0", "acme/web-2"}


def test_github_follows_a_renamed_repository(tmp_path) -> None:
    # repository(owner, name) follows renames (followRenames defaults to true) and answers the
    # new nameWithOwner; search does not, and REST answers 301: the provider asks by the new
    # name, and the configured one keeps working.
    data = generate(github_repos=2, gitlab_projects=1, changes_per_repo=6, tickets=5)
    move_repo(data, "acme/web-1", "acme/website")
    data.renamed["acme/web-1"] = "acme/website"
    with world(data) as up:
        config = one_project(up)  # still names acme/web-1
        config.projects["web"].github[:] = ["acme/web-0", "acme/web-1"]
        snapshot = Polling(config, str(tmp_path / "s.db")).poll("github", "web")
    assert not snapshot.problems
    me = data.github_login
    assert {(cr.repo, cr.number) for cr in snapshot.change_requests} == {
        (pr.repo, pr.number) for repo in ("acme/web-0", "acme/website")
        for pr in data.pulls[repo] if pr.state == "open" and any(github_roles(pr, me))}
    assert "acme/website" in {p.repo for p in snapshot.pipelines} or not [
        run for run in data.runs["acme/website"] if run.actor == me]


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
        graphql = [r for r in up.github.requests if r.path.endswith("/graphql")]
    # One search for both projects, beside the first poll's look-up of every repository.
    assert len(graphql) == 2
    assert {cr.repo for cr in web.change_requests} <= set(config.projects["web"].github)
    assert {cr.repo for cr in platform.change_requests} <= set(config.projects["platform"].github)


@pytest.mark.parametrize(
    ("fault", "code", "advice"),
    [
        ("bad_token", "auth", "gh auth status"),
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
        elif fault == "secondary_limit":
            up.github.secondary_limit(120, times=10)
        else:
            up.github.garbage(r"/actions/runs", fault, times=10)
        with pytest.raises(UpstreamError) as caught:
            Polling(config, str(tmp_path / "s.db")).poll("github", "web")
    assert caught.value.code == code, caught.value.message
    assert any(advice in s for s in caught.value.suggestions), caught.value.suggestions
    assert "sandbox-token" not in caught.value.message


def test_github_unknown_repository_costs_only_itself(tmp_path) -> None:
    # A repo: qualifier GitHub cannot search fails the whole search (REST answers 422 "The
    # listed users and repositories cannot be searched..."), while repository(owner, name)
    # answers null with a NOT_FOUND error for that alias alone: the bad one is named with its
    # fix and every other repository's pull requests still come.
    with world() as up:
        config = one_project(up)
        good = list(config.projects["web"].github)
        config.projects["web"].github.append("acme/gone")
        snapshot = Polling(config, str(tmp_path / "s.db")).poll("github", "web")
    (problem,) = snapshot.problems
    assert (problem.part, problem.code) == ("acme/gone", "not_found")
    assert "acme/gone" in problem.message
    assert any("check the name in your config" in s for s in problem.suggestions)
    assert snapshot.change_requests
    assert {cr.repo for cr in snapshot.change_requests} <= set(good)


def test_github_5xx_is_retried_and_then_succeeds(tmp_path) -> None:
    with world() as up:
        up.github.fail(r"/graphql", status=502, times=2)
        snapshot = Polling(one_project(up), str(tmp_path / "s.db")).poll("github", "web")
        statuses = [r.status for r in up.github.requests if r.path.endswith("/graphql")]
    # The search and the first poll's repository look-up each met a 502 and were retried.
    assert sorted(statuses) == [200, 200, 502, 502]
    assert snapshot.change_requests


def test_a_hold_from_retry_after_stops_every_request_until_it_ends(tmp_path) -> None:
    with world() as up:
        up.github.secondary_limit(300)

        async def two_polls() -> tuple[str, str, int]:
            db = Database(str(tmp_path / "s.db"))
            config = one_project(up)
            async with httpx.AsyncClient() as client:
                github = create_providers(config, client, HttpCache(db, time.time()))["github"]
                codes, sent = [], []
                for _ in range(2):
                    try:
                        await github.poll("web", config.projects["web"], fresh=True)
                    except UpstreamError as exc:
                        codes.append(exc.code)
                    sent.append(len(up.github.requests))
            db.close()
            return codes[0], codes[1], sent[1], sent[0]

        first, second, sent, sent_first = anyio.run(two_polls)
    assert (first, second) == ("rate_limited", "rate_limited")
    assert sent == sent_first  # the second poll sent nothing


def test_an_upstream_that_hangs_times_out(tmp_path) -> None:
    with world() as up:
        up.github.hang(r"/graphql", 5, times=10)
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


def data_center(config: Config, **jira: object) -> Config:
    """The config for a Data Center site: a personal access token sent as a Bearer token."""
    return msgspec.structs.replace(config, jira=msgspec.structs.replace(
        config.jira, email="", **jira))


def test_jira_data_center_pages_by_start_at_against_total(tmp_path) -> None:
    # Data Center has only /rest/api/2/search, paged by startAt and maxResults against
    # `total`; the server caps maxResults by its own setting (jira.search.views.default.max),
    # so a client pages on until `total`, whatever page size it asked for.
    data = generate(github_repos=1, gitlab_projects=1, changes_per_repo=2, tickets=130,
                    jira_projects=1)
    with world(data, jira_flavour="data-center") as up:
        up.jira.max_results = 40
        snapshot = Polling(data_center(one_project(up)), str(tmp_path / "s.db")).poll(
            "jira", "web")
        paths = [r.path for r in up.jira.requests]
    searches = [p for p in paths if p.startswith("/rest/api/2/search?")]
    assert len(snapshot.tickets) == 130 and not snapshot.problems
    assert [int(p.split("startAt=")[1].split("&")[0]) for p in searches] == [0, 40, 80, 120]
    assert not [p for p in paths if "/rest/api/3/" in p]  # Data Center has no REST v3
    # The flavour was asked once of the site, beside its fields.
    assert paths.count("/rest/api/2/serverInfo") == 1
    assert paths.count("/rest/api/2/field") == 1


def test_jira_sprints_and_due_dates_in_both_flavours(tmp_path) -> None:
    # The sprint is a custom field (com.pyxis.greenhopper.jira:gh-sprint) whose id differs by
    # site: Cloud sends objects {"name", "state"}, Data Center strings "...Sprint@..[...]".
    data = generate(github_repos=1, gitlab_projects=1, changes_per_repo=2, tickets=60,
                    jira_projects=1)
    by_key = {t.key: t for t in data.tickets}
    for flavour in ("cloud", "data-center"):
        with world(data, jira_flavour=flavour) as up:
            config = one_project(up) if flavour == "cloud" else data_center(one_project(up))
            snapshot = Polling(config, str(tmp_path / f"{flavour}.db")).poll("jira", "web")
        assert len(snapshot.tickets) == 60
        for ticket in snapshot.tickets:
            source = by_key[ticket.key]
            active = [name for name, state in source.sprints if state == "active"]
            closed = [name for name, state in source.sprints if state == "closed"]
            assert ticket.sprint == (active or closed or [None])[-1], (flavour, ticket.key)
            assert ticket.due == source.due
        assert any(t.sprint for t in snapshot.tickets) and any(t.due for t in snapshot.tickets)


def test_jira_flavour_in_the_config_is_not_asked(tmp_path) -> None:
    with world(jira_flavour="data-center") as up:
        config = data_center(one_project(up), flavour="data-center")
        Polling(config, str(tmp_path / "s.db")).poll("jira", "web")
        assert "/rest/api/2/serverInfo" not in [r.path for r in up.jira.requests]


def test_jira_cloud_flavour_against_a_data_center_site_says_so(tmp_path) -> None:
    # The README once claimed Data Center support while the provider asked it for
    # /rest/api/3/search/jql, which only Cloud has: the 404 must say what to change.
    with world(jira_flavour="data-center") as up:
        config = data_center(one_project(up), flavour="cloud")
        with pytest.raises(UpstreamError) as caught:
            Polling(config, str(tmp_path / "s.db")).poll("jira", "web")
    error = caught.value
    assert error.code == "not_found"
    assert error.message == ("Jira at 127.0.0.1 answered 404 Not Found where Jira Cloud serves "
                             "its REST API")
    assert 'if the site is not Jira Cloud, set flavour = "data-center" in [jira]' in \
        error.suggestions
    assert not any("atlassian.net" in s for s in error.suggestions)


def test_jira_data_center_bad_jql_is_rejected_with_jiras_words(tmp_path) -> None:
    with world(jira_flavour="data-center") as up:
        config = data_center(one_project(up))
        broken = msgspec.structs.replace(config.projects["web"], jira="project = = WEB")
        config = msgspec.structs.replace(config, projects={"web": broken})
        with pytest.raises(UpstreamError) as caught:
            Polling(config, str(tmp_path / "s.db")).poll("jira", "web")
    assert caught.value.code == "rejected"
    assert caught.value.message.startswith(
        "Jira rejected the request for the `jira` JQL of project web (400: ")


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
