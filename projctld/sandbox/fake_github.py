"""A fake GitHub (or GitHub Enterprise): REST for workflow runs and the user, GraphQL for pulls."""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any, Literal

from projctld.sandbox import github_graphql, github_resolvers
from projctld.sandbox.dataset import Dataset, Thread, WorkflowRun, stable_id
from projctld.sandbox.fakehttp import (
    FakeServer,
    RateLimit,
    Reply,
    Request,
    http_date,
    int_param,
    link_header,
)

DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
# As a 403 for a SAML-protected organisation says it (jhu-bids/TermHub#935, 2024).
SAML_DOCS = ("https://docs.github.com/articles/authenticating-to-a-github-organization-with-"
             "saml-single-sign-on/")
USER_ID = 1
WEB = "https://github.com"  # where html_url points (the fake serves only the API)


class FakeGitHub(FakeServer):
    """github.com with prefix "" (GraphQL at /graphql), Enterprise with "/api/v3" (/api/graphql).

    `rate["core"]` counts REST requests, `rate["graphql"]` the GraphQL points; a 304 is free.
    A spent GraphQL budget answers 200 with an error of `graphql_limit_type`: "RATE_LIMITED"
    (as GitHub documents it) or "RATE_LIMIT" (the older form, still seen in the field).
    """

    def __init__(self, data: Dataset, *, token: str = "gh-token", prefix: str = "") -> None:
        super().__init__(token=token, prefix=prefix)
        self.data = data
        self.rate = {"core": RateLimit(5000, 3600), "graphql": RateLimit(5000, 3600)}
        self.graphql_path = self.prefix.removesuffix("/v3") + "/graphql"
        self.graphql_limit_type: Literal["RATE_LIMITED", "RATE_LIMIT"] = "RATE_LIMITED"
        self._secondary: list[int] = []
        self._graphql_refusals = 0
        # What X-OAuth-Scopes says of the token (a classic one); None: a fine-grained token,
        # for which GitHub sends no such header.
        self.scopes: list[str] | None = ["repo", "read:org"]
        # GET /notifications: X-Poll-Interval, and when the list last changed (Last-Modified).
        self.poll_interval = 60
        self.notifications_changed = time.time()

    @property
    def graphql_url(self) -> str:
        return self.server_url + self.graphql_path

    def secondary_limit(self, retry_after: int, times: int = 1) -> None:
        """Refuse the next `times` requests as GitHub's secondary rate limit does (REST's 403)."""
        with self._lock:
            self._secondary += [retry_after] * times

    def graphql_rate_limited(self, times: int = 1) -> None:
        """Answer the next `times` GraphQL requests with the rate-limit error although points
        are left, as a secondary limit seen through GraphQL does (octokit/plugin-throttling.js
        #632: RATE_LIMITED while x-ratelimit-remaining is not 0)."""
        with self._lock:
            self._graphql_refusals += times

    # -- FakeServer

    def authorized(self, request: Request) -> bool:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() in ("bearer", "token") and credential == self.token

    def unauthorized(self, request: Request) -> Reply:
        return Reply(401, {"message": "Bad credentials", "documentation_url": DOCS,
                           "status": "401"})

    def refuse(self, request: Request) -> Reply | None:
        with self._lock:
            retry_after = self._secondary.pop(0) if self._secondary else None
        if retry_after is not None:
            return Reply(403, {
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes "
                           "before you try again.",
                "documentation_url": f"{RATE_DOCS}#about-secondary-rate-limits",
            }, {"retry-after": str(retry_after)})
        if self._resource(request) == "graphql":
            with self._lock:
                refused, self._graphql_refusals = (self._graphql_refusals > 0,
                                                   max(0, self._graphql_refusals - 1))
            if refused or self.rate["graphql"].exhausted():
                return self._graphql_limited()
            return None
        if not self.rate["core"].exhausted():
            return None
        return Reply(403, {"message": f"API rate limit exceeded for user ID {USER_ID}.",
                           "documentation_url": f"{RATE_DOCS}#about-primary-rate-limits"})

    def notifications_touched(self) -> None:
        """The notifications changed: Last-Modified moves on (a test mutated `data`)."""
        self.notifications_changed = time.time()

    def route(self, request: Request) -> Reply:
        rest = request.path.removeprefix(self.prefix)
        if rest == "/notifications" and request.method == "GET":
            return self._notifications(request)
        thread = re.fullmatch(r"/notifications/threads/([^/]+)", rest)
        if thread and request.method == "PATCH":
            return self._mark_read(thread[1])
        if request.path == self.graphql_path and request.method == "POST":
            reply = github_graphql.answer(request.body, self.data, self.rate["graphql"])
            return reply if reply is not None else self._graphql_limited()
        rest = request.path.removeprefix(self.prefix)
        if request.method == "GET" and request.path.startswith(self.prefix + "/"):
            if rest == "/user":
                # GitHub sends X-OAuth-Scopes on every authenticated REST reply; projctl reads
                # it only here (`projctl doctor`).
                scopes = {} if self.scopes is None else {"X-OAuth-Scopes": ", ".join(self.scopes)}
                return Reply(200, {"login": self.data.github_login, "id": USER_ID,
                                   "name": self.data.display_name}, scopes)
            by_name = re.fullmatch(r"/repos/([^/]+)/([^/]+)(/actions/runs)", rest)
            by_id = re.fullmatch(r"/repositories/(\d+)(/actions/runs)", rest)
            if by_name:
                return self._repository(request, f"{by_name[1]}/{by_name[2]}", by_name[3])
            if by_id:
                repo = next((r for r in self.data.github_repos if stable_id(r) == int(by_id[1])),
                            None)
                if repo is not None:
                    return self._repository(request, repo, by_id[2])
        return Reply(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})

    def charge(self, request: Request, reply: Reply) -> None:
        # A GraphQL request was charged its cost before it ran (see github_graphql.answer).
        # A 304 from /notifications leaves the rate limit untouched, as GitHub documents.
        if self._resource(request) == "core" and reply.status != 304:
            self.rate["core"].take(1)

    def rate_headers(self, request: Request) -> dict[str, str]:
        resource = self._resource(request)
        bucket = self.rate[resource]
        return {
            "x-ratelimit-limit": str(bucket.limit),
            "x-ratelimit-remaining": str(max(0, bucket.remaining)),
            "x-ratelimit-used": str(bucket.used),
            "x-ratelimit-reset": str(int(bucket.reset + self.clock_skew)),
            "x-ratelimit-resource": resource,
        }

    # -- endpoints

    def _notifications(self, request: Request) -> Reply:
        """GET /notifications as docs.github.com/rest/activity/notifications documents it: the
        unread threads (all with all=true), newest first; Last-Modified and X-Poll-Interval
        on every answer; If-Modified-Since equal to Last-Modified answers 304, no body."""
        with self._lock:
            modified = http_date(self.notifications_changed)
            headers = {"Last-Modified": modified, "X-Poll-Interval": str(self.poll_interval)}
            if request.headers.get("if-modified-since") == modified:
                return Reply(304, None, headers, b"")
            every = request.query.get("all") == "true"
            threads = sorted((t for t in self.data.notifications if every or t.unread),
                             key=lambda t: t.updated_at, reverse=True)
        per_page = int_param(request, "per_page", 50, 50)
        api = request.url(self.prefix, {})
        body = [_thread_json(t, api) for t in threads[:per_page]]
        return Reply(200, None, {**headers, "Content-Type": "application/json"},
                     json.dumps(body).encode())

    def _mark_read(self, thread_id: str) -> Reply:
        """PATCH /notifications/threads/{id}: 205 Reset Content, the thread read."""
        with self._lock:
            thread = next((t for t in self.data.notifications if t.id == thread_id), None)
            if thread is None:
                return Reply(404, {"message": "Not Found", "documentation_url": DOCS})
            thread.unread = False
            self.notifications_changed = time.time()
        return Reply(205, None, {}, b"")

    def _resource(self, request: Request) -> str:
        return "graphql" if request.path == self.graphql_path else "core"

    def _graphql_limited(self) -> Reply:
        """GraphQL says so in a 200; the headers show what is left (0 once it is spent)."""
        message = f"API rate limit exceeded for user ID {USER_ID}."
        if self.graphql_limit_type == "RATE_LIMIT":  # yanyongyu/githubkit#271, 2026
            return Reply(200, {"errors": [{
                "type": "RATE_LIMIT", "code": "graphql_rate_limit",
                "message": f"API rate limit already exceeded for user ID {USER_ID}.",
            }]})
        return Reply(200, {"errors": [{"type": "RATE_LIMITED", "message": message}]})

    def _repository(self, request: Request, name: str, endpoint: str) -> Reply:
        repo = _repo(self.data, name)
        if repo is None:
            moved = next((new for old, new in self.data.renamed.items()
                          if old.lower() == name.lower()), None)
            target = moved and _repo(self.data, moved)
            if target is not None:
                return _moved(request, self.prefix, target, endpoint)
            return Reply(404, {"message": "Not Found", "documentation_url": DOCS,
                               "status": "404"})
        org = repo.split("/")[0]
        if org.lower() in {o.lower() for o in self.data.saml_orgs}:
            return Reply(403, {"message": github_resolvers.SAML_MESSAGE,
                               "documentation_url": SAML_DOCS, "status": "403"},
                         {"X-GitHub-SSO": github_resolvers.sso_header(org)})
        return self._runs(request, repo)

    def _runs(self, request: Request, repo: str) -> Reply:
        runs = sorted(self.data.runs.get(repo, []), key=lambda r: (r.created_at, r.id),
                      reverse=True)
        actor, branch, status = (request.query.get(k) for k in ("actor", "branch", "status"))
        runs = [
            r for r in runs
            if (actor is None or r.actor.lower() == actor.lower())
            and (branch is None or r.head_branch == branch)
            and (status is None or status in (r.status, r.conclusion))
        ]
        per_page = int_param(request, "per_page", 30, 100)
        page = int_param(request, "page", 1)
        last = max(1, math.ceil(len(runs) / per_page))
        titles = {p.head_ref: p.title for p in self.data.pulls.get(repo, [])}
        body = {
            "total_count": len(runs),
            "workflow_runs": [_run_json(r, titles) for r in
                              runs[(page - 1) * per_page: page * per_page]],
        }

        def at(n: int) -> str:
            return request.url(request.path, {**request.query, "page": str(n)})

        links = [("prev", at(page - 1))] if page > 1 else []
        if page < last:
            links += [("next", at(page + 1)), ("last", at(last))]
        if page > 1:
            links.append(("first", at(1)))
        return Reply(200, body, {"Link": link_header(links)} if links else {})


def _thread_json(thread: Thread, api: str) -> dict[str, Any]:
    """A thread as GitHub lists it: subject.url is the API's address of the pull or issue."""
    kind = {"PullRequest": "pulls", "Issue": "issues"}.get(thread.type)
    subject_url = f"{api}/repos/{thread.repo}/{kind}/{thread.number}" \
        if kind and thread.number else None
    return {
        "id": thread.id, "unread": thread.unread, "reason": thread.reason,
        "updated_at": _iso(thread.updated_at), "last_read_at": None,
        "subject": {"title": thread.title, "url": subject_url,
                    "latest_comment_url": subject_url, "type": thread.type},
        "repository": {"full_name": thread.repo, "html_url": f"{WEB}/{thread.repo}",
                       "private": False},
        "url": f"{api}/notifications/threads/{thread.id}",
        "subscription_url": f"{api}/notifications/threads/{thread.id}/subscription",
    }


def _moved(request: Request, prefix: str, repo: str, endpoint: str) -> Reply:
    """A renamed repository's old name: 301 to its id, as GitHub redirects them (the body as
    in 18F/charlie#85; GitHub answers 307 for methods other than GET and HEAD)."""
    location = request.url(f"{prefix}/repositories/{stable_id(repo)}{endpoint}", request.query)
    return Reply(301, {"message": "Moved Permanently", "url": location,
                       "documentation_url": "https://docs.github.com/v3/#http-redirects"},
                 {"Location": location})


def _repo(data: Dataset, name: str) -> str | None:
    """The repository's name as the dataset spells it: GitHub ignores case in names."""
    for repo in data.github_repos:
        if repo.lower() == name.lower():
            return repo
    return None


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _run_json(run: WorkflowRun, titles: dict[str, str]) -> dict[str, Any]:
    return {
        "id": run.id,
        "name": run.name,
        "display_title": titles.get(run.head_branch, f"Update {run.head_branch}"),
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "status": run.status,
        "conclusion": run.conclusion,
        "html_url": f"https://github.com/{run.repo}/actions/runs/{run.id}",
        "event": run.event,
        "actor": {"login": run.actor, "id": stable_id(run.actor)},
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        "run_started_at": _iso(run.created_at),
    }
