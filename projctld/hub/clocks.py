"""The hub's view of its devices' clocks: whether its own clock, not theirs, is the wrong one.

Each authenticated request names its device and that device's wall clock. When at least two
devices heard from recently agree with each other and not with the hub, the hub's own clock is
the one off, by the median of their offsets: the hub then judges events by its clock corrected
by that much (never by more than MAX_CORRECTION), says so in every reply and in /metrics, and
logs it. One device alone cannot outvote the hub: whose clock is wrong is then not known, and
the device is told so.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import OrderedDict
from collections.abc import Callable

# Offsets below this are the noise of a request's travel and of the Date header's seconds.
TOLERANCE = 30.0
# Readings older than this are forgotten: a device that left says nothing about the hub now.
FRESH = 900.0
# At most this many devices are remembered (the least recently heard from goes first).
MAX_DEVICES = 1024
# However many devices agree, the hub never moves its clock by more than this.
MAX_CORRECTION = 3600.0


class DeviceClocks:
    def __init__(self, *, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._readings: OrderedDict[str, tuple[float, float]] = OrderedDict()
        # offset() is asked at every request: worked out again at most once a second.
        self._cached: tuple[float, float | None] = (-math.inf, None)

    def heard(self, device: str, device_time: float) -> None:
        """`device` said its clock reads `device_time` now (seconds, as a header string)."""
        if not math.isfinite(device_time):
            return
        now = self._wall()
        fresh = device not in self._readings
        self._readings[device] = (device_time - now, now)
        self._readings.move_to_end(device)
        if fresh:  # a new voice may change the verdict at once
            self._cached = (-math.inf, None)
        while len(self._readings) > MAX_DEVICES:
            self._readings.popitem(last=False)

    def offset(self) -> float | None:
        """How far the hub's clock runs behind its devices' (seconds; negative when ahead),
        when at least two fresh devices agree on it within TOLERANCE; else None. Offsets
        within TOLERANCE of zero are 0.0: the hub's clock is right."""
        now = self._wall()
        if now - self._cached[0] < 1.0:
            return self._cached[1]
        self._cached = (now, self._offset(now))
        return self._cached[1]

    def _offset(self, now: float) -> float | None:
        while self._readings:
            _, (_, heard_at) = next(iter(self._readings.items()))
            if now - heard_at <= FRESH:
                break
            self._readings.popitem(last=False)
        offsets = [offset for offset, _ in self._readings.values()]
        if len(offsets) < 2:
            return None
        median = statistics.median(offsets)
        if sum(abs(offset - median) <= TOLERANCE for offset in offsets) < 2:
            return None
        if abs(median) <= TOLERANCE:
            return 0.0
        return max(-MAX_CORRECTION, min(MAX_CORRECTION, median))

    def devices(self) -> int:
        return len(self._readings)
