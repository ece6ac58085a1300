"""A day of polling and syncing on a virtual clock leaves the state file, its rows and the
daemon's memory bounded, once compaction runs as configured."""

from __future__ import annotations

import gc
import tracemalloc
from dataclasses import dataclass

import anyio

from projctld.config import RetentionConfig
from projctld.sandbox.soak import HOUR, OPEN_CHANGES, OPENS_EVERY, Soak

# Six hours of history in a day: the second half of the day runs with the window full, in the
# steady state that weeks of the default 30 days reach.
WINDOW = 6 * HOUR
RETENTION = RetentionConfig(events_days=WINDOW / 86400, runs_days=WINDOW / 86400,
                            http_cache_days=WINDOW / 86400, interval=HOUR)
STEP = 60.0
# The second half may add this much traced memory: msgspec's cache of short strings (512 of
# them) fills up at its own pace. Keeping every cached URL's validators (about 600 a half-day,
# 120 KiB) is more, and so is a leak of 40 bytes a poll or 130 bytes an event.
MEMORY_SLACK = 64 * 1024


@dataclass
class Mark:
    rows: dict[str, int]
    db_bytes: int
    wal_bytes: int
    traced: int


def test_a_day_of_polling_and_syncing_stays_bounded(tmp_path) -> None:
    marks: dict[int, Mark] = {}

    def sample(soak: Soak) -> None:
        # Compaction has just run (both come on the hour): check what it must have left.
        hour = round(soak.hours)
        rows = soak.rows()
        now = soak.clock.now
        assert soak.events.waiting_count() == 0
        if hour >= 2:
            # Events of the window, plus the two that decide each deployment and each note and
            # the one of each branch (project state, never dropped), plus the newest two.
            assert rows["events"] <= soak.recorded_since(now - WINDOW) + 2 * rows[
                "deployments"] + 2 * rows["notes"] + rows["branches"] + 2, (hour, rows)
            assert rows["workflow_runs"] <= WINDOW / HOUR + 1
            urls_per_source = OPEN_CHANGES + WINDOW / STEP / OPENS_EVERY + 2
            assert rows["http_cache"] <= len(soak.poller.sources) * urls_per_source
        assert rows["snapshots"] == len(soak.poller.sources)
        if hour == 6:  # the window is full: what is traced from here on is the steady state
            tracemalloc.start()
        if hour in (12, 24):
            gc.collect()
            marks[hour] = Mark(rows, *soak.file_sizes(), tracemalloc.get_traced_memory()[0])

    async def day() -> None:
        soak = Soak(str(tmp_path), retention=RETENTION, step=STEP)
        await soak.start()
        try:
            await soak.run(24, every=HOUR, on_sample=sample)
        finally:
            tracemalloc.stop()
            await soak.stop()

    anyio.run(day)
    half, day_end = marks[12], marks[24]
    # Rows of the churn stay put; only project state (a few deployments, notes and branches an
    # hour) and the events deciding it grow.
    for table in ("http_cache", "workflow_runs", "snapshots"):
        assert day_end.rows[table] <= half.rows[table] + 1, table
    # The file holds the same window at both marks, and the WAL was checkpointed empty.
    assert half.wal_bytes == day_end.wal_bytes == 0
    assert day_end.db_bytes <= half.db_bytes * 1.15
    assert day_end.traced - half.traced <= MEMORY_SLACK
