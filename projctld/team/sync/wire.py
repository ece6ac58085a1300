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

MAX_BATCH = 1000  # events in one push
MAX_BODY = 8 << 20  # bytes in one request body
MAX_PAGE = 1000  # events in one pull reply
MAX_WAIT = 60.0  # seconds a pull may wait for new events
# The hub refuses events stamped further than this ahead of its own clock.
MAX_FUTURE = 300.0


class PushRequest(msgspec.Struct, frozen=True, kw_only=True):
    events: Annotated[list[Event], msgspec.Meta(max_length=MAX_BATCH)]


class PushReply(msgspec.Struct, frozen=True, kw_only=True):
    """`accepted` were new; `duplicates` the hub already held (a retried push): both are safe."""

    accepted: int
    duplicates: int


class PullReply(msgspec.Struct, frozen=True, kw_only=True):
    """Events of one project with `hub_seq > after`, oldest first. `next_after` is the cursor
    for the next pull; `more` says another page is waiting right now."""

    events: list[PulledEvent]
    next_after: int
    more: bool


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    version: str
    min_client_version: str
    storage: str


class HubError(msgspec.Struct, frozen=True, kw_only=True):
    """Every refusal: a stable `code`, a sentence, and what to do next."""

    code: str
    message: str
    suggestions: list[str] = []
