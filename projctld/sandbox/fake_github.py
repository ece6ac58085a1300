"""A fake GitHub (or GitHub Enterprise): REST for workflow runs and the user, GraphQL for pulls."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from projctld.sandbox import graphql
from projctld.sandbox.dataset import Check, Dataset, PullRequest, WorkflowRun, stable_id
from projctld.sandbox.fakehttp import (
    FakeServer,
    RateLimit,
    Reply,
    Request,
    int_param,
    link_header,
)
from projctld.sandbox.graphql import AbstractType, FieldDef, FieldError, ObjectType

DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
USER_ID = 1
FAILING = {"failure", "error", "cancelled", "timed_out", "action_required", "startup_failure"}


class FakeGitHub(FakeServer):
    """github.com with prefix "" (GraphQL at /graphql), Enterprise with "/api/v3" (/api/graphql).

    `rate["core"]` counts REST requests, `rate["graphql"]` the GraphQL cost; a 304 is free.
    """

    def __init__(self, data: Dataset, *, token: str = "gh-token", prefix: str = "") -> None:
        super().__init__(token=token, prefix=prefix)
        self.data = data
        self.rate = {"core": RateLimit(5000, 3600), "graphql": RateLimit(5000, 3600)}
        self.graphql_path = self.prefix.removesuffix("/v3") + "/graphql"
        self._secondary: list[int] = []
        # What X-OAuth-Scopes says of the token (a classic one); None: a fine-grained token,
        # for which GitHub sends no such header.
        self.scopes: list[str] | None = ["repo", "read:org"]

    @property
    def graphql_url(self) -> str:
        return self.server_url + self.graphql_path

    def secondary_limit(self, retry_after: int, times: int = 1) -> None:
        """Refuse the next `times` requests as GitHub's secondary rate limit does."""
        with self._lock:
            self._secondary += [retry_after] * times

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
        if not self.rate[self._resource(request)].exhausted():
            return None
        if self._resource(request) == "graphql":
            return _graphql_limited()
        return Reply(403, {"message": f"API rate limit exceeded for user ID {USER_ID}.",
                           "documentation_url": f"{RATE_DOCS}#about-primary-rate-limits"})

    def route(self, request: Request) -> Reply:
        if request.path == self.graphql_path and request.method == "POST":
            return self._graphql(request)
        rest = request.path.removeprefix(self.prefix)
        if request.method == "GET" and request.path.startswith(self.prefix + "/"):
            if rest == "/user":
                # GitHub sends X-OAuth-Scopes on every authenticated REST reply; projctl reads
                # it only here (`projctl doctor`).
                scopes = {} if self.scopes is None else {"X-OAuth-Scopes": ", ".join(self.scopes)}
                return Reply(200, {"login": self.data.github_login, "id": USER_ID,
                                   "name": self.data.display_name}, scopes)
            match = re.fullmatch(r"/repos/([^/]+)/([^/]+)/actions/runs", rest)
            repo = match and _repo(self.data, f"{match[1]}/{match[2]}")
            if repo:
                return self._runs(request, repo)
        return Reply(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})

    def charge(self, request: Request, reply: Reply) -> None:
        # A GraphQL request was charged its cost before it ran (see _graphql).
        if self._resource(request) == "core":
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

    def _resource(self, request: Request) -> str:
        return "graphql" if request.path == self.graphql_path else "core"

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

    def _graphql(self, request: Request) -> Reply:
        try:
            body = json.loads(request.body)
        except ValueError:
            return Reply(400, {"message": "Problems parsing JSON",
                               "documentation_url": "https://docs.github.com/graphql"})
        query = body.get("query") if isinstance(body, dict) else None
        if not isinstance(query, str):
            return Reply(200, {"errors": [
                {"message": "A query attribute must be specified and must be a string."}
            ]})
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            return Reply(200, {"errors": [{"message": "Variables must be a JSON object."}]})
        try:
            prepared = graphql.Request(SCHEMA, query, variables, body.get("operationName"))
        except graphql.GraphQLError as exc:
            return Reply(200, {"errors": exc.errors})
        # GitHub's points: the requests the connections could need, per hundred, at least 1.
        cost = max(1, math.floor(prepared.requests / 100 + 0.5))
        if not self.rate["graphql"].take(cost):
            return _graphql_limited()
        return Reply(200, prepared.execute(_Context(self, cost)))


def _graphql_limited() -> Reply:
    # GraphQL says so in a 200, as GitHub does; the headers show remaining 0 as well.
    return Reply(200, {"errors": [{
        "type": "RATE_LIMIT", "code": "graphql_rate_limit",
        "message": f"API rate limit already exceeded for user ID {USER_ID}.",
    }]})


@dataclass
class _Context:
    fake: FakeGitHub
    cost: int

    @property
    def data(self) -> Dataset:
        return self.fake.data


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


# -- GraphQL: search qualifiers and connections


def _search(args: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    data = ctx.data
    pulls = [p for repo in data.github_repos for p in data.pulls.get(repo, [])]
    if args["type"] != "ISSUE":
        pulls = []  # only pull requests are modelled
    words, repos = [], []
    for term in re.findall(r'\S+?:"[^"]*"|"[^"]*"|\S+', args["query"]):
        key, colon, value = term.partition(":")
        value = value.strip('"')
        me = data.github_login
        login = (me if value == "@me" else value).lower()
        if not colon:
            words.append(term.strip('"').lower())
        elif key == "is" and value in ("pr", "open", "closed", "issue"):
            pulls = [p for p in pulls if value == "pr" or value == p.state]
        elif key == "archived":
            pulls = pulls if value == "false" else []  # no repository is archived
        elif key == "author":
            pulls = [p for p in pulls if p.author.lower() == login]
        elif key == "review-requested":
            pulls = [p for p in pulls if login in (r.lower() for r in p.review_requested)]
        elif key in ("org", "user"):
            pulls = [p for p in pulls if p.repo.split("/")[0].lower() == value.lower()]
        elif key == "head":
            pulls = [p for p in pulls if p.head_ref == value]
        elif key == "repo":
            repos.append(value.lower())  # several repo: qualifiers widen the search
        else:
            words.append(term.lower())
    pulls = [
        p for p in pulls
        if (not repos or p.repo.lower() in repos) and all(w in p.title.lower() for w in words)
    ]
    pulls.sort(key=lambda p: p.updated_at, reverse=True)
    return _page(pulls, args)


def _page(items: list[Any], args: dict[str, Any]) -> dict[str, Any]:
    """One page of a connection; cursors are opaque, as GitHub's, and encode the position."""
    start = 0
    if args.get("after") is not None:
        try:
            start = int(base64.b64decode(args["after"], validate=True).decode()
                        .removeprefix("cursor:"))
            if start < 0:
                raise ValueError(start)
        except (ValueError, binascii.Error):
            raise FieldError(f"`{args['after']}` does not appear to be a valid cursor.") from None
    rest = items[start:]
    if args.get("first") is not None:
        nodes = rest[: args["first"]]
        has_next = len(rest) > len(nodes)
    else:
        nodes = rest[len(rest) - args["last"]:] if args["last"] else []
        start, has_next = len(items) - len(nodes), False
    end = base64.b64encode(f"cursor:{start + len(nodes)}".encode()).decode() if nodes else None
    return {"total": len(items), "nodes": nodes, "has_next": has_next, "end": end}


def _rollup_state(checks: list[Check]) -> str:
    if any(c.conclusion in FAILING for c in checks):
        return "FAILURE"
    if any(c.status != "completed" or c.conclusion == "pending" for c in checks):
        return "PENDING"
    return "SUCCESS"


def _repository(args: dict[str, Any], ctx: _Context) -> str:
    name = f"{args['owner']}/{args['name']}"
    repo = _repo(ctx.data, name)
    if repo is None:
        raise FieldError(f"Could not resolve to a Repository with the name '{name}'.",
                         "NOT_FOUND")
    return repo


def _pull_requests(repo: str, args: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    states = args.get("states") or ["OPEN", "CLOSED", "MERGED"]
    states = [states] if isinstance(states, str) else states
    head = args.get("headRefName")
    pulls = sorted(
        (p for p in ctx.data.pulls.get(repo, [])
         if p.state.upper() in states and (head is None or p.head_ref == head)),
        key=lambda p: p.number,
    )
    return _page(pulls, args)


def _node(args: dict[str, Any], ctx: _Context) -> PullRequest | None:
    """A head commit by its id (C_OWNER/NAME#NUMBER): only commits are nodes here."""
    for pulls in ctx.data.pulls.values():
        for pull in pulls:
            if args["id"] == f"C_{pull.repo}#{pull.number}":
                return pull
    return None


def _counts(checks: list[Check], kind: str) -> list[dict[str, Any]]:
    """The rollup's counts by CheckRunState (check runs) or StatusState (statuses)."""
    counts: dict[str, int] = {}
    for check in checks:
        if check.kind != kind:
            continue
        if kind == "check_run":
            state = (check.conclusion or "completed").upper() if check.status == "completed" \
                else check.status.upper()
        else:
            state = (check.conclusion or "pending").upper()
        counts[state] = counts.get(state, 0) + 1
    return [{"state": state, "count": count} for state, count in sorted(counts.items())]


def _f(type: str, resolve: Callable[..., Any], **args: str) -> FieldDef:
    return FieldDef(type, resolve, args)


def _attr(type: str, name: str) -> FieldDef:
    return FieldDef(type, lambda obj, _args, _ctx: getattr(obj, name))


def _key(type: str, name: str) -> FieldDef:
    return FieldDef(type, lambda obj, _args, _ctx: obj[name])


def _connection(node: str, items: Callable[[Any, dict[str, Any], Any], dict[str, Any]],
                **args: str) -> FieldDef:
    return FieldDef(node, items, {"first": "Int", "after": "String", "last": "Int", **args},
                    connection=True)


def _connection_type(name: str, node: str) -> ObjectType:
    return ObjectType(name, {
        "totalCount": _key("Int", "total"),
        "pageInfo": FieldDef("PageInfo", lambda page, _a, _c: page),
        "nodes": _key(f"[{node}]", "nodes"),
    })


_TYPES: list[ObjectType | AbstractType] = [
    ObjectType("Query", {
        "viewer": _f("User", lambda _o, _a, ctx: ctx.data.github_login),
        "rateLimit": _f("RateLimit", lambda _o, _a, ctx: ctx),
        "search": _connection("SearchResultItemConnection", lambda _o, a, ctx: _search(a, ctx),
                              query="String!", type="SearchType!"),
        "repository": _f("Repository", lambda _o, a, ctx: _repository(a, ctx),
                         owner="String!", name="String!"),
        "node": _f("Node", lambda _o, a, ctx: _node(a, ctx), id="ID!"),
    }),
    AbstractType("Node", ("Commit",), lambda _pull: "Commit"),
    ObjectType("User", {"login": FieldDef("String", lambda login, _a, _c: login)}),
    ObjectType("Organization", {"login": FieldDef("String", lambda login, _a, _c: login)}),
    AbstractType("Actor", ("User",), lambda _login: "User",
                 {"login": FieldDef("String", lambda login, _a, _c: login)}),
    AbstractType("RepositoryOwner", ("Organization", "User"), lambda _login: "Organization",
                 {"login": FieldDef("String", lambda login, _a, _c: login)}),
    ObjectType("RateLimit", {
        "limit": _f("Int", lambda ctx, _a, _c: ctx.fake.rate["graphql"].limit),
        "cost": _f("Int", lambda ctx, _a, _c: ctx.cost),
        "remaining": _f("Int", lambda ctx, _a, _c: max(0, ctx.fake.rate["graphql"].remaining)),
        "used": _f("Int", lambda ctx, _a, _c: ctx.fake.rate["graphql"].used),
        "resetAt": _f("DateTime", lambda ctx, _a, _c: _iso(ctx.fake.rate["graphql"].reset)),
    }),
    ObjectType("SearchResultItemConnection", {
        "issueCount": _key("Int", "total"),
        "pageInfo": FieldDef("PageInfo", lambda page, _a, _c: page),
        "nodes": _key("[SearchResultItem]", "nodes"),
    }),
    AbstractType("SearchResultItem", ("PullRequest", "Organization", "User"),
                 lambda _pull: "PullRequest"),
    ObjectType("PageInfo", {
        "hasNextPage": _key("Boolean", "has_next"),
        "endCursor": _key("String", "end"),
    }),
    ObjectType("Repository", {
        "nameWithOwner": FieldDef("String", lambda repo, _a, _c: repo),
        "isArchived": FieldDef("Boolean", lambda _repo, _a, _c: False),
        "name": FieldDef("String", lambda repo, _a, _c: repo.split("/")[1]),
        "owner": FieldDef("RepositoryOwner", lambda repo, _a, _c: repo.split("/")[0]),
        "pullRequests": _connection("PullRequestConnection", _pull_requests,
                                    states="[PullRequestState!]", headRefName="String"),
    }),
    _connection_type("PullRequestConnection", "PullRequest"),
    ObjectType("PullRequest", {
        "number": _attr("Int", "number"),
        "title": _attr("String", "title"),
        "url": _f("URI", lambda p, _a, _c: f"https://github.com/{p.repo}/pull/{p.number}"),
        "isDraft": _attr("Boolean", "draft"),
        "state": _f("PullRequestState", lambda p, _a, _c: p.state.upper()),
        "createdAt": _f("DateTime", lambda p, _a, _c: _iso(p.created_at or p.updated_at)),
        "updatedAt": _f("DateTime", lambda p, _a, _c: _iso(p.updated_at)),
        "headRefName": _attr("String", "head_ref"),
        "baseRefName": _attr("String", "base_ref"),
        "reviewDecision": _attr("PullRequestReviewDecision", "review_decision"),
        "mergeable": _f("MergeableState", lambda _p, _a, _c: "MERGEABLE"),
        "mergeStateStatus": _f("MergeStateStatus", lambda p, _a, _c: (
            "BLOCKED" if p.review_decision != "APPROVED" else "CLEAN")),
        "author": _attr("Actor", "author"),
        "repository": _attr("Repository", "repo"),
        "reviewRequests": _connection("ReviewRequestConnection",
                                      lambda p, a, _c: _page(p.review_requested, a)),
        # Only the head commit is modelled; it is the one providers ask for (last: 1).
        "commits": _connection("PullRequestCommitConnection", lambda p, a, _c: _page([p], a)),
    }),
    _connection_type("ReviewRequestConnection", "ReviewRequest"),
    ObjectType("ReviewRequest", {
        "requestedReviewer": FieldDef("RequestedReviewer", lambda login, _a, _c: login),
    }),
    # Reviews are only ever requested from users here; Team exists so that the usual
    # `... on Team { name }` beside `... on User` is as valid as on GitHub.
    AbstractType("RequestedReviewer", ("User", "Team"), lambda _login: "User"),
    ObjectType("Team", {"name": FieldDef("String", lambda team, _a, _c: team),
                        "slug": FieldDef("String", lambda team, _a, _c: team)}),
    _connection_type("PullRequestCommitConnection", "PullRequestCommit"),
    ObjectType("PullRequestCommit", {"commit": FieldDef("Commit", lambda p, _a, _c: p)}),
    ObjectType("Commit", {
        "id": _f("ID", lambda p, _a, _c: f"C_{p.repo}#{p.number}"),
        "oid": _attr("GitObjectID", "head_sha"),
        "statusCheckRollup": _f("StatusCheckRollup", lambda p, _a, _c: p if p.checks else None),
    }),
    ObjectType("StatusCheckRollup", {
        "state": _f("StatusState", lambda p, _a, _c: _rollup_state(p.checks)),
        "contexts": _connection("StatusCheckRollupContextConnection", lambda p, a, _c: {
            **_page([(p, c) for c in p.checks], a), "all": p.checks}),
    }),
    ObjectType("StatusCheckRollupContextConnection", {
        "totalCount": _key("Int", "total"),
        "pageInfo": FieldDef("PageInfo", lambda page, _a, _c: page),
        "nodes": _key("[StatusCheckRollupContext]", "nodes"),
        "checkRunCountsByState": FieldDef(
            "[CheckRunStateCount]", lambda page, _a, _c: _counts(page["all"], "check_run")),
        "statusContextCountsByState": FieldDef(
            "[StatusContextStateCount]", lambda page, _a, _c: _counts(page["all"], "status")),
    }),
    ObjectType("CheckRunStateCount", {"state": _key("CheckRunState", "state"),
                                      "count": _key("Int", "count")}),
    ObjectType("StatusContextStateCount", {"state": _key("StatusState", "state"),
                                           "count": _key("Int", "count")}),
    AbstractType("StatusCheckRollupContext", ("CheckRun", "StatusContext"),
                 lambda item: "CheckRun" if item[1].kind == "check_run" else "StatusContext"),
    ObjectType("CheckRun", {
        "name": _f("String", lambda item, _a, _c: item[1].name),
        "status": _f("CheckStatusState", lambda item, _a, _c: item[1].status.upper()),
        "conclusion": _f("CheckConclusionState", lambda item, _a, _c: (
            item[1].conclusion.upper() if item[1].status == "completed" and item[1].conclusion
            else None
        )),
        "detailsUrl": _f("URI", lambda item, _a, _c: _check_url(*item)),
        "startedAt": _f("DateTime", lambda item, _a, _c: _iso(item[0].updated_at)),
    }),
    ObjectType("StatusContext", {
        "context": _f("String", lambda item, _a, _c: item[1].name),
        "state": _f("StatusState", lambda item, _a, _c: (item[1].conclusion or "pending").upper()),
        "targetUrl": _f("URI", lambda item, _a, _c: _check_url(*item)),
        "createdAt": _f("DateTime", lambda item, _a, _c: _iso(item[0].updated_at)),
    }),
]


def _check_url(pull: PullRequest, check: Check) -> str:
    number = stable_id(f"{pull.repo}#{pull.number}/{check.name}")
    if check.kind == "check_run":
        return f"https://github.com/{pull.repo}/runs/{number}"
    return f"https://ci.example/{pull.repo}/builds/{number}"


SCHEMA = graphql.Schema(
    types={t.name: t for t in _TYPES},
    enums={
        "SearchType": frozenset({"ISSUE", "REPOSITORY", "USER", "DISCUSSION"}),
        "PullRequestState": frozenset({"OPEN", "CLOSED", "MERGED"}),
        "MergeableState": frozenset({"MERGEABLE", "CONFLICTING", "UNKNOWN"}),
        "MergeStateStatus": frozenset({"BEHIND", "BLOCKED", "CLEAN", "DIRTY", "DRAFT",
                                       "HAS_HOOKS", "UNKNOWN", "UNSTABLE"}),
    },
)
