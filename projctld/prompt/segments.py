"""The facts a prompt shows for a checkout and branch, from what the daemon already holds."""

from __future__ import annotations

import time

import msgspec

from projctld.config import PromptConfig
from projctld.daemon.knowledge import Knowledge
from projctld.prompt.format import PromptFacts, Style, Template, parse, render
from projctld.store.events import EventStore
from projctld.upstream.polling import Poller, Source, branch_upstream
from projctld.upstream.providers.model import stuck_state


class Segments:
    """Renders the configured format (or another) for any checkout the daemon can place."""

    def __init__(self, config: PromptConfig, knowledge: Knowledge, poller: Poller,
                 events: EventStore, *, syncing: bool, stuck_after: float = 43200.0) -> None:
        self.stuck_after = stuck_after
        self.configure(config)
        self._knowledge = knowledge
        self._poller = poller
        self._events = events
        self._syncing = syncing

    def configure(self, config: PromptConfig) -> None:
        """Take the prompt's format and stale marker (at start and at a reload)."""
        self.template = parse(config.format)
        self.stale_marker = config.stale_marker

    def text(self, root: str, branch: str | None, style: Style,
             template: Template | None = None) -> str:
        """The segment for a checkout; empty outside every configured project."""
        project = self._knowledge.project_of(root)
        if project is None:
            return ""
        facts = self.facts(project, branch, self.waiting(), time.time())
        return render(template or self.template, facts, style, self.stale_marker)

    def facts(self, project: str, branch: str | None, waiting: int,
              now: float) -> PromptFacts:
        """What a checkout of `project` on `branch` shows (the checkout itself does not count:
        the branch is matched by name, as `projctl status` does)."""
        sources = self.sources(project)
        stale = any(source.view(now).stale for source in sources)
        change_request, pipeline = branch_upstream(branch, sources) if branch else (None, None)
        stuck_after = self.stuck_after
        if pipeline is not None:
            pipeline = msgspec.structs.replace(pipeline, state=stuck_state(
                pipeline.state, pipeline.started_at or pipeline.updated_at, now, stuck_after))
        # A change request's own CI is of its head commit; else the branch's latest pipeline.
        if change_request is not None and change_request.ci is not None:
            ci = stuck_state(change_request.ci.state,
                             change_request.ci.started_at or change_request.updated_at,
                             now, stuck_after)
        else:
            ci = pipeline.state if pipeline else "none"
        if change_request is None:
            # Looked for only if some source of change requests was ever fetched.
            code = [s for s in sources if s.kind in ("github", "gitlab")]
            known = not code or any(s.fetched_at is not None for s in code)
            return PromptFacts(project=project, ci=ci, waiting=waiting, stale=stale,
                               known=known or branch is None)
        kind = next((s.kind for s in sources if s.upstream == change_request.upstream), None)
        instance = "" if change_request.upstream == kind else change_request.upstream
        return PromptFacts(project=project, upstream=kind, instance=instance,
                           number=change_request.number, review=change_request.review, ci=ci,
                           waiting=waiting, stale=stale)

    def waiting(self) -> int:
        """Events on this device not yet on the hub; none wait without a hub to go to."""
        return self._events.waiting_count() if self._syncing else 0

    def branches(self, project: str) -> set[str]:
        """Every branch that a change request or a pipeline of the project names."""
        return {name for source in self.sources(project) for name in (
            *(cr.source_branch for cr in source.snapshot.change_requests),
            *(pipeline.branch for pipeline in source.snapshot.pipelines))}

    def sources(self, project: str) -> list[Source]:
        return [source for (name, _), source in self._poller.sources.items() if name == project]
