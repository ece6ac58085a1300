"""The team event: an immutable record with a UUIDv7 id, its device's gap-free seq and an HLC.

Payloads are typed per event type (PAYLOADS). An event of a type this version does not know is
kept and synced unchanged, so that a newer teammate's events survive an older replica; the fold
simply does not apply it.
"""

from __future__ import annotations

import math
import os
import re
import time
from typing import Annotated, Any

import msgspec

# Python's `$` (msgspec checks with Python's re) also matches before a final newline, JSON
# Schema's does not: `$(?!\n)` makes the hub refuse "web\n" as its OpenAPI description says.
ProjectName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$(?!\n)")]
DeviceId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$(?!\n)")]
EventType = Annotated[str, msgspec.Meta(
    pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$(?!\n)", max_length=64)]
EventId = Annotated[str, msgspec.Meta(
    pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$(?!\n)")]
# Limits that keep one event small: the hub refuses bigger ones (and so does `projctl`).
MAX_TEXT = 4000
# NUL is refused: PostgreSQL cannot store it in text, so no replica may hold it either.
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT, pattern="^[^\x00]*$")]
Name = Annotated[str, msgspec.Meta(max_length=256, pattern="^[^\x00]*$")]
# Bounds also refuse NaN and infinities, which would make times unorderable.
Timestamp = Annotated[float, msgspec.Meta(ge=0, le=1e11)]
# What a person's name (an actor, a hub user) may not hold: control characters, and the
# bidirectional marks, embeddings, overrides and isolates that make a name display as another
# one ("bob" written backwards as "\u202ebob"), and line or paragraph separators.
_UNSAFE_IN_NAME = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
MAX_NAME = 64
# Payloads are stored and served in both encodings, so they may hold only what both carry
# alike: msgpack's 64-bit integer range is the narrower one, and JSON has no NaN or
# infinities (msgspec would serve them as null).
_INT_RANGE = range(-(2**63), 2**64)


def json_only(value: Any) -> bool:
    """Whether `value` holds only JSON values (strings, numbers within 64 bits, booleans,
    null, arrays, objects with string keys); iterative, since nesting may be deep. The hub
    refuses an event whose payload holds anything else, so a device checks before it records
    one."""
    # Most payloads are a few strings: said at once.
    if isinstance(value, dict) and all(type(key) is str and type(item) is str
                                       for key, item in value.items()):
        return True
    pending: list[Any] = [value]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            if not all(isinstance(key, str) for key in value):
                return False
            pending.extend(value.values())
        elif isinstance(value, list | tuple):  # a tuple is written as an array
            pending.extend(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            if value not in _INT_RANGE:
                return False
        elif isinstance(value, float):
            if not math.isfinite(value):
                return False
        elif not (value is None or isinstance(value, (str, bool))):
            return False
    return True


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a person (None when it can): empty, too long, or holding a
    character that would hide or fake what it shows."""
    if not name.strip():
        return "it is empty"
    if len(name) > MAX_NAME:
        return f"it is longer than {MAX_NAME} characters"
    unsafe = _UNSAFE_IN_NAME.search(name)
    if unsafe is not None:
        return f"it holds the control character U+{ord(unsafe.group()):04X}"
    return None


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One immutable record. `(device, seq)` identifies it for sync; `id` identifies it to people.

    `hlc` is the hybrid logical clock (hlc.py) at creation; `created_at` the device's wall clock,
    for display only: ordering always uses `(hlc, device, seq)`.
    """

    id: EventId
    device: DeviceId
    seq: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
    hlc: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    project: ProjectName
    actor: Name
    type: EventType
    payload: dict[str, Any]
    created_at: Timestamp

    def order_key(self) -> tuple[int, str, int]:
        return (self.hlc, self.device, self.seq)


class PulledEvent(Event, frozen=True, kw_only=True):
    """An event as the hub hands it out: with the hub's global position `hub_seq` and `user`,
    the user of the token that pushed it (the hub's word, unlike `actor`, which the device
    chose; empty from a hub older than this field)."""

    hub_seq: Annotated[int, msgspec.Meta(ge=1)]
    user: str = ""


class DeploymentStarted(msgspec.Struct, frozen=True, kw_only=True):
    """`commit_time` is the deployed commit's committer time (Unix seconds, from git on the
    deploying device) and `change_request` the change request its branch belongs to (e.g.
    `acme/web#42`), when the daemon knows it: what lead time is measured from (docs/metrics.md).
    Both are optional, so that events of older devices stay valid."""

    deployment: EventId
    environment: Name
    branch: Name | None = None
    commit: Name | None = None
    command: list[Name] = []
    commit_time: Timestamp | None = None
    change_request: Name | None = None


class DeploymentFinished(msgspec.Struct, frozen=True, kw_only=True):
    """The payload of both `deployment.completed` and `deployment.failed`."""

    deployment: EventId
    environment: Name
    duration: Annotated[float, msgspec.Meta(ge=0, le=1e9)]
    exit_status: int | None = None
    reason: Text = ""


class DeploymentMarked(msgspec.Struct, frozen=True, kw_only=True):
    """`deployment.marked`: whether a finished deployment caused a failure in its environment
    (`projctl mark-failed`), said by anyone who may write the project; the latest mark in
    (hlc, device, seq) order stands, so a mark made in error can be taken back."""

    deployment: EventId
    environment: Name
    caused_failure: bool = True
    reason: Text = ""


class NoteAdded(msgspec.Struct, frozen=True, kw_only=True):
    """`note.added` and `note.edited`: the text of the note `note` (the id of its first event)."""

    note: EventId
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT, pattern="^[^\x00]*$")]


class BranchCreated(msgspec.Struct, frozen=True, kw_only=True):
    name: Name
    base: Name | None = None
    commit: Name | None = None


class WorkflowRunStarted(msgspec.Struct, frozen=True, kw_only=True):
    run: EventId
    workflow: Name
    params: dict[Name, Text] = {}


class WorkflowStepFinished(msgspec.Struct, frozen=True, kw_only=True):
    """`workflow.step`: how one step of a run ended (or why it was skipped)."""

    run: EventId
    step: Name
    success: bool
    skipped: bool = False
    exit_code: int | None = None
    duration: Annotated[float, msgspec.Meta(ge=0, le=1e9)] = 0.0
    reason: Text = ""


class WorkflowRunFinished(msgspec.Struct, frozen=True, kw_only=True):
    """The payload of both `workflow.completed` and `workflow.failed`."""

    run: EventId
    workflow: Name
    success: bool
    duration: Annotated[float, msgspec.Meta(ge=0, le=1e9)]


PAYLOADS: dict[str, type[msgspec.Struct]] = {
    "deployment.started": DeploymentStarted,
    "deployment.completed": DeploymentFinished,
    "deployment.failed": DeploymentFinished,
    "deployment.marked": DeploymentMarked,
    "note.added": NoteAdded,
    "note.edited": NoteAdded,
    "branch.created": BranchCreated,
    "workflow.started": WorkflowRunStarted,
    "workflow.step": WorkflowStepFinished,
    "workflow.completed": WorkflowRunFinished,
    "workflow.failed": WorkflowRunFinished,
}


class InvalidPayload(ValueError):
    """A known event type with a payload that does not match its schema."""


def typed_payload(event: Event) -> msgspec.Struct | None:
    """The payload as its Struct; None for a type this version does not know."""
    schema = PAYLOADS.get(event.type)
    if schema is None:
        return None
    try:
        return msgspec.convert(event.payload, schema)
    except msgspec.ValidationError as exc:
        raise InvalidPayload(f"{event.type} payload: {exc}") from None


def uuid7(now: float | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits; sorts by time."""
    ms = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) \
        | (rand & ((1 << 62) - 1))
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def new_device_id() -> str:
    return os.urandom(16).hex()
