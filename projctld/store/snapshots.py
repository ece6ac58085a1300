"""Rows of the `snapshots` table: each (project, upstream) source's last good data and error."""

from __future__ import annotations

import msgspec

from projctl_client.protocol import SourceError
from projctld.logging import get_logger
from projctld.redact import redact_all, redact_text
from projctld.store.database import Database
from projctld.upstream.providers.model import Snapshot

log = get_logger(__name__)


class SnapshotRow(msgspec.Struct, kw_only=True):
    project: str
    upstream: str
    data: Snapshot | None = None
    fetched_at: float | None = None
    attempted_at: float | None = None
    error: SourceError | None = None


class SnapshotTable:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._data = msgspec.msgpack.Decoder(Snapshot)
        self._error = msgspec.msgpack.Decoder(SourceError)
        self._encoder = msgspec.msgpack.Encoder()

    def all(self) -> list[SnapshotRow]:
        rows = []
        for project, upstream, data, fetched_at, attempted_at, error in self._db.read(
            "SELECT project, upstream, data, fetched_at, attempted_at, error FROM snapshots"
        ):
            try:
                rows.append(SnapshotRow(
                    project=project, upstream=upstream,
                    data=self._data.decode(data) if data is not None else None,
                    fetched_at=fetched_at, attempted_at=attempted_at,
                    error=_redacted(self._error.decode(error)) if error is not None else None,
                ))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                # Written by a build whose views differ: poll afresh rather than fail.
                log.warning("snapshot_unreadable", project=project, upstream=upstream,
                            error=str(exc))
        return rows

    def save(self, row: SnapshotRow, *, with_data: bool) -> None:
        """Record a poll; `with_data` also replaces the stored data (it changed)."""
        error = self._encoder.encode(row.error) if row.error is not None else None
        if with_data:
            self._db.write_many(
                "INSERT OR REPLACE INTO snapshots(project, upstream, data, fetched_at, "
                "attempted_at, error) VALUES (?, ?, ?, ?, ?, ?)",
                [(row.project, row.upstream, self._encoder.encode(row.data), row.fetched_at,
                  row.attempted_at, error)],
            )
            return
        self._db.write_many(
            "INSERT INTO snapshots(project, upstream, fetched_at, attempted_at, error) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(project, upstream) DO UPDATE SET "
            "fetched_at = excluded.fetched_at, attempted_at = excluded.attempted_at, "
            "error = excluded.error",
            [(row.project, row.upstream, row.fetched_at, row.attempted_at, error)],
        )

    def keep_only(self, keys: set[tuple[str, str]]) -> None:
        """Forget sources no longer in the config."""
        stale = [(p, u) for p, u in self._db.read("SELECT project, upstream FROM snapshots")
                 if (p, u) not in keys]
        self._db.write_many("DELETE FROM snapshots WHERE project = ? AND upstream = ?", stale)


def _redacted(error: SourceError) -> SourceError:
    """An error as stored by an older projctld, which did not redact upstream text."""
    return SourceError(code=error.code, message=redact_text(error.message),
                       suggestions=redact_all(error.suggestions))
