"""One sync exchange with the hub: pull each project's new events, then push what waits here;
and on the way, what the hub says of this device's log, of its own identity and of the clocks.

Pulls never wait on pushes: they come first, each project on its own, and an event the hub
refuses is set aside with the hub's reason while the others go on. Safe to interrupt at any
await: a push the hub took but we did not hear of is pushed again (a duplicate), and a pulled
page is stored with its cursor in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio
from anyio.abc import TaskGroup

from projctld.errors import UpstreamError
from projctld.logging import get_logger
from projctld.store.events import EventStore, Recovery
from projctld.team.sync import wire
from projctld.team.sync.clockcheck import ClockReading
from projctld.team.sync.events import Event
from projctld.team.sync.hlc import ClockAhead, HybridClock

log = get_logger(__name__)
PUSH_BATCH = 1000
# A push stops growing at about this many bytes, well inside the hub's body limit.
PUSH_BYTES = wire.MAX_BODY // 2
PULL_PAGE = 1000
# A refused event is tried again this much later (and at every `projctl sync --now`).
ASIDE_RETRY = 900.0
# Refusals that concern one event, not the hub or the token: the event waits aside.
_EVENT_REFUSALS = frozenset({"forbidden", "too_large", "invalid_event", "clock_ahead",
                             "seq_conflict", "device_taken", "invalid_body"})
# Refusals of a pull that concern one project: the others go on.
_PROJECT_REFUSALS = frozenset({"forbidden"})


class Hub(Protocol):
    """What the exchange needs of a hub: HubClient over HTTP, or an in-process hub."""

    clock: int  # the hub's clock from its latest reply
    hub_id: str  # the identity of its database from its latest reply ("" when not known)
    reading: ClockReading | None  # this clock against the hub's, from its latest reply

    async def push(self, events: Sequence[Event], resent: Sequence[str] = ()
                   ) -> wire.PushReply: ...

    async def pull(self, project: str, after: int, limit: int, wait: float = 0.0,
                   after_id: str | None = None, sent: Callable[[], None] | None = None
                   ) -> wire.PullReply:
        """`sent` is called once the request has gone out: the caller may work meanwhile."""


@dataclass
class Exchanged:
    """What one exchange (or one long poll) did, and what it has to say."""

    pushed: int = 0
    pulled: int = 0
    set_aside: int = 0
    restamped: int = 0
    renumbered: int = 0
    pull_errors: dict[str, UpstreamError] = field(default_factory=dict)
    push_error: UpstreamError | None = None
    notices: list[str] = field(default_factory=list)


async def sync_once(store: EventStore, hub: Hub, clock: HybridClock, projects: Sequence[str],
                    *, now: float, retry_aside: bool = False) -> Exchanged:
    """Pull every project to its end, then push. A fault of the hub or of the token fails the
    pulls (raised); one of a project fails that project only (in `pull_errors`); one of the
    pushes is in `push_error`, after the pulls are done."""
    done = Exchanged()
    for project in projects:
        try:
            done.pulled += await pull_project(store, hub, clock, project, done=done)
        except UpstreamError as exc:
            if exc.code not in _PROJECT_REFUSALS:
                raise
            done.pull_errors[project] = exc
    try:
        await push_waiting(store, hub, clock, done, now=now, retry_aside=retry_aside)
    except UpstreamError as exc:
        done.push_error = exc
    return done


async def pull_project(store: EventStore, hub: Hub, clock: HybridClock, project: str, *,
                       wait: float = 0.0, done: Exchanged | None = None) -> int:
    """Pull pages until the hub has no more; with `wait`, the first pull may wait that long
    for something new (a long poll). The next page is asked for before this one is stored,
    so that the hub reads it while this device stores: the cursor the request names is where
    the stored page leaves it, and a failed store cancels the request."""
    done = done if done is not None else Exchanged()
    failed: Exception | None = None
    async with anyio.create_task_group() as tasks:
        try:
            return await _pull_pages(tasks, store, hub, clock, project, wait, done)
        except Exception as exc:
            # Raised after the task group, which would wrap it in an ExceptionGroup; the
            # request for the next page is cancelled.
            failed = exc
            tasks.cancel_scope.cancel()
    assert failed is not None
    raise failed


async def _pull_pages(tasks: TaskGroup, store: EventStore, hub: Hub, clock: HybridClock,
                      project: str, wait: float, done: Exchanged) -> int:
    pulled = 0
    after, after_id = store.cursor(project)
    fetch = _Fetch(tasks, hub, project, after, after_id, wait)
    while True:
        page = await fetch.reply()
        _heard(store, hub, clock, page.user, page.mark, done)
        if page.cursor_unknown:
            store.reset_cursor(project)
            done.notices.append(
                f"the hub no longer holds the events this device had pulled of {project} "
                "where it held them (restored from an older copy, or another database): "
                f"{project} is pulled again from its start; events held here twice are kept "
                "once")
            fetch = _Fetch(tasks, hub, project, 0, None, 0.0)
            continue
        if page.more:
            last = next((e.id for e in reversed(page.events) if e.hub_seq == page.next_after),
                        None)
            fetch = _Fetch(tasks, hub, project, page.next_after, last, 0.0)
            await fetch.sent()
        pulled += store.store_pulled(project, page.events, page.next_after)
        if page.events:
            # The receive rule: whatever this wall clock says, what happens here next sorts
            # after what this device has seen.
            clock.receive(max(event.hlc for event in page.events))
        if not page.more:
            store.refold_pending()
            return pulled


class _Fetch:
    """One pull, under way while the page before it is stored."""

    def __init__(self, tasks: TaskGroup, hub: Hub, project: str, after: int,
                 after_id: str | None, wait: float) -> None:
        self._gone = anyio.Event()
        self._done = anyio.Event()
        self._page: wire.PullReply | None = None
        self._error: Exception | None = None
        tasks.start_soon(self._run, hub, project, after, after_id, wait)

    async def _run(self, hub: Hub, project: str, after: int, after_id: str | None,
                   wait: float) -> None:
        try:
            self._page = await hub.pull(project, after, PULL_PAGE, wait, after_id,
                                        self._gone.set)
        except Exception as exc:  # raised where the reply is awaited
            self._error = exc
        finally:
            self._gone.set()
            self._done.set()

    async def sent(self) -> None:
        """Return once the request has gone out (or failed): storing the page before it,
        which holds up this event loop, then leaves the hub to work on it meanwhile."""
        await self._gone.wait()

    async def reply(self) -> wire.PullReply:
        await self._done.wait()
        # Let go of the page here: this object lives on in a reference cycle through its
        # task, and would keep every page it held until the garbage collector came by.
        page, error, self._page, self._error = self._page, self._error, None, None
        if error is not None:
            raise error
        assert page is not None
        return page


async def push_waiting(store: EventStore, hub: Hub, clock: HybridClock,
                       done: Exchanged | None = None, *, now: float,
                       retry_aside: bool = False) -> int:
    """Push this device's waiting events in batches. Each event the hub refuses is dealt with
    alone: stamped again when stamped ahead of the hub's clock, given the next free seq when
    the hub holds another event at its seq, otherwise set aside with the hub's reason (tried
    again after ASIDE_RETRY, or at once with `retry_aside`). Returns how many went."""
    done = done if done is not None else Exchanged()
    store.release_aside(None if retry_aside else now)
    refusals: dict[str, int] = {}  # event id: refusals in this exchange
    pushed_before = done.pushed
    while True:
        batch, acked = store.waiting(PUSH_BATCH, PUSH_BYTES)
        if not batch:
            break
        reply = await _push(hub, batch, [e.id for e in batch if e.seq in acked])
        _heard(store, hub, clock, reply.user, reply.mark, done)
        refused = {r.seq: r for r in reply.refused if r.device == store.device}
        accepted = [event.seq for event in batch if event.seq not in refused]
        store.mark_pushed(accepted, reply.user)
        done.pushed += len(accepted)
        restamp, renumber = [], []
        for seq, refusal in refused.items():
            # Stamped again or renumbered once per exchange; refused again, it waits aside.
            tries = refusals[refusal.id] = refusals.get(refusal.id, 0) + 1
            # An event a hub took before may be held by others as it is: never stamped again.
            if refusal.code == "clock_ahead" and tries == 1 and seq not in acked:
                restamp.append(seq)
            elif refusal.code == "seq_conflict" and tries == 1:
                renumber.append(seq)
            else:
                store.set_aside(seq, refusal.code, refusal.message, refusal.suggestions,
                                now=now, retry_at=now + ASIDE_RETRY)
                done.set_aside += 1
                log.warning("event_set_aside", seq=seq, code=refusal.code,
                            reason=refusal.message)
        if restamp:
            store.restamp(restamp, max(hub.clock, store.seen_hlc()))
            done.restamped += len(restamp)
        if renumber:
            store.renumber(renumber)
            done.renumbered += len(renumber)
        _observe(clock, hub.clock)
    if done.restamped and clock.ran_away(wire.MAX_FUTURE) and not store.waiting(1, 0)[0]:
        # Stamped by a clock that jumped ahead and back; all stamped again and sent: this
        # clock follows the wall clock again rather than stay ahead for as long as it jumped.
        clock.settle(max(store.seen_hlc(), hub.clock))
    return done.pushed - pushed_before


async def _push(hub: Hub, batch: list[Event], resent: list[str]) -> wire.PushReply:
    """Push `batch`; a hub older than partial pushes refuses a whole batch for one event, so
    then each event goes alone, and those it refuses come back as refused."""
    try:
        return await hub.push(batch, resent)
    except UpstreamError as exc:
        if exc.code not in _EVENT_REFUSALS or exc.retryable:
            raise
        if len(batch) == 1:
            return _refused_alone(batch[0], exc)
    replies = []
    for event in batch:
        try:
            replies.append(await hub.push([event], [event.id] if event.id in resent else []))
        except UpstreamError as exc:
            if exc.code not in _EVENT_REFUSALS or exc.retryable:
                raise
            replies.append(_refused_alone(event, exc))
    last = replies[-1]
    return wire.PushReply(accepted=sum(r.accepted for r in replies),
                          duplicates=sum(r.duplicates for r in replies),
                          refused=[r for reply in replies for r in reply.refused],
                          user=next((r.user for r in replies if r.user), ""), mark=last.mark)


def _refused_alone(event: Event, exc: UpstreamError) -> wire.PushReply:
    message = exc.message.removeprefix("the hub refused: ")
    return wire.PushReply(accepted=0, duplicates=0, refused=[wire.Refused(
        id=event.id, device=event.device, seq=event.seq, code=exc.code, message=message,
        suggestions=exc.suggestions)])


def _heard(store: EventStore, hub: Hub, clock: HybridClock, user: str,
           mark: wire.Mark | None, done: Exchanged) -> None:
    """What a reply says of the hub and of this device's log there."""
    if user:
        store.learn_user(user)
    before = store.hub_changed(hub.hub_id)
    if before:
        done.notices.append(f"the hub is another database than before (id {hub.hub_id}, was "
                            f"{before}): it was replaced or moved; this device checks what it "
                            "holds and sends again what it lacks")
    if mark is not None:
        _recovered(store.check_mark(mark.seq, mark.events), done)
    _observe(clock, hub.clock)


def _recovered(recovery: Recovery, done: Exchanged) -> None:
    behind, resent, lost = recovery.behind, recovery.resent, recovery.lost
    if behind:
        done.notices.append(
            f"the hub holds this device's events up to seq {behind[0]}, its state database "
            f"up to seq {behind[1]} only (restored from an older copy?): new events continue "
            "after the hub's, and the missing ones come back from the hub")
    if resent:
        done.notices.append(
            f"the hub lacks {resent} events it had taken from this device (restored from an "
            "older copy, or a new hub): they are being sent again")
    if lost:
        done.notices.append(
            f"the hub lacks {lost} events of this device that this device no longer holds "
            "either (compacted after [retention] events_days): they are lost unless the hub is "
            "restored from a copy that holds them")


def _observe(clock: HybridClock, remote: int) -> None:
    try:
        clock.observe(remote)
    except ClockAhead as exc:
        # Not followed, so one wrong clock cannot drag this device's events into the future.
        log.warning("remote_clock_ahead", seconds=round(exc.seconds))

