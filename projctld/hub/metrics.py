"""The hub's measurements: replies per route and status, their latency, events in and out, memory;
written for Prometheus at /metrics."""

from __future__ import annotations

import time
from collections.abc import Collection
from time import perf_counter
from typing import TYPE_CHECKING

from litestar.types import Message, Scope

from projctld import __version__
from projctld.logging import get_logger
from projctld.ops.metrics import LATENCY_BOUNDS, Histogram, memory
from projctld.ops.prometheus import Family, one, render

if TYPE_CHECKING:
    from projctld.hub.service import HubService
    from projctld.hub.upstream.intermediary import Intermediary

log = get_logger(__name__)
# Every label takes its values from a fixed set, so that no client can grow /metrics: a method
# outside these is counted as OTHER (uvicorn lets any token through as a method), a path
# outside the routes as `other`, and statuses are the hub's own.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Scope keys: when a request came in, and the stages it has been through since, with when
# each one ended (for the log line of a slow request).
_STARTED = "projctl.started"
_STAGES = "projctl.stages"
DEFAULT_SLOW_REQUEST = 1.0


class HubMetrics:
    def __init__(self, storage_kind: str, routes: Collection[str], service: HubService,
                 slow_request: float = DEFAULT_SLOW_REQUEST) -> None:
        self._storage_kind = storage_kind
        self._service = service
        self.slow_request = slow_request
        self.slow_requests = 0
        self._routes = set(routes)
        self._started_at = time.time()
        self._replies: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], Histogram] = {}

    # The intermediary whose webhooks, streams and polls are counted (set by the app).
    upstream: Intermediary | None = None

    def request_started(self, scope: Scope) -> None:
        scope[_STARTED] = perf_counter()  # type: ignore[literal-required]
        scope[_STAGES] = []  # type: ignore[literal-required]

    def stage(self, scope: Scope, name: str) -> None:
        """The stage `name` of this request (auth, decode, storage, wait) ends now."""
        stages = scope.get(_STAGES)
        if stages is not None:
            stages.append((name, perf_counter()))

    def reply_started(self, message: Message, scope: Scope) -> None:
        """Count a reply as its head goes out (errors and unknown paths included)."""
        if message["type"] != "http.response.start" or scope["type"] != "http":
            return
        # A route with parameters by its template (`/p/{project:str}`), never its path.
        template = scope.get("path_template")
        path = template if template in self._routes else \
            scope["path"] if scope["path"] in self._routes else "other"
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        key = (method, path, message["status"])
        self._replies[key] = self._replies.get(key, 0) + 1
        started = scope.get(_STARTED)
        if started is not None:
            now = perf_counter()
            latency = self._latency.setdefault((method, path), Histogram())
            latency.observe(now - started)
            if now - started >= self.slow_request:
                self._log_slow(scope, method, path, message["status"], started, now)

    def _log_slow(self, scope: Scope, method: str, path: str, status: int, started: float,
                  now: float) -> None:
        """Log the request with where its time went, unless only a long poll made it slow."""
        breakdown, last = {}, started
        for name, ended in [*scope.get(_STAGES, []), ("reply", now)]:
            breakdown[f"{name}_ms"] = round((ended - last) * 1000, 3)
            last = ended
        if now - started - breakdown.get("wait_ms", 0.0) / 1000 < self.slow_request:
            return
        self.slow_requests += 1
        log.warning("slow_request", method=method, route=path, status=status,
                    total_ms=round((now - started) * 1000, 3), **breakdown)

    def exposition(self) -> str:
        rss, peak = memory()
        replies = Family("projctl_hub_http_responses_total", "counter",
                         "Replies sent, by method, route and status.")
        for (method, path, status), count in sorted(self._replies.items()):
            replies.add(count, {"method": method, "route": path, "status": str(status)})
        latency = Family("projctl_hub_http_request_duration_seconds", "histogram",
                         "From routing a request to its reply's head; pulls that wait for "
                         "events include the wait.")
        for (method, path), histogram in sorted(self._latency.items()):
            latency.add_histogram(histogram.view(), LATENCY_BOUNDS,
                                  {"method": method, "route": path})
        counters = self._service.counters
        refused = Family("projctl_hub_events_refused_total", "counter",
                         "Pushed events the hub did not take, by reason.")
        for code, count in sorted(counters.refused.items()):
            refused.add(count, {"code": code})
        offset = self._service.clocks.offset()
        return render([
            one("projctl_hub_info", "gauge", "The hub's version and storage.", 1,
                {"version": __version__, "storage": self._storage_kind}),
            one("projctl_hub_uptime_seconds", "gauge", "Seconds since the hub started.",
                time.time() - self._started_at),
            one("projctl_hub_resident_memory_bytes", "gauge", "Resident memory.", rss),
            one("projctl_hub_peak_resident_memory_bytes", "gauge",
                "Highest resident memory so far.", peak),
            replies, latency,
            one("projctl_hub_events_accepted_total", "counter",
                "Events pushed and stored for the first time.", counters.accepted),
            one("projctl_hub_events_duplicate_total", "counter",
                "Events pushed again that the hub already held.", counters.duplicates),
            refused,
            one("projctl_hub_events_pulled_total", "counter", "Events sent to devices.",
                counters.pulled),
            one("projctl_hub_pulls_waiting", "gauge",
                "Long-poll pulls waiting for an event now: devices following live.",
                counters.pulls_waiting),
            one("projctl_hub_clock_offset_seconds", "gauge",
                "How far the hub's clock runs behind its devices' (negative: ahead), 0 while "
                "they agree or fewer than two devices were heard from in 15 min.",
                offset or 0.0),
            one("projctl_hub_slow_requests_total", "counter",
                "Requests slower than --slow-request (each was logged).", self.slow_requests),
            *self._upstream_families(),
        ])

    def _upstream_families(self) -> list[Family]:
        """The hub as the team's intermediary: webhooks, streams, polls (upstream/)."""
        upstream = self.upstream
        if upstream is None:
            return []
        webhooks = Family("projctl_hub_webhooks_total", "counter",
                          "Webhook deliveries, by what became of them: accepted, duplicate "
                          "(a replay), ignored, refused (401, 400).")
        for status, count in sorted(upstream.counters.items()):
            webhooks.add(count, {"status": status})
        poller = upstream.poller
        return [
            webhooks,
            one("projctl_hub_upstream_streams", "gauge",
                "Devices holding a stream of upstream state now.", upstream.streams),
            one("projctl_hub_upstream_polls_total", "counter",
                "Upstream polls this process made (scheduled and refreshes).",
                poller.polls if poller is not None else 0),
            one("projctl_hub_upstream_polling", "gauge",
                "1 while this process holds the lease to poll the upstreams.",
                int(poller is not None and poller.leader)),
        ]
