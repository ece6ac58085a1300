"""Load: many clients hammering `status` on one projctld at once; throughput, latency, errors.

Run it from the repository root with the dev virtualenv's interpreter:

    .venv/bin/python bench/status_load.py [--clients 64] [--seconds 30] [--processes 2]

It starts the fake GitHub, GitLab and Jira in this process, a projctld in a throw-away sandbox
configured to poll them (one project, its git checkout), refreshes once so that the status
view is full, then opens `--clients` connections from `--processes` load processes. Each
connection sends a status request for the checkout, waits for the reply, and sends the next
at once (a closed loop, as a shell loop or many editors would), for `--seconds` seconds. The
requests are encoded once; a reply is checked to be a status view, not an error, from its
tag, so the load processes spend their time on the socket, not on msgpack.

Printed: requests per second, latency p50/p90/p99/max over every request, errors, the daemon's
CPU per request and RSS, and its own view of the same requests (`projctl metrics`). Goal: at
least 10,000 requests/s and p99 under 5 ms on two cores, no error. The daemon and the load
processes share the two cores; one load process alone cannot keep up with the daemon (it spends
as long per request as the daemon does), so the default is two. A second run, for reference,
paces the same clients to 10,000 requests/s in all and times each request from when it was due.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import shutil
import struct
import sys
import time
from dataclasses import dataclass, field

from client_latency import make_sandbox, percentile, rss_mib, run_checked, start_daemon, stop_daemon

from projctl_client import minipack
from projctl_client.connection import connect, request
from projctld.sandbox.dataset import generate
from projctld.sandbox.demo import TOKEN, start_fakes

GOAL_RATE = 10_000
GOAL_P99_MS = 5.0
WARMUP_SECONDS = 2.0
_HEADER = struct.Struct(">I")
# msgspec writes a reply's tag first: a status view starts with these bytes after the map size.
_STATUS_TAG = minipack.encode("type") + minipack.encode("status")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time `pid` has used so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def configure(box, up) -> None:
    repos = ", ".join(f'"{repo}"' for repo in up.data.github_repos)
    with open(os.path.join(box.root, "config", "projctl", "config.toml"), "w") as handle:
        handle.write(f"""
[github]
api_url = "{up.github_url}"
token_env = ""
token = "{TOKEN}"

[projects.demo]
paths = ["{box.demo}"]
github = [{repos}]
""")
    os.chmod(os.path.join(box.root, "config", "projctl", "config.toml"), 0o600)


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: int = 0


class _Client(asyncio.Protocol):
    """One connection: asks, and asks again as soon as the answer is whole, timing each request
    from when it was sent; with `interval`, asks on a fixed schedule instead, timing each from
    when it was due, so that a slow answer also counts against the ones it held up (no
    coordinated omission). Callbacks, not coroutines: a load process must cost little next to
    the daemon it measures."""

    def __init__(self, frame: bytes, stop_at: float, warm_until: float,
                 interval: float | None, results: Results, finished: asyncio.Future) -> None:
        self._frame = frame
        self._stop_at = stop_at
        self._warm_until = warm_until
        self._interval = interval
        self._results = results
        self._finished = finished
        self._buffer = bytearray()
        self._due = self._started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._due = time.monotonic() + (random.uniform(0, self._interval) if self._interval
                                        else 0.0)
        self._next()

    def _next(self) -> None:
        if self._due >= self._stop_at:
            self._transport.close()
        elif self._interval:
            asyncio.get_running_loop().call_at(self._due, self._send)
        else:
            self._send()

    def _send(self) -> None:
        self._started = self._due if self._interval else time.monotonic()
        self._transport.write(self._frame)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) < 4:
            return
        end = 4 + _HEADER.unpack_from(self._buffer)[0]
        if len(self._buffer) < end:
            return
        done = time.monotonic()
        body = bytes(self._buffer[4:end])
        del self._buffer[:end]
        self._results.sent += 1
        if _STATUS_TAG not in body[:16]:
            self._results.errors.append(repr(minipack.decode(body))[:300])
        elif self._started >= self._warm_until:
            self._results.latencies.append(done - self._started)
        self._due = self._due + self._interval if self._interval else done
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._finished.done():
            self._finished.set_result(None)


def _load_process(socket_path: str, frame: bytes, clients: int, interval: float | None,
                  start_at: float, seconds: float, out: multiprocessing.Queue) -> None:
    results = Results()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        stop_at = time.monotonic() + WARMUP_SECONDS + seconds
        warm_until = time.monotonic() + WARMUP_SECONDS
        finished = [loop.create_future() for _ in range(clients)]
        for done in finished:
            await loop.create_unix_connection(
                lambda done=done: _Client(frame, stop_at, warm_until, interval, results, done),
                socket_path)
        await asyncio.gather(*finished)

    asyncio.run(run())
    out.put(results)


def hammer(socket_path: str, frame: bytes, clients: int, processes: int, seconds: float,
           rate: float | None) -> Results:
    """`clients` connections in `processes` processes; with `rate`, paced to that many
    requests a second in all, else each as fast as the answers come."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    start_at = time.monotonic() + 1.0  # every process starts together (one system clock)
    interval = clients / rate if rate else None
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    workers = [multiprocessing.Process(target=_load_process, args=(
        socket_path, frame, share, interval, start_at, seconds, queue)) for share in shares]
    for worker in workers:
        worker.start()
    results = Results()
    for _ in workers:
        got = queue.get(timeout=seconds + 120)
        results.latencies += got.latencies
        results.errors += got.errors
        results.sent += got.sent
    for worker in workers:
        worker.join()
    return results


def measure(label: str, daemon_pid: int, socket_path: str, frame: bytes, args: argparse.Namespace,
            rate: float | None) -> None:
    print(f"\n== {label} ==")
    cpu_before = cpu_seconds(daemon_pid)
    results = hammer(socket_path, frame, args.clients, args.processes, args.seconds, rate)
    cpu = cpu_seconds(daemon_pid) - cpu_before
    answered = len(results.latencies) / args.seconds
    ms = [seconds * 1e3 for seconds in results.latencies]
    p99 = percentile(ms, 0.99)
    met = "met" if answered >= GOAL_RATE else "NOT met"
    goal = "" if rate else f" (goal >= {GOAL_RATE:,}: {met})"
    print(f"requests   {len(ms):,} in {args.seconds:g} s = {answered:,.0f} req/s{goal}")
    verdict = "" if rate else \
        f" (goal p99 < {GOAL_P99_MS:g} ms: {'met' if p99 < GOAL_P99_MS else 'NOT met'})"
    print(f"latency    p50 {percentile(ms, 0.5):.2f} ms  p90 {percentile(ms, 0.9):.2f} ms  "
          f"p99 {p99:.2f} ms  max {max(ms):.2f} ms{verdict}")
    print(f"errors     {len(results.errors)}"
          + (f", first: {results.errors[0]}" if results.errors else ""))
    per_request = cpu / results.sent
    print(f"projctld   {cpu:.1f} s of CPU = {per_request * 1e6:.0f} µs per request "
          f"({cpu / (args.seconds + WARMUP_SECONDS) * 100:.0f} % of one core); "
          f"RSS {rss_mib(daemon_pid):.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=2, help="load processes (default 2)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        up = start_fakes(stack, generate(github_repos=3, changes_per_repo=8, jira_projects=0,
                                         gitlab_projects=0, tickets=0))
        box = make_sandbox()
        stack.callback(shutil.rmtree, box.root, True)
        configure(box, up)
        daemon = start_daemon(sys.executable, box)
        stack.callback(stop_daemon, daemon)
        head = run_checked(["git", "-C", box.demo, "rev-parse", "HEAD"], box).stdout.strip()
        checkout = {"root": box.demo, "branch": "main", "head": head}
        with connect(box.socket_path) as conn:
            conn.call(request("refresh", wait=30.0))
            view = conn.call(request("status", checkout=checkout))
        body = minipack.encode({**request("status", checkout=checkout), "command": "bench"})
        frame = _HEADER.pack(len(body)) + body
        changes = sum(len(project["change_requests"]) for project in view["projects"])
        print(f"status view: {len(body)} B request, {changes} change requests, "
              f"{len(minipack.encode(view))} B reply")
        print(f"projctld pid {daemon.pid}, RSS {rss_mib(daemon.pid):.1f} MiB before; "
              f"{args.clients} clients in {args.processes} load processes, "
              f"{WARMUP_SECONDS:g} s warm-up then {args.seconds:g} s measured; "
              f"{os.cpu_count()} CPUs")
        measure(f"{args.clients} clients, each asking again as soon as answered (saturation)",
                daemon.pid, box.socket_path, frame, args, None)
        # For reference: requests that come one at a time cost the daemon more each (a wake-up
        # of the event loop per request), and the load processes' timers share the two cores.
        measure(f"for reference: {args.clients} clients paced to {GOAL_RATE:,} requests/s "
                "in all, timed from when each was due", daemon.pid, box.socket_path, frame, args,
                GOAL_RATE)
        with connect(box.socket_path) as conn:
            report = conn.call(request("metrics"))
        for metric in report["requests"]:
            if metric["command"] == "bench":
                latency = metric["latency"]
                print(f"\nthe daemon's own view of both runs: {metric['count']:,} status "
                      f"requests, {metric['errors']} errors, first byte to last byte p50 "
                      f"{latency['p50_s'] * 1e3:.3f} ms, p99 {latency['p99_s'] * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
