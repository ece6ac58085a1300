"""The hub's store in one SQLite file: the embedded default for a small team."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
import msgspec

from projctl_client.paths import InsecureDirectory, ensure_private_dir, own_directories
from projctld.errors import StoreError
from projctld.hub.storage import (
    DeviceTaken,
    NewEventSignals,
    PushOutcome,
    SeqConflict,
    TokenRecord,
    pulled_events,
)
from projctld.store.database import private_files
from projctld.team.sync.events import Event, PulledEvent

SCHEMA_VERSION = 1
# Another process may write the same file; its pushes cannot signal our waiters, so a waiter
# looks at the database itself this often.
_RECHECK_INTERVAL = 1.0

_SCHEMA = """
CREATE TABLE events (
    hub_seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    project TEXT NOT NULL,
    actor TEXT NOT NULL,
    type TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    pushed_by TEXT NOT NULL,
    received_at REAL NOT NULL,
    UNIQUE (device, seq)
) STRICT;
CREATE INDEX events_project_hub_seq ON events (project, hub_seq);
CREATE TABLE devices (
    device TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    first_seen_at REAL NOT NULL
) STRICT;
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    user TEXT NOT NULL,
    projects TEXT NOT NULL,
    write INTEGER NOT NULL,
    created_at REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
) STRICT;
"""

_INSERT_EVENT = (
    "INSERT INTO events (id, device, seq, hlc, project, actor, type, payload, created_at,"
    " pushed_by, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (device, seq) DO NOTHING"
)
_SELECT_EVENTS = (
    "SELECT id, device, seq, hlc, project, actor, type, payload, created_at, hub_seq"
    " FROM events WHERE project = ? AND hub_seq > ? ORDER BY hub_seq LIMIT ?"
)
_TOKEN_COLUMNS = "id, user, projects, write, created_at, revoked"

T = TypeVar("T")


class SqliteStorage:
    """One connection, used by one worker thread at a time under an anyio lock: SQLite has a
    single writer anyway, and reads must not see another call's open transaction."""

    kind = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = anyio.Lock()
        self._new_events = NewEventSignals(_RECHECK_INTERVAL)

    async def open(self) -> None:
        self._conn = await anyio.to_thread.run_sync(self._open)

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await anyio.to_thread.run_sync(conn.close)

    async def push(self, user: str, events: list[Event]) -> PushOutcome:
        if not events:
            return PushOutcome(accepted=0, duplicates=0)
        outcome = await self._run(self._push, user, events)
        if outcome.accepted:
            for project in {event.project for event in events}:
                self._new_events.wake(project)
        return outcome

    async def pull(self, project: str, after: int, limit: int) -> list[PulledEvent]:
        rows = await self._run(self._read, _SELECT_EVENTS, (project, after, limit))
        return pulled_events(rows)

    async def wait_for_events(self, project: str, after: int, timeout: float) -> None:
        async def has_events() -> bool:
            return bool(await self._run(self._read, "SELECT 1 FROM events WHERE project = ? AND"
                                        " hub_seq > ? LIMIT 1", (project, after)))

        await self._new_events.wait(project, timeout, has_events)

    def stop_waiting(self) -> None:
        self._new_events.stop()

    async def add_token(self, token_hash: str, record: TokenRecord) -> None:
        await self._run(self._write, "INSERT INTO tokens (hash, id, user, projects, write,"
                        " created_at, revoked) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (token_hash, record.id, record.user, json.dumps(record.projects),
                         int(record.write), record.created_at, int(record.revoked)))

    async def find_token(self, token_hash: str) -> TokenRecord | None:
        rows = await self._run(self._read, f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE hash = ?",
                               (token_hash,))
        return _token(rows[0]) if rows else None

    async def list_tokens(self) -> list[TokenRecord]:
        rows = await self._run(self._read, f"SELECT {_TOKEN_COLUMNS} FROM tokens"
                               " ORDER BY created_at, id", ())
        return [_token(row) for row in rows]

    async def revoke_token(self, token_id: str) -> bool:
        changed = await self._run(self._write, "UPDATE tokens SET revoked = 1 WHERE id = ?",
                                  (token_id,))
        return changed > 0

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        async with self._lock:
            if self._conn is None:
                raise StoreError(f"the hub database {self.path} is not open")
            try:
                return await anyio.to_thread.run_sync(work, self._conn, *args)
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def _open(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            # Every team's events and the token hashes: 0600 in a 0700 directory when the hub
            # makes them; the mode of a directory it did not make is left as its owner chose.
            if directory in own_directories():
                ensure_private_dir(directory)
            else:
                os.makedirs(directory, mode=0o700, exist_ok=True)
        except (OSError, InsecureDirectory) as exc:
            raise StoreError(
                f"cannot create the directory of the hub database {self.path}: "
                f"{getattr(exc, 'strerror', None) or exc}",
                suggestions=[f"check what is at {directory}, or choose another path"],
            ) from None
        private_files(os.path.abspath(self.path))
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across a crash of the hub in WAL mode; only a power loss can
            # drop the last pushes, and devices push again what the hub does not hold.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(exc) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the hub database {self.path} has schema {version}, newer than this hub"
                    f" understands ({SCHEMA_VERSION})",
                    suggestions=["pip install --upgrade projctl", "then restart the hub"],
                )
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _error(self, exc: sqlite3.Error) -> StoreError:
        if isinstance(exc, sqlite3.OperationalError):
            suggestions = [f"check free space and permissions in "
                           f"{os.path.dirname(os.path.abspath(self.path))}",
                           "check that no other program holds the database locked"]
        else:
            suggestions = [f"check the file {self.path}: it may be damaged or not a hub database"]
        return StoreError(f"the hub database {self.path} cannot be used: {exc}",
                          suggestions=suggestions, context={"path": self.path})

    @staticmethod
    def _read(conn: sqlite3.Connection, query: str, params: tuple) -> list[tuple]:
        return conn.execute(query, params).fetchall()

    @staticmethod
    def _write(conn: sqlite3.Connection, query: str, params: tuple) -> int:
        return conn.execute(query, params).rowcount

    @staticmethod
    def _push(conn: sqlite3.Connection, user: str, events: list[Event]) -> PushOutcome:
        now = time.time()
        encode = msgspec.msgpack.encode
        rows = [
            (e.id, e.device, e.seq, e.hlc, e.project, e.actor, e.type, encode(e.payload),
             e.created_at, user, now)
            for e in events
        ]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for device in {event.device for event in events}:
                owner = conn.execute("SELECT user FROM devices WHERE device = ?",
                                     (device,)).fetchone()
                if owner is None:
                    conn.execute("INSERT INTO devices (device, user, first_seen_at)"
                                 " VALUES (?, ?, ?)", (device, user, now))
                elif owner[0] != user:
                    raise DeviceTaken(device)
            try:
                inserted = conn.executemany(_INSERT_EVENT, rows).rowcount
            except sqlite3.IntegrityError:
                # Not (device, seq), which ON CONFLICT absorbs: an id held by another record.
                for event in events:
                    held = conn.execute("SELECT device, seq FROM events WHERE id = ?",
                                        (event.id,)).fetchone()
                    if held is not None and tuple(held) != (event.device, event.seq):
                        raise SeqConflict(event.device, event.seq) from None
                raise
            if inserted < len(events):
                # Some were already held (or repeated in this batch): each must be the very
                # event pushed, else the device's log and the hub's disagree.
                for event in events:
                    held = conn.execute("SELECT id FROM events WHERE device = ? AND seq = ?",
                                        (event.device, event.seq)).fetchone()
                    if held[0] != event.id:
                        raise SeqConflict(event.device, event.seq)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return PushOutcome(accepted=inserted, duplicates=len(events) - inserted)


def _token(row: tuple) -> TokenRecord:
    id_, user, projects, write, created_at, revoked = row
    return TokenRecord(id=id_, user=user, projects=json.loads(projects), write=bool(write),
                       created_at=created_at, revoked=bool(revoked))
