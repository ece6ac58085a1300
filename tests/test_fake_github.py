"""The fake GitHub answers as GitHub documents, or has been seen answering, over loopback HTTP.

Each test names its source: a page of GitHub's documentation, or an issue where GitHub's real
answer was captured. tests/test_fakes.py holds the older GraphQL basics (aliases, fragments,
variables, the words of GitHub's validation errors).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from projctld.sandbox.dataset import Check, Dataset, PullRequest, generate, stable_id
from projctld.sandbox.fake_github import FakeGitHub
from projctld.sandbox.github_resolvers import SAML_MESSAGE

SEARCH_REFUSED = ("The listed users and repositories cannot be searched either because the "
                  "resources do not exist or you do not have permission to view them.")
PR_FIELDS = "... on PullRequest { number repository { nameWithOwner } }"


@pytest.fixture
def data() -> Dataset:
    return generate(github_repos=3, gitlab_projects=1, changes_per_repo=6, tickets=5,
                    jira_projects=1)


@pytest.fixture
def github(data: Dataset) -> Iterator[FakeGitHub]:
    with FakeGitHub(data, token="gh") as fake:
        yield fake


@pytest.fixture
def gh(github: FakeGitHub) -> Iterator[httpx.Client]:
    # Plain HTTP on loopback: verify=False spares loading the CA bundle.
    with httpx.Client(base_url=github.base_url, headers={"Authorization": "Bearer gh"},
                      verify=False) as client:
        yield client


def ask(gh: httpx.Client, fake: FakeGitHub, query: str, **variables: Any) -> httpx.Response:
    response = gh.post(fake.graphql_url, json={"query": query, "variables": variables})
    assert response.status_code == 200  # GraphQL answers its errors in a 200
    return response


def graphql(gh: httpx.Client, fake: FakeGitHub, query: str, **variables: Any) -> dict:
    return ask(gh, fake, query, **variables).json()


def pulls(data: Dataset) -> list[PullRequest]:
    return [p for repo in data.github_repos for p in data.pulls[repo]]


def matrix_pull(data: Dataset) -> PullRequest:
    """The dataset's pull request of mine whose CI matrix has 30 checks."""
    return next(p for p in pulls(data) if len(p.checks) == 30)


# -- partial data and null propagation (https://spec.graphql.org/October2021/#sec-Handling-Field-Errors)


def test_a_nullable_field_that_fails_is_null_beside_the_data_of_the_others(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    """`repository` is nullable: an unknown one is null with NOT_FOUND, the rest answers
    (GitHub's NOT_FOUND shape as in github/docs#22607 and the octokit/graphql.js README)."""
    answer = graphql(gh, github, """{
      viewer { login }
      gone: repository(owner: "acme", name: "gone") { nameWithOwner }
      here: repository(owner: "acme", name: "web-1") { nameWithOwner isArchived }
    }""")
    assert answer["data"] == {"viewer": {"login": "octo-me"}, "gone": None,
                              "here": {"nameWithOwner": "acme/web-1", "isArchived": False}}
    assert answer["errors"] == [{
        "type": "NOT_FOUND", "path": ["gone"], "locations": [{"line": 3, "column": 7}],
        "message": "Could not resolve to a Repository with the name 'acme/gone'.",
    }]


def test_a_failing_search_nulls_the_whole_answer_as_search_is_non_null(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    """A repo: qualifier naming a repository that does not exist fails the search as GitHub's
    REST search does with 422 (googleapis/release-please#948); `search` is
    SearchResultItemConnection!, so its null reaches the root and `data` is null."""
    query = """query($q: String!) { viewer { login }
      mine: search(query: $q, type: ISSUE, first: 5) { issueCount } }"""
    answer = graphql(gh, github, query, q="is:pr author:@me repo:acme/web-0 repo:acme/nope")
    assert answer == {"data": None, "errors": [{
        "type": "INVALID", "path": ["mine"], "locations": [{"line": 2, "column": 7}],
        "message": SEARCH_REFUSED,
    }]}
    # Several known repositories widen the search instead.
    wide = graphql(gh, github, query, q="is:pr repo:acme/web-0 repo:acme/web-2")
    assert wide["data"]["mine"]["issueCount"] == 12
    unknown_user = graphql(gh, github, query, q="is:pr author:nobody-here")
    assert unknown_user["errors"][0]["message"] == (
        "The listed users cannot be searched either because the users do not exist or you do "
        "not have permission to view the users.")


def test_a_bad_cursor_nulls_the_nearest_nullable_parent(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    """INVALID_CURSOR_ARGUMENTS (octokit/graphql.js README, captured from GitHub) on `contexts`,
    which is non-null: its parent `statusCheckRollup` (nullable) becomes null, nothing above."""
    pull = matrix_pull(data)
    answer = graphql(gh, github, """query($head: String!) {
      repository(owner: "acme", name: "web-0") { pullRequests(first: 1, headRefName: $head) {
        nodes { number commits(last: 1) { nodes { commit { oid statusCheckRollup {
          contexts(first: 5, after: "bogus") { totalCount } } } } } } } } }""",
                     head=pull.head_ref)
    node = answer["data"]["repository"]["pullRequests"]["nodes"][0]
    assert node["number"] == pull.number
    assert node["commits"]["nodes"][0]["commit"] == {"oid": pull.head_sha,
                                                     "statusCheckRollup": None}
    assert answer["errors"] == [{
        "type": "INVALID_CURSOR_ARGUMENTS",
        "path": ["repository", "pullRequests", "nodes", 0, "commits", "nodes", 0, "commit",
                 "statusCheckRollup", "contexts"],
        "locations": [{"line": 4, "column": 11}],
        "message": "`bogus` does not appear to be a valid cursor.",
    }]


# -- SAML single sign-on


def test_saml_protected_pull_requests_are_null_nodes_with_forbidden_errors(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    """A search over an organisation whose SAML the token lacks: each of its items is null in
    `nodes` (and `edges[].node`) with FORBIDDEN and extensions.saml_failure
    (fwouts/prmonitor#1042, captured), and the reply carries the SSO challenge in X-GitHub-SSO
    (cli/cli#5054; docs: "Authenticating to the REST API", SAML SSO)."""
    data.saml_orgs.add("acme")
    response = ask(gh, github, """{ search(query: "is:pr repo:acme/web-1", type: ISSUE,
      first: 2) { issueCount nodes { """ + PR_FIELDS + """ } edges { node { __typename } } } }""")
    answer = response.json()
    search = answer["data"]["search"]
    assert search["issueCount"] == 6
    assert search["nodes"] == [None, None]
    assert [edge["node"] for edge in search["edges"]] == [None, None]
    assert answer["errors"][0] == {
        "type": "FORBIDDEN", "path": ["search", "nodes", 0],
        "extensions": {"saml_failure": True}, "locations": [{"line": 2, "column": 30}],
        "message": SAML_MESSAGE,
    }
    assert [e["path"] for e in answer["errors"]] == [
        ["search", "nodes", 0], ["search", "nodes", 1],
        ["search", "edges", 0, "node"], ["search", "edges", 1, "node"]]
    sso = response.headers["x-github-sso"]
    assert sso.startswith("required; url=https://github.com/orgs/acme/sso?authorization_request=")

    # A repository of that organisation: null and FORBIDDEN alike.
    repository = graphql(gh, github, '{ repository(owner: "acme", name: "web-1") { name } }')
    assert repository["data"] == {"repository": None}
    assert repository["errors"][0]["type"] == "FORBIDDEN"
    assert repository["errors"][0]["extensions"] == {"saml_failure": True}
    # Without SAML trouble there is no such header.
    data.saml_orgs.clear()
    assert "x-github-sso" not in ask(gh, github, "{ viewer { login } }").headers


def test_saml_protected_workflow_runs_are_a_403_with_the_sso_challenge(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    """REST's 403 for a SAML-protected organisation (body as jhu-bids/TermHub#935 captured it;
    X-GitHub-SSO as the REST authentication docs show it)."""
    data.saml_orgs.add("acme")
    refused = gh.get("/repos/acme/web-0/actions/runs")
    assert refused.status_code == 403
    assert refused.json() == {
        "message": SAML_MESSAGE,
        "documentation_url": "https://docs.github.com/articles/authenticating-to-a-github-"
                             "organization-with-saml-single-sign-on/",
        "status": "403",
    }
    assert refused.headers["x-github-sso"].startswith(
        "required; url=https://github.com/orgs/acme/sso?authorization_request=")


# -- rate limits (https://docs.github.com/graphql/overview/rate-limits-and-query-limits-for-the-graphql-api)


def test_a_spent_budget_is_a_200_with_rate_limited_and_remaining_0(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    """"If you exceed your primary rate limit, the response status will still be 200, but you
    will receive an error message, and the value of the x-ratelimit-remaining header will be
    0" (docs); the error is type RATE_LIMITED (github/docs#22607)."""
    github.rate["graphql"].remaining = 0
    response = ask(gh, github, "{ viewer { login } }")
    assert response.json() == {"errors": [{
        "type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]}
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-ratelimit-resource"] == "graphql"
    assert int(response.headers["x-ratelimit-reset"]) > time.time()


def test_the_older_rate_limit_form_is_a_switch(github: FakeGitHub, gh: httpx.Client) -> None:
    """The form still seen in the field: type RATE_LIMIT with code graphql_rate_limit
    (yanyongyu/githubkit#271, octokit/plugin-throttling.js#848)."""
    github.graphql_limit_type = "RATE_LIMIT"
    github.rate["graphql"].remaining = 0
    assert graphql(gh, github, "{ viewer { login } }") == {"errors": [{
        "type": "RATE_LIMIT", "code": "graphql_rate_limit",
        "message": "API rate limit already exceeded for user ID 1."}]}


def test_a_graphql_secondary_limit_refuses_with_points_left(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    """RATE_LIMITED while x-ratelimit-remaining is not 0 (octokit/plugin-throttling.js#632)."""
    github.graphql_rate_limited(times=2)
    for _ in range(2):
        refused = ask(gh, github, "{ viewer { login } }")
        assert refused.json()["errors"][0]["type"] == "RATE_LIMITED"
        assert refused.headers["x-ratelimit-remaining"] == "5000"
    assert github.rate["graphql"].used == 0
    assert graphql(gh, github, "{ viewer { login } }")["data"] == {"viewer": {"login": "octo-me"}}


def test_cost_and_node_count_follow_the_documented_calculation(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    """Requests to fill each connection / 100, rounded, at least 1; nodeCount is the most nodes
    the query may return (the docs' calculation)."""
    # 1 search + 50 commits + 50 x 1 contexts = 101 requests: 1 point; 50 + 50 + 50 x 25 nodes.
    answer = graphql(gh, github, """{ rateLimit { cost nodeCount remaining used }
      search(query: "is:pr", type: ISSUE, first: 50) { nodes { ... on PullRequest {
        commits(last: 1) { nodes { commit { statusCheckRollup {
          contexts(first: 25) { totalCount } } } } } } } } }""")
    assert answer["data"]["rateLimit"] == {"cost": 1, "nodeCount": 1350, "remaining": 4999,
                                           "used": 1}
    # 1 + 100 + 100 x 100 = 10,101 requests: 101 points (and 100 + 10,000 + 10,000 nodes).
    costly = graphql(gh, github, """{ rateLimit { cost }
      search(query: "is:pr", type: ISSUE, first: 100) { nodes { ... on PullRequest {
        reviews(first: 100) { nodes { pullRequest {
          reviewRequests(first: 1) { totalCount } } } } } } } }""")
    assert costly["data"]["rateLimit"]["cost"] == 101
    assert github.rate["graphql"].used == 102


def test_more_than_500000_nodes_is_refused_before_anything_runs(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    """MAX_NODE_LIMIT_EXCEEDED, worded as semantic-release/github#911 captured it; no data and
    no points spent."""
    answer = graphql(gh, github, """{ search(query: "is:pr", type: ISSUE, first: 100) {
      nodes { ... on PullRequest { reviews(first: 100) { nodes { pullRequest {
        assignees(first: 100) { totalCount } } } } } } } }""")
    assert answer == {"errors": [{
        "type": "MAX_NODE_LIMIT_EXCEEDED",
        "message": "This query requests up to 1,010,100 possible nodes which exceeds the "
                   "maximum limit of 500,000.",
    }]}
    assert github.rate["graphql"].used == 0


def test_first_and_last_are_checked_on_the_field_within_1_to_100(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    """First/last are checked as the connection resolves, with a path (the captured
    EXCESSIVE_PAGINATION error of a GitHub client's test fixtures; MISSING_PAGINATION_BOUNDARIES
    as live tests of GitHub saw it): the nearest nullable parent is null."""
    answer = graphql(gh, github, """{ viewer { login }
      repository(owner: "acme", name: "web-0") { pullRequests(first: 101) { totalCount } } }""")
    assert answer["data"] == {"viewer": {"login": "octo-me"}, "repository": None}
    assert answer["errors"] == [{
        "type": "EXCESSIVE_PAGINATION", "path": ["repository", "pullRequests"],
        "locations": [{"line": 2, "column": 50}],
        "message": "Requesting 101 records on the `pullRequests` connection exceeds the `first` "
                   "limit of 100 records.",
    }]
    last = graphql(gh, github, '{ search(query: "", type: ISSUE, last: 150) { issueCount } }')
    assert last["data"] is None
    assert last["errors"][0]["message"] == (
        "Requesting 150 records on the `search` connection exceeds the `last` limit of 100 "
        "records.")
    missing = graphql(gh, github, '{ search(query: "x", type: ISSUE) { nodes { __typename } } }')
    assert missing["data"] is None
    assert missing["errors"][0]["type"] == "MISSING_PAGINATION_BOUNDARIES"
    assert missing["errors"][0]["message"] == (
        "You must provide a `first` or `last` value to properly paginate the `search` "
        "connection.")
    # Counting needs no page: the usual `search(...) { issueCount }` works.
    counted = graphql(gh, github, '{ search(query: "is:pr", type: ISSUE) { issueCount } }')
    assert counted == {"data": {"search": {"issueCount": 18}}}


def test_page_sizes_from_variables_page_and_count_alike(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    """A page size given by a variable, or by its default, counts and pages as a literal."""
    query = """query($n: Int = 2, $after: String) { rateLimit { nodeCount }
      search(query: "is:pr", type: ISSUE, first: $n, after: $after) {
        pageInfo { endCursor } nodes { ... on PullRequest { number } } } }"""
    two = graphql(gh, github, query)["data"]
    assert two["rateLimit"]["nodeCount"] == 2 and len(two["search"]["nodes"]) == 2
    five = graphql(gh, github, query, n=5, after=two["search"]["pageInfo"]["endCursor"])["data"]
    assert five["rateLimit"]["nodeCount"] == 5 and len(five["search"]["nodes"]) == 5
    every = graphql(gh, github, query, n=18)["data"]["search"]["nodes"]
    assert two["search"]["nodes"] + five["search"]["nodes"] == every[:7]


def test_a_dry_run_reports_the_cost_without_charging_or_running(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    """rateLimit(dryRun: true): "calculate the cost for the query without evaluating it"
    (GitHub's schema)."""
    answer = graphql(gh, github, """{ rateLimit(dryRun: true) { cost remaining }
      search(query: "is:pr", type: ISSUE, first: 100) { nodes { ... on PullRequest {
        commits(first: 100) { totalCount } reviews(first: 10) { totalCount } } } } }""")
    # 1 search + 100 commits + 100 reviews = 201 requests: 2 points.
    assert answer == {"data": {"rateLimit": {"cost": 2, "remaining": 5000}}}
    assert github.rate["graphql"].used == 0


# -- statusCheckRollup


def test_thirty_contexts_page_with_exact_counts_and_the_commit_pages_later_by_id(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    """`contexts` is a connection over every check of the head commit, with the counts by state
    of all of them (GitHub's schema); only the states that occur are listed, as GitHub's
    answers captured by its clients show. node(id) finds the commit to page on."""
    pull = matrix_pull(data)
    first = graphql(gh, github, """query($head: String!) {
      repository(owner: "acme", name: "web-0") { pullRequests(first: 1, headRefName: $head) {
        nodes { commits(last: 1) { nodes { commit { id statusCheckRollup { state
          contexts(first: 25) {
            totalCount checkRunCount statusContextCount
            checkRunCountsByState { state count } statusContextCountsByState { state count }
            pageInfo { hasNextPage endCursor }
            nodes { __typename ... on CheckRun { name conclusion } } } } } } } } } } }""",
                    head=pull.head_ref)
    commit = first["data"]["repository"]["pullRequests"]["nodes"][0]["commits"]["nodes"][0][
        "commit"]
    rollup = commit["statusCheckRollup"]
    contexts = rollup["contexts"]
    assert rollup["state"] == "FAILURE"
    assert (contexts["totalCount"], contexts["checkRunCount"],
            contexts["statusContextCount"]) == (30, 27, 3)
    assert contexts["checkRunCountsByState"] == [{"state": "FAILURE", "count": 1},
                                                 {"state": "SUCCESS", "count": 26}]
    assert contexts["statusContextCountsByState"] == [{"state": "SUCCESS", "count": 3}]
    assert len(contexts["nodes"]) == 25 and contexts["pageInfo"]["hasNextPage"]
    assert all(n["conclusion"] == "SUCCESS" for n in contexts["nodes"])  # no failure yet

    rest = graphql(gh, github, """query($id: ID!, $after: String) { node(id: $id) {
      ... on Commit { statusCheckRollup { contexts(first: 25, after: $after) {
        pageInfo { hasNextPage } nodes { __typename
          ... on CheckRun { name conclusion } ... on StatusContext { context state } } } } } } }""",
                   id=commit["id"], after=contexts["pageInfo"]["endCursor"])
    page = rest["data"]["node"]["statusCheckRollup"]["contexts"]
    assert page["pageInfo"]["hasNextPage"] is False
    assert [n.get("name") or n["context"] for n in page["nodes"]] == [
        "test (shard 26/27)", "test (shard 27/27)", "ci/circleci: build", "codecov/patch",
        "deploy/preview"]
    assert page["nodes"][1]["conclusion"] == "FAILURE"  # the 27th of 30

    unknown = graphql(gh, github, '{ node(id: "C_bm90aGluZw") { id } }')
    assert unknown["data"] == {"node": None}
    assert unknown["errors"][0]["type"] == "NOT_FOUND"
    assert unknown["errors"][0]["message"] == (
        "Could not resolve to a node with the global id of 'C_bm90aGluZw'")


def test_counts_by_state_follow_each_check(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    """A check run counts under its conclusion once completed, else under its status."""
    pull = data.pulls["acme/web-1"][0]
    pull.checks = [Check("a", "check_run", "queued", None),
                   Check("b", "check_run", "in_progress", None),
                   Check("c", "check_run", "completed", "skipped"),
                   Check("d", "status", "completed", "error"),
                   Check("e", "status", "completed", "pending")]
    answer = graphql(gh, github, """query($head: String!) {
      repository(owner: "acme", name: "web-1") { pullRequests(first: 1, headRefName: $head) {
        nodes { statusCheckRollup { state contexts { checkRunCountsByState { state count }
          statusContextCountsByState { state count } } } } } } }""", head=pull.head_ref)
    rollup = answer["data"]["repository"]["pullRequests"]["nodes"][0]["statusCheckRollup"]
    assert rollup == {"state": "FAILURE", "contexts": {
        "checkRunCountsByState": [{"state": "IN_PROGRESS", "count": 1},
                                  {"state": "QUEUED", "count": 1},
                                  {"state": "SKIPPED", "count": 1}],
        "statusContextCountsByState": [{"state": "ERROR", "count": 1},
                                       {"state": "PENDING", "count": 1}]}}


# -- renamed repositories


def test_a_renamed_repository_is_followed_and_rest_redirects_to_it(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    """repository(owner, name) follows renames unless followRenames: false (GitHub's schema);
    REST answers the old name with 301 to /repositories/ID (GitHub's redirect; the body as
    18F/charlie#85 captured it). httpx follows no redirect unless told to."""
    data.renamed["acme/old-web"] = "acme/web-2"
    answer = graphql(gh, github, """{
      followed: repository(owner: "acme", name: "old-web") { nameWithOwner }
      strict: repository(owner: "acme", name: "old-web", followRenames: false) { name } }""")
    assert answer["data"] == {"followed": {"nameWithOwner": "acme/web-2"}, "strict": None}
    assert answer["errors"][0]["path"] == ["strict"]
    assert answer["errors"][0]["type"] == "NOT_FOUND"

    moved = gh.get("/repos/acme/old-web/actions/runs", params={"per_page": 5})
    location = f"{github.base_url}/repositories/{stable_id('acme/web-2')}/actions/runs?per_page=5"
    assert moved.status_code == 301
    assert moved.headers["location"] == location
    assert moved.json() == {"message": "Moved Permanently", "url": location,
                            "documentation_url": "https://docs.github.com/v3/#http-redirects"}
    followed = gh.get("/repos/acme/old-web/actions/runs", params={"per_page": 5},
                      follow_redirects=True)
    assert followed.status_code == 200
    assert followed.json()["total_count"] == len(data.runs["acme/web-2"])


# -- search qualifiers (https://docs.github.com/search-github/searching-on-github/searching-issues-and-pull-requests)


@pytest.mark.parametrize(("query", "expected"), [
    ("is:pr is:open assignee:@me", lambda p, me: me in p.assignees),
    ("is:pr reviewed-by:@me", lambda p, me: any(r.author == me for r in p.reviews)),
    ("is:pr -author:@me", lambda p, me: p.author != me),
    ("is:pr user-review-requested:@me", lambda p, me: me in p.review_requested),
    ("is:pr org:acme -repo:acme/web-1", lambda p, me: p.repo != "acme/web-1"),
    ("is:pr user:acme archived:false", lambda p, me: True),
    ("is:pr draft:true", lambda p, me: p.draft),
])
def test_search_qualifiers_select_as_github_does(
    github: FakeGitHub, gh: httpx.Client, data: Dataset, query: str, expected: Any
) -> None:
    answer = graphql(gh, github, """query($q: String!) { search(query: $q, type: ISSUE,
      first: 100) { issueCount nodes { """ + PR_FIELDS + " } } }", q=query)
    found = {(n["repository"]["nameWithOwner"], n["number"])
             for n in answer["data"]["search"]["nodes"]}
    wanted = {(p.repo, p.number) for p in pulls(data) if expected(p, data.github_login)}
    assert found == wanted and answer["data"]["search"]["issueCount"] == len(wanted)
    assert wanted, "the dataset should hold a pull request for each qualifier"


def test_a_merged_pull_request_is_closed_too(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    """is:closed finds merged pull requests as well; is:merged and is:unmerged split them (docs:
    "Filtering and searching issues and pull requests")."""
    merged, closed = data.pulls["acme/web-0"][:2]
    merged.state, closed.state = "merged", "closed"
    query = """query($q: String!) { search(query: $q, type: ISSUE, first: 100) {
      nodes { ... on PullRequest { number state closed merged } } } }"""

    def found(q: str) -> list[dict]:
        return graphql(gh, github, query, q=f"is:pr repo:acme/web-0 {q}")["data"]["search"][
            "nodes"]

    assert sorted(n["number"] for n in found("is:closed")) == sorted(
        [merged.number, closed.number])
    assert found("is:merged") == [{"number": merged.number, "state": "MERGED", "closed": True,
                                   "merged": True}]
    assert found("is:closed is:unmerged") == [{"number": closed.number, "state": "CLOSED",
                                               "closed": True, "merged": False}]
    assert len(found("is:open")) == 4 and len(found("is:unmerged")) == 5


def test_an_archived_repository_drops_out_of_archived_false(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    data.archived.add("acme/web-0")
    query = """query($q: String!) { search(query: $q, type: ISSUE, first: 100) { issueCount } }"""
    assert graphql(gh, github, query, q="is:pr archived:false")["data"]["search"][
        "issueCount"] == 12
    assert graphql(gh, github, query, q="is:pr archived:true")["data"]["search"][
        "issueCount"] == 6


# -- the showcase pull requests of the dataset


def test_the_dataset_shows_conflicts_assignment_reviews_and_a_long_ci_matrix(
    github: FakeGitHub, gh: httpx.Client, data: Dataset
) -> None:
    """Whatever the seed, `generate()` gives the sandbox one of my pull requests with
    conflicts, one with 30 checks failing at the 27th, one of someone else's assigned to me and
    one I reviewed that is still open; GraphQL answers them as GitHub would."""
    me = data.github_login
    mine = [p for p in pulls(data) if p.author == me]
    conflicted = next(p for p in mine if p.mergeable == "CONFLICTING")
    assigned = next(p for p in pulls(data) if p.author != me and me in p.assignees)
    reviewed = next(p for p in pulls(data) if p.author != me
                    and any(r.author == me for r in p.reviews))
    assert reviewed.state == "open" and me not in reviewed.review_requested
    assert [c.conclusion for c in matrix_pull(data).checks].index("failure") == 26
    answer = graphql(gh, github, """query($q: String!) { search(query: $q, type: ISSUE,
      first: 100) { nodes { ... on PullRequest { number mergeable mergeStateStatus
        assignees(first: 5) { nodes { login } }
        latestReviews(first: 5) { nodes { author { login } state submittedAt } }
        reviews(first: 5, author: "octo-me") { totalCount } } } } }""",
                     q=f"is:pr repo:{conflicted.repo} repo:{assigned.repo} repo:{reviewed.repo}")
    nodes = {n["number"]: n for n in answer["data"]["search"]["nodes"]}
    assert nodes[conflicted.number]["mergeable"] == "CONFLICTING"
    assert nodes[conflicted.number]["mergeStateStatus"] == "DIRTY"
    assert {"login": me} in nodes[assigned.number]["assignees"]["nodes"]
    assert nodes[reviewed.number]["reviews"]["totalCount"] == 1
    latest = nodes[reviewed.number]["latestReviews"]["nodes"]
    assert {"author": {"login": me}, "state": "COMMENTED",
            "submittedAt": latest[-1]["submittedAt"]} in latest


def test_a_request_that_is_not_json_is_a_400(github: FakeGitHub, gh: httpx.Client) -> None:
    response = gh.post(github.graphql_url, content=b"{not json",
                       headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"message": "Problems parsing JSON",
                               "documentation_url": "https://docs.github.com/graphql",
                               "status": "400"}


def test_cursors_are_opaque_and_read_as_githubs_search_ones(
    github: FakeGitHub, gh: httpx.Client
) -> None:
    """GitHub's search cursors decode to "cursor:N", the N-th result."""
    answer = graphql(gh, github, """{ search(query: "is:pr", type: ISSUE, first: 3) {
      edges { cursor } pageInfo { startCursor endCursor hasPreviousPage } } }""")
    search = answer["data"]["search"]
    assert [base64.b64decode(e["cursor"]) for e in search["edges"]] == [
        b"cursor:1", b"cursor:2", b"cursor:3"]
    assert search["pageInfo"] == {"startCursor": search["edges"][0]["cursor"],
                                  "endCursor": search["edges"][2]["cursor"],
                                  "hasPreviousPage": False}
