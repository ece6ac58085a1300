"""The hybrid logical clock: wall-clock milliseconds and a counter packed in one sortable int.

An HLC value is `(milliseconds << 16) | counter`. It never goes backwards, it moves past every
event it receives (the HLC receive rule: an edit made here sorts after everything this device
has seen, however slow its clock), and it follows the hub's own clock only when that is not too
far ahead of its wall clock. Events only reach a device through the hub, which refuses those
stamped far ahead of its clock, so receiving cannot drag a device far into the future.
"""

from __future__ import annotations

import time
from collections.abc import Callable

COUNTER_BITS = 16
_COUNTER_MASK = (1 << COUNTER_BITS) - 1
# A remote clock further ahead than this is not followed: one broken clock must not drag
# every replica into the future.
MAX_DRIFT = 300.0


def pack(ms: int, counter: int = 0) -> int:
    return (ms << COUNTER_BITS) | counter


def physical_seconds(hlc: int) -> float:
    """The wall-clock part of an HLC value, in Unix seconds."""
    return (hlc >> COUNTER_BITS) / 1000


def ahead_of(hlc: int, now: float) -> float:
    """How many seconds `hlc` is ahead of the wall clock `now` (negative when behind)."""
    return physical_seconds(hlc) - now


class ClockAhead(ValueError):
    """A remote clock is further ahead of ours than MAX_DRIFT."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"a clock {seconds:.0f} s ahead of this machine's was refused")
        self.seconds = seconds


class HybridClock:
    def __init__(self, last: int = 0, *, wall: Callable[[], float] = time.time,
                 max_drift: float = MAX_DRIFT) -> None:
        self.last = last
        self._wall = wall
        self.max_drift = max_drift

    def now(self) -> int:
        """A new value for a local event: greater than every value seen so far."""
        wall = pack(int(self._wall() * 1000))
        self.last = wall if wall > self.last else self._tick(self.last)
        return self.last

    def observe(self, remote: int) -> None:
        """Move past a remote clock; raise ClockAhead (and stay put) if it is too far ahead."""
        ahead = ahead_of(remote, self._wall())
        if ahead > self.max_drift:
            raise ClockAhead(ahead)
        if remote > self.last:
            self.last = remote

    def receive(self, event_hlc: int) -> None:
        """Move past an event received from the hub, however far ahead of this wall clock."""
        if event_hlc > self.last:
            self.last = event_hlc

    def ran_away(self, limit: float) -> bool:
        """Whether this clock is more than `limit` seconds ahead of the wall clock: only a
        wall clock that jumped ahead and back leaves it so (receiving cannot)."""
        return ahead_of(self.last, self._wall()) > limit

    def settle(self, value: int) -> None:
        """Bring a clock that ran away back to `value`, once no event stamped by it is left
        unsent (they were stamped again): from then on it follows the wall clock again."""
        self.last = min(self.last, value)

    @staticmethod
    def _tick(value: int) -> int:
        # The counter would overflow after 65,535 events in one millisecond: borrow the next one.
        if value & _COUNTER_MASK == _COUNTER_MASK:
            return pack((value >> COUNTER_BITS) + 1)
        return value + 1
