"""Jira Cloud and Data Center (or Server): the tickets of a project's JQL, with sprint and due date.

The two answer searches differently. Jira Cloud pages `/rest/api/3/search/jql` with an opaque
`nextPageToken` and no totals (its `/rest/api/{2,3}/search` is gone); Data Center and Server
have only `/rest/api/2/search`, paged by `startAt`/`maxResults` against `total`, and take a
personal access token as a Bearer token. Which one a site is comes from the config (`flavour`),
else from `/rest/api/2/serverInfo` (`deploymentType` Cloud, or DataCenter / Server), asked once
beside `/rest/api/2/field`, which names the site's sprint field (a custom field whose id differs
from site to site). Only the fields that status shows are asked for.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
import msgspec

from projctl_client.protocol import SourceProblem, TicketView
from projctld.config import JiraConfig, ProjectConfig
from projctld.errors import UpstreamError
from projctld.upstream.providers.gather import gather
from projctld.upstream.providers.http import UpstreamHttp
from projctld.upstream.providers.model import Snapshot

FIELDS = "summary,status,priority,issuetype,updated,assignee,duedate"
PAGE_SIZE = 100
MAX_PAGES = 10
SPRINT_FIELD = "com.pyxis.greenhopper.jira:gh-sprint"


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
    duedate: str | None = None


class _Issue(msgspec.Struct):
    key: str
    fields: _Fields


class _CloudPage(msgspec.Struct):
    issues: list[msgspec.Raw]
    nextPageToken: str | None = None
    isLast: bool | None = None


class _ServerPage(msgspec.Struct):
    issues: list[msgspec.Raw]
    startAt: int = 0
    total: int | None = None


class _ServerInfo(msgspec.Struct):
    deploymentType: str | None = None


class _FieldSchema(msgspec.Struct):
    custom: str | None = None


class _Field(msgspec.Struct):
    id: str
    schema: _FieldSchema | None = None


_CATEGORY = {"new": "todo", "indeterminate": "in_progress", "done": "done"}


class Jira:
    def __init__(self, http: UpstreamHttp, config: JiraConfig, *, name: str = "jira") -> None:
        self.upstream = name
        self._http = http
        self._site = config.url.rstrip("/")
        self._table = "jira" if name == "jira" else f"jira.{name}"
        self._cloud: bool | None = {"cloud": True, "data-center": False}.get(config.flavour)
        self._sprint_field: str | None = None
        self._learned = False
        self._learn_lock = anyio.Lock()  # every project's first poll needs it: ask once

    async def poll(self, project: str, config: ProjectConfig, *, fresh: bool) -> Snapshot:
        await self._learn()
        (jql,) = config.parts(self.upstream)
        what = f"the `jira` JQL of project {project}"
        search = self._cloud_search if self._cloud else self._server_search
        tickets, complete = await search(jql, what)
        problems = [] if complete else [SourceProblem(
            part="*", code="truncated",
            message=f"the JQL of project {project} matches more than {MAX_PAGES * PAGE_SIZE} "
                    f"tickets: only the first {MAX_PAGES * PAGE_SIZE} are shown",
            suggestions=["narrow the JQL, e.g. with `AND statusCategory != Done`"])]
        return Snapshot(tickets=tickets, problems=problems)

    async def _learn(self) -> None:
        """Which flavour the site is (unless the config says) and its sprint field, once."""
        async with self._learn_lock:
            if self._learned:
                return
            calls = [self._fields]
            if self._cloud is None:
                calls.append(self._server_info)
            await gather(calls)
            self._learned = True

    async def _server_info(self) -> None:
        fetched = await self._get("/rest/api/2/serverInfo", "the site's server information")
        info = self._http.decode(fetched, _ServerInfo, what="the server information")
        self._cloud = info.deploymentType == "Cloud"

    async def _fields(self) -> None:
        fetched = await self._get("/rest/api/2/field", "the site's list of fields")
        fields = self._http.decode(fetched, list[_Field], what="the list of fields")
        self._sprint_field = next((field.id for field in fields if field.schema is not None
                                   and field.schema.custom == SPRINT_FIELD), None)

    def _fields_param(self) -> str:
        return FIELDS + (f",{self._sprint_field}" if self._sprint_field else "")

    async def _cloud_search(self, jql: str, what: str) -> tuple[list[TicketView], bool]:
        tickets: list[TicketView] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            params = {"jql": jql, "fields": self._fields_param(), "maxResults": PAGE_SIZE}
            if token:
                params["nextPageToken"] = token
            fetched = await self._get(f"/rest/api/3/search/jql?{urlencode(params)}", what)
            page = self._http.decode(fetched, _CloudPage, what="search results")
            tickets += [self._ticket(issue) for issue in page.issues]
            token = page.nextPageToken
            if not token or page.isLast:
                return tickets, True
        return tickets, False

    async def _server_search(self, jql: str, what: str) -> tuple[list[TicketView], bool]:
        tickets: list[TicketView] = []
        for _ in range(MAX_PAGES):
            params = {"jql": jql, "fields": self._fields_param(), "maxResults": PAGE_SIZE,
                      "startAt": len(tickets)}
            fetched = await self._get(f"/rest/api/2/search?{urlencode(params)}", what)
            page = self._http.decode(fetched, _ServerPage, what="search results")
            tickets += [self._ticket(issue) for issue in page.issues]
            # The server may answer fewer than asked (its own maximum): page on until `total`.
            if not page.issues or page.total is None or len(tickets) >= page.total:
                return tickets, True
        return tickets, False

    async def _get(self, path: str, what: str) -> Any:
        try:
            return await self._http.get(self._site + path, what=what)
        except UpstreamError as exc:
            raise self._explained(exc) from None

    def _explained(self, exc: UpstreamError) -> UpstreamError:
        """Advice that fits the flavour in use: a 404 from a search means a wrong site address
        (or the wrong flavour), a 400 a JQL that Jira refuses."""
        if exc.code == "not_found":
            host = urlsplit(self._site).hostname or self._site
            flavour = "Jira Cloud" if self._cloud else "Jira Data Center or Server"
            other = "data-center" if self._cloud else "cloud"
            exc.message = (f"{self._http.name} at {host} answered 404 Not Found where "
                           f"{flavour} serves its REST API")
            exc.suggestions = [f"check `url` in [{self._table}]: the address your browser shows "
                               "for Jira, without /browse/...",
                               f'if the site is not {flavour}, set flavour = "{other}" in '
                               f"[{self._table}]"]
        return exc

    def _ticket(self, raw: msgspec.Raw) -> TicketView:
        issue = self._http.decode_part(raw, _Issue, what="an issue")
        fields = issue.fields
        sprint = None
        if self._sprint_field:
            values = msgspec.json.decode(raw).get("fields", {}).get(self._sprint_field)
            sprint = _sprint_name(values)
        return TicketView(
            key=issue.key, summary=fields.summary, status=fields.status.name,
            category=_CATEGORY.get(fields.status.statusCategory.key, "todo"),
            priority=fields.priority.name if fields.priority else None,
            type=fields.issuetype.name if fields.issuetype else None,
            assignee=fields.assignee.displayName if fields.assignee else None,
            url=f"{self._site}/browse/{issue.key}", updated_at=fields.updated.timestamp(),
            sprint=sprint, due=_date(fields.duedate),
        )


_SPRINT_STATE = {"active": 0, "future": 1, "closed": 2}
_LEGACY = re.compile(r"(\w+)=([^,\]]*)")


def _sprint_name(values: object) -> str | None:
    """The active sprint's name, else the next, else the latest closed one. Cloud sends objects
    ({"name", "state"}); Data Center and Server may send each sprint as a string such as
    `com.atlassian.greenhopper.service.sprint.Sprint@1a2b[id=3,state=ACTIVE,name=Sprint 4,...]`."""
    if not isinstance(values, list):
        return None
    sprints = []
    for index, value in enumerate(values):
        if isinstance(value, str):
            value = {key: text for key, text in _LEGACY.findall(value)}
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            state = str(value.get("state", "")).lower()
            sprints.append((_SPRINT_STATE.get(state, 3), -index, value["name"]))
    return min(sprints)[2] if sprints else None


def _date(value: str | None) -> str | None:
    """Jira's due date is a day (YYYY-MM-DD); anything else is left out."""
    return value if value and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else None
