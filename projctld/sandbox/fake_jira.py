"""A fake Jira Cloud (REST v3): the caller, and the enhanced JQL search with its page tokens."""

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
FIELDS = ("summary", "status", "priority", "issuetype", "updated", "assignee", "project")
REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/"
    "#CHANGE-2046"
)
UNBOUNDED = ("Unbounded JQL queries are not allowed here. Please add a search restriction to "
             "your query.")


class FakeJira(FakeServer):
    """Jira Cloud at `base_url` (a prefix such as "/jira" for a Data Center context path).

    Basic auth with the dataset's jira_email and `token`, or a Bearer token (a Data Center
    personal access token). `rate` counts every request but a 304.
    """

    def __init__(self, data: Dataset, *, token: str = "jira-token", prefix: str = "") -> None:
        super().__init__(token=token, prefix=prefix)
        self.data = data
        self.rate = RateLimit(1000, 60)

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
        api = self.prefix + "/rest/api/3"
        path = request.path.removeprefix(api) if request.path.startswith(api + "/") else None
        if path == "/myself" and request.method == "GET":
            return Reply(200, {"accountId": self.data.jira_account_id,
                               "displayName": self.data.display_name,
                               "emailAddress": self.data.jira_email})
        if path == "/search/jql":
            return self._search(request)
        if path == "/search":
            return _errors(410, REMOVED)
        return _errors(404, "null for uri: " + request.target)

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
        else:
            text, token = request.query.get("jql", ""), request.query.get("nextPageToken")
            fields = [f for f in request.query.get("fields", "").split(",") if f]
            size = int_param(request, "maxResults", 50, 100)
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
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("p:"))
            except (ValueError, binascii.Error):
                return _errors(400, "The provided next page token is invalid or expired.")
        found = query.select(self.data.tickets)
        page = found[start: start + size]
        wanted = FIELDS if {"*all", "*navigable"} & set(fields) else fields
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
        }
        return {
            "id": issue_id,
            "key": ticket.key,
            "self": request.url(f"{self.prefix}/rest/api/3/issue/{issue_id}", {}),
            "fields": {name: values[name]() for name in fields if name in values},
        }

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
