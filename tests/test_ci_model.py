"""CI in the shared model: urgency, one pipeline per branch, and the GitHub and GitLab mappings."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from projctl_client.protocol import ChangeRequestView, CiView, PipelineView
from projctld.upstream.providers import github, gitlab
from projctld.upstream.providers.github import _CheckRun, _Contexts, _Rollup, _Run, _StatusContext
from projctld.upstream.providers.model import (
    CI_STATES,
    Snapshot,
    latest_per_branch,
    most_urgent,
    stuck_state,
)

PR_URL = "https://github.com/acme/web/pull/7"
T0 = 1_700_000_000.0


# most_urgent


def test_most_urgent_follows_the_documented_order() -> None:
    assert CI_STATES == ("failure", "stuck", "running", "pending", "manual", "canceled",
                         "success", "skipped", "none")
    for rank, state in enumerate(CI_STATES):
        assert most_urgent(CI_STATES[rank:]) == state
        assert most_urgent(reversed(CI_STATES[rank:])) == state


def test_most_urgent_of_nothing_is_none() -> None:
    assert most_urgent([]) == "none"


def test_most_urgent_ranks_unknown_states_last() -> None:
    assert most_urgent(["mystery", "skipped"]) == "skipped"
    assert most_urgent(["none", "mystery"]) == "none"
    assert most_urgent(["mystery"]) == "mystery"


# latest_per_branch


def run(name: str, state: str, updated_at: float, *, branch: str = "main",
        repo: str = "acme/web", sha: str | None = None) -> PipelineView:
    return PipelineView(upstream="github", repo=repo, branch=branch, sha=sha or f"sha-{updated_at}",
                        state=state, name=name, url=f"https://ci/{name}/{updated_at}",
                        updated_at=updated_at)


def test_only_the_latest_run_of_each_workflow_counts() -> None:
    runs = [  # newest first
        run("build", "success", T0 + 30),
        run("build", "failure", T0 + 20),  # superseded by the success above
        run("lint", "success", T0 + 10),
    ]

    [decided] = latest_per_branch(runs)
    assert decided.state == "success"
    assert decided.name == "build, lint"
    assert decided.sha == "sha-" + str(T0 + 30)
    assert decided.updated_at == T0 + 30


def test_the_most_urgent_workflow_decides_the_branch() -> None:
    runs = [
        run("test", "success", T0 + 40, sha="new"),
        run("lint", "failure", T0 + 30, sha="new"),
        run("build", "running", T0 + 20, sha="old"),
        run("docs", "failure", T0 + 10, sha="old"),
        run("test", "running", T0 + 5, sha="older"),  # superseded
    ]

    [decided] = latest_per_branch(runs)
    assert decided.state == "failure"
    # Only the workflows in the deciding state, sorted by name.
    assert decided.name == "docs, lint"
    # The url of the newest deciding run, the newest sha and time of the branch.
    assert decided.url == f"https://ci/lint/{T0 + 30}"
    assert decided.sha == "new"
    assert decided.updated_at == T0 + 40


def test_branches_and_repos_are_kept_apart_and_sorted_newest_first() -> None:
    runs = [
        run("build", "running", T0 + 50, branch="feature"),
        run("build", "success", T0 + 40, branch="main", repo="acme/api"),
        run("build", "failure", T0 + 30, branch="main"),
        run("build", "success", T0 + 20, branch="old"),
        run("build", "success", T0 + 10, branch="feature"),  # superseded
    ]

    decided = latest_per_branch(runs)
    assert [(p.repo, p.branch, p.state) for p in decided] == [
        ("acme/web", "feature", "running"),
        ("acme/api", "main", "success"),
        ("acme/web", "main", "failure"),
        ("acme/web", "old", "success"),
    ]


def test_branches_sort_by_their_newest_run_not_their_deciding_one() -> None:
    runs = [
        run("test", "success", T0 + 50, branch="a"),
        run("build", "failure", T0 + 40, branch="b"),
        run("build", "failure", T0 + 10, branch="a"),
    ]

    decided = latest_per_branch(runs)
    assert [(p.branch, p.state, p.updated_at) for p in decided] == [
        ("a", "failure", T0 + 50),
        ("b", "failure", T0 + 40),
    ]


def test_unnamed_runs_leave_no_empty_name() -> None:
    runs = [run("", "failure", T0 + 20), run("build", "failure", T0 + 10)]

    [decided] = latest_per_branch(runs)
    assert decided.name == "build"


def test_latest_per_branch_of_nothing() -> None:
    assert latest_per_branch([]) == []


# Snapshot.ci_running


def change_request(*, mine: bool, ci: CiView | None) -> ChangeRequestView:
    return ChangeRequestView(upstream="github", repo="acme/web", number=7, ref="acme/web#7",
                             title="t", url=PR_URL, author="me", source_branch="f",
                             target_branch="main", ci=ci, mine=mine, updated_at=T0)


STUCK_AFTER = 12 * 3600.0


@pytest.mark.parametrize("state", ["running", "pending"])
def test_ci_running_for_my_pipelines(state: str) -> None:
    snapshot = Snapshot(pipelines=[run("b", "success", T0 + 1), run("c", state, T0)])

    assert snapshot.ci_running(T0 + 60, STUCK_AFTER) is True


@pytest.mark.parametrize("state", ["running", "pending"])
def test_ci_running_for_my_change_requests(state: str) -> None:
    assert Snapshot(change_requests=[
        change_request(mine=True, ci=CiView(state=state))]).ci_running(
            T0 + 60, STUCK_AFTER) is True


@pytest.mark.parametrize("state", ["running", "pending"])
def test_ci_unfinished_for_longer_than_stuck_after_is_stuck_and_does_not_speed_polling(
        state: str) -> None:
    # A pipeline "running" since 2016 was seen in the field: waiting faster will not help.
    old = PipelineView(upstream="gitlab", repo="g/p", branch="b", state=state, updated_at=T0,
                       started_at=T0)
    assert Snapshot(pipelines=[old]).ci_running(T0 + STUCK_AFTER + 1, STUCK_AFTER) is False
    assert Snapshot(pipelines=[old]).ci_running(T0 + STUCK_AFTER - 1, STUCK_AFTER) is True
    assert stuck_state(state, T0, T0 + STUCK_AFTER + 1, STUCK_AFTER) == "stuck"
    assert stuck_state("failure", T0, T0 + 10 * STUCK_AFTER, STUCK_AFTER) == "failure"
    mine = change_request(mine=True, ci=CiView(state=state, started_at=T0))
    assert Snapshot(change_requests=[mine]).ci_running(T0 + STUCK_AFTER + 1,
                                                       STUCK_AFTER) is False


@pytest.mark.parametrize(
    "snapshot",
    [
        Snapshot(),
        Snapshot(pipelines=[run("b", s, T0) for s in ("failure", "canceled", "success",
                                                        "skipped", "none")]),
        # Someone else's change request that I review: its CI is not mine.
        Snapshot(change_requests=[change_request(mine=False, ci=CiView(state="running"))]),
        Snapshot(change_requests=[change_request(mine=True, ci=None)]),
        Snapshot(change_requests=[change_request(mine=True, ci=CiView(state="failure"))]),
    ],
)
def test_ci_not_running(snapshot: Snapshot) -> None:
    assert snapshot.ci_running(T0 + 60, STUCK_AFTER) is False


# GitHub: the status check rollup of a pull request's head commit.


def rollup(state: str, *nodes: _CheckRun | _StatusContext) -> _Rollup:
    return _Rollup(state=state, contexts=_Contexts(totalCount=len(nodes), nodes=list(nodes)))


def test_no_rollup_is_no_ci() -> None:
    assert github._ci(None, PR_URL) == CiView(state="none")


def test_failure_lists_failed_check_runs_and_status_contexts() -> None:
    ci = github._ci(rollup(
        "FAILURE",
        _CheckRun(name="unit", status="COMPLETED", conclusion="FAILURE"),
        _CheckRun(name="lint", status="COMPLETED", conclusion="SUCCESS"),
        _StatusContext(context="ci/jenkins", state="FAILURE"),
        _StatusContext(context="coverage", state="SUCCESS"),
        _CheckRun(name="e2e", status="IN_PROGRESS"),
    ), PR_URL)

    assert ci == CiView(state="failure", url=f"{PR_URL}/checks", passed=2, failed=2, running=1,
                        failing=["unit", "ci/jenkins"])


@pytest.mark.parametrize("conclusion", ["FAILURE", "TIMED_OUT", "CANCELLED", "ACTION_REQUIRED",
                                        "STARTUP_FAILURE"])
def test_failed_check_run_conclusions(conclusion: str) -> None:
    ci = github._ci(rollup("FAILURE", _CheckRun(name="x", status="COMPLETED",
                                                conclusion=conclusion)), PR_URL)

    assert (ci.failed, ci.failing) == (1, ["x"])


def test_error_rollup_and_error_status_are_failures() -> None:
    ci = github._ci(rollup("ERROR", _StatusContext(context="deploy", state="ERROR")), PR_URL)

    assert (ci.state, ci.failed, ci.failing) == ("failure", 1, ["deploy"])


@pytest.mark.parametrize("conclusion", ["SUCCESS", "NEUTRAL", "SKIPPED"])
def test_passed_check_run_conclusions(conclusion: str) -> None:
    ci = github._ci(rollup("SUCCESS", _CheckRun(name="x", status="COMPLETED",
                                                conclusion=conclusion)), PR_URL)

    assert ci == CiView(state="success", url=f"{PR_URL}/checks", passed=1)


def test_pending_with_a_check_run_in_progress_is_running() -> None:
    ci = github._ci(rollup(
        "PENDING",
        _CheckRun(name="build", status="IN_PROGRESS"),
        _CheckRun(name="lint", status="COMPLETED", conclusion="SUCCESS"),
    ), PR_URL)

    assert (ci.state, ci.running, ci.passed, ci.failed) == ("running", 1, 1, 0)


def test_pending_without_incomplete_contexts_is_pending() -> None:
    assert github._ci(rollup("PENDING"), PR_URL).state == "pending"
    assert github._ci(rollup("EXPECTED"), PR_URL).state == "pending"


@pytest.mark.parametrize(
    "context",
    [_StatusContext(context="ci/jenkins", state="PENDING"),
     _CheckRun(name="build", status="QUEUED")],
)
def test_pending_with_only_waiting_contexts_is_pending(
        context: _CheckRun | _StatusContext) -> None:
    assert github._ci(rollup("PENDING", context), PR_URL).state == "pending"


# GitHub: an Actions run.


def actions_run(status: str | None, conclusion: str | None = None) -> _Run:
    return _Run(id=1, head_sha="abc", html_url="https://github.com/acme/web/actions/runs/1",
                updated_at=datetime.fromtimestamp(T0, UTC), name="CI", head_branch="feat",
                status=status, conclusion=conclusion)


@pytest.mark.parametrize(
    ("status", "conclusion", "state"),
    [
        ("completed", "success", "success"),
        ("completed", "failure", "failure"),
        ("completed", "timed_out", "failure"),
        ("completed", "startup_failure", "failure"),
        ("completed", "action_required", "failure"),
        ("completed", "cancelled", "canceled"),
        ("completed", "skipped", "skipped"),
        ("completed", "neutral", "skipped"),
        ("completed", "stale", "skipped"),
        ("completed", None, "none"),
        ("completed", "something_new", "none"),
        ("in_progress", None, "running"),
        ("queued", None, "pending"),
        ("waiting", None, "pending"),
        ("requested", None, "pending"),
    ],
)
def test_actions_run_states(status: str, conclusion: str | None, state: str) -> None:
    assert github._pipeline("acme/web", actions_run(status, conclusion)).state == state


def test_actions_run_fields() -> None:
    assert github._pipeline("acme/web", actions_run("completed", "success")) == PipelineView(
        upstream="github", repo="acme/web", branch="feat", sha="abc", state="success",
        name="CI", url="https://github.com/acme/web/actions/runs/1", updated_at=T0,
    )


# GitLab: merge requests and pipelines.


def merge_request(*, merge_status: str | None = None, pipeline: str | None = None,
                  author: str = "me", assignees: tuple[str, ...] = (),
                  reviewers: tuple[str, ...] = (), conflicts: bool = False,
                  checked: str | None = "can_be_merged") -> gitlab._MergeRequest:
    when = datetime.fromtimestamp(T0, UTC)
    head = gitlab._Pipeline(id=9, ref="feat", status=pipeline, web_url="https://gl/p/9",
                            updated_at=when, created_at=when, sha="abc") if pipeline else None
    return gitlab._MergeRequest(
        iid=12, title="Fix", web_url="https://gl/acme/api/-/merge_requests/12",
        source_branch="feat", target_branch="main", author=gitlab._User(author),
        updated_at=when, assignees=[gitlab._User(u) for u in assignees],
        reviewers=[gitlab._User(u) for u in reviewers], detailed_merge_status=merge_status,
        merge_status=checked, has_conflicts=conflicts, head_pipeline=head,
        references=gitlab._References(full="acme/api!12"),
    )


def approvals(*approvers: str, left: int | None = None) -> gitlab._Approvals:
    return gitlab._Approvals(approved_by=[gitlab._Approval(gitlab._User(u)) for u in approvers],
                             approvals_left=left)


def reviewers(**states: str) -> list[gitlab._Reviewer]:
    return [gitlab._Reviewer(gitlab._User(user), state) for user, state in states.items()]


# The mapping the provider's docstring defines, from /approvals (Free: no counts; Premium:
# approvals_left), /reviewers and detailed_merge_status.
@pytest.mark.parametrize(
    ("given", "found", "merge_status", "expected"),
    [
        # A project without approval rules: "mergeable", and nobody approved.
        (approvals(), reviewers(), "mergeable", "none"),
        (approvals(left=0), reviewers(ann="unreviewed"), "mergeable", "none"),
        # Free: an approval, none required.
        (approvals("ann"), reviewers(), "mergeable", "approved"),
        (approvals("ann"), reviewers(), "ci_must_pass", "approved"),
        # Premium: every required approval given, or not.
        (approvals("ann", left=0), reviewers(ann="approved"), "mergeable", "approved"),
        (approvals("ann", left=1), reviewers(ann="approved"), "not_approved", "review_required"),
        (approvals(left=2), reviewers(), "ci_still_running", "review_required"),
        (approvals(), reviewers(), "not_approved", "review_required"),
        # Changes requested outweigh approvals.
        (approvals("ann", left=0), reviewers(ann="approved", bob="requested_changes"),
         "mergeable", "changes_requested"),
        (approvals(), reviewers(), "requested_changes", "changes_requested"),
        # An instance without the approvals or reviewers endpoints.
        (None, None, "mergeable", "none"),
        (None, None, "not_approved", "review_required"),
        (None, None, "requested_changes", "changes_requested"),
        (None, None, None, "none"),
    ],
)
def test_gitlab_review_is_what_approvals_reviewers_and_the_merge_status_say(
        given, found, merge_status, expected) -> None:
    assert gitlab.review(given, found, merge_status) == expected


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("success", "success"),
        ("failed", "failure"),
        ("canceled", "canceled"),
        ("canceling", "canceled"),
        ("skipped", "skipped"),
        ("running", "running"),
        ("manual", "manual"),
        ("created", "pending"),
        ("pending", "pending"),
        ("scheduled", "pending"),
        ("waiting_for_resource", "pending"),
        ("preparing", "pending"),
    ],
)
def test_gitlab_pipeline_states(status: str, state: str) -> None:
    assert gitlab._state(status) == state


def test_gitlab_change_request_fields() -> None:
    view = gitlab._change_request(
        "gl2", "acme/api", merge_request(pipeline="failed", author="me", reviewers=("ann",)),
        "me", approvals=approvals("ann", left=0), reviewers=reviewers(ann="approved"))

    assert view == ChangeRequestView(
        upstream="gl2", repo="acme/api", number=12, ref="acme/api!12", title="Fix",
        url="https://gl/acme/api/-/merge_requests/12", author="me", source_branch="feat",
        target_branch="main", review="approved",
        ci=CiView(state="failure", url="https://gl/p/9", started_at=T0),
        mine=True, review_requested=False, assigned=False, updated_at=T0, conflicts=False,
        approvals_left=0, approved_by=["ann"],
    )


def test_gitlab_change_request_of_someone_else() -> None:
    view = gitlab._change_request(
        "gitlab", "acme/api", merge_request(author="ann", assignees=("me",),
                                            reviewers=("me", "bob")), "me")

    assert (view.mine, view.review_requested, view.assigned, view.reviewed) == \
        (False, True, True, False)
    assert view.ci == CiView(state="none")


@pytest.mark.parametrize(("state", "requested", "reviewed"), [
    ("unreviewed", True, False), ("review_started", True, False), ("reviewed", False, True),
    ("requested_changes", False, True), ("approved", False, True), ("unapproved", True, False),
])
def test_gitlab_my_review_given_is_no_longer_asked_for(state: str, requested: bool,
                                                       reviewed: bool) -> None:
    view = gitlab._change_request(
        "gitlab", "acme/api", merge_request(author="ann", reviewers=("me",)), "me",
        approvals=approvals(), reviewers=reviewers(me=state))

    assert (view.review_requested, view.reviewed) == (requested, reviewed)


def test_gitlab_an_approval_of_mine_is_a_review_given() -> None:
    view = gitlab._change_request("gitlab", "acme/api", merge_request(author="ann"), "me",
                                  approvals=approvals("me"))

    assert view.reviewed and view.approved_by == ["me"]


@pytest.mark.parametrize(("merge_status", "checked", "has_conflicts", "conflicts"), [
    ("mergeable", "can_be_merged", False, False),
    ("conflict", "cannot_be_merged", True, True),
    ("ci_must_pass", "cannot_be_merged", True, True),
    # Not checked yet: has_conflicts is false until a check says cannot_be_merged.
    ("checking", "checking", False, None),
    ("unchecked", "unchecked", False, None),
    ("preparing", None, False, None),
])
def test_gitlab_conflicts_are_unknown_until_checked(merge_status: str, checked: str | None,
                                                    has_conflicts: bool,
                                                    conflicts: bool | None) -> None:
    view = gitlab._change_request("gitlab", "acme/api", merge_request(
        merge_status=merge_status, checked=checked, conflicts=has_conflicts), "me")

    assert view.conflicts is conflicts
    assert view.merge_status == merge_status


def test_gitlab_a_draft_by_either_name() -> None:
    old = msgspec.structs.replace(merge_request(), work_in_progress=True)
    assert gitlab._change_request("gitlab", "acme/api", old, "me").draft


def test_gitlab_pipeline_fields() -> None:
    when = datetime.fromtimestamp(T0, UTC)
    pipeline = gitlab._Pipeline(id=9, ref="feat", status="manual", web_url="https://gl/p/9",
                                updated_at=when, created_at=when, sha="abc")

    assert gitlab._pipeline("gl2", "acme/api", pipeline) == PipelineView(
        upstream="gl2", repo="acme/api", branch="feat", sha="abc", state="manual",
        name="pipeline", url="https://gl/p/9", updated_at=T0, started_at=T0,
    )


def test_gitlab_ci_started_when_its_first_job_did_else_when_it_was_created() -> None:
    started = datetime.fromtimestamp(T0 + 30, UTC)
    mr = merge_request(pipeline="running")
    assert gitlab._change_request("gitlab", "acme/api", mr, "me").ci.started_at == T0
    mr.head_pipeline.started_at = started
    assert gitlab._change_request("gitlab", "acme/api", mr, "me").ci.started_at == T0 + 30
