"""The hub's team pages with 100,000 events: p50/p95 per page on SQLite and PostgreSQL.

Run it from the repository root with the dev virtualenv's interpreter:

    .venv/bin/python bench/team_page.py [--events N] [--rounds N] [--postgres DSN]

For the SQLite hub and the PostgreSQL hub (a throw-away database `projctl_bench_web` on the
server of --postgres, default the local one): one project's year of team history, N events
(100,000) from three devices, is stored (deployments to four environments with their failures,
restores and marks, notes, branches, workflow runs), then a real `projctld hub serve` process
serves it on loopback and a signed-in browser session (httpx) asks for each page --rounds times
(50, after 3 unmeasured), one after another. Printed per page: p50, p95 and the slowest, in
milliseconds (goal: p95 under 200 ms for every page), and the hub's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import tempfile
import time

import anyio
import httpx
import psycopg
from client_latency import rss_mib
from hub_process import Hub

from projctld.hub.storage.backends import open_storage
from projctld.team.sync.events import Event, uuid7
from projctld.team.sync.hlc import pack

PROJECT = "web"
DAY = 86400.0
GOAL_MS = 200.0
ENVIRONMENTS = ("production", "staging", "dev", "preview")
PAGES = [
    ("project (environments, latest events)", f"/p/{PROJECT}"),
    ("environment history (production)", f"/p/{PROJECT}/deployments?environment=production"),
    ("timeline", f"/p/{PROJECT}/timeline"),
    ("timeline: deployments to staging", f"/p/{PROJECT}/timeline?type=deployment"
                                         "&environment=staging"),
    ("timeline: one person's, 30 days", f"/p/{PROJECT}/timeline?who=carol&since=30d"),
    ("metrics, 7 days (production)", f"/p/{PROJECT}/metrics?days=7"),
    ("metrics, 30 days (production)", f"/p/{PROJECT}/metrics?days=30"),
    ("metrics, 90 days (every environment)", f"/p/{PROJECT}/metrics?days=90&environment="),
    ("GET /v1/metrics, 90 days", f"/v1/metrics?project={PROJECT}&days=90"),
]


def history(count: int, now: float, seed: int = 7) -> dict[str, list[Event]]:
    """A year of a team's events, per user: about a third deployment events."""
    rng = random.Random(seed)
    users = {user: f"bench-{user}-{os.urandom(4).hex()}" for user in ("ann", "bob", "carol")}
    events: dict[str, list[Event]] = {user: [] for user in users}
    start = now - 365 * DAY
    step = 365 * DAY / count
    made = 0

    def add(user: str, kind: str, at: float, payload: dict) -> None:
        nonlocal made
        own = events[user]
        own.append(Event(id=uuid7(at), device=users[user], seq=len(own) + 1,
                         hlc=pack(int(at * 1000)), project=PROJECT, actor=user, type=kind,
                         payload=payload, created_at=at))
        made += 1

    while made < count:
        at = start + made * step
        user = rng.choice(list(users))
        roll = rng.random()
        if roll < 0.12:
            environment = rng.choices(ENVIRONMENTS, weights=(2, 4, 6, 3))[0]
            ident = uuid7(at)
            add(user, "deployment.started", at, {
                "deployment": ident, "environment": environment, "branch": "main",
                "commit": os.urandom(20).hex(), "commit_time": at - rng.uniform(600, 3 * DAY),
                "change_request": f"acme/web#{rng.randrange(1, 5000)}"})
            failed = rng.random() < 0.1
            add(user, "deployment.failed" if failed else "deployment.completed", at + 120, {
                "deployment": ident, "environment": environment, "duration": 120.0,
                "exit_status": 1 if failed else 0})
            if not failed and rng.random() < 0.04:
                add(rng.choice(list(users)), "deployment.marked", at + 3600, {
                    "deployment": ident, "environment": environment, "reason": "rollback"})
        elif roll < 0.55:
            add(user, "note.added", at, {"note": uuid7(at), "text": "note " * rng.randrange(2, 40)})
        elif roll < 0.62:
            add(user, "branch.created", at, {"name": f"feature-{made}", "base": "main"})
        else:
            run = uuid7(at)
            add(user, "workflow.started", at, {"run": run, "workflow": "release"})
            for step_name in ("test", "build"):
                add(user, "workflow.step", at + 30, {"run": run, "step": step_name,
                                                     "success": True, "duration": 30.0})
            add(user, "workflow.completed", at + 90, {"run": run, "workflow": "release",
                                                      "success": True, "duration": 90.0})
    return events


async def store(database: str, events: dict[str, list[Event]]) -> None:
    storage = open_storage(database)
    await storage.open()
    try:
        for user, own in events.items():
            for first in range(0, len(own), 1000):
                await storage.push(user, own[first:first + 1000])
    finally:
        await storage.close()


def measure(hub: Hub, rounds: int) -> bool:
    token = hub.token("viewer")
    met = True
    with httpx.Client(base_url=hub.url, timeout=60) as client:
        form = client.get("/signin").text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form).group(1)  # type: ignore
        signed = client.post("/signin", data={"token": token, "csrf": csrf})
        assert signed.status_code == 303, signed.text
        print(f"  {'page':<42} {'p50':>8} {'p95':>8} {'max':>8}")
        for name, path in PAGES:
            headers = {"Authorization": f"Bearer {token}"} if path.startswith("/v1/") else {}
            times = []
            for number in range(rounds + 3):
                started = time.perf_counter()
                reply = client.get(path, headers=headers)
                took = (time.perf_counter() - started) * 1000
                assert reply.status_code == 200, (path, reply.status_code, reply.text[:300])
                if number >= 3:
                    times.append(took)
            times.sort()
            p50 = statistics.median(times)
            p95 = times[max(0, round(0.95 * len(times)) - 1)]
            met &= p95 < GOAL_MS
            print(f"  {name:<42} {p50:>6.1f}ms {p95:>6.1f}ms {times[-1]:>6.1f}ms"
                  + ("" if p95 < GOAL_MS else "  over the goal"))
    print(f"  hub peak RSS {rss_mib(hub.process.pid, 'VmHWM'):.1f} MiB")
    return met


def bench(kind: str, database: str, events: dict[str, list[Event]], count: int,
          rounds: int) -> bool:
    print(f"\n{kind} hub: {count:,} events of one project over a year")
    started = time.perf_counter()
    anyio.run(store, database, events)
    print(f"  stored in {time.perf_counter() - started:.1f} s")
    hub = Hub(database, PROJECT)
    try:
        return measure(hub, rounds)
    finally:
        hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--postgres", default=os.environ.get(
        "PROJCTL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    events = history(args.events, time.time())
    kinds = sum(len(own) for own in events.values())
    deployments = sum(1 for own in events.values() for e in own
                      if e.type == "deployment.started")
    print(f"history: {kinds:,} events, {deployments:,} deployments to "
          f"{len(ENVIRONMENTS)} environments, {len(events)} users")
    results = {}
    with tempfile.TemporaryDirectory(prefix="pjweb") as root:
        results["sqlite"] = bench("SQLite", f"sqlite:///{root}/hub.db", events, kinds,
                                  args.rounds)
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS projctl_bench_web WITH (FORCE)")
        conn.execute("CREATE DATABASE projctl_bench_web")
    try:
        results["postgresql"] = bench(
            "PostgreSQL", args.postgres.rsplit("/", 1)[0] + "/projctl_bench_web", events,
            kinds, args.rounds)
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS projctl_bench_web WITH (FORCE)")
    print("\ngoal: p95 under 200 ms for every page: "
          + ", ".join(f"{kind} {'met' if met else 'NOT met'}" for kind, met in results.items()))


if __name__ == "__main__":
    main()
