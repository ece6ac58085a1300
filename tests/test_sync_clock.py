"""The hybrid logical clock and the sync planner: pure logic, tested with chosen clocks."""

from __future__ import annotations

import pytest

from projctld.team.sync import hlc, planner
from projctld.team.sync.hlc import ClockAhead, HybridClock


def test_values_grow_even_when_the_wall_clock_stands_still_or_goes_back() -> None:
    wall = [1000.0]
    clock = HybridClock(wall=lambda: wall[0])
    first = clock.now()
    second = clock.now()
    wall[0] = 999.0  # NTP stepped the clock back
    third = clock.now()
    assert first < second < third
    assert hlc.physical_seconds(third) == 1000.0


def test_the_counter_borrows_the_next_millisecond_instead_of_overflowing() -> None:
    clock = HybridClock(hlc.pack(5, (1 << hlc.COUNTER_BITS) - 1), wall=lambda: 0.0)
    assert clock.now() == hlc.pack(6, 0)


def test_observing_moves_past_a_remote_clock_so_effects_sort_after_causes() -> None:
    wall = [1000.0]
    clock = HybridClock(wall=lambda: wall[0])
    remote = hlc.pack(1_010_000, 7)  # ten seconds ahead, within the drift allowed
    clock.observe(remote)
    assert clock.now() > remote


def test_a_remote_clock_too_far_ahead_is_refused_and_not_followed() -> None:
    clock = HybridClock(wall=lambda: 1000.0)
    before = clock.now()
    with pytest.raises(ClockAhead) as caught:
        clock.observe(hlc.pack(int((1000 + hlc.MAX_DRIFT + 60) * 1000)))
    assert caught.value.seconds == pytest.approx(hlc.MAX_DRIFT + 60)
    assert clock.now() == before + 1


def test_backoff_doubles_up_to_the_ceiling_and_jitter_only_shortens() -> None:
    delays = [planner.retry_delay(n, max_backoff=60, jitter=0.999999) for n in range(1, 8)]
    assert delays[:5] == pytest.approx([2, 4, 8, 16, 32], rel=1e-5)
    assert delays[5:] == pytest.approx([60, 60], rel=1e-5)
    assert planner.retry_delay(3, max_backoff=60, jitter=0.0) == 4.0


def _next(**overrides: object) -> float:
    arguments = {"last_attempt": 100.0, "failures": 0, "nudged_at": None, "forced": False,
                 "interval": 30.0, "debounce": 0.5, "max_backoff": 300.0, "jitter": 0.0}
    return planner.next_attempt(**{**arguments, **overrides})  # type: ignore[arg-type]


def test_the_plan_syncs_at_once_first_then_on_interval_and_soon_after_a_local_event() -> None:
    assert _next(last_attempt=None) == float("-inf")
    assert _next() == 130.0
    assert _next(nudged_at=110.0) == 110.5
    assert _next(forced=True, failures=5) == float("-inf")


def test_while_the_hub_fails_a_local_event_waits_for_the_backoff() -> None:
    assert _next(failures=3, nudged_at=101.0) == 104.0
