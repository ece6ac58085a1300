"""Recording an event on this device: stamp it, store and fold it, and tell the sync runner."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from projctld.store.events import EventStore
from projctld.sync.events import Event
from projctld.sync.hlc import HybridClock
from projctld.sync.runner import SyncRunner


class Journal:
    def __init__(self, store: EventStore, clock: HybridClock, runner: SyncRunner, actor: str,
                 *, wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._runner = runner
        self.actor = actor
        self._wall = wall

    def record(self, project: str, type: str, payload: msgspec.Struct) -> Event:
        """Stored on disk before this returns, so nothing is lost if the hub is unreachable."""
        event = self.store.append(project=project, actor=self.actor, type=type,
                                  payload=payload, hlc=self._clock.now(), now=self._wall())
        self._runner.nudge()
        return event
