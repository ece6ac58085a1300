"""THE wire schema between projctl and projctld: request and reply Structs, versions, frame limit.

Frames are laid out by frames.py. The daemon decodes requests into `Request` with msgspec and
answers with one `Reply`; the client's hot path builds the same maps with minipack
(tests/test_protocol.py holds the two together). Fields are only ever added, with defaults, so
an older peer of the same PROTOCOL_VERSION can still be understood.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from projctl_client import __version__
from projctl_client.frames import MAX_FRAME, PROTOCOL_VERSION

__all__ = [
    "MAX_FRAME", "PROTOCOL_VERSION", "Ack", "Checkout", "CheckoutView", "DaemonInfo", "Envelope",
    "Error", "Ping", "Pong", "ProjectView", "Reply", "Request", "Shutdown", "StateInfo", "Status",
    "StatusView",
]


class Envelope(msgspec.Struct):
    """What every request carries whatever its type: read first when a request will not decode."""

    protocol: int = 0
    client: str = ""


class _Request(msgspec.Struct, tag_field="type", kw_only=True, frozen=True):
    protocol: int = PROTOCOL_VERSION
    client: str = __version__


class Checkout(msgspec.Struct, frozen=True):
    """A git checkout as the client found it: root directory, branch (None when detached), HEAD."""

    root: Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern="^/")]
    branch: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    head: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class Ping(_Request, tag="ping"):
    """Liveness and version: answered with Pong."""


class Status(_Request, tag="status"):
    """The status view, for the client's current checkout if it is in one."""

    checkout: Checkout | None = None


class Shutdown(_Request, tag="shutdown"):
    """Stop the daemon in order; answered with Ack before the shutdown begins."""


Request = Ping | Status | Shutdown


class _Reply(msgspec.Struct, tag_field="type", kw_only=True):
    pass


class DaemonInfo(msgspec.Struct, kw_only=True):
    version: str
    protocol: int
    pid: int
    started_at: float
    config_path: str
    config_loaded_at: float
    socket_path: str
    state_path: str


class CheckoutView(msgspec.Struct, kw_only=True):
    root: str
    branch: str | None
    head: str | None
    project: str | None
    first_seen_at: float
    last_seen_at: float


class ProjectView(msgspec.Struct, kw_only=True):
    name: str
    paths: list[str]
    checkouts: list[CheckoutView]


class StateInfo(msgspec.Struct, kw_only=True):
    path: str
    schema_version: int
    created_at: float
    checkouts_known: int
    last_error: str | None = None


class StatusView(_Reply, tag="status"):
    generated_at: float
    daemon: DaemonInfo
    checkout: CheckoutView | None
    projects: list[ProjectView]
    state: StateInfo


class Pong(_Reply, tag="pong"):
    daemon: DaemonInfo


class Ack(_Reply, tag="ack"):
    message: str


class Error(_Reply, tag="error"):
    """Any refusal. `suggestions` are what the user should type next."""

    code: str
    message: str
    context: dict[str, str] = {}
    suggestions: list[str] = []


Reply = StatusView | Pong | Ack | Error
