"""The fake upstreams, driven over real loopback HTTP as the providers will drive them."""

from __future__ import annotations

import base64
import email.utils
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from projctld.sandbox.dataset import Check, Dataset, PullRequest, Ticket, generate
from projctld.sandbox.fake_github import FakeGitHub
from projctld.sandbox.fake_gitlab import FakeGitLab
from projctld.sandbox.fake_jira import FakeJira

NOW = 1_790_000_000.0


@pytest.fixture
def data() -> Dataset:
    # Relative to the real clock, as Jira's "updated >= -7d" is.
    return generate(github_repos=3, gitlab_projects=2, changes_per_repo=6, tickets=40,
                    jira_projects=2)


@pytest.fixture
def github(data: Dataset) -> Iterator[FakeGitHub]:
    with FakeGitHub(data, token="gh") as fake:
        yield fake


@pytest.fixture
def gh(github: FakeGitHub) -> Iterator[httpx.Client]:
    with client(github.base_url, headers={"Authorization": "Bearer gh"}) as gh:
        yield gh


@pytest.fixture
def jira(data: Dataset) -> Iterator[FakeJira]:
    with FakeJira(data, token="jt") as fake:
        yield fake


@pytest.fixture
def jc(jira: FakeJira) -> Iterator[httpx.Client]:
    with client(jira.base_url, auth=("me@example.com", "jt")) as jc:
        yield jc


def client(base_url: str = "", **kwargs: Any) -> httpx.Client:
    # Plain HTTP on loopback: verify=False spares loading the CA bundle, 20 ms a client.
    return httpx.Client(base_url=base_url, verify=False, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    with client() as one:
        return one.get(url, **kwargs)


def graphql(client: httpx.Client, fake: FakeGitHub, query: str, **variables: object) -> dict:
    response = client.post(fake.graphql_url, json={"query": query, "variables": variables})
    assert response.status_code == 200
    return response.json()


# -- the dataset


def test_the_dataset_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    assert generate(seed=3, now=NOW) == generate(seed=3, now=NOW)
    assert generate(seed=3, now=NOW) != generate(seed=4, now=NOW)


def test_the_dataset_mixes_mine_reviews_and_others_with_realistic_ci() -> None:
    data = generate(now=NOW)
    pulls = [p for repo in data.github_repos for p in data.pulls[repo]]
    assert len(pulls) == 15 * 8
    mine = [p for p in pulls if p.author == data.github_login]
    to_review = [p for p in pulls if data.github_login in p.review_requested]
    assert 0.25 < len(mine) / len(pulls) < 0.42
    assert 0.15 < len(to_review) / len(pulls) < 0.35
    # Each has 2 to 6 checks, but for one CI matrix of mine of 30 (see test_fake_github.py).
    assert sorted(len(p.checks) for p in pulls)[-2:] == [6, 30]
    assert min(len(p.checks) for p in pulls) == 2
    assert {c.kind for p in pulls for c in p.checks} == {"check_run", "status"}
    assert any(p.draft for p in pulls)
    my_branches = {p.head_ref for p in mine}
    my_runs = [r for repo in data.github_repos for r in data.runs[repo]
               if r.actor == data.github_login]
    assert my_branches <= {r.head_branch for r in my_runs}
    assert any(r.head_branch not in my_branches and r.conclusion == "failure" for r in my_runs)
    with_pipeline = [mr for mrs in data.merge_requests.values() for mr in mrs if mr.head_pipeline]
    assert len(with_pipeline) > 0.6 * sum(len(mrs) for mrs in data.merge_requests.values())
    assert 0.3 < sum(t.assignee_account_id == "acc-me" for t in data.tickets) / 300 < 0.5
    assert {t.project_key for t in data.tickets} == set(data.jira_projects)
    assert "/" in data.gitlab_projects[0].removeprefix("acme/")  # nested groups


def test_the_sandbox_dataset_shows_my_work_failing_and_running() -> None:
    data = generate(github_repos=3, gitlab_projects=2, changes_per_repo=4, tickets=30,
                    jira_projects=2)
    mine = [p for repo in data.github_repos for p in data.pulls[repo]
            if p.author == data.github_login]
    states = {_rollup(p.checks) for p in mine}
    assert {"failure", "running"} <= states
    assert any(data.github_login in p.review_requested for ps in data.pulls.values() for p in ps)
    assert any(t.assignee_account_id == data.jira_account_id and t.category != "done"
               for t in data.tickets)


def _rollup(checks: list[Check]) -> str:
    if any(c.conclusion in ("failure", "error", "timed_out", "cancelled") for c in checks):
        return "failure"
    return "running" if any(c.status == "in_progress" for c in checks) else "other"


# -- the common server


def test_each_fake_starts_quickly_and_stop_closes_its_socket(data: Dataset) -> None:
    for cls in (FakeGitHub, FakeGitLab, FakeJira):
        fake = cls(data)
        started = time.perf_counter()
        url = fake.start()
        assert time.perf_counter() - started < 0.1
        assert url.startswith("http://127.0.0.1:")
        fake.stop()
        with pytest.raises(httpx.ConnectError):
            get(url + "/anything")


def test_fifty_keep_alive_clients_are_served_at_once(github: FakeGitHub) -> None:
    statuses: list[int] = []
    ports: list[set[int]] = []

    def one_client() -> None:
        with client(github.base_url, headers={"Authorization": "Bearer gh"}) as c:
            seen = set()
            for _ in range(3):
                response = c.get("/user")
                statuses.append(response.status_code)
                stream = response.extensions["network_stream"]
                seen.add(stream.get_extra_info("client_addr")[1])
            ports.append(seen)

    threads = [threading.Thread(target=one_client) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 150
    assert all(len(seen) == 1 for seen in ports)  # each client kept its one connection


def test_a_get_answer_carries_an_etag_and_a_match_is_a_free_304(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    first = gh.get("/repos/acme/web-0/actions/runs")
    etag = first.headers["etag"]
    assert etag.startswith('W/"') and first.headers["content-type"].startswith("application/json")
    again = gh.get("/repos/acme/web-0/actions/runs", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert again.headers["x-ratelimit-used"] == first.headers["x-ratelimit-used"] == "1"
    assert [r.was_conditional_hit for r in github.requests] == [False, True]
    assert github.requests[1].headers["if-none-match"] == etag

    # Nothing is cached: a change in the dataset is a new body and a new tag.
    data.runs["acme/web-0"][0].status = "completed"
    data.runs["acme/web-0"][0].conclusion = "cancelled"
    changed = gh.get("/repos/acme/web-0/actions/runs", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    github.reset_log()
    assert github.requests == []


def test_latency_is_injected_into_every_answer(github: FakeGitHub, gh: httpx.Client) -> None:
    github.latency = 0.05
    started = time.perf_counter()
    gh.get("/user")
    assert time.perf_counter() - started >= 0.05


def test_a_failure_answers_the_next_matching_requests_then_stops(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    github.fail(r"/actions/runs\?.*branch=main", status=502, times=2, body=b"<h1>Bad gateway</h1>",
                headers={"Content-Type": "text/html"}, delay=0.01)
    assert gh.get("/repos/acme/web-0/actions/runs").status_code == 200  # no branch: no match
    for _ in range(2):
        failed = gh.get("/repos/acme/web-0/actions/runs", params={"branch": "main"})
        assert failed.status_code == 502 and failed.text == "<h1>Bad gateway</h1>"
        assert failed.headers["content-type"] == "text/html"
    assert gh.get("/repos/acme/web-0/actions/runs", params={"branch": "main"}).status_code == 200
    assert [r.status for r in github.requests] == [200, 502, 502, 200]
    assert github.rate["core"].used == 2  # an injected fault is not counted

    github.fail("/user", status=503)
    default = gh.get("/user")
    assert default.status_code == 503 and default.json() == {"message": "Service Unavailable"}


def test_garbage_answers_are_200s_a_client_must_not_trust(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    github.garbage("/user", "not_json")
    page = gh.get("/user")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    github.garbage("/user", "truncated")
    cut = gh.get("/user")
    assert cut.status_code == 200 and len(cut.content) == int(cut.headers["content-length"])
    with pytest.raises(ValueError):
        cut.json()
    github.garbage("/user", "wrong_types")
    assert gh.get("/user").json() == {"login": 7, "id": 1, "name": 10}
    github.garbage("/actions/runs", "wrong_types")
    runs = gh.get("/repos/acme/web-0/actions/runs").json()["workflow_runs"]
    assert isinstance(runs, dict) and isinstance(runs["0"]["head_sha"], int)
    github.garbage("/user", "empty")
    empty = gh.get("/user")
    assert empty.status_code == 200 and empty.content == b""
    assert gh.get("/user").json()["login"] == "octo-me"
    with pytest.raises(ValueError, match="kind must be one of"):
        github.garbage("/user", "nonsense")  # type: ignore[arg-type]


def test_a_body_cut_off_or_mislabelled_fails_below_json(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    github.garbage("/user", "cut_off")
    with pytest.raises(httpx.RemoteProtocolError, match="without sending complete message body"):
        gh.get("/user")
    github.garbage("/user", "bad_gzip")
    with pytest.raises(httpx.DecodingError):
        gh.get("/user")
    github.fail("/user", status=500, times=5)
    github.clear_faults()
    assert gh.get("/user").status_code == 200
    assert [r.status for r in github.requests] == [200, 200, 200]
    assert all(r.received_at <= time.time() for r in github.requests)


def test_a_skewed_clock_shows_in_the_date_and_the_reset(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    github.clock_skew = -86400.0
    answer = gh.get("/user")
    shown = email.utils.parsedate_to_datetime(answer.headers["date"]).timestamp()
    assert abs(shown - (time.time() - 86400)) < 5  # whole seconds, and this test's own pace
    assert int(answer.headers["x-ratelimit-reset"]) == int(github.rate["core"].reset - 86400)


def test_a_hang_outlasts_the_client_timeout_and_stop_cuts_it_short(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    github.hang("/user", 30)
    with pytest.raises(httpx.ReadTimeout):
        gh.get("/user", timeout=0.1)
    assert gh.get("/user").status_code == 200
    started = time.perf_counter()
    github.stop()
    assert time.perf_counter() - started < 1


# -- GitHub REST


def test_github_refuses_missing_or_wrong_credentials_with_its_body(github: FakeGitHub) -> None:
    for headers in ({}, {"Authorization": "token wrong"}, {"Authorization": "Basic gh"}):
        response = get(github.base_url + "/user", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"message": "Bad credentials",
                                   "documentation_url": "https://docs.github.com/rest",
                                   "status": "401"}
        assert response.headers["x-ratelimit-resource"] == "core"
    ok = get(github.base_url + "/user", headers={"Authorization": "token gh"})
    assert ok.json() == {"login": "octo-me", "id": 1, "name": "Sam Rivera"}


def test_github_runs_are_newest_first_and_paged_with_link(
    gh: httpx.Client, data: Dataset
) -> None:
    expected = sorted(data.runs["acme/web-1"], key=lambda r: r.created_at, reverse=True)
    first = gh.get("/repos/acme/web-1/actions/runs", params={"per_page": 2})
    assert first.json()["total_count"] == len(expected)
    assert set(first.links) == {"next", "last"}
    assert first.links["last"]["url"].endswith(f"page={-(-len(expected) // 2)}")
    ids, response = [], first
    while True:
        ids += [run["id"] for run in response.json()["workflow_runs"]]
        if "next" not in response.links:
            break
        response = gh.get(response.links["next"]["url"])
        assert {"prev", "first"} <= set(response.links)
    assert ids == [r.id for r in expected]
    run = first.json()["workflow_runs"][0]
    assert run["html_url"] == f"https://github.com/acme/web-1/actions/runs/{run['id']}"
    assert run["created_at"].endswith("Z") and run["actor"]["login"] == expected[0].actor


def test_github_runs_filter_by_actor_branch_and_status(gh: httpx.Client, data: Dataset) -> None:
    mine = gh.get("/repos/acme/web-0/actions/runs", params={"actor": "octo-me"}).json()
    assert mine["workflow_runs"]
    assert {r["actor"]["login"] for r in mine["workflow_runs"]} == {"octo-me"}
    branch = mine["workflow_runs"][0]["head_branch"]
    on_branch = gh.get("/repos/acme/web-0/actions/runs", params={"branch": branch}).json()
    assert {r["head_branch"] for r in on_branch["workflow_runs"]} == {branch}
    failed = gh.get("/repos/acme/web-0/actions/runs", params={"status": "failure"}).json()
    assert {r["conclusion"] for r in failed["workflow_runs"]} == {"failure"}
    missing = gh.get("/repos/acme/nope/actions/runs")
    assert missing.status_code == 404 and missing.json()["message"] == "Not Found"


def test_github_rate_limits_count_down_run_out_and_renew(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    assert gh.get("/user").headers["x-ratelimit-remaining"] == "4999"
    github.rate["core"].remaining = 0
    refused = gh.get("/user")
    assert refused.status_code == 403
    assert refused.json()["message"] == "API rate limit exceeded for user ID 1."
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > time.time()
    # GraphQL is a separate resource, and still has points.
    assert graphql(gh, github, "{ viewer { login } }")["data"]["viewer"]["login"] == "octo-me"
    github.rate["core"].reset = time.time() - 1
    renewed = gh.get("/user")
    assert renewed.status_code == 200 and renewed.headers["x-ratelimit-remaining"] == "4999"


def test_github_secondary_limit_says_when_to_retry(github: FakeGitHub, gh: httpx.Client) -> None:
    github.secondary_limit(retry_after=42)
    refused = gh.get("/user")
    assert refused.status_code == 403 and refused.headers["retry-after"] == "42"
    assert refused.json()["message"].startswith("You have exceeded a secondary rate limit")
    assert gh.get("/user").status_code == 200


def test_github_enterprise_paths(data: Dataset) -> None:
    with FakeGitHub(data, token="gh", prefix="/api/v3") as fake:
        assert fake.base_url.endswith("/api/v3")
        assert fake.graphql_url == fake.server_url + "/api/graphql"
        enterprise = client(headers={"Authorization": "Bearer gh"})
        assert enterprise.get(fake.base_url + "/user").status_code == 200
        assert enterprise.get(fake.server_url + "/user").status_code == 404
        answer = enterprise.post(fake.graphql_url, json={"query": "{ viewer { login } }"})
        assert answer.json() == {"data": {"viewer": {"login": "octo-me"}}}
        assert answer.headers["x-ratelimit-resource"] == "graphql"


# -- GitHub GraphQL

PULL_FIELDS = """
fragment Pull on PullRequest {
  number title url isDraft state createdAt updatedAt headRefName baseRefName reviewDecision
  author { login }
  repository { nameWithOwner }
  reviewRequests(first: 10) { nodes { requestedReviewer { __typename ... on User { login } } } }
  commits(last: 1) {
    nodes { commit { oid statusCheckRollup {
      state
      contexts(first: 20) {
        totalCount
        pageInfo { hasNextPage endCursor }
        nodes {
          __typename
          ... on CheckRun { name status conclusion detailsUrl }
          ... on StatusContext { context state targetUrl }
        }
      }
    } } }
  }
}
"""


def test_graphql_answers_in_the_order_asked_with_aliases_fragments_and_variables(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    pull = data.pulls["acme/web-2"][0]
    pull.checks = [Check("build", "check_run", "completed", "success"),
                   Check("ci/legacy", "status", "completed", "pending")]
    answer = graphql(gh, github, """
        query Mine($owner: String!, $name: String!, $head: String) {
          # a comment, and commas are whitespace
          me: viewer { login, __typename }
          repo: repository(owner: $owner, name: $name) {
            nameWithOwner
            pullRequests(states: [OPEN], first: 5, headRefName: $head) {
              totalCount
              nodes { ...Pull }
            }
          }
        }
    """ + PULL_FIELDS, owner="acme", name="web-2", head=pull.head_ref)
    assert "errors" not in answer
    assert list(answer["data"]) == ["me", "repo"]
    assert answer["data"]["me"] == {"login": "octo-me", "__typename": "User"}
    connection = answer["data"]["repo"]["pullRequests"]
    assert connection["totalCount"] == 1
    node = connection["nodes"][0]
    assert list(node)[:4] == ["number", "title", "url", "isDraft"]
    assert node["url"] == f"https://github.com/acme/web-2/pull/{pull.number}"
    assert node["state"] == "OPEN" and node["updatedAt"].endswith("Z")
    commit = node["commits"]["nodes"][0]["commit"]
    assert commit["oid"] == pull.head_sha
    rollup = commit["statusCheckRollup"]
    assert rollup["state"] == "PENDING"
    assert rollup["contexts"]["nodes"] == [
        {"__typename": "CheckRun", "name": "build", "status": "COMPLETED",
         "conclusion": "SUCCESS", "detailsUrl": rollup["contexts"]["nodes"][0]["detailsUrl"]},
        {"__typename": "StatusContext", "context": "ci/legacy", "state": "PENDING",
         "targetUrl": rollup["contexts"]["nodes"][1]["targetUrl"]},
    ]


def test_graphql_takes_the_named_operation_defaults_and_escapes(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    pull = next(p for p in data.pulls["acme/web-1"] if p.review_requested)
    document = """
        query Other { viewer { login } }
        query Reviews($states: [PullRequestState!] = [OPEN], $owner: String = "acme") {
          repository(owner: $owner, name: "web\\u002d1") {
            pullRequests(states: $states, first: 10) { nodes { number reviewRequests(first: 5) {
              nodes { requestedReviewer { ... on User { login } ... on Team { name } } } } } }
          }
        }"""
    response = gh.post(github.graphql_url,
                       json={"query": document, "operationName": "Reviews", "variables": {}})
    nodes = response.json()["data"]["repository"]["pullRequests"]["nodes"]
    reviewers = next(n for n in nodes if n["number"] == pull.number)["reviewRequests"]["nodes"]
    assert [r["requestedReviewer"]["login"] for r in reviewers] == pull.review_requested
    ambiguous = gh.post(github.graphql_url, json={"query": document}).json()
    assert ambiguous == {"errors": [{"message": "An operation name is required"}]}


@pytest.mark.parametrize(("checks", "state"), [
    ([Check("a", "check_run", "completed", "success"), Check("b", "status", "completed",
                                                             "success")], "SUCCESS"),
    ([Check("a", "check_run", "completed", "success"), Check("b", "check_run", "in_progress",
                                                             None)], "PENDING"),
    ([Check("a", "check_run", "in_progress", None), Check("b", "check_run", "completed",
                                                          "timed_out")], "FAILURE"),
    ([Check("a", "status", "completed", "error")], "FAILURE"),
    ([Check("a", "check_run", "completed", "skipped")], "SUCCESS"),
    ([], None),
])
def test_graphql_rolls_up_checks_as_github_does(
    github: FakeGitHub, gh: httpx.Client, data: Dataset, checks: list[Check], state: str | None
) -> None:
    pull = data.pulls["acme/web-0"][0]
    pull.checks = checks
    answer = graphql(gh, github, """query($n: String!) { repository(owner: "acme", name: "web-0") {
        pullRequests(first: 1, headRefName: $n) { nodes { commits(last: 1) { nodes { commit {
          statusCheckRollup { state } } } } } } } }""", n=pull.head_ref)
    rollup = answer["data"]["repository"]["pullRequests"]["nodes"][0]["commits"]["nodes"][0][
        "commit"]["statusCheckRollup"]
    assert (rollup and rollup["state"]) == state


def test_graphql_search_understands_the_qualifiers(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    query = """query($q: String!) { search(query: $q, type: ISSUE, first: 100) {
        issueCount nodes { ... on PullRequest { number repository { nameWithOwner }
        author { login } headRefName updatedAt } } } }"""
    pulls = [p for repo in data.github_repos for p in data.pulls[repo]]

    def search(q: str) -> list[dict]:
        answer = graphql(gh, github, query, q=q)["data"]["search"]
        assert answer["issueCount"] == len(answer["nodes"])
        return answer["nodes"]

    mine = search("is:pr is:open archived:false author:@me")
    assert {n["number"] for n in mine} == {p.number for p in pulls if p.author == "octo-me"}
    assert [n["updatedAt"] for n in mine] == sorted((n["updatedAt"] for n in mine), reverse=True)
    assert search("is:pr author:octo-me") == mine
    wanted = {p.number for p in pulls if "octo-me" in p.review_requested}
    assert {n["number"] for n in search("is:pr is:open review-requested:@me")} == wanted
    two = search("is:pr repo:acme/web-0 repo:acme/web-2")
    assert {n["repository"]["nameWithOwner"] for n in two} == {"acme/web-0", "acme/web-2"}
    one = data.pulls["acme/web-1"][2]
    assert [n["number"] for n in search(f"is:pr head:{one.head_ref} repo:acme/web-1")] == [
        one.number]
    one.state = "closed"
    assert search(f"is:pr is:open head:{one.head_ref} repo:acme/web-1") == []
    assert search("is:issue author:@me") == []


def test_graphql_search_pages_with_opaque_cursors(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    query = """query($after: String) { search(query: "is:pr", type: ISSUE, first: 7,
        after: $after) { issueCount pageInfo { hasNextPage endCursor }
        nodes { ... on PullRequest { number } } } }"""
    numbers, cursor = [], None
    while True:
        page = graphql(gh, github, query, after=cursor)["data"]["search"]
        numbers += [n["number"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        cursor = page["pageInfo"]["endCursor"]
        assert base64.b64decode(cursor).startswith(b"cursor:")
    assert len(numbers) == page["issueCount"] == 18
    # search is non-null (SearchResultItemConnection!): its error nulls the whole answer.
    bad = graphql(gh, github, query, after="nonsense!")
    assert bad["data"] is None
    assert bad["errors"] == [{
        "type": "INVALID_CURSOR_ARGUMENTS", "path": ["search"],
        "locations": [{"line": 1, "column": 25}],
        "message": "`nonsense!` does not appear to be a valid cursor.",
    }]


def test_graphql_cost_follows_githubs_rule_and_is_charged(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    # 1 search + 100 reviewRequests + 100 commits + 100 x 1 contexts = 301 requests: 3 points.
    query = """{ rateLimit { cost remaining used limit resetAt }
      search(query: "is:pr", type: ISSUE, first: 100) { nodes { ... on PullRequest {
        reviewRequests(first: 10) { totalCount }
        commits(last: 1) { nodes { commit { statusCheckRollup {
          contexts(first: 100) { totalCount } } } } } } } } }"""
    response = gh.post(github.graphql_url, json={"query": query})
    rate = response.json()["data"]["rateLimit"]
    assert rate["cost"] == 3 and rate["remaining"] == 4997 and rate["used"] == 3
    assert rate["limit"] == 5000 and rate["resetAt"].endswith("Z")
    assert response.headers["x-ratelimit-used"] == "3"
    assert response.headers["x-ratelimit-resource"] == "graphql"
    assert github.rate["graphql"].used == 3 and github.rate["core"].used == 0
    # A query without connections costs the minimum, 1.
    assert graphql(gh, github, "{ rateLimit { cost } }")["data"]["rateLimit"]["cost"] == 1
    # GitHub's documented example: 1 + 100 x 50 connections of 100 requests rounds to 51.
    deep = """{ repository(owner: "acme", name: "web-0") {
      pullRequests(first: 100) { nodes { commits(first: 50) { nodes { commit {
        statusCheckRollup { contexts(first: 60) { totalCount } } } } } } } } rateLimit { cost } }"""
    assert graphql(gh, github, deep)["data"]["rateLimit"]["cost"] == 51


def test_graphql_rate_limit_exhausted_is_a_200_with_an_error(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    github.rate["graphql"].remaining = 0
    response = gh.post(github.graphql_url, json={"query": "{ viewer { login } }"})
    assert response.status_code == 200
    assert response.json()["errors"][0]["type"] == "RATE_LIMITED"
    assert response.headers["x-ratelimit-remaining"] == "0"


@pytest.mark.parametrize(("query", "message"), [
    ("{ viewer { login email } }", "Field 'email' doesn't exist on type 'User'"),
    ("{ viewer { login ", "Parse error on end of document at [1, 18]"),
    ("{ viewer { login } } }", 'Parse error on "}" (RCURLY) at [1, 22]'),
    ('{ search(query: "x", type: "ISSUE", first: 1) { issueCount } }',
     "Argument 'type' on Field 'search' has an invalid value (\"ISSUE\"). Expected type "
     "'SearchType!'."),
    ('{ search(query: "x", type: ISSUE, first: 1) { nodes { number } } }',
     "Selections can't be made directly on unions (see selections on SearchResultItem)"),
    ("{ viewer }", "Field must have selections (field 'viewer' returns User but has no "
                   "selections. Did you mean 'viewer { ... }'?)"),
    ("{ viewer { ...Missing } }", "Fragment Missing was used, but not defined"),
    ("{ viewer { ... on CheckRun { name } } }", "Fragment on CheckRun can't be spread inside "
                                                "User"),
    ("query($n: Int!) { search(query: \"\", type: ISSUE, first: $n) { issueCount } }",
     "Variable $n of type Int! was provided invalid value"),
    ("{ repository(owner: \"acme\") { name } }",
     "Field 'repository' is missing required arguments: name"),
    ("query($x: Foo) { viewer { login(x: $x) } }", "Foo isn't a defined input type (on $x)"),
    ("{ viewer { ... on Foo { login } } }",
     "No such type Foo, so it can't be a fragment condition"),
])
def test_graphql_refuses_bad_queries_with_githubs_errors_and_no_data(
    github: FakeGitHub, gh: httpx.Client, query: str, message: str
) -> None:
    answer = graphql(gh, github, query)
    assert "data" not in answer
    assert answer["errors"][0]["message"] == message
    assert github.rate["graphql"].used == 0


def test_graphql_errors_locate_the_field(github: FakeGitHub, gh: httpx.Client) -> None:
    answer = graphql(gh, github, "query Who {\n  viewer {\n    login\n    email\n  }\n}")
    assert answer["errors"] == [{
        "path": ["query Who", "viewer", "email"],
        "locations": [{"line": 4, "column": 5}],
        "message": "Field 'email' doesn't exist on type 'User'",
        "extensions": {"code": "undefinedField", "typeName": "User", "fieldName": "email"},
    }]


def test_graphql_unknown_repository_is_null_beside_the_others(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    answer = graphql(gh, github, """{
      a: repository(owner: "acme", name: "web-0") { nameWithOwner owner { login } }
      b: repository(owner: "acme", name: "gone") { nameWithOwner }
    }""")
    assert answer["data"] == {"a": {"nameWithOwner": "acme/web-0", "owner": {"login": "acme"}},
                              "b": None}
    assert answer["errors"] == [{
        "type": "NOT_FOUND", "path": ["b"], "locations": [{"line": 3, "column": 7}],
        "message": "Could not resolve to a Repository with the name 'acme/gone'.",
    }]


# -- GitLab: tests/test_fake_gitlab.py


# -- Jira


def test_jira_search_pages_with_tokens_and_returns_the_fields_asked(
    jc: httpx.Client, data: Dataset
) -> None:
    jql = "assignee = currentUser() AND statusCategory != Done ORDER BY updated DESC"
    expected = sorted((t for t in data.tickets
                       if t.assignee_account_id == "acc-me" and t.category != "done"),
                      key=lambda t: t.updated_at, reverse=True)
    keys, token = [], None
    while True:
        params = {"jql": jql, "fields": "summary,status,assignee", "maxResults": "4"}
        page = jc.get("/rest/api/3/search/jql",
                      params={**params, **({"nextPageToken": token} if token else {})}).json()
        keys += [issue["key"] for issue in page["issues"]]
        if page["isLast"]:
            assert "nextPageToken" not in page
            break
        token = page["nextPageToken"]
    assert keys == [t.key for t in expected]
    issue = page["issues"][-1]
    assert set(issue["fields"]) == {"summary", "status", "assignee"}
    assert issue["fields"]["assignee"] == {"accountId": "acc-me", "displayName": "Sam Rivera",
                                           "emailAddress": "me@example.com"}
    assert issue["fields"]["status"]["statusCategory"]["key"] in ("new", "indeterminate")
    assert issue["self"].endswith(f"/rest/api/3/issue/{issue['id']}")


def test_jira_search_by_post_and_without_fields(jc: httpx.Client, data: Dataset) -> None:
    body = {"jql": 'project in (WEB, API) AND status in ("In Progress", "In Review") '
                   "AND updated >= -30d ORDER BY updated ASC",
            "fields": ["*all"], "maxResults": 200}
    page = jc.post("/rest/api/3/search/jql", json=body).json()
    expected = [t for t in data.tickets if t.status in ("In Progress", "In Review")]
    assert len(page["issues"]) == len(expected) and page["isLast"]
    updated = [i["fields"]["updated"] for i in page["issues"]]
    assert updated == sorted(updated) and updated[0].endswith("+0000")
    assert set(page["issues"][0]["fields"]) == {
        "summary", "status", "priority", "issuetype", "updated", "assignee", "project",
        "duedate", "customfield_10020"}
    # Without fields the enhanced search returns ids alone, as Jira Cloud does.
    bare = jc.post("/rest/api/3/search/jql", json={"jql": "project = WEB"}).json()
    assert bare["issues"][0] == {"id": bare["issues"][0]["id"]}


@pytest.mark.parametrize(("jql", "expected"), [
    ("project = WEB", lambda ts: [t for t in ts if t.project_key == "WEB"]),
    ('assignee = "acc-me" OR assignee is EMPTY',
     lambda ts: [t for t in ts if t.assignee_account_id in ("acc-me", None)]),
    ("statusCategory = Done AND NOT project = API",
     lambda ts: [t for t in ts if t.category == "done" and t.project_key != "API"]),
    ('statusCategory = "In Progress" and (priority = High or priority = Highest)',
     lambda ts: [t for t in ts if t.category == "indeterminate"
                 and t.priority in ("High", "Highest")]),
    ("updated >= -2d", lambda ts: [t for t in ts if t.updated_at >= time.time() - 2 * 86400]),
])
def test_jira_jql_selects_what_jira_would(
    jc: httpx.Client, data: Dataset, jql: str, expected: Callable[[list[Ticket]], list[Ticket]]
) -> None:
    page = jc.get("/rest/api/3/search/jql", params={"jql": jql, "fields": "summary",
                                                     "maxResults": 100}).json()
    assert {i["key"] for i in page["issues"]} == {t.key for t in expected(data.tickets)}


@pytest.mark.parametrize(("jql", "message"), [
    ("", "Unbounded JQL queries are not allowed here. Please add a search restriction to your "
         "query."),
    ("cheese = yes", "Field 'cheese' does not exist or you do not have permission to view it."),
    ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
    ("project = WEB AND", "Error in the JQL Query: Expecting a field name before the end of the "
                          "query."),
    ("project = WEB status = Done", "Error in the JQL Query: Expecting either 'OR' or 'AND' but "
                                    "got 'status'. (line 1, character 15)"),
])
def test_jira_refuses_bad_jql_with_its_words(jc: httpx.Client, jql: str, message: str) -> None:
    response = jc.get("/rest/api/3/search/jql", params={"jql": jql})
    assert response.status_code == 400
    assert response.json() == {"errorMessages": [message], "errors": {}}


def test_jira_auth_old_search_and_rate_limit(jira: FakeJira, jc: httpx.Client) -> None:
    assert jc.get("/rest/api/3/myself").json() == {
        "accountId": "acc-me", "displayName": "Sam Rivera", "emailAddress": "me@example.com"}
    bearer = get(jira.base_url + "/rest/api/3/myself", headers={"Authorization": "Bearer jt"})
    assert bearer.status_code == 200
    for auth in (("me@example.com", "wrong"), ("other@example.com", "jt")):
        refused = get(jira.base_url + "/rest/api/3/myself", auth=auth)
        assert refused.status_code == 401
        assert refused.json()["errorMessages"] == [
            "You are not authenticated. Authentication required to perform this operation."]
    gone = jc.get("/rest/api/3/search", params={"jql": "project = WEB"})
    assert gone.status_code == 410 and "/rest/api/3/search/jql" in gone.json()["errorMessages"][0]
    jira.rate.remaining = 0
    limited = jc.get("/rest/api/3/myself")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["ratelimit-reason"] == "jira-burst-based"
    assert limited.headers["x-ratelimit-reset"].endswith("Z")


def test_a_pull_request_added_to_the_dataset_is_served_at_once(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    data.pulls["acme/web-0"].append(PullRequest(
        repo="acme/web-0", number=9999, title="Brand new", author="octo-me", head_ref="new",
        base_ref="main", draft=True, review_decision=None, review_requested=[],
        head_sha="f" * 40, checks=[], updated_at=time.time(),
    ))
    answer = graphql(gh, github, """{ search(query: "is:pr author:@me head:new", type: ISSUE,
        first: 5) { nodes { ... on PullRequest { number isDraft createdAt } } } }""")
    assert answer["data"]["search"]["nodes"][0]["number"] == 9999
    assert answer["data"]["search"]["nodes"][0]["isDraft"] is True
