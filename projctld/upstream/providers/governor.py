"""The rate-limit governor of one upstream host: read the limit headers, hold requests when told.

GitHub sends `x-ratelimit-*` (one budget per `x-ratelimit-resource`), GitLab `RateLimit-*`, Jira
`X-RateLimit-*` with an ISO reset time; all three send `Retry-After` with 429 (GitHub also with
403 for its secondary limits). Reset times are the server's clock; the `Date` header tells how
far ours is off, so a skewed laptop clock neither hammers nor stalls.
"""

from __future__ import annotations

import email.utils
import math
import random
from dataclasses import dataclass
from datetime import datetime

import anyio
import httpx

# Never spend the last part of a budget: the user's own gh/glab and scripts share it.
RESERVE_FRACTION = 0.05
MIN_RESERVE = 10
# Holds longer than this are reported at once instead of being waited out inside a poll.
MAX_INLINE_WAIT = 5.0
# A Retry-After or reset further away than this is treated as this (a bad header must not
# silence an upstream for days).
MAX_HOLD = 3600.0


@dataclass
class Budget:
    """One rate-limit budget as the last response described it."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None  # our clock

    @property
    def reserve(self) -> int:
        return max(MIN_RESERVE, int((self.limit or 0) * RESERVE_FRACTION))

    def exhausted(self, now: float) -> bool:
        return (
            self.remaining is not None and self.remaining <= self.reserve
            and self.reset_at is not None and self.reset_at > now
        )


class Governor:
    """Decides when the next request to one host may go; shared by every poll of that host."""

    def __init__(self, host: str, concurrency: int = 16) -> None:
        self.host = host
        self.budgets: dict[str, Budget] = {}
        self.hold_until = 0.0
        self.hold_reason = ""
        # Many parallel requests trip GitHub's secondary limits; a few keep a cold poll quick.
        self._slots = anyio.Semaphore(concurrency)

    def wait_needed(self, resource: str, now: float) -> tuple[float, str]:
        """Seconds until a request for `resource` may be sent, and why (0 when it may go now)."""
        if self.hold_until > now:
            return self.hold_until - now, self.hold_reason
        budget = self.budgets.get(resource)
        if budget is not None and budget.exhausted(now):
            return budget.reset_at - now, (  # type: ignore[operator]
                f"{budget.remaining} of {budget.limit} requests left, keeping a reserve of "
                f"{budget.reserve} until the budget resets"
            )
        return 0.0, ""

    def slot(self) -> anyio.Semaphore:
        return self._slots

    def observe(self, response: httpx.Response, resource: str, now: float) -> None:
        """Learn the budget and any hold from a response's headers."""
        headers = response.headers
        skew = _server_clock_offset(headers, now)
        resource = headers.get("x-ratelimit-resource", resource)
        limit = _int(headers, "x-ratelimit-limit", "ratelimit-limit")
        remaining = _int(headers, "x-ratelimit-remaining", "ratelimit-remaining")
        if limit is not None or remaining is not None:
            budget = self.budgets.setdefault(resource, Budget())
            budget.limit = limit if limit is not None else budget.limit
            budget.remaining = remaining
            reset = _reset_time(headers)
            if reset is not None:
                budget.reset_at = min(reset - skew, now + MAX_HOLD)
        retry_after = _retry_after(headers, now + skew)
        if retry_after is not None and response.status_code in (403, 429, 503):
            self.hold(min(retry_after, MAX_HOLD), now, f"{self.host} asked us to wait "
                      f"(Retry-After: {headers.get('retry-after')})")
        elif response.status_code == 429:
            # Told to slow down without being told how long: a minute, with jitter.
            self.hold(60.0 * random.uniform(1.0, 1.5), now, f"{self.host} answered 429")

    def hold(self, seconds: float, now: float, reason: str) -> None:
        if now + seconds > self.hold_until:
            self.hold_until = now + seconds
            self.hold_reason = reason


def _int(headers: httpx.Headers, *names: str) -> int | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            try:
                number = float(value)
            except ValueError:
                return None
            return int(number) if math.isfinite(number) else None
    return None


def _reset_time(headers: httpx.Headers) -> float | None:
    """The reset moment on the server's clock: epoch seconds (GitHub, GitLab) or ISO (Jira)."""
    value = headers.get("x-ratelimit-reset") or headers.get("ratelimit-reset")
    if not value:
        return None
    try:
        reset = float(value)
    except ValueError:
        pass
    else:
        return reset if math.isfinite(reset) else None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _retry_after(headers: httpx.Headers, server_now: float) -> float | None:
    """Retry-After as seconds from now: either a number of seconds or an HTTP date."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - server_now)
    except (TypeError, ValueError):
        return None


def _server_clock_offset(headers: httpx.Headers, now: float) -> float:
    """How far the server's clock is ahead of ours, from its Date header (0 without one)."""
    value = headers.get("date")
    if not value:
        return 0.0
    try:
        offset = email.utils.parsedate_to_datetime(value).timestamp() - now
    except (TypeError, ValueError):
        return 0.0
    # Date has whole seconds and the response took time to arrive: ignore small differences.
    return offset if abs(offset) > 2.0 else 0.0
