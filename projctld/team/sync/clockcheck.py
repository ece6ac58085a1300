"""Whose clock is wrong, this device's or the hub's: from the hub's `Date` against this clock,
and from what the hub says of the clocks of all the devices it hears from."""

from __future__ import annotations

from dataclasses import dataclass

# Below this, a difference is the noise of the request's travel and of Date's whole seconds.
TOLERANCE = 30.0


@dataclass(frozen=True)
class ClockReading:
    """`device_ahead`: seconds this device's clock runs ahead of the hub's (negative: behind).
    `hub_behind`: seconds the hub's clock runs behind the devices it hears from, as the hub
    says once two of them agree (negative: ahead); None when it cannot tell."""

    device_ahead: float
    hub_behind: float | None


@dataclass(frozen=True)
class ClockProblem:
    code: str  # device_clock, hub_clock, clock_disagreement
    message: str
    suggestions: list[str]


_FIX_HERE = ["sudo timedatectl set-ntp true  # then `timedatectl` says: System clock "
             "synchronized: yes"]
_FIX_HUB = ["ask the hub's operator to synchronise the hub machine's clock (sudo timedatectl "
            "set-ntp true there)"]


def _how(seconds: float, ahead: str, behind: str) -> str:
    return f"{abs(seconds):.0f} s {ahead if seconds > 0 else behind}"


def judge(reading: ClockReading) -> ClockProblem | None:
    """What is wrong with the clocks, said so that the right person fixes the right one."""
    if reading.hub_behind is None:
        if abs(reading.device_ahead) <= TOLERANCE:
            return None
        return ClockProblem(
            "clock_disagreement",
            "this device's clock and the hub's differ by "
            f"{_how(reading.device_ahead, 'this one ahead', 'this one behind')}; no other "
            "device has told the hub its time lately, so which one is wrong cannot be told",
            [*_FIX_HERE, *_FIX_HUB])
    against_team = reading.device_ahead - reading.hub_behind
    if abs(against_team) > TOLERANCE:
        return ClockProblem(
            "device_clock",
            f"this device's clock runs {_how(against_team, 'fast', 'slow')} against the "
            "hub's devices (and the hub corrected for its own clock)", _FIX_HERE)
    if abs(reading.hub_behind) > TOLERANCE:
        return ClockProblem(
            "hub_clock",
            f"the hub's clock runs {_how(reading.hub_behind, 'slow', 'fast')} against its "
            "devices, this one included; the hub corrects for it meanwhile", _FIX_HUB)
    return None
