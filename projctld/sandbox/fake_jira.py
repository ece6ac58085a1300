"""A fake Jira, Cloud or Data Center: the caller, the site, its fields, and the issue search.

Cloud (developer.atlassian.com/cloud/jira/platform/rest/v3): `/rest/api/3/search/jql` pages with
`nextPageToken` and `isLast` and has no totals; the old `/rest/api/{2,3}/search` answer 410.
Data Center and Server (developer.atlassian.com/server/jira/platform/rest): only REST v2, and
`/rest/api/2/search` pages with `startAt`, `maxResults` (capped by the server) and `total`.
Both serve `/rest/api/2/serverInfo` (`deploymentType` Cloud, DataCenter or Server) and
`/rest/api/2/field`, where the sprint is a custom field whose id differs from site to site; Cloud
sends sprints as objects, Data Center as strings (`...Sprint@1f[id=1,...,state=ACTIVE,name=...]`).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from projctld.sandbox import jql
from projctld.sandbox.dataset import Dataset, Ticket, stable_id
from projctld.sandbox.fakehttp import FakeServer, RateLimit, Reply, Request, int_param

CATEGORY_NAMES = {"new": "To Do", "indeterminate": "In Progress", "done": "Done"}
STATUSES = {"To Do", "In Progress", "In Review", "Done"}
FIELDS = ("summary", "status", "priority", "issuetype", "updated", "assignee", "project",
          "duedate")
# Each flavour's sprint field, as a real site of that kind might number it.
SPRINT_FIELD = {"cloud": "customfield_10020", "data-center": "customfield_10104"}
REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/"
    "#CHANGE-2046"
)
UNBOUNDED = ("Unbounded JQL queries are not allowed here. Please add a search restriction to "
             "your query.")


class FakeJira(FakeServer):
    """Jira at `base_url` (a prefix such as "/jira" for a Data Center context path).

    Basic auth with the dataset's jira_email and `token`, or a Bearer token (a Data Center
    personal access token). `rate` counts every request but a 304. `flavour` is "cloud" or
    "data-center"; `max_results` is the Data Center search's own cap on `maxResults`
    (its default is 1000; `jira.search.views.default.max` changes it).
    """

    def __init__(self, data: Dataset, *, token: str = "jira-token", prefix: str = "",
                 flavour: str = "cloud", max_results: int = 1000) -> None:
        super().__init__(token=token, prefix=prefix)
        self.data = data
        self.rate = RateLimit(1000, 60)
        self.flavour = flavour
        self.max_results = max_results

    # -- FakeServer

    def authorized(self, request: Request) -> bool:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return credential == self.token
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credential, validate=True).decode()
        except (ValueError, binascii.Error):
            return False
        return decoded == f"{self.data.jira_email}:{self.token}"

    def unauthorized(self, request: Request) -> Reply:
        return _errors(401, "You are not authenticated. Authentication required to perform "
                            "this operation.")

    def refuse(self, request: Request) -> Reply | None:
        if not self.rate.exhausted():
            return None
        retry_after = self.rate.seconds_to_reset()
        reset = time.strftime("%Y-%m-%dT%H:%MZ",
                              time.gmtime(time.time() + retry_after + self.clock_skew))
        return Reply(429, {"errorMessages": ["Rate limit exceeded."], "errors": {}}, {
            "Retry-After": str(retry_after),
            "X-RateLimit-Reset": reset,
            "RateLimit-Reason": "jira-burst-based",
        })

    def route(self, request: Request) -> Reply:
        cloud = self.flavour == "cloud"
        version, _, path = request.path.removeprefix(self.prefix + "/rest/api/").partition("/")
        path = "/" + path
        if not request.path.startswith(self.prefix + "/rest/api/") or \
                version not in (("2", "3") if cloud else ("2",)):
            return _errors(404, "null for uri: " + request.target)
        if path == "/myself" and request.method == "GET":
            return Reply(200, {"accountId": self.data.jira_account_id,
                               "displayName": self.data.display_name,
                               "emailAddress": self.data.jira_email})
        if path == "/serverInfo" and request.method == "GET":
            return Reply(200, {
                "baseUrl": self.server_url + self.prefix,
                "version": "1001.0.0-SNAPSHOT" if cloud else "9.12.15",
                "deploymentType": "Cloud" if cloud else "DataCenter",
                "serverTitle": "Jira"})
        if path == "/field" and request.method == "GET":
            return Reply(200, self._fields())
        if cloud and path == "/search/jql" and version == "3":
            return self._search(request)
        if path == "/search":
            return _errors(410, REMOVED) if cloud else self._search(request)
        return _errors(404, "null for uri: " + request.target)

    def _fields(self) -> list[dict[str, Any]]:
        sprint = SPRINT_FIELD[self.flavour]
        return [
            {"id": "summary", "name": "Summary", "custom": False, "schema": {"type": "string",
                                                                          "system": "summary"}},
            {"id": "duedate", "name": "Due date", "custom": False,
             "schema": {"type": "date", "system": "duedate"}},
            {"id": "customfield_10011", "name": "Epic Name", "custom": True,
             "schema": {"type": "string", "custom":
                        "com.pyxis.greenhopper.jira:gh-epic-label", "customId": 10011}},
            {"id": sprint, "name": "Sprint", "custom": True, "schema": {
                "type": "array", "items": "json" if self.flavour == "cloud" else "string",
                "custom": "com.pyxis.greenhopper.jira:gh-sprint",
                "customId": int(sprint.removeprefix("customfield_"))}},
        ]

    def charge(self, request: Request, reply: Reply) -> None:
        self.rate.take(1)

    def rate_headers(self, request: Request) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.rate.limit),
                "X-RateLimit-Remaining": str(max(0, self.rate.remaining))}

    # -- the search

    def _search(self, request: Request) -> Reply:
        if request.method == "POST":
            try:
                body = json.loads(request.body)
                if not isinstance(body, dict):
                    raise ValueError(body)
            except ValueError:
                return _errors(400, "Invalid request payload. Refer to the REST API "
                                    "documentation and try again.")
            text, fields = body.get("jql") or "", body.get("fields") or []
            limit, token = body.get("maxResults"), body.get("nextPageToken")
            size = min(limit, 100) if isinstance(limit, int) and limit > 0 else 50
            start_at = body.get("startAt") if isinstance(body.get("startAt"), int) else 0
        else:
            text, token = request.query.get("jql", ""), request.query.get("nextPageToken")
            fields = [f for f in request.query.get("fields", "").split(",") if f]
            size = int_param(request, "maxResults", 50, 100)
            start_at = int_param(request, "startAt", 0)
        if self.flavour != "cloud":  # Data Center: startAt, its own cap, and a total
            size = min(int_param(request, "maxResults", 50) if request.method == "GET"
                       else size, self.max_results)
        context = jql.Context(
            me=self.data.jira_account_id, projects=self.data.jira_projects,
            statuses=STATUSES | {t.status for t in self.data.tickets}, now=time.time(),
        )
        try:
            query = jql.parse(text, context)
        except jql.JqlError as exc:
            return _errors(400, str(exc))
        if query.where is None:
            return _errors(400, UNBOUNDED)
        start = 0
        if self.flavour != "cloud":
            found = query.select(self.data.tickets)
            page = found[start_at: start_at + size]
            return Reply(200, {
                "expand": "schema,names", "startAt": start_at, "maxResults": size,
                "total": len(found), "issues": [
                    self._issue(request, t, fields or (*FIELDS, SPRINT_FIELD[self.flavour]))
                    for t in page]})
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("p:"))
            except (ValueError, binascii.Error):
                return _errors(400, "The provided next page token is invalid or expired.")
        found = query.select(self.data.tickets)
        page = found[start: start + size]
        wanted = (*FIELDS, SPRINT_FIELD[self.flavour]) if {"*all", "*navigable"} & set(fields) \
            else fields
        body = {"issues": [self._issue(request, t, wanted) for t in page]}
        end = start + len(page)
        if end < len(found):
            body["nextPageToken"] = base64.urlsafe_b64encode(f"p:{end}".encode()).decode()
        body["isLast"] = end >= len(found)
        return Reply(200, body)

    def _issue(self, request: Request, ticket: Ticket, fields: list[str] | tuple[str, ...]
               ) -> dict[str, Any]:
        # Without `fields`, /search/jql returns nothing but each issue's id, as Jira Cloud does.
        issue_id = str(stable_id(ticket.key))
        if not fields:
            return {"id": issue_id}
        values = {
            "summary": lambda: ticket.summary,
            "status": lambda: {"name": ticket.status, "statusCategory": {
                "key": ticket.category, "name": CATEGORY_NAMES[ticket.category]}},
            "priority": lambda: {"name": ticket.priority} if ticket.priority else None,
            "issuetype": lambda: {"name": ticket.issue_type},
            "updated": lambda: _jira_time(ticket.updated_at),
            "assignee": lambda: self._assignee(ticket),
            "project": lambda: {"key": ticket.project_key},
            "duedate": lambda: ticket.due,
            SPRINT_FIELD[self.flavour]: lambda: self._sprints(ticket),
        }
        return {
            "id": issue_id,
            "key": ticket.key,
            "self": request.url(f"{self.prefix}/rest/api/{3 if self.flavour == 'cloud' else 2}"
                                f"/issue/{issue_id}", {}),
            "fields": {name: values[name]() for name in fields if name in values},
        }

    def _sprints(self, ticket: Ticket) -> list[Any] | None:
        if not ticket.sprints:
            return None
        board = 7
        found: list[Any] = []
        for number, (name, state) in enumerate(ticket.sprints, start=1):
            if self.flavour == "cloud":
                found.append({"id": number, "name": name, "state": state, "boardId": board})
            else:
                found.append(f"com.atlassian.greenhopper.service.sprint.Sprint@{number:x}f3a["
                             f"id={number},rapidViewId={board},state={state.upper()},"
                             f"name={name},startDate=<null>,endDate=<null>,"
                             f"completeDate=<null>,sequence={number},goal=]")
        return found

    def _assignee(self, ticket: Ticket) -> dict[str, str] | None:
        if ticket.assignee_account_id is None:
            return None
        if ticket.assignee_account_id == self.data.jira_account_id:
            email = self.data.jira_email
        else:
            email = ticket.assignee_account_id.removeprefix("acc-") + "@example.com"
        return {"accountId": ticket.assignee_account_id,
                "displayName": ticket.assignee_name or ticket.assignee_account_id,
                "emailAddress": email}


def _errors(status: int, message: str) -> Reply:
    return Reply(status, {"errorMessages": [message], "errors": {}})


def _jira_time(epoch: float) -> str:
    seconds, millis = divmod(int(epoch * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}+0000"
