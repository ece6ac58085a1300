"""Rows of `notifications`, `notified` and `inbox`: what was told, which transitions, the inbox."""

from __future__ import annotations

import json

import msgspec

from projctl_client.protocol import InboxItemView, NotificationView, SourceError
from projctld.store.database import Database

# Notifications kept for `projctl notifications`; older ones are dropped as new ones come.
KEEP_NOTIFICATIONS = 1000
# Transition keys kept: far more than any open work produces, fewer than a file worth noticing.
KEEP_NOTIFIED = 20000


class InboxRow(msgspec.Struct, kw_only=True):
    upstream: str
    items: list[InboxItemView] = []
    fetched_at: float | None = None
    attempted_at: float | None = None
    poll_interval: float | None = None
    error: SourceError | None = None


class NotificationTable:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._items = msgspec.msgpack.Decoder(list[InboxItemView])
        self._error = msgspec.msgpack.Decoder(SourceError)
        self._encode = msgspec.msgpack.Encoder().encode

    # notifications and the keys they told

    def told(self, keys: list[str]) -> set[str]:
        """Those of `keys` that some notification already told."""
        if not keys:
            return set()
        marks = ",".join("?" * len(keys))
        return {key for (key,) in self._db.read(
            f"SELECT key FROM notified WHERE key IN ({marks})", tuple(keys))}

    def record(self, note: NotificationView, keys: list[str]) -> int:
        """Store a notification and the transition keys it told; its id."""
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO notifications(at, project, kinds, title, body, url, shown, why_not)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (note.at, note.project, json.dumps(note.kinds), note.title, note.body, note.url,
                 int(note.shown), note.why_not))
            conn.executemany("INSERT OR REPLACE INTO notified(key, at) VALUES (?, ?)",
                             [(key, note.at) for key in keys])
            conn.execute("DELETE FROM notifications WHERE id <= ?",
                         (cursor.lastrowid - KEEP_NOTIFICATIONS,))
            conn.execute("DELETE FROM notified WHERE key NOT IN (SELECT key FROM notified "
                         "ORDER BY at DESC LIMIT ?)", (KEEP_NOTIFIED,))
        return int(cursor.lastrowid)

    def mark_shown(self, id: int, shown: bool, why_not: str | None) -> None:
        self._db.write_many("UPDATE notifications SET shown = ?, why_not = ? WHERE id = ?",
                            [(int(shown), why_not, id)])

    def recent(self, limit: int) -> list[NotificationView]:
        return [NotificationView(id=id, at=at, project=project, kinds=json.loads(kinds),
                                 title=title, body=body, url=url, shown=bool(shown),
                                 why_not=why_not)
                for id, at, project, kinds, title, body, url, shown, why_not in self._db.read(
                    "SELECT id, at, project, kinds, title, body, url, shown, why_not "
                    "FROM notifications ORDER BY id DESC LIMIT ?", (limit,))]

    # the inbox

    def inbox(self) -> list[InboxRow]:
        rows = []
        for upstream, items, fetched_at, attempted_at, interval, error in self._db.read(
                "SELECT upstream, items, fetched_at, attempted_at, poll_interval, error "
                "FROM inbox"):
            try:
                rows.append(InboxRow(
                    upstream=upstream, items=self._items.decode(items), fetched_at=fetched_at,
                    attempted_at=attempted_at, poll_interval=interval,
                    error=self._error.decode(error) if error is not None else None))
            except msgspec.DecodeError:  # written by another version: read afresh instead
                continue
        return rows

    def save_inbox(self, row: InboxRow) -> None:
        self._db.write_many(
            "INSERT OR REPLACE INTO inbox(upstream, items, fetched_at, attempted_at, "
            "poll_interval, error) VALUES (?, ?, ?, ?, ?, ?)",
            [(row.upstream, self._encode(row.items), row.fetched_at, row.attempted_at,
              row.poll_interval, self._encode(row.error) if row.error is not None else None)])

    def keep_inbox(self, upstreams: set[str]) -> None:
        gone = [(u,) for (u,) in self._db.read("SELECT upstream FROM inbox")
                if u not in upstreams]
        self._db.write_many("DELETE FROM inbox WHERE upstream = ?", gone)
