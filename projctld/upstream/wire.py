"""The hub's upstream-state protocol: what GET /v1/upstream answers, shared by hub and device."""

from __future__ import annotations

import msgspec

from projctl_client.protocol import SourceError
from projctld.upstream.providers.model import Snapshot

UPSTREAM = "/v1/upstream"
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
    identities: dict[str, str] = {}
