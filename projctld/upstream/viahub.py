"""Upstream state from the team's hub (`[upstreams] via = "hub"`): no upstream token here.

For each project of the config, a stream from the hub's GET /v1/upstream/stream (the same
hub, token and HTTP client as the event sync) brings each source's state as the hub last
polled it, and each change as it comes. It
lands where this daemon's own polls land: the Poller's sources (as mirrored sources) and the
`snapshots` table, so that status, the prompt and everything built on them work unchanged,
with the hub's fetch times as ages. Each device picks out "mine" by the names the hub maps
its user to (`projctld hub user set`).

When the hub cannot be reached, each source keeps its last state and age, and says why; with
`fallback`, a source whose hub has been unreachable for `fallback_after` seconds is polled
directly with this machine's tokens until the hub answers again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping

import anyio
import msgspec

from projctl_client.protocol import ChangeRequestView, SourceError
from projctld.config import Config
from projctld.errors import UpstreamError
from projctld.logging import get_logger
from projctld.redact import redact_all, redact_text
from projctld.store.snapshots import SnapshotTable
from projctld.team.sync.hubclient import HubClient
from projctld.upstream.polling import Key, Poller, SourceInfo
from projctld.upstream.providers.model import Snapshot
from projctld.upstream.wire import HubSource, UpstreamReply

log = get_logger(__name__)

# Waits between attempts while the hub fails: doubling from the first to the last, jittered.
BACKOFF = (1.0, 30.0)
# A project the hub refuses to this token (403) is asked again this rarely.
FORBIDDEN_RETRY = 300.0


def mirrored(config: Config, table: SnapshotTable) -> dict[Key, SourceInfo]:
    """The sources the hub feeds, known at start: those it fed before (in `snapshots`: shown
    at once with their age, before the hub is reached or when it cannot be), and those the
    config names (never polled here, unless falling back)."""
    instances = config.instances()

    def info(upstream: str) -> SourceInfo:
        instance = instances.get(upstream)
        return (instance.interval, instance.kind, None) if instance else (60.0, "plugin", None)

    found = {(row.project, row.upstream): info(row.upstream) for row in table.all()
             if row.project in config.projects}
    found.update({(name, upstream): info(upstream) for name, project in config.projects.items()
                  for upstream in project.upstreams()})
    return found


class HubFeed:
    def __init__(self, hub: HubClient, poller: Poller, config: Config, *,
                 wall: Callable[[], float] = time.time) -> None:
        self._hub = hub
        self._poller = poller
        self._config = config
        self._wall = wall
        self._cursors: dict[str, int] = {}
        self._identities: dict[str, str] = {}
        # Since when each project's hub has failed (None: it answers).
        self._failing_since: dict[str, float | None] = {}
        poller.mirror_poll = self._mirror_poll

    async def run(self) -> None:
        """Listen to the hub for every project of the config; until cancelled."""
        async with anyio.create_task_group() as tasks:
            for project in self._config.projects:
                tasks.start_soon(self._listen, project)

    async def fetch(self, project: str) -> None:
        """Read the project's whole state from the hub now (a refresh); a fault is recorded
        on its sources, never raised."""
        try:
            reply = await self._hub.upstream(project, 0)
        except UpstreamError as exc:
            self._failed(project, exc)
        else:
            self._apply(reply)

    async def _listen(self, project: str) -> None:
        """Hold the hub's stream of the project's state open; open it again when the hub
        ends it, and after a fault, backing off while the faults go on."""
        failures = 0
        while True:
            try:
                async for reply in self._hub.upstream_stream(project,
                                                             self._cursors.get(project, 0)):
                    failures = 0
                    self._apply(reply)
            except UpstreamError as exc:
                failures += 1
                self._failed(project, exc)
                if exc.code == "forbidden":
                    await anyio.sleep(FORBIDDEN_RETRY)
                    continue
                low, high = BACKOFF
                await anyio.sleep(min(high, low * 2 ** min(failures - 1, 10)) *
                                  random.uniform(0.8, 1.2))
            except Exception:  # a bug here must cost this project's feed a pause, never more
                log.exception("hub_feed_failed", project=project)
                await anyio.sleep(BACKOFF[1])

    async def _mirror_poll(self, key: Key, fresh: bool) -> bool:
        """Stands in for the Poller's poll of a mirrored source: a refresh asks the hub now;
        a scheduled poll has nothing to do (the stream keeps it current), unless the hub
        has failed for `fallback_after` and this machine may poll directly (False)."""
        upstreams = self._config.upstreams
        since = self._failing_since.get(key[0])
        project = self._config.projects.get(key[0])
        if upstreams.fallback and since is not None and project is not None and \
                self._wall() - since >= upstreams.fallback_after and \
                key[1] in project.upstreams():
            return False
        if fresh:
            await self.fetch(key[0])
        return True

    def _apply(self, reply: UpstreamReply) -> None:
        project = reply.project
        if self._failing_since.get(project) is not None:
            log.info("hub_upstream_back", project=project)
        self._failing_since[project] = None
        if reply.identities is not None:  # a stream's later frames: unchanged
            self._identities = dict(reply.identities)
        self._cursors[project] = max(self._cursors.get(project, 0), reply.next_after)
        for hub_source in reply.sources:
            key = (project, hub_source.upstream)
            self._poller.mirror(key, (hub_source.interval, hub_source.kind, hub_source.host))
            snapshot = _mine(hub_source, self._identities)
            self._poller.mirror_update(
                key, snapshot=snapshot if snapshot is not None else Snapshot(),
                fetched_at=hub_source.fetched_at, attempted_at=hub_source.attempted_at,
                error=None if hub_source.error is None else SourceError(
                    code=hub_source.error.code,
                    message=redact_text(f"the hub: {hub_source.error.message}"),
                    suggestions=redact_all(hub_source.error.suggestions)))

    def _failed(self, project: str, exc: UpstreamError) -> None:
        now = self._wall()
        if self._failing_since.get(project) is None:
            self._failing_since[project] = now
            log.warning("hub_upstream_failed", project=project, error=exc.code,
                        message=exc.message)
        error = SourceError(
            code="hub_" + exc.code if not exc.code.startswith("hub") else exc.code,
            message=redact_text(f"{exc.message}; shown: the hub's state when it last "
                                "answered"),
            suggestions=redact_all(exc.suggestions))
        for key, source in list(self._poller.sources.items()):
            if key[0] == project and self._poller.is_mirrored(key):
                self._poller.mirror_update(key, snapshot=None, fetched_at=source.fetched_at,
                                           attempted_at=now, error=error)


def _mine(source: HubSource, identities: Mapping[str, str]) -> Snapshot | None:
    """The hub's snapshot with `mine` set on this user's change requests (by their author
    and this user's name on that kind of upstream), and `review_requested` and `reviewed` on
    those whose review is asked of this user (review_requested_from) or given (approved_by):
    the hub's own flags are its token user's, not this user's."""
    snapshot = source.snapshot
    if snapshot is None:
        return None
    me = (identities.get(source.kind) or "").lower()

    def marked(cr: ChangeRequestView) -> ChangeRequestView:
        mine = bool(me) and cr.author.lower() == me
        requested = bool(me) and me in (name.lower() for name in cr.review_requested_from)
        reviewed = bool(me) and not mine and me in (name.lower() for name in cr.approved_by)
        if (cr.mine, cr.review_requested, cr.reviewed) == (mine, requested, reviewed):
            return cr
        return msgspec.structs.replace(cr, mine=mine, review_requested=requested,
                                       reviewed=reviewed)

    return msgspec.structs.replace(snapshot, change_requests=[
        marked(cr) for cr in snapshot.change_requests])
