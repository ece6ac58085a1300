"""Recording an event on this device: stamp it, store and fold it, and tell the sync runner."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from projctld.errors import ProjctlError
from projctld.store.events import EventStore, EventTooLarge
from projctld.team.sync.events import PAYLOADS, Event, name_problem
from projctld.team.sync.hlc import HybridClock
from projctld.team.sync.runner import SyncRunner
from projctld.team.sync.wire import MAX_EVENT


class Journal:
    def __init__(self, store: EventStore, clock: HybridClock, runner: SyncRunner, actor: str,
                 *, wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._runner = runner
        self.actor = actor
        self._wall = wall

    def record(self, project: str, type: str, payload: msgspec.Struct | dict[str, Any], *,
               after_hlc: int = 0) -> Event:
        """Stored on disk before this returns, so nothing is lost if the hub is unreachable.

        A payload outside its type's schema (a NUL in a note, an infinite duration: the RPC
        protocol lets both through) is refused here: stored, it could not be folded, and the hub
        would refuse every push that carried it. With `after_hlc`, the event is stamped after
        that HLC: an edit sorts after the text it replaces, however slow this clock is."""
        try:
            msgspec.convert(msgspec.to_builtins(payload), PAYLOADS.get(type, dict))
        except msgspec.ValidationError as exc:
            raise ProjctlError(f"cannot record this {type} event: {exc}",
                               code="bad_request") from None
        problem = name_problem(self.actor)
        if problem is not None:
            raise ProjctlError(f"cannot record events as {self.actor!r}: {problem}",
                               code="bad_actor",
                               suggestions=['set actor = "YOUR NAME" in [sync] of the config, '
                                            "then projctl daemon restart"])
        self._clock.receive(after_hlc)
        try:
            event = self.store.append(project=project, actor=self.actor, type=type,
                                      payload=payload, hlc=self._clock.now(), now=self._wall())
        except EventTooLarge as exc:
            raise ProjctlError(
                f"cannot record this {type} event: {exc} (the hub would refuse it, and every "
                "teammate's projctl too)", code="too_large",
                suggestions=[f"shorten it: an event holds at most {MAX_EVENT // 1024} KiB, "
                             "and a note's text at most 4,000 characters"]) from None
        self._runner.nudge()
        return event
