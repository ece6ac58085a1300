"""The hub's metrics and `projctl report` say the same of the same events: a real hub (SQLite
and PostgreSQL) and a real daemon that pulled a teammate's history and added its own."""

from __future__ import annotations

import time
import uuid

import httpx
import msgspec
import pytest
from test_sync_e2e import call, join, wait_for
from test_sync_recovery import postgres_database as postgres_database  # the fixture

from projctld.team.sync.events import Event, uuid7
from projctld.team.sync.hlc import pack

DAY = 86400.0


def history(device: str, now: float) -> list[Event]:
    """Bob's deployments of web over 80 days: one to production every 2 days (every fifth
    failing, every seventh restored after an hour), one to staging every 3 days."""
    events: list[Event] = []

    def add(kind: str, at: float, payload: dict) -> None:
        events.append(Event(id=uuid7(at), device=device, seq=len(events) + 1,
                            hlc=pack(int(at * 1000)), project="web", actor="bob", type=kind,
                            payload=payload, created_at=at))

    for number in range(40):
        for environment, every in (("production", 2.0), ("staging", 3.0)):
            end = now - number * every * DAY - 1234.5
            ident = uuid7(end)
            add("deployment.started", end - 90, {
                "deployment": ident, "environment": environment, "branch": "main",
                "commit": f"{number:040x}", "commit_time": end - (number % 9 + 1) * 3600,
                "change_request": f"acme/web#{number}"})
            failed = environment == "production" and number % 5 == 0
            add("deployment.failed" if failed else "deployment.completed", end,
                {"deployment": ident, "environment": environment, "duration": 90.0,
                 "exit_status": 1 if failed else 0})
            if number % 7 == 0:
                add("deployment.marked", end + 600, {"deployment": ident,
                                                     "environment": environment,
                                                     "reason": "rolled back"})
    return events


def comparable(report: dict) -> dict:
    """A report without the moment it was made (the hub's and the daemon's differ by ms)."""
    drop = {"generated_at", "start", "end", "config_error", "type"}

    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in drop}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(report)  # type: ignore[return-value]


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_the_hub_and_projctl_report_agree_on_the_same_events(
        sandbox, hub_server, storage: str, request: pytest.FixtureRequest) -> None:
    hub = hub_server(request.getfixturevalue("postgres_database")
                     if storage == "postgresql" else None)
    now = time.time()
    bob_token = hub.token("bob", "web")
    pushed = history(f"dev-{uuid.uuid4().hex}", now)
    reply = httpx.post(f"{hub.url}/v1/events", timeout=30,
                       content=msgspec.json.encode({"events": pushed}),
                       headers={"Authorization": f"Bearer {bob_token}",
                                "Content-Type": "application/json"})
    assert reply.status_code == 200 and reply.json()["accepted"] == len(pushed)

    ann = join(sandbox, hub, "ann")
    # Ann deploys now, and marks one of bob's deployments as the cause of a failure.
    plan = call(ann, "deploy_start", project="web", environment="production", branch="fix",
                commit="f" * 40, commit_time=now - 1800)
    call(ann, "deploy_finish", project="web", deployment=plan["deployment"], exit_status=0,
         duration=12.0)
    marked = {e.payload["deployment"] for e in pushed if e.type == "deployment.marked"}
    bobs = next(e.payload["deployment"] for e in pushed if e.type == "deployment.completed"
                and e.payload["environment"] == "production"
                and e.payload["deployment"] not in marked)
    wait_for(lambda: call(ann, "log", project="web", limit=1, types=["deployment"])["events"])
    wait_for(lambda: len(call(ann, "log", project="web", limit=10000,
                              types=["deployment"])["events"]) >= len(pushed) + 2)
    call(ann, "deploy_mark", project="web", deployment=bobs, reason="it broke the cache")
    wait_for(lambda: call(ann, "sync")["sync"]["waiting"] == 0)

    ann_token = ann.env["PROJCTL_HUB_TOKEN"]
    compared = 0
    for days in (7, 30, 90):
        for environment in (None, "production", "staging"):
            local = call(ann, "report", project="web", days=days, environment=environment)
            params: dict[str, object] = {"project": "web", "days": days}
            if environment:
                params["environment"] = environment
            remote = httpx.get(f"{hub.url}/v1/metrics", params=params, timeout=30,
                               headers={"Authorization": f"Bearer {ann_token}"}).json()
            assert comparable(remote) == comparable(local), (days, environment)
            compared += local["current"]["deployments"] + local["previous"]["deployments"]
    # Not an agreement on nothing: the periods held deployments, failures and restores.
    assert compared > 100
    month = call(ann, "report", project="web", days=30, environment="production")["current"]
    assert month["failed"] and month["marked"] and month["restored"] and month["lead_times"]
