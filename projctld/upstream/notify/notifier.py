"""Desktop notifications of transitions: each told once, bursts grouped, switches, quiet hours,
a rate bound; every one recorded with whether it was shown and why not.

Transitions come from the poller (each source's snapshots before and after a poll, never the
first poll of a source after start-up: that state was already so), from the team's deployments
(compared from the first look after start-up on) and from workflow runs that end. What was
told is kept in SQLite, so a restart never tells it again.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

import anyio

from projctl_client.protocol import DeploymentView, NotificationView
from projctld.config import DesktopConfig
from projctld.errors import StoreError
from projctld.logging import get_logger
from projctld.store.notifications import NotificationTable
from projctld.store.runs import RunRow
from projctld.upstream.notify import transitions
from projctld.upstream.notify.desktop import Desktop
from projctld.upstream.notify.transitions import Transition
from projctld.upstream.providers.model import Snapshot

log = get_logger(__name__)
# Seconds a desktop may take to take a notification; the next ones wait meanwhile.
SHOW_TIMEOUT = 5.0
# Lines of a grouped notification's body; the rest are counted.
BODY_LINES = 5
_LABELS = {"ci": "CI runs finished", "review_requested": "reviews requested",
           "approved": "approvals", "changes_requested": "changes requested",
           "closed": "merged or closed", "deployment_failed": "deployments failed",
           "deployment": "deployments ended", "workflow_finished": "workflow runs finished"}


class Notifier:
    def __init__(self, config: DesktopConfig, table: NotificationTable, desktop: Desktop,
                 clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._table = table
        self._desktop = desktop
        self._clock = clock
        # (project, about) -> (when the group is due, its transitions)
        self._pending: dict[tuple[str, str], tuple[float, list[Transition]]] = {}
        self._wake = anyio.Event()
        self._shown: deque[float] = deque()
        self._deployments: dict[str, dict[str, DeploymentView]] = {}

    def configure(self, config: DesktopConfig) -> None:
        self._config = config

    def recent(self, limit: int) -> list[NotificationView]:
        return self._table.recent(limit)

    def available(self) -> str:
        return "disabled ([desktop] enabled = false)" if not self._config.enabled \
            else self._desktop.available()

    # where transitions come from

    def polled(self, project: str, before: Snapshot, after: Snapshot) -> None:
        self.add(transitions.of_snapshots(project, before, after))

    def deployments(self, project: str, now: list[DeploymentView], mine: set[str]) -> None:
        """The project's deployments as the team log has them now; the first look after
        start-up is only remembered."""
        current = {d.deployment: d for d in now}
        before = self._deployments.get(project)
        self._deployments[project] = current
        if before is not None:
            self.add(transitions.of_deployments(project, before, current, mine,
                                                self._config.deployments_to))

    def run_finished(self, row: RunRow) -> None:
        word = "succeeded" if row.success else "failed"
        self.add([Transition("workflow_finished", f"run:{row.id}", row.project, row.project,
                             f"workflow {row.workflow} {word} (run {row.id[-8:]})")])

    def add(self, found: list[Transition]) -> None:
        if not found:
            return
        try:
            told = self._table.told([t.key for t in found])
        except StoreError as exc:
            log.warning("notified_keys_unreadable", error=exc.message)
            told = set()
        now = self._clock()
        for transition in found:
            group = (transition.project, transition.about)
            due, waiting = self._pending.get(group, (now + self._config.burst, []))
            if transition.key in told or any(t.key == transition.key for t in waiting):
                continue
            self._pending[group] = (due, [*waiting, transition])
        self._wake.set()

    # delivery

    async def run(self) -> None:
        while True:
            due = min((at for at, _ in self._pending.values()), default=math.inf)
            with anyio.move_on_after(max(0.0, due - self._clock())):
                await self._wake.wait()
            self._wake = anyio.Event()
            now = self._clock()
            for group, (at, found) in list(self._pending.items()):
                if at <= now:
                    del self._pending[group]
                    await self._deliver(found)

    async def _deliver(self, found: list[Transition]) -> None:
        first = found[0]
        title, body = _compose(found)
        url = next((t.url for t in found if t.url), None)
        now = self._clock()
        why_not = self._held(found, now)
        note = NotificationView(id=0, at=now, project=first.project,
                                kinds=sorted({t.kind for t in found}), title=title, body=body,
                                url=url, shown=False, why_not=why_not or "being shown")
        try:
            note.id = self._table.record(note, [t.key for t in found])
        except StoreError as exc:
            log.warning("notification_not_recorded", error=exc.message)
        if why_not is None:
            with anyio.move_on_after(SHOW_TIMEOUT):
                why_not = "the desktop did not answer in time"
                why_not = await self._desktop.show(title, body, url)
            if why_not is None:
                self._shown.append(now)
            try:
                self._table.mark_shown(note.id, why_not is None, why_not)
            except StoreError as exc:
                log.warning("notification_not_recorded", error=exc.message)
        log.info("notified", title=title, kinds=note.kinds, shown=why_not is None,
                 why_not=why_not)

    def _held(self, found: list[Transition], now: float) -> str | None:
        """Why these are not shown now, or None."""
        config = self._config
        if not config.enabled:
            return "notifications are off ([desktop] enabled = false)"
        off = sorted({t.kind for t in found if not _switched_on(config, t.kind)})
        if len(off) == len({t.kind for t in found}):
            return f"switched off ([desktop] {', '.join(off)} = false)"
        if config.quiet_hours and quiet(config.quiet_hours, datetime.fromtimestamp(now)):
            return f"quiet hours ({config.quiet_hours})"
        while self._shown and self._shown[0] <= now - 60:
            self._shown.popleft()
        if len(self._shown) >= config.per_minute:
            return f"over the rate bound ([desktop] per_minute = {config.per_minute})"
        return None


def _switched_on(config: DesktopConfig, kind: str) -> bool:
    if kind == "deployment":  # asked for by naming the environments
        return bool(config.deployments_to)
    return bool(getattr(config, kind))


def _compose(found: list[Transition]) -> tuple[str, str]:
    first = found[0]
    if len(found) == 1:
        return f"{first.about}: {first.text}", ""
    kinds = {t.kind for t in found}
    what = _LABELS[first.kind] if len(kinds) == 1 else "updates"
    lines = [t.text for t in found[:BODY_LINES]]
    if len(found) > BODY_LINES:
        lines.append(f"and {len(found) - BODY_LINES} more")
    return f"{len(found)} {what} on {first.about}", "\n".join(lines)


def quiet(hours: str, at: datetime) -> bool:
    """Whether local time `at` falls in "HH:MM-HH:MM" (which may run past midnight)."""
    start, _, end = hours.partition("-")
    minute = at.hour * 60 + at.minute

    def of(text: str) -> int:
        hour, _, mins = text.partition(":")
        return int(hour) * 60 + int(mins)

    begin, finish = of(start), of(end)
    if begin <= finish:
        return begin <= minute < finish
    return minute >= begin or minute < finish
