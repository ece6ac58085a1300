"""Rows of the `checkouts` table: the git checkouts the daemon has been asked about."""

from __future__ import annotations

import msgspec

from projctld.store.database import Database


class CheckoutRow(msgspec.Struct, kw_only=True):
    root: str
    branch: str | None
    head: str | None
    first_seen_at: float
    last_seen_at: float


class CheckoutTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> list[CheckoutRow]:
        rows = self._db.read(
            "SELECT root, branch, head, first_seen_at, last_seen_at FROM checkouts"
        )
        return [
            CheckoutRow(root=r[0], branch=r[1], head=r[2], first_seen_at=r[3], last_seen_at=r[4])
            for r in rows
        ]

    def save(self, rows: list[CheckoutRow]) -> None:
        self._db.write_many(
            "INSERT INTO checkouts(root, branch, head, first_seen_at, last_seen_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(root) DO UPDATE SET branch = excluded.branch,"
            " head = excluded.head, last_seen_at = excluded.last_seen_at",
            [(r.root, r.branch, r.head, r.first_seen_at, r.last_seen_at) for r in rows],
        )

    def delete(self, roots: list[str]) -> None:
        self._db.write_many("DELETE FROM checkouts WHERE root = ?", [(root,) for root in roots])
