"""A hub restored from an older copy, a team moved from a SQLite hub to PostgreSQL, a device's
state database restored: real hubs and daemons; afterwards every device, and a new one, holds
every event exactly once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio
import httpx
import psycopg
import pytest
from conftest import HubProcess, Sandbox
from test_hub_storage import DSN, require_postgres
from test_sync_e2e import SYNC, call, log_ids, wait_for


@dataclass
class Device:
    """A teammate's machine: its sandbox, its daemon, the hub it syncs with."""

    box: Sandbox
    actor: str
    hub: HubProcess
    token: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Device:
        self.box.write_config(SYNC.format(url=self.hub.url, actor=self.actor))
        self.box.env["PROJCTL_HUB_TOKEN"] = self.token or self.hub.token(self.actor, "web")
        self.token = self.box.env["PROJCTL_HUB_TOKEN"]
        self.process = self.box.start_daemon()
        return self

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(15)

    def note(self, text: str) -> str:
        return call(self.box, "note", project="web", text=text)["event"]["id"]

    @property
    def state_db(self) -> str:
        return os.path.join(self.box.state_dir, "state.db")


def sqlite_path(hub: HubProcess) -> str:
    return hub.database.removeprefix("sqlite://")


def copy_database(source: str, target: str) -> None:
    """As an operator's backup (and restore) would: a consistent copy of a live database."""
    with sqlite3.connect(source) as origin, sqlite3.connect(target) as copy:
        origin.backup(copy)


def hub_ids(hub: HubProcess, token: str) -> list[str]:
    ids, after = [], 0
    while True:
        page = httpx.get(f"{hub.url}/v1/events", params={"project": "web", "after": after},
                         headers={"authorization": f"Bearer {token}"}, timeout=10).json()
        ids += [event["id"] for event in page["events"]]
        after = page["next_after"]
        if not page["more"]:
            return ids


def all_hold(expected: list[str], *devices: Device) -> None:
    """Every device holds exactly `expected`, each once, and has nothing left to send."""
    for device in devices:
        wait_for(lambda d=device: sorted(log_ids(d.box)) == sorted(expected), timeout=30)
        wait_for(lambda d=device: call(d.box, "status")["sync"]["waiting"] == 0)


def notices(device: Device) -> list[str]:
    """What `projctl sync` says the sync found, once: asked again, it says nothing."""
    said = call(device.box, "sync")["sync"]["notices"]
    assert call(device.box, "sync")["sync"]["notices"] == []
    return said


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    anyio.run(require_postgres)
    name = f"projctl_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_hub_restored_from_an_older_copy_loses_nothing(sandbox, more_sandboxes, hub_server,
                                                         tmp_path) -> None:
    hub = hub_server()
    ann, bob = Device(sandbox, "ann", hub).start(), Device(more_sandboxes(), "bob", hub).start()
    before = [ann.note("before 1"), bob.note("before 2")]
    all_hold(before, ann, bob)
    backup = str(tmp_path / "backup.db")
    copy_database(sqlite_path(hub), backup)
    after = [ann.note("after 1"), ann.note("after 2"), bob.note("after 3")]
    all_hold(before + after, ann, bob)

    hub.stop()
    copy_database(backup, sqlite_path(hub))  # the hub lost what came after the backup
    hub.start()
    later = [bob.note("after the restore")]
    carol = Device(more_sandboxes(), "carol", hub).start()

    everything = before + after + later
    all_hold(everything, ann, bob, carol)
    assert sorted(hub_ids(hub, ann.token)) == sorted(everything)
    assert any("the hub lacks 2 events it had taken from this device" in n for n in notices(ann))
    assert any("the hub no longer holds the events this device had pulled of web" in n
               for n in notices(bob))


def test_a_team_moves_from_a_sqlite_hub_to_postgresql_losing_nothing(
        sandbox, more_sandboxes, hub_server, postgres_database) -> None:
    old = hub_server()
    ann, bob = Device(sandbox, "ann", old).start(), Device(more_sandboxes(), "bob", old).start()
    before = [ann.note("on the old hub"), bob.note("on the old hub too")]
    all_hold(before, ann, bob)
    copied = subprocess.run(
        [sys.executable, "-m", "projctld", "hub", "copy", "--from", old.database, "--to",
         postgres_database], capture_output=True, text=True, timeout=60)
    assert copied.returncode == 0, copied.stderr
    assert "copied 2 events, 2 devices and 2 tokens" in copied.stderr
    # The old hub ran on: this event reached it after the copy.
    late = [ann.note("reached the old hub after the copy")]
    all_hold(before + late, ann, bob)

    old.stop()
    new = hub_server(postgres_database)
    for device in (ann, bob):  # the same tokens work: they were copied
        device.stop()
        device.hub = new
        device.start()
    carol = Device(more_sandboxes(), "carol", new).start()
    after = [carol.note("on the new hub")]

    everything = before + late + after
    all_hold(everything, ann, bob, carol)
    assert sorted(hub_ids(new, carol.token)) == sorted(everything)
    said = notices(ann)
    assert any("the hub is another database than before" in n for n in said)
    assert any("the hub lacks 1 events it had taken from this device" in n for n in said)
    again = subprocess.run(
        [sys.executable, "-m", "projctld", "hub", "copy", "--from", old.database, "--to",
         postgres_database], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "not empty" in again.stderr
    for device in (ann, bob, carol):  # before the database goes: no reconnecting to it
        device.stop()
    new.stop()


def test_a_restored_state_database_continues_after_what_the_hub_holds(
        sandbox, more_sandboxes, hub_server, tmp_path) -> None:
    hub = hub_server()
    ann, bob = Device(sandbox, "ann", hub).start(), Device(more_sandboxes(), "bob", hub).start()
    first = [ann.note("first")]
    all_hold(first, ann, bob)
    ann.stop()
    backup = str(tmp_path / "state-backup.db")
    copy_database(ann.state_db, backup)
    ann.start()
    lost_here = [ann.note("second"), ann.note("third")]
    all_hold(first + lost_here, ann, bob)

    ann.stop()
    copy_database(backup, ann.state_db)  # ann's machine restored from its backup
    hub.stop()
    ann.start()
    # Recorded before the hub is back: under the seq the hub holds "second" at.
    fresh = [ann.note("after the restore")]
    hub.start()

    everything = first + lost_here + fresh
    all_hold(everything, ann, bob)
    assert sorted(hub_ids(hub, bob.token)) == sorted(everything)
    view = call(ann.box, "sync")["sync"]
    assert view["error"] is None and view["refused"] == 0
    assert any("the hub holds this device's events up to seq 3, its state database up to seq "
               "2 only" in n for n in view["notices"])
    seqs = {e["id"]: e["seq"] for e in call(ann.box, "log", project="web")["events"]}
    assert seqs[fresh[0]] == 4  # it took the next free seq: 2 and 3 are the hub's
