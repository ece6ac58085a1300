"""`projctl wait ci|review`: progress of one change request's CI or review, until it is decided.

It asks nothing upstream itself: the sources it waits on are polled as often as running CI
while it waits (Poller.waiting), and every poll wakes it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import NamedTuple

import msgspec

from projctl_client.protocol import ChangeRequestView, PipelineView, Reply, Wait, WaitProgress
from projctld.daemon.context import DaemonContext
from projctld.errors import ProjctlError
from projctld.rpc.server import Stream
from projctld.upstream.notify.transitions import FAILED, PASSED, ref
from projctld.upstream.polling import Key, Source, branch_upstream


class _Target(NamedTuple):
    project: str
    keys: list[Key]
    url: str | None  # the change request's, when named
    branch: str | None


def wait(ctx: DaemonContext, request: Wait) -> Stream:
    """The stream of a wait; a target that cannot be named is this request's error."""
    target = _target(ctx, request)
    return Stream(_frames(ctx, request, target))


async def _frames(ctx: DaemonContext, request: Wait, target: _Target) -> AsyncIterator[Reply]:
    deadline = time.monotonic() + request.timeout
    last = None
    with ctx.poller.waiting(target.keys):
        while True:
            version = ctx.version
            progress = _progress(ctx, request.what, target)
            if progress.outcome is not None:
                yield progress
                return
            if progress != last:
                yield progress
                last = progress
            left = deadline - time.monotonic()
            if left <= 0:
                yield msgspec.structs.replace(progress, outcome="timeout")
                return
            await ctx.next_change(version, left)


def _sources(ctx: DaemonContext, project: str) -> list[Source]:
    return [s for (p, _), s in ctx.poller.sources.items()
            if p == project and s.kind in ("github", "gitlab")]


def _target(ctx: DaemonContext, request: Wait) -> _Target:
    if request.url is not None:
        for (project, upstream), source in ctx.poller.sources.items():
            if any(cr.url == request.url for cr in source.snapshot.change_requests):
                return _Target(project, [(project, upstream)], request.url, None)
        raise ProjctlError(f"no open change request at {request.url} in what projctld has read",
                           code="unknown_ref", suggestions=["projctl status  # what it knows"])
    checkout = request.checkout
    if checkout is None:
        raise ProjctlError("not in a git checkout, and no change request named",
                           code="bad_usage", suggestions=[f"projctl wait {request.what} '#42'"])
    project = ctx.knowledge.project_of(checkout.root)
    if project is None:
        raise ProjctlError(f"{checkout.root} is in no configured project", code="bad_usage",
                           suggestions=[f"add its path to a project's paths in "
                                        f"{ctx.config_path}"])
    if checkout.branch is None:
        raise ProjctlError("HEAD is detached: there is no branch to wait on", code="bad_usage",
                           suggestions=[f"projctl wait {request.what} '#42'"])
    sources = _sources(ctx, project)
    if not sources:
        raise ProjctlError(f"project {project!r} has no github or gitlab configured",
                           code="bad_usage", suggestions=[f"add github = [\"OWNER/NAME\"] to "
                                                          f"[projects.{project}]"])
    return _Target(project, [(s.project, s.upstream) for s in sources], None, checkout.branch)


def _known(sources: list[Source]) -> str:
    if all(s.fetched_at is None for s in sources):
        return "unknown"
    if any(s.fetched_at is None or s.error is not None or s.snapshot.problems
           for s in sources):
        return "partial"
    return "complete"


def _found(ctx: DaemonContext, target: _Target
           ) -> tuple[ChangeRequestView | None, PipelineView | None, list[Source]]:
    sources = [ctx.poller.sources[key] for key in target.keys if key in ctx.poller.sources]
    if target.url is not None:
        cr = next((cr for s in sources for cr in s.snapshot.change_requests
                   if cr.url == target.url), None)
        pipeline = next((p for s in sources for p in s.snapshot.pipelines
                         if cr is not None and p.repo == cr.repo
                         and p.branch == cr.source_branch), None)
        return cr, pipeline, sources
    assert target.branch is not None
    cr, pipeline = branch_upstream(target.branch, sources)
    return cr, pipeline, sources


def _progress(ctx: DaemonContext, what: str, target: _Target) -> WaitProgress:
    cr, pipeline, sources = _found(ctx, target)
    known = _known(sources)
    fetched = [s.fetched_at for s in sources if s.fetched_at is not None]
    name = ref(cr) if cr is not None else target.url or target.branch or "?"
    base = WaitProgress(what=what, target=name, url=cr.url if cr else target.url,
                        state="not fetched" if known == "unknown" else "none", known=known,
                        fetched_at=min(fetched) if fetched else None)
    if known == "unknown":
        return msgspec.structs.replace(base, note="not fetched yet: waiting for the first poll")
    if cr is None and (what == "review" or pipeline is None):
        if target.url is not None and known == "complete":
            return msgspec.structs.replace(base, state="closed", outcome="closed",
                                           note="it is no longer open (merged or closed)")
        return msgspec.structs.replace(
            base, note=f"no change request for {target.branch} yet" if known == "complete"
            else "no change request found in what could be read")
    if what == "review":
        assert cr is not None
        outcome = cr.review if cr.review in ("approved", "changes_requested") else None
        return msgspec.structs.replace(base, state=cr.review, outcome=outcome,
                                       note=", ".join(f"approved by {who}"
                                                      for who in cr.approved_by) or None)
    if cr is not None and cr.ci is not None:
        state, failing, ci_url = cr.ci.state, cr.ci.failing, cr.ci.url
    elif pipeline is not None:
        state, failing, ci_url = pipeline.state, [], pipeline.url
    else:
        return msgspec.structs.replace(base, note="no CI has reported yet")
    outcome = "passed" if state in PASSED else "failed" if state in FAILED else None
    return msgspec.structs.replace(base, state=state, outcome=outcome, failing=failing,
                                   ci_url=ci_url)
