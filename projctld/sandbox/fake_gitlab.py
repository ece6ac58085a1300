"""A fake GitLab (API v4 and GraphQL, self-managed or gitlab.com): merge requests, approvals,
pipelines.

What it answers follows GitLab's REST documentation (docs.gitlab.com/api/): merge_requests.md
(the instance-wide and per-project lists with their scopes and filters, a single merge request
with `head_pipeline` and `has_conflicts`, its reviewers with their states),
merge_request_approvals.md (a merge request's approvals, in the shape of the tier: Free and
Premium differ), pipelines.md (statuses, `started_at` only on a single pipeline), projects.md
(a single project) and rest/_index.md (offset pagination headers, `Link`, no totals above 10,000);
and its GraphQL API at /api/graphql (gitlab_graphql.py) over the same dataset.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from projctld.sandbox import gitlab_graphql, gitlab_resolvers
from projctld.sandbox.dataset import Dataset, MergeRequest, Pipeline, Todo, stable_id
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
# The scopes of the merge request lists (the hyphenated ones are older spellings GitLab keeps).
SCOPES = {"created_by_me": "created_by_me", "created-by-me": "created_by_me",
          "assigned_to_me": "assigned_to_me", "assigned-to-me": "assigned_to_me", "all": "all"}
MUTUALLY_EXCLUSIVE = (("author_id", "author_username"), ("assignee_id", "assignee_username"),
                      ("reviewer_id", "reviewer_username"))
# The numeric ids GitLab would know a project and a user by (stable: derived from the names).
project_id = gitlab_resolvers.project_id
user_id = gitlab_resolvers.user_id


class FakeGitLab(FakeServer):
    """GitLab at `base_url` (a prefix such as "/gitlab" for a relative URL root); API under
    /api/v4. `rate` counts every request but a 304; `total_headers_limit` is where x-total and
    x-total-pages stop being sent, as GitLab stops above 10,000; `links = False` drops the
    `Link` header from offset pages, as some proxies in front of GitLab do.

    `tier` decides the shape of a merge request's approvals (Free: whether anyone approved and
    who; Premium: also what the approval rules require and how many approvals are left), and
    on Free no approval rule can hold a merge back. `missing` names what this instance is too
    old (or too plain) to have: REST endpoints ("approvals", "reviewers") answer 404, as routes
    GitLab lacks do; "graphql" makes /api/graphql answer 404, as an instance before 12.1 (or
    with the `graphql` feature flag off) does; a GraphQL field ("MergeRequest.approvalsLeft",
    Enterprise Edition only) is refused as an undefined field.
    `graphql_field_errors` maps (project, iid, field) to the message of an error GitLab gives
    for that field of that merge request (null beside the rest of the data); `max_complexity`,
    when set, replaces GitLab's limit (250 with a token).
    `renamed` maps a project's old path to its path now: the API still finds it by the old one
    (GitLab's find_project follows redirects), and everything it answers says the new one.
    """

    def __init__(self, data: Dataset, *, token: str = "gl-token", prefix: str = "",
                 total_headers_limit: int = 10_000, tier: gitlab_resolvers.Tier = "premium"
                 ) -> None:
        super().__init__(token=token, prefix=prefix)
        self.data = data
        self.rate = RateLimit(2000, 60)
        self.total_headers_limit = total_headers_limit
        self.links = True
        self.tier: gitlab_resolvers.Tier = tier
        self.missing: set[str] = set()
        self.graphql_field_errors: dict[tuple[str, int, str], str] = {}
        self.max_complexity: int | None = None
        self.renamed: dict[str, str] = {}
        # The token as /personal_access_tokens/self describes it; without `api` or `read_api`
        # the project routes answer 403 insufficient_scope, as GitLab does.
        self.scopes = ["read_api"]
        self.expires_at: str | None = None  # YYYY-MM-DD

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/v4"

    @property
    def graphql_url(self) -> str:
        return self.base_url + "/api/graphql"

    # -- FakeServer

    def authorized(self, request: Request) -> bool:
        # GraphQL runs without a token too, as for an anonymous visitor; a wrong one is refused.
        return self._credential(request) in (self.token, None if self._graphql(request)
                                             else self.token)

    def unauthorized(self, request: Request) -> Reply:
        if self._graphql(request):
            return Reply(401, {"errors": [{"message": "Invalid token"}]})
        return Reply(401, {"message": "401 Unauthorized"})

    def _credential(self, request: Request) -> str | None:
        if "private-token" in request.headers:
            return request.headers["private-token"]
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        return credential if scheme.lower() == "bearer" else None

    def _graphql(self, request: Request) -> bool:
        return request.path == self.prefix + "/api/graphql"

    def refuse(self, request: Request) -> Reply | None:
        if not self.rate.exhausted():
            return None
        return Reply(429, {"message": "Retry later"},
                     {"Retry-After": str(self.rate.seconds_to_reset())})

    def _todos(self, request: Request) -> Reply:
        """GET /todos: the user's pending to-dos (state=done: the done ones), newest first."""
        state = request.query.get("state", "pending")
        todos = sorted((t for t in self.data.todos if t.state == state),
                       key=lambda t: t.created_at, reverse=True)
        per_page = int_param(request, "per_page", 20, 100)
        return Reply(200, [_todo_json(t) for t in todos[:per_page]])

    def _mark_done(self, todo_id: int) -> Reply:
        """POST /todos/:id/mark_as_done: 200 with the to-do, now done. Writing needs the
        `api` scope; `read_api` is refused as GitLab refuses it (403 insufficient_scope)."""
        if "api" not in self.scopes:
            return Reply(403, {"error": "insufficient_scope", "scope": "api",
                               "error_description": "The request requires higher privileges "
                               "than provided by the access token."})
        with self._lock:
            todo = next((t for t in self.data.todos if t.id == todo_id and
                         t.state == "pending"), None)
            if todo is None:
                return Reply(404, {"message": "404 Not found"})
            todo.state = "done"
        return Reply(200, _todo_json(todo))

    def route(self, request: Request) -> Reply:
        if self._graphql(request):
            return self._graphql_answer(request)
        api = self.prefix + "/api/v4"
        if request.path == api + "/todos" and request.method == "GET":
            return self._todos(request)
        done = re.fullmatch(re.escape(api) + r"/todos/(\d+)/mark_as_done", request.path)
        if done and request.method == "POST":
            return self._mark_done(int(done[1]))
        if request.method != "GET" or not request.path.startswith(api + "/"):
            return _no_route()
        parts = request.path[len(api) + 1:].split("/")
        if parts == ["user"]:
            me = self.data.gitlab_username
            return Reply(200, {**self._user(me), "web_url": f"{WEB}/{me}"})
        if parts == ["personal_access_tokens", "self"]:
            return Reply(200, self._token_json())
        if not {"api", "read_api"} & set(self.scopes):
            return Reply(403, {"error": "insufficient_scope", "scope": "api read_api",
                               "error_description": "The request requires higher privileges "
                               "than provided by the access token."})
        if parts == ["merge_requests"]:
            every = [mr for path in self.data.gitlab_projects
                     for mr in self.data.merge_requests.get(path, [])]
            return self._merge_requests(request, every, default_scope="created_by_me")
        if len(parts) < 2 or parts[0] != "projects":
            return _no_route()
        project = self._project(unquote(parts[1]))
        if project is None:
            return Reply(404, {"message": "404 Project Not Found"})
        match parts[2:]:
            case []:
                return Reply(200, _project_json(project))
            case ["merge_requests"]:
                return self._merge_requests(request, self.data.merge_requests.get(project, []),
                                            default_scope="all")
            case ["merge_requests", iid]:
                return self._with_merge_request(project, iid, self._merge_request_json)
            case ["merge_requests", iid, "approvals"] if "approvals" not in self.missing:
                return self._with_merge_request(project, iid, self._approvals_json)
            case ["merge_requests", iid, "reviewers"] if "reviewers" not in self.missing:
                return self._with_merge_request(project, iid, self._reviewers_json)
            case ["pipelines"]:
                return self._pipelines(request, project)
        return _no_route()

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

    def _graphql_answer(self, request: Request) -> Reply:
        if "graphql" in self.missing:
            return Reply(404, None, {"Content-Type": "text/html; charset=utf-8"},
                         b"<!DOCTYPE html>\n<html><body><h1>404</h1>"
                         b"<p>The page could not be found.</p></body></html>\n")
        if request.method != "POST":
            return _no_route()
        user = self.data.gitlab_username if self._credential(request) else None
        state = gitlab_resolvers.Request(self.data, user, self.tier, WEB,
                                         dict(self.graphql_field_errors))
        without = frozenset(name for name in self.missing if "." in name)
        return gitlab_graphql.answer(request.body, state, without=without,
                                     max_complexity=self.max_complexity)

    def _project(self, ident: str) -> str | None:
        """A project by URL-encoded path (any case, or an old one) or numeric id, as GitLab
        finds one."""
        ident = next((new for old, new in self.renamed.items()
                      if old.lower() == ident.lower()), ident)
        for path in self.data.gitlab_projects:
            if path.lower() == ident.lower() or str(project_id(path)) == ident:
                return path
        return None

    def _merge_requests(self, request: Request, candidates: Iterable[MergeRequest], *,
                        default_scope: str) -> Reply:
        """The list endpoints: GET /merge_requests (every project the user can see, by default
        only what the user created) and GET /projects/:id/merge_requests (by default all)."""
        query = request.query
        if query.get("pagination") == "keyset":
            return Reply(405, {"message": KEYSET_REFUSED})
        for pair in MUTUALLY_EXCLUSIVE:
            if all(name in query for name in pair):
                return Reply(400, {"error": f"{', '.join(pair)} are mutually exclusive"})
        scope = SCOPES.get(query.get("scope", default_scope))
        if scope is None:
            return Reply(400, {"error": "scope does not have a valid value"})
        order_by = query.get("order_by", "created_at")
        if order_by not in ("created_at", "updated_at", "title"):
            return Reply(400, {"error": "order_by does not have a valid value"})
        me = self.data.gitlab_username
        state = query.get("state", "all")
        wanted: list[Callable[[MergeRequest], bool]] = [
            lambda mr: state in ("all", mr.state)]
        if scope == "created_by_me":
            wanted.append(lambda mr: mr.author == me)
        elif scope == "assigned_to_me":
            wanted.append(lambda mr: me in mr.assignees)
        for role in ("author", "assignee", "reviewer"):
            test = self._user_filter(query, role)
            if test is not None:
                wanted.append(test)
        chosen = [mr for mr in candidates if all(test(mr) for test in wanted)]
        key: Callable[[MergeRequest], Any] = {
            "created_at": lambda mr: (_created(mr), mr.id),
            "updated_at": lambda mr: (mr.updated_at, mr.id),
            "title": lambda mr: (mr.title, mr.id)}[order_by]
        chosen.sort(key=key, reverse=query.get("sort", "desc") == "desc")
        return self._offset_page(request, chosen, self._merge_request_list_json)

    def _user_filter(self, query: dict[str, str], role: str
                     ) -> Callable[[MergeRequest], bool] | None:
        """author_/assignee_/reviewer_ id or username; `None` and `Any` as GitLab reads them."""
        value = query.get(f"{role}_username")
        by_id = query.get(f"{role}_id")
        if value is None and by_id is None:
            return None

        def people(mr: MergeRequest) -> list[str]:
            return [mr.author] if role == "author" else \
                mr.assignees if role == "assignee" else mr.reviewers

        if (value or by_id) == "None":
            return lambda mr: not people(mr)
        if (value or by_id) == "Any":
            return lambda mr: bool(people(mr))
        if value is not None:
            return lambda mr: value in people(mr)
        return lambda mr: any(str(user_id(u)) == by_id for u in people(mr))

    def _with_merge_request(self, project: str, iid: str,
                            render: Callable[[MergeRequest], Any]) -> Reply:
        for mr in self.data.merge_requests.get(project, []):
            if str(mr.iid) == iid:
                return Reply(200, render(mr))
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
                   (("username", p.username), ("ref", p.ref), ("status", p.status),
                    ("sha", p.sha)))
        ]
        pipelines.sort(key=lambda p: (p.updated_at, p.id) if order_by == "updated_at" else p.id,
                       reverse=descending)
        if query.get("pagination") != "keyset":
            return self._offset_page(request, pipelines, _pipeline_json)
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

    def _offset_page(self, request: Request, items: list[Any],
                     render: Callable[[Any], dict[str, Any]]) -> Reply:
        """One page and GitLab's offset-pagination headers; only that page is rendered."""
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
        return Reply(200, [render(item) for item in
                           items[(page - 1) * per_page: page * per_page]], headers)

    # -- shapes

    def _token_json(self) -> dict[str, Any]:
        return {"id": 1, "name": "projctl", "revoked": False, "active": True,
                "created_at": "2025-01-01T00:00:00.000Z", "scopes": self.scopes,
                "user_id": self._user(self.data.gitlab_username)["id"],
                "last_used_at": None, "expires_at": self.expires_at}

    def _user(self, username: str) -> dict[str, Any]:
        return {"id": user_id(username), "username": username,
                "name": self.data.name_of(username), "state": "active",
                "web_url": f"{WEB}/{username}"}

    def _detailed_merge_status(self, mr: MergeRequest) -> str:
        return gitlab_resolvers.detailed_merge_status(mr, self.tier)

    def _merge_request_list_json(self, mr: MergeRequest) -> dict[str, Any]:
        detailed = self._detailed_merge_status(mr)
        merge_status = _merge_status(detailed, mr.has_conflicts)
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
            "source_project_id": project_id(mr.project),
            "target_project_id": project_id(mr.project),
            "author": self._user(mr.author),
            "assignee": self._user(mr.assignees[0]) if mr.assignees else None,
            "assignees": [self._user(u) for u in mr.assignees],
            "reviewers": [self._user(u) for u in mr.reviewers],
            "sha": mr.sha,
            "detailed_merge_status": detailed,
            "merge_status": merge_status,
            # "Returns false unless merge_status is cannot_be_merged."
            "has_conflicts": mr.has_conflicts and merge_status == "cannot_be_merged",
            "references": {"short": f"!{mr.iid}", "relative": f"!{mr.iid}",
                           "full": f"{mr.project}!{mr.iid}"},
        }

    def _merge_request_json(self, mr: MergeRequest) -> dict[str, Any]:
        pipeline = mr.head_pipeline
        return {**self._merge_request_list_json(mr),
                "head_pipeline": _pipeline_detail_json(pipeline) if pipeline else None,
                "user": {"can_merge": True}}

    def _approvals_json(self, mr: MergeRequest) -> dict[str, Any]:
        """GET .../approvals: Free tells whether anyone approved, and who; Premium the state of
        the approval rules: `approved` once none needs an approval any more (so, with no rules,
        even when nobody approved), with what is required and what is left."""
        me = self.data.gitlab_username
        approvals = {
            "user_has_approved": me in mr.approved_by,
            "user_can_approve": me != mr.author and me not in mr.approved_by,
            "approved_by": [{"user": self._user(u)} for u in mr.approved_by],
        }
        if self.tier == "free":
            return {**approvals, "approved": bool(mr.approved_by)}
        required = self.data.gitlab_approvals_required.get(mr.project, 0)
        left = max(0, required - len(mr.approved_by))
        return {
            "id": mr.id, "iid": mr.iid, "project_id": project_id(mr.project),
            "title": mr.title, "description": None, "state": mr.state,
            "created_at": _iso(_created(mr)), "updated_at": _iso(mr.updated_at),
            "merge_status": _merge_status(mr.detailed_merge_status, mr.has_conflicts),
            "approved": left == 0, "approvals_required": required, "approvals_left": left,
            "require_password_to_approve": False, "suggested_approvers": [], "approvers": [],
            "approver_groups": [], **approvals,
        }

    def _reviewers_json(self, mr: MergeRequest) -> list[dict[str, Any]]:
        return [{"user": self._user(login), "state": mr.reviewer_states.get(login, "unreviewed"),
                 "created_at": _iso(_created(mr))} for login in mr.reviewers]


def _no_route() -> Reply:
    return Reply(404, {"error": "404 Not Found"})


def _created(mr: MergeRequest) -> float:
    return mr.created_at or mr.updated_at


_merge_status = gitlab_resolvers.merge_status  # the deprecated merge_status


def _project_json(path: str) -> dict[str, Any]:
    name = path.rsplit("/", 1)[-1]
    return {"id": project_id(path), "name": name, "path": name,
            "path_with_namespace": path, "name_with_namespace": path.replace("/", " / "),
            "default_branch": "main", "web_url": f"{WEB}/{path}", "archived": False}


def _pipeline_json(pipeline: Pipeline) -> dict[str, Any]:
    """A pipeline as lists show it: no `started_at` (pipelines.md, List project pipelines)."""
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


def _pipeline_detail_json(pipeline: Pipeline) -> dict[str, Any]:
    """A pipeline with its times, as a merge request's `head_pipeline` shows it."""
    finished = pipeline.status in ("success", "failed", "canceled", "skipped")
    return {**_pipeline_json(pipeline),
            "started_at": _iso(pipeline.started_at) if pipeline.started_at else None,
            "finished_at": _iso(pipeline.updated_at) if finished else None}


def _todo_json(todo: Todo) -> dict[str, Any]:
    """A to-do as docs.gitlab.com/api/todos documents it (the fields projctl reads, and a few)."""
    kind = "merge_requests" if todo.target_type == "MergeRequest" else "issues"
    url = f"{WEB}/{todo.project}/-/{kind}/{todo.iid}"
    return {
        "id": todo.id, "project": {"id": stable_id(todo.project), "path_with_namespace":
                                   todo.project, "name": todo.project.rsplit("/", 1)[-1]},
        "author": {"id": stable_id(todo.author), "username": todo.author, "name": todo.author},
        "action_name": todo.action, "target_type": todo.target_type,
        "target": {"iid": todo.iid, "title": todo.title, "web_url": url},
        "target_url": url, "body": todo.title, "state": todo.state,
        "created_at": _iso(todo.created_at), "updated_at": _iso(todo.created_at),
    }


def _iso(epoch: float) -> str:
    seconds, millis = divmod(int(epoch * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
