"""Upstream polling on the field dataset: cold refresh, steady-state cost, warm status, RSS.

Run it from the repository root with the dev virtualenv's interpreter:

    .venv/bin/python bench/upstream_polling.py [--rounds N] [--editable] [--latency S]

The dataset is the one a reference team reported: 25 repositories (15 GitHub, 10 GitLab) with
about 8 open change requests each, all with CI, and 300 Jira tickets, in 5 projects, served by
the fake upstreams on loopback with 100 ms of latency per request. That team measured 2.8 s to
gather it from the APIs one by one and 0.6 s with their own cache.

1. Cold refresh: a real projctld with empty state; `projctl refresh` until every source is in
   (goal: at most 1.0 s).
2. Warm `projctl status` with the full dataset loaded, as a whole process, against a bare
   `python -c pass`, interleaved (goal: within the skeleton's 2.5x), and the daemon's RSS
   (goal: at most 80 MiB).
3. Steady polling, in process with a compressed clock: one hour at the default intervals
   (60 s GitHub and GitLab, 300 s Jira) with nothing changed upstream: the share of requests that
   were conditional hits (goal: at least 90 %) and GitHub's rate-limit cost per hour (goal: under
   5 % of the 5,000/h budget).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import anyio
import httpx
from client_latency import (
    BASELINE,
    Sandbox,
    check_exit,
    install,
    make_sandbox,
    rss_mib,
    run_in_demo,
    start_daemon,
    stop_daemon,
    time_process,
)

from projctld import logging as logs
from projctld.config import Config
from projctld.sandbox.dataset import generate
from projctld.sandbox.demo import TOKEN, Upstreams, sandbox_config, start_fakes
from projctld.store.database import Database
from projctld.store.http_cache import HttpCache
from projctld.store.snapshots import SnapshotTable
from projctld.upstream.polling import Poller
from projctld.upstream.providers import create_providers

PROJECTS = 5
COLD_GOAL_S = 1.0
RATIO_GOAL = 2.5
RSS_GOAL_MIB = 80.0
CONDITIONAL_GOAL = 0.90
GITHUB_BUDGET = 5000
GITHUB_COST_GOAL = 0.05


def field_dataset():
    return generate(github_repos=15, gitlab_projects=10, changes_per_repo=8, tickets=300,
                    jira_projects=PROJECTS)


def config_toml(config: Config) -> str:
    """The TOML of a sandbox config (flat sections, strings, lists, numbers)."""
    lines = []
    for section in ("github", "gitlab", "jira"):
        lines.append(f"[{section}]")
        for key, value in _fields(getattr(config, section)).items():
            lines.append(f"{key} = {json.dumps(value)}")
    for name, project in config.projects.items():
        lines.append(f"[projects.{name}]")
        for key, value in _fields(project).items():
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def _fields(struct: object) -> dict:
    return {name: getattr(struct, name) for name in struct.__struct_fields__}


def cold_refresh_and_warm_status(up: Upstreams, python: str, box: Sandbox,
                                 rounds: int) -> None:
    config = sandbox_config(up, projects=PROJECTS, my_open_tickets=False,
                            paths={"web": [box.demo]})
    config_path = os.path.join(box.root, "config", "projctl", "config.toml")
    with open(config_path, "w") as handle:
        handle.write(config_toml(config))
    os.chmod(config_path, 0o600)
    projctl = os.path.join(os.path.dirname(python), "projctl")
    process = start_daemon(python, box)
    try:
        started = time.perf_counter()
        result = check_exit(run_in_demo([projctl, "refresh", "--wait", "60"], box))
        cold = time.perf_counter() - started
        print("\n1. Cold refresh (empty state to complete status), fakes at "
              f"{up.github.latency * 1000:.0f} ms per request")
        print(result.stdout.rstrip())
        print(f"   `projctl refresh` as a whole process: {cold:.3f} s  (goal <= {COLD_GOAL_S} s; "
              "the reference team: 2.8 s one by one, 0.6 s cached)")

        text = check_exit(run_in_demo([projctl, "status", "--json"], box)).stdout
        view = json.loads(text)
        counts = [sum(len(p[kind]) for p in view["projects"])
                  for kind in ("change_requests", "pipelines", "tickets")]
        print(f"\n2. Warm status over the full dataset: {counts[0]} change requests, "
              f"{counts[1]} pipelines needing a look, {counts[2]} tickets; "
              f"JSON {len(text) / 1024:.0f} KiB")
        timed = {BASELINE: [python, "-c", "pass"], "projctl status": [projctl, "status"],
                 "projctl status --json": [projctl, "status", "--json"]}
        samples: dict[str, list[float]] = {name: [] for name in timed}
        for name in timed:
            time_process(timed[name], box)  # warm-up
        names = list(timed)
        for index in range(rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(time_process(timed[name], box))
        base = statistics.median(samples[BASELINE])
        for name, values in samples.items():
            median = statistics.median(values)
            print(f"   {name:<24} median {median:6.1f} ms  ratio {median / base:4.2f}x"
                  + (f"  (goal <= {RATIO_GOAL}x)" if name != BASELINE else ""))
        print(f"   projctld RSS with the dataset loaded: {rss_mib(process.pid):.1f} MiB  "
              f"(goal <= {RSS_GOAL_MIB:.0f} MiB)")
    finally:
        stop_daemon(process)


class VirtualClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def steady_hour(up: Upstreams, state_dir: str) -> None:
    config = sandbox_config(up, projects=PROJECTS, my_open_tickets=False)
    clock = VirtualClock()
    db = Database(os.path.join(state_dir, "steady.db"))
    async with httpx.AsyncClient() as client:
        providers = create_providers(config, client, HttpCache(db, clock()), clock=clock)
        poller = Poller(config, providers, SnapshotTable(db), clock=clock)
        poller.last_activity = -1e12  # neither active nor idle: the plain intervals
        due = dict.fromkeys(poller.sources, clock.now)
        fakes = {"github": up.github, "gitlab": up.gitlab, "jira": up.jira}

        async def round_of_polls() -> None:
            for key, source in poller.sources.items():
                if due[key] <= clock.now:
                    await poller.poll(key)
                    due[key] = clock.now + source.interval

        await round_of_polls()  # the cold poll is not part of the steady state
        for fake in fakes.values():
            fake.reset_log()
        graphql_before = up.github.rate["graphql"].used
        core_before = up.github.rate["core"].used
        for _minute in range(60):
            clock.now += 60
            await round_of_polls()
    db.close()
    print("\n3. Steady polling for one hour (compressed clock), nothing changed upstream")
    total = hits = 0
    for name, fake in fakes.items():
        requests = len(fake.requests)
        conditional = sum(r.was_conditional_hit for r in fake.requests)
        total += requests
        hits += conditional
        print(f"   {name:<7} {requests:5d} requests/h, {conditional:5d} answered 304")
    share = hits / total if total else 0.0
    print(f"   conditional hits: {share:.1%} of {total} requests  (goal >= {CONDITIONAL_GOAL:.0%})")
    graphql = up.github.rate["graphql"].used - graphql_before
    core = up.github.rate["core"].used - core_before
    print(f"   GitHub cost per hour: {graphql} GraphQL points ({graphql / GITHUB_BUDGET:.1%} of "
          f"{GITHUB_BUDGET}/h) + {core} REST requests ({core / GITHUB_BUDGET:.1%} of "
          f"{GITHUB_BUDGET}/h); together {(graphql + core) / GITHUB_BUDGET:.1%}  "
          f"(goal < {GITHUB_COST_GOAL:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--editable", action="store_true",
                        help="use this interpreter's install instead of a throw-away venv")
    args = parser.parse_args()
    logs.configure("warning", "console")  # the in-process pollers would log every poll
    box = make_sandbox()
    python = sys.executable if args.editable else install(box)
    with contextlib.ExitStack() as stack:
        up = start_fakes(stack, field_dataset(), token=TOKEN)
        for fake in (up.github, up.gitlab, up.jira):
            fake.latency = args.latency
        cold_refresh_and_warm_status(up, python, box, args.rounds)
        for fake in (up.github, up.gitlab, up.jira):
            fake.latency = 0.0
        anyio.run(steady_hour, up, box.root)


if __name__ == "__main__":
    main()
