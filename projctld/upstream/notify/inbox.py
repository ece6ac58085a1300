"""The inbox: GitHub notifications and GitLab to-dos, polled per instance, and marking one done.

GitHub's `/notifications` is made for polling: it says how often with `X-Poll-Interval`, and
answers `If-Modified-Since` with a 304 that costs no rate limit (UpstreamHttp sends the stored
Last-Modified). GitLab's `/todos` lists the pending to-dos. Marking done is the daemon's first
write upstream: GitHub `PATCH /notifications/threads/{id}` (205), GitLab
`POST /todos/{id}/mark_as_done`.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlencode

import anyio
import msgspec

from projctl_client.protocol import (
    InboxItemView,
    InboxReport,
    InboxSourceView,
    SourceError,
)
from projctld.config import Config
from projctld.errors import ProjctlError, StoreError, UpstreamError
from projctld.logging import get_logger
from projctld.redact import redact_all, redact_text
from projctld.store.notifications import InboxRow, NotificationTable
from projctld.upstream.providers.github import GitHub
from projctld.upstream.providers.gitlab import GitLab
from projctld.upstream.providers.http import UpstreamHttp
from projctld.upstream.providers.model import Provider

log = get_logger(__name__)
# Items read per upstream: the newest this many (one page).
PAGE = 50
# What an item's texts keep of the upstream's: a reply must fit in a frame.
TEXT_LIMIT = 300
MAX_BACKOFF = 900.0


class _Subject(msgspec.Struct, frozen=True):
    title: str = ""
    url: str | None = None
    type: str = ""


class _Repository(msgspec.Struct, frozen=True):
    full_name: str = ""
    html_url: str | None = None


class _Thread(msgspec.Struct):
    """A GitHub notification thread, as GET /notifications lists them."""

    id: str
    reason: str = ""
    updated_at: str = ""
    subject: _Subject = _Subject()
    repository: _Repository = _Repository()


class _Named(msgspec.Struct):
    username: str = ""


class _Project(msgspec.Struct):
    path_with_namespace: str = ""


class _Target(msgspec.Struct):
    title: str = ""


class _Todo(msgspec.Struct):
    """A GitLab to-do, as GET /todos lists them."""

    id: int
    action_name: str = ""
    target_type: str = ""
    target_url: str | None = None
    body: str = ""
    created_at: str = ""
    project: _Project | None = None
    author: _Named | None = None
    target: _Target | None = None


class _Source:
    def __init__(self, name: str, kind: str, http: UpstreamHttp, api: str, web: str,
                 interval: float) -> None:
        self.name, self.kind, self.http, self.api, self.web = name, kind, http, api, web
        self.interval = interval
        self.row = InboxRow(upstream=name)
        self.failures = 0
        self.next_poll_at = 0.0


class Inbox:
    def __init__(self, config: Config, providers: dict[str, Provider], table: NotificationTable,
                 clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock
        self._wake = anyio.Event()
        self.sources: dict[str, _Source] = {}
        self._providers: dict[str, Provider] = {}
        # Called when what the inbox holds changed: status shows it.
        self.on_change: Callable[[], None] = lambda: None
        self.reconfigure(config, providers)

    def reconfigure(self, config: Config, providers: dict[str, Provider] | None = None) -> None:
        """Take the GitHub and GitLab instances of `providers` (else of the last ones)."""
        self._providers = providers = self._providers if providers is None else providers
        wanted: dict[str, _Source] = {}
        if config.desktop.inbox:
            instances = config.instances()
            for name, provider in providers.items():
                instance = instances.get(name)
                if isinstance(provider, GitHub):
                    api = instance.section.api_url.rstrip("/")  # type: ignore[union-attr]
                    web = re.sub(r"//api\.", "//", api.removesuffix("/api/v3"), count=1)
                    wanted[name] = _Source(name, "github", provider.http, api, web,
                                           instance.interval)  # type: ignore[union-attr]
                elif isinstance(provider, GitLab):
                    url = instance.section.url.rstrip("/")  # type: ignore[union-attr]
                    wanted[name] = _Source(name, "gitlab", provider.http, url + "/api/v4", url,
                                           instance.interval)  # type: ignore[union-attr]
        for name, source in wanted.items():
            kept = self.sources.get(name)
            if kept is not None:
                source.row, source.failures = kept.row, kept.failures
                source.next_poll_at = kept.next_poll_at
        if not self.sources:  # at start: what the last run read, polled again when due
            try:
                for row in self._table.inbox():
                    source = wanted.get(row.upstream)
                    if source is not None:
                        source.row = row
                        source.next_poll_at = (row.attempted_at or 0.0) + max(
                            source.interval, row.poll_interval or 0.0)
            except StoreError as exc:
                log.warning("inbox_unreadable", error=exc.message)
        self.sources = wanted
        try:
            self._table.keep_inbox(set(wanted))
        except StoreError as exc:
            log.warning("inbox_not_saved", error=exc.message)
        self._wake.set()

    def poll_now(self) -> None:
        """Poll every source at once (`projctl refresh`)."""
        for source in self.sources.values():
            source.next_poll_at = 0.0
        self._wake.set()

    async def run(self) -> None:
        """Poll each source when it is due, as long as the daemon runs."""
        while True:
            now = self._clock()
            due = [s for s in self.sources.values() if s.next_poll_at <= now]
            async with anyio.create_task_group() as tasks:
                for source in due:
                    tasks.start_soon(self._poll, source)
            soonest = min((s.next_poll_at for s in self.sources.values()), default=math.inf)
            with anyio.move_on_after(max(0.05, soonest - self._clock())):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def _poll(self, source: _Source) -> None:
        started = self._clock()
        row = source.row
        row.attempted_at = started
        try:
            if source.kind == "github":
                items, interval = await self._github(source)
            else:
                items, interval = await self._gitlab(source), None
        except UpstreamError as exc:
            source.failures += 1
            row.error = SourceError(code=exc.code, message=redact_text(exc.message),
                                    suggestions=redact_all(exc.suggestions))
            log.warning("inbox_poll_failed", upstream=source.name, error=exc.code)
        except Exception:  # a bug costs one poll of one inbox, never the daemon
            source.failures += 1
            log.exception("inbox_poll_crashed", upstream=source.name)
            row.error = SourceError(code="internal", message=f"projctld failed while reading "
                                    f"the {source.name} inbox", suggestions=[
                                        "report this as a bug in projctl; the log has the "
                                        "details"])
        else:
            source.failures = 0
            row.items, row.fetched_at, row.error = items, started, None
            row.poll_interval = interval
        delay = max(source.interval, row.poll_interval or 0.0)
        if source.failures:
            delay = min(delay * 2 ** min(source.failures, 10), MAX_BACKOFF)
        source.next_poll_at = self._clock() + delay * random.uniform(0.9, 1.1)
        self._save(row)
        self.on_change()

    def _save(self, row: InboxRow) -> None:
        try:
            self._table.save_inbox(row)
        except StoreError as exc:
            log.warning("inbox_not_saved", error=exc.message)

    async def _github(self, source: _Source) -> tuple[list[InboxItemView], float | None]:
        url = f"{source.api}/notifications?{urlencode({'per_page': PAGE})}"
        fetched = await source.http.get(url, what="notifications")
        threads = source.http.decode(fetched, list[_Thread], what="notifications")
        said = fetched.headers.get("x-poll-interval")
        interval = float(said) if said and said.isdigit() else None
        return [_github_item(source, thread) for thread in threads], interval

    async def _gitlab(self, source: _Source) -> list[InboxItemView]:
        url = f"{source.api}/todos?{urlencode({'state': 'pending', 'per_page': PAGE})}"
        fetched = await source.http.get(url, what="to-dos")
        todos = source.http.decode(fetched, list[_Todo], what="to-dos")
        return [_gitlab_item(source, todo) for todo in todos]

    # requests

    def report(self) -> InboxReport:
        items = sorted((item for s in self.sources.values() for item in s.row.items),
                       key=lambda item: item.updated_at, reverse=True)
        return InboxReport(items=items, sources=[_view(s) for s in self.sources.values()],
                           known=self.known())

    def known(self) -> str:
        """As ProjectView.known: complete, partial, unknown; "" with no inbox configured."""
        rows = [s.row for s in self.sources.values()]
        if not rows:
            return ""
        if all(row.fetched_at is None for row in rows):
            return "unknown"
        return "complete" if all(row.fetched_at is not None and row.error is None
                                 for row in rows) else "partial"

    async def done(self, wanted: str) -> InboxReport:
        """Mark one item read (GitHub) or done (GitLab) upstream, and drop it here."""
        source, item = self._find(wanted)
        number = item.id.partition(":")[2]
        if source.kind == "github":
            await source.http.patch(f"{source.api}/notifications/threads/{number}",
                                    what=f"notification {number}")
            source.http.forget(f"{source.api}/notifications?{urlencode({'per_page': PAGE})}")
        else:
            await source.http.post(f"{source.api}/todos/{number}/mark_as_done", {},
                                   what=f"to-do {number}")
            source.http.forget(
                f"{source.api}/todos?{urlencode({'state': 'pending', 'per_page': PAGE})}")
        source.row.items = [i for i in source.row.items if i.id != item.id]
        self._save(source.row)
        self.on_change()
        return msgspec.structs.replace(self.report(), done=item)

    def _find(self, wanted: str) -> tuple[_Source, InboxItemView]:
        found = [(s, i) for s in self.sources.values() for i in s.row.items
                 if i.id == wanted or i.id.partition(":")[2] == wanted]
        if len(found) == 1:
            return found[0]
        if not self.sources:
            raise ProjctlError("there is no inbox: no project uses GitHub or GitLab, or "
                               "[desktop] inbox = false", code="no_inbox",
                               suggestions=["projctl config check"])
        if found:
            raise ProjctlError(f"{wanted!r} names several inbox items: "
                               f"{', '.join(i.id for _, i in found)}", code="ambiguous",
                               suggestions=[f"projctl inbox done {found[0][1].id}"])
        raise ProjctlError(f"no inbox item {wanted!r}", code="not_found",
                           suggestions=["projctl inbox  # the ids are in the first column"])


def _view(source: _Source) -> InboxSourceView:
    row = source.row
    return InboxSourceView(upstream=source.name, fetched_at=row.fetched_at,
                           attempted_at=row.attempted_at, next_poll_at=source.next_poll_at or None,
                           poll_interval=row.poll_interval, error=row.error)


def _epoch(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _github_item(source: _Source, thread: _Thread) -> InboxItemView:
    subject, repo = thread.subject, thread.repository
    url = repo.html_url
    # The subject's URL is the API's (…/repos/O/R/pulls/42); the page is …/O/R/pull/42.
    match = re.search(r"/repos/([^/]+/[^/]+)/(pulls|issues|commits)/([^/]+)$", subject.url or "")
    if match:
        kind = {"pulls": "pull", "issues": "issues", "commits": "commit"}[match[2]]
        url = f"{source.web}/{match[1]}/{kind}/{match[3]}"
    return InboxItemView(id=_clip(f"{source.name}:{thread.id}"), upstream=source.name,
                         kind="github", reason=_clip(thread.reason), title=_clip(subject.title),
                         subject=_clip(subject.type), repo=_clip(repo.full_name),
                         url=_clip(url) if url else None, updated_at=_epoch(thread.updated_at))


def _gitlab_item(source: _Source, todo: _Todo) -> InboxItemView:
    title = (todo.target.title if todo.target else "") or todo.body
    return InboxItemView(id=f"{source.name}:{todo.id}", upstream=source.name, kind="gitlab",
                         reason=_clip(todo.action_name), title=_clip(title),
                         subject=_clip(todo.target_type),
                         repo=_clip(todo.project.path_with_namespace if todo.project else ""),
                         url=_clip(todo.target_url) if todo.target_url else None,
                         author=_clip(todo.author.username) if todo.author else None,
                         updated_at=_epoch(todo.created_at))


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT - 1] + "…"
