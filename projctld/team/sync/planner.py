"""When the next sync attempt is due: pure functions of the sync state, no I/O and no clock."""

from __future__ import annotations

# The first retry after a failure comes this soon, then twice as late each time.
RETRY_BASE = 2.0


def retry_delay(failures: int, *, max_backoff: float, jitter: float) -> float:
    """Exponential backoff after `failures` failed attempts in a row; `jitter` in [0, 1) spreads
    a team's devices so that a hub coming back is not hit by all of them at once."""
    ceiling = min(max_backoff, RETRY_BASE * 2 ** (failures - 1))
    return ceiling * (0.5 + jitter / 2)


def next_attempt(*, last_attempt: float | None, failures: int, nudged_at: float | None,
                 forced: bool, interval: float, debounce: float, max_backoff: float,
                 jitter: float) -> float:
    """The time (same clock as the arguments) at which to attempt the next sync.

    A forced attempt (`projctl sync --now`) is due at once. While the hub fails, attempts back
    off and a new local event does not bring them closer: it waits with the others. Otherwise a
    new local event is sent after `debounce`, so that a burst goes in one push.
    """
    if forced or last_attempt is None:
        return float("-inf")
    if failures:
        return last_attempt + retry_delay(failures, max_backoff=max_backoff, jitter=jitter)
    due = last_attempt + interval
    if nudged_at is not None:
        due = min(due, nudged_at + debounce)
    return due
