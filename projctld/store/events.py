"""The local event log: this device's events and the team's, the sync cursors, the folded state,
and what this device knows of the hub: its identity, who the hub says we are, refused events."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import msgspec

from projctl_client.protocol import DeploymentView
from projctld.store.database import Database
from projctld.team.sync import fold
from projctld.team.sync.events import Event, new_device_id, uuid7
from projctld.team.sync.wire import MAX_EVENT

_COLUMNS = "id, device, seq, hlc, project, actor, type, payload, created_at"
_encode = msgspec.msgpack.Encoder().encode
_decode_payload = msgspec.msgpack.Decoder(dict).decode
# The states of `pushed` (migration 0005).
WAITING, ON_HUB, ASIDE = 0, 1, 2


class EventTooLarge(ValueError):
    """An event larger than the hub takes (wire.MAX_EVENT): refused before it is stored."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the event would take {size} bytes, more than the {MAX_EVENT} "
                         "an event may hold")
        self.size = size


@dataclass(frozen=True)
class Aside:
    """A group of this device's events the hub refused for one reason."""

    code: str
    message: str
    suggestions: list[str]
    project: str
    events: int
    first_refused_at: float
    retry_at: float


@dataclass
class Recovery:
    """What comparing the hub's mark of this device's log with ours found and did."""

    resent: int = 0  # events the hub no longer held, queued to be sent again
    lost: int = 0  # events the hub no longer holds that this device no longer holds either
    # (the hub's highest seq of this device, this database's) when the hub's is higher: the
    # database was restored from an older copy
    behind: tuple[int, int] | None = None


class EventStore:
    """Appends this device's events (gap-free seq), stores pulled ones once, folds both."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.device = self._device_id()
        # The highest seq of this device held here or at the hub: the next event's seq follows.
        self.last_seq: int = self._own_max()
        self.hub_user: str | None = self._meta("hub_user")
        # Projects whose state must be folded again (users learnt for events already held).
        self._refold: set[str] = set()
        # Asked of every reply of the hub, so kept here rather than read again each time.
        self._hub_id = self._meta("hub_id")
        self._own_lost = int(self._meta("own_lost") or 0)
        self._resend_pending = self._meta("resend_pending") is not None
        self._pushed_top: int | None = None  # this device's highest seq the hub holds
        self._any_aside = bool(self._db.read("SELECT 1 FROM events_aside LIMIT 1"))
        # Told of events newly held, once committed: ("recorded" here, or "received" by sync).
        self.on_stored: Callable[[Sequence[Event], str], None] = lambda events, origin: None
        if self._meta("refold") is not None:  # migration 0005: users and deployment finals
            self.refold()
            self._set_meta("refold", None)

    def _device_id(self) -> str:
        # Chosen once per state database: a copied or restored database would be the same
        # device: what the hub holds of it tells (check_mark, and seqs taken back or moved).
        with self._db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('device', ?)",
                         (new_device_id(),))
            return conn.execute("SELECT value FROM meta WHERE key = 'device'").fetchone()[0]

    def _own_max(self) -> int:
        held = self._db.read("SELECT coalesce(max(seq), 0) FROM events WHERE device = ?",
                             (self.device,))[0][0]
        return max(held, int(self._meta("hub_seq") or 0))

    def _cursor(self, query: str, params: tuple) -> sqlite3.Cursor:
        """A query read row by row (the caller closes it), its faults the store's own."""
        try:
            return self._db.conn.execute(query, params)
        except sqlite3.Error as exc:
            raise self._db.error(exc) from None

    def _meta(self, key: str) -> str | None:
        rows = self._db.read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def _set_meta(self, key: str, value: str | None) -> None:
        with self._db.transaction() as conn:
            if value is None:
                conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                             (key, value))

    def max_hlc(self) -> int:
        return self._db.read("SELECT coalesce(max(hlc), 0) FROM events")[0][0]

    def seen_hlc(self) -> int:
        """The highest HLC of an event this device has seen that the hub also holds."""
        return self._db.read("SELECT coalesce(max(hlc), 0) FROM events WHERE pushed = 1")[0][0]

    def append(self, *, project: str, actor: str, type: str, payload: msgspec.Struct | dict,
               hlc: int, now: float) -> Event:
        """Record a new event of this device: stored and folded before this returns. Raises
        EventTooLarge for an event the hub would refuse for its size."""
        event = Event(
            id=uuid7(now), device=self.device, seq=self.last_seq + 1, hlc=hlc, project=project,
            actor=actor, type=type, payload=msgspec.to_builtins(payload), created_at=now,
        )
        size = len(_encode(event))
        if size > MAX_EVENT:
            raise EventTooLarge(size)
        with self._db.transaction() as conn:
            _insert(conn, [event], pushed=WAITING)
            fold.apply(conn, event, self.hub_user)
        self.last_seq = event.seq
        self.on_stored([event], "recorded")
        return event

    # What waits to be sent, and what the hub said of it. (`pushed != 1` in a condition lets
    # SQLite use the index of unsent events, events_unsent, rather than walk them all.)

    def waiting(self, limit: int, max_bytes: int) -> tuple[list[Event], set[int]]:
        """The oldest of this device's events the hub has not taken yet, in seq order, at most
        `limit` and, beyond the first, about `max_bytes` encoded; and the seqs of those a hub
        took before (it stamped their user): sent again to a hub that lost them, they must go
        as they are."""
        # Row by row, so that a batch of large events stops at its budget in memory too.
        cursor = self._cursor(
            # Through the index of unsent events: the primary key would walk past every event
            # this device ever pushed to reach them.
            f"SELECT {_COLUMNS}, length(payload), hub_user IS NOT NULL FROM events "
            "INDEXED BY events_unsent WHERE device = ? AND pushed != 1 AND pushed = 0 "
            "ORDER BY seq LIMIT ?", (self.device, limit))
        found, acked, size = [], set(), 0
        try:
            for row in cursor:
                size += row[9] + 256  # the payload and a generous share for the rest
                if found and size > max_bytes:
                    break
                found.append(_event(row[:9]))
                if row[10]:
                    acked.add(row[2])
        finally:
            cursor.close()
        return found, acked

    def waiting_count(self) -> int:
        """This device's events the hub does not hold: waiting and set aside."""
        return self._db.read("SELECT count(*) FROM events WHERE pushed != 1 AND device = ?",
                             (self.device,))[0][0]

    def is_waiting(self, seq: int) -> bool:
        """True while this device's event `seq` has not reached the hub."""
        rows = self._db.read("SELECT pushed FROM events WHERE device = ? AND seq = ?",
                             (self.device, seq))
        return bool(rows) and rows[0][0] != ON_HUB

    def mark_pushed(self, seqs: Sequence[int], user: str = "") -> None:
        """The hub holds these events of this device, pushed with `user`'s token."""
        if not seqs:
            return
        with self._db.transaction() as conn:
            for chunk in _chunks(seqs):
                # '' when the hub (an older one) did not say whose: taken all the same.
                conn.execute(
                    "UPDATE events SET pushed = 1, hub_user = coalesce(nullif(?, ''), hub_user, "
                    f"'') WHERE device = ? AND seq IN ({','.join('?' * len(chunk))})",
                    (user, self.device, *chunk))
                if self._any_aside:
                    conn.execute(f"DELETE FROM events_aside WHERE seq IN "
                                 f"({','.join('?' * len(chunk))})", chunk)
        if self._pushed_top is not None:
            self._pushed_top = max([self._pushed_top, *seqs])
        if user:
            self.learn_user(user)

    def learn_user(self, user: str) -> None:
        """The hub says this device's token is `user`'s: from now on, this device's events
        are folded as that user's (before the hub says so, they are folded as nobody's)."""
        if user == self.hub_user:
            return
        first = self.hub_user is None
        self.hub_user = user
        self._set_meta("hub_user", user)
        # This device's events were folded as nobody's (or another user's): whether a
        # deployment's end counts may depend on who they are.
        if not first or self._db.read(
                "SELECT 1 FROM events WHERE device = ? AND type GLOB 'deployment.*' LIMIT 1",
                (self.device,)):
            self.refold()

    def set_aside(self, seq: int, code: str, message: str, suggestions: Sequence[str], *,
                  now: float, retry_at: float) -> None:
        """The hub refused this event: it waits aside, with why, until `retry_at`."""
        self._any_aside = True
        with self._db.transaction() as conn:
            conn.execute("UPDATE events SET pushed = 2 WHERE device = ? AND seq = ? "
                         "AND pushed = 0", (self.device, seq))
            conn.execute(
                "INSERT INTO events_aside(seq, code, message, suggestions, refused_at, "
                "retry_at, refusals) VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT(seq) DO UPDATE "
                "SET code = excluded.code, message = excluded.message, "
                "suggestions = excluded.suggestions, retry_at = excluded.retry_at, "
                "refusals = refusals + 1",
                (seq, code, message, json.dumps(list(suggestions)), now, retry_at))

    def release_aside(self, now: float | None = None) -> int:
        """Put the set-aside events whose retry is due (all of them without `now`) back among
        the waiting ones; their reasons stay until the hub takes them. Returns how many."""
        with self._db.transaction() as conn:
            due = "" if now is None else " AND seq IN (SELECT seq FROM events_aside " \
                                         "WHERE retry_at <= ?)"
            return conn.execute(
                f"UPDATE events SET pushed = 0 WHERE device = ? AND pushed != 1 AND pushed = 2"
                f"{due}",
                (self.device,) if now is None else (self.device, now)).rowcount

    def aside(self) -> list[Aside]:
        """The refused events, grouped by reason and project (those retried since included,
        until the hub takes them)."""
        rows = self._db.read(
            "SELECT a.code, a.message, a.suggestions, e.project, count(*), min(a.refused_at), "
            "min(a.retry_at) FROM events_aside AS a JOIN events AS e "
            "ON e.device = ? AND e.seq = a.seq AND e.pushed != 1 "
            "GROUP BY a.code, e.project ORDER BY min(a.refused_at)", (self.device,))
        # One message per group: the latest refusal's says it best (named in the first row).
        return [Aside(code=r[0], message=r[1], suggestions=json.loads(r[2]), project=r[3],
                      events=r[4], first_refused_at=r[5], retry_at=r[6]) for r in rows]

    def aside_count(self) -> int:
        return self._db.read("SELECT count(*) FROM events WHERE device = ? AND pushed != 1 "
                             "AND pushed = 2", (self.device,))[0][0]

    def restamp(self, seqs: Sequence[int], base: int) -> list[Event]:
        """Stamp these waiting events of this device again, in seq order, with HLC values
        just above `base` (the hub's clock, above every event the hub holds and so every
        event this device has seen: causes still sort before their effects). Only for events
        the hub refused as stamped ahead, which it therefore does not hold. Returns them."""
        rows = self._db.read(
            f"SELECT {_COLUMNS} FROM events WHERE device = ? AND pushed = 0 AND seq IN "
            f"({','.join('?' * len(seqs))}) ORDER BY seq", (self.device, *seqs))
        events = [msgspec.structs.replace(_event(row), hlc=base + index)
                  for index, row in enumerate(rows, start=1)]
        with self._db.transaction() as conn:
            conn.executemany("UPDATE events SET hlc = ? WHERE device = ? AND seq = ?",
                             [(e.hlc, e.device, e.seq) for e in events])
        self.refold({event.project for event in events})
        return events

    def renumber(self, seqs: Sequence[int]) -> None:
        """Give these events of this device the next free seqs: the hub holds other events of
        this device there (its state database was restored from an older copy, or copied).
        Nothing but this device knows them yet, and the fold orders by HLC first, so only the
        keys that name them change."""
        with self._db.transaction() as conn:
            _renumber(conn, self.device, seqs, self.last_seq)
        self.last_seq += len(seqs)

    # What the hub holds.

    def hub_changed(self, hub_id: str) -> str | None:
        """Remember the identity of the hub's database; the one before when it changed (""
        for none known: the first exchange since this version)."""
        known = self._hub_id
        if not hub_id or hub_id == known:
            return None
        self._hub_id = hub_id
        self._set_meta("hub_id", hub_id)
        # What was lost on the hub before says nothing of this one.
        self._set_lost(0, pending=False)
        return known or ""

    def _set_lost(self, lost: int, *, pending: bool) -> None:
        if (lost, pending) == (self._own_lost, self._resend_pending):
            return
        self._own_lost, self._resend_pending = lost, pending
        self._set_meta("own_lost", str(lost) if lost else None)
        self._set_meta("resend_pending", "1" if pending else None)

    def _top_pushed(self) -> int:
        if self._pushed_top is None:
            self._pushed_top = self._db.read(
                "SELECT coalesce(max(seq), 0) FROM events WHERE device = ? AND pushed = 1",
                (self.device,))[0][0]
        return self._pushed_top

    def check_mark(self, seq: int, events: int) -> Recovery:
        """Compare the hub's mark of this device's log (its highest seq and how many events
        it holds) with what this device knows it pushed, and mend what differs:

        - the hub holds seqs beyond this database's log (the database was restored from an
          older copy): new events continue after them, and they come back with the pulls;
        - the hub lacks events it had taken (it was restored from an older copy, or it is
          another hub): they are queued to be sent again, those this device still holds.

        Every seq up to the hub's highest one belongs to an event the hub holds, unless it
        waits or was refused here: so the hub holds `seq - unsent` events when nothing is
        missing. Missing newest ones are sent again; a gap lower down, every event held here
        (once: what is still missing after that is gone, and said so)."""
        recovery = Recovery()
        if seq > self.last_seq:
            recovery.behind = (seq, self.last_seq)
            self.last_seq = seq
            self._set_meta("hub_seq", str(seq))
        unsent = self._db.read(
            "SELECT count(*) FROM events WHERE device = ? AND pushed != 1 AND seq <= ?",
            (self.device, seq))[0][0]
        deficit = seq - unsent - events - self._own_lost
        first = None
        if deficit > 0:
            if not self._resend_pending:
                first = 1
                self._set_lost(self._own_lost, pending=True)
            elif not self._db.read("SELECT 1 FROM events WHERE device = ? AND pushed != 1 "
                                   "AND pushed = 0 LIMIT 1", (self.device,)):
                # Everything held here was sent again: the rest is nowhere to be found.
                recovery.lost = deficit
                self._set_lost(self._own_lost + deficit, pending=False)
        else:
            self._set_lost(self._own_lost, pending=False)
        if first is None and self._top_pushed() > seq:
            first = seq + 1
        if first is not None:
            with self._db.transaction() as conn:
                recovery.resent = conn.execute(
                    "UPDATE events SET pushed = 0 WHERE device = ? AND pushed = 1 AND seq >= ?",
                    (self.device, first)).rowcount
            self._pushed_top = None
        return recovery

    # Pulling.

    def cursor(self, project: str) -> tuple[int, str | None]:
        """(hub_seq, id of the event there) up to which this device has pulled `project`."""
        rows = self._db.read("SELECT after, after_id FROM sync_cursors WHERE project = ?",
                             (project,))
        return (rows[0][0], rows[0][1]) if rows else (0, None)

    def reset_cursor(self, project: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE sync_cursors SET after = 0, after_id = NULL WHERE project = ?",
                         (project,))

    def store_pulled(self, project: str, events: Iterable[Event], next_after: int) -> int:
        """Store a page pulled from the hub and move the cursor, in one transaction; events
        already held (a page pulled twice, our own) are skipped. Returns how many were new.

        This device's own events come back too: one held here is marked as on the hub (its
        push's reply may have been lost); one the hub holds where this device holds another
        (a restored database recorded anew) takes that seq, and ours the next free one."""
        events = list(events)
        with self._db.transaction() as conn:
            own = [e for e in events if e.device == self.device]
            skip: set[tuple[str, int]] = set()
            if own:
                skip = self._own_come_back(conn, own)
            new = _not_held(conn, [e for e in events if (e.device, e.seq) not in skip])
            if len(new) < len(events):
                fresh = {event.id for event in new}
                self._learn_users(conn, [e for e in events if e.id not in fresh])
            users = [_user_of(event) for event in new]
            _insert(conn, new, pushed=ON_HUB, users=users)
            for event, user in zip(new, users, strict=True):
                fold.apply(conn, event, user)
            last = next((e for e in reversed(events) if getattr(e, "hub_seq", None)
                         == next_after), None)
            # The id goes with its hub_seq: a cursor moved without one keeps none.
            conn.execute(
                "INSERT INTO sync_cursors(project, after, after_id) VALUES (?, ?, ?) "
                "ON CONFLICT(project) DO UPDATE SET after = excluded.after, "
                "after_id = CASE WHEN excluded.after = after "
                "THEN coalesce(excluded.after_id, after_id) ELSE excluded.after_id END "
                "WHERE excluded.after >= after", (project, next_after, last and last.id))
        if new:
            self.on_stored(new, "received")
        return len(new)

    def _own_come_back(self, conn: sqlite3.Connection, own: list[Event]) -> set[tuple[str, int]]:
        """Sort out this device's events in a pulled page; the (device, seq) not to store."""
        seqs = [e.seq for e in own]
        held = dict(conn.execute(
            f"SELECT seq, id FROM events WHERE device = ? AND seq IN ({','.join('?' * len(seqs))})",
            (self.device, *seqs)).fetchall())
        compacted = int(conn.execute("SELECT coalesce(max(value), 0) FROM meta WHERE key = "
                                     "'own_compacted_upto'").fetchone()[0])
        skip, taken = set(), []
        for event in own:
            have = held.get(event.seq)
            if have == event.id or (have is None and event.seq <= compacted):
                skip.add((event.device, event.seq))  # held, or compacted here long ago
            elif have is not None:
                taken.append(event.seq)
        conn.executemany(
            "UPDATE events SET pushed = 1, hub_user = coalesce(?, hub_user, '') "
            "WHERE device = ? AND seq = ? AND id = ? AND pushed != 1",
            [(_user_of(e), e.device, e.seq, e.id) for e in own if held.get(e.seq) == e.id])
        if self._pushed_top is not None:
            self._pushed_top = max([self._pushed_top,
                                    *(e.seq for e in own if held.get(e.seq) == e.id)])
        self.last_seq = max(self.last_seq, *seqs)
        if taken:
            self.last_seq += _renumber(conn, self.device, taken, self.last_seq)
        return skip

    def _learn_users(self, conn: sqlite3.Connection, events: list[Event]) -> None:
        """Events held from before the hub named users get their user now (the re-pull after
        migration 0005); a project where that could change a deployment is folded again."""
        named = [(user, e.id, e.project, e.type) for e in events if (user := _user_of(e))]
        if not named:
            return
        for user, event_id, project, type_ in named:
            if conn.execute("UPDATE events SET hub_user = ? WHERE id = ? AND hub_user IS NULL "
                            "AND device != ?", (user, event_id, self.device)).rowcount \
                    and type_.startswith("deployment."):
                self._refold.add(project)

    def refold_pending(self) -> None:
        """Fold again the projects whose users were learnt since (see _learn_users)."""
        if self._refold:
            projects, self._refold = self._refold, set()
            self.refold(projects)

    # Reading.

    def history(self, project: str, *, since_hlc: int = 0, types: Sequence[str] = (),
                limit: int = 50, after: tuple[int, str, int] | None = None,
                max_bytes: int | None = None) -> tuple[list[Event], list[str | None], bool]:
        """Events of a project oldest first, optionally since an HLC and of the given types
        (`deployment` matches every `deployment.*`), with who the hub says pushed each.

        Without `after`: from the newest `limit` on. With `after` (an event's key): the ones
        after it, at most `limit`. With `max_bytes`, a page ends once its payloads reach that
        many bytes, counted as a reply carries them (the first event always comes). Returns
        (events, users, more)."""
        clauses, params = ["project = ?", "hlc >= ?"], [project, since_hlc]
        if types:
            # `deployment` matches itself and every type between "deployment." and
            # "deployment/" (the character after "."), which an index can serve.
            clauses.append("(" + " OR ".join("type = ? OR (type > ? AND type < ?)"
                                             for _ in types) + ")")
            for kind in types:
                params += [kind, kind + ".", kind + "/"]
        where = " AND ".join(clauses)
        if after is None:
            start = self._db.read(
                f"SELECT hlc, device, seq FROM events WHERE {where} "
                "ORDER BY hlc DESC, device DESC, seq DESC LIMIT 1 OFFSET ?",
                (*params, limit - 1))
            first = tuple(start[0]) if start else None
            if first is None:  # fewer than `limit`: all of them
                where_from, from_params = "", []
            else:
                where_from, from_params = " AND (hlc, device, seq) >= (?, ?, ?)", list(first)
        else:
            where_from, from_params = " AND (hlc, device, seq) > (?, ?, ?)", list(after)
        cursor = self._cursor(
            # The size of an event as a reply carries it: its payload, its texts, its keys.
            f"SELECT {_COLUMNS}, hub_user, pushed, length(payload) + length(actor) "
            "+ length(type) + length(project) + 320 FROM events "
            f"WHERE {where}{where_from} ORDER BY hlc, device, seq LIMIT ?",
            (*params, *from_params, limit + 1))
        try:
            found, users, size = [], [], 0
            for row in cursor:
                if len(found) == limit or (max_bytes is not None and found
                                           and size >= max_bytes):
                    return found, users, True
                size += row[-1]
                found.append(_event(row[:9]))
                users.append(row[9] or (self.hub_user if row[1] == self.device else None))
            return found, users, False
        finally:
            cursor.close()

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

    def started_by(self, project: str, deployment: str) -> tuple[str | None, str | None]:
        """(device, user) that started a deployment; user None when the hub has not said."""
        rows = self._db.read("SELECT started_device, started_user FROM deployments "
                             "WHERE project = ? AND deployment = ?", (project, deployment))
        if not rows or rows[0][0] is None:
            return None, None
        device, user = rows[0]
        return device, user or (self.hub_user if device == self.device else None)

    def _deployments(self, source: str, where: str, params: tuple) -> list[DeploymentView]:
        # Who: the user the hub stamped on the deciding event (the start, else the end); this
        # device's own before the hub said, its token's user; an event from before, its actor.
        rows = self._db.read(
            "SELECT d.deployment, d.environment, d.state, coalesce(nullif(e.hub_user, ''), "
            "CASE WHEN e.device = ? THEN ? END, d.actor), d.branch, d.commit_sha, d.started_at, "
            "d.finished_at, d.duration, d.exit_status, d.reason "
            f"FROM ({source}) AS d LEFT JOIN events AS e "
            "ON e.device = coalesce(d.started_device, d.final_device) "
            "AND e.seq = coalesce(d.started_seq, d.final_seq) "
            f"WHERE {where} ORDER BY d.environment, coalesce(d.started_hlc, d.final_hlc) DESC",
            (self.device, self.hub_user, *params))
        return [DeploymentView(
            deployment=r[0], environment=r[1], state=r[2], actor=r[3], branch=r[4], commit=r[5],
            started_at=r[6], finished_at=r[7], duration=r[8], exit_status=r[9], reason=r[10],
        ) for r in rows]

    def deployments_matching(self, project: str, fragment: str) -> list[str]:
        """Ids of the project's deployments that start or end with `fragment`; at most two."""
        rows = self._db.read(
            "SELECT deployment FROM deployments WHERE project = ? AND "
            "(substr(deployment, -length(?)) = ? OR (deployment >= ? AND deployment < ?)) "
            "LIMIT 2", (project, fragment, fragment, fragment, fragment + "\uffff"))
        return [row[0] for row in rows]

    def deployment_rows(self, project: str, since_hlc: int,
                        types: Sequence[str]) -> list[tuple]:
        """The project's events of `types` stamped from `since_hlc` on, as the delivery
        metrics read them (team/delivery.py Row): (type, device, seq, hlc, created_at, who
        the hub says pushed it, msgpack payload). This device's own are its token's user's."""
        rows = self._db.read(
            "SELECT type, device, seq, hlc, created_at, "
            "coalesce(nullif(hub_user, ''), CASE WHEN device = ? THEN ? END), payload "
            f"FROM events WHERE project = ? AND hlc >= ? AND type IN "
            f"({', '.join('?' * len(types))})",
            (self.device, self.hub_user, project, since_hlc, *types))
        return [tuple(row) for row in rows]

    def note_write_hlc(self, project: str, note: str) -> int:
        """The HLC of the event that decided a note's text (0 when unknown)."""
        rows = self._db.read("SELECT write_hlc FROM notes WHERE project = ? AND note = ?",
                             (project, note))
        return rows[0][0] if rows else 0

    def note_text(self, project: str, note: str) -> str | None:
        rows = self._db.read("SELECT text FROM notes WHERE project = ? AND note = ?",
                             (project, note))
        return rows[0][0] if rows else None

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
                             ("deployment_finals", "project, deployment, hlc, device, seq"),
                             ("notes", "project, note"), ("branches", "project, name")):
            columns = "id" if table == "events" else "*"
            for row in self._db.conn.execute(f"SELECT {columns} FROM {table} ORDER BY {order}"):
                digest.update(repr(row).encode())
        return digest.hexdigest()

    def refold(self, projects: Iterable[str] | None = None) -> None:
        """Rebuild the folded state (of `projects`, else of all) from the events held, in
        (hlc, device, seq) order (compaction keeps every event the state rests on, so this is
        the state of all events ever held)."""
        chosen = None if projects is None else sorted(set(projects))
        where = "" if chosen is None else f" WHERE project IN ({','.join('?' * len(chosen))})"
        params = () if chosen is None else tuple(chosen)
        with self._db.transaction() as conn:
            for table in ("deployments", "deployment_finals", "notes", "branches"):
                conn.execute(f"DELETE FROM {table}{where}", params)
            for row in conn.execute(
                    f"SELECT {_COLUMNS}, hub_user FROM events{where} ORDER BY hlc, device, seq",
                    params).fetchall():
                event = _event(row[:9])
                user = row[9] or (self.hub_user if event.device == self.device else None)
                fold.apply(conn, event, user)


def _chunks(values: Sequence[int], size: int = 500) -> list[Sequence[int]]:
    return [values[start:start + size] for start in range(0, len(values), size)]


def _user_of(event: Event) -> str | None:
    return getattr(event, "user", "") or None


def _renumber(conn: sqlite3.Connection, device: str, seqs: Sequence[int], last: int) -> int:
    """Move this device's events at `seqs` to last + 1, last + 2, ... (in seq order), with the
    keys of folded state that name them. Returns how many moved."""
    moves = [(seq, last + index) for index, seq in enumerate(sorted(seqs), start=1)]
    for old, new in moves:
        conn.execute("UPDATE events SET seq = ? WHERE device = ? AND seq = ?", (new, device, old))
        conn.execute("UPDATE events_aside SET seq = ? WHERE seq = ?", (new, old))
        for table, prefix in (("deployments", "started_"), ("deployments", "final_"),
                              ("notes", "created_"), ("notes", "write_"), ("branches", "")):
            conn.execute(f"UPDATE {table} SET {prefix}seq = ? WHERE {prefix}device = ? AND "
                         f"{prefix}seq = ?", (new, device, old))
        conn.execute("UPDATE deployment_finals SET seq = ? WHERE device = ? AND seq = ?",
                     (new, device, old))
    return len(moves)


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


def _insert(conn: sqlite3.Connection, events: list[Event], *, pushed: int,
            users: Sequence[str | None] | None = None) -> None:
    users = users or [None] * len(events)
    conn.executemany(
        f"INSERT INTO events({_COLUMNS}, pushed, hub_user) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(e.id, e.device, e.seq, e.hlc, e.project, e.actor, e.type, _encode(e.payload),
          e.created_at, pushed, user) for e, user in zip(events, users, strict=True)])


def _event(row: tuple) -> Event:
    return Event(id=row[0], device=row[1], seq=row[2], hlc=row[3], project=row[4], actor=row[5],
                 type=row[6], payload=_decode_payload(row[7]), created_at=row[8])
