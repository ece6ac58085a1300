"""Days of projctld on a virtual clock, for the resource-bound test and bench/resource_soak.py.

Everything is the daemon's own but the clock and the network: the Poller, with upstreams that
change at every poll and read through the HttpCache as the real providers do; this device's
EventStore, Journal and sync exchange with an in-process hub (real hub storage) that teammates
push to; workflow runs with their output; and Compaction on its schedule. All on SQLite files.
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Callable

import msgspec

from projctl_client.protocol import ChangeRequestView, CiView, PipelineView, TicketView
from projctld.config import (
    Config,
    JiraConfig,
    ProjectConfig,
    RetentionConfig,
    SyncConfig,
)
from projctld.hub.inprocess import InProcessHub
from projctld.hub.service import HubService
from projctld.hub.storage.interface import TokenRecord
from projctld.hub.storage.sqlite import SqliteStorage
from projctld.store.compaction import Compaction
from projctld.store.database import Database
from projctld.store.events import EventStore
from projctld.store.http_cache import HttpCache
from projctld.store.runs import RunRow, RunTable
from projctld.store.snapshots import SnapshotTable
from projctld.team.sync import events as ev
from projctld.team.sync.exchange import sync_once
from projctld.team.sync.hlc import HybridClock
from projctld.team.sync.journal import Journal
from projctld.team.sync.runner import SyncRunner
from projctld.upstream.polling import Key, Poller
from projctld.upstream.providers.model import Provider, Snapshot

PROJECT = "web"
HOUR = 3600.0
CI_STATES = ("running", "success", "failure", "pending")
# Change requests open at once per upstream; every OPENS_EVERY polls one more opens, under a
# URL of its own, and the oldest closes.
OPEN_CHANGES = 6
OPENS_EVERY = 4
BODY_PADDING = 1500  # bytes of description in each cached reply, about a merge request's
OUTPUT_LINES = 300  # output events kept with each workflow run
# Per person and virtual hour: (events of that kind, chance per hour).
ACTIVITY = {"edit": 4.0, "note": 0.5, "deploy": 0.25, "workflow": 1.0, "branch": 0.1}


class VirtualClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ChurningUpstream:
    """A provider whose data changes at every poll: CI moves on every third poll, and every
    OPENS_EVERY polls a change request opens and the oldest closes. Each open one is read
    through the HttpCache as UpstreamHttp.get does: stored when it changed (a 200), the stored
    body read back when not (a 304)."""

    def __init__(self, upstream: str, cache: HttpCache, clock: VirtualClock) -> None:
        self.upstream = upstream
        self._cache = cache
        self._clock = clock
        self.polls = 0

    async def poll(self, project: str, config: ProjectConfig, *, fresh: bool) -> Snapshot:
        self.polls += 1
        now = self._clock()
        newest = self.polls // OPENS_EVERY + OPEN_CHANGES
        changes, pipelines, tickets = [], [], []
        for number in range(newest - OPEN_CHANGES + 1, newest + 1):
            state = CI_STATES[(self.polls // 3 + number) % len(CI_STATES)]
            url = f"https://{self.upstream}.example/{project}/changes/{number}"
            self._read(url, number, state, now)
            if self.upstream == "jira":
                tickets.append(TicketView(
                    key=f"WEB-{number}", summary=f"ticket {number}", status=state,
                    category="in_progress", url=f"https://jira.example/browse/WEB-{number}",
                    updated_at=now))
                continue
            changes.append(ChangeRequestView(
                upstream=self.upstream, repo="acme/web", number=number, ref=f"#{number}",
                title=f"change {number}", url=url, author="me", source_branch=f"b{number}",
                target_branch="main", ci=CiView(state=state), mine=True, updated_at=now))
            pipelines.append(PipelineView(upstream=self.upstream, repo="acme/web",
                                          branch=f"b{number}", state=state, updated_at=now))
        return Snapshot(change_requests=changes, pipelines=pipelines, tickets=tickets)

    def _read(self, url: str, number: int, state: str, now: float) -> bytes:
        etag = f'W/"{number}-{state}"'
        validators = self._cache.validators(url)
        if validators is not None and validators[0] == etag:
            body = self._cache.body(url)
            if body is not None:
                return body
        body = msgspec.json.encode({"number": number, "ci": state,
                                    "description": "x" * BODY_PADDING})
        self._cache.store(url, etag, None, body, now)
        return body


class Teammate:
    """Another device of the team: its events go straight into the hub."""

    def __init__(self, name: str, clock: VirtualClock) -> None:
        self.name = name
        self.device = ev.new_device_id()
        self._hlc = HybridClock(wall=clock)
        self._clock = clock
        self._seq = 0

    def event(self, type: str, payload: msgspec.Struct) -> ev.Event:
        self._seq += 1
        now = self._clock()
        return ev.Event(id=ev.uuid7(now), device=self.device, seq=self._seq,
                        hlc=self._hlc.now(), project=PROJECT, actor=self.name, type=type,
                        payload=msgspec.to_builtins(payload), created_at=now)


class Soak:
    """One device of a team of `teammates + 1`, run tick by tick (`step` virtual seconds).

    With `retention` None nothing is compacted: the reference a bench compares against.
    """

    def __init__(self, root: str, *, retention: RetentionConfig | None, step: float = 60.0,
                 teammates: int = 3, seed: int = 0, start: float = 1_790_000_000.0) -> None:
        self.path = os.path.join(root, "state", "state.db")
        self.step = step
        self.clock = VirtualClock(start)
        self.started_at = start
        self._random = random.Random(seed)
        self.db = Database(self.path)
        self.cache = HttpCache(self.db, start)
        config = Config(
            jira=JiraConfig(url="https://jira.example"),
            retention=retention or RetentionConfig(),
            projects={PROJECT: ProjectConfig(github=["acme/web"], gitlab=["acme/api"],
                                             jira="project = WEB")})
        upstreams: dict[str, Provider] = {name: ChurningUpstream(name, self.cache, self.clock)
                                          for name in ("github", "gitlab", "jira")}
        self.poller = Poller(config, upstreams, SnapshotTable(self.db), clock=self.clock)
        self.events = EventStore(self.db)
        self._hlc = HybridClock(self.events.max_hlc(), wall=self.clock)
        self.hub_storage = SqliteStorage(os.path.join(root, "hub", "hub.db"))
        self.hub = InProcessHub(
            HubService(self.hub_storage, wall=self.clock),
            TokenRecord(id="soak", user="me", projects=["*"], write=True, created_at=start),
            self.events.device, self.clock)
        self.runs = RunTable(self.db)
        self.compaction = Compaction(self.db, retention, self.events.device, self.cache,
                                     clock=self.clock) if retention is not None else None
        self._compaction_every = config.retention.interval
        self.team = [Teammate(f"mate{i}", self.clock) for i in range(teammates)]
        self._notes: deque[str] = deque(maxlen=20)  # notes still being edited
        self._running: dict[str, tuple[str, str]] = {}  # deployment -> (environment, device)
        # Events recorded per virtual hour (by every device), for bounds on what is kept.
        self.recorded: dict[int, int] = {}
        self.polls = 0
        self.journal: Journal | None = None

    async def start(self) -> None:
        await self.hub_storage.open()
        runner = SyncRunner(self.events, self.hub, self._hlc, SyncConfig(), [PROJECT],
                            wall=self.clock)
        self.journal = Journal(self.events, self._hlc, runner, "me", wall=self.clock)

    async def stop(self) -> None:
        await self.hub_storage.close()
        self.db.close()

    async def run(self, hours: float, *, every: float = HOUR,
                  on_sample: Callable[[Soak], None] = lambda soak: None) -> None:
        """Advance `hours` virtual hours; `on_sample` is called every `every` virtual seconds."""
        end = self.clock.now + hours * HOUR
        due: dict[Key, float] = {key: self.poller.first_poll_at(key)
                                 for key in self.poller.sources}
        next_compaction = self.clock.now + self._compaction_every
        next_run = self.clock.now + HOUR
        next_sample = self.clock.now + every
        while self.clock.now < end:
            self.clock.now += self.step
            self.poller.touch()  # the user is at work: polls come at their quickest
            for key in self.poller.sources:
                if due[key] <= self.clock.now:
                    await self.poller.poll(key)
                    due[key] = self.poller.sources[key].next_poll_at or self.clock.now
                    self.polls += 1
            await self._team_works()
            self._i_work()
            if self.clock.now >= next_run:
                self._workflow_run()
                next_run += HOUR
            await sync_once(self.events, self.hub, self._hlc, [PROJECT], now=self.clock.now)
            if self.compaction is not None and self.clock.now >= next_compaction:
                self.compaction.run()
                next_compaction += self._compaction_every
            if self.clock.now >= next_sample:
                on_sample(self)
                next_sample += every

    @property
    def hours(self) -> float:
        return (self.clock.now - self.started_at) / HOUR

    def recorded_since(self, since: float) -> int:
        """Events recorded from the virtual hour holding `since` on (an upper bound)."""
        first = int((since - self.started_at) // HOUR)
        return sum(count for hour, count in self.recorded.items() if hour >= first)

    def rows(self) -> dict[str, int]:
        tables = [row[0] for row in self.db.read(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {table: self.db.read(f"SELECT count(*) FROM {table}")[0][0] for table in tables}

    def file_sizes(self) -> tuple[int, int]:
        """Bytes of the database file and of its WAL."""
        wal = self.path + "-wal"
        return os.path.getsize(self.path), os.path.getsize(wal) if os.path.exists(wal) else 0

    def _happens(self, kind: str) -> bool:
        return self._random.random() < ACTIVITY[kind] * self.step / HOUR

    def _count(self, events: int) -> None:
        hour = int((self.clock.now - self.started_at) // HOUR)
        self.recorded[hour] = self.recorded.get(hour, 0) + events

    async def _team_works(self) -> None:
        for mate in self.team:
            batch = [mate.event(type, payload) for type, payload in self._activity(mate.device)]
            if batch:
                await self.hub_storage.push(mate.name, batch)
                self._count(len(batch))

    def _i_work(self) -> None:
        assert self.journal is not None, "Soak.start was not called"
        for type, payload in self._activity(self.events.device):
            self.journal.record(PROJECT, type, payload)
            self._count(1)

    def _activity(self, device: str) -> list[tuple[str, msgspec.Struct]]:
        """What one person does in one tick, as (type, payload) of events."""
        now = self.clock.now
        done: list[tuple[str, msgspec.Struct]] = []
        if self._happens("note"):
            note = ev.uuid7(now)
            self._notes.append(note)
            done.append(("note.added", ev.NoteAdded(note=note, text=f"note at {now:.0f}")))
        elif self._notes and self._happens("edit"):
            note = self._random.choice(self._notes)
            done.append(("note.edited", ev.NoteAdded(note=note, text=f"edited at {now:.0f}")))
        mine = [d for d, (_, owner) in self._running.items() if owner == device]
        for deployment in mine:  # a deployment takes one tick
            environment, _ = self._running.pop(deployment)
            done.append(("deployment.completed", ev.DeploymentFinished(
                deployment=deployment, environment=environment, duration=self.step,
                exit_status=0)))
        if self._happens("deploy"):
            deployment = ev.uuid7(now)
            environment = self._random.choice(("staging", "production"))
            self._running[deployment] = (environment, device)
            done.append(("deployment.started", ev.DeploymentStarted(
                deployment=deployment, environment=environment, branch="main")))
        if self._happens("workflow"):
            run = ev.uuid7(now)
            done.append(("workflow.started", ev.WorkflowRunStarted(run=run, workflow="ci")))
            done += [("workflow.step", ev.WorkflowStepFinished(run=run, step=step,
                                                                success=True, duration=1.0))
                     for step in ("lint", "test", "build")]
            done.append(("workflow.completed", ev.WorkflowRunFinished(
                run=run, workflow="ci", success=True, duration=3.0)))
        if self._happens("branch"):
            done.append(("branch.created", ev.BranchCreated(name=f"feature-{now:.0f}")))
        return done

    def _workflow_run(self) -> None:
        """A run started here, with its output, as Runs saves it (team/runs.py)."""
        now = self.clock.now
        events: list[dict] = [{"event": "workflow.started", "workflow": "ci", "at": now}]
        events += [{"event": "step.output", "step": "test", "at": now,
                    "line": f"tests/test_{line}.py ........................ [{line % 100}%]"}
                   for line in range(OUTPUT_LINES)]
        events.append({"event": "workflow.finished", "workflow": "ci", "at": now + 60})
        self.runs.save(RunRow(id=ev.uuid7(now), project=PROJECT, workflow="ci",
                              started_at=now, finished_at=now + 60, success=True,
                              events=events))
