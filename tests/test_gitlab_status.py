"""End to end: a real projctld polls the fake GitLab; `projctl` shows what GitLab really says."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import pytest
from test_upstream_status import configure

from projctld.sandbox.dataset import Dataset, add_stuck_pipeline, generate
from projctld.sandbox.demo import TOKEN, Upstreams, start_fakes

BAD = "acme/nowhere/gone"


@pytest.fixture
def gitlab_world() -> Iterator[Upstreams]:
    data = generate(github_repos=1, gitlab_projects=3, changes_per_repo=8, tickets=5,
                    jira_projects=1)
    with contextlib.ExitStack() as stack:
        yield start_fakes(stack, data)


def gitlab_config(up: Upstreams, projects: list[str]) -> str:
    return f"""
[gitlab]
url = "{up.gitlab_url}"
token_env = ""
token = "{TOKEN}"

[projects.web]
gitlab = {json.dumps(projects)}
"""


def refreshed_view(sandbox, up: Upstreams, projects: list[str]) -> tuple[str, dict, str]:
    configure(sandbox, gitlab_config(up, projects))
    refresh = sandbox.client("refresh")
    # A terminal wide enough for every row whole (full refs, every failing check).
    text = sandbox.client("status", env={"COLUMNS": "200"})
    assert text.returncode == 0, text.stderr
    view = json.loads(sandbox.client("status", "--json").stdout)["projects"][0]
    return refresh.stdout, view, text.stdout


def line_of(text: str, ref: str) -> str:
    return next(line for line in text.splitlines() if ref in line)


def test_one_bad_project_among_good_ones_shows_the_good_and_names_the_bad(
        sandbox, gitlab_world) -> None:
    up = gitlab_world
    good = up.data.gitlab_projects
    refresh, view, text = refreshed_view(sandbox, up, [good[0], BAD, *good[1:]])

    assert BAD in refresh and "404" in refresh
    me = up.data.gitlab_username
    expected = {f"{mr.project}!{mr.iid}" for path in good for mr in up.data.merge_requests[path]
                if me in (mr.author, *mr.assignees, *mr.reviewers)}
    assert {cr["ref"] for cr in view["change_requests"]} == expected
    (source,) = view["sources"]
    assert source["error"] is None and source["fetched_at"]
    (problem,) = source["problems"]
    assert (problem["part"], problem["code"]) == (BAD, "not_found")
    assert any("check the paths under `gitlab`" in s for s in problem["suggestions"])
    assert view["known"]["change_requests"] == "partial"

    assert f"! gitlab: {BAD}: GitLab answered 404 Not Found for project {BAD}" in text
    assert "try: check the paths under `gitlab` in your projects" in text
    assert all(ref in text for ref in expected)


def approvals_case(data: Dataset) -> tuple[str, str]:
    """A merge request of mine that nothing blocks, on a project without approval rules,
    that nobody approved; and one that somebody did."""
    me = data.gitlab_username
    path = next(p for p in data.gitlab_projects if not data.gitlab_approvals_required[p])
    nobody, somebody = [mr for mr in data.merge_requests[path] if mr.author == me][:2]
    for mr, approvers in ((nobody, []), (somebody, ["chen-li"])):
        mr.detailed_merge_status, mr.draft, mr.has_conflicts = "mergeable", False, False
        mr.approved_by, mr.reviewer_states = approvers, {}
    return f"{path}!{nobody.iid}", f"{path}!{somebody.iid}"


def test_mergeable_without_approval_rules_is_not_shown_approved(sandbox, gitlab_world) -> None:
    up = gitlab_world
    nobody, somebody = approvals_case(up.data)
    _, view, text = refreshed_view(sandbox, up, up.data.gitlab_projects)

    shown = {cr["ref"]: cr for cr in view["change_requests"]}
    assert (shown[nobody]["review"], shown[nobody]["merge_status"],
            shown[nobody]["approved_by"]) == ("none", "mergeable", [])
    assert (shown[somebody]["review"], shown[somebody]["approved_by"]) == \
        ("approved", ["chen-li"])
    assert "approved" not in line_of(text, nobody)
    assert "approved" in line_of(text, somebody)


def test_a_manual_pipeline_shows_as_manual(sandbox, gitlab_world) -> None:
    up = gitlab_world
    me = up.data.gitlab_username
    path = up.data.gitlab_projects[0]
    mr = next(mr for mr in up.data.merge_requests[path]
              if mr.author == me and mr.head_pipeline is not None)
    mr.head_pipeline.status, mr.head_pipeline.started_at = "manual", None
    _, view, text = refreshed_view(sandbox, up, [path])

    ref = f"{path}!{mr.iid}"
    change = next(cr for cr in view["change_requests"] if cr["ref"] == ref)
    assert change["ci"]["state"] == "manual"
    assert "▷ manual" in line_of(text, ref)
    pipeline = next(p for p in view["pipelines"] if p["branch"] == mr.source_branch)
    assert pipeline["state"] == "manual"  # it needs a look: someone has to start it


def only_finished_ci(data: Dataset, path: str) -> None:
    """Nothing of mine unfinished in `path`, so that only what a test adds can speed polling."""
    for pipeline in data.pipelines[path]:
        if pipeline.status not in ("success", "failed", "canceled", "skipped"):
            pipeline.status = "success"


def next_poll_in(view: dict) -> float:
    (source,) = view["sources"]
    return source["next_poll_at"] - source["attempted_at"]


def test_a_pipeline_pending_since_2016_is_stuck_and_does_not_speed_polling(
        sandbox, gitlab_world) -> None:
    up = gitlab_world
    path = up.data.gitlab_projects[0]
    only_finished_ci(up.data, path)
    stuck = add_stuck_pipeline(up.data, path)
    _, view, text = refreshed_view(sandbox, up, [path])

    shown = next(p for p in view["pipelines"] if p["branch"] == stuck.ref)
    assert shown["state"] == "stuck"
    assert "◌ stuck" in line_of(text, stuck.ref)
    # The interval (60 s, halved while I am active), not the 15 s of CI that runs.
    assert next_poll_in(view) > 20

    # The same pipeline created a minute ago is pending, and polling speeds up for it.
    stuck.created_at = stuck.updated_at = time.time() - 60
    assert sandbox.client("refresh").returncode == 0
    view = json.loads(sandbox.client("status", "--json").stdout)["projects"][0]
    shown = next(p for p in view["pipelines"] if p["branch"] == stuck.ref)
    assert shown["state"] == "pending"
    assert next_poll_in(view) <= 16.5


def test_a_field_gitlab_could_not_resolve_is_named_and_not_shown_as_no_ci(
        sandbox, gitlab_world) -> None:
    # GraphQL answers null and an error beside the rest (docs.gitlab.com/api/graphql/): the
    # other merge requests show as usual, this one without a CI state, and the fault is named.
    up = gitlab_world
    path = up.data.gitlab_projects[0]
    me = up.data.gitlab_username
    mr = next(mr for mr in up.data.merge_requests[path]
              if mr.author == me and mr.head_pipeline is not None)
    up.gitlab.graphql_field_errors = {(path, mr.iid, "headPipeline"): "Gitaly is unavailable"}
    refresh, view, text = refreshed_view(sandbox, up, [path])

    ref = f"{path}!{mr.iid}"
    change = next(cr for cr in view["change_requests"] if cr["ref"] == ref)
    assert change["ci"] is None
    others = [cr for cr in view["change_requests"] if cr["ref"] != ref]
    assert others and all(cr["ci"] is not None for cr in others)
    (source,) = view["sources"]
    assert source["error"] is None
    (problem,) = source["problems"]
    assert (problem["part"], problem["code"]) == ("*", "rejected")
    assert f"headPipeline of !{mr.iid}: Gitaly is unavailable" in problem["message"]
    assert "Gitaly is unavailable" in text and ref in text
    assert "Gitaly is unavailable" in refresh
