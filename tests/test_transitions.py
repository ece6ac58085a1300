"""Which changes between two reads are told, and how: the transitions of upstream/notify/."""

from __future__ import annotations

import msgspec

from projctl_client.protocol import (
    ChangeRequestView,
    CiView,
    DeploymentView,
    PipelineView,
    SourceProblem,
)
from projctld.upstream.notify.transitions import of_deployments, of_snapshots
from projctld.upstream.providers.model import Snapshot


def _cr(number: int, **fields: object) -> ChangeRequestView:
    base = dict(upstream="github", repo="acme/web", number=number, ref=f"acme/web#{number}",
                title=f"change {number}", url=f"https://github.com/acme/web/pull/{number}",
                author="me", source_branch=f"b{number}", target_branch="main", mine=True,
                updated_at=100.0)
    return ChangeRequestView(**{**base, **fields})  # type: ignore[arg-type]


def _kinds(before: Snapshot, after: Snapshot) -> list[tuple[str, str]]:
    return [(t.kind, t.about) for t in of_snapshots("web", before, after)]


def test_each_kind_of_change_request_transition() -> None:
    running = CiView(state="running", url="u/checks", running=3, started_at=50.0)
    failed = CiView(state="failure", url="u/checks", passed=2, failed=1, failing=["lint"])
    before = Snapshot(change_requests=[
        _cr(1, ci=running), _cr(2), _cr(3), _cr(4, mine=False, author="lee"), _cr(5)])
    after = Snapshot(change_requests=[
        _cr(1, ci=failed),
        _cr(2, review="approved", approved_by=["lee"]),
        _cr(3, review="changes_requested"),
        _cr(4, mine=False, author="lee", review_requested=True),
        _cr(6, mine=False, author="kim", review_requested=True),  # new, and asks me
    ])  # 5 is gone: merged or closed
    found = of_snapshots("web", before, after)
    assert [(t.kind, t.about) for t in found] == [
        ("ci", "acme/web#1"), ("approved", "acme/web#2"), ("changes_requested", "acme/web#3"),
        ("review_requested", "acme/web#4"), ("review_requested", "acme/web#6"),
        ("closed", "acme/web#5")]
    assert found[0].text == "CI failed: 1 of 3 checks (lint)"
    assert found[1].text == "approved by lee: change 2"
    # Nothing changed: nothing told.
    assert of_snapshots("web", after, after) == []


def test_what_is_not_told() -> None:
    mine = _cr(1, ci=CiView(state="running", started_at=1.0))
    # Someone else's CI, and CI still running or waiting on a manual job.
    theirs = _cr(2, mine=False, ci=CiView(state="running"))
    before = Snapshot(change_requests=[mine, theirs])
    after = Snapshot(change_requests=[
        msgspec.structs.replace(mine, ci=CiView(state="manual")),
        msgspec.structs.replace(theirs, ci=CiView(state="success"))])
    assert _kinds(before, after) == []
    # Gone because its repository could not be read: not closed.
    assert _kinds(Snapshot(change_requests=[mine]), Snapshot(problems=[SourceProblem(
        part="acme/web", code="not_found", message="gone")])) == []


def test_ci_on_my_branch_without_a_change_request() -> None:
    def pipeline(state: str, sha: str) -> PipelineView:
        return PipelineView(upstream="github", repo="acme/web", branch="fix", sha=sha,
                            state=state, name="CI", url=f"https://ci/{sha}", updated_at=1.0)

    found = of_snapshots("web", Snapshot(pipelines=[pipeline("running", "a1")]),
                         Snapshot(pipelines=[pipeline("success", "a1")]))
    assert [(t.kind, t.about, t.text) for t in found] == [("ci", "acme/web@fix",
                                                           "CI passed (CI)")]
    # A run that began and ended between two reads is a new run too.
    found = of_snapshots("web", Snapshot(pipelines=[pipeline("success", "a1")]),
                         Snapshot(pipelines=[pipeline("failure", "b2")]))
    assert [t.text for t in found] == ["CI failed (CI)"]


def test_deployments_a_teammates_failure_and_named_environments() -> None:
    def deployment(id: str, environment: str, state: str, actor: str) -> DeploymentView:
        return DeploymentView(deployment=id, environment=environment, state=state, actor=actor,
                              reason="exit 1" if state == "failed" else None)

    before = {d.deployment: d for d in [deployment("d1", "staging", "running", "lee"),
                                        deployment("d2", "staging", "running", "me"),
                                        deployment("d3", "production", "running", "kim")]}
    after = {d.deployment: d for d in [deployment("d1", "staging", "failed", "lee"),
                                       deployment("d2", "staging", "failed", "me"),
                                       deployment("d3", "production", "completed", "kim"),
                                       deployment("d4", "staging", "completed", "lee")]}
    found = of_deployments("web", before, after, mine={"d2"}, environments=["production"])
    assert [(t.kind, t.about, t.text) for t in found] == [
        ("deployment_failed", "staging", "lee's deployment failed: exit 1"),
        ("deployment", "production", "kim's deployment completed")]
