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
from projctld.hub.storage.interface import (
    DELIVERY_MEMORY,
    DEPLOY_TYPES,
    DeviceMark,
    DeviceRecord,
    DeviceTaken,
    NewEventSignals,
    PullPage,
    PushOutcome,
    SeqConflict,
    SessionRecord,
    ShareRecord,
    SingleFlight,
    StoredEvent,
    Timeline,
    TokenRecord,
    UpstreamState,
    deploy_rows,
    new_hub_id,
    next_hub_seq,
    pulled_events,
    stored_size,
    timeline_where,
    upstream_key,
)
from projctld.store.database import private_files
from projctld.team.sync.events import Event, PulledEvent

SCHEMA_VERSION = 4
# Another process may write the same file; its pushes cannot signal our waiters, so a waiter
# looks at the database itself this often.
_RECHECK_INTERVAL = 1.0

# One script per schema version; a database is brought up from its own version, in order.
_MIGRATIONS = [
    """
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
    """,
    # The database's identity, what it holds of each device's log, each event's size.
    """
    CREATE TABLE hub (id TEXT NOT NULL, created_at REAL NOT NULL,
                      max_hlc INTEGER NOT NULL DEFAULT 0) STRICT;
    ALTER TABLE devices ADD COLUMN max_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN events INTEGER NOT NULL DEFAULT 0;
    UPDATE devices SET
        max_seq = coalesce((SELECT max(seq) FROM events WHERE events.device = devices.device), 0),
        events = (SELECT count(*) FROM events WHERE events.device = devices.device);
    ALTER TABLE events ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
    UPDATE events SET size = length(payload) + length(id) + length(device) + length(project)
        + length(actor) + length(type) + length(pushed_by) + 96;
    """,
    # The team's web pages: each deployment event's deployment and environment (filled from
    # the events by _migrate), the timeline's order, share links and browser sessions.
    """
    CREATE TABLE deploy_events (
        hub_seq INTEGER PRIMARY KEY,
        project TEXT NOT NULL,
        deployment TEXT NOT NULL,
        environment TEXT NOT NULL,
        type TEXT NOT NULL,
        hlc INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX deploy_events_by_hlc ON deploy_events (project, hlc);
    CREATE INDEX deploy_events_by_environment ON deploy_events (project, environment, hlc);
    CREATE INDEX deploy_events_completed ON deploy_events (project, environment, type, hlc);
    CREATE INDEX deploy_events_by_deployment ON deploy_events (project, deployment);
    CREATE INDEX events_project_hlc ON events (project, hlc, device, seq);
    CREATE TABLE shares (
        hash TEXT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        project TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE TABLE sessions (
        hash TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        token_hash TEXT,
        share_id TEXT
    ) STRICT;
    CREATE INDEX sessions_expiry ON sessions (expires_at);
    """,
    # The hub as the team's intermediary: upstream state per (project, upstream), users'
    # upstream identities, webhook deliveries seen, and the pollers' lease.
    """
    CREATE TABLE upstream_state (
        project TEXT NOT NULL,
        upstream TEXT NOT NULL,
        kind TEXT NOT NULL,
        host TEXT,
        data BLOB,
        fetched_at REAL,
        attempted_at REAL,
        error BLOB,
        version INTEGER NOT NULL,
        PRIMARY KEY (project, upstream)
    ) STRICT;
    CREATE TABLE identities (
        user TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (user, kind)
    ) STRICT;
    CREATE TABLE deliveries (
        source TEXT NOT NULL,
        delivery TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (source, delivery)
    ) STRICT;
    CREATE INDEX deliveries_age ON deliveries (received_at);
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at REAL NOT NULL
    ) STRICT;
    """,
]

_UPSTREAM_FIELDS = tuple(UpstreamState.__struct_fields__)
_UPSTREAM_COLUMNS = ", ".join(_UPSTREAM_FIELDS)
_INSERT_EVENT = (
    "INSERT INTO events (hub_seq, id, device, seq, hlc, project, actor, type, payload,"
    " created_at, pushed_by, received_at, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "id, device, seq, hlc, project, actor, type, payload, created_at, hub_seq, pushed_by"
_SELECT_EVENTS = (
    f"SELECT {_COLUMNS}, size FROM events WHERE project = ? AND hub_seq > ?"
    " ORDER BY hub_seq LIMIT ?"
)
_STORED_COLUMNS = ("hub_seq, id, device, seq, hlc, project, actor, type, payload, created_at,"
                   " pushed_by, received_at, size")
_TOKEN_COLUMNS = "id, user, projects, write, created_at, revoked"
_SHARE_COLUMNS = "id, project, created_at, expires_at, revoked"
_SESSION_COLUMNS = "user, csrf, created_at, expires_at, token_hash, share_id"
_INSERT_DEPLOY = ("INSERT OR IGNORE INTO deploy_events (hub_seq, project, deployment, environment,"
                  " type, hlc) VALUES (?, ?, ?, ?, ?, ?)")
_DEPLOY_ROWS = ("SELECT e.type, e.device, e.seq, e.hlc, e.created_at, e.pushed_by, e.payload"
                " FROM deploy_events AS d JOIN events AS e ON e.hub_seq = d.hub_seq")

T = TypeVar("T")


class SqliteStorage:
    """One connection, used by one worker thread at a time under an anyio lock: SQLite has a
    single writer anyway, and reads must not see another call's open transaction."""

    kind = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self.hub_id = ""
        self._conn: sqlite3.Connection | None = None
        self._lock = anyio.Lock()
        self._new_events = NewEventSignals(_RECHECK_INTERVAL)
        self._newest = SingleFlight()

    async def open(self) -> None:
        self._conn = await anyio.to_thread.run_sync(self._open)
        rows = await self._run(self._read, "SELECT id FROM hub", ())
        self.hub_id = rows[0][0]

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await anyio.to_thread.run_sync(conn.close)

    async def push(self, user: str, events: list[Event], *,
                   partial: bool = False) -> PushOutcome:
        if not events:
            return PushOutcome(accepted=0, duplicates=0)
        outcome, projects = await self._run(self._push, user, events, partial)
        for project in projects:
            self._new_events.wake(project)
        return outcome

    async def pull(self, project: str, after: int, limit: int, *,
                   max_bytes: int = 1 << 62) -> PullPage:
        rows, more = await self._run(self._pull, project, after, limit, max_bytes)
        return PullPage(events=pulled_events(rows), more=more)

    async def holds(self, project: str, hub_seq: int, event_id: str) -> bool:
        return bool(await self._run(
            self._read, "SELECT 1 FROM events WHERE hub_seq = ? AND project = ? AND id = ?",
            (hub_seq, project, event_id)))

    async def device_mark(self, device: str) -> DeviceMark:
        rows = await self._run(self._read, "SELECT user, max_seq, events FROM devices"
                               " WHERE device = ?", (device,))
        return DeviceMark(user=rows[0][0], seq=rows[0][1], events=rows[0][2]) if rows \
            else DeviceMark()

    async def held(self, device: str, seqs: list[int]) -> dict[int, str]:
        rows = await self._run(self._read, "SELECT seq, id FROM events WHERE device = ? AND seq"
                               f" IN ({', '.join('?' * len(seqs))})", (device, *seqs))
        return dict(rows)

    async def max_hlc(self) -> int:
        return (await self._run(self._read, "SELECT max_hlc FROM hub", ()))[0][0]

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

    async def projects(self) -> list[str]:
        rows = await self._run(self._read, "SELECT DISTINCT project FROM events ORDER BY project",
                               ())
        return [row[0] for row in rows]

    async def last_hub_seq(self, project: str) -> int:
        rows = await self._run(self._read, "SELECT coalesce(max(hub_seq), 0) FROM events"
                               " WHERE project = ?", (project,))
        return rows[0][0]

    async def timeline(self, project: str, query: Timeline) -> list[PulledEvent]:
        where, params = timeline_where(project, query, "?")
        rows = await self._run(self._read, f"SELECT {_COLUMNS} FROM events INDEXED BY"
                               f" events_project_hlc WHERE {where}"
                               " ORDER BY hlc DESC, device DESC, seq DESC LIMIT ?",
                               (*params, query.limit))
        return pulled_events(rows)

    async def deployment_rows(self, project: str, since_hlc: int) -> list[tuple]:
        return await self._run(self._read, f"{_DEPLOY_ROWS} WHERE d.project = ? AND d.hlc >= ?",
                               (project, since_hlc))

    async def environments(self, project: str, limit: int) -> list[str]:
        rows = await self._run(self._read, "SELECT DISTINCT environment FROM deploy_events"
                               " WHERE project = ? ORDER BY environment LIMIT ?",
                               (project, limit))
        return [row[0] for row in rows]

    async def recent_deployments(self, project: str, environment: str, limit: int, *,
                                 completed: bool = False) -> list[str]:
        kind = " AND type = 'deployment.completed'" if completed else ""
        rows = await self._run(self._read, "SELECT deployment FROM deploy_events WHERE"
                               f" project = ? AND environment = ?{kind} ORDER BY hlc DESC"
                               " LIMIT ?", (project, environment, limit))
        return list(dict.fromkeys(row[0] for row in rows))

    async def rows_of_deployments(self, project: str, deployments: list[str]) -> list[tuple]:
        if not deployments:
            return []
        return await self._run(self._read, f"{_DEPLOY_ROWS} WHERE d.project = ? AND"
                               f" d.deployment IN ({', '.join('?' * len(deployments))})",
                               (project, *deployments))

    async def add_share(self, share_hash: str, record: ShareRecord) -> None:
        await self._run(self._write, f"INSERT INTO shares (hash, {_SHARE_COLUMNS}) VALUES"
                        " (?, ?, ?, ?, ?, ?)", (share_hash, *msgspec.structs.astuple(record)))

    async def find_share(self, share_hash: str) -> ShareRecord | None:
        rows = await self._run(self._read, f"SELECT {_SHARE_COLUMNS} FROM shares WHERE hash = ?",
                               (share_hash,))
        return _share(rows[0]) if rows else None

    async def share(self, share_id: str) -> ShareRecord | None:
        rows = await self._run(self._read, f"SELECT {_SHARE_COLUMNS} FROM shares WHERE id = ?",
                               (share_id,))
        return _share(rows[0]) if rows else None

    async def list_shares(self) -> list[ShareRecord]:
        return [record for _, record in await self.export_shares()]

    async def export_shares(self) -> list[tuple[str, ShareRecord]]:
        rows = await self._run(self._read, f"SELECT hash, {_SHARE_COLUMNS} FROM shares"
                               " ORDER BY created_at, id", ())
        return [(row[0], _share(row[1:])) for row in rows]

    async def revoke_share(self, share_id: str) -> bool:
        return await self._run(self._write, "UPDATE shares SET revoked = 1 WHERE id = ?",
                               (share_id,)) > 0

    async def add_session(self, session_hash: str, record: SessionRecord) -> None:
        await self._run(self._write, "DELETE FROM sessions WHERE expires_at <= ?",
                        (time.time(),))
        await self._run(self._write, f"INSERT INTO sessions (hash, {_SESSION_COLUMNS}) VALUES"
                        " (?, ?, ?, ?, ?, ?, ?)",
                        (session_hash, *msgspec.structs.astuple(record)))

    async def find_session(self, session_hash: str) -> SessionRecord | None:
        rows = await self._run(self._read, f"SELECT {_SESSION_COLUMNS} FROM sessions"
                               " WHERE hash = ?", (session_hash,))
        return SessionRecord(**dict(zip(_SESSION_FIELDS, rows[0], strict=True))) if rows \
            else None

    async def delete_session(self, session_hash: str) -> None:
        await self._run(self._write, "DELETE FROM sessions WHERE hash = ?", (session_hash,))

    async def export_events(self, after: int, limit: int) -> list[StoredEvent]:
        rows = await self._run(self._read, f"SELECT {_STORED_COLUMNS} FROM events"
                               " WHERE hub_seq > ? ORDER BY hub_seq LIMIT ?", (after, limit))
        return [StoredEvent(**dict(zip(_STORED_FIELDS, row, strict=True))) for row in rows]

    async def import_events(self, events: list[StoredEvent]) -> None:
        await self._run(self._write_many, f"INSERT INTO events ({_STORED_COLUMNS}) VALUES"
                        f" ({', '.join('?' * len(_STORED_FIELDS))})",
                        [msgspec.structs.astuple(event) for event in events])
        await self._run(self._write_many, _INSERT_DEPLOY, deploy_rows(
            [(e.hub_seq, e.project, e.type, e.hlc, e.payload) for e in events]))
        if events:
            await self._run(self._write, "UPDATE hub SET max_hlc = max(max_hlc, ?)",
                            (max(event.hlc for event in events),))

    async def export_devices(self) -> list[DeviceRecord]:
        rows = await self._run(self._read, "SELECT device, user, first_seen_at, max_seq, events"
                               " FROM devices ORDER BY device", ())
        return [DeviceRecord(device=r[0], user=r[1], first_seen_at=r[2], max_seq=r[3],
                             events=r[4]) for r in rows]

    async def import_devices(self, devices: list[DeviceRecord]) -> None:
        await self._run(self._write_many, "INSERT INTO devices (device, user, first_seen_at,"
                        " max_seq, events) VALUES (?, ?, ?, ?, ?)",
                        [msgspec.structs.astuple(device) for device in devices])

    async def export_tokens(self) -> list[tuple[str, TokenRecord]]:
        rows = await self._run(self._read, f"SELECT hash, {_TOKEN_COLUMNS} FROM tokens"
                               " ORDER BY created_at, id", ())
        return [(row[0], _token(row[1:])) for row in rows]

    async def save_upstream(self, state: UpstreamState) -> int:
        version = await self._run(self._save_upstream, state, time.time())
        self._new_events.wake(upstream_key(state.project))
        return version

    async def upstream_states(self, project: str, after: int = 0) -> list[UpstreamState]:
        rows = await self._run(self._read, f"SELECT {_UPSTREAM_COLUMNS} FROM upstream_state"
                               " WHERE project = ? AND version > ? ORDER BY upstream",
                               (project, after))
        return [UpstreamState(**dict(zip(_UPSTREAM_FIELDS, row, strict=True))) for row in rows]

    async def wait_for_upstream(self, project: str, after: int, timeout: float) -> None:
        async def newest() -> int:
            rows = await self._run(self._read, "SELECT coalesce(max(version), 0) FROM"
                                   " upstream_state WHERE project = ?", (project,))
            return rows[0][0]

        async def changed() -> bool:
            # Every device of the project wakes at once: one query for them all.
            return await self._newest.run(project, newest) > after

        await self._new_events.wait(upstream_key(project), timeout, changed)

    async def set_identity(self, user: str, kind: str, name: str | None) -> None:
        if name is None:
            await self._run(self._write, "DELETE FROM identities WHERE user = ? AND kind = ?",
                            (user, kind))
            return
        await self._run(self._write, "INSERT INTO identities (user, kind, name) VALUES"
                        " (?, ?, ?) ON CONFLICT (user, kind) DO UPDATE SET name = excluded.name",
                        (user, kind, name))

    async def identities(self) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for user, kind, name in await self._run(
                self._read, "SELECT user, kind, name FROM identities ORDER BY user, kind", ()):
            found.setdefault(user, {})[kind] = name
        return found

    async def first_delivery(self, source: str, delivery: str, now: float) -> bool:
        await self._run(self._write, "DELETE FROM deliveries WHERE received_at < ?",
                        (now - DELIVERY_MEMORY,))
        return await self._run(self._write, "INSERT INTO deliveries (source, delivery,"
                               " received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                               (source, delivery, now)) > 0

    async def take_lease(self, name: str, holder: str, ttl: float, now: float) -> bool:
        return await self._run(self._write, "INSERT INTO leases (name, holder, expires_at)"
                               " VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                               " holder = excluded.holder, expires_at = excluded.expires_at"
                               " WHERE leases.holder = excluded.holder OR leases.expires_at < ?",
                               (name, holder, now + ttl, now)) > 0

    @staticmethod
    def _save_upstream(conn: sqlite3.Connection, state: UpstreamState, now: float) -> int:
        conn.execute("BEGIN IMMEDIATE")
        try:
            last = conn.execute("SELECT coalesce(max(version), 0) FROM upstream_state"
                                ).fetchone()[0]
            version = next_hub_seq(last, now)
            conn.execute(f"INSERT OR REPLACE INTO upstream_state ({_UPSTREAM_COLUMNS}) VALUES"
                         f" ({', '.join('?' * len(_UPSTREAM_FIELDS))})",
                         msgspec.structs.astuple(msgspec.structs.replace(state,
                                                                         version=version)))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return version

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
            for script in _MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            if version < 2:
                conn.execute("INSERT INTO hub (id, created_at, max_hlc) VALUES (?, ?, (SELECT"
                             " coalesce(max(hlc), 0) FROM events))", (new_hub_id(), time.time()))
            if version < 3:
                _fill_deploy_events(conn)
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
    def _write_many(conn: sqlite3.Connection, query: str, rows: list[tuple]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(query, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _pull(conn: sqlite3.Connection, project: str, after: int, limit: int,
              max_bytes: int) -> tuple[list[tuple], bool]:
        # Read row by row, so that a page of large events stops at its budget in memory too.
        cursor = conn.execute(_SELECT_EVENTS, (project, after, limit + 1))
        try:
            rows: list[tuple] = []
            total = 0
            for row in cursor:
                if len(rows) == limit or (rows and total >= max_bytes):
                    return rows, True
                total += row[-1]
                rows.append(row[:-1])
            return rows, False
        finally:
            cursor.close()

    @staticmethod
    def _push(conn: sqlite3.Connection, user: str, events: list[Event],
              partial: bool) -> tuple[PushOutcome, set[str]]:
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            taken = _claim_devices(conn, user, {event.device for event in events}, now)
            if taken and not partial:
                raise DeviceTaken(sorted(taken)[0])
            new, duplicates, conflicts = _sort_out(conn, [e for e in events
                                                          if e.device not in taken])
            if conflicts and not partial:
                raise SeqConflict(*conflicts[0])
            new = _insert_new(conn, new, user, now, conflicts, partial)
            _insert_deploy_events(conn, new)
            counts: dict[str, list[int]] = {}
            for event in new:
                counts.setdefault(event.device, []).append(event.seq)
            conn.executemany(
                "UPDATE devices SET max_seq = max(max_seq, ?), events = events + ?"
                " WHERE device = ?",
                [(max(seqs), len(seqs), device) for device, seqs in counts.items()])
            if new:
                conn.execute("UPDATE hub SET max_hlc = max(max_hlc, ?)",
                             (max(event.hlc for event in new),))
            pushed_to = sorted({event.device for event in events} - taken)
            marks = {row[0]: DeviceMark(user=row[1], seq=row[2], events=row[3])
                     for row in conn.execute(
                         "SELECT device, user, max_seq, events FROM devices WHERE device IN"
                         f" ({', '.join('?' * len(pushed_to))})", pushed_to)}
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        outcome = PushOutcome(accepted=len(new), duplicates=duplicates, conflicts=conflicts,
                              taken=sorted(taken), marks=marks)
        return outcome, {event.project for event in new}


_STORED_FIELDS = tuple(field.strip() for field in _STORED_COLUMNS.split(","))
_SESSION_FIELDS = tuple(field.strip() for field in _SESSION_COLUMNS.split(","))


def _fill_deploy_events(conn: sqlite3.Connection) -> None:
    """deploy_events for the events a hub took before it kept them (schema 3), a batch at a
    time."""
    after = -1
    while rows := conn.execute(
            "SELECT hub_seq, project, type, hlc, payload FROM events WHERE hub_seq > ? AND type"
            f" IN ({', '.join('?' * len(DEPLOY_TYPES))}) ORDER BY hub_seq LIMIT 1000",
            (after, *DEPLOY_TYPES)).fetchall():
        conn.executemany(_INSERT_DEPLOY, deploy_rows(rows))
        after = rows[-1][0]


def _claim_devices(conn: sqlite3.Connection, user: str, devices: set[str],
                   now: float) -> set[str]:
    """Register the new devices as `user`'s; the devices among them that are another's."""
    taken = set()
    for device in devices:
        owner = conn.execute("SELECT user FROM devices WHERE device = ?", (device,)).fetchone()
        if owner is None:
            conn.execute("INSERT INTO devices (device, user, first_seen_at) VALUES (?, ?, ?)",
                         (device, user, now))
        elif owner[0] != user:
            taken.add(device)
    return taken


def _sort_out(conn: sqlite3.Connection, events: list[Event]
              ) -> tuple[list[Event], int, list[tuple[str, int]]]:
    """(new events, how many were already held, the (device, seq) held with another id).
    A batch may repeat an event (a duplicate) but not change one (a conflict)."""
    held: dict[tuple[str, int], str] = {}
    by_device: dict[str, list[int]] = {}
    for event in events:
        by_device.setdefault(event.device, []).append(event.seq)
    for device, seqs in by_device.items():
        held.update(((device, seq), id_) for seq, id_ in conn.execute(
            "SELECT seq, id FROM events WHERE device = ? AND seq BETWEEN ? AND ?",
            (device, min(seqs), max(seqs))))
    new, duplicates, conflicts = [], 0, []
    for event in events:
        key = (event.device, event.seq)
        have = held.get(key)
        if have is None:
            held[key] = event.id
            new.append(event)
        elif have == event.id:
            duplicates += 1
        else:
            conflicts.append(key)
    return new, duplicates, conflicts


def _insert_new(conn: sqlite3.Connection, events: list[Event], user: str, now: float,
                conflicts: list[tuple[str, int]], partial: bool) -> list[Event]:
    """Insert `events` with the next hub_seqs; an event whose id is held by another record
    (or by another event of the batch) is a conflict. Returns the events inserted."""
    last = conn.execute("SELECT coalesce(max(hub_seq), 0) FROM events").fetchone()[0]
    first = next_hub_seq(last, now)
    conn.execute("SAVEPOINT new_events")
    try:
        conn.executemany(_INSERT_EVENT, _rows(events, first, user, now))
        conn.execute("RELEASE new_events")
        return events
    except sqlite3.IntegrityError:
        # Rare, so looked for only now: an id that another (device, seq) holds.
        conn.execute("ROLLBACK TO new_events")
        conn.execute("RELEASE new_events")
    ids = [event.id for event in events]
    reused = {row[0] for row in conn.execute(
        f"SELECT id FROM events WHERE id IN ({', '.join('?' * len(ids))})", ids)}
    seen: set[str] = set()
    kept = []
    for event in events:
        if event.id in reused or event.id in seen:
            if not partial:
                raise SeqConflict(event.device, event.seq)
            conflicts.append((event.device, event.seq))
        else:
            seen.add(event.id)
            kept.append(event)
    conn.executemany(_INSERT_EVENT, _rows(kept, first, user, now))
    return kept


def _rows(events: list[Event], first: int, user: str, now: float) -> list[tuple]:
    encode = msgspec.msgpack.encode
    rows = []
    for offset, e in enumerate(events):
        payload = encode(e.payload)
        rows.append((first + offset, e.id, e.device, e.seq, e.hlc, e.project, e.actor, e.type,
                     payload, e.created_at, user, now,
                     stored_size(payload, e.id, e.device, e.project, e.actor, e.type, user)))
    return rows


def _insert_deploy_events(conn: sqlite3.Connection, events: list[Event]) -> None:
    """deploy_events of the events just inserted (found by their ids: a partial push leaves
    some out)."""
    deploying = [e for e in events if e.type in DEPLOY_TYPES]
    if not deploying:
        return
    held = dict(conn.execute(
        f"SELECT id, hub_seq FROM events WHERE id IN ({', '.join('?' * len(deploying))})",
        [e.id for e in deploying]).fetchall())
    conn.executemany(_INSERT_DEPLOY, deploy_rows(
        [(held[e.id], e.project, e.type, e.hlc, msgspec.msgpack.encode(e.payload))
         for e in deploying if e.id in held]))


def _share(row: tuple) -> ShareRecord:
    id_, project, created_at, expires_at, revoked = row
    return ShareRecord(id=id_, project=project, created_at=created_at, expires_at=expires_at,
                       revoked=bool(revoked))


def _token(row: tuple) -> TokenRecord:
    id_, user, projects, write, created_at, revoked = row
    return TokenRecord(id=id_, user=user, projects=json.loads(projects), write=bool(write),
                       created_at=created_at, revoked=bool(revoked))
