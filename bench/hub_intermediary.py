"""The hub as the team's intermediary: upstream requests by team size, webhook latency, fan-out.

Run it from the repository root with the dev virtualenv's interpreter:

    .venv/bin/python bench/hub_intermediary.py [--window S] [--deliveries N]
                                               [--devices N] [--postgres DSN]

Everything is real and on loopback: the fake GitHub, GitLab and Jira (projctld/sandbox), real
`projctld hub serve` processes polling them with a hub.toml, real `projctld run` daemons.

1. Upstream requests per hour for a team of 1, 10 and 100 simulated devices, each holding a
   long poll on GET /v1/upstream: the fakes count every request the hub makes over --window
   seconds (intervals of 10 s, so that a window holds several polls), scaled to an hour.
   Each simulated device holds the hub's stream of its project's state, as a real one does.
   Goal: independent of the number of devices. Beside it, for scale, what that many daemons
   polling directly would ask (one daemon's requests, measured the same way, times N).
2. The time from a GitHub check_run delivery to a real device's status view (RPC) and its
   prompt file showing the new CI state, p50 and p99 over --deliveries (200). Goal: p99 < 2 s.
3. --devices (1,000) simulated devices holding streams on one hub process over 10 projects,
   10 changes per second (a webhook per project per second): the time from each delivery to
   each device's reply, p50 and p99, and the hub's RSS (VmRSS at the end, VmHWM the peak).
   Goal: p99 < 1 s and RSS < 300 MiB. Each delivery's time includes the refresh it asks of
   the fake GitHub; 3b measures the fan-out alone: the same streams on a PostgreSQL hub, the
   benchmark storing 10 changes per second into its database (NOTIFY wakes the hub at once),
   timed from each store to each device's frame.
4. Two hub processes on one PostgreSQL (a throw-away schema): which one polls (the lease), the
   upstream requests per hour with devices on both (goal: as one hub's), and how long the
   other takes to poll once the polling one stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

import httpx
import msgspec
import psycopg
from client_latency import rss_mib
from hub_process import Hub

from projctl_client import git, paths
from projctl_client.connection import connect, request
from projctld.hub.storage.interface import UpstreamState
from projctld.hub.storage.postgres import PostgresStorage
from projctld.sandbox import deliveries
from projctld.sandbox.dataset import Check, Dataset, generate
from projctld.sandbox.demo import TOKEN, Upstreams, start_fakes
from projctld.upstream.providers.model import Snapshot
from projctld.upstream.wire import UpstreamReply

SECRET = "bench-webhook-secret"
HUB_ENV = {"BENCH_WEBHOOK_SECRET": SECRET}
PROJECTS = 10
_reply = msgspec.msgpack.Decoder(UpstreamReply)


def hub_toml(up: Upstreams, *, interval: float, projects: int = 1) -> str:
    """The fakes, inline tokens, and `projects` projects each with its own repository (the
    first also with the GitLab projects and the JQL)."""
    lines = [f"""
[hub]
lease = 5

[github]
api_url = "{up.github_url}"
token_env = ""
token = "{TOKEN}"
interval = {interval}
webhook_secret_env = "BENCH_WEBHOOK_SECRET"

[gitlab]
url = "{up.gitlab_url}"
token_env = ""
token = "{TOKEN}"
interval = {interval}

[jira]
url = "{up.jira_url}"
email = "{up.data.jira_email}"
token_env = ""
token = "{TOKEN}"
interval = {interval}
"""]
    for index in range(projects):
        repo = up.data.github_repos[index % len(up.data.github_repos)]
        lines.append(f'[projects.p{index}]\ngithub = ["{repo}"]\n')
        if index == 0:
            lines.append(f"gitlab = {json.dumps(up.data.gitlab_projects)}\n"
                         f'jira = "project = {up.data.jira_projects[0]}"\n')
    return "\n".join(lines)


class StreamDevice:
    """One simulated device: holds the hub's stream of a project's upstream state (as a real
    device does), read by hand so that a thousand of them cost the benchmark little CPU."""

    def __init__(self, url: str, token: str, project: str,
                 on_reply: Callable[[str, UpstreamReply], None]) -> None:
        self.host, _, port = url.removeprefix("http://").partition(":")
        self.port = int(port)
        self.token, self.project, self.on_reply = token, project, on_reply
        self.replies = 0

    async def run(self, stop: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write((
                f"GET /v1/upstream/stream?project={self.project} HTTP/1.1\r\n"
                f"Host: {self.host}\r\nAuthorization: Bearer {self.token}\r\n\r\n").encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"error: the hub refused a stream: {head[:200]!r}")
            buffer = b""
            while not stop.is_set():
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)  # chunked
                if size == 0:
                    return
                buffer += (await reader.readexactly(size + 2))[:-2]
                while len(buffer) >= 4 and len(buffer) >= 4 + (n := int.from_bytes(
                        buffer[:4], "big")):
                    frame, buffer = buffer[4:4 + n], buffer[4 + n:]
                    if frame:
                        self.replies += 1
                        self.on_reply(self.project, _reply.decode(frame))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def upstream_requests(up: Upstreams) -> int:
    return sum(len(fake.requests) for fake in (up.github, up.gitlab, up.jira))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


async def hold_devices(url: str, token: str, count: int, projects: list[str], seconds: float,
                       on_reply: Callable[[str, UpstreamReply], None] = lambda p, r: None
                       ) -> list[StreamDevice]:
    stop = asyncio.Event()
    devices = [StreamDevice(url, token, projects[i % len(projects)], on_reply)
               for i in range(count)]
    tasks = [asyncio.create_task(d.run(stop)) for d in devices]
    await asyncio.sleep(seconds)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return devices


def section_requests(up: Upstreams, root: str, window: float) -> None:
    print("1. Upstream requests per hour, by team size (the hub polls for everyone)")
    config = os.path.join(root, "hub-1.toml")
    with open(config, "w") as handle:
        handle.write(hub_toml(up, interval=10))
    os.chmod(config, 0o600)
    rates = {}
    for devices in (1, 10, 100):
        hub = Hub(f"sqlite:///{root}/requests-{devices}.db", "*", config=config, env=HUB_ENV,
                  log=os.path.join(root, "hub.log"))
        try:
            token = hub.token("bench")
            time.sleep(2.0)  # the first poll at start, so that the window holds steady polls
            before = upstream_requests(up)
            asyncio.run(hold_devices(hub.url, token, devices, ["p0"], window))
            rates[devices] = (upstream_requests(up) - before) * 3600 / window
        finally:
            hub.stop()
        print(f"   {devices:>4} devices: {rates[devices]:8.0f} upstream requests/hour "
              f"({rates[devices] / devices:7.1f} per device)")
    one = rates[1]
    print(f"   ratio 100 devices / 1 device: {rates[100] / one:.2f} (goal: about 1)")
    for devices in (10, 100):
        print(f"   for scale, {devices} daemons polling directly: about "
              f"{one * devices:.0f}/hour (one poller's rate times {devices})")


class Device:
    """A real `projctld run` with `[upstreams] via = "hub"`, no upstream token."""

    def __init__(self, root: str, hub: Hub, token: str, branch: str) -> None:
        self.root = os.path.join(root, "device")
        self.checkout = os.path.join(self.root, "web")
        os.makedirs(self.checkout)
        for command in (["init", "-q", "-b", branch], ["commit", "-q", "--allow-empty", "-m",
                                                        "x"]):
            subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *command],
                           cwd=self.checkout, check=True)
        self.env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
        self.env.update(XDG_CONFIG_HOME=os.path.join(self.root, "config"),
                        XDG_STATE_HOME=os.path.join(self.root, "state"),
                        XDG_RUNTIME_DIR=os.path.join(self.root, "run"), HOME=self.root,
                        PROJCTL_HUB_TOKEN=token, PROJCTL_NO_AUTOSTART="1")
        os.makedirs(os.path.join(self.root, "config", "projctl"))
        with open(os.path.join(self.root, "config", "projctl", "config.toml"), "w") as handle:
            handle.write(f'[sync]\nhub = "{hub.url}"\n\n[upstreams]\nvia = "hub"\n\n'
                         f'[projects.p0]\npaths = ["{self.checkout}"]\n')
        self.socket = os.path.join(self.root, "run", "projctl", "projctld.sock")
        self.process = subprocess.Popen([sys.executable, "-m", "projctld", "run"], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                connect(self.socket, timeout=5).close()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise SystemExit("error: the device's daemon did not start") from None
                time.sleep(0.05)
        self.conn = connect(self.socket, timeout=10)
        self.found = git.find_checkout(self.checkout)

    def ci(self) -> str | None:
        view = self.conn.call(request("status", checkout=self.found))
        change = (view.get("branch") or {}).get("change_request") or {}
        return (change.get("ci") or {}).get("state")

    def stop(self) -> None:
        self.conn.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=20)


def section_webhook(up: Upstreams, root: str, count: int) -> None:
    print(f"2. Webhook to a device's status view and prompt file, {count} deliveries")
    config = os.path.join(root, "hub-2.toml")
    with open(config, "w") as handle:
        handle.write(hub_toml(up, interval=3600))
    os.chmod(config, 0o600)
    hub = Hub(f"sqlite:///{root}/webhook.db", "*", config=config, env=HUB_ENV,
              log=os.path.join(root, "hub.log"))
    pull = next(pr for pr in up.data.pulls[up.data.github_repos[0]] if pr.state == "open")
    device = Device(root, hub, hub.token("bench"), pull.head_ref)
    prompt = os.path.join(paths.prompt_dir(device.socket), device.checkout.lstrip("/"),
                          ".branch", pull.head_ref)
    symbol = {"success": "✓", "failure": "✗"}
    try:
        deadline = time.monotonic() + 30
        while device.ci() is None:
            if time.monotonic() > deadline:
                raise SystemExit("error: the device never showed the pull request's CI")
            time.sleep(0.05)
        to_view, to_prompt = [], []
        for index in range(count):
            state = "failure" if index % 2 == 0 else "success"
            pull.checks = [Check("bench", "check_run", "completed", state)]
            pull.updated_at = time.time()
            delivery = deliveries.github("check_run", deliveries.github_check_run(
                pull, "bench", state), SECRET.encode())
            sent = time.perf_counter()
            reply = httpx.post(hub.url + delivery.path, content=delivery.body,
                               headers=delivery.headers, timeout=10)
            if reply.status_code != 200:
                raise SystemExit(f"error: the hub answered {reply.status_code}: {reply.text}")
            viewed = prompted = None
            while viewed is None or prompted is None:
                now = time.perf_counter()
                if now - sent > 30:
                    raise SystemExit("error: a delivery did not reach the device in 30 s")
                if viewed is None and device.ci() == state:
                    viewed = now - sent
                if prompted is None and os.path.exists(prompt):
                    with open(prompt, encoding="utf-8") as handle:
                        if symbol[state] in handle.readline():
                            prompted = now - sent
                time.sleep(0.005)
            to_view.append(viewed)
            to_prompt.append(prompted)
        for what, values in (("status view", to_view), ("prompt file", to_prompt)):
            print(f"   to the {what}: p50 {percentile(values, 0.5) * 1000:6.0f} ms, "
                  f"p99 {percentile(values, 0.99) * 1000:6.0f} ms, max "
                  f"{max(values) * 1000:6.0f} ms (goal: p99 < 2000 ms)")
    finally:
        device.stop()
        hub.stop()


def _fakes_child(conn: Connection) -> None:
    """The fakes in a process of their own (3.): a thousand simulated devices in this one
    would slow their answers, and so the hub's refreshes, through the GIL."""
    with contextlib.ExitStack() as stack:
        up = start_fakes(stack, generate(github_repos=PROJECTS, gitlab_projects=2,
                                         changes_per_repo=6, tickets=40, jira_projects=1))
        conn.send((up.github_url, up.gitlab_url, up.jira_url, up.data))
        conn.recv()  # until told to stop


def section_fanout(up: Upstreams, root: str, devices: int, seconds: float) -> None:
    print(f"3. {devices} devices holding streams on one hub (SQLite), 10 webhooks per second")
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_fakes_child, args=(theirs,), daemon=True)
    child.start()
    github_url, gitlab_url, jira_url, data = ours.recv()
    up = Upstreams(data, up.github, up.gitlab, up.jira, github_url, gitlab_url, jira_url)
    try:
        _fanout(up, root, devices, seconds)
    finally:
        ours.send("stop")
        child.join(10)


def _fanout(up: Upstreams, root: str, devices: int, seconds: float) -> None:
    config = os.path.join(root, "hub-3.toml")
    with open(config, "w") as handle:
        handle.write(hub_toml(up, interval=3600, projects=PROJECTS))
    os.chmod(config, 0o600)
    hub = Hub(f"sqlite:///{root}/fanout.db", "*", config=config, env=HUB_ENV,
              log=os.path.join(root, "hub.log"))
    projects = [f"p{i}" for i in range(PROJECTS)]
    sent_at: dict[str, list[float]] = {p: [] for p in projects}
    latencies: list[float] = []

    def on_reply(project: str, reply: UpstreamReply) -> None:
        now = time.perf_counter()
        times = sent_at[project]
        if reply.sources and times and reply.sources[0].fetched_at:
            latencies.append(now - times[-1])

    async def run() -> tuple[float, float]:
        token = hub.token("bench")
        await asyncio.sleep(3.0)  # the first polls
        holding = asyncio.create_task(hold_devices(hub.url, token, devices, projects,
                                                   seconds + 8, on_reply))
        await asyncio.sleep(5.0)  # every device holds its long poll
        latencies.clear()
        async with httpx.AsyncClient(timeout=10) as client:
            started = time.perf_counter()
            tick = 0
            while time.perf_counter() - started < seconds:
                project = projects[tick % PROJECTS]
                repo = up.data.github_repos[tick % PROJECTS % len(up.data.github_repos)]
                # The fakes run apart: the delivery names the change; the refresh it asks
                # for stores a new version of the project's state whatever it finds.
                pull = next(pr for pr in up.data.pulls[repo] if pr.state == "open")
                delivery = deliveries.github("pull_request", deliveries.github_pull_request(
                    pull), SECRET.encode())
                sent_at[project].append(time.perf_counter())
                await client.post(hub.url + delivery.path, content=delivery.body,
                                  headers=delivery.headers)
                tick += 1
                await asyncio.sleep(max(0.0, started + tick / 10 - time.perf_counter()))
            memory = rss_mib(hub.process.pid), rss_mib(hub.process.pid, "VmHWM")
        await holding
        return memory

    try:
        (rss, hwm) = asyncio.run(run())
        print(f"   {len(latencies)} replies: p50 {percentile(latencies, 0.5) * 1000:6.0f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:6.0f} ms (goal: p99 < 1000 ms)")
        print(f"   hub RSS {rss:.0f} MiB, peak {hwm:.0f} MiB (goal: < 300 MiB)")
    finally:
        hub.stop()


def section_fanout_only(up: Upstreams, root: str, devices: int, seconds: float,
                        dsn: str) -> None:
    """3b: the fan-out alone, from the moment a change is stored: the benchmark stores each
    change into a PostgreSQL hub's database itself (whose NOTIFY wakes the hub at once)."""
    print(f"3b. the same fan-out alone: {devices} streams on one hub (PostgreSQL), 10 changes "
          "per second stored by the benchmark")
    schema = f"bench_{os.urandom(6).hex()}"
    config = os.path.join(root, "hub-3b.toml")
    with open(config, "w") as handle:
        handle.write("[projects.p0]\npaths = []\n")  # polls nothing: changes come from here
    hub = Hub(f"{dsn}?schema={schema}", "*", config=config, env=HUB_ENV,
              log=os.path.join(root, "fanout-pg.log"))
    projects = [f"p{i}" for i in range(PROJECTS)]
    stored_at: dict[str, float] = {}
    latencies: list[float] = []
    snapshot = msgspec.msgpack.encode(Snapshot(change_requests=[], pipelines=[], tickets=[]))

    def on_reply(project: str, reply: UpstreamReply) -> None:
        if project in stored_at and reply.sources:
            latencies.append(time.perf_counter() - stored_at[project])

    async def run() -> tuple[float, float]:
        storage = PostgresStorage(dsn, schema=schema)
        await storage.open()
        try:
            token = hub.token("bench")
            holding = asyncio.create_task(hold_devices(hub.url, token, devices, projects,
                                                       seconds + 8, on_reply))
            await asyncio.sleep(5.0)
            latencies.clear()
            started = time.perf_counter()
            tick = 0
            while time.perf_counter() - started < seconds:
                project = projects[tick % PROJECTS]
                stored_at[project] = time.perf_counter()
                await storage.save_upstream(UpstreamState(
                    project=project, upstream="github", kind="github", data=snapshot,
                    fetched_at=time.time(), attempted_at=time.time()))
                tick += 1
                await asyncio.sleep(max(0.0, started + tick / 10 - time.perf_counter()))
            memory = rss_mib(hub.process.pid), rss_mib(hub.process.pid, "VmHWM")
            await holding
            return memory
        finally:
            await storage.close()

    try:
        (rss, hwm) = asyncio.run(run())
        print(f"   {len(latencies)} replies: p50 {percentile(latencies, 0.5) * 1000:6.0f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:6.0f} ms (goal: p99 < 1000 ms)")
        print(f"   hub RSS {rss:.0f} MiB, peak {hwm:.0f} MiB (goal: < 300 MiB)")
    finally:
        hub.stop()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def section_postgres(up: Upstreams, root: str, dsn: str, window: float) -> None:
    print("4. Two hub processes on one PostgreSQL sharing the polling")
    schema = f"bench_{os.urandom(6).hex()}"
    config = os.path.join(root, "hub-4.toml")
    with open(config, "w") as handle:
        handle.write(hub_toml(up, interval=10))
    os.chmod(config, 0o600)
    url = f"{dsn}?schema={schema}"
    hubs = [Hub(url, "*", config=config, env=HUB_ENV,
                log=os.path.join(root, "pg-a.log")), Hub(url, "*", config=config, env=HUB_ENV,
                                                         log=os.path.join(root, "pg-b.log"))]

    def holder() -> int | None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(f"SELECT holder, expires_at FROM {schema}.leases").fetchone()
        return int(row[0].split(":")[1]) if row and row[1] > time.time() else None

    try:
        token = hubs[0].token("bench")
        time.sleep(2.0)
        leader = next(h for h in hubs if h.process.pid == holder())  # type: ignore[union-attr]
        follower = hubs[1] if leader is hubs[0] else hubs[0]
        before = upstream_requests(up)

        async def both() -> None:
            await asyncio.gather(*(hold_devices(h.url, token, 50, ["p0"], window)
                                   for h in hubs))

        asyncio.run(both())
        rate = (upstream_requests(up) - before) * 3600 / window
        print(f"   polling: {os.path.basename(leader.log)[:-4]} (by the lease), 100 devices on "
              f"both: {rate:.0f} upstream requests/hour")
        stopped = time.perf_counter()
        leader.stop()
        while holder() != follower.process.pid:  # type: ignore[union-attr]
            if time.perf_counter() - stopped > 30:
                raise SystemExit("error: the other hub did not take the polling over")
            time.sleep(0.05)
        print(f"   the other hub polled {time.perf_counter() - stopped:.2f} s after the first "
              "stopped (the lease is handed on at a clean stop)")
    finally:
        for hub in hubs:
            hub.stop()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=30.0,
                        help="seconds over which upstream requests are counted")
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--fanout-seconds", type=float, default=20.0)
    parser.add_argument("--postgres", default=os.environ.get(
        "PROJCTL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--only", type=int, choices=(1, 2, 3, 4), action="append",
                        help="run only these sections")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    sections = set(args.only or (1, 2, 3, 4))
    root = tempfile.mkdtemp(prefix="pjhi", dir="/tmp")
    try:
        with contextlib.ExitStack() as stack:
            data: Dataset = generate(github_repos=PROJECTS, gitlab_projects=2,
                                     changes_per_repo=6, tickets=40, jira_projects=1)
            up = start_fakes(stack, data)
            if 1 in sections:
                section_requests(up, root, args.window)
            if 2 in sections:
                section_webhook(up, root, args.deliveries)
            if 3 in sections:
                section_fanout(up, root, args.devices, args.fanout_seconds)
                section_fanout_only(up, root, args.devices, args.fanout_seconds,
                                    args.postgres)
            if 4 in sections:
                section_postgres(up, root, args.postgres, args.window)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs, loopback; one run)")


if __name__ == "__main__":
    main()
