"""The hub's polling for the whole team: the daemon's Poller and providers, one lease-holder.

Every source (project, upstream instance) of the hub config is polled by the daemon's own
Poller (intervals, backoff, rate-limit holds, partly failed polls keeping their last parts)
over the daemon's providers in team scope. What a poll records is written to the hub's
storage as UpstreamState, which wakes the devices waiting on that project. Only the process
holding the `poller` lease polls on schedule (several hub processes on one PostgreSQL take
turns); a webhook's targeted refresh runs in whichever process received it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.abc
import httpx
import msgspec

from projctld.hub.storage.interface import HubStorage, UpstreamState
from projctld.hub.upstream.config import HubConfig
from projctld.logging import get_logger
from projctld.store.database import Database
from projctld.store.http_cache import HttpCache
from projctld.store.snapshots import SnapshotRow
from projctld.upstream.polling import Key, Poller
from projctld.upstream.providers import create_providers
from projctld.upstream.providers.model import Snapshot

log = get_logger(__name__)

LEASE = "poller"
TICK = 0.5  # how often the scheduler looks for due sources, seconds
_encode = msgspec.msgpack.Encoder().encode
_snapshot = msgspec.msgpack.Decoder(Snapshot)


class _Recorded:
    """The SnapshotTable the Poller writes to: rows kept until `flush` stores them."""

    def __init__(self) -> None:
        self.rows: list[SnapshotRow] = []
        self.pending: dict[Key, SnapshotRow] = {}

    def all(self) -> list[SnapshotRow]:
        return self.rows

    def save(self, row: SnapshotRow, *, with_data: bool) -> None:
        self.pending[(row.project, row.upstream)] = msgspec.structs.replace(row)

    def keep_only(self, keys: set[Key]) -> None:
        pass  # the hub keeps a removed project's last state: devices may still read it


class HubPoller:
    """`polls` counts the polls this process made (the benchmark's figure); `leader` says
    whether it holds the lease now."""

    def __init__(self, config: HubConfig, storage: HubStorage, client: httpx.AsyncClient,
                 cache: HttpCache) -> None:
        self.config = config
        self.storage = storage
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self._table = _Recorded()
        providers = create_providers(config.upstream, client, cache,
                                     token_files=config.token_files, scope="team")
        self.poller = Poller(config.upstream, providers, self._table)  # type: ignore[arg-type]
        self.leader = False
        self.polls = 0
        # Whether devices follow this hub now (Intermediary sets it: streams are open).
        self.active: Callable[[], bool] = lambda: False
        self._due: dict[Key, float] = {}
        self._running: set[Key] = set()
        self._save_lock = anyio.Lock()
        self._tasks: anyio.abc.TaskGroup | None = None
        self._refreshing: dict[Key, bool] = {}  # key -> asked again while it ran

    async def run(self) -> None:
        """Poll due sources while this process holds the lease; until cancelled."""
        async with anyio.create_task_group() as tasks:
            self.poller.start(tasks)
            self._tasks = tasks
            renewed_at = 0.0
            while True:
                now = time.time()
                if now - renewed_at >= min(self.config.lease / 3, 5.0):
                    await self._renew(now)
                    renewed_at = now
                if self.active():
                    # Devices follow: poll as for a user at work (a daemon's `active`).
                    self.poller.touch()
                if self.leader:
                    for key in list(self.poller.sources):
                        if key not in self._running and self._due.get(key, 0.0) <= now:
                            self._running.add(key)
                            tasks.start_soon(self._scheduled, key)
                await anyio.sleep(TICK)

    def sources_of(self, instance: str, part: str | None) -> list[Key]:
        """The sources a delivery of `instance` touches: of the projects polling `part`, or
        every project polling the instance when the delivery names no part (Jira)."""
        projects = self.config.projects_of(instance, part) if part is not None else [
            name for name, project in self.config.upstream.projects.items()
            if instance in project.upstreams()]
        return [(project, instance) for project in projects
                if (project, instance) in self.poller.sources]

    def refresh_soon(self, keys: list[Key]) -> None:
        """Poll these sources now, whoever holds the lease (a webhook said they changed). A
        source being refreshed is refreshed once more after: a burst of deliveries costs
        two polls, not one each."""
        for key in keys:
            if key in self._refreshing:
                self._refreshing[key] = True
            elif self._tasks is not None:
                self._refreshing[key] = False
                self._tasks.start_soon(self._refresh, key)

    async def _refresh(self, key: Key) -> None:
        try:
            while True:
                try:
                    await self._poll(key, True)
                except Exception:  # never the hub: the next delivery or poll tries again
                    log.exception("hub_refresh_failed", project=key[0], upstream=key[1])
                if not self._refreshing.get(key):
                    return
                self._refreshing[key] = False
        finally:
            self._refreshing.pop(key, None)

    async def _renew(self, now: float) -> None:
        try:
            leader = await self.storage.take_lease(LEASE, self.holder, self.config.lease, now)
        except Exception as exc:  # the storage is down: poll nothing, serve what is stored
            log.warning("hub_lease_failed", error=str(exc))
            leader = False
        if leader and not self.leader:
            # Another process polled until now: start from what it stored.
            await self._load()
            self._due = {key: now for key in self.poller.sources}
            log.info("hub_polling_taken", holder=self.holder, sources=len(self.poller.sources))
        elif self.leader and not leader:
            log.info("hub_polling_lost", holder=self.holder)
        self.leader = leader

    async def release(self) -> None:
        """Hand the lease on at a clean stop: another process polls from its next look, not
        after the lease runs out."""
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self.storage.take_lease(LEASE, self.holder, -1.0, time.time())
        self.leader = False

    async def _load(self) -> None:
        for project, upstream in list(self.poller.sources):
            source = self.poller.sources[(project, upstream)]
            for state in await self.storage.upstream_states(project):
                if state.upstream == upstream and state.data is not None:
                    source.snapshot = _snapshot.decode(state.data)
                    source.fetched_at, source.attempted_at = state.fetched_at, state.attempted_at

    async def _scheduled(self, key: Key) -> None:
        try:
            delay = await self._poll(key, False)
            self._due[key] = time.time() + delay
        finally:
            self._running.discard(key)

    async def _poll(self, key: Key, fresh: bool) -> float:
        delay = await self.poller.poll(key, fresh=fresh)
        self.polls += 1
        await self._flush()
        return delay

    async def _flush(self) -> None:
        """Store what the polls recorded; a failure is logged, and the next poll stores it."""
        async with self._save_lock:
            pending, self._table.pending = self._table.pending, {}
            instances = self.config.upstream.instances()
            for (project, upstream), row in pending.items():
                source = self.poller.sources.get((project, upstream))
                instance = instances.get(upstream)
                state = UpstreamState(
                    project=project, upstream=upstream,
                    kind=instance.kind if instance else "plugin",
                    host=source.host if source else None,
                    data=_encode(row.data) if row.data is not None else None,
                    fetched_at=row.fetched_at, attempted_at=row.attempted_at,
                    error=_encode(row.error) if row.error is not None else None)
                try:
                    await self.storage.save_upstream(state)
                except Exception as exc:
                    log.warning("hub_state_save_failed", project=project, upstream=upstream,
                                error=str(exc))
                    self._table.pending.setdefault((project, upstream), row)


@contextlib.asynccontextmanager
async def hub_polling(config: HubConfig, storage: HubStorage) -> AsyncIterator[HubPoller | None]:
    """The hub's poller, running, while the context lasts; None when the config polls
    nothing. Its conditional requests' cache lives in a private directory of this process."""
    if not config.polls:
        yield None
        return
    directory = tempfile.mkdtemp(prefix="projctl-hub-cache-")
    db = Database(os.path.join(directory, "http-cache.db"))
    try:
        async with httpx.AsyncClient(
                timeout=config.upstream.polling.request_timeout, follow_redirects=True,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32)
        ) as client, anyio.create_task_group() as tasks:
            poller = HubPoller(config, storage, client, HttpCache(db, time.time()))
            tasks.start_soon(poller.run)
            log.info("hub_polling", sources=len(poller.poller.sources), config=config.path)
            try:
                yield poller
            finally:
                tasks.cancel_scope.cancel()
                if poller.leader:
                    await poller.release()
    finally:
        db.close()
        shutil.rmtree(directory, ignore_errors=True)
