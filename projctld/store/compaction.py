"""Compaction of the state database: history past its [retention], then the space it took.

Dropped once older than configured: events the hub already holds, workflow runs, cached upstream
replies. Never dropped:

- an event the hub has not taken yet (`pushed = 0`): the user's offline work;
- an event a row of folded state rests on: the one that decided each deployment's start and
  every one of its ends (which end counts can change when a start arrives), each note's author
  and its text, each branch. Every fold rule compares an event's key
  with the keys of exactly those (team/sync/fold.py), so a later event folds onto the compacted
  state as it would onto the whole log, and `EventStore.refold` rebuilds the same state from
  what is left (tests/test_compaction.py proves both);
- this device's newest event, whose seq the next one continues, and the newest event of all,
  whose HLC the clock resumes from at start-up;
- events of a type this version does not know: a newer version's fold may rest on them;
- marks of deployments (`deployment.marked`): the delivery report rests on them
  (team/delivery.py), and they are few.

The folded tables (deployments, notes, branches) are the project state itself and stay whole.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from projctld.config import RetentionConfig
from projctld.errors import StoreError
from projctld.logging import get_logger
from projctld.store.database import Database
from projctld.store.http_cache import HttpCache
from projctld.team.sync.events import PAYLOADS
from projctld.team.sync.hlc import pack

log = get_logger(__name__)

DAY = 86400.0
_KNOWN_TYPES = tuple(kind for kind in PAYLOADS if kind != "deployment.marked")
_INCREMENTAL = 2  # PRAGMA auto_vacuum: 0 none, 1 full, 2 incremental
# The (device, seq) of every event a row of folded state rests on (NULLs where a row has no
# such event, as a note only ever edited has no creation: they match no event).
_DECIDING = (
    "SELECT started_device, started_seq FROM deployments "
    "UNION SELECT device, seq FROM deployment_finals "
    "UNION SELECT created_device, created_seq FROM notes "
    "UNION SELECT write_device, write_seq FROM notes "
    "UNION SELECT device, seq FROM branches"
)


def compact_events(db: Database, device: str, before_hlc: int) -> int:
    """Drop the events stamped before `before_hlc` that nothing needs any more (see the module
    docstring); `device` is this device. Returns how many were dropped."""
    with db.transaction() as conn:
        dropped = conn.execute(
            # Built once and searched through an automatic index: `(device, seq) NOT IN (...)`
            # would scan the whole state again for every event (minutes for 100,000 events).
            f"WITH deciding(device, seq) AS MATERIALIZED ({_DECIDING}) "
            "DELETE FROM events WHERE pushed = 1 AND hlc < ? "
            f"AND type IN ({', '.join('?' * len(_KNOWN_TYPES))}) "
            "AND NOT EXISTS (SELECT 1 FROM deciding AS d "
            "WHERE d.device = events.device AND d.seq = events.seq) "
            "AND NOT (device = ? AND seq = (SELECT max(seq) FROM events WHERE device = ?)) "
            "AND id != (SELECT id FROM events ORDER BY hlc DESC LIMIT 1) "
            "RETURNING device, seq",
            (before_hlc, *_KNOWN_TYPES, device, device)).fetchall()
        own = [seq for dropped_device, seq in dropped if dropped_device == device]
        if own:
            # This device's events up to here may come back from the hub (a cursor reset):
            # they are this device's own and held, not new (EventStore._own_come_back).
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('own_compacted_upto', ?) ON CONFLICT(key) "
                "DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS "
                "INTEGER))", (str(max(own)),))
        return len(dropped)


def compact_runs(db: Database, before: float) -> int:
    """Drop the workflow runs that ended before `before` (or started then and never ended:
    projctld stopped during the run). Returns how many were dropped."""
    with db.transaction() as conn:
        return conn.execute(
            "DELETE FROM workflow_runs WHERE coalesce(finished_at, started_at) < ?",
            (before,)).rowcount


def reclaim(db: Database) -> int:
    """Hand the free pages back to the file system and empty the WAL; returns the bytes freed.

    Without this the file would still stop growing, since later writes reuse free pages, but it
    would keep its high-water mark for ever: after the first compaction of a database weeks old,
    or after a shorter retention. Incremental auto-vacuum gives that space back here only, where
    FULL would move pages at every commit of every poll. A database made before compaction
    existed is switched over by one VACUUM, once. The WAL is bounded by SQLite's automatic
    checkpoint (1000 pages) but keeps the size of its largest transaction, such as this one's:
    a TRUNCATE checkpoint brings it back to zero bytes.
    """
    conn = db.conn
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != _INCREMENTAL:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")
        # executescript steps the pragma to its end; execute() would free a single page.
        conn.executescript("PRAGMA incremental_vacuum;")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        # Switching over adds a pointer-map page or two: nothing was freed then.
        freed = max(0, pages - conn.execute("PRAGMA page_count").fetchone()[0])
        return freed * conn.execute("PRAGMA page_size").fetchone()[0]
    except sqlite3.Error as exc:
        raise db.error(exc) from None


@dataclass(frozen=True)
class Compacted:
    """What one pass dropped."""

    events: int
    runs: int
    http_cache: int
    freed_bytes: int


class Compaction:
    """The pass the daemon runs every `retention.interval` seconds (upstream/scheduler.py)."""

    def __init__(self, db: Database, retention: RetentionConfig, device: str, cache: HttpCache,
                 *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._retention = retention
        self._device = device
        self._cache = cache
        self._clock = clock

    def configure(self, retention: RetentionConfig) -> None:
        """Take a reloaded [retention]; the next pass keeps what it says."""
        self._retention = retention

    def run(self) -> Compacted:
        now = self._clock()
        retention = self._retention
        before_hlc = pack(int((now - retention.events_days * DAY) * 1000))
        return Compacted(
            events=compact_events(self._db, self._device, before_hlc),
            runs=compact_runs(self._db, now - retention.runs_days * DAY),
            http_cache=self._cache.prune(now - retention.http_cache_days * DAY),
            freed_bytes=reclaim(self._db),
        )

    async def scheduled(self) -> None:
        """One pass as a scheduler job: a failure (disk full) is logged and tried next time."""
        try:
            done = self.run()
        except StoreError as exc:
            log.warning("compaction_failed", error=exc.message)
            return
        log.info("compacted", events=done.events, runs=done.runs, http_cache=done.http_cache,
                 freed_bytes=done.freed_bytes)
