"""Metrics: histograms, the Prometheus text, `projctl metrics`, the daemon's and the hub's
/metrics endpoints, and slow-request logs, measured on a real daemon, fakes and hub."""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import threading
from collections.abc import Iterator

import httpx
import pytest
from conftest import HubProcess, Sandbox, free_port
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from test_sync_e2e import wait_for
from test_upstream_status import config_text, configure, git_checkout, my_pull

from projctld.ops.metrics import (
    LATENCY_BOUNDS,
    MAX_SERIES,
    Histogram,
    RequestMetrics,
    RequestTiming,
)
from projctld.ops.prometheus import Family, render
from projctld.sandbox.demo import Upstreams

# Histograms


@given(st.lists(st.floats(min_value=0, max_value=60), min_size=1, max_size=200),
       st.sampled_from([0.5, 0.9, 0.99]))
def test_a_quantile_falls_in_the_bucket_of_the_true_one(latencies: list[float],
                                                         q: float) -> None:
    histogram = Histogram()
    for latency in latencies:
        histogram.observe(latency)
    # The rank Prometheus' histogram_quantile reads, as the same float arithmetic gives it.
    true = sorted(latencies)[math.ceil(q * len(latencies)) - 1]
    estimate = histogram.quantile(q)
    edges = (0.0, *LATENCY_BOUNDS)
    bucket = next((i for i, bound in enumerate(LATENCY_BOUNDS) if true <= bound), None)
    if bucket is None:  # beyond the last bound: only the maximum is known
        assert LATENCY_BOUNDS[-1] <= estimate <= max(latencies)
    else:
        assert edges[bucket] <= estimate <= LATENCY_BOUNDS[bucket] + 1e-12
    assert estimate <= max(latencies)
    assert histogram.count == len(latencies)
    assert sum(histogram.buckets) + histogram.over == len(latencies)


def test_an_empty_histogram_reads_zero() -> None:
    assert Histogram().view().p99_s == 0.0


def test_commands_a_client_makes_up_cannot_grow_the_metrics_without_bound() -> None:
    metrics = RequestMetrics(slow_threshold=60.0)
    for number in range(MAX_SERIES * 4):
        timing = RequestTiming()
        timing.rpc, timing.command = "ping", f"made-up-{number}"
        timing.mark("handle")
        metrics.record(timing)
    views = metrics.views()
    assert len(views) == MAX_SERIES + 1
    assert sum(view.count for view in views) == MAX_SERIES * 4
    other = next(view for view in views if view.command == "other")
    assert other.count == MAX_SERIES * 3


# The text format, read back by Prometheus' own parser


@given(st.text(max_size=30), st.floats(min_value=-1e12, max_value=1e12))
def test_any_label_value_reads_back_unchanged(value: str, number: float) -> None:
    family = Family("projctl_test_total", "counter", 'a "help" with \\ and\nnewline')
    family.add(number, {"label": value, "other": "x"})
    parsed = list(text_string_to_metric_families(render([family])))
    sample = parsed[0].samples[0]
    assert sample.labels == {"label": value, "other": "x"}
    assert sample.value == pytest.approx(number)


def test_a_histogram_is_cumulative_and_ends_at_the_count() -> None:
    histogram = Histogram()
    for latency in (0.000005, 0.0003, 0.0003, 0.2, 99.0):
        histogram.observe(latency)
    family = Family("projctl_test_seconds", "histogram", "test")
    family.add_histogram(histogram.view(), LATENCY_BOUNDS, {"rpc": "status"})
    parsed = next(iter(text_string_to_metric_families(render([family]))))
    buckets = [s for s in parsed.samples if s.name.endswith("_bucket")]
    values = [s.value for s in buckets]
    assert values == sorted(values)
    assert float(buckets[0].labels["le"]) == 0.00001 and buckets[0].value == 1
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 5
    assert next(s.value for s in parsed.samples if s.name.endswith("_count")) == 5


# The daemon, end to end


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = httpx.get(url, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(reply.text)
            for sample in family.samples}


def _send_garbage(socket_path: str) -> None:
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(socket_path)
        raw.sendall(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
        header = raw.recv(4)
        assert len(header) == 4  # an Error reply came back


def _logs(process) -> list[dict]:
    process.terminate()
    _out, err = process.communicate(timeout=30)
    return [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]


@pytest.fixture
def measured(sandbox: Sandbox, upstreams: Upstreams,
             hub_server) -> Iterator[tuple[Sandbox, Upstreams, HubProcess, int, str]]:
    """A daemon with every upstream, a hub, a Prometheus port, and every request 'slow'."""
    hub: HubProcess = hub_server()
    sandbox.env["PROJCTL_HUB_TOKEN"] = hub.token("ada", "web")
    checkout = git_checkout(os.path.join(sandbox.root, "web"), my_pull(upstreams).head_ref)
    port = free_port()
    configure(sandbox, f"""
[daemon]
log_format = "json"
slow_request = 0.000001
metrics_listen = "{port}"

[sync]
hub = "{hub.url}"
""" + config_text(upstreams, paths=[checkout]))
    yield sandbox, upstreams, hub, port, checkout


def test_metrics_count_requests_upstreams_and_sync(measured) -> None:
    sandbox, up, hub, port, checkout = measured
    process = sandbox.start_daemon()
    for _ in range(2):  # the second poll is conditional
        assert sandbox.client("refresh", "web").returncode == 0
    assert sandbox.client("status", cwd=checkout).returncode == 0
    assert sandbox.client("prompt", cwd=checkout).returncode == 0
    assert sandbox.client("note", "metrics test", cwd=checkout).returncode == 0
    assert sandbox.client("sync", "--now").returncode == 0
    _send_garbage(sandbox.socket_path)

    shown = sandbox.client("metrics", "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    requests = {(m["rpc"], m["command"]): m for m in report["requests"]}
    assert requests[("refresh", "refresh")]["count"] == 2
    assert requests[("status", "status")]["count"] == 1
    assert requests[("prompt", "prompt")]["count"] == 1
    assert requests[("note", "note")]["count"] == 1
    assert requests[("malformed", "")]["errors"] == 1
    for metric in report["requests"]:
        latency = metric["latency"]
        assert sum(latency["buckets"]) + latency["over"] == latency["count"] == metric["count"]
        assert 0 < latency["p50_s"] <= latency["p99_s"] <= latency["max_s"]
    assert len(report["latency_bounds"]) == len(report["requests"][0]["latency"]["buckets"])

    upstream = {m["upstream"]: m for m in report["upstreams"]}
    assert set(upstream) == {"GitHub", "GitLab", "Jira"}
    for metric in upstream.values():
        assert metric["requests"] > 0 and metric["last_success"] and metric["errors"] == 0
    assert upstream["GitHub"]["conditional_hits"] > 0
    assert {b["resource"] for b in upstream["GitHub"]["rate_limits"]} >= {"graphql"}
    assert all(b["remaining"] is not None for b in upstream["GitHub"]["rate_limits"])

    sync = report["sync"]
    assert sync["pushed"] >= 1 and sync["waiting"] == 0 and sync["failures"] == 0
    assert sync["last_success"] is not None
    daemon = report["daemon"]
    assert daemon["rss_bytes"] > 0 and daemon["peak_rss_bytes"] >= daemon["rss_bytes"]
    assert daemon["uptime_s"] > 0 and daemon["open_connections"] >= 1

    text = sandbox.client("metrics")
    assert text.returncode == 0, text.stderr
    assert "GitHub" in text.stdout and "p99" in text.stdout and "pushed" in text.stdout

    scraped = _scrape(f"http://127.0.0.1:{port}/metrics")
    status_key = ("projctld_requests_total", (("command", "status"), ("rpc", "status")))
    assert scraped[status_key] == 1
    assert scraped[("projctld_sync_queue_events", ())] == 0
    # A scheduled poll may have run since the JSON report.
    assert scraped[("projctld_upstream_requests_total",
                    (("host", httpx.URL(up.github_url).netloc.decode()),
                     ("upstream", "GitHub")))] >= upstream["GitHub"]["requests"]
    assert scraped[("projctld_request_duration_seconds_count",
                    (("command", "status"), ("rpc", "status")))] == 1

    hub_scraped = _scrape(f"{hub.url}/metrics")
    assert hub_scraped[("projctl_hub_events_accepted_total", ())] >= 1
    assert hub_scraped[("projctl_hub_http_responses_total",
                        (("method", "POST"), ("route", "/v1/events"), ("status", "200")))] >= 1

    # Every request was over the 1 µs threshold: each is logged with where its time went,
    # except the refreshes and the forced sync, which wait for the network by design.
    slow = [entry for entry in _logs(process) if entry.get("event") == "slow_request"]
    assert {(entry["rpc"], entry["command"]) for entry in slow} >= {
        ("status", "status"), ("prompt", "prompt"), ("note", "note"), ("metrics", "metrics")}
    assert not [entry for entry in slow if entry["rpc"] == "refresh"]
    for entry in slow:
        stages = sum(entry[f"{stage}_ms"] for stage in ("read", "decode", "handle", "encode",
                                                        "send") if f"{stage}_ms" in entry)
        assert stages == pytest.approx(entry["total_ms"], abs=0.01)
        assert "handle_ms" in entry or entry["rpc"] == "frame_too_large"


def test_upstream_failures_are_counted_with_their_code(sandbox: Sandbox,
                                                       upstreams: Upstreams) -> None:
    configure(sandbox, config_text(upstreams))
    sandbox.start_daemon()
    upstreams.gitlab.fail(".", status=503, times=100)
    sandbox.client("refresh", "web")
    upstream = {m["upstream"]: m for m in
                json.loads(sandbox.client("metrics", "--json").stdout)["upstreams"]}
    assert upstream["GitLab"]["errors"] >= 1
    assert upstream["GitLab"]["retries"] >= 1
    assert upstream["GitLab"]["last_error"] == "server_error"
    assert upstream["GitLab"]["last_success"] is None
    assert upstream["GitHub"]["errors"] == 0


def test_the_metrics_port_answers_only_get_metrics(sandbox: Sandbox) -> None:
    port = free_port()
    sandbox.write_config(f'[daemon]\nmetrics_listen = "127.0.0.1:{port}"\n')
    sandbox.start_daemon()
    assert sandbox.client("status").returncode == 0  # answered: the endpoint is up
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/other", timeout=10).status_code == 404
    refused = httpx.post(f"{base}/metrics", timeout=10)
    assert refused.status_code == 405 and "GET" in refused.headers["allow"]
    assert httpx.head(f"{base}/metrics", timeout=10).status_code == 200
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"\x00garbage\r\n\r\n")
        raw.recv(100)  # whatever it says, it closes; the daemon goes on
    assert ("projctld_uptime_seconds", ()) in _scrape(f"{base}/metrics")
    assert sandbox.client("status").returncode == 0


def test_a_taken_metrics_port_is_logged_and_the_daemon_serves_anyway(sandbox: Sandbox) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sandbox.write_config(f'[daemon]\nlog_format = "json"\nmetrics_listen = "{port}"\n')
        process = sandbox.start_daemon()
        assert sandbox.client("status").returncode == 0
        failed = [e for e in _logs(process) if e.get("event") == "metrics_listen_failed"]
    assert failed and "metrics_listen" in failed[0]["fix"]


@pytest.mark.parametrize("value", ["127.0.0.1:99999", "0"])
def test_a_metrics_port_out_of_range_is_named(sandbox: Sandbox, value: str) -> None:
    sandbox.write_config(f'[daemon]\nlog_format = "json"\nmetrics_listen = "{value}"\n')
    process = sandbox.start_daemon()
    assert sandbox.client("status").returncode == 0
    failed = [e for e in _logs(process) if e.get("event") == "metrics_listen_failed"]
    assert failed and "between 1 and 65535" in failed[0]["error"]


def _hub_log(hub: HubProcess) -> list[dict]:
    hub.stop()
    return [json.loads(line) for line in hub.process.stderr.read().splitlines()
            if line.startswith("{")]


def test_the_hub_logs_slow_requests_with_their_stages(sandbox: Sandbox, hub_server) -> None:
    hub: HubProcess = hub_server(None, "--slow-request", "0.000001")
    sandbox.env["PROJCTL_HUB_TOKEN"] = hub.token("ada", "web")
    sandbox.write_config(f'[sync]\nhub = "{hub.url}"\nlive = false\n\n[projects.web]\n')
    sandbox.start_daemon()
    assert sandbox.client("note", "--project", "web", "slow hub").returncode == 0
    assert sandbox.client("sync", "--now").returncode == 0
    assert _scrape(f"{hub.url}/metrics")[("projctl_hub_slow_requests_total", ())] >= 2
    slow = [entry for entry in _hub_log(hub) if entry.get("event") == "slow_request"]
    push = next(entry for entry in slow if entry["method"] == "POST")
    pull = next(entry for entry in slow if entry["method"] == "GET")
    assert {"auth_ms", "decode_ms", "check_ms", "storage_ms", "reply_ms"} <= set(push)
    assert {"auth_ms", "storage_ms", "reply_ms"} <= set(pull)
    for entry in (push, pull):
        assert entry["route"] == "/v1/events" and entry["status"] == 200
        stages = sum(value for key, value in entry.items()
                     if key.endswith("_ms") and key != "total_ms")
        assert stages == pytest.approx(entry["total_ms"], abs=0.01)


def test_a_long_poll_is_not_a_slow_request(hub_server) -> None:
    hub: HubProcess = hub_server(None, "--slow-request", "0.5")
    token = hub.token("ada", "web", write=False)
    waited = httpx.get(f"{hub.url}/v1/events", params={"project": "web", "wait": 1},
                       headers={"authorization": f"Bearer {token}"}, timeout=10)
    assert waited.status_code == 200 and waited.elapsed.total_seconds() >= 0.9
    assert not [entry for entry in _hub_log(hub) if entry.get("event") == "slow_request"]


def test_a_stopping_hub_answers_the_long_polls_it_holds(hub_server) -> None:
    hub: HubProcess = hub_server()
    token = hub.token("ada", "web", write=False)
    replies: list[httpx.Response] = []
    poll = threading.Thread(target=lambda: replies.append(httpx.get(
        f"{hub.url}/v1/events", params={"project": "web", "wait": 60},
        headers={"authorization": f"Bearer {token}"}, timeout=90)))
    poll.start()
    wait_for(lambda: _scrape(f"{hub.url}/metrics")[("projctl_hub_pulls_waiting", ())] == 1)
    hub.stop()
    poll.join(30)
    # Answered, empty, rather than cut off once the shutdown grace ran out.
    assert replies and replies[0].status_code == 200, replies
    assert replies[0].json()["events"] == []
    assert hub.process.returncode == 0
