"""Rows of the `workflow_runs` table: each run started here, with its progress events."""

from __future__ import annotations

import msgspec

from projctld.store.database import Database

# Runs kept; older ones are deleted when a run is saved (their events stay in the team log).
KEEP_RUNS = 500


class RunRow(msgspec.Struct, kw_only=True):
    id: str
    project: str
    workflow: str
    started_at: float
    finished_at: float | None = None
    success: bool | None = None
    events: list[dict] = []


class RunTable:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(list[dict]).decode

    def save(self, row: RunRow) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO workflow_runs(id, project, workflow, started_at, finished_at,"
                " success, events) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " finished_at = excluded.finished_at, success = excluded.success,"
                " events = excluded.events",
                (row.id, row.project, row.workflow, row.started_at, row.finished_at,
                 None if row.success is None else int(row.success), self._encode(row.events)))
            conn.execute("DELETE FROM workflow_runs WHERE id NOT IN (SELECT id FROM"
                         " workflow_runs ORDER BY started_at DESC LIMIT ?)", (KEEP_RUNS,))

    def recent(self, limit: int, project: str | None = None) -> list[RunRow]:
        """The newest runs first, without their events."""
        rows = self._db.read(
            "SELECT id, project, workflow, started_at, finished_at, success FROM workflow_runs"
            " WHERE ? IS NULL OR project = ? ORDER BY started_at DESC LIMIT ?",
            (project, project, limit))
        return [_row(r) for r in rows]

    def find(self, prefix: str) -> list[RunRow]:
        """Runs whose id starts or ends with `prefix`, with their events."""
        rows = self._db.read(
            "SELECT id, project, workflow, started_at, finished_at, success, events"
            " FROM workflow_runs WHERE id LIKE ? ESCAPE '\\' OR id LIKE ? ESCAPE '\\' LIMIT 2",
            (_escape(prefix) + "%", "%" + _escape(prefix)))
        return [msgspec.structs.replace(_row(r), events=self._decode(r[6])) for r in rows]


def _row(r: tuple) -> RunRow:
    return RunRow(id=r[0], project=r[1], workflow=r[2], started_at=r[3], finished_at=r[4],
                  success=None if r[5] is None else bool(r[5]))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
