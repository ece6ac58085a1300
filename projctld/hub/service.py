"""What the hub does with a push or a pull, apart from HTTP: the checks each event must pass,
storage, the identity stamped on events, what the device is told of its own log, the clocks.

The HTTP app (app.py) decodes requests and encodes replies around this; in-process hubs of
tests and the soak call it directly, so that they meet the very rules a real hub applies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import msgspec

from projctld.hub.auth import Refusal
from projctld.hub.clocks import DeviceClocks
from projctld.hub.storage.interface import DeviceTaken, HubStorage, SeqConflict, TokenRecord
from projctld.logging import get_logger
from projctld.team.sync.events import (
    Event,
    InvalidPayload,
    json_only,
    name_problem,
    typed_payload,
)
from projctld.team.sync.hlc import HybridClock, ahead_of, physical_seconds
from projctld.team.sync.wire import (
    MAX_EVENT,
    MAX_FUTURE,
    MAX_PAGE_BYTES,
    MAX_RESENT_FUTURE,
    Mark,
    PullReply,
    PushReply,
    Refused,
)

log = get_logger(__name__)

# The refusals one event can meet, with the HTTP status a whole-batch push answers them with.
STATUS = {"forbidden": 403, "too_large": 413, "invalid_event": 400, "clock_ahead": 400,
          "seq_conflict": 409, "device_taken": 403}
_encode = msgspec.msgpack.Encoder().encode
Stage = Callable[[str], None]


def _no_stage(name: str) -> None:
    pass


class Counters:
    """What the service counts for /metrics."""

    def __init__(self) -> None:
        self.accepted = 0
        self.duplicates = 0
        self.pulled = 0
        self.pulls_waiting = 0
        self.refused = dict.fromkeys(STATUS, 0)


class HubService:
    """The hub's rules over one storage. `clock` is the hub's HLC, which runs on its wall clock
    corrected by what its devices' clocks say (`clocks`)."""

    def __init__(self, storage: HubStorage, *, wall: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.wall = wall  # its own clock, uncorrected: what its Date header says
        self.clocks = DeviceClocks(wall=wall)
        self.clock = HybridClock(wall=self.now)
        self.counters = Counters()
        self._newest_known = False  # whether self.clock has seen the newest event stored

    def now(self) -> float:
        """The hub's wall clock, corrected by what its devices agree it is off by."""
        return self.wall() + (self.clocks.offset() or 0.0)

    def heard(self, device: str | None, device_time: float | None) -> None:
        """An authenticated request from `device`, whose clock read `device_time`."""
        if device is not None and device_time is not None:
            self.clocks.heard(device, device_time)

    async def push(self, token: TokenRecord, events: Sequence[Event], *, partial: bool,
                   device: str | None = None, resent: Sequence[str] = (),
                   stage: Stage = _no_stage) -> PushReply:
        """Store what may be stored. Without `partial`, the first event refused refuses the
        batch (a Refusal, nothing stored); with it, each refused event is named in the reply.
        `stage(name)` is told when each stage of the work ends (check, storage)."""
        refused: dict[tuple[str, int], Refused] = {}
        latest = max((event.hlc for event in events), default=0)
        if events and (not self._newest_known or self._bound(False) < physical_seconds(latest)):
            # Another hub process may have taken later events: know the newest before judging.
            self.clock.receive(await self.storage.max_hlc())
            self._newest_known = True
        checks = _Checks(token, self._bound(False), self._bound(True), set(resent))
        # Whole-batch refusals keep the order older hubs checked in: rights, then each event.
        for event in sorted(events, key=lambda e: 0 if not token.can_write(e.project) else 1):
            problem = checks.problem(event) or self._check_clock(event, checks)
            if problem is not None:
                if not partial:
                    raise problem
                refused.setdefault((event.device, event.seq), _refused(event, problem))
        clock_refused = [e for e in events if getattr(
            refused.get((e.device, e.seq)), "code", None) == "clock_ahead"]
        if clock_refused:
            await self._accept_held(clock_refused, refused)
        stage("check")
        try:
            outcome = await self.storage.push(token.user, [e for e in events if (
                e.device, e.seq) not in refused], partial=partial)
        except SeqConflict as exc:
            raise _seq_conflict(exc.device, exc.seq) from None
        except DeviceTaken as exc:
            raise _device_taken(exc.device, token.user) from None
        stage("storage")
        for key in outcome.conflicts:
            event = next(e for e in events if (e.device, e.seq) == key)
            refused.setdefault(key, _refused(event, _seq_conflict(*key)))
        for taken in outcome.taken:
            for event in events:
                if event.device == taken:
                    refused.setdefault((event.device, event.seq),
                                       _refused(event, _device_taken(taken, token.user)))
        stored = [e for e in events if (e.device, e.seq) not in refused]
        if stored:
            # The receive rule: the hub's clock follows every event it took, so that what
            # follows them is taken too.
            self.clock.receive(max(event.hlc for event in stored))
        for reason in refused.values():
            self.counters.refused[reason.code] = self.counters.refused.get(reason.code, 0) + 1
        self.counters.accepted += outcome.accepted
        self.counters.duplicates += outcome.duplicates
        log.info("events_pushed", user=token.user, accepted=outcome.accepted,
                 duplicates=outcome.duplicates, refused=len(refused))
        mark = outcome.marks.get(device) if device else None
        if device and device not in outcome.marks:
            mark = await self._mark(token, device)
        return PushReply(accepted=outcome.accepted, duplicates=outcome.duplicates,
                         refused=list(refused.values()), user=token.user,
                         mark=None if mark is None else Mark(seq=mark.seq, events=mark.events))

    async def pull(self, token: TokenRecord, project: str, after: int, limit: int, *,
                   wait: float = 0.0, after_id: str | None = None,
                   device: str | None = None, stage: Stage = _no_stage) -> PullReply:
        """Events of `project` after the cursor `after`; when there are none, wait up to
        `wait` seconds for one. `stage(name)`: storage, wait, storage_again."""
        if not token.can_read(project):
            raise Refusal(403, "forbidden",
                          f"token {token.id} of {token.user} may not read project {project}",
                          suggestions=[token_hint(token.user, project, write=False)])
        mark = await self._mark(token, device) if device else None
        if after and after_id is not None and not await self.storage.holds(project, after,
                                                                           after_id):
            return PullReply(events=[], next_after=0, more=True, cursor_unknown=True,
                             user=token.user, mark=mark)
        page = await self.storage.pull(project, after, limit, max_bytes=MAX_PAGE_BYTES)
        stage("storage")
        if not page.events and wait > 0:
            self.counters.pulls_waiting += 1
            try:
                await self.storage.wait_for_events(project, after, wait)
            finally:
                self.counters.pulls_waiting -= 1
            stage("wait")
            page = await self.storage.pull(project, after, limit, max_bytes=MAX_PAGE_BYTES)
            stage("storage_again")
        self.counters.pulled += len(page.events)
        return PullReply(events=page.events,
                         next_after=page.events[-1].hub_seq if page.events else after,
                         more=page.more, user=token.user, mark=mark)

    async def _mark(self, token: TokenRecord, device: str) -> Mark | None:
        """What the hub holds of `device`: for its own user only (None for another's)."""
        held = await self.storage.device_mark(device)
        if held.user is not None and held.user != token.user:
            return None
        return Mark(seq=held.seq, events=held.events)

    def _bound(self, resent: bool) -> float:
        """The latest time (Unix seconds) an event may be stamped with: MAX_FUTURE (for one
        sent again, MAX_RESENT_FUTURE) ahead of the hub's clock, or the newest event it took
        when that is later. Not its HLC alone, which follows the events taken: judged by it, a
        fast device could move the bound a little further at every push; the newest event's
        own millisecond does not move it."""
        return max(self.now() + (MAX_RESENT_FUTURE if resent else MAX_FUTURE),
                   physical_seconds(self.clock.last))

    def _check_clock(self, event: Event, checks: _Checks) -> Refusal | None:
        if physical_seconds(event.hlc) <= checks.bound(event):
            return None
        ahead = ahead_of(event.hlc, self.now())
        offset = self.clocks.offset()
        whose = (f"the clock of device {event.device} ran about {ahead:.0f} s fast when it "
                 "stamped it" if offset is not None else
                 f"either the clock of device {event.device} ran {ahead:.0f} s fast when it "
                 "stamped it, or the hub's runs that slow: no other device has told the hub "
                 "its time lately, so the hub cannot tell which")
        return Refusal(
            400, "clock_ahead",
            f"event {event.id} is stamped {ahead:.0f} s ahead of the hub's clock: {whose} (the "
            f"hub accepts at most {MAX_FUTURE:.0f} s)",
            suggestions=["a projctl of this version stamps the event again with the hub's "
                         "clock and sends it at once",
                         "check the device's clock: `timedatectl` (fix: `sudo timedatectl "
                         "set-ntp true`)"],
        )

    async def _accept_held(self, events: list[Event],
                           refused: dict[tuple[str, int], Refused]) -> None:
        """Events the hub already holds are duplicates, whatever their stamp says now (the
        hub's corrected clock may have moved back since): never refused, so that the device
        never stamps again an event that others already have."""
        by_device: dict[str, list[Event]] = {}
        for event in events:
            by_device.setdefault(event.device, []).append(event)
        for device, mine in by_device.items():
            held = await self.storage.held(device, [e.seq for e in mine])
            for event in mine:
                if held.get(event.seq) == event.id:
                    del refused[event.device, event.seq]


class _Checks:
    """What one event of a push must be, apart from its stamp: within the token's rights,
    named by a plain name, of a payload its type reads and JSON carries, within MAX_EVENT.
    Made per push: a name is looked at once however many events carry it."""

    def __init__(self, token: TokenRecord, bound: float, resent_bound: float,
                 resent: set[str]) -> None:
        self._token = token
        self._bounds = (bound, resent_bound)
        self._resent = resent
        self._names: dict[str, str | None] = {}

    def bound(self, event: Event) -> float:
        return self._bounds[event.id in self._resent]

    def problem(self, event: Event) -> Refusal | None:
        """Why the hub cannot take `event` from the token's user, or None."""
        token = self._token
        if not token.can_write(event.project):
            read_only = " (the token is read-only)" if not token.write else ""
            return Refusal(403, "forbidden",
                           f"token {token.id} of {token.user} may not write to project "
                           f"{event.project}{read_only}",
                           suggestions=[token_hint(token.user, event.project, write=True)])
        if event.actor not in self._names:
            self._names[event.actor] = name_problem(event.actor)
        problem = self._names[event.actor]
        if problem is not None:
            return Refusal(400, "invalid_event",
                           f"event {event.id}: its actor {event.actor!r} is refused: {problem}",
                           suggestions=["set `actor` in [sync] of the device's config to a "
                                        "plain name; this event stays on its device"])
        try:
            typed_payload(event)
        except InvalidPayload as exc:
            return Refusal(400, "invalid_event", f"event {event.id}: {exc}",
                           suggestions=["the device that created it runs a projctl whose "
                                        "events this hub reads differently: bring both to "
                                        "the same version"])
        if not json_only(event.payload):
            return Refusal(400, "invalid_event",
                           f"event {event.id}: its payload holds a value JSON cannot carry "
                           "(binary, an extension type, a timestamp, a non-string map key, "
                           "an integer beyond 64 bits, NaN or an infinity)",
                           suggestions=["keep payloads to strings, numbers, booleans, null, "
                                        "arrays and objects"])
        size = len(_encode(event))
        if size > MAX_EVENT:
            return Refusal(413, "too_large",
                           f"event {event.id} is {size} bytes, more than the {MAX_EVENT} an "
                           "event may hold",
                           suggestions=["nothing to do: no hub takes it; it stays on the device "
                                        "that recorded it (a projctl older than this bound, or "
                                        "altered), where projctl log shows it"])
        return None


def _refused(event: Event, refusal: Refusal) -> Refused:
    return Refused(id=event.id, device=event.device, seq=event.seq, code=refusal.code,
                   message=refusal.message, suggestions=refusal.suggestions)


def _seq_conflict(device: str, seq: int) -> Refusal:
    return Refusal(
        409, "seq_conflict",
        f"device {device} pushed a different event as seq {seq} before: its event log "
        "disagrees with the hub's, typically because its state database was restored from "
        "an old copy",
        suggestions=["a projctl of this version gives the event the next free seq and sends "
                     "it again by itself",
                     "an older one: projctl daemon stop, move its state database "
                     "($XDG_STATE_HOME/projctl/state.db, by default ~/.local/state/"
                     "projctl/state.db) aside, then projctl daemon start: the device gets a "
                     "new id and pulls the team's events afresh"])


def _device_taken(device: str, user: str) -> Refusal:
    return Refusal(403, "device_taken", f"device {device} belongs to another user than {user}",
                   suggestions=["push with the token of the device's own user"])


def token_hint(user: str, project: str, *, write: bool) -> str:
    return (f"ask the hub's operator for a token with: projctld hub token create --user {user} "
            f"--project {project}" + (" --write" if write else ""))

