"""The fold: project state (deployments, notes, branches) from events, one rule per event type.

Every rule compares the `(hlc, device, seq)` key of the event with the key that decided the row,
so the result depends only on the set of events, never on the order they arrive in: applying
them incrementally as they come equals folding them all in key order (tests prove both).

- deployment.started fills in who, what and when; the earliest start wins if ever doubled.
- deployment.completed / deployment.failed is final: the first final event in key order wins,
  and nothing later changes it. Only a final event by the device that started the deployment,
  or by the same user (as the hub stamped both), counts once the start is known: another
  user's token cannot end someone else's deployment. Every final event is kept aside
  (deployment_finals), so that a start arriving after them decides among them again.
- note.added / note.edited: last writer wins by key.
- branch.created: the first creation in key order is kept.
"""

from __future__ import annotations

import sqlite3

from projctld.logging import get_logger
from projctld.team.sync.events import (
    BranchCreated,
    DeploymentFinished,
    DeploymentStarted,
    Event,
    InvalidPayload,
    NoteAdded,
    typed_payload,
)

log = get_logger(__name__)
Key = tuple[int, str, int]


def apply(conn: sqlite3.Connection, event: Event, user: str | None) -> None:
    """Fold one event into the state tables (inside the caller's transaction). `user` is who
    the hub says pushed it (None when not known: this device's own before the first sync, or
    an event pulled before the hub said)."""
    try:
        payload = typed_payload(event)
    except InvalidPayload as exc:
        # Kept in the log and synced, but it cannot change state; the hub refuses these, so
        # only a broken peer can have written one.
        # `event` is structlog's own argument (the message): passing it raised a TypeError.
        log.warning("event_not_folded", id=event.id, error=str(exc))
        return
    match payload:
        case DeploymentStarted():
            _deployment_started(conn, event, payload, user)
        case DeploymentFinished():
            _deployment_finished(conn, event, payload, user)
        case NoteAdded():
            _note_written(conn, event, payload)
        case BranchCreated():
            _branch_created(conn, event, payload)


def _earlier(key: Key, current: tuple) -> bool:
    """True when `key` sorts before `current` (a row's key, all None when not yet decided)."""
    return current[0] is None or key < tuple(current)


def _deployment_started(conn: sqlite3.Connection, event: Event, p: DeploymentStarted,
                        user: str | None) -> None:
    row = conn.execute(
        "SELECT started_hlc, started_device, started_seq FROM deployments "
        "WHERE project = ? AND deployment = ?", (event.project, p.deployment)).fetchone()
    values = (p.environment, event.actor, user, p.branch, p.commit, event.created_at,
              *event.order_key())
    if row is None:
        conn.execute(
            "INSERT INTO deployments(project, deployment, state, environment, actor, "
            "started_user, branch, commit_sha, started_at, started_hlc, started_device, "
            "started_seq) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.project, p.deployment, *values))
    elif _earlier(event.order_key(), row):
        conn.execute(
            "UPDATE deployments SET environment = ?, actor = ?, started_user = ?, branch = ?, "
            "commit_sha = ?, started_at = ?, started_hlc = ?, started_device = ?, "
            "started_seq = ? WHERE project = ? AND deployment = ?",
            (*values, event.project, p.deployment))
    else:
        return
    _decide_final(conn, event.project, p.deployment)


def _deployment_finished(conn: sqlite3.Connection, event: Event, p: DeploymentFinished,
                         user: str | None) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO deployment_finals(project, deployment, hlc, device, seq, user, "
        "state, environment, actor, finished_at, duration, exit_status, reason) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (event.project, p.deployment, *event.order_key(), user,
         event.type.removeprefix("deployment."), p.environment, event.actor, event.created_at,
         p.duration, p.exit_status, p.reason))
    if conn.execute("SELECT 1 FROM deployments WHERE project = ? AND deployment = ?",
                    (event.project, p.deployment)).fetchone() is None:
        # The finish arrived before the start (another device's start not pulled yet).
        conn.execute(
            "INSERT INTO deployments(project, deployment, environment, actor, state) "
            "VALUES (?, ?, ?, ?, 'running')",
            (event.project, p.deployment, p.environment, event.actor))
    _decide_final(conn, event.project, p.deployment)


# The final events that may end a deployment: with the start known, those of its device, or of
# its user when the hub said who pushed both (an event pulled before the hub said so, on either
# side, cannot be told apart and counts, as before).
_FINALS = (
    "SELECT f.state, f.finished_at, f.duration, f.exit_status, f.reason, f.hlc, f.device, "
    "f.seq, f.environment, f.actor FROM deployment_finals AS f JOIN deployments AS d "
    "ON d.project = f.project AND d.deployment = f.deployment "
    "WHERE f.project = ? AND f.deployment = ? AND (d.started_device IS NULL "
    "OR f.device = d.started_device OR f.user IS NULL OR d.started_user IS NULL "
    "OR f.user = d.started_user) ORDER BY f.hlc, f.device, f.seq LIMIT 1"
)


def _decide_final(conn: sqlite3.Connection, project: str, deployment: str) -> None:
    """Set the deployment's end from the first final event that may end it (or none)."""
    final = conn.execute(_FINALS, (project, deployment)).fetchone()
    if final is None:
        conn.execute(
            "UPDATE deployments SET state = 'running', finished_at = NULL, duration = NULL, "
            "exit_status = NULL, reason = NULL, final_hlc = NULL, final_device = NULL, "
            "final_seq = NULL WHERE project = ? AND deployment = ?", (project, deployment))
        return
    conn.execute(
        "UPDATE deployments SET state = ?, finished_at = ?, duration = ?, exit_status = ?, "
        "reason = ?, final_hlc = ?, final_device = ?, final_seq = ? "
        "WHERE project = ? AND deployment = ?", (*final[:8], project, deployment))
    # No start seen: who and where come from the deciding finish.
    conn.execute(
        "UPDATE deployments SET environment = ?, actor = ? "
        "WHERE project = ? AND deployment = ? AND started_hlc IS NULL",
        (*final[8:], project, deployment))


def _note_written(conn: sqlite3.Connection, event: Event, p: NoteAdded) -> None:
    key = event.order_key()
    # Only note.added says who wrote the note and when; an edit may arrive before it.
    created = (event.actor, event.created_at, *key) if event.type == "note.added" \
        else (None,) * 5
    # Most writes are a new note: try that first, in one statement.
    if conn.execute(
            "INSERT INTO notes(project, note, text, edited_by, write_hlc, write_device, "
            "write_seq, author, created_at, created_hlc, created_device, created_seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(project, note) DO NOTHING",
            (event.project, p.note, p.text, event.actor, *key, *created)).rowcount:
        return
    row = conn.execute(
        "SELECT write_hlc, write_device, write_seq, created_hlc, created_device, created_seq "
        "FROM notes WHERE project = ? AND note = ?", (event.project, p.note)).fetchone()
    if key > tuple(row[:3]):
        conn.execute(
            "UPDATE notes SET text = ?, edited_by = ?, write_hlc = ?, write_device = ?, "
            "write_seq = ? WHERE project = ? AND note = ?",
            (p.text, event.actor, *key, event.project, p.note))
    if event.type == "note.added" and _earlier(key, row[3:]):
        conn.execute(
            "UPDATE notes SET author = ?, created_at = ?, created_hlc = ?, created_device = ?, "
            "created_seq = ? WHERE project = ? AND note = ?", (*created, event.project, p.note))


def _branch_created(conn: sqlite3.Connection, event: Event, p: BranchCreated) -> None:
    row = conn.execute("SELECT hlc, device, seq FROM branches WHERE project = ? AND name = ?",
                       (event.project, p.name)).fetchone()
    if row is None or _earlier(event.order_key(), row):
        conn.execute(
            "INSERT OR REPLACE INTO branches(project, name, actor, base, commit_sha, created_at, "
            "hlc, device, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.project, p.name, event.actor, p.base, p.commit, event.created_at,
             *event.order_key()))
