"""Team event sync: push then pull 100,000 events through a hub, daemon memory, note latency.

Run it from the repository root with the dev virtualenv's interpreter:

    .venv/bin/python bench/sync_throughput.py [--events N] [--rounds N] [--postgres DSN]

1. For the SQLite hub and the PostgreSQL hub (a throw-away database `projctl_bench` on the
   server of --postgres, default the local one), each a real `projctld hub serve` process on
   loopback: three devices (EventStores on SQLite files, filled beforehand) push N events
   between them concurrently over HTTP, then a fresh fourth device pulls all N; --repeat times
   (3), each with a new hub and copies of the filled devices. Printed: each run, then the
   medians of push, pull, and push-then-pull events per second (N over both phases' time;
   goal: at least 20,000/s for each hub), and the hub's peak RSS (VmHWM; goal: under 100 MiB).
2. A real `projctld run` with empty state joins the SQLite hub holding those N events and pulls
   them all; its peak RSS (VmHWM) while doing so (goal: under 100 MiB), and the hub's.
3. The same with large events: --large events of 60 KiB (the largest an event may be is
   64 KiB) pushed to a fresh SQLite hub, then pulled by a real `projctld run`: the peak RSS of
   both (goal: under 100 MiB whatever the events' sizes).
4. Whole-process `projctl note TEXT` against `projctl status`, interleaved (goal: note as fast as
   status), with a bare `python -c pass` for scale.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import anyio
import httpx
import psycopg
from client_latency import (
    ClientError,
    connect,
    make_sandbox,
    request,
    rss_mib,
    start_daemon,
    stop_daemon,
    time_process,
)
from hub_process import Hub

from projctld.config import SyncConfig
from projctld.store.database import Database
from projctld.store.events import EventStore
from projctld.team.sync.events import NoteAdded, uuid7
from projctld.team.sync.exchange import pull_project, push_waiting
from projctld.team.sync.hlc import HybridClock
from projctld.team.sync.hubclient import HubClient
from projctld.upstream.tokens import TokenSource

DEVICES = 3
PROJECT = "demo"
GOALS = {"sqlite": 20_000, "postgresql": 20_000}
RSS_GOAL_MIB = 100.0
LARGE_PAYLOAD = 60 << 10


def fill(path: str | Database, count: int, payload_bytes: int = 0) -> EventStore:
    """A device's store holding `count` notes not yet pushed (or, with `payload_bytes`,
    attachments that large)."""
    store = EventStore(path if isinstance(path, Database) else Database(path))
    clock = HybridClock()
    actor = "dev"
    for i in range(count):
        if payload_bytes:
            store.append(project=PROJECT, actor=actor, type="team.attachment",
                         payload={"blob": f"{i:08d}" + "x" * (payload_bytes - 8)},
                         hlc=clock.now(), now=time.time())
        else:
            store.append(project=PROJECT, actor=actor, type="note.added",
                         payload=NoteAdded(note=uuid7(), text=f"note {i}"), hlc=clock.now(),
                         now=time.time())
    return store


def hub_client(http: httpx.AsyncClient, hub: Hub, token: str, device: str = "") -> HubClient:
    return HubClient(http, hub.url, TokenSource("hub", "sync", SyncConfig(token=token)), device)


async def push_then_pull(hub: Hub, stores: list[EventStore], fresh: EventStore,
                         tokens: list[str]) -> tuple[float, float]:
    async with httpx.AsyncClient(timeout=60) as http:
        started = time.perf_counter()
        async with anyio.create_task_group() as tasks:
            for store, token in zip(stores, tokens, strict=True):
                tasks.start_soon(functools.partial(
                    push_waiting, store, hub_client(http, hub, token, store.device),
                    HybridClock(), now=time.time()))
        pushed = time.perf_counter() - started
        started = time.perf_counter()
        await pull_project(fresh, hub_client(http, hub, tokens[0]), HybridClock(), PROJECT)
        pulled = time.perf_counter() - started
    return pushed, pulled


def bench_hub(kind: str, database: Callable[[], str], events: int, root: str,
              repeats: int) -> Hub:
    """Push then pull `events` through a new hub `repeats` times (devices filled once, their
    databases copied for each run); the median run is the figure. Returns the last hub."""
    print(f"\n== {kind} hub: {events:,} events from {DEVICES} devices, {repeats} runs ==")
    started = time.perf_counter()
    templates = []
    for i in range(DEVICES):
        templates.append(os.path.join(root, kind, "filled", f"dev{i}", "state.db"))
        db = Database(templates[-1])
        fill(db, events // DEVICES)
        db.close()  # each run starts from a copy of the file
    filled = time.perf_counter() - started
    print(f"recorded locally  {events / filled:>10,.0f} events/s ({filled:.2f} s, not part of "
          "the goal)")
    total = events - events % DEVICES
    hub: Hub | None = None
    runs: list[tuple[float, float]] = []
    for run in range(repeats):
        if hub is not None:
            hub.stop()
        hub = Hub(database(), PROJECT)
        try:
            runs.append(_run_once(hub, templates, os.path.join(root, kind, f"run{run}"),
                                  events))
        except BaseException:
            hub.stop()  # not left running behind a failed run
            raise
        pushed, pulled = runs[-1]
        print(f"run {run + 1}             push {total / pushed:>8,.0f}/s, pull "
              f"{total / pulled:>8,.0f}/s, push then pull {total / (pushed + pulled):>8,.0f}/s")
    assert hub is not None
    pushed = statistics.median(p for p, _ in runs)
    pulled = statistics.median(p for _, p in runs)
    rate = statistics.median(total / (p + q) for p, q in runs)
    goal = GOALS[kind]
    print(f"push              {total / pushed:>10,.0f} events/s (median {pushed:.2f} s)")
    print(f"pull              {total / pulled:>10,.0f} events/s (median {pulled:.2f} s)")
    print(f"push then pull    {rate:>10,.0f} events/s median; goal >= {goal:,}/s: "
          f"{'met' if rate >= goal else 'NOT met'}")
    print_rss("hub", hub.process.pid)
    return hub


def _run_once(hub: Hub, templates: list[str], root: str, events: int) -> tuple[float, float]:
    """One push then pull through `hub`, from copies of the filled devices: (push s, pull s)."""
    tokens = [hub.token(f"dev{i}", write=True) for i in range(DEVICES)]
    stores = []
    for i, template in enumerate(templates):
        path = os.path.join(root, f"dev{i}", "state.db")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(template, path)
        stores.append(EventStore(Database(path)))
    total = sum(store.waiting_count() for store in stores)
    fresh = EventStore(Database(os.path.join(root, "fresh", "state.db")))
    pushed, pulled = anyio.run(push_then_pull, hub, stores, fresh, tokens)
    held = fresh.waiting_count() + len(fresh.history(PROJECT, limit=events + 1)[0])
    if held != total or any(store.waiting_count() for store in stores):
        raise SystemExit(f"error: {held} of {total} events arrived")
    return pushed, pulled


def print_rss(what: str, pid: int) -> None:
    hwm = rss_mib(pid, "VmHWM")
    print(f"{what + ' RSS peak':<18}{hwm:>10.1f} MiB (VmHWM); goal < {RSS_GOAL_MIB:g} MiB: "
          f"{'met' if hwm < RSS_GOAL_MIB else 'NOT met'}")


def bench_large(events: int, root: str) -> None:
    print(f"\n== {events:,} events of {LARGE_PAYLOAD >> 10} KiB through a SQLite hub ==")
    hub = Hub(f"sqlite:///{root}/large-hub.db", PROJECT)
    try:
        store = fill(os.path.join(root, "large", "dev", "state.db"), events, LARGE_PAYLOAD)
        token = hub.token("large", write=True)

        async def push() -> None:
            async with httpx.AsyncClient(timeout=60) as http:
                await push_waiting(store, hub_client(http, hub, token, store.device),
                                   HybridClock(), now=time.time())

        started = time.perf_counter()
        anyio.run(push)
        took = time.perf_counter() - started
        print(f"push              {events / took:>10,.0f} events/s, "
              f"{events * LARGE_PAYLOAD / took / 2**20:,.0f} MiB/s")
        bench_daemon_rss(hub, events)
    finally:
        hub.stop()


def bench_daemon_rss(hub: Hub, events: int) -> None:
    print(f"\n== projctld pulling {events:,} events from the SQLite hub ==")
    box = make_sandbox()
    try:
        config = os.path.join(box.root, "config", "projctl", "config.toml")
        with open(config, "a") as handle:
            handle.write(f'\n[sync]\nhub = "{hub.url}"\ninterval = 2.0\n')
        box.env["PROJCTL_HUB_TOKEN"] = hub.token("rss", write=True)
        started = time.perf_counter()
        process = start_daemon(sys.executable, box)
        peak_rss = 0.0
        try:
            while True:
                with connect(box.socket_path, timeout=10) as conn:
                    view = conn.call(request("sync"))["sync"]
                peak_rss = max(peak_rss, rss_mib(process.pid, "VmRSS"))
                if view["pulled"] >= events:
                    break
                if time.perf_counter() - started > 300:
                    raise SystemExit(f"error: only {view['pulled']} pulled after 300 s")
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            hwm = rss_mib(process.pid, "VmHWM")
            now = rss_mib(process.pid, "VmRSS")
        finally:
            stop_daemon(process)
        print(f"pulled {events:,} in {elapsed:.2f} s ({events / elapsed:,.0f} events/s, "
              "start-up included)")
        print(f"daemon RSS peak   {hwm:>10.1f} MiB (VmHWM; highest sampled {peak_rss:.1f}, "
              f"after {now:.1f}); goal < {RSS_GOAL_MIB:g} MiB: "
              f"{'met' if hwm < RSS_GOAL_MIB else 'NOT met'}")
        print_rss("hub", hub.process.pid)
    finally:
        shutil.rmtree(box.root, ignore_errors=True)


def bench_note_latency(rounds: int) -> None:
    print(f"\n== projctl note against projctl status, whole processes, {rounds} rounds ==")
    box = make_sandbox()
    process = start_daemon(sys.executable, box)
    try:
        argv = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "projctl status": [sys.executable, "-m", "projctl_client", "status"],
            "projctl note TEXT": [sys.executable, "-m", "projctl_client", "note",
                                  "deployed the cache fix"],
        }
        samples: dict[str, list[float]] = {name: [] for name in argv}
        names = list(argv)
        for name in names:  # warm-up
            time_process(argv[name], box)
        for index in range(rounds):
            for name in names[index % 3:] + names[:index % 3]:
                samples[name].append(time_process(argv[name], box))
    finally:
        stop_daemon(process)
        shutil.rmtree(box.root, ignore_errors=True)
    bare = statistics.median(samples["python -c pass"])
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<20}{median:>8.1f} ms median  {median / bare:>5.2f}x bare")
    ratio = statistics.median(samples["projctl note TEXT"]) / \
        statistics.median(samples["projctl status"])
    print(f"note / status = {ratio:.2f}; goal: as fast as status (<= 1.0, noise ~0.05): "
          f"{'met' if ratio <= 1.05 else 'NOT met'}")


def postgres_database(dsn: str) -> str:
    """A fresh database `projctl_bench` on the server of `dsn`; its URL."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS projctl_bench")
        conn.execute("CREATE DATABASE projctl_bench")
    return dsn.rsplit("/", 1)[0] + "/projctl_bench"


def drop_postgres_database(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS projctl_bench WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each hub's push then pull; the median is the figure")
    parser.add_argument("--large", type=int, default=1500,
                        help="events of 60 KiB for the large-event run (0: none)")
    parser.add_argument("--postgres", default=os.environ.get(
        "PROJCTL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="pjsync", dir="/tmp")
    try:
        sqlite_runs = iter(range(args.repeat))
        sqlite_hub = bench_hub("sqlite", lambda: f"sqlite:///{root}/hub{next(sqlite_runs)}.db",
                               args.events, root, args.repeat)
        try:
            bench_daemon_rss(sqlite_hub, args.events - args.events % DEVICES)
        finally:
            sqlite_hub.stop()
        try:
            postgres_database(args.postgres)
        except psycopg.OperationalError as exc:
            raise SystemExit(f"error: cannot reach PostgreSQL at {args.postgres}: {exc}") from None
        try:
            bench_hub("postgresql", lambda: postgres_database(args.postgres), args.events, root,
                      args.repeat).stop()
        finally:
            drop_postgres_database(args.postgres)
        if args.large:
            bench_large(args.large, root)
        bench_note_latency(args.rounds)
    except ClientError as exc:
        raise SystemExit(f"error: {exc.message}") from None
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
