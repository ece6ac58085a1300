"""Team events end to end: real daemons syncing through a real hub process on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable

from conftest import HubProcess, Sandbox

from projctl_client.connection import request

SYNC = """
[sync]
hub = "{url}"
interval = 1.0
debounce = 0.05
max_backoff = 1.0
actor = "{actor}"

[projects.web]
paths = ["~/web"]
"""


def join(box: Sandbox, hub: HubProcess, actor: str) -> Sandbox:
    """Configure a device of the team and start its daemon."""
    box.write_config(SYNC.format(url=hub.url, actor=actor))
    box.env["PROJCTL_HUB_TOKEN"] = hub.token(actor, "web")
    box.start_daemon()
    return box


def call(box: Sandbox, kind: str, **fields: object) -> dict:
    with box.connect() as conn:
        return conn.call(request(kind, **fields))


def wait_for(condition: Callable[[], object], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


def log_ids(box: Sandbox) -> list[str]:
    """The ids of every event of web the device holds, oldest first (a page at a time)."""
    ids: list[str] = []
    cursor = None
    while True:
        view = call(box, "log", project="web", limit=10000 - len(ids), paged=True,
                    cursor=cursor)
        ids += [e["id"] for e in view["events"]]
        cursor = view["next"]
        if cursor is None or len(ids) >= 10000:
            return ids


def test_a_note_reaches_a_teammate_without_anyone_asking(sandbox, more_sandboxes,
                                                          hub_server) -> None:
    hub = hub_server()
    ann, bob = join(sandbox, hub, "ann"), join(more_sandboxes(), hub, "bob")
    recorded = call(ann, "note", project="web", text="hotfix is on staging")["event"]
    assert recorded["actor"] == "ann"
    assert wait_for(lambda: recorded["id"] in log_ids(bob))
    (seen,) = call(bob, "log", project="web")["events"]
    assert seen["payload"]["text"] == "hotfix is on staging"
    assert seen["mine"] is False
    assert wait_for(lambda: call(ann, "sync")["sync"]["waiting"] == 0)
    view = call(ann, "sync")["sync"]
    assert view["reachable"] is True
    assert view["error"] is None


def test_a_deployment_shows_in_a_teammates_status(sandbox, more_sandboxes, hub_server) -> None:
    hub = hub_server()
    ann, bob = join(sandbox, hub, "ann"), join(more_sandboxes(), hub, "bob")
    plan = call(ann, "deploy_start", project="web", environment="production", branch="main",
                commit="a" * 40)
    call(ann, "deploy_finish", project="web", deployment=plan["deployment"], exit_status=0,
         duration=12.5)

    def bobs_deployments() -> list:
        return call(bob, "status")["projects"][0]["deployments"]

    (deployment,) = wait_for(bobs_deployments)
    assert wait_for(lambda: bobs_deployments()[0]["state"] == "completed")
    deployment = bobs_deployments()[0]
    assert (deployment["environment"], deployment["actor"], deployment["branch"],
            deployment["duration"]) == ("production", "ann", "main", 12.5)


def test_events_recorded_while_the_hub_is_down_arrive_after_it_returns(
        sandbox, more_sandboxes, hub_server) -> None:
    hub = hub_server()
    ann, bob = join(sandbox, hub, "ann"), join(more_sandboxes(), hub, "bob")
    wait_for(lambda: call(ann, "sync")["sync"]["last_success"])
    hub.stop()
    ids = [call(ann, "note", project="web", text=f"offline {i}")["event"]["id"]
           for i in range(3)]

    def offline_view() -> dict | None:
        view = call(ann, "status")["sync"]
        return view if view["reachable"] is False else None

    view = wait_for(offline_view)
    assert view["waiting"] == 3
    assert view["error"]["code"] == "unreachable"
    hub.start()  # same port, same database; nobody touches the devices
    assert wait_for(lambda: set(ids) <= set(log_ids(bob)), timeout=30)
    assert wait_for(lambda: call(ann, "sync")["sync"]["waiting"] == 0)


def test_sync_now_waits_for_the_attempt_and_reports_it(sandbox, hub_server) -> None:
    hub = hub_server()
    ann = join(sandbox, hub, "ann")
    call(ann, "note", project="web", text="one")
    view = call(ann, "sync", now=True, wait=20)["sync"]
    assert view["waiting"] == 0
    assert view["last_success"] is not None
    assert view["hub"] == hub.url


def test_a_client_older_than_the_hub_accepts_is_told_how_to_upgrade(sandbox,
                                                                    hub_server) -> None:
    hub = hub_server(None, "--min-client-version", "99.0.0")
    ann = join(sandbox, hub, "ann")
    call(ann, "note", project="web", text="stuck")
    view = call(ann, "sync", now=True, wait=20)["sync"]
    assert view["error"]["code"] == "upgrade_required"
    assert "pip install --upgrade 'projctl>=99.0.0'" in view["error"]["suggestions"]
    assert view["waiting"] == 1  # kept, to be sent after the upgrade


def test_a_wrong_token_is_reported_with_where_it_came_from(sandbox, hub_server) -> None:
    hub = hub_server()
    sandbox.write_config(SYNC.format(url=hub.url, actor="ann"))
    sandbox.env["PROJCTL_HUB_TOKEN"] = "pjh_not-a-real-token"
    sandbox.start_daemon()
    call(sandbox, "note", project="web", text="x")
    view = call(sandbox, "sync", now=True, wait=20)["sync"]
    assert view["error"]["code"] == "unauthorized"
    assert "the hub token comes from $PROJCTL_HUB_TOKEN (inherited when projctld started)" in \
        view["error"]["suggestions"]
    assert "put PROJCTL_HUB_TOKEN=<the token> in ~/config/projctl/environment (chmod 600), then " \
        "projctl daemon reload; or export PROJCTL_HUB_TOKEN=<the token> and run projctl daemon " \
        "restart from that shell" in view["error"]["suggestions"]
    assert "pjh_not-a-real-token" not in str(view)
