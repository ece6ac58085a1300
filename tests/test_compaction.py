"""Compaction: the project state never changes, unsynced events are never dropped, space returns."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
import time

import anyio
import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from projctld.config import Config, RetentionConfig
from projctld.store.compaction import DAY, Compaction, compact_events, reclaim
from projctld.store.database import Database
from projctld.store.events import EventStore
from projctld.store.http_cache import HttpCache
from projctld.store.runs import RunRow, RunTable
from projctld.store.snapshots import SnapshotTable
from projctld.team.sync import events as ev
from projctld.team.sync.hlc import pack
from projctld.upstream.polling import Poller
from projctld.upstream.scheduler import PollScheduler

PROJECT = "web"
DEPLOYMENTS = [f"0190000{i}-0000-7000-8000-000000000000" for i in range(3)]
NOTES = [f"0190001{i}-0000-7000-8000-000000000000" for i in range(3)]
KINDS = ["started", "completed", "failed", "added", "edited", "edited", "branch", "workflow",
         "future"]


def _payload(kind: str, target: int, value: int) -> tuple[str, dict]:
    match kind:
        case "started":
            payload: object = ev.DeploymentStarted(
                deployment=DEPLOYMENTS[target], environment=("staging", "production")[value % 2],
                branch=f"b{value}")
            return "deployment.started", msgspec.to_builtins(payload)
        case "completed" | "failed":
            payload = ev.DeploymentFinished(
                deployment=DEPLOYMENTS[target], environment="production", duration=value,
                exit_status=0 if kind == "completed" else 1)
            return f"deployment.{kind}", msgspec.to_builtins(payload)
        case "added" | "edited":
            payload = ev.NoteAdded(note=NOTES[target], text=f"text {value}")
            return f"note.{kind}", msgspec.to_builtins(payload)
        case "branch":
            payload = ev.BranchCreated(name=f"feature-{target}", commit=str(value))
            return "branch.created", msgspec.to_builtins(payload)
        case "workflow":
            payload = ev.WorkflowRunFinished(run=DEPLOYMENTS[target], workflow="ci",
                                             success=bool(value % 2), duration=value)
            return "workflow.completed", msgspec.to_builtins(payload)
        case _:  # a type of a newer version, which this one keeps but cannot fold
            return "future.thing", {"value": value}


drafts = st.tuples(st.sampled_from(["me", "a", "b", "c"]), st.sampled_from(KINDS),
                   st.integers(0, 2), st.integers(0, 9), st.integers(1, 60))


class Replica:
    """An EventStore on its own file; "me" is its own device, the others come from the hub."""

    def __init__(self, path: str) -> None:
        self.db = Database(path)
        self.store = EventStore(self.db)
        self.seqs: dict[str, int] = {}

    def add(self, drafts: list[tuple]) -> list[ev.Event]:
        """Record this device's drafts (own HLCs only go up) and pull the others', one page."""
        own = sorted((d for d in drafts if d[0] == "me"), key=lambda d: d[4])
        done = []
        for _, kind, target, value, hlc in own:
            type_, payload = _payload(kind, target, value)
            done.append(self.store.append(
                project=PROJECT, actor="me", type=type_, payload=payload,
                hlc=max(pack(hlc), self.store.max_hlc() + 1), now=1.0))
        pulled = []
        for device, kind, target, value, hlc in drafts:
            if device == "me":
                continue
            self.seqs[device] = self.seqs.get(device, 0) + 1
            type_, payload = _payload(kind, target, value)
            pulled.append(ev.Event(id=ev.uuid7(), device=device, seq=self.seqs[device],
                                   hlc=pack(hlc), project=PROJECT, actor=f"actor-{device}",
                                   type=type_, payload=payload, created_at=1.0))
        self.store.store_pulled(PROJECT, pulled, 0)
        return done + pulled

    def state(self) -> dict[str, list[tuple]]:
        """The folded project state, row by row."""
        return {table: self.db.read(f"SELECT * FROM {table} ORDER BY 1, 2")
                for table in ("deployments", "notes", "branches")}

    def held(self) -> dict[str, tuple]:
        return {row[0]: row[1:] for row in self.db.read("SELECT id, hlc, type, pushed FROM events")}


@settings(max_examples=120, deadline=None)
@given(first=st.lists(drafts, min_size=1, max_size=30), later=st.lists(drafts, max_size=12),
       pushed=st.integers(0, 30), cutoff=st.integers(0, 64))
def test_compaction_never_changes_the_fold(first: list[tuple], later: list[tuple], pushed: int,
                                           cutoff: int) -> None:
    with tempfile.TemporaryDirectory(prefix="pjcompact") as root:
        replica = Replica(os.path.join(root, "compacted", "state.db"))
        reference = Replica(os.path.join(root, "reference", "state.db"))
        events = replica.add(first)
        own = [e for e in events if e.device == replica.store.device]
        replica.store.mark_pushed([e.seq for e in own[:pushed]])
        reference.store.store_pulled(PROJECT, events, 0)
        state = replica.state()
        before = replica.held()
        last_seq, max_hlc = replica.store.last_seq, replica.store.max_hlc()

        compact_events(replica.db, replica.store.device, pack(cutoff))

        # What the user sees is the fold of every event, before and after.
        assert replica.state() == state == reference.state()
        after = replica.held()
        for event_id, (hlc, type_, was_pushed) in before.items():
            if event_id not in after:  # only an old, synced event of a known type goes
                assert was_pushed and hlc < pack(cutoff) and type_ in ev.PAYLOADS
        # The clock and this device's seq resume where they were, even from a reopened file.
        reopened = EventStore(replica.db)
        assert (reopened.last_seq, reopened.max_hlc()) == (last_seq, max_hlc)

        # Events arriving afterwards, late ones with old keys among them, fold onto the
        # compacted state as onto all events; and what is left refolds to that state too.
        for event in replica.add(later):
            reference.store.store_pulled(PROJECT, [event], 0)
        assert replica.state() == reference.state()
        replica.store.refold()
        assert replica.state() == reference.state()


def test_superseded_and_unfolded_events_go_and_what_decides_the_state_stays(tmp_path) -> None:
    replica = Replica(str(tmp_path / "state.db"))
    replica.add([("a", "added", 0, 1, 1), ("a", "edited", 0, 2, 2), ("b", "edited", 0, 3, 3),
                 ("a", "started", 0, 1, 4), ("b", "completed", 0, 1, 5),
                 ("a", "workflow", 0, 1, 6), ("b", "workflow", 1, 1, 7), ("a", "future", 0, 1, 8),
                 ("b", "edited", 1, 4, 9)])
    assert compact_events(replica.db, replica.store.device, pack(100)) == 3
    kept = replica.db.read("SELECT device, type FROM events ORDER BY hlc")
    # The note's creation and last write, the deployment's start and end, the unknown type,
    # and the newest event (the clock resumes from its HLC at start-up).
    assert kept == [("a", "note.added"), ("b", "note.edited"), ("a", "deployment.started"),
                    ("b", "deployment.completed"), ("a", "future.thing"), ("b", "note.edited")]


def test_this_devices_unsynced_events_stay_and_its_synced_ones_do_not_come_back(tmp_path) -> None:
    replica = Replica(str(tmp_path / "state.db"))
    own = replica.add([("me", "workflow", 0, 1, hlc) for hlc in range(1, 7)])
    replica.store.mark_pushed([1, 2, 3])
    assert compact_events(replica.db, replica.store.device, pack(100)) == 3
    assert replica.store.waiting_count() == 3
    stored = []
    replica.store.on_stored = lambda events, origin: stored.append(events)
    # The hub hands them back in a pull: they were this device's, so they are not new.
    assert replica.store.store_pulled(PROJECT, own[:3], 3) == 0
    assert stored == []
    assert len(replica.held()) == 3


def test_old_runs_and_cached_replies_go_from_disk_and_memory(tmp_path) -> None:
    db = Database(str(tmp_path / "state.db"))
    now = 1_790_000_000.0
    runs = RunTable(db)
    for index, started in enumerate((now - 3 * DAY, now - 2 * DAY, now - 10.0)):
        runs.save(RunRow(id=f"0190000{index}-0000-7000-8000-000000000000", project=PROJECT,
                         workflow="ci", started_at=started,
                         finished_at=None if index == 1 else started + 5))
    cache = HttpCache(db, now)
    cache.store("https://x/old", '"1"', None, b"old", now - 2 * DAY)
    cache.store("https://x/new", '"2"', None, b"new", now - 10.0)
    store = EventStore(db)
    done = Compaction(db, RetentionConfig(runs_days=1.0, http_cache_days=1.0), store.device,
                      cache, clock=lambda: now).run()
    assert (done.runs, done.http_cache) == (2, 1)
    assert [run.started_at for run in runs.recent(10)] == [now - 10.0]
    assert cache.validators("https://x/old") is None
    assert cache.body("https://x/old") is None
    assert cache.validators("https://x/new") == ('"2"', None)


def test_reclaim_shrinks_the_file_and_empties_the_wal_even_of_an_old_database(tmp_path) -> None:
    path = str(tmp_path / "state.db")
    db = Database(path)
    assert db.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0  # as before compaction
    RunTable(db).save(RunRow(id="01900000-0000-7000-8000-000000000000", project=PROJECT,
                             workflow="ci", started_at=1.0,
                             events=[{"line": "x" * 200}] * 10_000))
    db.write_many("DELETE FROM workflow_runs", [()])
    full = os.path.getsize(path) + os.path.getsize(path + "-wal")
    assert reclaim(db) > 1_000_000
    assert os.path.getsize(path + "-wal") == 0
    assert os.path.getsize(path) < full / 4
    assert db.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    db.close()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_the_scheduler_runs_compaction_on_the_event_loop(tmp_path) -> None:
    db = Database(str(tmp_path / "state.db"))
    ran_in: list[int] = []

    async def scenario() -> None:
        done = anyio.Event()
        compaction = Compaction(db, RetentionConfig(), EventStore(db).device,
                                HttpCache(db, time.time()))

        async def job() -> None:
            # The same connection as every other write: never from another thread.
            ran_in.append(threading.get_ident())
            await compaction.scheduled()
            done.set()

        schedule = PollScheduler(Poller(Config(), {}, SnapshotTable(db)))
        schedule.start()
        schedule.every(3600.0, job, "compaction", first_at=time.time())
        try:
            with anyio.fail_after(30):
                await done.wait()
        finally:
            schedule.shutdown()

    anyio.run(scenario)
    assert ran_in == [threading.get_ident()]
    assert db.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
