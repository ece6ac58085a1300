"""What the hub stores and how: one interface, implemented for SQLite and for PostgreSQL.

Both implementations pass tests/test_hub_storage.py, the one contract suite for this interface.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import msgspec

from projctld.team.sync.events import Event, PulledEvent


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


class PushOutcome(msgspec.Struct, frozen=True, kw_only=True):
    accepted: int
    duplicates: int


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

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None: ...

    async def push(self, user: str, events: list[Event]) -> PushOutcome:
        """Store events idempotently on (device, seq), giving each new one the next hub_seq.

        All or nothing: raises SeqConflict or DeviceTaken and stores none of the batch. Within
        one project, hub_seq order is the order in which pushes became visible, so a reader
        that pulls after cursor N never misses an event that is later given a smaller hub_seq.
        """

    async def pull(self, project: str, after: int, limit: int) -> list[PulledEvent]:
        """Up to `limit` events of `project` with hub_seq > after, in hub_seq order."""

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
    created_at, hub_seq), as both backends select them."""
    decode = msgspec.msgpack.decode
    return [
        PulledEvent(id=id_, device=device, seq=seq, hlc=hlc, project=project, actor=actor,
                    type=type_, payload=decode(payload), created_at=created_at, hub_seq=hub_seq)
        for id_, device, seq, hlc, project, actor, type_, payload, created_at, hub_seq in rows
    ]


TOKEN_PREFIX = "pjh_"


def new_token() -> tuple[str, str, str]:
    """(token, its hash, its public id). The token is shown once; only the hash is stored."""
    secret = os.urandom(24).hex()
    token = f"{TOKEN_PREFIX}{secret}"
    return token, hash_token(token), secret[:8]


def hash_token(token: str) -> str:
    # Tokens are 192 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()
