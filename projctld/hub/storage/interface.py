"""What the hub stores and how: one interface, implemented for SQLite and for PostgreSQL.

Both implementations pass tests/test_hub_storage.py, the one contract suite for this interface.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol, TypeVar

import anyio
import msgspec

from projctld.team.sync.events import Event, PulledEvent

T = TypeVar("T")

# The team page's rows of deployment events, as team/delivery.py reads them: (type, device,
# seq, hlc, created_at, user, msgpack payload). Both backends keep, beside each such event, its
# deployment and environment (table deploy_events), so that pages find them without reading
# every event.
DEPLOY_TYPES = ("deployment.started", "deployment.completed", "deployment.failed",
                "deployment.marked")


class TokenRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A bearer token as stored: only its hash, whose it is, and what it may do."""

    id: str  # short public id, for listing and revoking
    user: str
    projects: list[str]  # "*" means every project
    write: bool
    created_at: float
    revoked: bool = False

    def can_read(self, project: str) -> bool:
        return not self.revoked and ("*" in self.projects or project in self.projects)

    def can_write(self, project: str) -> bool:
        return self.write and self.can_read(project)


class DeviceMark(msgspec.Struct, frozen=True, kw_only=True):
    """What the hub holds of one device's log: whose device it is (None before its first
    push), the highest seq held and how many of its events. A device compares these with what
    it believes it pushed, and so finds a hub restored from an older copy, or a new one."""

    user: str | None = None
    seq: int = 0
    events: int = 0


class PushOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """`conflicts` and `taken` are only ever filled by a partial push: the (device, seq) of
    each event refused because the hub holds another event there, and the devices refused
    because they are another user's. `marks` holds the DeviceMark of every device pushed to."""

    accepted: int
    duplicates: int
    conflicts: list[tuple[str, int]] = []
    taken: list[str] = []
    marks: dict[str, DeviceMark] = {}


class PullPage(msgspec.Struct, frozen=True, kw_only=True):
    """Events of one project after a cursor, in hub_seq order; `more` when others follow."""

    events: list[PulledEvent]
    more: bool


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event row as a hub stores it, for copying one hub's database into another."""

    hub_seq: int
    id: str
    device: str
    seq: int
    hlc: int
    project: str
    actor: str
    type: str
    payload: bytes  # msgpack
    created_at: float
    pushed_by: str
    received_at: float
    size: int


class ShareRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A read-only link to one project's pages, for someone without a token: stored as the
    hash of its secret, like a token; it works until `expires_at` unless revoked."""

    id: str  # short public id, for listing and revoking
    project: str
    created_at: float
    expires_at: float
    revoked: bool = False

    def live(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A browser's sign-in, stored as the hash of its cookie: with a token (`token_hash`, its
    user's rights, looked up at every request so that a revoked token ends it) or through a
    share link (`share_id`, one project). `csrf` is what its forms must send back."""

    user: str
    csrf: str
    created_at: float
    expires_at: float
    token_hash: str | None = None
    share_id: str | None = None


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    """What the team page's timeline asks: events stamped from `since_hlc`, before the
    (hlc, device, seq) `before` (None: the newest), of these types or families, pushed by
    `user`, of deployments to `environment`; at most `limit`, newest first."""

    since_hlc: int = 0
    before: tuple[int, str, int] | None = None
    types: tuple[str, ...] = ()
    user: str | None = None
    environment: str | None = None
    limit: int = 50


class DeviceRecord(msgspec.Struct, frozen=True, kw_only=True):
    device: str
    user: str
    first_seen_at: float
    max_seq: int
    events: int


class UpstreamState(msgspec.Struct, frozen=True, kw_only=True):
    """One (project, upstream instance)'s state as the hub polled it for the whole team: the
    data (a msgpack Snapshot, opaque to storage), when it was last fetched whole and last
    attempted, the last attempt's error (msgpack SourceError, or None), and `version`: a
    number above every version handed out before, so that a device asks for what changed
    after the last one it holds."""

    project: str
    upstream: str
    kind: str  # github, gitlab or jira
    host: str | None = None
    data: bytes | None = None
    fetched_at: float | None = None
    attempted_at: float | None = None
    error: bytes | None = None
    version: int = 0


class SeqConflict(Exception):
    """A pushed (device, seq) is already held with a different event id: the device's log and
    the hub's disagree (typically a state database restored from an old backup)."""

    def __init__(self, device: str, seq: int) -> None:
        super().__init__(f"device {device} already pushed a different event as seq {seq}")
        self.device = device
        self.seq = seq


class DeviceTaken(Exception):
    """A device id already belongs to another user; one user cannot write as another's device."""

    def __init__(self, device: str) -> None:
        super().__init__(f"device {device} belongs to another user")
        self.device = device


class HubStorage(Protocol):
    """The hub's store. Every method is safe to call concurrently, also from several hub
    processes sharing one database (PostgreSQL)."""

    kind: str  # "sqlite" or "postgresql", for /v1/health
    hub_id: str  # this database's identity, made when its schema was; known once open

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None: ...

    async def push(self, user: str, events: list[Event], *,
                   partial: bool = False) -> PushOutcome:
        """Store events idempotently on (device, seq), giving each new one a hub_seq above
        every hub_seq this database ever handed out (next_hub_seq).

        All or nothing unless `partial`: raises SeqConflict or DeviceTaken and stores none of
        the batch. With `partial`, the events of devices taken by another user and the events
        in conflict are left out (and named in the outcome), and the others stored. Within one
        project, hub_seq order is the order in which pushes became visible, so a reader that
        pulls after cursor N never misses an event that is later given a smaller hub_seq.
        """

    async def pull(self, project: str, after: int, limit: int, *,
                   max_bytes: int = 1 << 62) -> PullPage:
        """Up to `limit` events of `project` with hub_seq > after, in hub_seq order, ending
        early once the events' sizes reach `max_bytes` (the first event always comes)."""

    async def holds(self, project: str, hub_seq: int, event_id: str) -> bool:
        """Whether `event_id` of `project` is held at `hub_seq`: the check of a device's
        cursor, which a restored or replaced database no longer matches."""

    async def device_mark(self, device: str) -> DeviceMark: ...

    async def max_hlc(self) -> int:
        """The highest HLC of an event this database ever took (0 when none)."""

    async def held(self, device: str, seqs: list[int]) -> dict[int, str]:
        """The id held at each of `seqs` of `device` (those held)."""

    async def export_events(self, after: int, limit: int) -> list[StoredEvent]:
        """Every project's events with hub_seq > after, in hub_seq order (for `hub copy`)."""

    async def import_events(self, events: list[StoredEvent]) -> None:
        """Store events exactly as another hub held them (for `hub copy`, into an empty hub)."""

    async def export_devices(self) -> list[DeviceRecord]: ...

    async def import_devices(self, devices: list[DeviceRecord]) -> None: ...

    async def export_tokens(self) -> list[tuple[str, TokenRecord]]:
        """Every token with its hash (for `hub copy`: the same tokens work on the copy)."""

    async def wait_for_events(self, project: str, after: int, timeout: float) -> None:
        """Return once `project` has an event with hub_seq > after, or after `timeout` s."""

    def stop_waiting(self) -> None:
        """End every wait_for_events now, and any later one at once: the hub is stopping, and
        a long poll answered empty is pulled again from the next hub, where one cut off is an
        error on the device."""

    async def add_token(self, token_hash: str, record: TokenRecord) -> None: ...

    async def find_token(self, token_hash: str) -> TokenRecord | None: ...

    async def list_tokens(self) -> list[TokenRecord]: ...

    async def revoke_token(self, token_id: str) -> bool:
        """Mark a token revoked; False when no token has that id."""

    # What the team's web pages read (hub/web/).

    async def projects(self) -> list[str]:
        """Every project that has an event, by name."""

    async def last_hub_seq(self, project: str) -> int:
        """The project's highest hub_seq (0 without events): where live updates follow on."""

    async def timeline(self, project: str, query: Timeline) -> list[PulledEvent]:
        """The project's events as `query` asks, newest first by (hlc, device, seq)."""

    async def deployment_rows(self, project: str, since_hlc: int) -> list[tuple]:
        """The project's deployment events (DEPLOY_TYPES) stamped from `since_hlc` on."""

    async def environments(self, project: str, limit: int) -> list[str]:
        """The environments the project's deployment events name, by name, at most `limit`."""

    async def recent_deployments(self, project: str, environment: str, limit: int, *,
                                 completed: bool = False) -> list[str]:
        """Ids of deployments of `environment` whose events are among the newest `limit`
        (with `completed`, only its `deployment.completed` events are looked at), newest
        first, each once."""

    async def rows_of_deployments(self, project: str, deployments: list[str]) -> list[tuple]:
        """Every event of these deployments, as deployment_rows gives them."""

    async def add_share(self, share_hash: str, record: ShareRecord) -> None: ...

    async def find_share(self, share_hash: str) -> ShareRecord | None: ...

    async def share(self, share_id: str) -> ShareRecord | None: ...

    async def list_shares(self) -> list[ShareRecord]: ...

    async def export_shares(self) -> list[tuple[str, ShareRecord]]:
        """Every share link with its hash (for `hub copy`: the same links work on the copy)."""

    async def revoke_share(self, share_id: str) -> bool:
        """Mark a share link revoked; False when no link has that id."""

    async def add_session(self, session_hash: str, record: SessionRecord) -> None:
        """Store a browser's session, and drop those expired."""

    async def find_session(self, session_hash: str) -> SessionRecord | None: ...

    async def delete_session(self, session_hash: str) -> None: ...

    # The hub as the team's intermediary for upstream state (hub/upstream/).

    async def save_upstream(self, state: UpstreamState) -> int:
        """Store a source's state (its `version` is ignored) and return the version given;
        wake the devices waiting on its project."""

    async def upstream_states(self, project: str, after: int = 0) -> list[UpstreamState]:
        """The project's sources whose version is above `after`, by upstream."""

    async def wait_for_upstream(self, project: str, after: int, timeout: float) -> None:
        """Return once a source of `project` has a version above `after`, or after `timeout`."""

    async def set_identity(self, user: str, kind: str, name: str | None) -> None:
        """Map a hub user to their name on one kind of upstream (None: forget it)."""

    async def identities(self) -> dict[str, dict[str, str]]:
        """Every user's upstream names, by user then kind."""

    async def first_delivery(self, source: str, delivery: str, now: float) -> bool:
        """Record a webhook delivery; False when `source` delivered that id before (a replay).
        Deliveries older than a week are forgotten."""

    async def take_lease(self, name: str, holder: str, ttl: float, now: float) -> bool:
        """Take or renew the lease `name` for `ttl` seconds; False while another holder's
        lease runs. One hub process at a time polls the upstreams."""


class _Flight:
    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: object = None
        self.error: BaseException | None = None


class SingleFlight:
    """Concurrent callers of one key share one call: a hundred devices woken by one change
    cost one query, not a hundred. A caller never shares a call that began before it came
    (that one may not see what woke it): it waits for the next, which the callers that came
    meanwhile share."""

    def __init__(self) -> None:
        self._pending: dict[Hashable, _Flight] = {}
        self._running: dict[Hashable, anyio.Event] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        flight = self._pending.get(key)
        if flight is not None:
            await flight.done.wait()
            if flight.error is None:
                return flight.result  # type: ignore[return-value]
            if isinstance(flight.error, Exception):
                raise flight.error
            return await self.run(key, call)  # the call was cancelled with its caller
        flight = self._pending[key] = _Flight()
        try:
            busy = self._running.get(key)
            if busy is not None:
                await busy.wait()
            else:
                await anyio.sleep(0)  # let those woken with this caller join it
        except BaseException as exc:
            del self._pending[key]
            flight.error = exc
            flight.done.set()
            raise
        del self._pending[key]
        done = self._running[key] = anyio.Event()
        try:
            flight.result = result = await call()
            return result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            if self._running.get(key) is done:
                del self._running[key]
            done.set()
            flight.done.set()


class NewEventSignals:
    """Wakes the pulls waiting for a project's next event. A backend wakes a project after a
    push into it; waiters also look at the database every `recheck` seconds, for pushes this
    process cannot hear of."""

    def __init__(self, recheck: float) -> None:
        self._recheck = recheck
        self._signals: dict[str, anyio.Event] = {}
        self._stopped = False

    def wake(self, project: str) -> None:
        signal = self._signals.pop(project, None)
        if signal is not None:
            signal.set()

    def wake_all(self) -> None:
        for project in list(self._signals):
            self.wake(project)

    def stop(self) -> None:
        """Wake every waiter for good: from now on, wait() returns without waiting."""
        self._stopped = True
        self.wake_all()

    async def wait(self, project: str, timeout: float,
                   has_events: Callable[[], Awaitable[bool]]) -> None:
        """Return once `has_events()` is true, or after `timeout` seconds."""
        deadline = anyio.current_time() + timeout
        while True:
            # Taken before looking, so that a push landing between the look and the wait
            # still wakes this waiter.
            signal = self._signals.setdefault(project, anyio.Event())
            if self._stopped or await has_events():
                return
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                return
            with anyio.move_on_after(min(remaining, self._recheck)):
                await signal.wait()


def pulled_events(rows: list[tuple]) -> list[PulledEvent]:
    """Events from rows of (id, device, seq, hlc, project, actor, type, msgpack payload,
    created_at, hub_seq, pushed_by), as both backends select them."""
    decode = msgspec.msgpack.decode
    return [
        PulledEvent(id=id_, device=device, seq=seq, hlc=hlc, project=project, actor=actor,
                    type=type_, payload=decode(payload), created_at=created_at, hub_seq=hub_seq,
                    user=user)
        for id_, device, seq, hlc, project, actor, type_, payload, created_at, hub_seq, user
        in rows
    ]


def deploy_fields(type_: str, payload: dict) -> tuple[str, str] | None:
    """(deployment, environment) of a deployment event, as deploy_events keeps them; None for
    another type (or, from before the hub checked payloads, one without them)."""
    if type_ not in DEPLOY_TYPES:
        return None
    deployment, environment = payload.get("deployment"), payload.get("environment")
    if isinstance(deployment, str) and isinstance(environment, str):
        return deployment, environment
    return None


def deploy_rows(events: list[tuple[int, str, str, int, bytes]]) -> list[tuple]:
    """Rows of deploy_events (hub_seq, project, deployment, environment, type, hlc) for
    events given as (hub_seq, project, type, hlc, msgpack payload)."""
    found = []
    for hub_seq, project, type_, hlc, payload in events:
        if type_ in DEPLOY_TYPES:
            try:
                decoded = msgspec.msgpack.decode(payload)
            except msgspec.DecodeError:
                continue
            fields = deploy_fields(type_, decoded) if isinstance(decoded, dict) else None
            if fields is not None:
                found.append((hub_seq, project, *fields, type_, hlc))
    return found


def timeline_where(project: str, query: Timeline, placeholder: str) -> tuple[str, list]:
    """The WHERE condition of a timeline query on `events`, with its parameters, written with
    the backend's `placeholder`; both backends order and limit it the same way."""
    p = placeholder
    clauses, params = [f"project = {p}", f"hlc >= {p}"], [project, query.since_hlc]
    if query.before is not None:
        clauses.append(f"(hlc, device, seq) < ({p}, {p}, {p})")
        params += query.before
    if query.types:
        # each type whole or as a family (`deployment` matches `deployment.*`), in a form an
        # index serves
        clauses.append("(" + " OR ".join(f"type = {p} OR (type > {p} AND type < {p})"
                                         for _ in query.types) + ")")
        params += [value for kind in query.types for value in (kind, kind + ".", kind + "/")]
    if query.user is not None:
        clauses.append(f"pushed_by = {p}")
        params.append(query.user)
    if query.environment is not None:
        clauses.append(f"hub_seq IN (SELECT hub_seq FROM deploy_events WHERE project = {p}"
                       f" AND environment = {p})")
        params += [project, query.environment]
    return " AND ".join(clauses), params


def next_hub_seq(last: int, now: float) -> int:
    """The hub_seq after `last`: at least the current time in microseconds. A database
    restored from an older copy so still hands out numbers above those it handed out before
    the restore, and a device's cursor never skips the events that come after it."""
    return max(last + 1, int(now * 1_000_000))


def stored_size(payload: bytes, id_: str, device: str, project: str, actor: str, type_: str,
                user: str) -> int:
    """About how many bytes an event takes in a pull reply (msgpack): its payload, its text
    fields and a fixed share for the field names and numbers. Bounds the pages by bytes."""
    return (len(payload) + len(id_) + len(device) + len(project) + len(actor) + len(type_)
            + len(user) + 96)


def upstream_key(project: str) -> str:
    """The key under which devices wait for a project's upstream state: never a project's
    name (names have no space), so that it shares NewEventSignals with the events."""
    return f"upstream {project}"


# A webhook delivery id is remembered this long: GitHub lets an operator redeliver for a
# few days, and a replay after that finds state that has moved on anyway.
DELIVERY_MEMORY = 7 * 86400.0


def new_hub_id() -> str:
    return os.urandom(8).hex()


TOKEN_PREFIX = "pjh_"


def new_token() -> tuple[str, str, str]:
    """(token, its hash, its public id). The token is shown once; only the hash is stored.
    The id is drawn apart from the secret, so that listing or logging it reveals nothing of
    the token (ids of older tokens were the secret's first 8 digits; they stay as they are)."""
    token = f"{TOKEN_PREFIX}{os.urandom(24).hex()}"
    return token, hash_token(token), os.urandom(6).hex()


SHARE_PREFIX = "pjs_"


def new_share() -> tuple[str, str, str]:
    """(share secret, its hash, its public id): made and kept like a token."""
    secret = f"{SHARE_PREFIX}{os.urandom(24).hex()}"
    return secret, hash_token(secret), os.urandom(6).hex()


def hash_token(token: str) -> str:
    # Tokens are 192 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()
