"""The local event log: this device's events and the team's, the sync cursors, the folded state."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence

import msgspec

from projctl_client.protocol import DeploymentView
from projctld.store.database import Database
from projctld.team.sync import fold
from projctld.team.sync.events import Event, new_device_id, uuid7

_COLUMNS = "id, device, seq, hlc, project, actor, type, payload, created_at"
_encode = msgspec.msgpack.Encoder().encode
_decode_payload = msgspec.msgpack.Decoder(dict).decode


class EventStore:
    """Appends this device's events (gap-free seq), stores pulled ones once, folds both."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.device = self._device_id()
        rows = db.read("SELECT coalesce(max(seq), 0) FROM events WHERE device = ?", (self.device,))
        self.last_seq: int = rows[0][0]
        # Told of events newly held, once committed: ("recorded" here, or "received" by sync).
        self.on_stored: Callable[[Sequence[Event], str], None] = lambda events, origin: None

    def _device_id(self) -> str:
        # Chosen once per state database: a copied or restored database would be the same
        # device, which the hub detects (seq_conflict) instead of mixing two logs.
        with self._db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('device', ?)",
                         (new_device_id(),))
            return conn.execute("SELECT value FROM meta WHERE key = 'device'").fetchone()[0]

    def max_hlc(self) -> int:
        return self._db.read("SELECT coalesce(max(hlc), 0) FROM events")[0][0]

    def append(self, *, project: str, actor: str, type: str, payload: msgspec.Struct | dict,
               hlc: int, now: float) -> Event:
        """Record a new event of this device: stored and folded before this returns."""
        event = Event(
            id=uuid7(now), device=self.device, seq=self.last_seq + 1, hlc=hlc, project=project,
            actor=actor, type=type, payload=msgspec.to_builtins(payload), created_at=now,
        )
        with self._db.transaction() as conn:
            _insert(conn, [event], pushed=0)
            fold.apply(conn, event)
        self.last_seq = event.seq
        self.on_stored([event], "recorded")
        return event

    def waiting(self, limit: int) -> list[Event]:
        """The oldest of this device's events the hub has not taken yet, in seq order."""
        rows = self._db.read(
            f"SELECT {_COLUMNS} FROM events WHERE pushed = 0 AND device = ? ORDER BY seq "
            "LIMIT ?", (self.device, limit))
        return [_event(row) for row in rows]

    def waiting_count(self) -> int:
        return self._db.read("SELECT count(*) FROM events WHERE pushed = 0")[0][0]

    def is_waiting(self, seq: int) -> bool:
        """True while this device's event `seq` has not reached the hub."""
        rows = self._db.read("SELECT pushed FROM events WHERE device = ? AND seq = ?",
                             (self.device, seq))
        return bool(rows) and rows[0][0] == 0

    def mark_pushed(self, seqs: Sequence[int]) -> None:
        self._db.write_many("UPDATE events SET pushed = 1 WHERE device = ? AND seq = ?",
                            [(self.device, seq) for seq in seqs])

    def cursor(self, project: str) -> int:
        rows = self._db.read("SELECT after FROM sync_cursors WHERE project = ?", (project,))
        return rows[0][0] if rows else 0

    def store_pulled(self, project: str, events: Iterable[Event], next_after: int) -> int:
        """Store a page pulled from the hub and move the cursor, in one transaction; events
        already held (our own, or a page pulled twice) are skipped. Returns how many were new."""
        # This device wrote every one of its events up to last_seq: one coming back from the hub
        # is held, even when compaction (store/compaction.py) has dropped it since.
        events = [e for e in events if e.device != self.device or e.seq > self.last_seq]
        with self._db.transaction() as conn:
            new = _not_held(conn, events)
            _insert(conn, new, pushed=1)
            for event in new:
                fold.apply(conn, event)
            conn.execute(
                "INSERT INTO sync_cursors(project, after) VALUES (?, ?) ON CONFLICT(project) "
                "DO UPDATE SET after = max(after, excluded.after)", (project, next_after))
        if new:
            self.on_stored(new, "received")
        return len(new)

    def history(self, project: str, *, since_hlc: int = 0, types: Sequence[str] = (),
                limit: int = 50) -> list[Event]:
        """The newest `limit` events of a project (oldest first), optionally since an HLC and of
        the given types (`deployment` matches every `deployment.*`)."""
        clauses, params = ["project = ?", "hlc >= ?"], [project, since_hlc]
        if types:
            # `deployment` matches itself and every type between "deployment." and
            # "deployment/" (the character after "."), which an index can serve.
            clauses.append("(" + " OR ".join("type = ? OR (type > ? AND type < ?)"
                                             for _ in types) + ")")
            for kind in types:
                params += [kind, kind + ".", kind + "/"]
        rows = self._db.read(
            f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
            "ORDER BY hlc DESC, device DESC, seq DESC LIMIT ?", (*params, limit))
        return [_event(row) for row in reversed(rows)]

    def deployments(self, project: str, per_environment: int) -> list[DeploymentView]:
        """The newest deployments of each environment of a project, newest first."""
        return self._deployments(
            "SELECT *, row_number() OVER (PARTITION BY environment ORDER BY "
            "coalesce(started_hlc, final_hlc) DESC) AS rank FROM deployments WHERE project = ?",
            "rank <= ?", (project, per_environment))

    def deployment(self, project: str, deployment: str) -> DeploymentView | None:
        rows = self._deployments("SELECT * FROM deployments WHERE project = ? AND deployment = ?",
                                 "1", (project, deployment))
        return rows[0] if rows else None

    def _deployments(self, source: str, where: str, params: tuple) -> list[DeploymentView]:
        rows = self._db.read(
            "SELECT deployment, environment, state, actor, branch, commit_sha, started_at, "
            f"finished_at, duration, exit_status, reason FROM ({source}) WHERE {where} "
            "ORDER BY environment, coalesce(started_hlc, final_hlc) DESC", params)
        return [DeploymentView(
            deployment=r[0], environment=r[1], state=r[2], actor=r[3], branch=r[4], commit=r[5],
            started_at=r[6], finished_at=r[7], duration=r[8], exit_status=r[9], reason=r[10],
        ) for r in rows]

    def notes_matching(self, project: str, fragment: str) -> list[str]:
        """Ids of the project's notes that start or end with `fragment` (`projctl` shows the
        end, the random part); at most two, enough to tell a unique match from an ambiguous one."""
        rows = self._db.read(
            "SELECT note FROM notes WHERE project = ? AND (substr(note, -length(?)) = ? "
            "OR (note >= ? AND note < ?)) LIMIT 2",
            (project, fragment, fragment, fragment, fragment + "\uffff"))
        return [row[0] for row in rows]

    def digest(self) -> str:
        """A hash of every event id and every row of folded state: equal on two replicas
        exactly when they hold the same events and the same state."""
        digest = hashlib.sha256()
        for table, order in (("events", "id"), ("deployments", "project, deployment"),
                             ("notes", "project, note"), ("branches", "project, name")):
            columns = "id" if table == "events" else "*"
            for row in self._db.conn.execute(f"SELECT {columns} FROM {table} ORDER BY {order}"):
                digest.update(repr(row).encode())
        return digest.hexdigest()

    def refold(self) -> None:
        """Rebuild the folded state from the events held, in (hlc, device, seq) order (compaction
        keeps every event the state rests on, so this is the state of all events ever held)."""
        with self._db.transaction() as conn:
            for table in ("deployments", "notes", "branches"):
                conn.execute(f"DELETE FROM {table}")
            for row in conn.execute(
                    f"SELECT {_COLUMNS} FROM events ORDER BY hlc, device, seq").fetchall():
                fold.apply(conn, _event(row))


def _not_held(conn: sqlite3.Connection, events: list[Event]) -> list[Event]:
    """The events of a page whose id and (device, seq) this replica does not hold yet, each
    once: one query for the ids and one per device, rather than one per event."""
    held_ids = {row[0] for row in conn.execute(
        f"SELECT id FROM events WHERE id IN ({','.join('?' * len(events))})",
        [e.id for e in events])} if events else set()
    held_seqs: set[tuple[str, int]] = set()
    for device in {e.device for e in events}:
        seqs = [e.seq for e in events if e.device == device]
        held_seqs.update((device, row[0]) for row in conn.execute(
            "SELECT seq FROM events WHERE device = ? AND seq BETWEEN ? AND ?",
            (device, min(seqs), max(seqs))))
    new: dict[str, Event] = {}
    for event in events:
        if event.id not in held_ids and (event.device, event.seq) not in held_seqs:
            held_seqs.add((event.device, event.seq))
            new.setdefault(event.id, event)
    return list(new.values())


def _insert(conn: sqlite3.Connection, events: list[Event], *, pushed: int) -> None:
    conn.executemany(
        f"INSERT INTO events({_COLUMNS}, pushed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(e.id, e.device, e.seq, e.hlc, e.project, e.actor, e.type, _encode(e.payload),
          e.created_at, pushed) for e in events])


def _event(row: tuple) -> Event:
    return Event(id=row[0], device=row[1], seq=row[2], hlc=row[3], project=row[4], actor=row[5],
                 type=row[6], payload=_decode_payload(row[7]), created_at=row[8])
