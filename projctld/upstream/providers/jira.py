"""Jira Cloud (REST v3): the tickets of a project's JQL, paged by `nextPageToken`.

`/rest/api/3/search/jql` replaced `/rest/api/3/search`; it pages with an opaque token and
no totals. Only the fields that status shows are asked for, which keeps pages large and cheap.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

import msgspec

from projctl_client.protocol import TicketView
from projctld.config import JiraConfig, ProjectConfig
from projctld.upstream.providers.http import UpstreamHttp
from projctld.upstream.providers.model import Snapshot

FIELDS = "summary,status,priority,issuetype,updated,assignee"
PAGE_SIZE = 100
MAX_PAGES = 10


class _Name(msgspec.Struct):
    name: str


class _Category(msgspec.Struct):
    key: str


class _Status(msgspec.Struct):
    name: str
    statusCategory: _Category


class _Assignee(msgspec.Struct):
    displayName: str


class _Fields(msgspec.Struct):
    summary: str
    status: _Status
    updated: datetime
    priority: _Name | None = None
    issuetype: _Name | None = None
    assignee: _Assignee | None = None


class _Issue(msgspec.Struct):
    key: str
    fields: _Fields


class _Page(msgspec.Struct):
    issues: list[_Issue]
    nextPageToken: str | None = None
    isLast: bool | None = None


_CATEGORY = {"new": "todo", "indeterminate": "in_progress", "done": "done"}


class Jira:
    upstream = "jira"

    def __init__(self, http: UpstreamHttp, config: JiraConfig) -> None:
        self._http = http
        self._site = config.url.rstrip("/")

    async def poll(self, project: str, config: ProjectConfig, *, fresh: bool) -> Snapshot:
        tickets: list[TicketView] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            params = {"jql": config.jira, "fields": FIELDS, "maxResults": PAGE_SIZE}
            if token:
                params["nextPageToken"] = token
            fetched = await self._http.get(
                f"{self._site}/rest/api/3/search/jql?{urlencode(params)}",
                what=f"the JQL of project {project}",
            )
            page = self._http.decode(fetched, _Page, what="search results")
            tickets += [self._ticket(issue) for issue in page.issues]
            token = page.nextPageToken
            if not token or page.isLast:
                break
        return Snapshot(tickets=tickets)

    def _ticket(self, issue: _Issue) -> TicketView:
        fields = issue.fields
        return TicketView(
            key=issue.key, summary=fields.summary, status=fields.status.name,
            category=_CATEGORY.get(fields.status.statusCategory.key, "todo"),
            priority=fields.priority.name if fields.priority else None,
            type=fields.issuetype.name if fields.issuetype else None,
            assignee=fields.assignee.displayName if fields.assignee else None,
            url=f"{self._site}/browse/{issue.key}", updated_at=fields.updated.timestamp(),
        )
