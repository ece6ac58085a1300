"""Prometheus' text exposition format (version 0.0.4), and the daemon's metrics written in it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from projctl_client.protocol import LatencyView, MetricsReport

MEDIA_TYPE = "text/plain; version=0.0.4"
CONTENT_TYPE = f"{MEDIA_TYPE}; charset=utf-8"

Labels = dict[str, str]


@dataclass
class Family:
    """One metric family: its samples are (name suffix, labels, value)."""

    name: str
    kind: str  # counter, gauge or histogram
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float | None, labels: Labels | None = None, suffix: str = "") -> None:
        if value is not None:
            self.samples.append((suffix, labels or {}, value))

    def add_histogram(self, latency: LatencyView, bounds: Iterable[float],
                      labels: Labels | None = None) -> None:
        labels = labels or {}
        cumulative = 0
        for bound, count in zip(bounds, latency.buckets, strict=True):
            cumulative += count
            self.add(cumulative, {**labels, "le": _number(bound)}, "_bucket")
        self.add(latency.count, {**labels, "le": "+Inf"}, "_bucket")
        self.add(latency.sum_s, labels, "_sum")
        self.add(latency.count, labels, "_count")


def one(name: str, kind: str, help_text: str, value: float | None,
        labels: Labels | None = None) -> Family:
    """A family of one sample."""
    family = Family(name, kind, help_text)
    family.add(value, labels)
    return family


def render(families: Iterable[Family]) -> str:
    lines = []
    for family in families:
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {family.name} {help_text}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            lines.append(f"{family.name}{suffix}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    pairs = ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())
    return "{" + pairs + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value)
                                  and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def daemon_families(report: MetricsReport) -> list[Family]:
    """`projctl metrics` as Prometheus families, named projctld_*."""
    daemon = report.daemon
    singles = [
        one("projctld_info", "gauge", "The running projctld's version.", 1,
            {"version": daemon.version}),
        one("projctld_uptime_seconds", "gauge", "Seconds since projctld started.",
            daemon.uptime_s),
        one("projctld_resident_memory_bytes", "gauge", "Resident memory (VmRSS).",
            daemon.rss_bytes),
        one("projctld_peak_resident_memory_bytes", "gauge",
            "Highest resident memory so far (VmHWM).", daemon.peak_rss_bytes),
        one("projctld_open_connections", "gauge", "Clients connected now.",
            daemon.open_connections),
        one("projctld_slow_requests_total", "counter",
            "Requests slower than daemon.slow_request (each was logged).", daemon.slow_requests),
    ]

    requests = Family("projctld_requests_total", "counter",
                      "Requests answered, by request type and the projctl command that sent it.")
    errors = Family("projctld_request_errors_total", "counter",
                    "Requests answered with an error.")
    latency = Family("projctld_request_duration_seconds", "histogram",
                     "From a request's first byte to its reply's last.")
    for metric in report.requests:
        labels = {"rpc": metric.rpc, "command": metric.command}
        requests.add(metric.count, labels)
        errors.add(metric.errors, labels)
        latency.add_histogram(metric.latency, report.latency_bounds, labels)

    upstream = {
        "requests": Family("projctld_upstream_requests_total", "counter",
                           "HTTP requests sent to the upstream."),
        "hits": Family("projctld_upstream_conditional_hits_total", "counter",
                       "Requests answered 304 Not Modified (free on GitHub)."),
        "retries": Family("projctld_upstream_retries_total", "counter",
                          "Requests sent again after a timeout or a 5xx."),
        "errors": Family("projctld_upstream_errors_total", "counter",
                         "Requests that failed for good."),
        "success": Family("projctld_upstream_last_success_timestamp_seconds", "gauge",
                          "When the upstream last answered well (Unix time)."),
        "hold": Family("projctld_upstream_hold_until_timestamp_seconds", "gauge",
                       "No request goes to the upstream before this (Retry-After)."),
        "limit": Family("projctld_upstream_ratelimit_limit", "gauge",
                        "The rate-limit budget's size, per resource."),
        "remaining": Family("projctld_upstream_ratelimit_remaining", "gauge",
                            "Requests left in the rate-limit budget, per resource."),
        "reset": Family("projctld_upstream_ratelimit_reset_timestamp_seconds", "gauge",
                        "When the rate-limit budget resets (Unix time, our clock)."),
    }
    for metric in report.upstreams:
        labels = {"upstream": metric.upstream, "host": metric.host}
        upstream["requests"].add(metric.requests, labels)
        upstream["hits"].add(metric.conditional_hits, labels)
        upstream["retries"].add(metric.retries, labels)
        upstream["errors"].add(metric.errors, labels)
        upstream["success"].add(metric.last_success, labels)
        upstream["hold"].add(metric.hold_until, labels)
        for budget in metric.rate_limits:
            budget_labels = {**labels, "resource": budget.resource}
            upstream["limit"].add(budget.limit, budget_labels)
            upstream["remaining"].add(budget.remaining, budget_labels)
            upstream["reset"].add(budget.reset_at, budget_labels)

    sync = report.sync
    return [
        *singles, requests, errors, latency, *upstream.values(),
        one("projctld_sync_pushed_events_total", "counter", "Events sent to the hub.",
            sync.pushed),
        one("projctld_sync_pulled_events_total", "counter",
            "Teammates' events received from the hub.", sync.pulled),
        one("projctld_sync_queue_events", "gauge",
            "Events recorded here and not yet accepted by the hub.", sync.waiting),
        one("projctld_sync_last_success_timestamp_seconds", "gauge",
            "When a sync with the hub last succeeded (Unix time).", sync.last_success),
        one("projctld_sync_consecutive_failures", "gauge",
            "Sync attempts failed in a row (0 when the last one worked).", sync.failures),
    ]
