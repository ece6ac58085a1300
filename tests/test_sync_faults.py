"""The faults real teams meet, with real daemons and hubs: a refused event, clocks that are off
or jumped, an edit on a slow device, forged identities, histories too large for one reply."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time

import httpx
import msgspec
import pytest
from conftest import HubProcess, Sandbox, skewed
from test_sync_e2e import SYNC, call, log_ids, wait_for
from test_sync_recovery import Device, hub_ids, sqlite_path

from projctl_client.connection import ClientError, request
from projctld.config import load_config
from projctld.errors import ConfigError
from projctld.team.sync.events import Event, new_device_id, uuid7
from projctld.team.sync.hlc import pack, physical_seconds
from projctld.team.sync.wire import MAX_EVENT, MSGPACK, PushRequest

TWO_PROJECTS = SYNC + '\n[projects.api]\npaths = ["~/api"]\n'


def texts(device: Device) -> dict[str, str]:
    """Each note's text as this device's state shows it."""
    with sqlite3.connect(f"file:{device.state_db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT note, text FROM notes").fetchall())


def push_raw(hub: HubProcess, token: str, events: list[Event]) -> httpx.Response:
    """A push as any client could send it, with no projctld to check it first."""
    return httpx.post(f"{hub.url}/v1/events", timeout=30,
                      content=msgspec.msgpack.encode(PushRequest(events=events, partial=True)),
                      headers={"authorization": f"Bearer {token}", "content-type": MSGPACK,
                               "accept": "application/json"})


def event(device: str, seq: int, type_: str, payload: dict, *, hlc: int | None = None,
          actor: str = "bob", project: str = "web") -> Event:
    now = time.time()
    return Event(id=uuid7(), device=device, seq=seq, hlc=hlc or pack(int(now * 1000)),
                 project=project, actor=actor, type=type_, payload=payload, created_at=now)


def test_a_refused_event_waits_aside_and_nothing_else_waits(sandbox, more_sandboxes,
                                                             hub_server) -> None:
    hub = hub_server()
    bob = Device(more_sandboxes(), "bob", hub).start()
    ann = Device(sandbox, "ann", hub)
    ann.box.write_config(TWO_PROJECTS.format(url=hub.url, actor="ann"))
    ann.token = ann.box.env["PROJCTL_HUB_TOKEN"] = hub.token("ann", "web")  # not api
    ann.process = ann.box.start_daemon()
    call(ann.box, "status")  # its state database is made by now
    ann.stop()
    # An event larger than events may be, as an older projctl recorded it.
    with sqlite3.connect(ann.state_db) as conn:
        device = conn.execute("SELECT value FROM meta WHERE key = 'device'").fetchone()[0]
        conn.execute("INSERT INTO events(id, device, seq, hlc, project, actor, type, payload, "
                     "created_at, pushed) VALUES (?, ?, 1, ?, 'web', 'ann', 'x.blob', ?, ?, 0)",
                     (uuid7(), device, pack(int(time.time() * 1000)),
                      msgspec.msgpack.encode({"blob": "x" * MAX_EVENT}), time.time()))
    ann.process = ann.box.start_daemon()
    refused = call(ann.box, "note", project="api", text="the token cannot write api")
    mine = ann.note("this one goes")
    theirs = bob.note("and this one comes")

    wait_for(lambda: mine in log_ids(bob.box) and theirs in log_ids(ann.box))
    view = wait_for(lambda: (v := call(ann.box, "status")["sync"])["refused"] == 2 and v)
    assert view["waiting"] == 2 and view["error"] is None
    assert {(g["code"], g["project"]) for g in view["set_aside"]} == {
        ("forbidden", "api"), ("too_large", "web")}
    assert [p["project"] for p in view["pull_errors"]] == ["api"]  # web is pulled all along
    shown = ann.box.client("sync")
    assert shown.returncode == 0
    assert "1 event of api (forbidden): token" in shown.stdout
    assert "--project api --write" in shown.stdout and "kept on this machine" in shown.stdout
    assert "(too_large): event" in shown.stdout and "not pulled web" not in shown.stdout
    assert "2 events refused by the hub (forbidden, too_large)" in ann.box.client(
        "status").stdout

    # The operator gives ann a token that may write api: a restart sends it at once.
    ann.stop()
    ann.token = ann.box.env["PROJCTL_HUB_TOKEN"] = hub.token("ann", "web", "api")
    ann.process = ann.box.start_daemon()
    wait_for(lambda: call(ann.box, "status")["sync"]["refused"] == 1)
    assert refused["event"]["id"] in {e["id"] for e in call(
        bob.box, "log", project="web")["events"]} | set(_api_ids(hub, ann.token))


def _api_ids(hub: HubProcess, token: str) -> list[str]:
    page = httpx.get(f"{hub.url}/v1/events", params={"project": "api"},
                     headers={"authorization": f"Bearer {token}"}, timeout=10).json()
    return [e["id"] for e in page["events"]]


def seconds(message: str, before: str, after: str) -> float:
    """The N of `BEFORE N s AFTER` in `message` (the clocks are read to a second or so)."""
    match = re.search(re.escape(before) + r" (\d+) s " + re.escape(after), message)
    assert match, message
    return float(match.group(1))


def test_clocks_a_slow_hub_and_a_fast_device_are_named_and_refuse_no_one(
        sandbox, more_sandboxes, hub_server) -> None:
    hub = hub_server(env=skewed(dict(os.environ), -600))  # ten minutes slow
    ann = Device(sandbox, "ann", hub).start()
    bob = Device(more_sandboxes(), "bob", hub).start()
    carol = Device(more_sandboxes(), "carol", hub)
    carol.box.env.update(skewed(carol.box.env, 900))  # fifteen minutes fast
    carol.start()
    ids = [ann.note("ann's"), bob.note("bob's"), carol.note("carol's")]
    for device in (ann, bob, carol):
        wait_for(lambda d=device: sorted(log_ids(d.box)) == sorted(ids))
        wait_for(lambda d=device: call(d.box, "status")["sync"]["waiting"] == 0)

    def problem(device: Device) -> dict | None:
        return (call(device.box, "sync", now=True)["sync"]["clock"] or {}).get("problem")

    ann_says = wait_for(lambda: (p := problem(ann)) and p["code"] == "hub_clock" and p)
    assert seconds(ann_says["message"], "the hub's clock runs", "slow") == pytest.approx(600, abs=5)
    carol_says = wait_for(lambda: (p := problem(carol)) and p["code"] == "device_clock" and p)
    assert seconds(carol_says["message"], "this device's clock runs", "fast") == \
        pytest.approx(900, abs=5)
    assert "timedatectl set-ntp true" in carol_says["suggestions"][0]
    later = [ann.note("after the hub knows its clock"), carol.note("and carol's")]
    for device in (ann, bob, carol):
        wait_for(lambda d=device: set(later) <= set(log_ids(d.box)))
    # None of it was left aside: the hub took what the slow clock of its own would refuse.
    assert all(call(d.box, "status")["sync"]["refused"] == 0 for d in (ann, bob, carol))


def test_a_clock_that_jumped_ahead_and_back_stops_nothing(sandbox, more_sandboxes,
                                                          hub_server) -> None:
    hub = hub_server()
    bob = Device(more_sandboxes(), "bob", hub).start()
    ann = Device(sandbox, "ann", hub)
    plain_env = dict(ann.box.env)
    hub.stop()  # offline while the clock is wrong: the events wait, stamped an hour ahead
    ann.box.env = skewed(plain_env, 3600)
    ann.start()
    jumped = [ann.note("stamped an hour ahead")]
    ann.stop()
    ann.box.env = plain_env  # the clock is right again; the HLC still an hour ahead
    ann.start()
    jumped.append(ann.note("stamped after it"))
    hub.start()

    wait_for(lambda: jumped == [i for i in log_ids(bob.box) if i in jumped])  # in order
    wait_for(lambda: call(ann.box, "status")["sync"]["waiting"] == 0)
    view = call(ann.box, "sync")["sync"]
    assert view["restamped"] == 2 and view["refused"] == 0
    fresh = call(ann.box, "note", project="web", text="after all that")["event"]
    # The clock follows the wall clock again, rather than stay an hour ahead.
    assert physical_seconds(fresh["hlc"]) - time.time() < 60
    wait_for(lambda: fresh["id"] in log_ids(bob.box))


def test_an_edit_on_a_slow_device_supersedes_what_it_has_seen(sandbox, more_sandboxes,
                                                               hub_server) -> None:
    hub = hub_server()
    ann = Device(sandbox, "ann", hub).start()
    bob = Device(more_sandboxes(), "bob", hub)
    bob.box.env.update(skewed(bob.box.env, -600))  # ten minutes slow
    bob.start()
    added = call(ann.box, "note", project="web", text="v1")["event"]
    note = added["payload"]["note"]
    wait_for(lambda: added["id"] in log_ids(bob.box))

    edited = bob.box.client("note", "--project", "web", "--edit", note[-8:], "v2")
    assert edited.returncode == 0 and edited.stdout.startswith("edited note in web")
    assert "warning" not in edited.stdout
    assert texts(bob)[note] == "v2"  # at once, on the slow device itself
    wait_for(lambda: texts(ann).get(note) == "v2")


def test_the_hub_says_who_pushed_each_event_and_forgeries_change_nothing(
        sandbox, more_sandboxes, hub_server) -> None:
    hub = hub_server()
    bob = Device(more_sandboxes(), "bob", hub).start()
    carol = Device(more_sandboxes(), "carol", hub).start()
    ann = Device(sandbox, "bob", hub)  # ann calls herself bob in her config...
    ann.token = hub.token("ann", "web")  # ...but her token is hers
    ann.start()
    posing = ann.note("I am bob")
    plan = call(bob.box, "deploy_start", project="web", environment="production")
    wait_for(lambda: plan["started"]["id"] in log_ids(ann.box))
    # ann's projctl will not end bob's deployment...
    with pytest.raises(ClientError) as refused, ann.box.connect() as conn:
        conn.call(request("deploy_finish", project="web", deployment=plan["deployment"],
                          exit_status=0, duration=1.0))
    assert refused.value.code == "not_yours" and "started by bob" in refused.value.message
    call(bob.box, "deploy_finish", project="web", deployment=plan["deployment"],
         exit_status=1, duration=3.0)
    wait_for(lambda: posing in log_ids(carol.box) and (
        call(carol.box, "status")["projects"][0]["deployments"] or [{}])[0].get(
        "state") == "failed")

    seen = {e["id"]: e for e in call(carol.box, "log", project="web")["events"]}
    assert (seen[posing]["user"], seen[posing]["actor"]) == ("ann", "bob")
    line = next(line for line in carol.box.client("log", "web").stdout.splitlines()
                if "I am bob" in line)
    assert " ann " in line and " bob " not in line
    # ...and when her token pushes an end anyway, stamped before bob's, nobody takes it.
    started = seen[plan["started"]["id"]]
    forged = event(new_device_id(), 1, "deployment.completed", {
        "deployment": plan["deployment"], "environment": "production", "duration": 1.0,
        "exit_status": 0}, hlc=started["hlc"] + 1)
    assert push_raw(hub, ann.token, [forged]).json()["accepted"] == 1
    wait_for(lambda: forged.id in log_ids(carol.box) and forged.id in log_ids(bob.box))
    for device in (carol, bob):
        (deployment,) = call(device.box, "status")["projects"][0]["deployments"]
        assert (deployment["state"], deployment["actor"]) == ("failed", "bob")
    assert sorted(hub_ids(hub, ann.token)) == sorted(log_ids(carol.box))


def test_a_name_that_would_display_as_another_is_refused(tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[sync]\nactor = "\u202ebob"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(config))
    assert "sync.actor" in caught.value.message and "U+202E" in caught.value.message


def test_no_history_breaks_the_log(sandbox: Sandbox, more_sandboxes, hub_server) -> None:
    hub = hub_server()
    writer = hub.token("bob", "web")
    device = new_device_id()
    bulky = [event(device, seq, "team.attachment", {"blob": "x" * (60 << 10)})
             for seq in range(1, 41)]  # each within the bound, 2.4 MB together
    for start in range(0, 40, 10):
        assert push_raw(hub, writer, bulky[start:start + 10]).json()["accepted"] == 10
    hub.stop()
    legacy = event(device, 41, "team.attachment", {"blob": "y" * 1_100_000})
    with sqlite3.connect(sqlite_path(hub)) as conn:  # as a hub older than the bound held it
        conn.execute(
            "INSERT INTO events (hub_seq, id, device, seq, hlc, project, actor, type, payload,"
            " created_at, pushed_by, received_at, size) SELECT max(hub_seq) + 1, ?, ?, ?, ?,"
            " ?, ?, ?, ?, ?, 'bob', ?, ? FROM events",
            (legacy.id, legacy.device, legacy.seq, legacy.hlc, legacy.project, legacy.actor,
             legacy.type, msgspec.msgpack.encode(legacy.payload), legacy.created_at,
             time.time(), 1_100_200))
    hub.start()
    ann = Device(sandbox, "ann", hub).start()
    expected = [e.id for e in bulky] + [legacy.id]
    wait_for(lambda: sorted(log_ids(ann.box)) == sorted(expected), timeout=60)

    shown = ann.box.client("log", "web", "--limit", "10000")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("web: 41 events, oldest first")
    assert "(cut: larger than events may be)" in shown.stdout
    as_json = ann.box.client("log", "web", "--limit", "10000", "--json")
    assert as_json.returncode == 0, as_json.stderr
    events = json.loads(as_json.stdout)["events"]
    assert [e["id"] for e in events] == [e.id for e in sorted([*bulky, legacy],
                                                              key=Event.order_key)]
    assert [e["truncated"] for e in events].count(True) == 1

    # An event larger than the bound is refused when it would be recorded, with why.
    ann.box.write_config(SYNC.format(url=hub.url, actor="ann").replace(
        'paths = ["~/web"]', 'paths = ["~/web"]\ndeploy = "' + " ".join(["x" * 250] * 300)
        + '"'))
    ann.stop()
    ann.process = ann.box.start_daemon()
    deploy = ann.box.client("deploy", "production", "--project", "web")
    assert deploy.returncode == 1
    assert "the event would take" in deploy.stderr and "65536" in deploy.stderr
