"""APScheduler wiring only: one job per (project, upstream), run when polling says it is due.

Jobs run on the daemon's event loop (AsyncIOScheduler), coalesce missed runs into one, never
overlap themselves (`max_instances=1`), and carry jitter. The intervals themselves are decided in
polling.py; this module only moves each job's next run to what `Poller.poll` answered. Periodic
upkeep (compaction of the state database) runs here too, on the same loop as every other write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from projctld.logging import get_logger
from projctld.upstream.polling import Key, Poller

log = get_logger(__name__)


def _job_id(key: Key) -> str:
    return f"poll:{key[0]}:{key[1]}"


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class PollScheduler:
    def __init__(self, poller: Poller) -> None:
        self._poller = poller
        self._scheduler = AsyncIOScheduler(
            event_loop=asyncio.get_running_loop(), timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        poller.on_sooner = self._move

    def start(self, *, polling: bool = True) -> None:
        """Start the scheduler, with a job per source unless `polling` is False (a daemon
        started with a broken config polls nothing until a reload gives it one)."""
        if polling:
            self.sync_jobs()
        self._scheduler.start()

    def sync_jobs(self) -> None:
        """One job per source of the poller, after a reload changed them: new sources get
        one, gone ones lose theirs, and a changed interval takes effect."""
        wanted = {_job_id(key): key for key in self._poller.sources}
        for job in self._scheduler.get_jobs():
            if job.id.startswith("poll:") and job.id not in wanted:
                job.remove()
        for job_id, key in wanted.items():
            interval = self._poller.sources[key].interval
            trigger = IntervalTrigger(seconds=interval, jitter=interval * 0.1, timezone=UTC)
            job = self._scheduler.get_job(job_id)
            if job is None:
                self._scheduler.add_job(
                    self._run, trigger, args=[key], id=job_id, name=f"poll {key[0]} {key[1]}",
                    next_run_time=_at(self._poller.first_poll_at(key)))
            elif job.trigger.interval.total_seconds() != interval:
                job.modify(trigger=trigger)

    def every(self, seconds: float, job: Callable[[], Awaitable[None]], name: str, *,
              first_at: float) -> None:
        """Run `job` at `first_at`, then every `seconds`. A coroutine function, so that it runs
        on the event loop like every other write to the state database, never in a thread."""
        self._scheduler.add_job(
            job, IntervalTrigger(seconds=seconds, jitter=seconds * 0.1, timezone=UTC),
            id=name, name=name, next_run_time=_at(first_at), replace_existing=True)

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def _run(self, key: Key) -> None:
        await self._poller.poll(key)
        source = self._poller.sources.get(key)  # a reload may have taken it away meanwhile
        if source is not None and source.next_poll_at is not None:
            self._move(key, source.next_poll_at)

    def _move(self, key: Key, when: float) -> None:
        job = self._scheduler.get_job(_job_id(key))
        if job is not None:
            job.modify(next_run_time=_at(when))
