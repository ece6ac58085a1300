"""Delivery metrics (DORA's four keys) from deployment events: one computation for the hub's
pages and for `projctl report`, so that both say the same of the same events.

Both sides select the same rows (DEPLOY_TYPES of one project stamped since `since_hlc`), as
`Row` tuples: the hub from its database, a device from its own log. `fold` makes deployments of
them by the rules of team/sync/fold.py, `report` measures them. docs/metrics.md defines each key.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from projctl_client.protocol import DeliveryBucket, DeliveryPeriod, DeliveryReport
from projctld.logging import get_logger
from projctld.team.sync.events import DeploymentFinished, DeploymentMarked, DeploymentStarted
from projctld.team.sync.hlc import pack

log = get_logger(__name__)

DAY = 86400.0
DEPLOY_TYPES = ("deployment.started", "deployment.completed", "deployment.failed",
                "deployment.marked")
# Events are selected by their stamp from this long before the previous period begins: a
# deployment that started longer before its end than this is counted without its start (its
# commit, and so its lead time, unknown). Both sides select alike, so both say the same.
SLACK = DAY
# Reports span at least an hour and at most a year (and their period before).
MIN_DAYS, MAX_DAYS = 1 / 24, 365.0
# Buckets of a chart: a day each up to a month, a week each beyond.
DAILY_UP_TO = 31.0

# (type, device, seq, hlc, created_at, user or None, msgpack payload)
Row = tuple[str, str, int, int, float, "str | None", bytes]

_DECODERS = {
    "deployment.started": msgspec.msgpack.Decoder(DeploymentStarted),
    "deployment.completed": msgspec.msgpack.Decoder(DeploymentFinished),
    "deployment.failed": msgspec.msgpack.Decoder(DeploymentFinished),
    "deployment.marked": msgspec.msgpack.Decoder(DeploymentMarked),
}


@dataclass
class Deployment:
    """One deployment as its events tell it (the fold's rules). `user` is who the hub says
    started it (else who ended it; None when no hub said); times are the recording device's."""

    deployment: str
    environment: str
    state: str = "running"  # running, completed, failed
    user: str | None = None
    branch: str | None = None
    commit: str | None = None
    commit_time: float | None = None
    change_request: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    exit_status: int | None = None
    reason: str = ""
    caused_failure: bool = False
    marked_by: str | None = None
    mark_reason: str = ""
    key: tuple[int, str, int] = (0, "", 0)  # the deciding start's, else the final's

    @property
    def failure(self) -> bool:
        """Failed, or completed and marked as causing a failure."""
        return self.state == "failed" or (self.state == "completed" and self.caused_failure)


def since_hlc(now: float, days: float) -> int:
    """The stamp from which rows are selected for a report of `days` ending at `now`."""
    return pack(max(0, int((now - 2 * days * DAY - SLACK) * 1000)))


def fold(rows: Iterable[Row]) -> list[Deployment]:
    """Deployments from their events, whatever order the rows come in: the earliest start in
    (hlc, device, seq) order; the earliest end among those by the start's device or user (any
    end while the start is unknown); the latest mark."""
    starts: dict[str, tuple[tuple, str | None, float, DeploymentStarted]] = {}
    finals: dict[str, list[tuple[tuple, str | None, float, str, DeploymentFinished]]] = {}
    marks: dict[str, tuple[tuple, str | None, DeploymentMarked]] = {}
    for kind, device, seq, hlc, created_at, user, payload in rows:
        decoder = _DECODERS.get(kind)
        if decoder is None:
            continue
        try:
            value = decoder.decode(payload)
        except (msgspec.DecodeError, UnicodeDecodeError):
            # The hub refuses these; only a broken peer can have written one (as fold.py).
            log.warning("deployment_event_not_read", device=device, seq=seq)
            continue
        key = (hlc, device, seq)
        if isinstance(value, DeploymentStarted):
            held = starts.get(value.deployment)
            if held is None or key < held[0]:
                starts[value.deployment] = (key, user, created_at, value)
        elif isinstance(value, DeploymentFinished):
            finals.setdefault(value.deployment, []).append(
                (key, user, created_at, kind.removeprefix("deployment."), value))
        else:
            held_mark = marks.get(value.deployment)
            if held_mark is None or key > held_mark[0]:
                marks[value.deployment] = (key, user, value)
    found = []
    for ident in starts.keys() | finals.keys():
        start = starts.get(ident)
        ends = sorted(finals.get(ident, ()), key=lambda end: end[0])
        if start is not None:
            ends = [end for end in ends if _may_end(start, end)]
        final = ends[0] if ends else None
        deployment = Deployment(deployment=ident, environment="")
        if start is not None:
            key, user, created_at, started = start
            deployment.environment = started.environment
            deployment.user, deployment.key = user, key
            deployment.branch, deployment.commit = started.branch, started.commit
            deployment.commit_time = started.commit_time
            deployment.change_request = started.change_request
            deployment.started_at = created_at
        if final is not None:
            key, user, created_at, state, finished = final
            if start is None:
                deployment.environment, deployment.user, deployment.key = \
                    finished.environment, user, key
            deployment.state, deployment.finished_at = state, created_at
            deployment.duration, deployment.exit_status = finished.duration, finished.exit_status
            deployment.reason = finished.reason
        mark = marks.get(ident)
        if mark is not None:
            deployment.caused_failure = mark[2].caused_failure
            deployment.marked_by, deployment.mark_reason = mark[1], mark[2].reason
        found.append(deployment)
    found.sort(key=lambda d: d.key)
    return found


def _may_end(start: tuple, end: tuple) -> bool:
    """fold.py's rule: an end counts when it comes from the start's device or its user (or
    when the hub did not say who wrote one of them)."""
    (_, start_device, _), start_user = start[0], start[1]
    (_, end_device, _), end_user = end[0], end[1]
    return (end_device == start_device or end_user is None or start_user is None
            or end_user == start_user)


def report(deployments: Sequence[Deployment], *, project: str, now: float, days: float,
           environment: str | None = None) -> DeliveryReport:
    """The four keys over the `days` before `now` and over the `days` before those, of one
    environment or (None) of all of them."""
    chosen = [d for d in deployments if environment is None or d.environment == environment]
    length = days * DAY
    return DeliveryReport(
        project=project, environment=environment, days=days, generated_at=now,
        current=_period(chosen, now - length, now, now),
        previous=_period(chosen, now - 2 * length, now - length, now),
        environments=sorted({d.environment for d in deployments}),
    )


def _period(deployments: Sequence[Deployment], start: float, end: float,
            now: float) -> DeliveryPeriod:
    inside = [d for d in deployments
              if d.finished_at is not None and start <= d.finished_at < end]
    restores = _restores(deployments, now)
    completed = [d for d in inside if d.state == "completed"]
    failed = [d for d in inside if d.state == "failed"]
    marked = [d for d in completed if d.caused_failure]
    lead_times = _lead_times(completed)
    failures = failed + marked
    restored = [restores[id(d)] for d in failures if restores[id(d)] is not None]
    finished = len(completed) + len(failed)
    return DeliveryPeriod(
        start=start, end=end, deployments=len(completed), failed=len(failed),
        marked=len(marked), per_day=len(completed) / ((end - start) / DAY),
        change_failure_rate=len(failures) / finished if finished else None,
        lead_time=_median(lead_times), lead_times=len(lead_times),
        restore_time=_median(restored), restored=len(restored),
        unrestored=len(failures) - len(restored),
        buckets=_buckets(inside, start, end, restores),
    )


def _lead_times(completed: Iterable[Deployment]) -> list[float]:
    """From each deployed commit's time to its deployment's end; a commit stamped after its
    deployment ended (a clock far off) tells nothing, and is left out."""
    return [d.finished_at - d.commit_time for d in completed
            if d.commit_time is not None and d.finished_at is not None
            and d.finished_at >= d.commit_time]


def _restores(deployments: Sequence[Deployment], now: float) -> dict[int, float | None]:
    """For each failure: the time from it to the next completed deployment of its environment
    that is not itself a failure (None: not restored by `now`)."""
    by_environment: dict[str, list[Deployment]] = {}
    for d in deployments:
        if d.finished_at is not None and d.state != "running":
            by_environment.setdefault(d.environment, []).append(d)
    found: dict[int, float | None] = {}
    for ended in by_environment.values():
        ended.sort(key=lambda d: (d.finished_at, d.key))
        restore_at: float | None = None
        # From the newest back: each deployment learns the next good one after it.
        for d in reversed(ended):
            assert d.finished_at is not None
            found[id(d)] = None if restore_at is None or restore_at > now \
                else restore_at - d.finished_at
            if d.state == "completed" and not d.caused_failure:
                restore_at = d.finished_at
    return found


def _buckets(inside: Sequence[Deployment], start: float, end: float,
             restores: dict[int, float | None]) -> list[DeliveryBucket]:
    """The period in days (weeks beyond DAILY_UP_TO days), the last one ending at `end`."""
    step = DAY if end - start <= DAILY_UP_TO * DAY + 1e-6 else 7 * DAY
    count = max(1, math.ceil((end - start) / step - 1e-9))
    buckets = []
    for index in range(count):
        bucket_start = max(start, end - (count - index) * step)
        bucket_end = end - (count - index - 1) * step
        held = [d for d in inside if bucket_start <= d.finished_at < bucket_end]  # type: ignore
        completed = [d for d in held if d.state == "completed"]
        failures = [d for d in held if d.failure]
        restored = [restores[id(d)] for d in failures if restores[id(d)] is not None]
        buckets.append(DeliveryBucket(
            start=bucket_start, end=bucket_end, deployments=len(completed),
            failures=len(failures), lead_time=_median(_lead_times(completed)),
            restore_time=_median(restored),
            failed=sum(1 for d in held if d.state == "failed")))
    return buckets


def _median(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None
