"""The hub's upstream-state protocol: what GET /v1/upstream answers, shared by hub and device."""

from __future__ import annotations

import msgspec

from projctl_client.protocol import SourceError
from projctld.upstream.providers.model import Snapshot

UPSTREAM = "/v1/upstream"
# The same state as a stream of frames, each a 4-byte big-endian length and a msgpack
# UpstreamReply, as the project changes; a frame of length 0 is a keep-alive. Fanning a change
# out to a thousand devices costs the hub a write to each, where long polls cost a request.
STREAM = "/v1/upstream/stream"
FRAMES = "application/x-projctl-frames"
KEEPALIVE = 20.0  # seconds between frames at most
STREAM_FOR = 600.0  # a stream ends after this long: rights and identities are read anew
# Seconds a device's long poll for upstream state may wait (as the events' MAX_WAIT).
MAX_WAIT = 60.0


class HubSource(msgspec.Struct, frozen=True, kw_only=True):
    """One upstream instance's state for a project, as the hub last polled it for the team.
    `snapshot` None: the hub never fetched it. `fetched_at` is the hub's fetch time (what a
    device shows ages from), `error` the hub's last attempt's fault."""

    upstream: str
    kind: str
    host: str | None = None
    snapshot: Snapshot | None = None
    fetched_at: float | None = None
    attempted_at: float | None = None
    error: SourceError | None = None
    version: int
    interval: float = 60.0  # how often the hub polls it: data older than 3 of them is stale


class UpstreamReply(msgspec.Struct, frozen=True, kw_only=True):
    """The sources of `project` changed after the cursor `after` (all of them for 0), the
    cursor to wait from next, and the requesting user's names upstream (kind -> name), by
    which a device picks out what is "mine"."""

    project: str
    sources: list[HubSource]
    next_after: int
    # None in a stream's later frames: unchanged since its first.
    identities: dict[str, str] | None = None
