"""Crash test: kill -9 the daemon and the hub at random moments during sync, many times; after
recovery every acknowledged event is present exactly once, on the hub and at a teammate."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import httpx
from conftest import HubProcess
from test_sync_e2e import SYNC, call, log_ids, wait_for

from projctl_client.connection import ClientError, request

ROUNDS = 8


def _record_burst(box, count: int, acknowledged: list[str], stop: threading.Event) -> None:
    """Record notes one by one until `count` or until the daemon dies under us."""
    try:
        with box.connect(timeout=5) as conn:
            for i in range(count):
                if stop.is_set():
                    return
                reply = conn.call(request("note", project="web", text=f"burst {i}"))
                acknowledged.append(reply["event"]["id"])
    except ClientError:
        pass  # killed mid-burst: what was acknowledged before must survive


def _hub_ids(hub: HubProcess, token: str) -> list[str]:
    ids, after = [], 0
    while True:
        page = httpx.get(f"{hub.url}/v1/events", params={"project": "web", "after": after,
                                                         "limit": 1000},
                         headers={"authorization": f"Bearer {token}"}, timeout=10).json()
        ids += [event["id"] for event in page["events"]]
        after = page["next_after"]
        if not page["more"]:
            return ids


def test_kill_9_during_sync_loses_and_doubles_nothing(sandbox, more_sandboxes,
                                                       hub_server) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    hub = hub_server()
    token = hub.token("ann", "web")
    sandbox.write_config(SYNC.format(url=hub.url, actor="ann"))
    sandbox.env["PROJCTL_HUB_TOKEN"] = token
    daemon = sandbox.start_daemon()
    acknowledged: list[str] = []
    for round_ in range(ROUNDS):
        stop = threading.Event()
        burst = threading.Thread(target=_record_burst,
                                 args=(sandbox, 40, acknowledged, stop), daemon=True)
        burst.start()
        time.sleep(rng.uniform(0.0, 0.4))
        victim = rng.choice(["daemon", "hub", "both"])
        if victim in ("hub", "both"):
            hub.stop(signal.SIGKILL)
        if victim in ("daemon", "both"):
            daemon.kill()
            daemon.wait()
        stop.set()
        burst.join(10)
        if victim in ("hub", "both"):
            hub.start()
        if victim in ("daemon", "both"):
            daemon = sandbox.start_daemon()
        assert round_ < ROUNDS, f"seed {seed}"

    # Recovery: a teammate joins; everything ann's device holds must reach the hub and bob.
    bob = more_sandboxes()
    bob.write_config(SYNC.format(url=hub.url, actor="bob"))
    bob.env["PROJCTL_HUB_TOKEN"] = hub.token("bob", "web")
    bob.start_daemon()
    assert wait_for(lambda: call(sandbox, "sync", now=True, wait=10)["sync"]["waiting"] == 0,
                    timeout=60), f"seed {seed}"
    held_by_ann = log_ids(sandbox)
    assert set(acknowledged) <= set(held_by_ann), f"acknowledged events lost (seed {seed})"
    assert len(held_by_ann) == len(set(held_by_ann)), f"seed {seed}"
    on_hub = _hub_ids(hub, token)
    assert sorted(on_hub) == sorted(held_by_ann), f"hub lost or doubled events (seed {seed})"
    assert wait_for(lambda: sorted(log_ids(bob)) == sorted(held_by_ann), timeout=60), \
        f"seed {seed}"
