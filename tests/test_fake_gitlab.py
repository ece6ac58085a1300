"""The fake GitLab over real loopback HTTP: each behaviour says which GitLab documentation it
follows (docs.gitlab.com/api/...), so that a provider tested against it meets GitLab itself."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from test_fakes import client, get

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
