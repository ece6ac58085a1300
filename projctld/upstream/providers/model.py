"""What every provider returns: a Snapshot in the shared vocabulary of the wire views.

CI states, from most to least urgent: failure, stuck, running, pending, manual, canceled,
success, skipped, none. A branch or a change request shows the most urgent state among its
checks. A provider reports what it could not read as `problems`, one per part (a repository, a
project, a query), and everything else it read; the poller keeps each failed part's last data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import msgspec

from projctl_client.protocol import ChangeRequestView, PipelineView, SourceProblem, TicketView
from projctld.config import ProjectConfig

CI_STATES = ("failure", "stuck", "running", "pending", "manual", "canceled", "success",
             "skipped", "none")
_URGENCY = {state: rank for rank, state in enumerate(CI_STATES)}
# Unfinished CI: polled faster while it lasts, unless it has lasted so long it is stuck.
UNFINISHED = ("running", "pending")


class Snapshot(msgspec.Struct, kw_only=True):
    """One upstream's data for one project, as of its last successful poll."""

    change_requests: list[ChangeRequestView] = []
    pipelines: list[PipelineView] = []
    tickets: list[TicketView] = []
    # When part of the data was fetched before this poll (a shared search), the oldest moment.
    as_of: float | None = None
    # The parts that could not be read; their data is the last that was.
    problems: list[SourceProblem] = []

    def counts(self) -> tuple[int, int, int]:
        return len(self.change_requests), len(self.pipelines), len(self.tickets)

    def ci_running(self, now: float, stuck_after: float) -> bool:
        """True while some CI of mine runs, and not for so long that it is stuck: a reason to
        poll sooner."""
        return any(stuck_state(p.state, p.started_at or p.updated_at, now, stuck_after) in
                   UNFINISHED for p in self.pipelines) or any(
            cr.mine and cr.ci is not None and stuck_state(
                cr.ci.state, cr.ci.started_at or cr.updated_at, now, stuck_after) in UNFINISHED
            for cr in self.change_requests
        )


class Provider(Protocol):
    upstream: str

    async def poll(self, project: str, config: ProjectConfig, *, fresh: bool) -> Snapshot:
        """Fetch the project's data; `fresh` forbids reusing results shared between projects."""
        ...


def stuck_state(state: str, since: float, now: float, stuck_after: float) -> str:
    """`stuck` for CI that has been unfinished for longer than `stuck_after`, else `state`."""
    return "stuck" if state in UNFINISHED and now - since > stuck_after else state


def most_urgent(states: Iterable[str]) -> str:
    return min(states, key=lambda state: _URGENCY.get(state, len(CI_STATES)), default="none")


def latest_per_branch(pipelines: Iterable[PipelineView]) -> list[PipelineView]:
    """For each (repo, branch), the CI that decides it: the most urgent of the latest run of
    each workflow there, newest first overall. `pipelines` must be newest first."""
    latest: dict[tuple[str, str, str], PipelineView] = {}
    for pipeline in pipelines:
        latest.setdefault((pipeline.repo, pipeline.branch, pipeline.name), pipeline)
    by_branch: dict[tuple[str, str], list[PipelineView]] = {}
    for pipeline in latest.values():
        by_branch.setdefault((pipeline.repo, pipeline.branch), []).append(pipeline)
    decided = []
    for runs in by_branch.values():
        state = most_urgent(run.state for run in runs)
        deciding = [run for run in runs if run.state == state]
        decided.append(msgspec.structs.replace(
            deciding[0],
            name=", ".join(sorted({run.name for run in deciding if run.name})),
            updated_at=max(run.updated_at for run in runs),
            sha=runs[0].sha,
        ))
    decided.sort(key=lambda pipeline: pipeline.updated_at, reverse=True)
    return decided
