"""DORA's four keys (team/delivery.py) on constructed histories whose answers are known."""

from __future__ import annotations

import itertools
import random

import msgspec
import pytest

from projctld.team import delivery
from projctld.team.delivery import DAY
from projctld.team.sync.hlc import pack

NOW = 1_800_000_000.0
HOUR = 3600.0
_ids = itertools.count(1)


def _id() -> str:
    return f"00000000-0000-7000-8000-{next(_ids):012x}"


class History:
    """Rows as both sides select them, built deployment by deployment."""

    def __init__(self) -> None:
        self.rows: list[delivery.Row] = []
        self._seq = itertools.count(1)

    def _row(self, kind: str, at: float, payload: dict, *, device: str = "dev-a",
             user: str | None = "ann") -> None:
        self.rows.append((kind, device, next(self._seq), pack(int(at * 1000)), at, user,
                          msgspec.msgpack.encode(payload)))

    def deploy(self, env: str, finished: float, *, ok: bool = True, took: float = 60.0,
               commit_age: float | None = None, user: str | None = "ann",
               device: str = "dev-a") -> str:
        ident = _id()
        started = {"deployment": ident, "environment": env, "branch": "main", "commit": "abc"}
        if commit_age is not None:
            started["commit_time"] = finished - commit_age
        self._row("deployment.started", finished - took, started, device=device, user=user)
        self._row("deployment.completed" if ok else "deployment.failed", finished,
                  {"deployment": ident, "environment": env, "duration": took,
                   "exit_status": 0 if ok else 1}, device=device, user=user)
        return ident

    def mark(self, ident: str, env: str, at: float, caused: bool = True,
             user: str = "bob") -> None:
        self._row("deployment.marked", at, {"deployment": ident, "environment": env,
                                            "caused_failure": caused, "reason": "rollback"},
                  device="dev-b", user=user)

    def report(self, days: float = 7, env: str | None = None) -> delivery.DeliveryReport:
        rows = [row for row in self.rows if row[3] >= delivery.since_hlc(NOW, days)]
        return delivery.report(delivery.fold(rows), project="web", now=NOW, days=days,
                               environment=env)


def test_no_deployment_is_zero_deployments_and_no_rate_or_time() -> None:
    current = History().report().current
    assert (current.deployments, current.failed, current.per_day) == (0, 0, 0.0)
    assert current.change_failure_rate is None
    assert current.lead_time is None and current.restore_time is None
    assert len(current.buckets) == 7 and all(b.deployments == 0 for b in current.buckets)


def test_deployment_frequency_counts_completed_deployments_of_the_period() -> None:
    history = History()
    for day in range(14):  # one a day for two weeks: 7 in each period
        history.deploy("production", NOW - day * DAY - HOUR)
    history.deploy("production", NOW - 2 * HOUR, ok=False)  # a failure is no deployment
    history.deploy("staging", NOW - 3 * HOUR)

    report = history.report(7, "production")

    assert (report.current.deployments, report.previous.deployments) == (7, 7)
    assert report.current.per_day == pytest.approx(1.0)
    assert report.current.failed == 1
    assert [b.deployments for b in report.current.buckets] == [1] * 7
    assert history.report(7).current.deployments == 8  # every environment
    assert history.report(7).environments == ["production", "staging"]


def test_lead_time_is_the_median_from_commit_to_completed_deployment() -> None:
    history = History()
    for hours in (1, 2, 10):
        history.deploy("production", NOW - DAY, commit_age=hours * HOUR)
    history.deploy("production", NOW - DAY)  # no commit time: not counted
    history.deploy("production", NOW - DAY, commit_age=-HOUR)  # committed after: a clock off
    history.deploy("production", NOW - DAY, ok=False, commit_age=99 * HOUR)  # failed: no change

    current = history.report().current

    assert current.lead_time == 2 * HOUR
    assert (current.lead_times, current.deployments) == (3, 5)


def test_change_failure_rate_is_failed_and_marked_over_all_finished() -> None:
    history = History()
    good = [history.deploy("production", NOW - d * DAY) for d in (1, 2, 3, 4, 5, 6)]
    history.deploy("production", NOW - 2.5 * DAY, ok=False)
    history.deploy("production", NOW - 3.5 * DAY, ok=False)
    history.mark(good[0], "production", NOW - 0.5 * DAY)
    history.mark(good[1], "production", NOW - 0.5 * DAY)
    history.mark(good[1], "production", NOW - 0.4 * DAY, caused=False)  # taken back

    current = history.report().current

    assert (current.deployments, current.failed, current.marked) == (6, 2, 1)
    assert current.change_failure_rate == pytest.approx(3 / 8)


def test_only_failures_is_a_full_failure_rate_and_nothing_restored() -> None:
    history = History()
    for day in (1, 2, 3):
        history.deploy("production", NOW - day * DAY, ok=False)

    current = history.report().current

    assert current.change_failure_rate == 1.0
    assert (current.deployments, current.lead_time) == (0, None)
    assert (current.restore_time, current.restored, current.unrestored) == (None, 0, 3)


def test_time_to_restore_runs_to_the_next_good_deployment_of_that_environment() -> None:
    history = History()
    history.deploy("production", NOW - 3 * DAY, ok=False)
    history.deploy("staging", NOW - 3 * DAY + HOUR)  # another environment restores nothing
    history.deploy("production", NOW - 3 * DAY + 2 * HOUR)  # restored in 2 h
    bad = history.deploy("production", NOW - 2 * DAY)  # completed, later marked
    history.deploy("production", NOW - 2 * DAY + HOUR, ok=False)  # fails again
    history.deploy("production", NOW - 2 * DAY + 5 * HOUR)  # restores both
    history.mark(bad, "production", NOW - 2 * DAY + 30 * 60)

    current = history.report(7, "production").current

    assert current.restored == 3 and current.unrestored == 0
    # 2 h, 5 h (from the marked deployment going out) and 4 h: the median is 4 h.
    assert current.restore_time == 4 * HOUR


def test_a_failure_is_counted_in_its_own_period_even_when_restored_in_the_next() -> None:
    history = History()
    history.deploy("production", NOW - 7 * DAY - 2 * HOUR, ok=False)  # previous period
    history.deploy("production", NOW - 7 * DAY + HOUR)  # restored in this one, 3 h later

    report = history.report(7, "production")

    assert (report.previous.failed, report.previous.restored) == (1, 1)
    assert report.previous.restore_time == 3 * HOUR
    assert (report.current.failed, report.current.restored, report.current.restore_time) == \
        (0, 0, None)
    assert report.current.deployments == 1 and report.current.change_failure_rate == 0.0


def test_an_end_by_another_user_on_another_device_does_not_count() -> None:
    history = History()
    ident = history.deploy("production", NOW - DAY)
    kind, _, seq, hlc, at, _, payload = history.rows[-1]
    # The end is bob's, from his device: only ann (or her device) may end her deployment.
    history.rows[-1] = (kind, "dev-b", seq, hlc, at, "bob", payload)

    (deployment,) = delivery.fold(history.rows)

    assert deployment.deployment == ident and deployment.state == "running"
    assert history.report().current.deployments == 0


def test_the_fold_does_not_depend_on_the_order_of_the_rows() -> None:
    history = History()
    for day in range(20):
        ident = history.deploy(random.choice(["production", "staging"]), NOW - day * DAY / 2,
                               ok=day % 4 != 0, commit_age=day * HOUR)
        if day % 5 == 0:
            history.mark(ident, "production", NOW - day * DAY / 2 + HOUR)
    expected = history.report(7)
    for _ in range(5):
        random.shuffle(history.rows)
        assert history.report(7) == expected


def test_a_deployment_whose_start_is_not_selected_counts_without_its_commit() -> None:
    history = History()
    history.deploy("production", NOW - DAY, took=20 * DAY, commit_age=21 * DAY)

    current = history.report(7).current

    assert current.deployments == 1 and current.lead_times == 0


def test_weeks_are_the_buckets_beyond_a_month() -> None:
    history = History()
    history.deploy("production", NOW - HOUR)
    buckets = history.report(90).current.buckets
    assert len(buckets) == 13
    assert buckets[0].start == NOW - 90 * DAY and buckets[-1].end == NOW
    assert buckets[-1].deployments == 1
