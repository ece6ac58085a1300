"""The GitLab provider against the fake GitLab: what it asks, what it makes of the answers."""

from __future__ import annotations

import time

import anyio
import httpx
import msgspec
import pytest
from test_providers import Polling, one_project, world

from projctld.config import Config, GitLabConfig, Instance
from projctld.errors import UpstreamError
from projctld.sandbox.dataset import (
    STUCK_SINCE,
    Dataset,
    MergeRequest,
    add_gitlab_project,
    add_stuck_pipeline,
    generate,
)
from projctld.sandbox.demo import TOKEN, sandbox_config
from projctld.sandbox.fake_gitlab import project_id
from projctld.store.database import Database
from projctld.store.http_cache import HttpCache
from projctld.upstream.providers import create_providers, gitlab, gitlab_graphql, http
from projctld.upstream.providers.gitlab import _next_page
from projctld.upstream.providers.model import Snapshot


def concerns_me(data: Dataset, mr: MergeRequest) -> bool:
    me = data.gitlab_username
    return mr.state == "opened" and (mr.author == me or me in mr.assignees
                                     or me in mr.reviewers)


def mine(data: Dataset, projects: list[str] | None = None) -> dict[tuple[str, int], MergeRequest]:
    return {(mr.project, mr.iid): mr for path in projects or data.gitlab_projects
            for mr in data.merge_requests[path] if concerns_me(data, mr)}


def dataset(**sizes: int) -> Dataset:
    return generate(**{"github_repos": 1, "gitlab_projects": 4, "changes_per_repo": 10,
                       "tickets": 5, **sizes})


def with_gitlab(config: Config, *paths: str) -> Config:
    web = msgspec.structs.replace(config.projects["web"], gitlab=list(paths))
    return msgspec.structs.replace(config, projects={"web": web})


def polls(up, config: Config, db_path: str, advances: list[float], *, upstream: str = "gitlab"
          ) -> list[tuple[Snapshot, list]]:
    """Poll `web` with one provider (as the daemon keeps it), the clock moved on by each of
    `advances` seconds before each poll: each poll's snapshot and the requests it sent."""
    clock = [time.time()]

    async def run() -> list[tuple[Snapshot, list]]:
        db = Database(db_path)
        try:
            async with httpx.AsyncClient() as client:
                provider = create_providers(config, client, HttpCache(db, clock[0]),
                                            clock=lambda: clock[0])[upstream]
                done = []
                for step in advances:
                    clock[0] += step
                    up.gitlab.reset_log()
                    snapshot = await provider.poll("web", config.projects["web"], fresh=True)
                    done.append((snapshot, list(up.gitlab.requests)))
                return done
        finally:
            db.close()

    return anyio.run(run)


# What is asked: only what concerns me (docs.gitlab.com/api/merge_requests/#list-merge-requests)


@pytest.mark.parametrize("transport", ["graphql", "rest"])
def test_finds_merge_requests_i_wrote_am_assigned_or_review(tmp_path, transport: str) -> None:
    with world(dataset()) as up:
        if transport == "rest":
            up.gitlab.missing.add("graphql")
        config = with_gitlab(one_project(up), *up.data.gitlab_projects)
        snapshot = Polling(config, str(tmp_path / "s.db")).poll("gitlab", "web")
        lists = [r.path for r in up.gitlab.requests if r.path.startswith("/api/v4/merge_requests")]
        graphql = [r for r in up.gitlab.requests if r.path == "/api/graphql"]
        reads = [r for r in up.gitlab.requests if "/merge_requests/" in r.path]
    expected = mine(up.data)
    assert {(cr.repo, cr.number) for cr in snapshot.change_requests} == set(expected)
    assert len(snapshot.change_requests) == len(expected)  # each once, whatever its roles
    me = up.data.gitlab_username
    for cr in snapshot.change_requests:
        mr = expected[(cr.repo, cr.number)]
        assert (cr.mine, cr.assigned) == (mr.author == me, me in mr.assignees)
        assert cr.ref == f"{cr.repo}!{cr.number}" and cr.upstream == "gitlab"
        assert (cr.ci.state == "none") == (mr.head_pipeline is None)
        assert cr.draft == mr.draft
    if transport == "graphql":
        # One GraphQL request holds all three lists and all that status needs of each merge
        # request: no REST list, no read of a merge request.
        assert [(r.method, r.status) for r in graphql] == [("POST", 200)]
        assert not lists and not reads
        return
    # Three instance-wide lists, filtered by GitLab, and no project-wide listing at all.
    assert sorted(lists) == sorted([
        "/api/v4/merge_requests?scope=created_by_me&state=opened&order_by=updated_at&sort=desc"
        "&per_page=100",
        "/api/v4/merge_requests?scope=assigned_to_me&state=opened&order_by=updated_at&sort=desc"
        "&per_page=100",
        "/api/v4/merge_requests?scope=all&state=opened&order_by=updated_at&sort=desc"
        f"&per_page=100&reviewer_username={me}"])


def test_the_cost_of_a_poll_does_not_grow_with_a_projects_size(tmp_path) -> None:
    def requests_per_poll(count: int) -> tuple[int, int, int]:
        data = dataset(gitlab_projects=1)
        add_gitlab_project(data, "acme/monolith", count, mine=3, reviewing=2)
        with world(data) as up:
            config = with_gitlab(one_project(up), "acme/monolith")
            polling = Polling(config, str(tmp_path / f"{count}.db"))
            cold = polling.poll("gitlab", "web")
            cold_requests = len(up.gitlab.requests)
            up.gitlab.reset_log()
            polling.poll("gitlab", "web")
            return len(cold.change_requests), cold_requests, len(up.gitlab.requests)

    small, big = requests_per_poll(40), requests_per_poll(5000)
    assert small == big
    assert big[0] == 5  # mine: 3 written by me, 2 to review


def test_a_project_by_id_or_by_path_in_any_case_finds_its_merge_requests(tmp_path) -> None:
    with world(dataset()) as up:
        first, second = up.data.gitlab_projects[:2]
        config = with_gitlab(one_project(up), str(project_id(first)), second.upper())
        snapshot = Polling(config, str(tmp_path / "s.db")).poll("gitlab", "web")
    expected = {(mr.iid, path) for path, configured in
                ((first, str(project_id(first))), (second, second.upper()))
                for mr in mine(up.data, [path]).values()}
    # Each shows under the name it was configured by; refs are GitLab's own.
    assert {(cr.number, cr.ref.split("!")[0]) for cr in snapshot.change_requests} == expected
    assert {cr.repo for cr in snapshot.change_requests} == {str(project_id(first)),
                                                            second.upper()}
    assert not snapshot.problems


def test_a_renamed_project_configured_by_its_old_path_still_finds_its_merge_requests(
        tmp_path) -> None:
    # The API follows a renamed project's redirect; the merge requests say the new path.
    with world(dataset()) as up:
        path = up.data.gitlab_projects[0]
        up.gitlab.renamed["acme/legacy-api"] = path
        config = with_gitlab(one_project(up), "acme/legacy-api")
        snapshot = Polling(config, str(tmp_path / "s.db")).poll("gitlab", "web")
    assert {cr.number for cr in snapshot.change_requests} == \
        {iid for _, iid in mine(up.data, [path])}
    assert {cr.repo for cr in snapshot.change_requests} == {"acme/legacy-api"}
    assert {cr.ref.split("!")[0] for cr in snapshot.change_requests} == {path}


def test_a_named_instance_names_every_view(tmp_path) -> None:
    with world(dataset()) as up:
        base = one_project(up)
        section = GitLabConfig(url=up.gitlab_url, token_env="", token=TOKEN)
        path = up.data.gitlab_projects[0]
        config = msgspec.structs.replace(
            with_gitlab(base, f"work:{path}"),
            extra_instances={"work": Instance("work", "gitlab", section)})
        snapshot = Polling(config, str(tmp_path / "s.db")).poll("work", "web")
    assert snapshot.change_requests and snapshot.pipelines
    assert {cr.upstream for cr in snapshot.change_requests} == {"work"}
    assert {p.upstream for p in snapshot.pipelines} == {"work"}
    assert {cr.repo for cr in snapshot.change_requests} == {path}


# One bad project costs only itself (docs.gitlab.com/api/rest/troubleshooting/#status-codes)


@pytest.mark.parametrize(("fault", "code", "advice"), [
    ("unknown", "not_found", "under `gitlab`"),
    ("forbidden", "forbidden", "read_api"),
])
def test_a_bad_project_costs_only_itself_and_names_the_fix(tmp_path, fault: str, code: str,
                                                           advice: str) -> None:
    with world(dataset()) as up:
        good = up.data.gitlab_projects[:2]
        bad = "acme/nowhere/gone" if fault == "unknown" else up.data.gitlab_projects[2]
        if fault == "forbidden":
            up.gitlab.fail(bad.replace("/", "%2F"), status=403, times=10,
                           body=b'{"message":"403 Forbidden"}')
        config = with_gitlab(one_project(up), good[0], bad, good[1])
        snapshot = Polling(config, str(tmp_path / "s.db")).poll("gitlab", "web")
    (problem,) = snapshot.problems
    assert (problem.part, problem.code) == (bad, code)
    assert bad in problem.message
    assert any(advice in s for s in problem.suggestions), problem.suggestions
    assert {(cr.repo, cr.number) for cr in snapshot.change_requests} == set(mine(up.data, good))
    assert {p.repo for p in snapshot.pipelines} == set(good)


@pytest.mark.parametrize(("transport", "failing"), [
    ("graphql", r"^/api/graphql$"),
    ("rest", r"/api/v4/merge_requests\?scope=assigned_to_me"),
])
def test_a_list_that_fails_fails_the_whole_source(tmp_path, transport: str,
                                                  failing: str) -> None:
    with world(dataset()) as up:
        if transport == "rest":
            up.gitlab.missing.add("graphql")
        up.gitlab.fail(failing, status=503, times=10)
        with pytest.raises(UpstreamError) as caught:
            Polling(one_project(up), str(tmp_path / "s.db")).poll("gitlab", "web")
    assert caught.value.code == "server_error"


def test_a_merge_request_gone_since_it_was_listed_is_left_out(tmp_path) -> None:
    # REST only: GraphQL answers each merge request with its list, no read can find it gone.
    with world(dataset()) as up:
        up.gitlab.missing.add("graphql")
        path = up.data.gitlab_projects[0]
        gone = next(iter(mine(up.data, [path]).values()))
        up.gitlab.fail(rf"/merge_requests/{gone.iid}$", status=404, times=1,
                       body=b'{"message":"404 Not found"}')
        snapshot = Polling(with_gitlab(one_project(up), path),
                           str(tmp_path / "s.db")).poll("gitlab", "web")
    assert {cr.number for cr in snapshot.change_requests} == \
        {iid for _, iid in mine(up.data, [path])} - {gone.iid}
    assert not snapshot.problems


# Review as it is (docs.gitlab.com/api/merge_request_approvals/, merge_requests/#merge-status)


@pytest.mark.parametrize("tier", ["premium", "free"])
def test_mergeable_without_approval_rules_is_not_approved(tmp_path, tier: str) -> None:
    data = dataset()
    no_rules = next(p for p in data.gitlab_projects if not data.gitlab_approvals_required[p])
    me = data.gitlab_username
    # Mine, nothing blocks a merge, and nobody approved: what the issue saw shown "approved".
    nobody = next(mr for mr in data.merge_requests[no_rules] if mr.author == me)
    nobody.detailed_merge_status, nobody.approved_by, nobody.draft = "mergeable", [], False
    nobody.reviewer_states.clear()
    with world(data) as up:
        up.gitlab.tier = tier
        snapshot = Polling(with_gitlab(one_project(up), no_rules),
                           str(tmp_path / "s.db")).poll("gitlab", "web")
    view = next(cr for cr in snapshot.change_requests if cr.number == nobody.iid)
    assert (view.review, view.merge_status, view.approved_by) == ("none", "mergeable", [])
    assert view.approvals_left == (0 if tier == "premium" else None)


def test_review_approvals_and_conflicts_follow_what_gitlab_says(tmp_path) -> None:
    data = dataset()
    with world(data) as up:
        config = with_gitlab(one_project(up), *data.gitlab_projects)
        snapshot = Polling(config, str(tmp_path / "s.db")).poll("gitlab", "web")
    expected = mine(data)
    seen = set()
    for cr in snapshot.change_requests:
        mr = expected[(cr.repo, cr.number)]
        required = data.gitlab_approvals_required[mr.project]
        left = max(0, required - len(mr.approved_by))
        assert cr.approved_by == mr.approved_by
        assert cr.approvals_left == left
        assert cr.conflicts == mr.has_conflicts
        assert cr.merge_status == mr.detailed_merge_status
        if "requested_changes" in mr.reviewer_states.values():
            assert cr.review == "changes_requested"
        elif mr.approved_by and not left:
            assert cr.review == "approved"
        elif left or mr.detailed_merge_status == "not_approved":
            assert cr.review == "review_required"
        else:
            assert cr.review == "none"
        state = mr.reviewer_states.get(data.gitlab_username)
        assert cr.reviewed == (state in ("reviewed", "approved", "requested_changes")
                               or data.gitlab_username in mr.approved_by)
        seen.add(cr.review)
    assert {"approved", "review_required", "none", "changes_requested"} <= seen


def test_an_instance_without_approvals_or_reviewers_endpoints(tmp_path) -> None:
    data = dataset()
    path = next(p for p in data.gitlab_projects if data.gitlab_approvals_required[p])
    with world(data) as up:
        up.gitlab.missing = {"approvals", "reviewers", "graphql"}  # endpoints REST reads
        polling = Polling(with_gitlab(one_project(up), path), str(tmp_path / "s.db"))
        first = polling.poll("gitlab", "web")
        up.gitlab.reset_log()

    for cr in first.change_requests:
        mr = mine(data)[(cr.repo, cr.number)]
        assert cr.approvals_left is None and cr.approved_by == []
        assert cr.review == {"not_approved": "review_required",
                             "requested_changes": "changes_requested"}.get(
            mr.detailed_merge_status, "none")
    assert not first.problems


def test_a_missing_endpoint_is_asked_again_only_an_hour_later(tmp_path) -> None:
    with world(dataset()) as up:
        up.gitlab.missing = {"approvals", "graphql"}
        config = with_gitlab(one_project(up), up.data.gitlab_projects[0])
        done = polls(up, config, str(tmp_path / "s.db"), [0, 60, gitlab.RECHECK_MISSING])
    first, soon, later = (sum(r.path.endswith("/approvals") for r in requests)
                          for _, requests in done)
    assert first > 0 and soon == 0 and later > 0


# CI (docs.gitlab.com/api/pipelines/)


def test_a_manual_pipeline_is_manual_not_pending(tmp_path) -> None:
    data = dataset()
    path = data.gitlab_projects[0]
    me = data.gitlab_username
    head = next(mr for mr in data.merge_requests[path]
                if mr.author == me and mr.head_pipeline is not None)
    head.head_pipeline.status, head.head_pipeline.started_at = "manual", None
    with world(data) as up:
        snapshot = Polling(with_gitlab(one_project(up), path),
                           str(tmp_path / "s.db")).poll("gitlab", "web")
    view = next(cr for cr in snapshot.change_requests if cr.number == head.iid)
    assert view.ci.state == "manual"
    branch = next(p for p in snapshot.pipelines if p.branch == head.source_branch)
    assert branch.state == "manual"
    # It waits for a person: polling faster would not make it finish.
    assert not Snapshot(pipelines=[branch], change_requests=[view]).ci_running(
        time.time(), 43200.0)


def test_a_pipeline_pending_since_2016_is_old_enough_to_be_stuck(tmp_path) -> None:
    data = dataset(gitlab_projects=1)
    path = data.gitlab_projects[0]
    stuck = add_stuck_pipeline(data, path)
    # Nothing else of mine unfinished: only the 2016 pipeline could speed polling.
    for pipeline in data.pipelines[path]:
        if pipeline is not stuck and pipeline.status not in ("success", "failed"):
            pipeline.status = "success"
    with world(data) as up:
        snapshot = Polling(with_gitlab(one_project(up), path),
                           str(tmp_path / "s.db")).poll("gitlab", "web")
    view = next(p for p in snapshot.pipelines if p.branch == stuck.ref)
    assert (view.state, view.started_at) == ("pending", STUCK_SINCE)
    assert not snapshot.ci_running(time.time(), 43200.0)
    fresh = msgspec.structs.replace(view, started_at=time.time() - 60)
    assert Snapshot(pipelines=[fresh]).ci_running(time.time(), 43200.0)


# Paging (docs.gitlab.com/api/rest/#offset-based-pagination) and conditional requests


def test_lists_page_by_link_and_by_next_page_without_totals(tmp_path) -> None:
    data = dataset(gitlab_projects=1, changes_per_repo=330)
    created = sum(mr.author == data.gitlab_username for mr in data.merge_requests[
        data.gitlab_projects[0]])
    assert created > 100
    for links in (True, False):
        with world(data) as up:
            up.gitlab.missing.add("graphql")  # REST's paging
            up.gitlab.total_headers_limit = 10  # as GitLab does above 10,000 rows
            up.gitlab.links = links  # a proxy that drops Link leaves x-next-page
            snapshot = Polling(one_project(up), str(tmp_path / f"{links}.db")).poll(
                "gitlab", "web")
            pages = [r.path for r in up.gitlab.requests
                     if r.path.startswith("/api/v4/merge_requests?scope=created_by_me")]
        assert len(pages) == 2 and "page=2" in pages[-1]
        assert len(snapshot.change_requests) == len(mine(data))


@pytest.mark.parametrize("transport", ["graphql", "rest"])
def test_more_than_the_pages_read_is_said_not_dropped_silently(tmp_path, monkeypatch,
                                                              transport: str) -> None:
    monkeypatch.setattr(gitlab, "PER_PAGE", 3)
    monkeypatch.setattr(gitlab, "MAX_PAGES", 2)
    monkeypatch.setattr(gitlab_graphql, "PAGE_SIZE", 3)
    monkeypatch.setattr(gitlab_graphql, "MAX_LISTED", 6)
    with world(dataset(gitlab_projects=1, changes_per_repo=30)) as up:
        if transport == "rest":
            up.gitlab.missing.add("graphql")
        snapshot = Polling(one_project(up), str(tmp_path / "s.db")).poll("gitlab", "web")
    truncated = [p for p in snapshot.problems if p.code == "truncated"]
    assert truncated and all(p.part == "*" for p in truncated)
    assert "more than 6 open merge requests that you created" in truncated[0].message
    assert 0 < len(snapshot.change_requests) < len(mine(up.data))


@pytest.mark.parametrize(("header", "url", "expected"), [
    ("2", "https://gl/api?per_page=100", "https://gl/api?per_page=100&page=2"),
    ("4", "https://gl/api?page=3&per_page=100", "https://gl/api?per_page=100&page=4"),
    ("", "https://gl/api?page=3", None),  # the last page
    ("abc", "https://gl/api?per_page=100", None),  # garbled: would read page 1 again
    ("3", "https://gl/api?page=3", None),  # the same page again: a loop
    ("1", "https://gl/api?page=3", None),  # backwards
    ("2&private_token=x", "https://gl/api", None),  # not a page number at all
])
def test_follows_only_a_next_page_past_this_one(header, url, expected) -> None:
    fetched = http.Fetched(200, b"[]", httpx.Headers({"x-next-page": header}), url)
    assert _next_page(fetched, url) == expected


def test_the_second_poll_is_all_conditional_and_asks_no_project_again(tmp_path) -> None:
    with world(dataset()) as up:
        (first, _), (second, requests) = polls(up, one_project(up), str(tmp_path / "s.db"),
                                               [0, 60])
    # Every GET is answered 304; the one GraphQL POST cannot be conditional (a POST has no
    # validators), and it is the only request that is not.
    assert {r.status for r in requests if r.method == "GET"} == {304}
    assert [(r.method, r.path) for r in requests if r.method != "GET"] == [
        ("POST", "/api/graphql")]
    # /user and each project's id were asked at the first poll only.
    paths = [r.path for r in requests]
    assert "/api/v4/user" not in paths
    assert not [p for p in paths if p.startswith("/api/v4/projects/") and p.count("/") == 4]
    assert msgspec.structs.replace(second, as_of=None) == \
        msgspec.structs.replace(first, as_of=None)


@pytest.mark.parametrize("transport", ["graphql", "rest"])
def test_the_lists_are_shared_between_projects_within_an_interval(tmp_path,
                                                                  transport: str) -> None:
    with world(dataset()) as up:
        if transport == "rest":
            up.gitlab.missing.add("graphql")
        config = sandbox_config(up, projects=2)
        polling = Polling(config, str(tmp_path / "s.db"))
        web, platform = polling.poll_many([("gitlab", "web"), ("gitlab", "platform")],
                                          fresh=False)
        lists = [r for r in up.gitlab.requests if r.path.startswith("/api/v4/merge_requests")
                 or (r.path == "/api/graphql" and r.status == 200)]
    assert len(lists) == (1 if transport == "graphql" else 3)
    assert web.as_of == platform.as_of
    assert {cr.repo for cr in web.change_requests} <= set(config.projects["web"].gitlab)
    assert {cr.repo for cr in platform.change_requests} <= set(
        config.projects["platform"].gitlab)
    assert len(web.change_requests) + len(platform.change_requests) == len(mine(up.data))


def test_sends_private_token_or_bearer(tmp_path) -> None:
    with world() as up:
        config = one_project(up)
        Polling(config, str(tmp_path / "a.db")).poll("gitlab", "web")
        assert up.gitlab.requests[0].headers["private-token"] == "sandbox-token"
        up.gitlab.reset_log()
        bearer = msgspec.structs.replace(config, gitlab=msgspec.structs.replace(
            config.gitlab, auth="bearer"))
        Polling(bearer, str(tmp_path / "b.db")).poll("gitlab", "web")
        assert up.gitlab.requests[0].headers["authorization"] == "Bearer sandbox-token"


def test_429_holds_and_says_when(tmp_path) -> None:
    with world() as up:
        up.gitlab.rate.remaining = 0
        with pytest.raises(UpstreamError) as caught:
            Polling(one_project(up), str(tmp_path / "s.db")).poll("gitlab", "web")
    assert caught.value.code == "rate_limited"


# GraphQL (docs.gitlab.com/api/graphql/; the fields as docs.gitlab.com/api/graphql/reference/
# types them)


def graphql_posts(requests: list) -> list:
    return [r for r in requests if r.path == "/api/graphql"]


def test_the_query_scores_what_its_comment_says_under_gitlabs_limit() -> None:
    # docs.gitlab.com/api/graphql/#maximum-query-complexity: 250 with a token. The provider's
    # query, scored by the fake as app/graphql/types/base_field.rb scores it.
    from projctld.sandbox import fake_graphql
    from projctld.sandbox import gitlab_graphql as served

    def score(text: str, **variables: object) -> int:
        schema = served.schema()
        prepared = fake_graphql.prepare(schema, text)
        assert not isinstance(prepared, list), prepared
        operation = next(iter(prepared.operations.values()))
        return served.complexity(schema, prepared.document, operation, variables)

    first = gitlab_graphql.PAGE_SIZE
    assert score(gitlab_graphql.query(gitlab_graphql.ROLES, first=first), first=first) == 185
    assert score(gitlab_graphql.query(["review"], first=first, after=True), first=first) == 63
    assert served.MAX_COMPLEXITY - 185 >= 50  # room for a later GitLab to score fields higher


def seconds(snapshot: Snapshot) -> Snapshot:
    """The snapshot with its times in whole seconds (GraphQL's Time has no fraction, REST has
    milliseconds), in a stable order."""
    def cut(moment: float | None) -> int | None:
        return int(moment) if moment is not None else None

    crs = sorted((msgspec.structs.replace(
        cr, updated_at=cut(cr.updated_at), ci=cr.ci and msgspec.structs.replace(
            cr.ci, started_at=cut(cr.ci.started_at))) for cr in snapshot.change_requests),
        key=lambda cr: (cr.repo, cr.number))
    return msgspec.structs.replace(snapshot, change_requests=crs, as_of=None)


@pytest.mark.parametrize("tier", ["premium", "free"])
def test_graphql_and_rest_show_the_same(tmp_path, tier: str) -> None:
    # Whichever the instance answers, a merge request shows the same: one mapping serves both.
    data = dataset()
    shown = {}
    for transport in ("graphql", "rest"):
        with world(data) as up:
            up.gitlab.tier = tier
            if transport == "rest":
                up.gitlab.missing.add("graphql")
            config = with_gitlab(one_project(up), *up.data.gitlab_projects)
            snapshot = Polling(config, str(tmp_path / f"{transport}.db")).poll("gitlab", "web")
        shown[transport] = seconds(snapshot)
    assert shown["graphql"].change_requests
    assert {cr.review for cr in shown["graphql"].change_requests} >= {
        "approved", "review_required" if tier == "premium" else "none"}
    assert shown["graphql"] == shown["rest"]


def test_a_list_longer_than_a_page_is_paged_alone(tmp_path) -> None:
    # Keyset paging of one list (pageInfo.endCursor, after:), not of the three again.
    data = dataset(gitlab_projects=1)
    add_gitlab_project(data, "acme/monolith", 5000, mine=120, reviewing=2)
    with world(data) as up:
        config = with_gitlab(one_project(up), "acme/monolith")
        snapshot = Polling(config, str(tmp_path / "s.db")).poll("gitlab", "web")
        posts = graphql_posts(up.gitlab.requests)
    assert {(cr.repo, cr.number) for cr in snapshot.change_requests} == \
        set(mine(data, ["acme/monolith"]))
    # The three lists, then two more pages of mine and of those assigned to me (the same 120:
    # each author is assigned), each list alone: 50 + 50 + 20.
    assert len(posts) == 5
    assert not snapshot.problems


def test_an_older_instance_is_asked_again_without_what_it_lacks_and_remembered(tmp_path) -> None:
    # graphql-ruby refuses a field the instance does not have (undefinedField): Community
    # Edition has no approvalsLeft; before GitLab 15 no detailedMergeStatus, before 14.0 no
    # mergeStatusEnum; reviewers' reviewState is newer than the reviewers themselves. The
    # provider leaves out what it can do without, once per daemon.
    data = dataset()
    path = next(p for p in data.gitlab_projects if data.gitlab_approvals_required[p])
    with world(data) as up:
        up.gitlab.missing = {"MergeRequest.approvalsLeft", "MergeRequest.detailedMergeStatus",
                             "MergeRequest.mergeStatusEnum",
                             "UserMergeRequestInteraction.reviewState"}
        done = polls(up, with_gitlab(one_project(up), path), str(tmp_path / "s.db"), [0, 60])
    (first, cold), (_, steady) = done
    assert [r.status for r in graphql_posts(cold)] == [200, 200]  # refused, then asked again
    assert len(graphql_posts(steady)) == 1
    assert not [r for r in cold if "/merge_requests" in r.path]  # no REST needed
    assert first.change_requests and not first.problems
    for cr in first.change_requests:
        mr = mine(data)[(cr.repo, cr.number)]
        assert (cr.approvals_left, cr.merge_status) == (None, None)
        assert cr.approved_by == mr.approved_by
        # Without the merge status nor the approval rules, only approvals tell the review.
        assert cr.review == ("approved" if mr.approved_by else "none")


@pytest.mark.parametrize("lacks", ["graphql", "CurrentUser.reviewRequestedMergeRequests"])
def test_without_a_usable_graphql_rest_reads_it_and_graphql_is_tried_an_hour_later(
        tmp_path, lacks: str) -> None:
    # No GraphQL API (404 at /api/graphql: before 12.1, or its feature flag off), or one that
    # lacks a list the query cannot do without: REST reads everything, as before GraphQL.
    with world(dataset()) as up:
        up.gitlab.missing.add(lacks)
        config = with_gitlab(one_project(up), *up.data.gitlab_projects)
        done = polls(up, config, str(tmp_path / "s.db"), [0, 60, gitlab.RECHECK_MISSING])
    (first, cold), (_, soon), (_, later) = done
    assert {(cr.repo, cr.number) for cr in first.change_requests} == set(mine(up.data))
    assert not first.problems
    assert [r.status for r in graphql_posts(cold)] == [404 if lacks == "graphql" else 200]
    assert [r for r in cold if r.path.startswith("/api/v4/merge_requests")]
    assert not graphql_posts(soon)
    assert len(graphql_posts(later)) == 1


def test_errors_beside_partial_data_keep_every_good_merge_request(tmp_path) -> None:
    # GitLab answers a field it will not resolve with null and an error with its path; a null
    # in a non-null field (title) nulls the merge request. Every other one is kept, the broken
    # head pipeline is not shown as "no CI", and each fault is named.
    data = dataset()
    path = data.gitlab_projects[0]
    with_ci, other = [mr for mr in data.merge_requests[path]
                      if mr.author == data.gitlab_username and mr.head_pipeline][:2]
    with world(data) as up:
        up.gitlab.graphql_field_errors = {
            (path, with_ci.iid, "headPipeline"): "Gitaly is unavailable",
            (path, other.iid, "title"): "no access to this title"}
        snapshot = Polling(with_gitlab(one_project(up), path), str(tmp_path / "s.db")).poll(
            "gitlab", "web")
    numbers = {cr.number for cr in snapshot.change_requests}
    assert numbers == {iid for _, iid in mine(data, [path])} - {other.iid}
    broken = next(cr for cr in snapshot.change_requests if cr.number == with_ci.iid)
    assert broken.ci is None and broken.title == with_ci.title
    assert all(cr.ci is not None for cr in snapshot.change_requests if cr is not broken)
    # Problems of the source, not of the project as a part: the project was read, and what it
    # held before must not come back in place of what was read.
    assert {(p.part, p.code) for p in snapshot.problems} == {("*", "rejected")}
    field, left_out = sorted(snapshot.problems, key=lambda p: "left out" in p.message)
    assert f"headPipeline of !{with_ci.iid}: Gitaly is unavailable" in field.message
    # In two lists (mine, and assigned to me), counted once.
    assert "left out a merge request of yours: no access to this title" in left_out.message


def test_a_query_scored_over_the_limit_is_asked_again_with_smaller_pages(tmp_path) -> None:
    # A later GitLab may score the same query higher and refuse it ("Query has complexity of N,
    # which exceeds max complexity of 250"): pages are halved until it fits, and remembered.
    with world(dataset()) as up:
        up.gitlab.max_complexity = 150  # 182 at 50 a page, 152 at 25, 134 at 12
        config = with_gitlab(one_project(up), *up.data.gitlab_projects)
        (first, cold), (_, steady) = polls(up, config, str(tmp_path / "s.db"), [0, 60])
    assert len(graphql_posts(cold)) == 3 and len(graphql_posts(steady)) == 1
    assert {(cr.repo, cr.number) for cr in first.change_requests} == set(mine(up.data))
    assert not first.problems


def test_a_token_graphql_refuses_says_so_with_gitlabs_words(tmp_path) -> None:
    # docs.gitlab.com/api/graphql/#authentication: 401 {"errors":[{"message":"Invalid token"}]}.
    with world(dataset()) as up:
        config = one_project(up)
        wrong = msgspec.structs.replace(config, gitlab=msgspec.structs.replace(
            config.gitlab, token="not-the-token"))
        # REST refuses it too, in its own words: let GraphQL's answer come first.
        up.gitlab.hang(r"^/api/v4/", 0.5, times=20)
        with pytest.raises(UpstreamError) as caught:
            Polling(wrong, str(tmp_path / "s.db")).poll("gitlab", "web")
    assert caught.value.code == "auth"
    assert "(401: Invalid token)" in caught.value.message
    assert "not-the-token" not in caught.value.message
