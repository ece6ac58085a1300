"""The hub's HTTP protocol: request and reply bodies, headers and limits, shared by both ends.

Bodies are msgpack (`application/msgpack`) or JSON (`application/json`), chosen by the
request's Content-Type and the reply's Accept; both carry exactly these Structs.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from projctld.team.sync.events import Event, PulledEvent

MSGPACK = "application/msgpack"
JSON = "application/json"
# The client names its version in this header; the hub answers with the versions it accepts.
CLIENT_VERSION_HEADER = "x-projctl-version"
MIN_VERSION_HEADER = "x-projctl-min-version"
LATEST_VERSION_HEADER = "x-projctl-latest-version"
# Every reply carries the hub's clock (an HLC value), which devices merge into theirs.
HUB_CLOCK_HEADER = "x-projctl-hub-clock"
# Every reply names the hub's database: another one means a new or moved hub.
HUB_ID_HEADER = "x-projctl-hub-id"
# How many seconds the hub's clock runs behind the devices it hears from (negative: ahead),
# sent once at least two devices agree on it; the hub's clock (above) is corrected by it.
HUB_OFFSET_HEADER = "x-projctl-hub-clock-offset"
# A device names itself and its wall clock (Unix seconds) on each request: the hub answers
# with what it holds of that device's log (`mark`), and compares the clocks.
DEVICE_HEADER = "x-projctl-device"
DEVICE_TIME_HEADER = "x-projctl-device-time"

MAX_BATCH = 1000  # events in one push
MAX_BODY = 8 << 20  # bytes in one request body
MAX_EVENT = 64 << 10  # bytes of one event, encoded as msgpack
MAX_PAGE = 1000  # events in one pull reply
MAX_PAGE_BYTES = 2 << 20  # a pull reply stops adding events once they hold this many bytes
MAX_WAIT = 60.0  # seconds a pull may wait for new events
# The hub refuses events stamped further than this ahead of its own clock (or of the newest
# event it holds, when that is later: what follows an event it took must be taken too)...
MAX_FUTURE = 300.0
# ...but an event a device sends again, that a hub took before (this one before a restore, or
# another), is taken up to this far ahead: others may hold it as it is, so it cannot be
# stamped again.
MAX_RESENT_FUTURE = 86400.0


class PushRequest(msgspec.Struct, frozen=True, kw_only=True):
    """With `partial`, the hub stores the events it can take and names each one it refuses
    (PushReply.refused); without it (older devices) one refused event refuses the batch."""

    events: Annotated[list[Event], msgspec.Meta(max_length=MAX_BATCH)]
    partial: bool = False
    # The ids of the events of this batch that a hub took before (see MAX_RESENT_FUTURE).
    resent: Annotated[list[str], msgspec.Meta(max_length=MAX_BATCH)] = []


class Mark(msgspec.Struct, frozen=True, kw_only=True):
    """What the hub holds of the requesting device's log: its highest seq and how many of
    its events. A device that pushed more than this finds a restored or new hub."""

    seq: int
    events: int


class Refused(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a partial push that the hub did not take, why, and what to do."""

    id: str
    device: str
    seq: int
    code: str
    message: str
    suggestions: list[str] = []


class PushReply(msgspec.Struct, frozen=True, kw_only=True):
    """`accepted` were new; `duplicates` the hub already held (a retried push): both are safe.
    `user` is whom the token belongs to: the hub stamps every accepted event with it."""

    accepted: int
    duplicates: int
    refused: list[Refused] = []
    user: str = ""
    mark: Mark | None = None


class PullReply(msgspec.Struct, frozen=True, kw_only=True):
    """Events of one project with `hub_seq > after`, oldest first. `next_after` is the cursor
    for the next pull; `more` says another page is waiting right now. `cursor_unknown`: the
    hub does not hold `after_id` at `after` (it was restored or replaced): pull from 0."""

    events: list[PulledEvent]
    next_after: int
    more: bool
    cursor_unknown: bool = False
    user: str = ""
    mark: Mark | None = None


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    version: str
    min_client_version: str
    storage: str
    hub_id: str = ""


class HubError(msgspec.Struct, frozen=True, kw_only=True):
    """Every refusal: a stable `code`, a sentence, and what to do next."""

    code: str
    message: str
    suggestions: list[str] = []
