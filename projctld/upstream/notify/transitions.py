"""The transitions that concern me, found by comparing what one poll read with the one before.

Pure: a (before, after) pair of snapshots, or of a project's deployments, in; Transitions out.
Each has a key naming what it is about and the state reached, so that a transition told once
is never told again, even by a daemon restarted since (notifier.py keeps the keys in SQLite).
"""

from __future__ import annotations

from typing import NamedTuple

from projctl_client.protocol import ChangeRequestView, DeploymentView, PipelineView
from projctld.upstream.providers.model import UNFINISHED, Snapshot

# CI states that end a run: passed or failed. `manual` and `stuck` wait on someone: not ended.
PASSED = ("success", "skipped")
FAILED = ("failure", "canceled")
KINDS = ("ci", "review_requested", "approved", "changes_requested", "closed",
         "deployment_failed", "deployment", "workflow_finished")


class Transition(NamedTuple):
    kind: str  # one of KINDS
    key: str
    project: str
    about: str  # what it concerns: acme/web#42, acme/web@branch, production
    text: str  # what happened, short: "CI failed: lint, test"
    url: str | None = None


def ref(cr: ChangeRequestView) -> str:
    return f"{cr.repo}{'!' if cr.upstream.startswith('gitlab') else '#'}{cr.number}"


def of_snapshots(project: str, before: Snapshot, after: Snapshot) -> list[Transition]:
    """What changed between two successful polls of one source."""
    found: list[Transition] = []
    old = {cr.url: cr for cr in before.change_requests}
    new = {cr.url: cr for cr in after.change_requests}
    for url, cr in new.items():
        was = old.get(url)
        found += _change_request(project, was, cr)
    failed_parts = [problem.part for problem in after.problems]
    for url, cr in old.items():
        # Gone from a whole read: merged or closed (an open list cannot tell which). Gone
        # because its part could not be read says nothing.
        if url not in new and cr.mine and not any(
                cr.repo == part or cr.repo.startswith(part + "/") for part in failed_parts):
            found.append(Transition("closed", f"closed:{url}", project, ref(cr),
                                    f"merged or closed: {cr.title}", url))
    mine = {(cr.repo, cr.source_branch) for cr in after.change_requests if cr.mine}
    old_pipelines = {(p.repo, p.branch): p for p in before.pipelines}
    for pipeline in after.pipelines:
        if (pipeline.repo, pipeline.branch) in mine:
            continue  # its change request tells it
        was = old_pipelines.get((pipeline.repo, pipeline.branch))
        if was is not None and _ci_ended(was.state, was.url, pipeline.state, pipeline.url):
            found.append(_pipeline(project, pipeline))
    return found


def _change_request(project: str, was: ChangeRequestView | None,
                    cr: ChangeRequestView) -> list[Transition]:
    about, url = ref(cr), cr.url
    found = []
    if cr.review_requested and not cr.mine and (was is None or not was.review_requested):
        found.append(Transition("review_requested", f"review_requested:{url}", project, about,
                                f"review requested by {cr.author}: {cr.title}", url))
    if was is None or not cr.mine:
        return found
    if cr.review != was.review and cr.review in ("approved", "changes_requested"):
        who = f" by {', '.join(cr.approved_by)}" if cr.approved_by and \
            cr.review == "approved" else ""
        text = f"approved{who}" if cr.review == "approved" else "changes requested"
        found.append(Transition(cr.review, f"{cr.review}:{url}:{cr.updated_at:.0f}", project,
                                about, f"{text}: {cr.title}", url))
    if cr.ci is not None and was.ci is not None and _ci_ended(
            was.ci.state, was.ci.url, cr.ci.state, cr.ci.url):
        ci = cr.ci
        if ci.state in PASSED:
            text = f"CI passed ({ci.passed} checks)" if ci.passed else "CI passed"
        else:
            names = ", ".join(ci.failing) or "see the checks"
            text = f"CI {'failed' if ci.state == 'failure' else ci.state}: {ci.failed} of " \
                   f"{ci.failed + ci.passed} checks ({names})" if ci.failed else \
                   f"CI {ci.state}"
        # GitHub's checks page is the same address for every run: a run is told apart by when
        # it started (as last seen running) and the change request's last update (a push).
        run = f"{was.ci.started_at or 0:.0f}:{cr.updated_at:.0f}"
        found.append(Transition("ci", f"ci:{url}:{ci.url or ''}:{run}:{ci.state}", project,
                                about, text, ci.url or url))
    return found


def _ci_ended(was: str, was_url: str | None, now: str, url: str | None) -> bool:
    """CI that ran at the last poll has ended; or another run started and ended between polls."""
    if now not in PASSED + FAILED:
        return False
    return was in UNFINISHED or (url is not None and was_url is not None and url != was_url)


def _pipeline(project: str, pipeline: PipelineView) -> Transition:
    about = f"{pipeline.repo}@{pipeline.branch}"
    word = "passed" if pipeline.state in PASSED else \
        "failed" if pipeline.state == "failure" else pipeline.state
    name = f" ({pipeline.name})" if pipeline.name else ""
    return Transition("ci", f"ci:{about}:{pipeline.sha or pipeline.url}:{pipeline.state}",
                      project, about, f"CI {word}{name}", pipeline.url)


def of_deployments(project: str, before: dict[str, DeploymentView],
                   after: dict[str, DeploymentView], mine: set[str],
                   environments: list[str]) -> list[Transition]:
    """Deployments that ended since: a teammate's that failed (not one of `mine`), and any that
    ended in one of `environments`."""
    found = []
    for id, deployment in after.items():
        was = before.get(id)
        if deployment.state == "running" or (was is not None and was.state == deployment.state):
            continue
        who = deployment.actor or "someone"
        about = deployment.environment
        text = f"{who}'s deployment {'failed' if deployment.state == 'failed' else 'completed'}"
        if deployment.state == "failed" and deployment.reason:
            text += f": {deployment.reason}"
        if deployment.state == "failed" and id not in mine:
            found.append(Transition("deployment_failed", f"deployment:{id}:failed", project,
                                    about, text))
        elif deployment.environment in environments:
            found.append(Transition("deployment", f"deployment:{id}:{deployment.state}",
                                    project, about, text))
    return found
