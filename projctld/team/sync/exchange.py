"""One sync exchange with the hub: push what waits here, then pull each project's new events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from projctld.logging import get_logger
from projctld.store.events import EventStore
from projctld.team.sync import wire
from projctld.team.sync.events import Event
from projctld.team.sync.hlc import ClockAhead, HybridClock

log = get_logger(__name__)
PUSH_BATCH = 500
PULL_PAGE = 500


class Hub(Protocol):
    """What the exchange needs of a hub: HubClient over HTTP, or a test double over storage."""

    clock: int  # the hub's clock from its latest reply

    async def push(self, events: Sequence[Event]) -> wire.PushReply: ...

    async def pull(self, project: str, after: int, limit: int, wait: float = 0.0
                   ) -> wire.PullReply: ...


@dataclass
class Exchanged:
    pushed: int = 0
    pulled: int = 0


async def sync_once(store: EventStore, hub: Hub, clock: HybridClock,
                    projects: Sequence[str]) -> Exchanged:
    """Push, then pull every project to its end. Safe to interrupt at any await: a push the
    hub took but we did not hear of is pushed again (a duplicate), and a pulled page is stored
    with its cursor in one transaction."""
    done = Exchanged()
    done.pushed = await push_waiting(store, hub, clock)
    for project in projects:
        done.pulled += await pull_project(store, hub, clock, project)
    return done


async def push_waiting(store: EventStore, hub: Hub, clock: HybridClock) -> int:
    pushed = 0
    while batch := store.waiting(PUSH_BATCH):
        await hub.push(batch)
        store.mark_pushed([event.seq for event in batch])
        _observe(clock, hub.clock)
        pushed += len(batch)
    return pushed


async def pull_project(store: EventStore, hub: Hub, clock: HybridClock, project: str, *,
                       wait: float = 0.0) -> int:
    """Pull pages until the hub has no more; with `wait`, the first pull may wait that long
    for something new (a long poll)."""
    pulled = 0
    while True:
        page = await hub.pull(project, store.cursor(project), PULL_PAGE, wait)
        pulled += store.store_pulled(project, page.events, page.next_after)
        _observe(clock, hub.clock)
        if page.events:
            _observe(clock, max(event.hlc for event in page.events))
        if not page.more:
            return pulled
        wait = 0.0


def _observe(clock: HybridClock, remote: int) -> None:
    try:
        clock.observe(remote)
    except ClockAhead as exc:
        # Not followed, so one wrong clock cannot drag this device's events into the future.
        log.warning("remote_clock_ahead", seconds=round(exc.seconds))
