"""The fake GitLab over real loopback HTTP: each behaviour says which GitLab documentation it
follows (docs.gitlab.com/api/...), so that a provider tested against it meets GitLab itself."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from test_fakes import client, get

from projctld.sandbox import fake_graphql, gitlab_graphql
from projctld.sandbox.dataset import (
    STUCK_SINCE,
    Dataset,
    add_gitlab_project,
    add_stuck_pipeline,
    generate,
)
from projctld.sandbox.fake_gitlab import FakeGitLab, project_id, user_id

PROJECT = "acme/platform/api-0"
ENCODED = "acme%2Fplatform%2Fapi-0"
ME = "lab-me"


@pytest.fixture
def data() -> Dataset:
    return generate(github_repos=1, gitlab_projects=4, changes_per_repo=10, tickets=5,
                    jira_projects=1, now=1_790_000_000.0)


@pytest.fixture
def gitlab(data: Dataset) -> Iterator[FakeGitLab]:
    with FakeGitLab(data, token="gl") as fake:
        yield fake


@pytest.fixture
def gl(gitlab: FakeGitLab) -> Iterator[httpx.Client]:
    with client(gitlab.api_url, headers={"PRIVATE-TOKEN": "gl"}) as gl:
        yield gl


def every_merge_request(data: Dataset):
    return [mr for path in data.gitlab_projects for mr in data.merge_requests[path]]


# https://docs.gitlab.com/api/rest/#offset-based-pagination: x-page, x-per-page, x-next-page,
# x-prev-page, x-total, x-total-pages and a Link header; above 10,000 rows GitLab leaves out
# x-total, x-total-pages and the rel="last" link.
def test_offset_pages_carry_gitlabs_headers_and_drop_totals_past_the_limit(
        gitlab: FakeGitLab, gl: httpx.Client, data: Dataset) -> None:
    count = len(data.merge_requests[PROJECT])
    first = gl.get(f"/projects/{ENCODED}/merge_requests",
                   params={"state": "opened", "per_page": 4})
    assert first.headers["x-page"] == "1" and first.headers["x-next-page"] == "2"
    assert first.headers["x-prev-page"] == "" and first.headers["x-total"] == str(count)
    assert first.headers["x-total-pages"] == str(-(-count // 4))
    assert set(first.links) == {"next", "first", "last"}
    iids, response = [], first
    while True:
        iids += [mr["iid"] for mr in response.json()]
        if "next" not in response.links:
            break
        response = gl.get(response.links["next"]["url"])
    assert response.headers["x-next-page"] == "" and "prev" in response.links
    assert sorted(iids) == sorted(mr.iid for mr in data.merge_requests[PROJECT])
    mr = first.json()[0]
    assert "head_pipeline" not in mr  # lists leave it out; a single merge request has it
    assert mr["references"]["full"] == f"{PROJECT}!{mr['iid']}"
    assert mr["web_url"] == f"https://gitlab.example/{PROJECT}/-/merge_requests/{mr['iid']}"
    assert mr["updated_at"].endswith("Z") and mr["updated_at"][-5] == "."

    gitlab.total_headers_limit = 5
    many = gl.get(f"/projects/{ENCODED}/merge_requests", params={"per_page": 4})
    assert "x-total" not in many.headers and "x-total-pages" not in many.headers
    assert set(many.links) == {"next", "first"}
    gitlab.links = False  # as some proxies in front of GitLab do
    assert "link" not in gl.get(f"/projects/{ENCODED}/merge_requests").headers


# https://docs.gitlab.com/api/merge_requests/#list-merge-requests: GET /merge_requests covers
# every project the user can see and "by default returns only merge requests created by the
# current user"; scope=assigned_to_me, scope=all with reviewer_username or reviewer_id; the
# _id and _username filters of one role are mutually exclusive.
def test_the_instance_wide_list_filters_by_scope_and_role(gl: httpx.Client,
                                                          data: Dataset) -> None:
    every = every_merge_request(data)

    def keys(response: httpx.Response) -> set[tuple[int, int]]:
        assert response.status_code == 200, response.text
        return {(mr["project_id"], mr["iid"]) for mr in response.json()}

    def expected(test) -> set[tuple[int, int]]:
        return {(project_id(mr.project), mr.iid) for mr in every if test(mr)}

    wide = {"per_page": 100, "state": "opened"}
    created = keys(gl.get("/merge_requests", params=wide))
    assert created == expected(lambda mr: mr.author == ME) and created
    assert keys(gl.get("/merge_requests", params={**wide, "scope": "created_by_me"})) == created
    assert keys(gl.get("/merge_requests", params={**wide, "scope": "assigned_to_me"})) == \
        expected(lambda mr: ME in mr.assignees)
    reviewing = expected(lambda mr: ME in mr.reviewers)
    assert reviewing
    assert keys(gl.get("/merge_requests", params={
        **wide, "scope": "all", "reviewer_username": ME})) == reviewing
    assert keys(gl.get("/merge_requests", params={
        **wide, "scope": "all", "reviewer_id": user_id(ME)})) == reviewing
    # Without scope=all, a reviewer filter still keeps to what I created.
    assert keys(gl.get("/merge_requests", params={**wide, "reviewer_username": ME})) == \
        expected(lambda mr: ME in mr.reviewers and mr.author == ME)
    assert keys(gl.get("/merge_requests", params={
        **wide, "scope": "all", "reviewer_username": "None"})) == \
        expected(lambda mr: not mr.reviewers)

    both = gl.get("/merge_requests", params={"reviewer_id": 1, "reviewer_username": ME})
    assert both.status_code == 400
    assert both.json() == {"error": "reviewer_id, reviewer_username are mutually exclusive"}
    bad = gl.get("/merge_requests", params={"scope": "mine"})
    assert bad.status_code == 400 and bad.json() == {"error": "scope does not have a valid value"}


# https://docs.gitlab.com/api/merge_requests/#list-project-merge-requests: the same filters on
# one project, by URL-encoded path or id (https://docs.gitlab.com/api/rest/#namespaced-paths).
def test_project_merge_requests_filter_by_role_and_find_the_project_by_path_or_id(
        gl: httpx.Client, data: Dataset) -> None:
    mine = gl.get(f"/projects/{project_id(PROJECT)}/merge_requests",
                  params={"author_username": ME}).json()
    assert mine and {mr["author"]["username"] for mr in mine} == {ME}
    assert gl.get(f"/projects/{ENCODED.upper()}/merge_requests",
                  params={"scope": "created_by_me"}).json() == mine
    reviewing = gl.get(f"/projects/{ENCODED}/merge_requests",
                       params={"reviewer_username": ME}).json()
    assert all(ME in [r["username"] for r in mr["reviewers"]] for mr in reviewing)
    assert gl.get(f"/projects/{ENCODED}/merge_requests",
                  params={"pagination": "keyset"}).status_code == 405


# https://docs.gitlab.com/api/projects/#get-a-single-project, and the 404 body GitLab sends for
# a project it does not know or the token may not see; a renamed project by its old path.
def test_a_single_project_by_path_or_id_and_an_unknown_one(gitlab: FakeGitLab,
                                                            gl: httpx.Client) -> None:
    by_path = gl.get(f"/projects/{ENCODED}").json()
    assert (by_path["id"], by_path["path_with_namespace"]) == (project_id(PROJECT), PROJECT)
    assert gl.get(f"/projects/{project_id(PROJECT)}").json() == by_path
    gone = gl.get("/projects/acme%2Fnope")
    assert gone.status_code == 404 and gone.json() == {"message": "404 Project Not Found"}
    # lib/api/helpers.rb, find_project: a path is looked up following redirects (renames).
    gitlab.renamed["acme/old-name"] = PROJECT
    assert gl.get("/projects/acme%2FOld-Name").json() == by_path
    assert gl.get("/projects/acme%2Fnope/pipelines").json() == {
        "message": "404 Project Not Found"}


# https://docs.gitlab.com/api/merge_requests/#get-single-mr: `head_pipeline` with
# `started_at`; "has_conflicts ... returns false unless merge_status is cannot_be_merged"
# (#single-merge-request-response-notes); detailed_merge_status values (#merge-status).
def test_a_single_merge_request_has_its_head_pipeline_and_conflicts(
        gl: httpx.Client, data: Dataset) -> None:
    merge_requests = every_merge_request(data)
    with_pipeline = next(mr for mr in merge_requests if mr.head_pipeline
                         and mr.head_pipeline.status == "success")
    path = with_pipeline.project.replace("/", "%2F")
    detail = gl.get(f"/projects/{path}/merge_requests/{with_pipeline.iid}").json()
    head = detail["head_pipeline"]
    assert (head["id"], head["status"]) == (with_pipeline.head_pipeline.id, "success")
    assert head["started_at"] and head["created_at"] <= head["started_at"]
    with_pipeline.head_pipeline.status, with_pipeline.head_pipeline.started_at = "pending", None
    assert gl.get(f"/projects/{path}/merge_requests/{with_pipeline.iid}").json()[
        "head_pipeline"]["started_at"] is None

    conflicted = next(mr for mr in merge_requests if mr.has_conflicts)
    shown = gl.get(f"/projects/{conflicted.project.replace('/', '%2F')}/merge_requests/"
                   f"{conflicted.iid}").json()
    assert (shown["has_conflicts"], shown["merge_status"], shown["detailed_merge_status"]) == \
        (True, "cannot_be_merged", "conflict")
    clean = next(mr for mr in merge_requests if mr.detailed_merge_status == "mergeable")
    shown = gl.get(f"/projects/{clean.project.replace('/', '%2F')}/merge_requests/"
                   f"{clean.iid}").json()
    assert (shown["has_conflicts"], shown["merge_status"]) == (False, "can_be_merged")
    assert {mr.detailed_merge_status for mr in merge_requests} <= {
        "mergeable", "not_approved", "requested_changes", "conflict", "draft_status",
        "ci_must_pass", "ci_still_running", "discussions_not_resolved"}
    assert gl.get(f"/projects/{ENCODED}/merge_requests/999999").json() == {
        "message": "404 Not found"}


# https://docs.gitlab.com/api/merge_request_approvals/ (merge request-level approvals, Premium):
# approvals_required, approvals_left, approved_by, and `approved` when no rule wants an approval
# any more, which without rules is true although nobody approved. On Free the endpoint is
# GitLab FOSS's (lib/api/entities/merge_request_approvals.rb): `approved` when anyone approved,
# `approved_by`, no counts; and Free approvals are optional, so none holds a merge back
# (https://docs.gitlab.com/user/project/merge_requests/approvals/).
def test_approvals_answer_in_the_shape_of_the_tier(gitlab: FakeGitLab, gl: httpx.Client,
                                                   data: Dataset) -> None:
    no_rules = next(path for path in data.gitlab_projects
                    if data.gitlab_approvals_required[path] == 0)
    nobody = next(mr for mr in data.merge_requests[no_rules]
                  if mr.detailed_merge_status == "mergeable" and not mr.approved_by)
    url = f"/projects/{no_rules.replace('/', '%2F')}/merge_requests/{nobody.iid}"
    premium = gl.get(url + "/approvals").json()
    assert (premium["approved"], premium["approvals_required"], premium["approvals_left"],
            premium["approved_by"]) == (True, 0, 0, [])
    assert gl.get(url).json()["detailed_merge_status"] == "mergeable"

    ruled = next(path for path in data.gitlab_projects
                 if data.gitlab_approvals_required[path] == 1)
    waiting = next(mr for mr in data.merge_requests[ruled]
                   if mr.detailed_merge_status == "not_approved")
    done = next(mr for mr in data.merge_requests[ruled]
                if mr.detailed_merge_status == "mergeable")
    base = f"/projects/{ruled.replace('/', '%2F')}/merge_requests"
    left = gl.get(f"{base}/{waiting.iid}/approvals").json()
    assert (left["approved"], left["approvals_required"], left["approvals_left"]) == \
        (False, 1, 1)
    given = gl.get(f"{base}/{done.iid}/approvals").json()
    assert (given["approved"], given["approvals_left"]) == (True, 0)
    assert [a["user"]["username"] for a in given["approved_by"]] == done.approved_by

    gitlab.tier = "free"
    free = gl.get(url + "/approvals").json()
    assert free == {"user_has_approved": False, "user_can_approve": True,
                    "approved_by": [], "approved": False}
    free_given = gl.get(f"{base}/{done.iid}/approvals").json()
    assert free_given["approved"] is True and "approvals_left" not in free_given
    assert gl.get(f"{base}/{waiting.iid}").json()["detailed_merge_status"] == "mergeable"


# https://docs.gitlab.com/api/merge_requests/#get-single-merge-request-reviewers: each reviewer
# with `state` (GitLab's states: unreviewed, reviewed, requested_changes, approved, ...).
def test_reviewers_come_with_their_states(gl: httpx.Client, data: Dataset) -> None:
    changes = next(mr for mr in every_merge_request(data)
                   if mr.detailed_merge_status == "requested_changes")
    answer = gl.get(f"/projects/{changes.project.replace('/', '%2F')}/merge_requests/"
                    f"{changes.iid}/reviewers").json()
    assert [(r["user"]["username"], r["state"]) for r in answer] == [
        (login, changes.reviewer_states.get(login, "unreviewed")) for login in changes.reviewers]
    assert "requested_changes" in {r["state"] for r in answer}
    assert all(r["created_at"].endswith("Z") for r in answer)


# Routes an instance does not have answer 404 {"error": "404 Not Found"}: an instance older than
# the approvals or reviewers endpoints.
def test_an_older_instance_lacks_the_approvals_and_reviewers_endpoints(
        gitlab: FakeGitLab, gl: httpx.Client, data: Dataset) -> None:
    mr = data.merge_requests[PROJECT][0]
    gitlab.missing = {"approvals", "reviewers"}
    for endpoint in ("approvals", "reviewers"):
        answer = gl.get(f"/projects/{ENCODED}/merge_requests/{mr.iid}/{endpoint}")
        assert answer.status_code == 404 and answer.json() == {"error": "404 Not Found"}
    assert gl.get(f"/projects/{ENCODED}/merge_requests/{mr.iid}").status_code == 200


# https://docs.gitlab.com/api/pipelines/#list-project-pipelines: statuses include `manual` and
# `scheduled`; a list shows `created_at` and `updated_at` but no `started_at`. The pipeline
# pending since 2016 is one a team found on a real instance.
def test_pipelines_list_manual_and_a_pipeline_pending_since_2016(
        gl: httpx.Client, data: Dataset) -> None:
    stuck = add_stuck_pipeline(data, PROJECT)
    data.pipelines[PROJECT][-1].status = "manual"
    mine = gl.get(f"/projects/{ENCODED}/pipelines",
                  params={"username": ME, "order_by": "id", "sort": "desc",
                          "per_page": 100}).json()
    assert [p["id"] for p in mine] == sorted(
        (p.id for p in data.pipelines[PROJECT] if p.username == ME), reverse=True)
    assert mine[-1]["id"] == stuck.id  # the oldest
    assert (mine[-1]["status"], mine[-1]["created_at"][:10]) == ("pending", "2016-04-11")
    assert stuck.created_at == STUCK_SINCE
    assert all("started_at" not in p for p in mine)
    manual = gl.get(f"/projects/{ENCODED}/pipelines", params={"status": "manual"}).json()
    assert [p["status"] for p in manual] == ["manual"]


def test_pipelines_page_by_keyset_too(gl: httpx.Client, data: Dataset) -> None:
    ids, url = [], f"/projects/{ENCODED}/pipelines"
    params: dict[str, str] | None = {"pagination": "keyset", "order_by": "id", "sort": "desc",
                                     "per_page": "3"}
    while url:
        page = gl.get(url, params=params)
        assert "x-total" not in page.headers
        ids += [p["id"] for p in page.json()]
        url, params = page.links.get("next", {}).get("url"), None
    assert ids == sorted((p.id for p in data.pipelines[PROJECT]), reverse=True)


# A project of 5,000 open merge requests: the project list pages through all of them (with
# totals: fewer than 10,000), while the instance-wide lists hold only mine.
def test_a_project_of_five_thousand_open_merge_requests(gl: httpx.Client,
                                                         data: Dataset) -> None:
    add_gitlab_project(data, "acme/monolith", 5000, mine=3, reviewing=2)
    everything = gl.get("/projects/acme%2Fmonolith/merge_requests",
                        params={"state": "opened", "per_page": 100})
    assert everything.headers["x-total"] == "5000"
    assert everything.headers["x-total-pages"] == "50"
    monolith = project_id("acme/monolith")
    created = [mr for mr in gl.get("/merge_requests", params={
        "state": "opened", "per_page": 100}).json() if mr["project_id"] == monolith]
    assert len(created) == 3
    reviewing = [mr for mr in gl.get("/merge_requests", params={
        "state": "opened", "per_page": 100, "scope": "all", "reviewer_username": ME}).json()
        if mr["project_id"] == monolith]
    assert len(reviewing) == 2


def test_auth_rate_limit_and_a_relative_root(gitlab: FakeGitLab, data: Dataset) -> None:
    assert get(gitlab.api_url + "/user").json() == {"message": "401 Unauthorized"}
    bearer = get(gitlab.api_url + "/user", headers={"Authorization": "Bearer gl"})
    assert bearer.json()["username"] == ME
    assert bearer.headers["ratelimit-remaining"] == "1999"
    assert bearer.headers["ratelimit-observed"] == "1"
    assert bearer.headers["ratelimit-resettime"].endswith("GMT")
    gitlab.rate.remaining = 0
    limited = get(gitlab.api_url + "/user", headers={"PRIVATE-TOKEN": "gl"})
    assert limited.status_code == 429 and limited.json() == {"message": "Retry later"}
    assert 0 < int(limited.headers["retry-after"]) <= 60
    with FakeGitLab(data, token="gl", prefix="/gitlab") as rooted:
        assert rooted.api_url.endswith("/gitlab/api/v4")
        ok = get(f"{rooted.api_url}/projects/{ENCODED}/pipelines",
                 headers={"PRIVATE-TOKEN": "gl"})
        assert ok.status_code == 200


# -- GraphQL (docs.gitlab.com/api/graphql/, reference: docs.gitlab.com/api/graphql/reference/)

MR_FIELDS = """
  iid title webUrl sourceBranch targetBranch draft conflicts updatedAt projectId
  reference(full: true) detailedMergeStatus mergeStatusEnum approvalsLeft
  author { username }
  approvedBy { nodes { username } }
  reviewers { nodes { username mergeRequestInteraction { reviewState } } }
  headPipeline { status path startedAt createdAt }
"""
LISTS = """
query($first: Int!) {
  currentUser {
    username
    created: authoredMergeRequests(state: opened, sort: UPDATED_DESC, first: $first) {
      pageInfo { hasNextPage endCursor } nodes { ...mr } }
    assigned: assignedMergeRequests(state: opened, sort: UPDATED_DESC, first: $first) {
      pageInfo { hasNextPage endCursor } nodes { ...mr } }
    review: reviewRequestedMergeRequests(state: opened, sort: UPDATED_DESC, first: $first) {
      pageInfo { hasNextPage endCursor } nodes { ...mr } }
  }
}
fragment mr on MergeRequest {""" + MR_FIELDS + "}\n"


def graphql(gitlab: FakeGitLab, query: str, token: str | None = "gl",
            **variables: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with client() as http:
        return http.post(gitlab.graphql_url, json={"query": query, "variables": variables},
                         headers=headers)


def by_key(nodes: list[dict]) -> dict[str, dict]:
    return {node["reference"]: node for node in nodes}


# CurrentUser.authoredMergeRequests, assignedMergeRequests and reviewRequestedMergeRequests
# ("merge requests assigned to the user for review") hold what the REST scopes do; each
# MergeRequest field as the reference types it: iid a String, detailedMergeStatus and the
# reviewers' reviewState upper-case enums, approvalsLeft an Int (Enterprise Edition), the head
# pipeline's `path` relative to the instance ("Relative path to the pipeline's page").
def test_graphql_lists_what_concerns_me_with_review_and_ci(gitlab: FakeGitLab,
                                                            data: Dataset) -> None:
    answer = graphql(gitlab, LISTS, first=100)
    assert answer.status_code == 200
    body = answer.json()
    assert "errors" not in body
    me = body["data"]["currentUser"]
    assert me["username"] == ME
    every = every_merge_request(data)
    for alias, test in (("created", lambda mr: mr.author == ME),
                        ("assigned", lambda mr: ME in mr.assignees),
                        ("review", lambda mr: ME in mr.reviewers)):
        assert set(by_key(me[alias]["nodes"])) == {f"{mr.project}!{mr.iid}" for mr in every
                                                   if test(mr)}
        updated = [node["updatedAt"] for node in me[alias]["nodes"]]
        assert updated == sorted(updated, reverse=True)
        assert me[alias]["pageInfo"]["hasNextPage"] is False
    shown = by_key(me["created"]["nodes"] + me["review"]["nodes"])
    for mr in every:
        node = shown.get(f"{mr.project}!{mr.iid}")
        if node is None:
            continue
        left = max(0, data.gitlab_approvals_required[mr.project] - len(mr.approved_by))
        assert (node["iid"], node["projectId"]) == (str(mr.iid), project_id(mr.project))
        assert node["approvalsLeft"] == left
        assert [a["username"] for a in node["approvedBy"]["nodes"]] == mr.approved_by
        assert node["detailedMergeStatus"] == mr.detailed_merge_status.upper()
        assert node["conflicts"] is mr.has_conflicts
        assert [(r["username"], r["mergeRequestInteraction"]["reviewState"])
                for r in node["reviewers"]["nodes"]] == [
            (login, mr.reviewer_states.get(login, "unreviewed").upper())
            for login in mr.reviewers]
        pipeline = mr.head_pipeline
        if pipeline is None:
            assert node["headPipeline"] is None
        else:
            assert node["headPipeline"]["status"] == pipeline.status.upper()
            assert node["headPipeline"]["path"] == f"/{mr.project}/-/pipelines/{pipeline.id}"
            assert (node["headPipeline"]["startedAt"] is None) == (pipeline.started_at is None)


# The tier decides approvalsLeft (Premium: what the approval rules still want) and, on Free,
# no approval rule holds a merge back (docs.gitlab.com/user/project/merge_requests/approvals/);
# Community Edition has no approvalsLeft at all (ee/app/graphql/ee/types/merge_request_type.rb).
def test_graphql_approvals_follow_the_tier(gitlab: FakeGitLab, data: Dataset) -> None:
    gitlab.tier = "free"
    nodes = graphql(gitlab, LISTS, first=100).json()["data"]["currentUser"]["created"]["nodes"]
    assert nodes and all(node["approvalsLeft"] is None for node in nodes)
    assert "NOT_APPROVED" not in {node["detailedMergeStatus"] for node in nodes}


# docs.gitlab.com/api/graphql/#limits: "Maximum page size: 100 records (nodes) per page"; lists
# of merge requests page by keyset cursors (Gitlab::Graphql::Pagination::Keyset::Connection),
# which refuses one it cannot read: "Please provide a valid cursor".
def test_graphql_pages_by_cursor_at_most_a_hundred_at_a_time(gitlab: FakeGitLab,
                                                              data: Dataset) -> None:
    add_gitlab_project(data, "acme/monolith", 5000, mine=150, reviewing=2)
    query = """query($first: Int, $after: String) { currentUser {
      authoredMergeRequests(state: opened, sort: UPDATED_DESC, first: $first, after: $after) {
        count pageInfo { hasNextPage endCursor } nodes { reference updatedAt } } } }"""
    seen: list[str] = []
    sizes: list[int] = []
    after = None
    while True:
        page = graphql(gitlab, query, first=1000, after=after).json()
        listed = page["data"]["currentUser"]["authoredMergeRequests"]
        sizes.append(len(listed["nodes"]))
        seen += [node["reference"] for node in listed["nodes"]]
        if not listed["pageInfo"]["hasNextPage"]:
            break
        after = listed["pageInfo"]["endCursor"]
    mine = [mr for mr in every_merge_request(data) if mr.author == ME]
    assert sizes[:-1] == [100] * (len(sizes) - 1) and 0 < sizes[-1] <= 100 and len(sizes) > 1
    assert len(seen) == len(set(seen)) == len(mine) == listed["count"]
    bad = graphql(gitlab, query, first=5, after="not a cursor").json()
    assert bad["data"]["currentUser"]["authoredMergeRequests"] is None
    (error,) = bad["errors"]
    assert error["message"] == "Please provide a valid cursor"
    assert error["path"] == ["currentUser", "authoredMergeRequests"]


# docs.gitlab.com/api/graphql/#maximum-query-complexity: 250 with a token, 200 without; each
# field adds 1, some more. app/graphql/types/base_field.rb: +1 for a field that calls Gitaly,
# or the constant a definition gives (reviewers: 5); a list with a resolver adds its own 1 (+1
# for `sort`) and then 1% of itself per node it may return. A query over the limit is refused
# before it runs, in graphql-ruby's words.
def test_graphql_complexity_is_scored_as_gitlab_scores_it(gitlab: FakeGitLab) -> None:
    def score(query: str, **variables: object) -> int:
        served = gitlab_graphql.schema()
        prepared = fake_graphql.prepare(served, query)
        operation = next(iter(prepared.operations.values()))
        return gitlab_graphql.complexity(served, prepared.document, operation, variables)

    # Per merge request: 10 plain fields, detailedMergeStatus 2, mergeStatusEnum 1,
    # approvalsLeft 2, author 2, approvedBy 3, reviewers 5 + 4, headPipeline 5: 34; per list
    # (34 + 1 nodes + 3 pageInfo + 2 resolver) * (1 + first / 100); currentUser and username 2.
    assert score(LISTS, first=50) == 3 * 60 + 2 == 182
    assert score(LISTS, first=100) == 3 * 80 + 2 == 242
    assert score(LISTS, first=1000) == 242  # a page holds at most 100
    assert score("{ currentUser { username } }") == 2
    gitlab.max_complexity = 181
    refused = graphql(gitlab, LISTS, first=50).json()
    assert refused == {"errors": [{"message": "Query has complexity of 182, which exceeds max "
                                              "complexity of 181"}]}
    gitlab.max_complexity = None
    anonymous = graphql(gitlab, LISTS, token=None, first=100).json()
    assert anonymous == {"errors": [{"message": "Query has complexity of 242, which exceeds "
                                                "max complexity of 200"}]}


# docs.gitlab.com/api/graphql/#authentication: a token that is not valid gets 401
# {"errors":[{"message":"Invalid token"}]}; without one, queries run as for an anonymous
# visitor ("You can access some queries without authentication"), who has no currentUser.
# A token of the wrong scope is refused by REST (403 insufficient_scope) and by GraphQL alike.
def test_graphql_tokens(gitlab: FakeGitLab) -> None:
    bad = graphql(gitlab, "{ currentUser { username } }", token="nope")
    assert bad.status_code == 401 and bad.json() == {"errors": [{"message": "Invalid token"}]}
    anonymous = graphql(gitlab, "{ currentUser { username } }", token=None)
    assert anonymous.json() == {"data": {"currentUser": None}}
    with client() as http:
        private = http.post(gitlab.graphql_url, headers={"PRIVATE-TOKEN": "gl"},
                            json={"query": "{ currentUser { username } }"})
    assert private.json() == {"data": {"currentUser": {"username": ME}}}


# A field the instance does not have is refused before anything runs, in graphql-ruby's words
# and with its extensions (gitlab-org/gitlab#419977: "Field 'approved' doesn't exist on type
# 'MergeRequest'" from a Community Edition instance before 16.3); an instance without the
# GraphQL API (before 12.1, or the `graphql` feature flag off) answers 404 at /api/graphql.
def test_graphql_of_an_older_instance(gitlab: FakeGitLab) -> None:
    gitlab.missing = {"MergeRequest.approvalsLeft", "MergeRequest.approved"}
    refused = graphql(gitlab, LISTS, first=5).json()
    assert "data" not in refused
    (error,) = refused["errors"]
    assert error["message"] == "Field 'approvalsLeft' doesn't exist on type 'MergeRequest'"
    assert error["extensions"] == {"code": "undefinedField", "typeName": "MergeRequest",
                                   "fieldName": "approvalsLeft"}
    fine = graphql(gitlab, LISTS.replace("approvalsLeft", ""), first=5).json()
    assert "errors" not in fine and fine["data"]["currentUser"]["created"]["nodes"]
    gitlab.missing = {"graphql"}
    assert graphql(gitlab, LISTS, first=5).status_code == 404


# An error GitLab gives for one field (e.g. Gitlab::Graphql::Errors::ResourceNotAvailable, "The
# resource that you are attempting to access does not exist or you don't have permission to
# perform this action") comes beside the data, with message, locations and path, as the
# documented examples show (docs.gitlab.com/api/graphql/#resolve-mutations-detected-as-spam);
# the field is null, and a null in a non-null field nulls its nearest nullable parent (the
# GraphQL specification, "Handling Field Errors"): here the merge request in `nodes`.
def test_graphql_errors_beside_partial_data(gitlab: FakeGitLab, data: Dataset) -> None:
    mine = [mr for mr in every_merge_request(data) if mr.author == ME]
    mine.sort(key=lambda mr: mr.updated_at, reverse=True)
    first, second = mine[:2]
    gitlab.graphql_field_errors = {(first.project, first.iid, "headPipeline"): "Gitaly timeout",
                                   (second.project, second.iid, "title"): "no access"}
    body = graphql(gitlab, LISTS, first=100).json()
    nodes = body["data"]["currentUser"]["created"]["nodes"]
    assert nodes[0]["reference"] == f"{first.project}!{first.iid}"
    assert nodes[0]["headPipeline"] is None and nodes[0]["title"] == first.title
    assert nodes[1] is None
    assert sum(node is not None for node in nodes) == len(mine) - 1
    errors = {tuple(error["path"]): error for error in body["errors"]}
    pipeline = errors[("currentUser", "created", "nodes", 0, "headPipeline")]
    assert pipeline["message"] == "Gitaly timeout"
    assert list(pipeline) == ["message", "locations", "path"]
    assert ("currentUser", "created", "nodes", 1, "title") in errors
