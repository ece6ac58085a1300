"""Recording an event on this device: stamp it, store and fold it, and tell the sync runner."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from projctld.errors import ProjctlError
from projctld.store.events import EventStore
from projctld.team.sync.events import PAYLOADS, Event
from projctld.team.sync.hlc import HybridClock
from projctld.team.sync.runner import SyncRunner


class Journal:
    def __init__(self, store: EventStore, clock: HybridClock, runner: SyncRunner, actor: str,
                 *, wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._runner = runner
        self.actor = actor
        self._wall = wall

    def record(self, project: str, type: str, payload: msgspec.Struct) -> Event:
        """Stored on disk before this returns, so nothing is lost if the hub is unreachable.

        A payload outside its type's schema (a NUL in a note, an infinite duration: the RPC
        protocol lets both through) is refused here: stored, it could not be folded, and the hub
        would refuse every push that carried it."""
        try:
            msgspec.convert(msgspec.to_builtins(payload), PAYLOADS.get(type, dict))
        except msgspec.ValidationError as exc:
            raise ProjctlError(f"cannot record this {type} event: {exc}",
                               code="bad_request") from None
        event = self.store.append(project=project, actor=self.actor, type=type,
                                  payload=payload, hlc=self._clock.now(), now=self._wall())
        self._runner.nudge()
        return event
