"""The hub as the team's intermediary for upstream state: what devices read, what webhooks do.

A device reads a project's upstream state with its own token (read rights as for events),
waiting for a change when it asks after the version it holds. A webhook delivery is checked
(signature, size, replay) before anything is read of it, and moves the sources it names to a
refresh at once; nothing else changes for a delivery that is refused or ignored.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping

import anyio
import msgspec

from projctl_client.protocol import SourceError
from projctld.hub.auth import Refusal
from projctld.hub.service import token_hint
from projctld.hub.storage.interface import HubStorage, SingleFlight, TokenRecord, UpstreamState
from projctld.hub.upstream import webhooks
from projctld.hub.upstream.config import HubConfig
from projctld.hub.upstream.polling import HubPoller
from projctld.logging import get_logger
from projctld.upstream.providers.model import Snapshot
from projctld.upstream.wire import KEEPALIVE, STREAM_FOR, HubSource, UpstreamReply

log = get_logger(__name__)

_snapshot = msgspec.msgpack.Decoder(Snapshot)
_error = msgspec.msgpack.Decoder(SourceError)
# Decoded states kept for the devices that ask next (one per source and version).
_CACHE = 512
# Users' upstream names are read again after this many seconds (`hub user` runs apart).
_IDENTITIES_TTL = 5.0
_encode = msgspec.msgpack.Encoder().encode
_PARSERS = {"github": webhooks.github, "gitlab": webhooks.gitlab, "jira": webhooks.jira}


class WebhookReply(msgspec.Struct, frozen=True, kw_only=True):
    """What the hub did with a delivery: `accepted` (its sources are being refreshed),
    `duplicate` (a replay: nothing done) or `ignored` (an event or a repository the hub does
    not follow: nothing done), and which sources it refreshes."""

    status: str
    reason: str = ""
    refreshing: list[str] = []


class Intermediary:
    def __init__(self, storage: HubStorage, config: HubConfig | None,
                 poller: HubPoller | None, *, wall: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.config = config
        self.poller = poller
        self._wall = wall
        self._decoded: dict[tuple[str, str, int], HubSource] = {}
        self._reads = SingleFlight()
        self._frames: dict[tuple[str, int, int], bytes] = {}
        self._stopping = anyio.Event()
        self.streams = 0  # open now
        if poller is not None:
            poller.active = lambda: self.streams > 0
        self._identities: tuple[float, dict[str, dict[str, str]]] = (float("-inf"), {})
        self.counters = {"accepted": 0, "duplicate": 0, "ignored": 0, "refused": 0}

    async def state(self, token: TokenRecord, project: str, after: int,
                    wait: float) -> UpstreamReply:
        if not token.can_read(project):
            raise Refusal(403, "forbidden",
                          f"token {token.id} of {token.user} may not read project {project}",
                          suggestions=[token_hint(token.user, project, write=False)])
        states = await self._states(project, after)
        if not states and wait > 0:
            await self.storage.wait_for_upstream(project, after, wait)
            states = await self._states(project, after)
        sources = [self._source(state) for state in states]
        return UpstreamReply(
            project=project, sources=sources,
            next_after=max((s.version for s in sources), default=after),
            identities=(await self._identities_of()).get(token.user, {}))

    async def stream(self, token: TokenRecord, project: str, after: int
                     ) -> AsyncIterator[bytes]:
        """The project's state as frames (upstream/wire.py), as it changes, until STREAM_FOR
        or the hub stops. The frames after the first carry no identities, so that every
        device at one version of a project is sent the same bytes, encoded once."""
        if not token.can_read(project):
            raise Refusal(403, "forbidden",
                          f"token {token.id} of {token.user} may not read project {project}",
                          suggestions=[token_hint(token.user, project, write=False)])
        first = await self.state(token, project, after, 0.0)  # with the user's identities

        async def frames() -> AsyncIterator[bytes]:
            cursor = first.next_after
            self.streams += 1
            try:
                yield _frame(_encode(first))
                async for frame in follow(cursor):
                    yield frame
            finally:
                self.streams -= 1

        async def follow(cursor: int) -> AsyncIterator[bytes]:
            ends = time.monotonic() + STREAM_FOR
            while not self._stopping.is_set() and time.monotonic() < ends:
                # Returns at once when the hub stops (storage.stop_waiting), with stop().
                await self.storage.wait_for_upstream(project, cursor, KEEPALIVE)
                if self._stopping.is_set():
                    return
                encoded, newest = await self._changes(project, cursor)
                if encoded is None:
                    yield _frame(b"")  # keep-alive: the device knows the stream lives
                    continue
                cursor = newest
                yield encoded

        return frames()

    def stop(self) -> None:
        """The hub stops: every stream ends now (a device opens one on the next hub)."""
        self._stopping.set()

    async def _changes(self, project: str, after: int) -> tuple[bytes | None, int]:
        """The frame of what changed in `project` after `after`, and its newest version; the
        same bytes for every device at `after`."""
        states = await self._states(project, after)
        if not states:
            return None, after
        newest = max(state.version for state in states)
        key = (project, after, newest)
        frame = self._frames.get(key)
        if frame is None:
            frame = _frame(_encode(UpstreamReply(
                project=project, sources=[self._source(state) for state in states],
                next_after=newest)))
            if len(self._frames) >= _CACHE:
                self._frames.pop(next(iter(self._frames)))
            self._frames[key] = frame
        return frame, newest

    async def webhook(self, kind: str, instance: str | None, headers: Mapping[str, str],
                      body: bytes) -> WebhookReply:
        """Check and act on one delivery; raises webhooks.Rejected for a refused one."""
        name = instance or kind
        secret = self.config.secrets.get(name) if self.config is not None else None
        known = self.config is not None and name in self.config.upstream.instances() and \
            self.config.upstream.instances()[name].kind == kind
        if secret is None or not known:
            self.counters["refused"] += 1
            raise webhooks.Rejected(
                401, "unknown_source", f"this hub takes no {kind} webhooks for {name}",
                f"set webhook_secret_env (or _file) in the [{kind}"
                f"{'' if name == kind else '.' + name}] table of the hub's config")
        try:
            delivery = _PARSERS[kind](headers, body, secret)
        except webhooks.Rejected:
            self.counters["refused"] += 1
            raise
        if not await self.storage.first_delivery(f"{kind}:{name}", delivery.id, self._wall()):
            self.counters["duplicate"] += 1
            log.info("webhook_replayed", source=name, delivery=delivery.id)
            return WebhookReply(status="duplicate", reason="this delivery was taken before")
        if not delivery.relevant:
            self.counters["ignored"] += 1
            return WebhookReply(status="ignored",
                                reason=f"the hub keeps nothing of {delivery.event or 'it'}")
        keys = self.poller.sources_of(name, delivery.part) if self.poller is not None else []
        if not keys:
            self.counters["ignored"] += 1
            log.info("webhook_unknown_part", source=name, part=delivery.part)
            return WebhookReply(status="ignored", reason=f"no project of the hub follows "
                                f"{delivery.part or 'this instance'}")
        assert self.poller is not None
        self.poller.refresh_soon(keys)
        self.counters["accepted"] += 1
        log.info("webhook_accepted", source=name, delivery=delivery.id, kind=delivery.event,
                 part=delivery.part, sources=len(keys))
        return WebhookReply(status="accepted", refreshing=[f"{p}/{u}" for p, u in keys])

    async def _states(self, project: str, after: int) -> list[UpstreamState]:
        """The project's states above `after`: read once for every device asking at once."""
        states = await self._reads.run(project, lambda: self.storage.upstream_states(project))
        return [state for state in states if state.version > after]

    def _source(self, state: UpstreamState) -> HubSource:
        key = (state.project, state.upstream, state.version)
        source = self._decoded.get(key)
        if source is None:
            source = HubSource(
                upstream=state.upstream, kind=state.kind, host=state.host,
                snapshot=_snapshot.decode(state.data) if state.data is not None else None,
                fetched_at=state.fetched_at, attempted_at=state.attempted_at,
                error=_error.decode(state.error) if state.error is not None else None,
                version=state.version, interval=self._interval(state.upstream))
            if len(self._decoded) >= _CACHE:
                self._decoded.pop(next(iter(self._decoded)))
            self._decoded[key] = source
        return source

    def _interval(self, upstream: str) -> float:
        instance = self.config.upstream.instances().get(upstream) if self.config else None
        return instance.interval if instance is not None else 60.0

    async def _identities_of(self) -> dict[str, dict[str, str]]:
        read_at, found = self._identities
        now = time.monotonic()
        if now - read_at > _IDENTITIES_TTL:
            found = await self.storage.identities()
            self._identities = (now, found)
        return found


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body
