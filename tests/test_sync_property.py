"""Property: whatever the partitions, restarts, duplicates, reorderings, hub rollbacks and
replacements, clock jumps and refusals, replicas converge.

Several devices (real EventStores on SQLite files, each with a skewed clock) record random
events and sync through a real hub (HubService over SqliteStorage: the rules a hub over HTTP
applies) behind a faulty link: partitions, replies lost after the hub applied a push, pushes
delivered twice, pages delivered twice or shuffled, hub and device restarts; the hub's database
restored from an older copy, or replaced by an empty one; device clocks jumping an hour or ten
minutes either way and back, the hub's too; tokens that may not write a project for a while;
events larger than a hub takes (recorded by an older projctl). After healing (clean links, full
rights, the clocks left as they are), every event the hub could take is on every replica and
on the hub exactly once, every replica holds the same state, and that state equals a fresh fold
of all its events in (hlc, device, seq) order. An oversized event stays on its own device, set
aside, and is the only thing that does.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projctld.errors import UpstreamError
from projctld.hub.auth import Refusal
from projctld.hub.inprocess import InProcessHub
from projctld.hub.service import HubService
from projctld.hub.storage.interface import TokenRecord
from projctld.hub.storage.sqlite import SqliteStorage
from projctld.store.database import Database
from projctld.store.events import EventStore
from projctld.team.sync import events as ev
from projctld.team.sync import wire
from projctld.team.sync.exchange import sync_once
from projctld.team.sync.hlc import HybridClock
from projctld.team.sync.wire import MAX_EVENT

PROJECTS = ("web", "api")
DEVICES = 3
BASE_TIME = 1_790_000_000.0


@dataclass
class Link:
    """What the network does to one device's next exchanges."""

    partitioned: bool = False
    lose_push_reply: bool = False
    push_twice: bool = False
    replay_pages: bool = False
    shuffle_pages: bool = False


class FaultyHub:
    """The Hub protocol over a real hub service (an InProcessHub), with the faults of `link`
    applied."""

    def __init__(self, world: World, device: Device, link: Link) -> None:
        self._world = world
        self._link = link
        self._hub = InProcessHub(world.service, world.token(device), device.store.device,
                                 device.wall)
        self.clock = 0
        self.hub_id = ""
        self.reading = None
        self._served: dict[str, list[ev.PulledEvent]] = {}  # the last page, per project

    def _check(self) -> None:
        if self._link.partitioned:
            raise UpstreamError("partitioned", code="unreachable", retryable=True)

    def _replied(self) -> None:
        self.clock, self.hub_id, self.reading = (self._hub.clock, self._hub.hub_id,
                                                 self._hub.reading)

    async def push(self, events: Sequence[ev.Event], resent: Sequence[str] = ()
                   ) -> wire.PushReply:
        self._check()
        batch = list(events)
        if self._link.shuffle_pages:
            random.Random(len(batch)).shuffle(batch)
        reply = await self._hub.push(batch, resent)
        if self._link.push_twice:
            again = await self._hub.push(batch, resent)
            assert again.accepted == 0
        self._replied()
        if self._link.lose_push_reply:
            raise UpstreamError("reply lost", code="timeout", retryable=True)
        return reply

    async def pull(self, project: str, after: int, limit: int, wait: float = 0.0,
                   after_id: str | None = None, sent: Callable[[], None] | None = None
                   ) -> wire.PullReply:
        self._check()
        reply = await self._hub.pull(project, after, min(limit, 4), after_id=after_id,
                                     sent=sent)
        self._replied()
        page = list(reply.events)
        if self._link.replay_pages:
            # Events the device already has come again, as a retried request would send.
            page = self._served.get(project, []) + page
        self._served[project] = list(reply.events)
        if self._link.shuffle_pages:
            random.Random(reply.next_after).shuffle(page)
        return msgspec.structs.replace(reply, events=page)


@dataclass
class Device:
    path: str
    skew: float
    user: str
    world_wall: Callable[[], float]
    db: Database = field(init=False)
    store: EventStore = field(init=False)
    clock: HybridClock = field(init=False)

    def wall(self) -> float:
        return self.world_wall() + self.skew

    def open(self) -> None:
        self.db = Database(self.path)
        self.store = EventStore(self.db)
        self.clock = HybridClock(self.store.max_hlc(), wall=self.wall)


@dataclass
class World:
    root: str
    hub: SqliteStorage
    devices: list[Device]
    links: list[Link]
    now: float = BASE_TIME
    recorded: list[str] = field(default_factory=list)
    service: HubService = field(init=False)

    def __post_init__(self) -> None:
        self.service = HubService(self.hub, wall=self.hub_wall)

    def wall(self) -> float:
        return self.now

    hub_skew: float = 0.0
    forbidden: set[int] = field(default_factory=set)  # devices whose token writes web only
    oversized: dict[str, int] = field(default_factory=dict)  # event id: its device
    snapshot: str | None = None
    hubs: int = 0
    # What the exchanges did about the faults: restamped, set_aside, and each notice's gist.
    seen: Counter[str] = field(default_factory=Counter)

    def token(self, device: Device) -> TokenRecord:
        rights = ["web"] if self.devices.index(device) in self.forbidden else ["*"]
        # Reads every project, so that only its writes are refused.
        return TokenRecord(id=device.user, user=device.user, projects=rights, write=True,
                           created_at=BASE_TIME) if rights == ["*"] else _web_writer(device.user)

    def hub_wall(self) -> float:
        return self.now + self.hub_skew

    def hub_path(self) -> str:
        return os.path.join(self.root, f"hub{self.hubs}.db")

    async def reopen_hub(self) -> None:
        await self.hub.close()
        self.hub = SqliteStorage(self.hub_path())
        await self.hub.open()
        self.service.storage = self.hub


def _web_writer(user: str) -> TokenRecord:
    """A token that reads everything but writes web only."""
    class WebWriter(TokenRecord, frozen=True):
        def can_write(self, project: str) -> bool:
            return project == "web"

    return WebWriter(id=user, user=user, projects=["*"], write=True, created_at=BASE_TIME)


# One operation of a scenario; the strategies below draw lists of these.
records = st.tuples(st.just("record"), st.integers(0, DEVICES - 1), st.sampled_from(PROJECTS),
                    # Edits and finishes are where order matters: drawn most often.
                    st.sampled_from(["note", "edit", "edit", "deploy", "finish", "finish",
                                     "branch"]),
                    st.integers(0, 5))
syncs = st.tuples(st.just("sync"), st.integers(0, DEVICES - 1),
                  st.builds(Link, partitioned=st.booleans(), lose_push_reply=st.booleans(),
                            push_twice=st.booleans(), replay_pages=st.booleans(),
                            shuffle_pages=st.booleans()))
restarts = st.tuples(st.sampled_from(["restart_hub", "restart_device"]),
                     st.integers(0, DEVICES - 1))
ticks = st.tuples(st.just("tick"), st.floats(-2.0, 30.0))
# What real teams meet beyond the network: a hub's database restored from an older copy or
# replaced by a new one, clocks that jump, tokens without a right, events too large.
hubs = st.tuples(st.sampled_from(["snapshot_hub", "snapshot_hub", "restore_hub", "new_hub"]),
                 st.integers(0, DEVICES - 1))
jumps = st.tuples(st.just("jump"), st.integers(0, DEVICES - 1),
                  st.sampled_from([3600.0, -3600.0, 600.0, -600.0]))
hub_jumps = st.tuples(st.just("hub_jump"), st.sampled_from([600.0, -600.0, 3600.0]))
rights = st.tuples(st.just("forbid"), st.integers(0, DEVICES - 1), st.booleans())
oversized = st.tuples(st.just("oversized"), st.integers(0, DEVICES - 1))
scenarios = st.lists(st.one_of(records, records, syncs, syncs, restarts, ticks, hubs, jumps,
                               hub_jumps, rights, oversized), min_size=5, max_size=40)
skews = st.lists(st.floats(-60.0, 60.0), min_size=DEVICES, max_size=DEVICES)


async def _record(world: World, device: Device, project: str, kind: str, pick: int) -> None:
    store = device.store
    if kind == "edit":
        notes = store.notes_matching(project, "")
        # notes_matching stops at two; an edit of one of those is enough variety.
        if not notes:
            kind = "note"
    if kind == "finish":
        # Mostly a running deployment; sometimes one already final, as a second device (or a
        # retried command) could send: the first final event in key order must win everywhere.
        known = store.deployments(project, 50)
        running = [d for d in known if d.state == "running"] if pick % 3 else known
        if not running:
            kind = "deploy"
    match kind:
        case "note":
            payload: object = ev.NoteAdded(note=ev.uuid7(world.now), text=f"note {pick}")
            type_ = "note.added"
        case "edit":
            payload = ev.NoteAdded(note=notes[pick % len(notes)], text=f"edit {pick}")
            type_ = "note.edited"
        case "deploy":
            payload = ev.DeploymentStarted(deployment=ev.uuid7(world.now),
                                           environment=("staging", "production")[pick % 2],
                                           branch=f"b{pick}")
            type_ = "deployment.started"
        case "finish":
            target = running[pick % len(running)]
            payload = ev.DeploymentFinished(deployment=target.deployment,
                                            environment=target.environment,
                                            duration=float(pick), exit_status=pick % 2)
            type_ = "deployment.completed" if pick % 2 == 0 else "deployment.failed"
        case _:
            payload = ev.BranchCreated(name=f"feature-{pick}", commit=f"{pick:040x}")
            type_ = "branch.created"
    event = store.append(project=project, actor=device.user, type=type_, payload=payload,
                         hlc=device.clock.now(), now=device.wall())
    world.recorded.append(event.id)


def _record_oversized(world: World, device: Device) -> None:
    """An event larger than a hub takes, as a projctl older than that bound recorded it."""
    store = device.store
    event = ev.Event(id=ev.uuid7(device.wall()), device=store.device, seq=store.last_seq + 1,
                     hlc=device.clock.now(), project="web", actor=device.user, type="x.blob",
                     payload={"blob": "x" * (MAX_EVENT + 1)}, created_at=device.wall())
    with device.db.transaction() as conn:
        conn.execute(
            "INSERT INTO events(id, device, seq, hlc, project, actor, type, payload, created_at,"
            " pushed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (event.id, event.device, event.seq, event.hlc, event.project, event.actor,
             event.type, msgspec.msgpack.encode(event.payload), event.created_at))
    store.last_seq = event.seq
    world.recorded.append(event.id)
    world.oversized[event.id] = world.devices.index(device)


async def _sync(world: World, index: int) -> None:
    device = world.devices[index]
    # A failed exchange is what the runner retries later; the scenario's end heals everything.
    with contextlib.suppress(UpstreamError):
        done = await sync_once(device.store, FaultyHub(world, device, world.links[index]),
                               device.clock, PROJECTS, now=device.wall(), retry_aside=True)
        world.seen.update(restamped=done.restamped, set_aside=done.set_aside,
                          renumbered=done.renumbered)
        for notice in done.notices:
            world.seen[" ".join(notice.split()[:4])] += 1


async def _run(ops: list, skew_values: list[float], root: str) -> World:
    hub = SqliteStorage(os.path.join(root, "hub0.db"))
    await hub.open()
    world = World(root, hub, [], [])
    world.devices = [Device(os.path.join(root, f"device{i}", "state.db"), skew, f"user{i}",
                            world.wall) for i, skew in enumerate(skew_values)]
    world.links = [Link() for _ in world.devices]
    devices = world.devices
    for device in devices:
        device.open()
    try:
        for op in ops:
            match op:
                case ("record", i, project, kind, pick):
                    await _record(world, devices[i], project, kind, pick)
                case ("sync", i, link):
                    world.links[i] = link
                    await _sync(world, i)
                case ("restart_hub", _):
                    await world.reopen_hub()
                case ("restart_device", i):
                    devices[i].db.close()
                    devices[i].open()
                case ("tick", seconds):
                    world.now += seconds
                case ("snapshot_hub", _):
                    world.snapshot = os.path.join(root, "hub-copy.db")
                    _copy_database(world.hub_path(), world.snapshot)
                case ("restore_hub", _) if world.snapshot is not None:
                    await world.hub.close()
                    _copy_database(world.snapshot, world.hub_path())
                    await world.reopen_hub()
                case ("new_hub", _):
                    world.hubs += 1
                    await world.reopen_hub()
                case ("jump", i, seconds):
                    devices[i].skew += seconds
                case ("hub_jump", seconds):
                    world.hub_skew += seconds
                case ("forbid", i, forbidden):
                    (world.forbidden.add if forbidden else world.forbidden.discard)(i)
                case ("oversized", i):
                    _record_oversized(world, devices[i])
        # Heal: clean links and full rights (the clocks stay as they are), rounds enough for
        # every push to be pulled everywhere.
        world.links = [Link() for _ in devices]
        world.forbidden.clear()
        for _ in range(3):
            for i in range(len(devices)):
                await _sync(world, i)
        _check_converged(world)
        hub_ids = []
        for project in PROJECTS:
            hub_ids += [e.id for e in (await world.hub.pull(project, 0, 100_000)).events]
        assert sorted(hub_ids) == sorted(set(world.recorded) - set(world.oversized)), \
            "the hub lost or doubled events"
    finally:
        for device in devices:
            device.db.close()
        await world.hub.close()
    return world


def _copy_database(source: str, target: str) -> None:
    with sqlite3.connect(source) as origin, sqlite3.connect(target) as copy:
        origin.backup(copy)


def _check_converged(world: World) -> None:
    everywhere = set(world.recorded) - set(world.oversized)
    assert len(set(world.recorded)) == len(world.recorded)
    states = set()
    for index, device in enumerate(world.devices):
        ids = [row[0] for row in device.db.read("SELECT id FROM events ORDER BY id")]
        own_oversized = {i for i, owner in world.oversized.items() if owner == index}
        assert len(ids) == len(set(ids)) and set(ids) == everywhere | own_oversized, \
            "a replica lost or doubled events"
        # Only what no hub can take still waits, set aside with why.
        assert device.store.waiting_count() == device.store.aside_count() == len(own_oversized)
        assert {a.code for a in device.store.aside()} <= {"too_large"}
        incremental = _state(device)
        device.store.refold()
        assert _state(device) == incremental, \
            "incremental state differs from a fold in (hlc, device, seq) order"
        states.add(incremental)
    assert len(states) == 1, "replicas hold the same events but different state"


def _state(device: Device) -> str:
    """The folded state, and the events (their keys included: an event stamped again must be
    stamped alike everywhere) that every replica should hold."""
    digest = hashlib.sha256()
    for row in device.db.read("SELECT id, hlc, device, seq FROM events WHERE type != 'x.blob' "
                              "ORDER BY id"):
        digest.update(repr(row).encode())
    for table in ("deployments", "deployment_finals", "notes", "branches"):
        for row in device.db.read(f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4, 5"):
            digest.update(repr(row).encode())
    return digest.hexdigest()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=scenarios, skew_values=skews)
def test_replicas_converge_with_every_event_exactly_once(ops: list, skew_values: list[float]
                                                         ) -> None:
    with tempfile.TemporaryDirectory(prefix="pjprop") as root:
        anyio.run(_run, ops, skew_values, root)


def test_a_scenario_with_every_fault_converges() -> None:
    """A fixed scenario that exercises each fault at least once, so that a regression shows
    here by name even if Hypothesis's draws happen to miss it."""
    every_fault = Link(lose_push_reply=True, push_twice=True, replay_pages=True,
                       shuffle_pages=True)
    ops: list = [("snapshot_hub", 0)]
    for i in range(DEVICES):
        ops += [("record", i, "web", "note", i), ("record", i, "web", "deploy", i),
                ("sync", i, Link(partitioned=True)), ("record", i, "api", "branch", i),
                ("sync", i, every_fault), ("record", i, "web", "finish", i),
                ("record", (i + 1) % DEVICES, "web", "edit", i), ("restart_hub", 0),
                ("tick", 5.0), ("sync", i, every_fault), ("restart_device", i)]
    ops += [("sync", 0, Link()), ("sync", 1, Link()),
            ("restore_hub", 0),  # the hub loses what it took since the snapshot
            ("jump", 1, 3600.0), ("record", 1, "web", "note", 7), ("jump", 1, -3600.0),
            ("record", 1, "web", "edit", 8), ("sync", 1, Link()),  # a clock that jumped
            ("hub_jump", -600.0), ("record", 0, "web", "note", 9), ("sync", 0, Link()),
            ("forbid", 2, True), ("record", 2, "api", "note", 1), ("sync", 2, Link()),
            ("oversized", 2), ("record", 2, "web", "note", 2), ("sync", 2, Link()),
            ("new_hub", 0),  # another, empty database: everything is sent again
            ("jump", 0, -600.0), ("record", 0, "web", "edit", 3), ("sync", 0, Link())]
    with tempfile.TemporaryDirectory(prefix="pjprop") as root:
        world = anyio.run(_run, ops, [-45.0, 0.0, 50.0], root)
    assert len(world.recorded) == 5 * DEVICES + 7
    assert len(world.oversized) == 1
    # Each recovery happened, not only its outcome.
    for what in ("restamped", "set_aside", "the hub lacks", "the hub no longer",
                 "the hub is another"):
        assert any(key.startswith(what) and count for key, count in world.seen.items()), \
            (what, world.seen)


def test_a_hub_older_than_partial_pushes_still_costs_one_refused_event_nothing_more() -> None:
    """An older hub refuses a whole batch for one event: the device sends the batch again
    event by event, and only the refused one waits aside."""

    class OlderHub(FaultyHub):
        async def push(self, events: Sequence[ev.Event], resent: Sequence[str] = ()
                       ) -> wire.PushReply:
            try:  # what a hub without `partial` does
                reply = await self._hub.service.push(self._hub.token, list(events),
                                                     partial=False)
            except Refusal as exc:
                raise UpstreamError(f"the hub refused: {exc.message}", code=exc.code,
                                    suggestions=exc.suggestions) from None
            return msgspec.structs.replace(reply, user="", mark=None)

    async def run(root: str) -> None:
        world = World(root, SqliteStorage(os.path.join(root, "hub0.db")), [], [])
        await world.hub.open()
        device = Device(os.path.join(root, "device", "state.db"), 0.0, "user0", world.wall)
        world.devices = [device]
        device.open()
        try:
            for pick in range(3):
                await _record(world, device, "web", "note", pick)
            _record_oversized(world, device)
            await _record(world, device, "web", "note", 9)
            done = await sync_once(device.store, OlderHub(world, device, Link()),
                                   device.clock, ["web"], now=device.wall())
            assert (done.pushed, done.set_aside, done.push_error) == (4, 1, None)
            (aside,) = device.store.aside()
            assert aside.code == "too_large" and "more than the" in aside.message
            held = [e.id for e in (await world.hub.pull("web", 0, 100)).events]
            assert sorted(held) == sorted(set(world.recorded) - set(world.oversized))
        finally:
            device.db.close()
            await world.hub.close()

    with tempfile.TemporaryDirectory(prefix="pjprop") as root:
        anyio.run(run, root)
