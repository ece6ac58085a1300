"""Polling as a service: one Source per (project, upstream), its last good data, and when to poll.

The scheduler (scheduler.py) calls `poll` and applies the delay it returns; a Refresh request
calls `refresh`. When to poll next:

- the upstream's `interval`, halved while the user is active (a client request within
  `polling.active_window`), and at most 15 s while CI of mine runs (but not CI that has run
  for longer than `polling.stuck_after`: that is stuck, and waiting faster will not help),
  and as often while someone waits on it (`projctl wait`); such polls read afresh rather than
  take a search another project shared (which may be most of an interval old);
- four times the interval once no client has asked for `polling.idle_after` seconds;
- after failures, doubling per failure up to `polling.max_backoff` (offline, 5xx, bad token),
  and never before a rate-limit hold ends;
- always with ±10 % jitter, so that many daemons do not poll in step.

A poll that read some parts and not others (a repository renamed, one the token lost) succeeds:
the parts it read replace their data, each failed part keeps its last data and is named with
its problem. Only a fault of the upstream itself fails the source, and keeps all of its data.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
import msgspec
from anyio.abc import TaskGroup

from projctl_client.protocol import (
    ChangeRequestView,
    PipelineView,
    PollResult,
    SourceError,
    SourceView,
)
from projctld.config import Config
from projctld.errors import StoreError, UpstreamError
from projctld.logging import get_logger
from projctld.redact import redact_all, redact_text
from projctld.store.snapshots import SnapshotRow, SnapshotTable
from projctld.upstream.providers.model import Provider, Snapshot

log = get_logger(__name__)

Key = tuple[str, str]  # (project, upstream)
SourceInfo = tuple[float, str, str | None]  # (interval, kind, host)
RUNNING_CI_INTERVAL = 15.0
IDLE_FACTOR = 4.0
JITTER = 0.1
# Data older than this many intervals is marked stale in the status view.
STALE_AFTER_INTERVALS = 3.0


@dataclass
class Source:
    project: str
    upstream: str  # the instance's name
    interval: float
    kind: str = "plugin"
    host: str | None = None
    snapshot: Snapshot = field(default_factory=Snapshot)
    fetched_at: float | None = None
    attempted_at: float | None = None
    error: SourceError | None = None
    failures: int = 0
    polling: bool = False
    next_poll_at: float | None = None
    hold_until: float = 0.0  # a rate limit said: nothing before then
    # Read since start-up: before that, what its data says was already so (nothing to tell).
    read_since_start: bool = False
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    def view(self, now: float) -> SourceView:
        stale = self.fetched_at is None or self.error is not None or \
            now - self.fetched_at > STALE_AFTER_INTERVALS * self.interval
        return SourceView(
            upstream=self.upstream, fetched_at=self.fetched_at, attempted_at=self.attempted_at,
            next_poll_at=self.next_poll_at, polling=self.polling, stale=stale, error=self.error,
            kind=self.kind, host=self.host, problems=self.snapshot.problems,
        )


class Poller:
    def __init__(self, config: Config, providers: dict[str, Provider], table: SnapshotTable,
                 clock: Callable[[], float] = time.time, *,
                 plugin_sources: Mapping[Key, float] | None = None,
                 mirrored: Mapping[Key, SourceInfo] | None = None) -> None:
        self._config = config
        self._providers = providers
        self._table = table
        self._clock = clock
        self._tasks: TaskGroup | None = None
        self.last_activity = clock()
        # Called with (key, when) when a poll should move earlier (the user came back).
        self.on_sooner: Callable[[Key, float], None] = lambda key, when: None
        # Called after every poll, whatever its outcome: what a prompt shows may have changed.
        self.on_polled: Callable[[], None] = lambda: None
        # Called with (project, before, after) after a successful poll of a source that was
        # read before since start-up: notifications compare the two.
        self.on_read: Callable[[str, Snapshot, Snapshot], None] = lambda *args: None
        # Clients waiting on each source (`projctl wait`): it is polled as often as running CI.
        self.waiters: dict[Key, int] = {}
        self.sources: dict[Key, Source] = {}
        self._plugin_sources = plugin_sources or {}
        # Sources whose data another fills (the team's hub: upstream/viahub.py), by key, with
        # their (interval, kind, host). `mirror_poll(key, fresh)` stands in for their polls;
        # when it answers False, the source is polled here (a fallback to direct polling).
        self._mirrored: dict[Key, SourceInfo] = dict(mirrored or {})
        self.mirror_poll: Callable[[Key, bool], Awaitable[bool]] | None = None
        self.reconfigure(config, providers)

    def reconfigure(self, config: Config, providers: dict[str, Provider]) -> None:
        """Take the sources of `config` (at start, and when a reload changes it): a new source
        starts from what `snapshots` holds of it, a kept one keeps its data and takes the new
        interval, a gone one is dropped and forgotten."""
        self._config, self._providers = config, providers
        instances = config.instances()
        # (interval, kind, host) of each source.
        wanted = {(name, upstream): (instances[upstream].interval, instances[upstream].kind,
                                     _host(instances[upstream].url))
                  for name, project in config.projects.items()
                  for upstream in project.upstreams() if upstream in providers}
        # Plugins' upstreams (plugins/upstreams.py) say which projects they serve, how often.
        wanted.update({key: (interval, "plugin", None)
                       for key, interval in self._plugin_sources.items() if key[1] in providers})
        wanted.update(self._mirrored)
        for key in set(self.sources) - set(wanted):
            del self.sources[key]
        new = {key for key in wanted if key not in self.sources}
        for key, (interval, kind, host) in wanted.items():
            if key in new:
                self.sources[key] = Source(key[0], key[1], interval, kind=kind, host=host)
            else:
                source = self.sources[key]
                source.interval, source.kind, source.host = interval, kind, host
        for row in self._table.all() if new else []:
            source = self.sources.get((row.project, row.upstream))
            if (row.project, row.upstream) in new and source is not None:
                source.snapshot = row.data or Snapshot()
                source.fetched_at, source.attempted_at = row.fetched_at, row.attempted_at
                source.error = row.error
        self._table.keep_only(set(self.sources))

    def mirror(self, key: Key, info: SourceInfo) -> Source:
        """Hold a source filled from elsewhere (kept through reloads, never polled here unless
        `mirror_poll` declines); a new one starts from what `snapshots` holds of it."""
        if self._mirrored.get(key) != info:
            self._mirrored[key] = info
            self.reconfigure(self._config, self._providers)
        return self.sources[key]

    def is_mirrored(self, key: Key) -> bool:
        return key in self._mirrored

    def mirror_update(self, key: Key, *, snapshot: Snapshot | None, fetched_at: float | None,
                      attempted_at: float | None, error: SourceError | None) -> None:
        """A mirrored source's new state (snapshot None: only its attempt and error), stored
        in `snapshots` and announced (on_polled) as a poll's is."""
        source = self.sources[key]
        if snapshot is not None:
            # As a poll's read (_poll_locked): what changed is told (on_read), but never the
            # first read after a start.
            changed = source.fetched_at is None or msgspec.structs.replace(
                snapshot, as_of=None) != msgspec.structs.replace(source.snapshot, as_of=None)
            before, read_before = source.snapshot, source.read_since_start
            source.snapshot, source.fetched_at = snapshot, fetched_at
            source.read_since_start = True
            if read_before and changed:
                try:
                    self.on_read(source.project, before, snapshot)
                except Exception:  # telling must never cost the update
                    log.exception("transitions_failed", project=source.project)
            source.failures = 0
        source.error = error
        self._save(source, attempted_at if attempted_at is not None else self._clock(),
                   with_data=snapshot is not None)
        self.on_polled()

    def start(self, tasks: TaskGroup) -> None:
        """Refresh polls outlive the request that asked for them: they run in `tasks`."""
        self._tasks = tasks

    def first_poll_at(self, key: Key) -> float:
        """When to poll a source first after start: now if its data is old, else on schedule."""
        source = self.sources[key]
        now = self._clock()
        due = (source.fetched_at or 0.0) + self.delay(source)
        source.next_poll_at = max(now + random.uniform(0.0, 2.0), min(due, now + source.interval))
        return source.next_poll_at

    def touch(self) -> None:
        """A client asked: the user is active, so polls far away move closer."""
        now = self._clock()
        was_idle = now - self.last_activity > self._config.polling.active_window
        self.last_activity = now
        if not was_idle:
            return
        for key, source in self.sources.items():
            soon = now + self.delay(source)
            if source.next_poll_at is not None and source.next_poll_at > soon:
                source.next_poll_at = soon
                self.on_sooner(key, soon)

    @contextlib.contextmanager
    def waiting(self, keys: list[Key]) -> Iterator[None]:
        """While a client waits on these sources, poll them as often as running CI; the next
        poll of each moves that close now."""
        now = self._clock()
        for key in keys:
            self.waiters[key] = self.waiters.get(key, 0) + 1
            source = self.sources.get(key)
            if source is None:
                continue
            soon = now + self.delay(source)
            if source.next_poll_at is not None and source.next_poll_at > soon:
                source.next_poll_at = soon
                self.on_sooner(key, soon)
        try:
            yield
        finally:
            for key in keys:
                self.waiters[key] -= 1
                if not self.waiters[key]:
                    del self.waiters[key]

    async def poll(self, key: Key, *, fresh: bool = False) -> float:
        """Poll one source; return the seconds until it should be polled again."""
        source = self.sources[key]
        if source.lock.locked() and not fresh:
            return self.delay(source)  # a refresh is polling it right now
        # A read shared between projects may be most of an interval old: polled faster
        # because CI of mine runs or someone waits on it, it needs what this poll reads.
        fresh = fresh or key in self.waiters or source.snapshot.ci_running(
            self._clock(), self._config.polling.stuck_after)
        async with source.lock:
            if not (key in self._mirrored and self.mirror_poll is not None
                    and await self.mirror_poll(key, fresh)):
                await self._poll_locked(source, fresh=fresh)
        self.on_polled()
        delay = self.delay(source)
        source.next_poll_at = self._clock() + delay
        return delay

    async def refresh(self, project: str | None, wait: float) -> list[PollResult]:
        """Poll the project's sources (every source for None) now; report after `wait` s."""
        keys = [key for key in self.sources if project is None or key[0] == project]
        started = self._clock()
        done = {key: anyio.Event() for key in keys}
        elapsed: dict[Key, float] = {}

        async def run(key: Key) -> None:
            try:
                if key in self.sources:  # a reload may have taken it away meanwhile
                    await self.poll(key, fresh=True)
            finally:
                elapsed[key] = self._clock() - started
                done[key].set()

        assert self._tasks is not None, "Poller.start was not called"
        for key in keys:
            self._tasks.start_soon(run, key)
        with anyio.move_on_after(wait):
            for event in done.values():
                await event.wait()
        results = []
        for key in keys:
            source = self.sources.get(key)
            if source is None:
                continue
            finished = done[key].is_set()
            outcome = "pending" if not finished else "error" if source.error else "ok"
            crs, pipelines, tickets = source.snapshot.counts()
            results.append(PollResult(
                project=key[0], upstream=key[1], outcome=outcome,
                elapsed=elapsed.get(key, self._clock() - started),
                error=source.error if finished else None,
                change_requests=crs, pipelines=pipelines, tickets=tickets,
                problems=source.snapshot.problems if finished else [],
                kind=source.kind,
            ))
        return results

    def delay(self, source: Source) -> float:
        polling = self._config.polling
        now = self._clock()
        if source.failures:
            delay = min(source.interval * 2 ** min(source.failures, 10), polling.max_backoff)
            delay *= random.uniform(1 - JITTER, 1 + JITTER)
            return max(delay, source.hold_until - now + 1.0)
        idle_for = now - self.last_activity
        if idle_for > polling.idle_after:
            delay = source.interval * IDLE_FACTOR
        elif idle_for <= polling.active_window:
            delay = source.interval / 2
        else:
            delay = source.interval
        if source.snapshot.ci_running(now, polling.stuck_after) or \
                (source.project, source.upstream) in self.waiters:
            delay = min(delay, RUNNING_CI_INTERVAL)
        return delay * random.uniform(1 - JITTER, 1 + JITTER)

    async def _poll_locked(self, source: Source, *, fresh: bool) -> None:
        provider = self._providers.get(source.upstream)
        project = self._config.projects.get(source.project)
        if provider is None or project is None:  # a reload took it away while it waited
            return
        source.polling = True
        started = self._clock()
        try:
            snapshot = await provider.poll(source.project, project, fresh=fresh)
        except UpstreamError as exc:
            self._failed(source, exc, started)
        except Exception as exc:
            # A provider bug must cost one poll, never the daemon or the other sources.
            log.exception("poll_crashed", project=source.project, upstream=source.upstream)
            self._failed(source, UpstreamError(
                f"projctld failed while reading {source.upstream}: {type(exc).__name__}",
                code="internal", suggestions=["report this as a bug in projctl; the log has "
                                              "the details"]), started)
        else:
            if snapshot.problems:
                snapshot = keep_failed_parts(snapshot, source.snapshot)
            # as_of changes with every shared search; only the data decides a rewrite.
            changed = source.fetched_at is None or msgspec.structs.replace(
                snapshot, as_of=None) != msgspec.structs.replace(source.snapshot, as_of=None)
            fetched_at = min(started, snapshot.as_of or started)
            before, read_before = source.snapshot, source.read_since_start
            source.snapshot, source.fetched_at, source.error = snapshot, fetched_at, None
            source.read_since_start = True
            if read_before and changed:
                try:
                    self.on_read(source.project, before, snapshot)
                except Exception:  # telling must never cost the poll
                    log.exception("transitions_failed", project=source.project)
            source.failures = 0
            self._save(source, started, with_data=changed)
            # A poll that found nothing new is routine: at info, a month of them would fill
            # the log with little else.
            (log.info if changed else log.debug)(
                "polled", project=source.project, upstream=source.upstream, changed=changed,
                seconds=round(self._clock() - started, 3))
        finally:
            source.polling = False

    def _failed(self, source: Source, exc: UpstreamError, started: float) -> None:
        source.failures += 1
        # Redacted here too, whoever built the message (a provider, a plugin's upstream): it is
        # stored in `snapshots` and shown by status and refresh.
        source.error = SourceError(code=exc.code, message=redact_text(exc.message),
                                   suggestions=redact_all(exc.suggestions))
        if "wait_s" in exc.context:
            source.hold_until = started + float(exc.context["wait_s"])
        self._save(source, started, with_data=False)
        log.warning("poll_failed", project=source.project, upstream=source.upstream,
                    error=exc.code, message=source.error.message, failures=source.failures)

    def _save(self, source: Source, attempted_at: float, *, with_data: bool) -> None:
        source.attempted_at = attempted_at
        try:
            self._table.save(SnapshotRow(
                project=source.project, upstream=source.upstream, data=source.snapshot,
                fetched_at=source.fetched_at, attempted_at=attempted_at, error=source.error,
            ), with_data=with_data)
        except StoreError as exc:  # the data stays in memory and is served from there
            log.warning("snapshot_save_failed", error=exc.message)


def keep_failed_parts(snapshot: Snapshot, before: Snapshot) -> Snapshot:
    """`snapshot`, plus what `before` held of each part that could not be read now: a part is
    a repository or project path, or an owner (a single sign-on that hides an organisation)."""
    failed = [problem.part for problem in snapshot.problems]

    def of_failed(repo: str) -> bool:
        return any(repo == part or repo.startswith(part + "/") for part in failed)

    seen = {cr.url for cr in snapshot.change_requests}
    return msgspec.structs.replace(
        snapshot,
        change_requests=snapshot.change_requests + [
            cr for cr in before.change_requests if of_failed(cr.repo) and cr.url not in seen],
        pipelines=snapshot.pipelines + [
            p for p in before.pipelines if of_failed(p.repo)
            and not any(q.repo == p.repo and q.branch == p.branch for q in snapshot.pipelines)],
    )


def _host(url: str) -> str | None:
    return urlsplit(url).hostname or None


def branch_upstream(branch: str, project_sources: list[Source]
                    ) -> tuple[ChangeRequestView | None, PipelineView | None]:
    """A branch's change request and latest CI among its project's sources, by branch name."""
    requests: list[ChangeRequestView] = [
        cr for s in project_sources for cr in s.snapshot.change_requests
        if cr.source_branch == branch
    ]
    # The same branch name can exist in several repositories: mine, then the newest, wins.
    change_request = min(requests, key=lambda cr: (not cr.mine, -cr.updated_at), default=None)
    pipelines: list[PipelineView] = [
        p for s in project_sources for p in s.snapshot.pipelines if p.branch == branch
    ]
    if change_request is not None:
        pipelines.sort(key=lambda p: p.repo != change_request.repo)
    return change_request, pipelines[0] if pipelines else None
