"""The hub's store in PostgreSQL: for teams, behind any number of stateless hub processes."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import zlib
from collections.abc import AsyncIterator

import anyio
import msgspec
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from projctld.errors import ConfigError, StoreError
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
from projctld.logging import get_logger
from projctld.team.sync.events import Event, PulledEvent

log = get_logger(__name__)

SCHEMA_VERSION = 4
CHANNEL = "projctl_hub_events"
# Notifications are the fast path; this re-check covers a listener connection that is down.
_RECHECK_INTERVAL = 2.0
# How long the listener waits before reconnecting, at first and at most.
_RECONNECT_DELAYS = (0.2, 5.0)
_CONNECT_TIMEOUT = 10  # seconds, for libpq's connect_timeout
# Advisory locks are database-wide. A lock's first key says "projctl hub" and which lock, its
# second the schema, so that hubs in different schemas of one database never wait for each other.
_LOCK_NAMESPACE = 0x706A6862
_MIGRATE_LOCK = 1
_PUSH_LOCK = 2
_UPSTREAM_LOCK = 3

# The keys are ASCII by their patterns, so the "C" collation orders them the same and lets
# their indexes compare bytes instead of going through the locale.
_MIGRATIONS = [
    """
    CREATE TABLE events (
        hub_seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text COLLATE "C" NOT NULL UNIQUE,
        device text COLLATE "C" NOT NULL,
        seq bigint NOT NULL,
        hlc bigint NOT NULL,
        project text COLLATE "C" NOT NULL,
        actor text NOT NULL,
        type text NOT NULL,
        payload bytea NOT NULL,
        created_at double precision NOT NULL,
        pushed_by text NOT NULL,
        received_at double precision NOT NULL,
        UNIQUE (device, seq)
    );
    CREATE INDEX events_project_hub_seq ON events (project, hub_seq);
    CREATE TABLE devices (
        device text COLLATE "C" PRIMARY KEY,
        "user" text NOT NULL,
        first_seen_at double precision NOT NULL
    );
    CREATE TABLE tokens (
        hash text PRIMARY KEY,
        id text NOT NULL UNIQUE,
        "user" text NOT NULL,
        projects text[] NOT NULL,
        write boolean NOT NULL,
        created_at double precision NOT NULL,
        revoked boolean NOT NULL DEFAULT false
    );
    """,
    # The database's identity, what it holds of each device's log, each event's size; and
    # hub_seq given by next_hub_seq, above every value handed out before a restore.
    """
    CREATE TABLE hub (id text NOT NULL, created_at double precision NOT NULL,
                      max_hlc bigint NOT NULL DEFAULT 0);
    ALTER TABLE devices ADD COLUMN max_seq bigint NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN events bigint NOT NULL DEFAULT 0;
    UPDATE devices SET
        max_seq = coalesce((SELECT max(seq) FROM events WHERE events.device = devices.device), 0),
        events = (SELECT count(*) FROM events WHERE events.device = devices.device);
    ALTER TABLE events ADD COLUMN size integer NOT NULL DEFAULT 0;
    UPDATE events SET size = octet_length(payload) + length(id) + length(device)
        + length(project) + length(actor) + length(type) + length(pushed_by) + 96;
    ALTER TABLE events ALTER COLUMN hub_seq DROP IDENTITY;
    """,
    # The team's web pages: each deployment event's deployment and environment (filled from
    # the events by _migrate), the timeline's order, share links and browser sessions.
    """
    CREATE TABLE deploy_events (
        hub_seq bigint PRIMARY KEY,
        project text COLLATE "C" NOT NULL,
        deployment text COLLATE "C" NOT NULL,
        environment text NOT NULL,
        type text COLLATE "C" NOT NULL,
        hlc bigint NOT NULL
    );
    CREATE INDEX deploy_events_by_hlc ON deploy_events (project, hlc);
    CREATE INDEX deploy_events_by_environment ON deploy_events (project, environment, hlc);
    CREATE INDEX deploy_events_completed ON deploy_events (project, environment, type, hlc);
    CREATE INDEX deploy_events_by_deployment ON deploy_events (project, deployment);
    CREATE INDEX events_project_hlc ON events (project, hlc, device, seq);
    CREATE TABLE shares (
        hash text PRIMARY KEY,
        id text NOT NULL UNIQUE,
        project text NOT NULL,
        created_at double precision NOT NULL,
        expires_at double precision NOT NULL,
        revoked boolean NOT NULL DEFAULT false
    );
    CREATE TABLE sessions (
        hash text PRIMARY KEY,
        "user" text NOT NULL,
        csrf text NOT NULL,
        created_at double precision NOT NULL,
        expires_at double precision NOT NULL,
        token_hash text,
        share_id text
    );
    CREATE INDEX sessions_expiry ON sessions (expires_at);
    """,
    # The hub as the team's intermediary: upstream state per (project, upstream), users'
    # upstream identities, webhook deliveries seen, and the pollers' lease.
    """
    CREATE TABLE upstream_state (
        project text COLLATE "C" NOT NULL,
        upstream text COLLATE "C" NOT NULL,
        kind text NOT NULL,
        host text,
        data bytea,
        fetched_at double precision,
        attempted_at double precision,
        error bytea,
        version bigint NOT NULL,
        PRIMARY KEY (project, upstream)
    );
    CREATE TABLE identities (
        "user" text NOT NULL,
        kind text NOT NULL,
        name text NOT NULL,
        PRIMARY KEY ("user", kind)
    );
    CREATE TABLE deliveries (
        source text NOT NULL,
        delivery text NOT NULL,
        received_at double precision NOT NULL,
        PRIMARY KEY (source, delivery)
    );
    CREATE INDEX deliveries_age ON deliveries (received_at);
    CREATE TABLE leases (
        name text PRIMARY KEY,
        holder text NOT NULL,
        expires_at double precision NOT NULL
    );
    """,
]

# Under the push lock: each new event gets the next hub_seq (storage.next_hub_seq). The rows
# come as one JSON array of arrays (msgspec writes it in C; psycopg would dump ten arrays of
# a batch element by element in Python, which cost the hub more than the rest of a push).
_INSERT_EVENTS = """
    INSERT INTO events (hub_seq, id, device, seq, hlc, project, actor, type, payload,
                        created_at, pushed_by, received_at, size)
    SELECT greatest(coalesce((SELECT max(hub_seq) FROM events), 0), %s) + n,
           id, device, seq, hlc, project, actor, type, decode(payload, 'base64'),
           created_at, %s, %s, size
    FROM ROWS FROM (json_to_recordset(convert_from(%b, 'UTF8')::json) AS (
        id text, device text, seq bigint, hlc bigint, project text, actor text, type text,
        payload text, created_at float8, size int)) WITH ORDINALITY AS t(
        id, device, seq, hlc, project, actor, type, payload, created_at, size, n)
    ORDER BY n
    ON CONFLICT (device, seq) DO NOTHING
    RETURNING device, seq, project, hlc, hub_seq
"""
_INSERT_DEPLOY = """
    INSERT INTO deploy_events (hub_seq, project, deployment, environment, type, hlc)
    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[],
                         %s::bigint[])
    ON CONFLICT (hub_seq) DO NOTHING
"""
_DEPLOY_ROWS = ("SELECT e.type, e.device, e.seq, e.hlc, e.created_at, e.pushed_by, e.payload"
                " FROM deploy_events AS d JOIN events AS e ON e.hub_seq = d.hub_seq")
_SHARE_COLUMNS = "id, project, created_at, expires_at, revoked"
_SESSION_COLUMNS = '"user", csrf, created_at, expires_at, token_hash, share_id'
_SESSION_FIELDS = ("user", "csrf", "created_at", "expires_at", "token_hash", "share_id")
# The CTE's insert is invisible to the outer SELECT, which so sees only earlier owners.
_CLAIM_DEVICES = """
    WITH claimed AS (
        INSERT INTO devices (device, "user", first_seen_at)
        SELECT device, %s, %s FROM unnest(%s::text[]) AS device
        ON CONFLICT (device) DO NOTHING
    )
    SELECT device FROM devices WHERE device = ANY(%s) AND "user" <> %s
"""
_HELD_IDS = """
    SELECT device, seq, id FROM events
    WHERE (device, seq) IN (SELECT * FROM unnest(%s::text[], %s::bigint[]))
"""
_COUNT_NEW = """
    UPDATE devices AS d SET max_seq = greatest(d.max_seq, n.top), events = d.events + n.count
    FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS n(device, top, count)
    WHERE d.device = n.device
"""
_COLUMNS = "id, device, seq, hlc, project, actor, type, payload, created_at, hub_seq, pushed_by"
# A page ends once its events' sizes reach the budget (the first event always comes); the
# windows run over at most `limit` rows, in a stream (no count of them all, which would hold
# every payload of the page at once), and only the rows under the budget leave the server.
# `later` says another candidate follows a row.
_SELECT_EVENTS = f"""
    SELECT {_COLUMNS}, later FROM (
        SELECT {_COLUMNS}, size,
               sum(size) OVER (ORDER BY hub_seq ROWS UNBOUNDED PRECEDING) AS running,
               lead(hub_seq) OVER (ORDER BY hub_seq) IS NOT NULL AS later
        FROM (SELECT {_COLUMNS}, size FROM events WHERE project = %s AND hub_seq > %s
              ORDER BY hub_seq LIMIT %s) AS candidates
    ) AS page WHERE running - size < %s ORDER BY hub_seq
"""
_STORED_COLUMNS = ("hub_seq, id, device, seq, hlc, project, actor, type, payload, created_at,"
                   " pushed_by, received_at, size")
_STORED_FIELDS = tuple(field.strip() for field in _STORED_COLUMNS.split(","))
_TOKEN_COLUMNS = 'id, "user", projects, write, created_at, revoked'
_UPSTREAM_FIELDS = tuple(UpstreamState.__struct_fields__)
_UPSTREAM_COLUMNS = ", ".join(_UPSTREAM_FIELDS)


class PostgresStorage:
    """A pool for requests, plus one listener connection that turns other hub processes'
    pushes into wake-ups for this process's long-polling pulls."""

    kind = "postgresql"

    def __init__(self, dsn: str, *, schema: str = "projctl_hub", min_size: int = 1,
                 max_size: int = 10) -> None:
        self.dsn = dsn
        self.schema = schema
        self.hub_id = ""
        self._min_size = min_size
        self._max_size = max_size
        self._pool: AsyncConnectionPool | None = None
        self._listener: asyncio.Task[None] | None = None
        self._new_events = NewEventSignals(_RECHECK_INTERVAL)
        self._newest = SingleFlight()
        lock_key = zlib.crc32(schema.encode()) - (1 << 31)  # into int4's range
        self._migrate_lock = (_LOCK_NAMESPACE + _MIGRATE_LOCK, lock_key)
        self._push_lock = (_LOCK_NAMESPACE + _PUSH_LOCK, lock_key)
        self._upstream_lock = (_LOCK_NAMESPACE + _UPSTREAM_LOCK, lock_key)
        self._set_path = sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))

    async def open(self) -> None:
        try:
            conninfo_to_dict(self.dsn)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(
                f"the hub's storage URL {_redacted(self.dsn)} is not a valid PostgreSQL DSN:"
                f" {exc}",
                suggestions=["use the form postgresql://USER:PASSWORD@HOST:5432/DATABASE"],
            ) from None
        async with await self._dial("migrate") as conn:
            try:
                await self._migrate(conn)
            except psycopg.Error as exc:
                raise StoreError(
                    f"cannot prepare the hub's schema {self.schema} in {_redacted(self.dsn)}:"
                    f" {str(exc).strip()}",
                    suggestions=["check that this database user may create schemas and"
                                 " tables in that database"],
                ) from None
        listener = await self._dial_listener()
        pool = AsyncConnectionPool(
            self.dsn, min_size=self._min_size, max_size=self._max_size, open=False,
            kwargs={"autocommit": True, "connect_timeout": _CONNECT_TIMEOUT,
                    "application_name": f"projctl-hub:{self.schema}"[:63]},
            configure=self._configure, name=f"projctl-hub-{self.schema}",
        )
        try:
            await pool.open(wait=True, timeout=_CONNECT_TIMEOUT)
        except BaseException as exc:
            await listener.close()
            await pool.close()
            if isinstance(exc, PoolTimeout):
                raise self._unreachable("no connection of the pool came up in time") from None
            raise
        self._pool = pool
        # psycopg runs on asyncio only, and its pool already keeps tasks of its own; a plain
        # task lets open() and close() be called from different tasks.
        self._listener = asyncio.get_running_loop().create_task(self._listen(listener))

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def push(self, user: str, events: list[Event], *,
                   partial: bool = False) -> PushOutcome:
        if not events:
            return PushOutcome(accepted=0, duplicates=0)
        now = time.time()
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    outcome, projects = await self._push(conn, user, events, partial, now)
            except psycopg.errors.UniqueViolation:
                # Not (device, seq), which ON CONFLICT absorbs: an id held by another record.
                conflicts = await self._id_conflicts(conn, events)
                if not partial or not conflicts:
                    raise (SeqConflict(*conflicts[0]) if conflicts else StoreError(
                        "the hub refused a push for a uniqueness conflict it cannot place",
                        suggestions=["push again; if it persists, check the PostgreSQL log"])
                    ) from None
                refused = set(conflicts)
                rest = [e for e in events if (e.device, e.seq) not in refused]
                async with conn.transaction():
                    outcome, projects = await self._push(conn, user, rest, partial, now)
                outcome = msgspec.structs.replace(
                    outcome, conflicts=[*conflicts, *outcome.conflicts])
        for project in projects:
            self._new_events.wake(project)
        return outcome

    async def _push(self, conn: psycopg.AsyncConnection, user: str, events: list[Event],
                    partial: bool, now: float) -> tuple[PushOutcome, set[str]]:
        # Pushes take turns, so hub_seq values become visible in increasing order: a reader
        # past cursor N never misses a smaller hub_seq committed later.
        await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", self._push_lock)
        distinct = list(dict.fromkeys(e.device for e in events))
        taken = {row[0] for row in await (await conn.execute(
            _CLAIM_DEVICES, (user, now, distinct, distinct, user))).fetchall()}
        if taken and not partial:
            raise DeviceTaken(sorted(taken)[0])
        kept = [e for e in events if e.device not in taken]
        inserted: list[tuple[str, int, str, int]] = []
        if kept:
            encode = msgspec.msgpack.encode
            rows = []
            for e in kept:
                payload = encode(e.payload)
                rows.append({"id": e.id, "device": e.device, "seq": e.seq, "hlc": e.hlc,
                             "project": e.project, "actor": e.actor, "type": e.type,
                             "payload": payload, "created_at": e.created_at,
                             "size": stored_size(payload, e.id, e.device, e.project, e.actor,
                                                 e.type, user)})
            cursor = await conn.execute(
                _INSERT_EVENTS, (next_hub_seq(0, now) - 1, user, now,
                                 msgspec.json.encode(rows)))
            inserted = await cursor.fetchall()
            await _insert_deploy_events(conn, kept, inserted)
        conflicts: list[tuple[str, int]] = []
        if len(inserted) < len(kept):
            conflicts = await self._conflicts(conn, kept)
            if conflicts and not partial:
                raise SeqConflict(*conflicts[0])
        if inserted:
            counts: dict[str, list[int]] = {}
            for device, seq, *_ in inserted:
                top_count = counts.setdefault(device, [0, 0])
                top_count[0], top_count[1] = max(top_count[0], seq), top_count[1] + 1
            await conn.execute(_COUNT_NEW, (list(counts), [c[0] for c in counts.values()],
                                            [c[1] for c in counts.values()]))
            await conn.execute("UPDATE hub SET max_hlc = greatest(max_hlc, %s)",
                               (max(row[3] for row in inserted),))
        projects = {row[2] for row in inserted}
        if projects:
            # Delivered on commit, to every hub process listening on this database.
            await conn.execute(
                "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
                (CHANNEL, [f"{self.schema}/{p}" for p in projects]))
        pushed_to = [device for device in distinct if device not in taken]
        marks = {row[0]: DeviceMark(user=row[1], seq=row[2], events=row[3])
                 for row in await (await conn.execute(
                     'SELECT device, "user", max_seq, events FROM devices WHERE device = ANY(%s)',
                     (pushed_to,))).fetchall()}
        outcome = PushOutcome(accepted=len(inserted),
                              duplicates=len(kept) - len(inserted) - len(conflicts),
                              conflicts=conflicts, taken=sorted(taken), marks=marks)
        return outcome, projects

    async def pull(self, project: str, after: int, limit: int, *,
                   max_bytes: int = 1 << 62) -> PullPage:
        async with self._connection() as conn:
            # In binary: as text, PostgreSQL would write each payload out in hex, and psycopg
            # read it back.
            rows = await (await conn.execute(
                _SELECT_EVENTS, (project, after, limit + 1, max_bytes), binary=True)).fetchall()
        page = [row[:-1] for row in rows[:limit]]
        more = len(rows) > limit or (bool(rows) and rows[-1][-1])
        return PullPage(events=pulled_events(page), more=more)

    async def holds(self, project: str, hub_seq: int, event_id: str) -> bool:
        async with self._connection() as conn:
            return await (await conn.execute(
                "SELECT 1 FROM events WHERE hub_seq = %s AND project = %s AND id = %s",
                (hub_seq, project, event_id))).fetchone() is not None

    async def device_mark(self, device: str) -> DeviceMark:
        async with self._connection() as conn:
            row = await (await conn.execute(
                'SELECT "user", max_seq, events FROM devices WHERE device = %s',
                (device,))).fetchone()
        return DeviceMark(user=row[0], seq=row[1], events=row[2]) if row else DeviceMark()

    async def held(self, device: str, seqs: list[int]) -> dict[int, str]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT seq, id FROM events WHERE device = %s AND seq = ANY(%s)",
                (device, seqs))).fetchall()
        return dict(rows)

    async def max_hlc(self) -> int:
        async with self._connection() as conn:
            row = await (await conn.execute("SELECT max_hlc FROM hub")).fetchone()
        return row[0] if row else 0

    async def projects(self) -> list[str]:
        return [row[0] for row in await self._fetch(
            "SELECT DISTINCT project FROM events ORDER BY project")]

    async def last_hub_seq(self, project: str) -> int:
        return (await self._fetch("SELECT coalesce(max(hub_seq), 0) FROM events"
                                  " WHERE project = %s", (project,)))[0][0]

    async def timeline(self, project: str, query: Timeline) -> list[PulledEvent]:
        where, params = timeline_where(project, query, "%s")
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM events WHERE {where}"
            " ORDER BY hlc DESC, device DESC, seq DESC LIMIT %s", (*params, query.limit),
            binary=True)
        return pulled_events(rows)

    async def deployment_rows(self, project: str, since_hlc: int) -> list[tuple]:
        return await self._fetch(f"{_DEPLOY_ROWS} WHERE d.project = %s AND d.hlc >= %s",
                                 (project, since_hlc), binary=True)

    async def environments(self, project: str, limit: int) -> list[str]:
        return [row[0] for row in await self._fetch(
            "SELECT DISTINCT environment FROM deploy_events WHERE project = %s"
            " ORDER BY environment LIMIT %s", (project, limit))]

    async def recent_deployments(self, project: str, environment: str, limit: int, *,
                                 completed: bool = False) -> list[str]:
        kind = " AND type = 'deployment.completed'" if completed else ""
        rows = await self._fetch(
            f"SELECT deployment FROM deploy_events WHERE project = %s AND environment = %s{kind}"
            " ORDER BY hlc DESC LIMIT %s", (project, environment, limit))
        return list(dict.fromkeys(row[0] for row in rows))

    async def rows_of_deployments(self, project: str, deployments: list[str]) -> list[tuple]:
        if not deployments:
            return []
        return await self._fetch(f"{_DEPLOY_ROWS} WHERE d.project = %s AND"
                                 " d.deployment = ANY(%s)", (project, deployments), binary=True)

    async def add_share(self, share_hash: str, record: ShareRecord) -> None:
        await self._fetch(f"INSERT INTO shares (hash, {_SHARE_COLUMNS}) VALUES"
                          " (%s, %s, %s, %s, %s, %s)",
                          (share_hash, *msgspec.structs.astuple(record)))

    async def find_share(self, share_hash: str) -> ShareRecord | None:
        rows = await self._fetch(f"SELECT {_SHARE_COLUMNS} FROM shares WHERE hash = %s",
                                 (share_hash,))
        return ShareRecord(**dict(zip(_SHARE_FIELDS, rows[0], strict=True))) if rows else None

    async def share(self, share_id: str) -> ShareRecord | None:
        rows = await self._fetch(f"SELECT {_SHARE_COLUMNS} FROM shares WHERE id = %s",
                                 (share_id,))
        return ShareRecord(**dict(zip(_SHARE_FIELDS, rows[0], strict=True))) if rows else None

    async def list_shares(self) -> list[ShareRecord]:
        return [record for _, record in await self.export_shares()]

    async def export_shares(self) -> list[tuple[str, ShareRecord]]:
        rows = await self._fetch(f"SELECT hash, {_SHARE_COLUMNS} FROM shares"
                                 " ORDER BY created_at, id")
        return [(row[0], ShareRecord(**dict(zip(_SHARE_FIELDS, row[1:], strict=True))))
                for row in rows]

    async def revoke_share(self, share_id: str) -> bool:
        async with self._connection() as conn:
            cursor = await conn.execute("UPDATE shares SET revoked = true WHERE id = %s",
                                        (share_id,))
        return cursor.rowcount > 0

    async def add_session(self, session_hash: str, record: SessionRecord) -> None:
        async with self._connection() as conn:
            await conn.execute("DELETE FROM sessions WHERE expires_at <= %s", (time.time(),))
            await conn.execute(f"INSERT INTO sessions (hash, {_SESSION_COLUMNS}) VALUES"
                               " (%s, %s, %s, %s, %s, %s, %s)",
                               (session_hash, *msgspec.structs.astuple(record)))

    async def find_session(self, session_hash: str) -> SessionRecord | None:
        rows = await self._fetch(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE hash = %s",
                                 (session_hash,))
        return SessionRecord(**dict(zip(_SESSION_FIELDS, rows[0], strict=True))) if rows \
            else None

    async def delete_session(self, session_hash: str) -> None:
        await self._fetch("DELETE FROM sessions WHERE hash = %s", (session_hash,))

    async def _fetch(self, query: str, params: tuple = (), *, binary: bool = False
                     ) -> list[tuple]:
        async with self._connection() as conn:
            cursor = await conn.execute(query, params, binary=binary)
            return await cursor.fetchall() if cursor.description else []

    async def export_events(self, after: int, limit: int) -> list[StoredEvent]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                f"SELECT {_STORED_COLUMNS} FROM events WHERE hub_seq > %s ORDER BY hub_seq"
                " LIMIT %s", (after, limit))).fetchall()
        return [StoredEvent(**dict(zip(_STORED_FIELDS, row, strict=True))) for row in rows]

    async def import_events(self, events: list[StoredEvent]) -> None:
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(
                f"INSERT INTO events ({_STORED_COLUMNS}) VALUES"
                f" ({', '.join(['%s'] * len(_STORED_FIELDS))})",
                [msgspec.structs.astuple(event) for event in events])
            if events:
                await cursor.execute("UPDATE hub SET max_hlc = greatest(max_hlc, %s)",
                                     (max(event.hlc for event in events),))
            await cursor.execute(_INSERT_DEPLOY, _columns(deploy_rows(
                [(e.hub_seq, e.project, e.type, e.hlc, e.payload) for e in events])))

    async def export_devices(self) -> list[DeviceRecord]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                'SELECT device, "user", first_seen_at, max_seq, events FROM devices'
                " ORDER BY device")).fetchall()
        return [DeviceRecord(device=r[0], user=r[1], first_seen_at=r[2], max_seq=r[3],
                             events=r[4]) for r in rows]

    async def import_devices(self, devices: list[DeviceRecord]) -> None:
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(
                'INSERT INTO devices (device, "user", first_seen_at, max_seq, events)'
                " VALUES (%s, %s, %s, %s, %s)",
                [msgspec.structs.astuple(device) for device in devices])

    async def export_tokens(self) -> list[tuple[str, TokenRecord]]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                f"SELECT hash, {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id")
            ).fetchall()
        return [(row[0], _token(row[1:])) for row in rows]

    async def wait_for_events(self, project: str, after: int, timeout: float) -> None:
        async def has_events() -> bool:
            async with self._connection() as conn:
                return await (await conn.execute(
                    "SELECT 1 FROM events WHERE project = %s AND hub_seq > %s LIMIT 1",
                    (project, after))).fetchone() is not None

        await self._new_events.wait(project, timeout, has_events)

    def stop_waiting(self) -> None:
        self._new_events.stop()

    async def add_token(self, token_hash: str, record: TokenRecord) -> None:
        async with self._connection() as conn:
            await conn.execute(
                f"INSERT INTO tokens (hash, {_TOKEN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (token_hash, record.id, record.user, record.projects, record.write,
                 record.created_at, record.revoked))

    async def find_token(self, token_hash: str) -> TokenRecord | None:
        async with self._connection() as conn:
            row = await (await conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE hash = %s", (token_hash,))).fetchone()
        return _token(row) if row else None

    async def list_tokens(self) -> list[TokenRecord]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id")).fetchall()
        return [_token(row) for row in rows]

    async def revoke_token(self, token_id: str) -> bool:
        async with self._connection() as conn:
            cursor = await conn.execute("UPDATE tokens SET revoked = true WHERE id = %s",
                                        (token_id,))
        return cursor.rowcount > 0

    async def save_upstream(self, state: UpstreamState) -> int:
        async with self._connection() as conn, conn.transaction():
            # Versions in commit order, as hub_seq: a device never skips one given later.
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", self._upstream_lock)
            row = await (await conn.execute(
                "SELECT coalesce(max(version), 0) FROM upstream_state")).fetchone()
            version = next_hub_seq(row[0], time.time())
            await conn.execute(
                f"INSERT INTO upstream_state ({_UPSTREAM_COLUMNS}) VALUES"
                f" ({', '.join(['%s'] * len(_UPSTREAM_FIELDS))}) ON CONFLICT (project, upstream)"
                " DO UPDATE SET " + ", ".join(f"{f} = excluded.{f}" for f in _UPSTREAM_FIELDS[2:]),
                msgspec.structs.astuple(msgspec.structs.replace(state, version=version)))
            await conn.execute("SELECT pg_notify(%s, %s)",
                               (CHANNEL, f"{self.schema}/{upstream_key(state.project)}"))
        self._new_events.wake(upstream_key(state.project))
        return version

    async def upstream_states(self, project: str, after: int = 0) -> list[UpstreamState]:
        rows = await self._fetch(f"SELECT {_UPSTREAM_COLUMNS} FROM upstream_state WHERE"
                                 " project = %s AND version > %s ORDER BY upstream",
                                 (project, after))
        return [UpstreamState(**dict(zip(_UPSTREAM_FIELDS, row, strict=True))) for row in rows]

    async def wait_for_upstream(self, project: str, after: int, timeout: float) -> None:
        async def newest() -> int:
            rows = await self._fetch("SELECT coalesce(max(version), 0) FROM upstream_state"
                                     " WHERE project = %s", (project,))
            return rows[0][0]

        async def changed() -> bool:
            # Every device of the project wakes at once: one query for them all.
            return await self._newest.run(project, newest) > after

        await self._new_events.wait(upstream_key(project), timeout, changed)

    async def set_identity(self, user: str, kind: str, name: str | None) -> None:
        if name is None:
            await self._fetch('DELETE FROM identities WHERE "user" = %s AND kind = %s',
                              (user, kind))
            return
        await self._fetch('INSERT INTO identities ("user", kind, name) VALUES (%s, %s, %s)'
                          ' ON CONFLICT ("user", kind) DO UPDATE SET name = excluded.name',
                          (user, kind, name))

    async def identities(self) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for user, kind, name in await self._fetch(
                'SELECT "user", kind, name FROM identities ORDER BY "user", kind'):
            found.setdefault(user, {})[kind] = name
        return found

    async def first_delivery(self, source: str, delivery: str, now: float) -> bool:
        async with self._connection() as conn:
            await conn.execute("DELETE FROM deliveries WHERE received_at < %s",
                               (now - DELIVERY_MEMORY,))
            cursor = await conn.execute(
                "INSERT INTO deliveries (source, delivery, received_at) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING", (source, delivery, now))
        return cursor.rowcount > 0

    async def take_lease(self, name: str, holder: str, ttl: float, now: float) -> bool:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " expires_at = excluded.expires_at"
                " WHERE leases.holder = excluded.holder OR leases.expires_at < %s",
                (name, holder, now + ttl, now))
        return cursor.rowcount > 0

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection; psycopg's faults leave as StoreError."""
        if self._pool is None:
            raise StoreError(f"the hub's PostgreSQL store {_redacted(self.dsn)} is not open")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise self._unreachable("no database connection became free in time") from None
        except psycopg.OperationalError as exc:
            raise self._unreachable(str(exc).strip()) from None
        except psycopg.Error as exc:
            raise StoreError(
                f"the hub's PostgreSQL store {_redacted(self.dsn)} failed: {str(exc).strip()}",
                suggestions=["check the PostgreSQL server's log for the cause"],
            ) from None

    async def _dial(self, purpose: str) -> psycopg.AsyncConnection:
        """A connection of its own, outside the pool."""
        try:
            return await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT,
                # Names the schema too, so that an operator can tell hubs apart.
                application_name=f"projctl-hub-{purpose}:{self.schema}"[:63])
        except psycopg.Error as exc:
            raise self._unreachable(str(exc).strip()) from None

    async def _configure(self, conn: psycopg.AsyncConnection) -> None:
        await conn.execute(self._set_path)

    async def _migrate(self, conn: psycopg.AsyncConnection) -> None:
        async with conn.transaction():
            # Two hub processes starting together: the second waits, then finds it done.
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", self._migrate_lock)
            exists = await (await conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))).fetchone()
            if not exists:
                # Only when missing: a user that owns a schema made for it needs no right to
                # create schemas in the database.
                await conn.execute(sql.SQL("CREATE SCHEMA {}").format(
                    sql.Identifier(self.schema)))
            await conn.execute(self._set_path)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer"
                               " NOT NULL)")
            row = await (await conn.execute("SELECT max(version) FROM schema_version")).fetchone()
            version = row[0] or 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the hub's schema {self.schema} in {_redacted(self.dsn)} has version"
                    f" {version}, newer than this hub understands ({SCHEMA_VERSION})",
                    suggestions=["pip install --upgrade projctl", "then restart the hub"],
                )
            for number, ddl in enumerate(_MIGRATIONS[version:], start=version + 1):
                await conn.execute(ddl)
                if number == 2:
                    await conn.execute(
                        "INSERT INTO hub (id, created_at, max_hlc) VALUES (%s, %s, (SELECT"
                        " coalesce(max(hlc), 0) FROM events))", (new_hub_id(), time.time()))
                if number == 3:
                    await _fill_deploy_events(conn)
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)",
                                   (number,))
            row = await (await conn.execute("SELECT id FROM hub")).fetchone()
            self.hub_id = row[0]

    async def _dial_listener(self) -> psycopg.AsyncConnection:
        conn = await self._dial("listen")
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        except psycopg.Error as exc:
            await conn.close()
            raise self._unreachable(str(exc).strip()) from None
        return conn

    async def _listen(self, conn: psycopg.AsyncConnection) -> None:
        """Wake waiters on every notification; reconnect forever when the connection drops."""
        delay = _RECONNECT_DELAYS[0]
        while True:
            try:
                async with conn:
                    prefix = f"{self.schema}/"
                    async for note in conn.notifies():
                        if note.payload.startswith(prefix):
                            self._new_events.wake(note.payload[len(prefix):])
            except Exception as exc:  # whatever happens, waiters still have their re-check
                log.warning("hub_listener_lost", error=str(exc).strip(), retry_in_s=delay)
            while True:
                await anyio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_DELAYS[1])
                try:
                    conn = await self._dial_listener()
                except StoreError as exc:
                    log.warning("hub_listener_reconnect_failed", error=exc.message,
                                retry_in_s=delay)
                    continue
                break
            log.info("hub_listener_reconnected")
            delay = _RECONNECT_DELAYS[0]
            # Notifications sent while we were away are lost: let every waiter look again.
            self._new_events.wake_all()

    async def _conflicts(self, conn: psycopg.AsyncConnection,
                         events: list[Event]) -> list[tuple[str, int]]:
        """The (device, seq) of the pushed events that the hub holds with another id (the ones
        skipped were either those, or already held, or repeated within this batch)."""
        rows = await (await conn.execute(
            _HELD_IDS, ([e.device for e in events], [e.seq for e in events]))).fetchall()
        held = {(device, seq): id_ for device, seq, id_ in rows}
        return list(dict.fromkeys((e.device, e.seq) for e in events
                                  if held[e.device, e.seq] != e.id))

    async def _id_conflicts(self, conn: psycopg.AsyncConnection,
                            events: list[Event]) -> list[tuple[str, int]]:
        """The pushed events whose id another (device, seq) holds: in the hub, else an
        earlier event of the batch."""
        rows = await (await conn.execute(
            "SELECT id, device, seq FROM events WHERE id = ANY(%s)", ([e.id for e in events],)
        )).fetchall()
        owners = {id_: (device, seq) for id_, device, seq in rows}
        conflicts = []
        for event in events:
            key = (event.device, event.seq)
            if owners.setdefault(event.id, key) != key:
                conflicts.append(key)
        return list(dict.fromkeys(conflicts))

    def _unreachable(self, detail: str) -> StoreError:
        return StoreError(
            f"cannot reach PostgreSQL at {_redacted(self.dsn)}: {detail}",
            suggestions=[
                "check that PostgreSQL runs and accepts connections at that host and port",
                "check the DSN in the hub's storage URL (user, password, database)",
            ],
        )


_SHARE_FIELDS = ("id", "project", "created_at", "expires_at", "revoked")


def _columns(rows: list[tuple]) -> tuple[list, ...]:
    """Rows of deploy_events as the six arrays _INSERT_DEPLOY unnests."""
    return tuple(list(column) for column in zip(*rows, strict=True)) if rows else ([],) * 6


async def _insert_deploy_events(conn: psycopg.AsyncConnection, kept: list[Event],
                                inserted: list[tuple]) -> None:
    """deploy_events of the events just inserted (rows of _INSERT_EVENTS' RETURNING)."""
    positions = {(row[0], row[1]): row[4] for row in inserted}
    rows = deploy_rows([(positions[e.device, e.seq], e.project, e.type, e.hlc,
                         msgspec.msgpack.encode(e.payload)) for e in kept
                        if e.type in DEPLOY_TYPES and (e.device, e.seq) in positions])
    if rows:
        await conn.execute(_INSERT_DEPLOY, _columns(rows))


async def _fill_deploy_events(conn: psycopg.AsyncConnection) -> None:
    """deploy_events for the events a hub took before it kept them (schema 3), a batch at a
    time."""
    after = -1
    while rows := await (await conn.execute(
            "SELECT hub_seq, project, type, hlc, payload FROM events WHERE hub_seq > %s AND"
            " type = ANY(%s) ORDER BY hub_seq LIMIT 1000", (after, list(DEPLOY_TYPES)))
    ).fetchall():
        await conn.execute(_INSERT_DEPLOY, _columns(deploy_rows(rows)))
        after = rows[-1][0]


def _redacted(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return re.sub(r"(//[^:/@]*):[^@]*@", r"\1:***@", dsn)
    if "password" in params:
        params["password"] = "***"
    return make_conninfo(**params)


def _token(row: tuple) -> TokenRecord:
    id_, user, projects, write, created_at, revoked = row
    return TokenRecord(id=id_, user=user, projects=list(projects), write=write,
                       created_at=created_at, revoked=revoked)
