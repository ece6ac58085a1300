"""The GitLab provider in the hub's team scope against the fake GitLab: every open merge request
of each project, whoever wrote it, paged, bounded, one bad project costing only itself."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest
from test_gitlab import dataset, with_gitlab
from test_providers import one_project, world

from projctld.config import Config
from projctld.sandbox.dataset import Dataset, add_gitlab_project
from projctld.store.database import Database
from projctld.store.http_cache import HttpCache
from projctld.upstream.providers import create_providers, gitlab, gitlab_graphql
from projctld.upstream.providers.model import Snapshot

REVIEWED = ("reviewed", "requested_changes", "approved")


def team_poll(config: Config, db_path: str, times: int = 1) -> list[Snapshot]:
    """Poll `web` as the hub does (scope="team"), `times` times with one provider."""

    async def run() -> list[Snapshot]:
        db = Database(db_path)
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                provider = create_providers(config, client, HttpCache(db, time.time()),
                                            scope="team")["gitlab"]
                return [await provider.poll("web", config.projects["web"], fresh=True)
                        for _ in range(times)]
        finally:
            db.close()

    return anyio.run(run)


def every_open(data: Dataset, paths: list[str]) -> dict[tuple[str, int], object]:
    return {(mr.project, mr.iid): mr for path in paths
            for mr in data.merge_requests.get(path, []) if mr.state == "opened"}


@pytest.mark.parametrize("transport", ["graphql", "rest"])
def test_every_open_merge_request_of_each_project_whoever_wrote_it(tmp_path,
                                                                  transport: str) -> None:
    # GraphQL: Query.project(fullPath:) { mergeRequests(state: opened) } (GitLab's GraphQL
    # reference, Project.mergeRequests); REST: GET /projects/:id/merge_requests?state=opened
    # (docs.gitlab.com/api/merge_requests/#list-project-merge-requests), then each one's
    # approvals and reviewers as for mine.
    with world(dataset(gitlab_projects=2)) as up:
        if transport == "rest":
            up.gitlab.missing.add("graphql")
        paths = up.data.gitlab_projects
        (snapshot,) = team_poll(with_gitlab(one_project(up), *paths), str(tmp_path / "s.db"))
        asked = [r for r in up.gitlab.requests]
    expected = every_open(up.data, paths)
    me = up.data.gitlab_username
    assert {(cr.repo, cr.number) for cr in snapshot.change_requests} == set(expected)
    assert any(mr.author != me for mr in expected.values())  # teammates' too, not only mine
    for cr in snapshot.change_requests:
        mr = expected[(cr.repo, cr.number)]
        assert cr.author == mr.author and cr.head == mr.sha
        assert (cr.ci.state == "none") == (mr.head_pipeline is None)
        # The hub's token user is nobody's "me": each device works out its own.
        assert not (cr.mine or cr.review_requested or cr.assigned or cr.reviewed)
        pending = {name for name in mr.reviewers
                   if mr.reviewer_states.get(name) not in REVIEWED
                   and name not in mr.approved_by}
        assert set(cr.review_requested_from) == pending
    assert not snapshot.problems
    # Everyone's pipelines, not the token user's.
    pipes = [r for r in asked if "/pipelines" in r.path]
    assert pipes and all("username=" not in r.path for r in pipes)
    if transport == "graphql":
        assert not [r for r in asked if "/merge_requests" in r.path]
        assert len([r for r in asked if r.path == "/api/graphql"]) == len(paths)
    else:
        lists = [r.path for r in asked if r.path.endswith("per_page=100")
                 and "/merge_requests?" in r.path]
        assert sorted(lists) == sorted(
            f"/api/v4/projects/{p.replace('/', '%2F')}/merge_requests?state=opened"
            "&order_by=updated_at&sort=desc&per_page=100" for p in paths)


@pytest.mark.parametrize("transport", ["graphql", "rest"])
def test_a_project_longer_than_a_page_is_paged_to_its_end(tmp_path, monkeypatch,
                                                          transport: str) -> None:
    # GraphQL's keyset cursors (pageInfo.endCursor, `after`), REST's x-next-page / Link.
    monkeypatch.setattr(gitlab_graphql, "PAGE_SIZE", 7)
    monkeypatch.setattr(gitlab, "PER_PAGE", 7)
    data = dataset(gitlab_projects=1)
    add_gitlab_project(data, "acme/monolith", 30)
    with world(data) as up:
        if transport == "rest":
            up.gitlab.missing.add("graphql")
        (snapshot,) = team_poll(with_gitlab(one_project(up), "acme/monolith"),
                                str(tmp_path / "s.db"))
        asked = up.gitlab.requests
    assert len(snapshot.change_requests) == 30 and not snapshot.problems
    if transport == "graphql":
        assert len([r for r in asked if r.path == "/api/graphql"]) == 5  # 7+7+7+7+2
    else:
        assert len([r for r in asked if "/merge_requests?" in r.path]) == 5


@pytest.mark.parametrize("transport", ["graphql", "rest"])
def test_more_than_the_bound_is_said_truncated_never_dropped_silently(
        tmp_path, monkeypatch, transport: str) -> None:
    monkeypatch.setattr(gitlab_graphql, "PAGE_SIZE", 5)
    monkeypatch.setattr(gitlab_graphql, "MAX_LISTED", 10)
    monkeypatch.setattr(gitlab, "PER_PAGE", 5)
    monkeypatch.setattr(gitlab, "MAX_PAGES", 2)
    data = dataset(gitlab_projects=1)
    add_gitlab_project(data, "acme/monolith", 23)
    with world(data) as up:
        if transport == "rest":
            up.gitlab.missing.add("graphql")
        (snapshot,) = team_poll(with_gitlab(one_project(up), "acme/monolith"),
                                str(tmp_path / "s.db"))
    (problem,) = snapshot.problems
    assert problem.code == "truncated"
    assert "more than 10 open merge requests in acme/monolith" in problem.message
    # The newest ten, by the order asked (updated, newest first).
    newest = sorted(up.data.merge_requests["acme/monolith"], key=lambda mr: mr.updated_at,
                    reverse=True)[:10]
    assert {cr.number for cr in snapshot.change_requests} == {mr.iid for mr in newest}


@pytest.mark.parametrize("transport", ["graphql", "rest"])
@pytest.mark.parametrize(("fault", "code"), [("unknown", "not_found"),
                                             ("forbidden", "forbidden")])
def test_a_bad_project_among_good_ones_costs_only_itself(tmp_path, transport: str, fault: str,
                                                         code: str) -> None:
    # GraphQL: Query.project is null, without an error, for a path GitLab does not know or
    # the user may not read (the reference: "Find a project"); REST answers 404.
    with world(dataset(gitlab_projects=3)) as up:
        if transport == "rest":
            up.gitlab.missing.add("graphql")
        good = up.data.gitlab_projects[:2]
        bad = "acme/nowhere/gone" if fault == "unknown" else up.data.gitlab_projects[2]
        if fault == "forbidden":
            # Every REST request about that project is refused (403, as for a token without
            # access): its pipelines, and over REST its merge requests. A 5xx is the whole
            # upstream's fault, not the project's (gather.PART_CODES), as for mine.
            up.gitlab.fail(bad.replace("/", "%2F"), status=403, times=100,
                           body=b'{"message":"403 Forbidden"}')
        config = with_gitlab(one_project(up), good[0], bad, good[1])
        (snapshot,) = team_poll(config, str(tmp_path / "s.db"))
    (problem,) = snapshot.problems
    assert (problem.part, problem.code) == (bad, code)
    assert bad in problem.message
    assert {(cr.repo, cr.number) for cr in snapshot.change_requests} == set(
        every_open(up.data, good))
    assert {p.repo for p in snapshot.pipelines} <= set(good)


def test_the_second_poll_is_conditional_over_rest(tmp_path) -> None:
    # Every GET carries If-None-Match; GitLab answers 304 to a list that has not changed.
    with world(dataset(gitlab_projects=1)) as up:
        up.gitlab.missing.add("graphql")
        config = with_gitlab(one_project(up), *up.data.gitlab_projects)
        first, second = team_poll(config, str(tmp_path / "s.db"), times=2)
        statuses = [r.status for r in up.gitlab.requests]
    assert first.change_requests == second.change_requests
    assert statuses.count(304) >= len(statuses) // 2


def test_the_project_query_scores_what_its_comment_says_under_gitlabs_limit() -> None:
    # docs.gitlab.com/api/graphql/#maximum-query-complexity: 250 with a token, scored by the
    # fake as app/graphql/types/base_field.rb scores it.
    from projctld.sandbox import fake_graphql
    from projctld.sandbox import gitlab_graphql as served

    schema = served.schema()
    first = gitlab_graphql.PAGE_SIZE
    for after in (False, True):
        prepared = fake_graphql.prepare(
            schema, gitlab_graphql.project_query(first=first, after=after))
        assert not isinstance(prepared, list), prepared
        operation = next(iter(prepared.operations.values()))
        assert served.complexity(schema, prepared.document, operation, {"first": first}) == 62
