"""The daemon's measurements: latency histograms, per-request counters and slow-request logs,
and the report that `projctl metrics` and the Prometheus endpoint are made from."""

from __future__ import annotations

import os
import resource
import sys
import time
from bisect import bisect_left
from collections.abc import Iterable
from time import perf_counter

from projctl_client.protocol import (
    DaemonMetric,
    LatencyView,
    MetricsReport,
    RateLimitView,
    Refresh,
    Request,
    RequestMetric,
    RunFollow,
    Sync,
    SyncView,
    UpstreamMetric,
)
from projctld import __version__
from projctld.logging import get_logger
from projctld.upstream.providers.http import UpstreamHttp

log = get_logger(__name__)

# Series (request type, command) kept apart; the command is the client's to name, so past this
# new ones are counted together as command "other" and memory stays bounded.
MAX_SERIES = 256

# Upper bounds in seconds: fine where the hot commands live (a status is answered in 10 to 20
# µs, from its first byte to its reply's last), coarse where only waits and upstream-bound
# requests go.
LATENCY_BOUNDS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)


class Histogram:
    """Counts of observations per latency bucket, with their sum and maximum."""

    __slots__ = ("buckets", "count", "max", "over", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * len(LATENCY_BOUNDS)
        self.over = 0
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def observe(self, seconds: float) -> None:
        index = bisect_left(LATENCY_BOUNDS, seconds)
        if index == len(LATENCY_BOUNDS):
            self.over += 1
        else:
            self.buckets[index] += 1
        self.count += 1
        self.sum += seconds
        if seconds > self.max:
            self.max = seconds

    def quantile(self, q: float) -> float:
        """The q-quantile, interpolated inside its bucket (as Prometheus' histogram_quantile)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        lower = 0.0
        for bound, count in zip(LATENCY_BOUNDS, self.buckets, strict=True):
            if count and seen + count >= rank:
                return min(lower + (bound - lower) * (rank - seen) / count, self.max)
            seen += count
            lower = bound
        return self.max

    def view(self) -> LatencyView:
        return LatencyView(
            count=self.count, sum_s=self.sum, max_s=self.max, buckets=list(self.buckets),
            over=self.over, p50_s=self.quantile(0.5), p90_s=self.quantile(0.9),
            p99_s=self.quantile(0.99),
        )


class RequestTiming:
    """The stages of one request as it goes through the server, for its histogram and, when it
    is slow, its log line."""

    __slots__ = ("_last", "_started", "command", "error", "request", "rpc", "stages")

    def __init__(self) -> None:
        self._started = self._last = perf_counter()
        self.stages: list[tuple[str, float]] = []
        self.rpc = "malformed"
        self.command = ""
        self.error = False
        self.request: Request | None = None

    def mark(self, stage: str) -> None:
        """The stage named `stage` ends now."""
        now = perf_counter()
        self.stages.append((stage, now - self._last))
        self._last = now

    def identify(self, request: Request) -> None:
        self.request = request
        self.rpc = type(request).__struct_config__.tag  # type: ignore[assignment]
        self.command = request.command

    @property
    def total(self) -> float:
        return self._last - self._started


class _RequestStats:
    __slots__ = ("errors", "latency")

    def __init__(self) -> None:
        self.errors = 0
        self.latency = Histogram()


class RequestMetrics:
    """Counters and histograms per (request type, projctl command); logs slow requests."""

    def __init__(self, slow_threshold: float) -> None:
        self.slow_threshold = slow_threshold
        self.slow_requests = 0
        self.open_connections = 0  # kept by the RPC server
        self._stats: dict[tuple[str, str], _RequestStats] = {}

    def record(self, timing: RequestTiming) -> None:
        key = (timing.rpc, timing.command)
        stats = self._stats.get(key)
        if stats is None:
            if len(self._stats) >= MAX_SERIES:
                key = (timing.rpc, "other")
            stats = self._stats.setdefault(key, _RequestStats())
        total = timing.total
        stats.latency.observe(total)
        if timing.error:
            stats.errors += 1
        if total >= self.slow_threshold and not _waits_by_design(timing.request):
            self.slow_requests += 1
            log.warning("slow_request", rpc=timing.rpc, command=timing.command,
                        total_ms=round(total * 1000, 3),
                        **{f"{stage}_ms": round(seconds * 1000, 3)
                           for stage, seconds in timing.stages})

    def views(self) -> list[RequestMetric]:
        return [
            RequestMetric(rpc=rpc, command=command, count=stats.latency.count,
                          errors=stats.errors, latency=stats.latency.view())
            for (rpc, command), stats in sorted(self._stats.items())
        ]


def _waits_by_design(request: Request | None) -> bool:
    """Requests that wait for the network or a workflow: slow is their nature, not a fault."""
    match request:
        case Refresh(wait=wait) if wait > 0:
            return True
        case Sync(now=True):
            return True
        case RunFollow():
            return True
    return False


def upstream_views(hosts: Iterable[UpstreamHttp]) -> list[UpstreamMetric]:
    views = []
    for http in hosts:
        counters, governor = http.counters, http.governor
        views.append(UpstreamMetric(
            upstream=http.name, host=governor.host, requests=counters.requests,
            conditional_hits=counters.conditional_hits, retries=counters.retries,
            errors=counters.failures, last_success=counters.last_success,
            last_error=counters.last_error, last_error_at=counters.last_error_at,
            hold_until=governor.hold_until or None,
            rate_limits=[
                RateLimitView(resource=name, limit=budget.limit, remaining=budget.remaining,
                              reset_at=budget.reset_at)
                for name, budget in sorted(governor.budgets.items())
            ],
        ))
    return views


def memory() -> tuple[int, int]:
    """This process' resident set and its peak, in bytes."""
    rss = peak = 0
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith(b"VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except OSError:  # not Linux: the peak is what getrusage knows (bytes on macOS)
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = maxrss if sys.platform == "darwin" else maxrss * 1024
    return rss, peak


def report(requests: RequestMetrics, hosts: Iterable[UpstreamHttp], sync: SyncView, *,
           started_at: float) -> MetricsReport:
    rss, peak = memory()
    return MetricsReport(
        daemon=DaemonMetric(
            version=__version__, pid=os.getpid(), uptime_s=time.time() - started_at,
            rss_bytes=rss, peak_rss_bytes=peak, open_connections=requests.open_connections,
            slow_requests=requests.slow_requests,
            slow_request_threshold_s=requests.slow_threshold,
        ),
        latency_bounds=list(LATENCY_BOUNDS),
        requests=requests.views(),
        upstreams=upstream_views(hosts),
        sync=sync,
    )
