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

    def start(self) -> None:
        for key, source in self._poller.sources.items():
            self._scheduler.add_job(
                self._run, IntervalTrigger(seconds=source.interval,
                                           jitter=source.interval * 0.1, timezone=UTC),
                args=[key], id=_job_id(key), name=f"poll {key[0]} {key[1]}",
                next_run_time=_at(self._poller.first_poll_at(key)),
            )
        self._scheduler.start()

    def every(self, seconds: float, job: Callable[[], Awaitable[None]], name: str, *,
              first_at: float) -> None:
        """Run `job` at `first_at`, then every `seconds`. A coroutine function, so that it runs
        on the event loop like every other write to the state database, never in a thread."""
        self._scheduler.add_job(
            job, IntervalTrigger(seconds=seconds, jitter=seconds * 0.1, timezone=UTC),
            id=name, name=name, next_run_time=_at(first_at))

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def _run(self, key: Key) -> None:
        await self._poller.poll(key)
        when = self._poller.sources[key].next_poll_at
        if when is not None:
            self._move(key, when)

    def _move(self, key: Key, when: float) -> None:
        job = self._scheduler.get_job(_job_id(key))
        if job is not None:
            job.modify(next_run_time=_at(when))
