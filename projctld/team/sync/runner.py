"""The sync runner: attempts on an interval, soon after each local event, and on demand; backs
off with jitter while the hub fails, and between attempts listens for the team's new events.
A push that fails never stops the listening: pulls go on as long as they work."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import anyio

from projctl_client.protocol import ClockView, SetAsideView, SourceError, SyncProblem, SyncView
from projctld.config import SyncConfig
from projctld.errors import ProjctlError, UpstreamError
from projctld.logging import get_logger
from projctld.redact import redact_all, redact_text
from projctld.store.events import EventStore
from projctld.team.sync import planner, wire
from projctld.team.sync.clockcheck import judge
from projctld.team.sync.exchange import Exchanged, Hub, pull_project, sync_once
from projctld.team.sync.hlc import HybridClock

log = get_logger(__name__)
_OFFLINE = ("unreachable", "timeout")
# A long poll ends a little before the hub's limit, so that the hub never refuses it.
_LISTEN_MAX = wire.MAX_WAIT - 5
# Notices wait for `projctl sync` to show them; a device nobody asks keeps the newest ones.
_MAX_NOTICES = 20


class SyncRunner:
    def __init__(self, store: EventStore, hub: Hub | None, clock: HybridClock,
                 config: SyncConfig, projects: Sequence[str], *,
                 wall: Callable[[], float] = time.time,
                 jitter: Callable[[], float] = random.random) -> None:
        self._store = store
        self._hub = hub
        self._clock = clock
        self._config = config
        self._projects = list(projects)
        self._wall = wall
        self._jitter = jitter
        self._wake = anyio.Event()
        self._finished = anyio.Event()
        self._nudged_at: float | None = None
        self._forced = False
        self._syncing = False
        self._last_attempt: float | None = None
        self._last_success: float | None = None
        self._pulls_work = False
        self._next: float | None = None
        self._failures = 0
        self._error: UpstreamError | None = None
        self._pull_errors: dict[str, UpstreamError] = {}
        self._notices: list[str] = []
        self._pushed = 0
        self._pulled = 0
        self._restamped = 0
        # Called when the events waiting or the events held may have changed.
        self.on_change: Callable[[], None] = lambda: None

    def configure(self, config: SyncConfig, projects: Sequence[str], hub: Hub | None) -> None:
        """Take a reloaded [sync] and project list, and the hub client for it (a new one when
        its URL or token changed); a hub turned on or off takes a restart."""
        self._config, self._projects = config, list(projects)
        if self._hub is not None and hub is not None:
            self._hub = hub
        self._wake.set()  # plan again: the interval may have changed

    def nudge(self) -> None:
        """A local event was recorded: send it soon."""
        self._nudged_at = self._wall()
        self._wake.set()
        self.on_change()

    async def sync_now(self, wait: float) -> None:
        """Attempt at once and return when that attempt ends or after `wait` seconds."""
        if self._hub is None:
            return
        finished = self._finished
        self._forced = True
        self._wake.set()
        with anyio.move_on_after(wait):
            await finished.wait()

    async def run(self) -> None:
        """Run until cancelled (the daemon's task group)."""
        if self._hub is None:
            return
        while True:
            due = planner.next_attempt(
                last_attempt=self._last_attempt, failures=self._failures,
                nudged_at=self._nudged_at, forced=self._forced,
                interval=self._config.interval, debounce=self._config.debounce,
                max_backoff=self._config.max_backoff, jitter=self._jitter())
            self._next = due if due > float("-inf") else self._wall()
            if self._wake.is_set():
                self._wake = anyio.Event()
            delay = due - self._wall()
            if delay > 0:
                await self._idle(delay)
                continue  # woken or due: plan again, since a nudge or a force changes the plan
            await self._attempt()

    async def _idle(self, delay: float) -> None:
        async with anyio.create_task_group() as tasks:
            async def until_woken() -> None:
                await self._wake.wait()
                tasks.cancel_scope.cancel()

            tasks.start_soon(until_woken)
            with anyio.move_on_after(delay):
                while self._listening():
                    await self._listen(min(delay, _LISTEN_MAX))
                await anyio.sleep_forever()
            tasks.cancel_scope.cancel()

    def _listening(self) -> bool:
        """Listen while the last pulls worked, whatever became of the pushes."""
        return self._config.live and self._pulls_work and bool(self._readable())

    def _readable(self) -> list[str]:
        return [p for p in self._projects if p not in self._pull_errors]

    async def _listen(self, wait: float) -> None:
        """Long-poll every project at once, so a teammate's event shows up within seconds."""
        async with anyio.create_task_group() as tasks:
            for project in self._readable():
                tasks.start_soon(self._listen_one, project, wait)

    async def _listen_one(self, project: str, wait: float) -> None:
        assert self._hub is not None
        done = Exchanged()
        try:
            pulled = await pull_project(self._store, self._hub, self._clock, project,
                                        wait=wait, done=done)
        except Exception as exc:
            self._pulls_work = False
            self._failed(exc)
        else:
            self._pulled += pulled
            self._notice(done)
            if pulled or done.notices:
                self.on_change()

    async def _attempt(self) -> None:
        assert self._hub is not None
        started = self._wall()
        # The first attempt after a start, and a forced one, try the refused events again.
        retry_aside = self._forced or self._last_attempt is None
        self._syncing, self._forced, self._last_attempt = True, False, started
        finished, self._finished = self._finished, anyio.Event()
        try:
            done = await sync_once(self._store, self._hub, self._clock, self._projects,
                                   now=started, retry_aside=retry_aside)
        except Exception as exc:
            self._pulls_work = False
            self._failed(exc)
        else:
            self._pulls_work = True
            self._pull_errors = done.pull_errors
            self._pushed += done.pushed
            self._pulled += done.pulled
            self._restamped += done.restamped
            self._notice(done)
            if done.push_error is not None:
                self._failed(done.push_error)
            else:
                self._failures, self._error, self._last_success = 0, None, self._wall()
            if done.pushed or done.pulled or done.set_aside:
                log.info("synced", pushed=done.pushed, pulled=done.pulled,
                         set_aside=done.set_aside, restamped=done.restamped)
        finally:
            self._syncing = False
            if self._nudged_at is not None and self._nudged_at <= started:
                self._nudged_at = None  # that event went with this attempt
            finished.set()
            self.on_change()

    def _notice(self, done: Exchanged) -> None:
        for notice in done.notices:
            log.warning("sync_notice", notice=notice)
        self._notices = [*self._notices, *done.notices][-_MAX_NOTICES:]

    def take_notices(self) -> list[str]:
        """The notices not shown yet; each is shown once (by `projctl sync`)."""
        notices, self._notices = self._notices, []
        return notices

    def _failed(self, exc: Exception) -> None:
        """Count a failed attempt; whatever failed, the events stay here and the runner goes on."""
        self._failures += 1
        if isinstance(exc, UpstreamError):
            self._error = exc
        elif isinstance(exc, ProjctlError):  # the state database: disk full, permissions
            self._error = UpstreamError(exc.message, code=exc.code, suggestions=exc.suggestions)
        else:  # a bug: keep syncing later rather than take the daemon down
            log.exception("sync_bug")
            self._error = UpstreamError(f"internal error: {type(exc).__name__}: {exc}",
                                        code="internal",
                                        suggestions=["report this as a bug in projctl"])
        # The hub's refusal is its own text, shown by status, sync and metrics: redacted once.
        self._error.message = redact_text(self._error.message)
        self._error.suggestions = redact_all(self._error.suggestions)
        log.warning("sync_failed", code=self._error.code, error=self._error.message,
                    failures=self._failures)

    def view(self, *, notices: list[str] | None = None) -> SyncView:
        error = self._error
        hub = self._hub
        reading = hub.reading if hub is not None else None
        problem = judge(reading) if reading is not None else None
        return SyncView(
            hub=self._config.hub or None,
            device=self._store.device,
            waiting=self._store.waiting_count(),
            reachable=None if self._last_attempt is None
            else not (error is not None and error.code in _OFFLINE),
            syncing=self._syncing,
            last_attempt=self._last_attempt,
            last_success=self._last_success,
            next_attempt=self._next if self._hub is not None else None,
            failures=self._failures,
            error=None if error is None else SourceError(
                code=error.code, message=error.message, suggestions=error.suggestions),
            pushed=self._pushed,
            pulled=self._pulled,
            refused=self._store.aside_count(),
            set_aside=[SetAsideView(code=a.code, message=a.message, suggestions=a.suggestions,
                                    project=a.project, events=a.events,
                                    since=a.first_refused_at, retry_at=a.retry_at)
                       for a in self._store.aside()],
            pull_errors=[SyncProblem(project=project, code=exc.code, message=exc.message,
                                     suggestions=exc.suggestions)
                         for project, exc in sorted(self._pull_errors.items())],
            notices=list(self._notices) if notices is None else notices,
            hub_id=(hub.hub_id or None) if hub is not None else None,
            user=self._store.hub_user,
            clock=None if reading is None else ClockView(
                device_ahead_s=round(reading.device_ahead, 1),
                hub_behind_s=None if reading.hub_behind is None
                else round(reading.hub_behind, 1),
                problem=None if problem is None else SourceError(
                    code=problem.code, message=problem.message,
                    suggestions=problem.suggestions)),
            restamped=self._restamped,
        )
