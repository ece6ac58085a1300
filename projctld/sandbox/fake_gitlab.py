"""A fake GitLab (self-hosted style, API v4): the user and its token, merge requests, pipelines."""

from __future__ import annotations

import math
import re
import time
from typing import Any
from urllib.parse import unquote

from projctld.sandbox.dataset import Dataset, MergeRequest, Pipeline, stable_id
from projctld.sandbox.fakehttp import (
    FakeServer,
    RateLimit,
    Reply,
    Request,
    http_date,
    int_param,
    link_header,
)

WEB = "https://gitlab.example"
KEYSET_REFUSED = "Keyset pagination is not yet available for this type of request"


def project_id(path: str) -> int:
    """The numeric id GitLab would know the project by (stable: derived from the path)."""
    return stable_id(path) % 100_000_000


class FakeGitLab(FakeServer):
    """GitLab at `base_url` (a prefix such as "/gitlab" for a relative URL root); API under
    /api/v4. `rate` counts every request but a 304; `total_headers_limit` is where x-total and
    x-total-pages stop being sent, as GitLab stops above 10,000; `links = False` drops the
    `Link` header from offset pages, as some proxies in front of GitLab do."""

    def __init__(self, data: Dataset, *, token: str = "gl-token", prefix: str = "",
                 total_headers_limit: int = 10_000) -> None:
        super().__init__(token=token, prefix=prefix)
        self.data = data
        self.rate = RateLimit(2000, 60)
        self.total_headers_limit = total_headers_limit
        self.links = True
        # The token as /personal_access_tokens/self describes it; without `api` or `read_api`
        # the project routes answer 403 insufficient_scope, as GitLab does.
        self.scopes = ["read_api"]
        self.expires_at: str | None = None  # YYYY-MM-DD

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/v4"

    # -- FakeServer

    def authorized(self, request: Request) -> bool:
        if request.headers.get("private-token") == self.token:
            return True
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and credential == self.token

    def unauthorized(self, request: Request) -> Reply:
        return Reply(401, {"message": "401 Unauthorized"})

    def refuse(self, request: Request) -> Reply | None:
        if not self.rate.exhausted():
            return None
        return Reply(429, {"message": "Retry later"},
                     {"Retry-After": str(self.rate.seconds_to_reset())})

    def route(self, request: Request) -> Reply:
        api = self.prefix + "/api/v4"
        if request.method != "GET" or not request.path.startswith(api + "/"):
            return Reply(404, {"error": "404 Not Found"})
        parts = request.path[len(api) + 1:].split("/")
        if parts == ["user"]:
            me = self.data.gitlab_username
            return Reply(200, {**self._user(me), "web_url": f"{WEB}/{me}"})
        if parts == ["personal_access_tokens", "self"]:
            return Reply(200, self._token_json())
        if len(parts) < 3 or parts[0] != "projects":
            return Reply(404, {"error": "404 Not Found"})
        if not {"api", "read_api"} & set(self.scopes):
            return Reply(403, {"error": "insufficient_scope", "scope": "api read_api",
                               "error_description": "The request requires higher privileges "
                               "than provided by the access token."})
        project = self._project(unquote(parts[1]))
        if project is None:
            return Reply(404, {"message": "404 Project Not Found"})
        match parts[2:]:
            case ["merge_requests"]:
                return self._merge_requests(request, project)
            case ["merge_requests", iid]:
                return self._merge_request(project, iid)
            case ["pipelines"]:
                return self._pipelines(request, project)
        return Reply(404, {"error": "404 Not Found"})

    def charge(self, request: Request, reply: Reply) -> None:
        self.rate.take(1)

    def rate_headers(self, request: Request) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.rate.limit),
            "RateLimit-Observed": str(self.rate.used),
            "RateLimit-Remaining": str(max(0, self.rate.remaining)),
            "RateLimit-Reset": str(int(self.rate.reset + self.clock_skew)),
            "RateLimit-ResetTime": http_date(self.rate.reset + self.clock_skew),
        }

    # -- endpoints

    def _project(self, ident: str) -> str | None:
        for path in self.data.gitlab_projects:
            if path.lower() == ident.lower() or str(project_id(path)) == ident:
                return path
        return None

    def _merge_requests(self, request: Request, project: str) -> Reply:
        if request.query.get("pagination") == "keyset":
            return Reply(405, {"message": KEYSET_REFUSED})
        me = self.data.gitlab_username
        query = request.query
        state = query.get("state", "all")
        scope = query.get("scope", "all")
        if scope not in ("all", "created_by_me", "assigned_to_me"):
            return Reply(400, {"error": "scope does not have a valid value"})
        order_by = query.get("order_by", "created_at")
        if order_by not in ("created_at", "updated_at"):
            return Reply(400, {"error": "order_by does not have a valid value"})
        author, reviewer, assignee = (query.get(k) for k in
                                      ("author_username", "reviewer_username",
                                       "assignee_username"))
        if scope == "created_by_me":
            author = me
        elif scope == "assigned_to_me":
            assignee = me
        mrs = [
            mr for mr in self.data.merge_requests.get(project, [])
            if state in ("all", mr.state)
            and (author is None or mr.author == author)
            and (reviewer is None or reviewer in mr.reviewers)
            and (assignee is None or assignee in mr.assignees)
        ]
        mrs.sort(key=lambda mr: (_created(mr) if order_by == "created_at" else mr.updated_at,
                                 mr.id), reverse=query.get("sort", "desc") == "desc")
        return self._offset_page(request, [self._mr_json(mr) for mr in mrs])

    def _merge_request(self, project: str, iid: str) -> Reply:
        for mr in self.data.merge_requests.get(project, []):
            if str(mr.iid) == iid:
                pipeline = mr.head_pipeline
                return Reply(200, {**self._mr_json(mr), "head_pipeline":
                                   _pipeline_json(pipeline) if pipeline else None})
        return Reply(404, {"message": "404 Not found"})

    def _pipelines(self, request: Request, project: str) -> Reply:
        query = request.query
        order_by = query.get("order_by", "id")
        if order_by not in ("id", "updated_at"):
            return Reply(400, {"error": "order_by does not have a valid value"})
        descending = query.get("sort", "desc") == "desc"
        pipelines = [
            p for p in self.data.pipelines.get(project, [])
            if all(query.get(k) in (None, v) for k, v in
                   (("username", p.username), ("ref", p.ref), ("status", p.status)))
        ]
        pipelines.sort(key=lambda p: (p.updated_at, p.id) if order_by == "updated_at" else p.id,
                       reverse=descending)
        if query.get("pagination") != "keyset":
            return self._offset_page(request, [_pipeline_json(p) for p in pipelines])
        # Keyset paging by id. Real GitLab offers keyset on a few endpoints only; the fake
        # offers it on pipelines so that a provider's keyset path has something to run against.
        if order_by != "id":
            return Reply(405, {"message": KEYSET_REFUSED})
        bound, after = ("id_before", lambda p, n: p.id < n) if descending else (
            "id_after", lambda p, n: p.id > n)
        if re.fullmatch(r"\d+", query.get(bound, "")):
            pipelines = [p for p in pipelines if after(p, int(query[bound]))]
        per_page = int_param(request, "per_page", 20, 100)
        chosen = pipelines[:per_page]
        headers = {}
        if len(pipelines) > per_page:
            url = request.url(request.path, {**query, bound: str(chosen[-1].id)})
            headers["Link"] = link_header([("next", url)])
        return Reply(200, [_pipeline_json(p) for p in chosen], headers)

    def _offset_page(self, request: Request, items: list[dict[str, Any]]) -> Reply:
        per_page = int_param(request, "per_page", 20, 100)
        page = int_param(request, "page", 1)
        total = len(items)
        pages = max(1, math.ceil(total / per_page))
        has_next = page * per_page < total
        headers = {
            "x-page": str(page),
            "x-per-page": str(per_page),
            "x-next-page": str(page + 1) if has_next else "",
            "x-prev-page": str(page - 1) if page > 1 else "",
        }
        counted = total <= self.total_headers_limit
        if counted:
            headers.update({"x-total": str(total), "x-total-pages": str(pages)})

        def at(n: int) -> str:
            return request.url(request.path, {**request.query, "page": str(n)})

        links = [("prev", at(page - 1))] if page > 1 else []
        links += [("next", at(page + 1))] if has_next else []
        links.append(("first", at(1)))
        links += [("last", at(pages))] if counted else []
        if self.links:
            headers["Link"] = link_header(links)
        return Reply(200, items[(page - 1) * per_page: page * per_page], headers)

    def _token_json(self) -> dict[str, Any]:
        return {"id": 1, "name": "projctl", "revoked": False, "active": True,
                "created_at": "2025-01-01T00:00:00.000Z", "scopes": self.scopes,
                "user_id": self._user(self.data.gitlab_username)["id"],
                "last_used_at": None, "expires_at": self.expires_at}

    def _user(self, username: str) -> dict[str, Any]:
        return {"id": stable_id(username) % 10_000_000, "username": username,
                "name": self.data.name_of(username)}

    def _mr_json(self, mr: MergeRequest) -> dict[str, Any]:
        return {
            "id": mr.id,
            "iid": mr.iid,
            "project_id": project_id(mr.project),
            "title": mr.title,
            "description": None,
            "state": mr.state,
            "created_at": _iso(_created(mr)),
            "updated_at": _iso(mr.updated_at),
            "web_url": f"{WEB}/{mr.project}/-/merge_requests/{mr.iid}",
            "draft": mr.draft,
            "work_in_progress": mr.draft,
            "source_branch": mr.source_branch,
            "target_branch": mr.target_branch,
            "author": self._user(mr.author),
            "assignees": [self._user(u) for u in mr.assignees],
            "reviewers": [self._user(u) for u in mr.reviewers],
            "sha": mr.sha,
            "detailed_merge_status": mr.detailed_merge_status,
            "merge_status": _merge_status(mr.detailed_merge_status),
            "references": {"short": f"!{mr.iid}", "relative": f"!{mr.iid}",
                           "full": f"{mr.project}!{mr.iid}"},
        }


def _created(mr: MergeRequest) -> float:
    return mr.created_at or mr.updated_at


def _merge_status(detailed: str) -> str:
    """The deprecated merge_status, which speaks only of conflicts and checking."""
    if detailed in ("checking", "unchecked", "preparing"):
        return "checking"
    return "cannot_be_merged" if detailed in ("conflict", "broken_status") else "can_be_merged"


def _pipeline_json(pipeline: Pipeline) -> dict[str, Any]:
    return {
        "id": pipeline.id,
        "iid": pipeline.iid,
        "project_id": project_id(pipeline.project),
        "sha": pipeline.sha,
        "ref": pipeline.ref,
        "status": pipeline.status,
        "source": pipeline.source,
        "web_url": f"{WEB}/{pipeline.project}/-/pipelines/{pipeline.id}",
        "created_at": _iso(pipeline.created_at),
        "updated_at": _iso(pipeline.updated_at),
    }


def _iso(epoch: float) -> str:
    seconds, millis = divmod(int(epoch * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
