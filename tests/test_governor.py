"""The rate-limit governor: budgets and holds read from GitHub, GitLab and Jira headers."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from projctld.upstream.providers import governor as governor_module
from projctld.upstream.providers.governor import MAX_HOLD, Governor

NOW = 1_700_000_000.0


def response(status: int = 200, **headers: str) -> httpx.Response:
    """A response with `headers`; underscores in the names become dashes."""
    return httpx.Response(status, headers={k.replace("_", "-"): v for k, v in headers.items()})


def http_date(moment: float) -> str:
    return email.utils.formatdate(moment, usegmt=True)


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def github(remaining: int, reset: float, resource: str, limit: int = 5000) -> httpx.Response:
    return response(
        x_ratelimit_limit=str(limit), x_ratelimit_remaining=str(remaining),
        x_ratelimit_reset=str(int(reset)), x_ratelimit_resource=resource,
    )


# GitHub: one budget per x-ratelimit-resource.


def test_github_resources_are_separate_budgets() -> None:
    governor = Governor("api.github.com")
    governor.observe(github(0, NOW + 120, "graphql"), "graphql", NOW)
    governor.observe(github(4000, NOW + 300, "core"), "core", NOW)

    assert governor.budgets["graphql"].remaining == 0
    assert governor.budgets["graphql"].limit == 5000
    assert governor.budgets["graphql"].reset_at == NOW + 120
    assert governor.budgets["core"].remaining == 4000
    assert governor.budgets["core"].reset_at == NOW + 300
    wait, reason = governor.wait_needed("graphql", NOW)
    assert wait == 120
    assert "0 of 5000" in reason
    # The exhausted GraphQL budget does not hold REST requests.
    assert governor.wait_needed("core", NOW) == (0.0, "")


def test_resource_header_overrides_the_callers_resource() -> None:
    governor = Governor("api.github.com")
    governor.observe(github(0, NOW + 60, "graphql"), "core", NOW)

    assert set(governor.budgets) == {"graphql"}
    assert governor.wait_needed("graphql", NOW)[0] == 60
    assert governor.wait_needed("core", NOW) == (0.0, "")


def test_a_later_response_updates_its_budget() -> None:
    governor = Governor("api.github.com")
    governor.observe(github(0, NOW + 60, "core"), "core", NOW)
    governor.observe(github(4999, NOW + 3000, "core"), "core", NOW + 1)

    assert governor.budgets["core"].remaining == 4999
    assert governor.wait_needed("core", NOW + 1) == (0.0, "")


# GitLab: RateLimit-* with an epoch reset.


def test_gitlab_ratelimit_headers() -> None:
    governor = Governor("gitlab.com")
    governor.observe(response(
        RateLimit_Limit="2000", RateLimit_Remaining="5", RateLimit_Reset=str(int(NOW + 45)),
    ), "core", NOW)

    budget = governor.budgets["core"]
    assert (budget.limit, budget.remaining, budget.reset_at) == (2000, 5, NOW + 45)
    assert budget.reserve == 100
    assert governor.wait_needed("core", NOW)[0] == 45


# Jira: X-RateLimit-Reset as an ISO timestamp, and Retry-After.


def test_jira_iso_reset() -> None:
    governor = Governor("acme.atlassian.net")
    governor.observe(response(
        X_RateLimit_Limit="100", X_RateLimit_Remaining="3", X_RateLimit_Reset=iso(NOW + 90),
    ), "core", NOW)

    assert governor.budgets["core"].reset_at == NOW + 90
    assert governor.wait_needed("core", NOW)[0] == 90


def test_jira_iso_reset_with_offset() -> None:
    governor = Governor("acme.atlassian.net")
    reset = datetime.fromtimestamp(NOW + 30, timezone(timedelta(hours=2))).isoformat()
    assert reset.endswith("+02:00")
    governor.observe(response(X_RateLimit_Remaining="0", X_RateLimit_Reset=reset), "core", NOW)

    assert governor.budgets["core"].reset_at == NOW + 30


def test_jira_429_with_retry_after() -> None:
    governor = Governor("acme.atlassian.net")
    governor.observe(response(
        429, X_RateLimit_Remaining="0", X_RateLimit_Reset=iso(NOW + 600), Retry_After="30",
    ), "core", NOW)

    wait, reason = governor.wait_needed("core", NOW)
    assert wait == 30  # the hold comes first ...
    assert "Retry-After: 30" in reason
    assert "acme.atlassian.net" in reason
    # ... then the exhausted budget holds until its reset.
    assert governor.wait_needed("core", NOW + 31)[0] == 600 - 31


# Retry-After, seconds or an HTTP date.


@pytest.mark.parametrize("status", [403, 429, 503])
def test_retry_after_seconds(status: int) -> None:
    governor = Governor("api.github.com")
    governor.observe(response(status, Retry_After="42"), "core", NOW)

    assert governor.wait_needed("core", NOW)[0] == 42
    # A hold applies to every resource of the host.
    assert governor.wait_needed("graphql", NOW)[0] == 42
    assert governor.wait_needed("core", NOW + 42) == (0.0, "")


def test_retry_after_http_date() -> None:
    governor = Governor("api.github.com")
    governor.observe(response(429, Retry_After=http_date(NOW + 75)), "core", NOW)

    assert governor.wait_needed("core", NOW)[0] == 75


def test_retry_after_date_in_the_past_does_not_hold() -> None:
    governor = Governor("api.github.com")
    governor.observe(response(503, Retry_After=http_date(NOW - 75)), "core", NOW)

    assert governor.wait_needed("core", NOW) == (0.0, "")


def test_retry_after_on_a_success_does_not_hold() -> None:
    governor = Governor("api.github.com")
    governor.observe(response(200, Retry_After="120"), "core", NOW)

    assert governor.wait_needed("core", NOW) == (0.0, "")


def test_429_without_retry_after_holds_a_minute_or_a_bit_more() -> None:
    governor = Governor("gitlab.com")
    governor.observe(response(429), "core", NOW)

    wait, reason = governor.wait_needed("core", NOW)
    assert 60.0 <= wait <= 90.0
    assert reason == "gitlab.com answered 429"


@pytest.mark.parametrize("factor", [1.0, 1.5])
def test_429_jitter_bounds(monkeypatch: pytest.MonkeyPatch, factor: float) -> None:
    """The jitter is drawn from [1.0, 1.5], so the hold is 60-90 s."""
    bounds: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        bounds.append((low, high))
        return factor

    monkeypatch.setattr(governor_module.random, "uniform", uniform)
    governor = Governor("gitlab.com")
    governor.observe(response(429), "core", NOW)

    assert bounds == [(1.0, 1.5)]
    assert governor.wait_needed("core", NOW)[0] == 60.0 * factor


def test_403_without_retry_after_does_not_hold() -> None:
    governor = Governor("api.github.com")
    governor.observe(response(403), "core", NOW)

    assert governor.wait_needed("core", NOW) == (0.0, "")


# The reserve: max(MIN_RESERVE, 5 % of the limit).


@pytest.mark.parametrize(
    ("limit", "remaining", "holds"),
    [
        (5000, 250, True),  # 5 % of 5000
        (5000, 251, False),
        (5000, 0, True),
        (100, 10, True),  # 5 % of 100 is 5: the minimum of 10 applies
        (100, 11, False),
        (60, 10, True),
        (60, 11, False),
    ],
)
def test_reserve(limit: int, remaining: int, holds: bool) -> None:
    governor = Governor("api.github.com")
    governor.observe(github(remaining, NOW + 500, "core", limit=limit), "core", NOW)

    wait, reason = governor.wait_needed("core", NOW)
    if holds:
        assert wait == 500
        assert f"{remaining} of {limit} requests left" in reason
        assert f"reserve of {max(10, limit // 20)}" in reason
    else:
        assert (wait, reason) == (0.0, "")


def test_reserve_without_a_limit_is_the_minimum() -> None:
    governor = Governor("gitlab.com")
    governor.observe(response(RateLimit_Remaining="10", RateLimit_Reset=str(int(NOW + 5))),
                     "core", NOW)

    assert governor.wait_needed("core", NOW)[0] == 5


def test_reserve_holds_only_until_the_reset() -> None:
    governor = Governor("api.github.com")
    governor.observe(github(0, NOW + 500, "core"), "core", NOW)

    assert governor.wait_needed("core", NOW + 499)[0] == 1
    assert governor.wait_needed("core", NOW + 500) == (0.0, "")
    assert governor.wait_needed("core", NOW + 501) == (0.0, "")


def test_low_remaining_without_a_reset_does_not_hold() -> None:
    governor = Governor("api.github.com")
    governor.observe(response(x_ratelimit_limit="5000", x_ratelimit_remaining="0"), "core", NOW)

    assert governor.wait_needed("core", NOW) == (0.0, "")


# The server's clock, from its Date header.


def test_server_clock_ahead_shifts_the_reset_into_our_clock() -> None:
    governor = Governor("api.github.com")
    server_now = NOW + 600  # the server's clock is 10 minutes ahead of ours
    governor.observe(response(
        date=http_date(server_now), x_ratelimit_limit="5000", x_ratelimit_remaining="0",
        x_ratelimit_reset=str(int(server_now + 60)),
    ), "core", NOW)

    assert governor.budgets["core"].reset_at == NOW + 60
    assert governor.wait_needed("core", NOW)[0] == 60


def test_server_clock_behind_shifts_the_reset_into_our_clock() -> None:
    governor = Governor("api.github.com")
    server_now = NOW - 600
    governor.observe(response(
        date=http_date(server_now), x_ratelimit_remaining="0",
        x_ratelimit_reset=str(int(server_now + 60)),
    ), "core", NOW)

    assert governor.budgets["core"].reset_at == NOW + 60


def test_retry_after_date_is_read_on_the_servers_clock() -> None:
    governor = Governor("api.github.com")
    server_now = NOW + 600
    governor.observe(response(429, date=http_date(server_now),
                              retry_after=http_date(server_now + 20)), "core", NOW)

    assert governor.wait_needed("core", NOW)[0] == 20


def test_a_one_second_difference_is_ignored() -> None:
    governor = Governor("api.github.com")
    server_now = NOW + 1
    governor.observe(response(
        date=http_date(server_now), x_ratelimit_remaining="0",
        x_ratelimit_reset=str(int(server_now + 60)),
    ), "core", NOW)

    # Taken as is: 61 s on our clock, not shifted by the second.
    assert governor.budgets["core"].reset_at == NOW + 61


# MAX_HOLD caps what a header can make us wait.


def test_retry_after_of_ten_days_is_capped() -> None:
    governor = Governor("api.github.com")
    governor.observe(response(429, Retry_After=str(10 * 86400)), "core", NOW)

    assert governor.wait_needed("core", NOW)[0] == MAX_HOLD


def test_retry_after_date_ten_days_ahead_is_capped() -> None:
    governor = Governor("api.github.com")
    governor.observe(response(429, Retry_After=http_date(NOW + 10 * 86400)), "core", NOW)

    assert governor.wait_needed("core", NOW)[0] == MAX_HOLD


def test_reset_ten_days_ahead_is_capped() -> None:
    governor = Governor("api.github.com")
    governor.observe(github(0, NOW + 10 * 86400, "core"), "core", NOW)

    assert governor.budgets["core"].reset_at == NOW + MAX_HOLD
    assert governor.wait_needed("core", NOW)[0] == MAX_HOLD


# Garbage is ignored.


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-limit": "lots", "x-ratelimit-remaining": "few"},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "tomorrow"},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "2024-13-45T99:00:00"},
        {"ratelimit-remaining": "", "ratelimit-reset": ""},
        {"date": "Mon, 01 Jan 0001 00:00:00 GMT"},
        {"retry-after": "soon"},
        {"retry-after": ""},
        {"retry-after": "Wed, 99 Foo 2024 99:99:99 GMT"},
        {"retry-after": "Mon, 01 Jan 99999 00:00:00 GMT"},
    ],
)
def test_garbage_headers_are_ignored(headers: dict[str, str]) -> None:
    ok = Governor("api.github.com")
    ok.observe(httpx.Response(200, headers=headers), "core", NOW)
    limited = Governor("api.github.com")
    limited.observe(httpx.Response(429, headers=headers), "core", NOW)

    assert ok.wait_needed("core", NOW) == (0.0, "")
    assert all(budget.limit is None for budget in ok.budgets.values())
    # A 429 whose Retry-After cannot be read is held as one without it.
    wait, reason = limited.wait_needed("graphql", NOW)
    assert 60.0 <= wait <= 90.0
    assert reason == "api.github.com answered 429"


def test_garbage_date_means_no_skew_correction() -> None:
    governor = Governor("api.github.com")
    governor.observe(response(date="not a date", x_ratelimit_remaining="0",
                              x_ratelimit_reset=str(int(NOW + 60))), "core", NOW)

    assert governor.wait_needed("core", NOW)[0] == 60


def test_garbage_limit_keeps_the_readable_remaining() -> None:
    governor = Governor("api.github.com")
    governor.observe(response(x_ratelimit_limit="many", x_ratelimit_remaining="7",
                              x_ratelimit_reset=str(int(NOW + 30))), "core", NOW)

    budget = governor.budgets["core"]
    assert (budget.limit, budget.remaining, budget.reset_at) == (None, 7, NOW + 30)


@pytest.mark.parametrize("value", ["inf", "1e999"])
def test_infinite_counts_are_ignored(value: str) -> None:
    governor = Governor("api.github.com")
    governor.observe(response(x_ratelimit_limit=value, x_ratelimit_remaining=value), "core", NOW)

    assert governor.wait_needed("core", NOW) == (0.0, "")


def test_nan_retry_after_on_429_is_held_like_a_missing_one() -> None:
    governor = Governor("api.github.com")
    governor.observe(response(429, retry_after="nan"), "core", NOW)

    assert 60.0 <= governor.wait_needed("core", NOW)[0] <= 90.0


# hold() never shortens an existing hold.


def test_hold_never_shortens() -> None:
    governor = Governor("api.github.com")
    governor.hold(100, NOW, "long")
    governor.hold(10, NOW, "short")
    governor.hold(50, NOW + 40, "ends earlier too")

    assert governor.wait_needed("core", NOW) == (100, "long")


def test_hold_extends() -> None:
    governor = Governor("api.github.com")
    governor.hold(10, NOW, "short")
    governor.hold(100, NOW, "long")

    assert governor.wait_needed("core", NOW) == (100, "long")


def test_a_shorter_retry_after_does_not_shorten_a_hold() -> None:
    governor = Governor("api.github.com")
    governor.observe(response(429, Retry_After="300"), "core", NOW)
    governor.observe(response(429, Retry_After="5"), "core", NOW + 1)

    wait, reason = governor.wait_needed("core", NOW + 1)
    assert wait == 299
    assert "Retry-After: 300" in reason
