"""What the fake GitHub's GraphQL fields answer: resolvers over the dataset, GitHub's paging of
connections, and the errors GitHub gives for a field (`type` and, for some, `extensions`).

github_graphql.py binds these to the schema (github_schema.graphql) and runs requests.
"""

from __future__ import annotations

import base64
import binascii
import collections
import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLResolveInfo,
    GraphQLSchema,
)
from graphql.language import FieldNode, FragmentSpreadNode, InlineFragmentNode

from projctld.sandbox import fake_graphql, github_search
from projctld.sandbox.dataset import Check, Dataset, PullRequest, Review, stable_id
from projctld.sandbox.fakehttp import RateLimit

PAGE_LIMIT = 100  # first and last must be within 1-100
SAML_MESSAGE = ("Resource protected by organization SAML enforcement. You must grant your "
                "Personal Access token access to this organization.")
# Search types that find issues and pull requests; the others (repositories, users,
# discussions) are not modelled and find nothing.
ISSUE_SEARCHES = {"ISSUE", "ISSUE_ADVANCED", "ISSUE_HYBRID", "ISSUE_SEMANTIC"}
FAILING_RUNS = {"FAILURE", "TIMED_OUT", "CANCELLED", "ACTION_REQUIRED", "STARTUP_FAILURE"}
CHECK_RUN_STATES = ["ACTION_REQUIRED", "CANCELLED", "COMPLETED", "FAILURE", "IN_PROGRESS",
                    "NEUTRAL", "PENDING", "QUEUED", "SKIPPED", "STALE", "STARTUP_FAILURE",
                    "SUCCESS", "TIMED_OUT", "WAITING"]
STATUS_STATES = ["ERROR", "EXPECTED", "FAILURE", "PENDING", "SUCCESS"]


class GitHubError(Exception):
    """A field error as GitHub reports it: a `type`, a message and, for some, `extensions`."""

    def __init__(self, kind: str, message: str, extensions: dict[str, Any] | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.extensions = extensions


# -- what resolvers hand each other (the dataset's own objects where it has one)


@dataclass(slots=True)
class Account:
    login: str
    kind: str  # User, Organization or Bot


@dataclass(slots=True)
class Repo:
    name: str  # "owner/name", as the dataset spells it


@dataclass(slots=True)
class HeadCommit:
    """The head commit of a pull request: the only commit the dataset models."""

    pull: PullRequest


@dataclass(slots=True)
class PullCommit:
    pull: PullRequest


@dataclass(slots=True)
class Rollup:
    pull: PullRequest


@dataclass(slots=True)
class RollupItem:
    pull: PullRequest
    index: int
    check: Check


@dataclass(slots=True)
class ReviewOf:
    pull: PullRequest
    index: int
    review: Review


@dataclass(slots=True)
class RequestOf:
    pull: PullRequest
    login: str


@dataclass
class Request:
    """One GraphQL request being run: what its resolvers need besides their parent object."""

    data: Dataset
    rate: RateLimit
    cost: int
    nodes: int
    saml_orgs: list[str] = field(default_factory=list)  # that refused something, in order

    @functools.cached_property
    def orgs(self) -> set[str]:
        return {repo.split("/")[0].lower() for repo in self.data.github_repos}

    def account(self, login: str) -> Account:
        if login.lower() in self.orgs:
            return Account(login, "Organization")
        return Account(login, "Bot" if login.endswith("[bot]") else "User")

    def refuse_saml(self, repo: str) -> GitHubError | None:
        """The FORBIDDEN error for a repository of an organisation whose SAML the token lacks."""
        org = repo.split("/")[0]
        if org.lower() not in {o.lower() for o in self.data.saml_orgs}:
            return None
        if org not in self.saml_orgs:
            self.saml_orgs.append(org)
        return GitHubError("FORBIDDEN", SAML_MESSAGE, {"saml_failure": True})


def sso_header(org: str) -> str:
    """X-GitHub-SSO of an organisation's SAML challenge (docs: authenticating to the REST API)."""
    request = base64.urlsafe_b64encode(hashlib.sha1(org.encode()).digest()).decode().rstrip("=")
    return f"required; url=https://github.com/orgs/{org}/sso?authorization_request={request}"


# -- connections


def connection(items: list[Any], info: GraphQLResolveInfo, args: dict[str, Any],
               show: Callable[[Any], Any] | None = None, **extra: Any) -> dict[str, Any]:
    """One page of a connection, paged as GitHub pages it; `show` turns each returned item into
    what is answered (an error, for one the token may not see)."""
    start, end = _window(len(items), info, args)
    page = items[start:end] if show is None else [show(item) for item in items[start:end]]
    return {
        "totalCount": len(items),
        "nodes": page,
        "edges": [{"cursor": _cursor(start + i), "node": item} for i, item in enumerate(page)],
        "pageInfo": {
            "startCursor": _cursor(start) if page else None,
            "endCursor": _cursor(end - 1) if page else None,
            "hasNextPage": end < len(items),
            "hasPreviousPage": start > 0,
        },
        **extra,
    }


def _window(total: int, info: GraphQLResolveInfo, args: dict[str, Any]) -> tuple[int, int]:
    name = info.field_name
    first, last = args.get("first"), args.get("last")
    for argument, size in (("first", first), ("last", last)):
        if size is not None and size > PAGE_LIMIT:
            raise GitHubError("EXCESSIVE_PAGINATION",
                              f"Requesting {size} records on the `{name}` connection exceeds the "
                              f"`{argument}` limit of {PAGE_LIMIT} records.")
        if size is not None and size < 0:  # the fake's words: GitHub's are not on record
            raise GitHubError("EXCESSIVE_PAGINATION",
                              f"`{argument}` on the `{name}` connection cannot be negative.")
    if first is None and last is None and _selected(info) & {"nodes", "edges"}:
        raise GitHubError("MISSING_PAGINATION_BOUNDARIES",
                          f"You must provide a `first` or `last` value to properly paginate the "
                          f"`{name}` connection.")
    start, end = 0, total
    if args.get("after") is not None:
        start = min(total, _position(args["after"]))
    if args.get("before") is not None:
        end = max(start, min(end, _position(args["before"]) - 1))
    if first is not None:
        end = min(end, start + first)
    if last is not None:
        start = max(start, end - last)
    return start, end


def _cursor(index: int) -> str:
    """GitHub's cursors are opaque; its search ones read "cursor:N" for the N-th item."""
    return base64.b64encode(f"cursor:{index + 1}".encode()).decode()


def _position(cursor: str) -> int:
    try:
        text = base64.b64decode(cursor, validate=True).decode()
        position = int(text.removeprefix("cursor:")) if text.startswith("cursor:") else -1
    except (ValueError, binascii.Error):
        position = -1
    if position < 0:
        raise GitHubError("INVALID_CURSOR_ARGUMENTS",
                          f"`{cursor}` does not appear to be a valid cursor.")
    return position


def _selected(info: GraphQLResolveInfo) -> set[str]:
    """The names of the fields selected on this field's value, through fragments."""
    names: set[str] = set()
    stack = [node.selection_set for node in info.field_nodes if node.selection_set]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FieldNode):
                names.add(selection.name.value)
            elif isinstance(selection, InlineFragmentNode):
                stack.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = info.fragments.get(selection.name.value)
                if fragment is not None:
                    stack.append(fragment.selection_set)
    return names


# -- resolvers


def _state(info: GraphQLResolveInfo) -> Request:
    return info.context


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _id(prefix: str, key: str) -> str:
    """A global node id: a type prefix as GitHub's have, and the key to find the object by."""
    return f"{prefix}_{base64.urlsafe_b64encode(key.encode()).decode().rstrip('=')}"


def _key(node_id: str) -> tuple[str, str] | None:
    prefix, _, encoded = node_id.partition("_")
    try:
        return prefix, base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, binascii.Error):
        return None


def _repo_name(data: Dataset, name: str) -> str | None:
    """The repository as the dataset spells it: GitHub ignores case in names."""
    lowered = name.lower()
    return next((repo for repo in data.github_repos if repo.lower() == lowered), None)


def _viewer(_root: None, info: GraphQLResolveInfo) -> Account:
    return Account(_state(info).data.github_login, "User")


def _rate_limit(_root: None, info: GraphQLResolveInfo, **_args: Any) -> dict[str, Any]:
    state = _state(info)
    return {"cost": state.cost, "limit": state.rate.limit, "nodeCount": state.nodes,
            "remaining": max(0, state.rate.remaining), "resetAt": _iso(state.rate.reset),
            "used": state.rate.used}


def _repository(_root: None, info: GraphQLResolveInfo, owner: str, name: str,
                followRenames: bool = True) -> Repo:  # GitHub's argument name
    state = _state(info)
    asked = f"{owner}/{name}"
    repo = _repo_name(state.data, asked)
    if repo is None and followRenames:
        moved = next((new for old, new in state.data.renamed.items()
                      if old.lower() == asked.lower()), None)
        repo = moved and _repo_name(state.data, moved)
    if repo is None:
        raise GitHubError("NOT_FOUND", f"Could not resolve to a Repository with the name "
                                       f"'{asked}'.")
    refused = state.refuse_saml(repo)
    if refused is not None:
        raise refused
    return Repo(repo)


def _search(_root: None, info: GraphQLResolveInfo, query: str, type: str,
            **args: Any) -> dict[str, Any]:
    state = _state(info)
    found: list[PullRequest] = []
    if type in ISSUE_SEARCHES:
        try:
            found = github_search.search_pulls(state.data, query)
        except github_search.SearchRefused as exc:
            raise GitHubError("INVALID", str(exc)) from None

    def show(pull: PullRequest) -> Any:
        return state.refuse_saml(pull.repo) or pull

    return connection(found[:github_search.RESULT_LIMIT], info, args, show,
                       issueCount=len(found), codeCount=0, discussionCount=0,
                       repositoryCount=0, userCount=0, wikiCount=0)


def _node(_root: None, info: GraphQLResolveInfo, id: str) -> Any:
    state = _state(info)
    found, repo = _find(state, id)
    if found is None:
        raise GitHubError("NOT_FOUND", f"Could not resolve to a node with the global id of "
                                       f"'{id}'")
    refused = state.refuse_saml(repo) if repo else None
    if refused is not None:
        raise refused
    return found


def _find(state: Request, node_id: str) -> tuple[Any, str | None]:
    """The object a node id names and its repository, or (None, None)."""
    decoded = _key(node_id)
    if decoded is None:
        return None, None
    prefix, key = decoded
    data = state.data
    if prefix in ("U", "O", "BOT"):
        known = {data.github_login, *data.names, *(r.split("/")[0] for r in data.github_repos)}
        account = state.account(key)
        kinds = {"U": "User", "O": "Organization", "BOT": "Bot"}
        return (account, None) if key in known and account.kind == kinds[prefix] else (None, None)
    if prefix == "R":
        repo = _repo_name(data, key)
        return (Repo(repo), repo) if repo and repo == key else (None, None)
    repo, _, rest = key.partition("#" if prefix in ("PR", "PURC", "PRR", "RR") else "@")
    pulls = data.pulls.get(repo, [])
    if prefix in ("C", "SCR", "CR", "SC"):
        sha, _, index = rest.partition("/")
        pull = next((p for p in pulls if p.head_sha == sha), None)
        if pull is None:
            return None, None
        if prefix in ("C", "SCR"):
            return (HeadCommit(pull) if prefix == "C" else Rollup(pull)), repo
        position = int(index) if index.isdigit() else len(pull.checks)
        if position >= len(pull.checks):
            return None, None
        check = pull.checks[position]
        wanted = "check_run" if prefix == "CR" else "status"
        return (RollupItem(pull, position, check), repo) if check.kind == wanted else (None, None)
    number, _, tail = rest.partition("/" if prefix in ("PRR", "RR") else "@")
    pull = next((p for p in pulls if str(p.number) == number), None)
    if pull is None:
        return None, None
    if prefix == "PR" and not tail:
        return pull, repo
    if prefix == "PURC" and tail == pull.head_sha:
        return PullCommit(pull), repo
    if prefix == "PRR" and tail.isdigit() and int(tail) < len(pull.reviews):
        return ReviewOf(pull, int(tail), pull.reviews[int(tail)]), repo
    if prefix == "RR" and tail in pull.review_requested:
        return RequestOf(pull, tail), repo
    return None, None


def _account_fields(prefix: str) -> dict[str, Callable[..., Any]]:
    def path(account: Account) -> str:
        if account.kind == "Bot":
            return f"/apps/{account.login.removesuffix('[bot]')}"
        return f"/{account.login}"

    return {
        "avatarUrl": lambda a, _i, size=None: (
            f"https://avatars.githubusercontent.com/u/{stable_id(a.login)}?v=4"
            + (f"&s={size}" if size else "")),
        "id": lambda a, _i: _id(prefix, a.login),
        # A bot's login has no "[bot]" in GraphQL (REST says dependabot[bot]).
        "login": lambda a, _i: a.login.removesuffix("[bot]"),
        "name": lambda a, i: (_state(i).data.display_name if a.login == _state(i).data.github_login
                              else _state(i).data.names.get(a.login)),
        "resourcePath": lambda a, _i: path(a),
        "url": lambda a, _i: "https://github.com" + path(a),
    }


def _pull_requests(repo: Repo, info: GraphQLResolveInfo, states: list[str] | None = None,
                   headRefName: str | None = None,  # GitHub's argument names
                   baseRefName: str | None = None, labels: list[str] | None = None,
                   orderBy: dict[str, str] | None = None, **args: Any) -> dict[str, Any]:
    pulls = [
        p for p in _state(info).data.pulls.get(repo.name, [])
        if (states is None or p.state.upper() in states)
        and (headRefName is None or p.head_ref == headRefName)
        and (baseRefName is None or p.base_ref == baseRefName)
        and not labels  # the dataset's pull requests carry no labels
    ]
    order = (orderBy or {}).get("field")
    key = {"UPDATED_AT": lambda p: p.updated_at,
           "CREATED_AT": lambda p: p.created_at or p.updated_at}.get(order or "", lambda p: 0)
    pulls.sort(key=lambda p: (key(p), p.number), reverse=(orderBy or {}).get("direction") == "DESC")
    return connection(pulls, info, args)


def _url(pull: PullRequest) -> str:
    return f"https://github.com/{pull.repo}/pull/{pull.number}"


def _reviews(pull: PullRequest, info: GraphQLResolveInfo, author: str | None = None,
             states: list[str] | None = None, **args: Any) -> dict[str, Any]:
    found = [ReviewOf(pull, i, r) for i, r in enumerate(pull.reviews)
             if (author is None or r.author.lower() == author.lower())
             and (states is None or r.state in states)]
    return connection(found, info, args)


def _latest_reviews(states: set[str] | None) -> Callable[..., dict[str, Any]]:
    """The latest review of each reviewer: submitted ones, or only approvals and change
    requests (latestOpinionatedReviews)."""

    def resolve(pull: PullRequest, info: GraphQLResolveInfo, writersOnly: bool = False,
                **args: Any) -> dict[str, Any]:
        latest: dict[str, ReviewOf] = {}
        for index, review in enumerate(pull.reviews):
            if review.state != "PENDING" and (states is None or review.state in states):
                latest[review.author] = ReviewOf(pull, index, review)
        return connection(sorted(latest.values(), key=lambda r: r.index), info, args)

    return resolve


def _rollup_state(checks: list[Check]) -> str:
    states = [_run_state(c) if c.kind == "check_run" else _status_state(c) for c in checks]
    if any(s in FAILING_RUNS or s == "ERROR" for s in states):
        return "FAILURE"
    if any(s in ("PENDING", "QUEUED", "IN_PROGRESS", "WAITING", "EXPECTED") for s in states):
        return "PENDING"
    return "SUCCESS"


def _run_state(check: Check) -> str:
    """A check run's CheckRunState: its conclusion once completed, else its status."""
    if check.status == "completed":
        return (check.conclusion or "completed").upper()
    return check.status.upper()


def _status_state(check: Check) -> str:
    return (check.conclusion or "pending").upper()


def _contexts(rollup: Rollup, info: GraphQLResolveInfo, **args: Any) -> dict[str, Any]:
    pull = rollup.pull
    runs = collections.Counter(_run_state(c) for c in pull.checks if c.kind == "check_run")
    statuses = collections.Counter(_status_state(c) for c in pull.checks if c.kind == "status")
    # Only the states that occur: what GitHub's answers seen in the field list.
    return connection(
        [RollupItem(pull, i, c) for i, c in enumerate(pull.checks)], info, args,
        checkRunCount=runs.total(), statusContextCount=statuses.total(),
        checkRunCountsByState=[{"state": s, "count": runs[s]} for s in CHECK_RUN_STATES
                               if runs[s]],
        statusContextCountsByState=[{"state": s, "count": statuses[s]} for s in STATUS_STATES
                                    if statuses[s]],
    )


def _check_number(context: RollupItem) -> int:
    return stable_id(f"{context.pull.repo}#{context.pull.number}/{context.check.name}")


def _context_id(prefix: str) -> Callable[[RollupItem, GraphQLResolveInfo], str]:
    return lambda c, _i: _id(prefix, f"{c.pull.repo}@{c.pull.head_sha}/{c.index}")


_RESOLVERS: dict[str, dict[str, Callable[..., Any]]] = {
    "Query": {"viewer": _viewer, "rateLimit": _rate_limit, "repository": _repository,
              "search": _search, "node": _node},
    "User": _account_fields("U"),
    "Organization": _account_fields("O"),
    "Bot": {k: v for k, v in _account_fields("BOT").items() if k != "name"},
    "Repository": {
        "id": lambda r, _i: _id("R", r.name),
        "isArchived": lambda r, i: r.name in _state(i).data.archived,
        "isPrivate": lambda r, _i: False,
        "name": lambda r, _i: r.name.split("/")[1],
        "nameWithOwner": lambda r, _i: r.name,
        "owner": lambda r, i: _state(i).account(r.name.split("/")[0]),
        "pullRequests": _pull_requests,
        "resourcePath": lambda r, _i: f"/{r.name}",
        "url": lambda r, _i: f"https://github.com/{r.name}",
    },
    "PullRequest": {
        "assignees": lambda p, i, **a: connection(
            [_state(i).account(login) for login in p.assignees], i, a),
        "author": lambda p, i: _state(i).account(p.author),
        "baseRefName": lambda p, _i: p.base_ref,
        "closed": lambda p, _i: p.state != "open",
        "commits": lambda p, i, **a: connection([PullCommit(p)], i, a),
        "createdAt": lambda p, _i: _iso(p.created_at or p.updated_at),
        "headRefName": lambda p, _i: p.head_ref,
        "headRefOid": lambda p, _i: p.head_sha,
        "id": lambda p, _i: _id("PR", f"{p.repo}#{p.number}"),
        "isDraft": lambda p, _i: p.draft,
        "latestOpinionatedReviews": _latest_reviews({"APPROVED", "CHANGES_REQUESTED"}),
        "latestReviews": _latest_reviews(None),
        "mergeStateStatus": lambda p, _i: p.merge_state_status,
        "mergeable": lambda p, _i: p.mergeable,
        "merged": lambda p, _i: p.state == "merged",
        "number": lambda p, _i: p.number,
        "repository": lambda p, _i: Repo(p.repo),
        "resourcePath": lambda p, _i: f"/{p.repo}/pull/{p.number}",
        "reviewDecision": lambda p, _i: p.review_decision,
        "reviewRequests": lambda p, i, **a: connection(
            [RequestOf(p, login) for login in p.review_requested], i, a),
        "reviews": _reviews,
        "state": lambda p, _i: p.state.upper(),
        "statusCheckRollup": lambda p, _i: Rollup(p) if p.checks else None,
        "title": lambda p, _i: p.title,
        "updatedAt": lambda p, _i: _iso(p.updated_at),
        "url": lambda p, _i: _url(p),
    },
    "PullRequestCommit": {
        "commit": lambda c, _i: HeadCommit(c.pull),
        "id": lambda c, _i: _id("PURC", f"{c.pull.repo}#{c.pull.number}@{c.pull.head_sha}"),
        "pullRequest": lambda c, _i: c.pull,
        "resourcePath": lambda c, _i: f"/{c.pull.repo}/pull/{c.pull.number}/commits/"
                                      f"{c.pull.head_sha}",
        "url": lambda c, _i: f"{_url(c.pull)}/commits/{c.pull.head_sha}",
    },
    "PullRequestReview": {
        "author": lambda r, i: _state(i).account(r.review.author),
        "createdAt": lambda r, _i: _iso(r.review.submitted_at or r.pull.updated_at),
        "id": lambda r, _i: _id("PRR", f"{r.pull.repo}#{r.pull.number}/{r.index}"),
        "pullRequest": lambda r, _i: r.pull,
        "state": lambda r, _i: r.review.state,
        "submittedAt": lambda r, _i: _iso(r.review.submitted_at) if r.review.submitted_at
        else None,
        "url": lambda r, _i: f"{_url(r.pull)}#pullrequestreview-"
                             f"{stable_id(f'{r.pull.repo}#{r.pull.number}/{r.index}')}",
    },
    "ReviewRequest": {
        "asCodeOwner": lambda r, _i: False,
        "id": lambda r, _i: _id("RR", f"{r.pull.repo}#{r.pull.number}/{r.login}"),
        "pullRequest": lambda r, _i: r.pull,
        "requestedReviewer": lambda r, i: _state(i).account(r.login),
    },
    "Commit": {
        "id": lambda c, _i: _id("C", f"{c.pull.repo}@{c.pull.head_sha}"),
        "oid": lambda c, _i: c.pull.head_sha,
        "resourcePath": lambda c, _i: f"/{c.pull.repo}/commit/{c.pull.head_sha}",
        "statusCheckRollup": lambda c, _i: Rollup(c.pull) if c.pull.checks else None,
        "url": lambda c, _i: f"https://github.com/{c.pull.repo}/commit/{c.pull.head_sha}",
    },
    "StatusCheckRollup": {
        "commit": lambda r, _i: HeadCommit(r.pull),
        "contexts": _contexts,
        "id": lambda r, _i: _id("SCR", f"{r.pull.repo}@{r.pull.head_sha}"),
        "state": lambda r, _i: _rollup_state(r.pull.checks),
    },
    "CheckRun": {
        "completedAt": lambda c, _i: _iso(c.pull.updated_at)
        if c.check.status == "completed" else None,
        "conclusion": lambda c, _i: (c.check.conclusion or "").upper() or None
        if c.check.status == "completed" else None,
        "databaseId": lambda c, _i: _check_number(c),
        "detailsUrl": lambda c, _i: f"https://github.com/{c.pull.repo}/runs/{_check_number(c)}",
        "id": _context_id("CR"),
        "name": lambda c, _i: c.check.name,
        "permalink": lambda c, _i: f"https://github.com/{c.pull.repo}/runs/{_check_number(c)}",
        "resourcePath": lambda c, _i: f"/{c.pull.repo}/runs/{_check_number(c)}",
        "startedAt": lambda c, _i: None if c.check.status == "queued"
        else _iso(c.pull.updated_at - 300),
        "status": lambda c, _i: c.check.status.upper(),
        "url": lambda c, _i: f"https://github.com/{c.pull.repo}/runs/{_check_number(c)}",
    },
    "StatusContext": {
        "commit": lambda c, _i: HeadCommit(c.pull),
        "context": lambda c, _i: c.check.name,
        "createdAt": lambda c, _i: _iso(c.pull.updated_at),
        "description": lambda c, _i: None,
        "id": _context_id("SC"),
        "state": lambda c, _i: _status_state(c.check),
        "targetUrl": lambda c, _i: f"https://ci.example/{c.pull.repo}/builds/"
                                   f"{_check_number(c)}",
    },
}
# Types whose values are plain dicts (connections, pages, counts) use graphql-core's default
# resolver. Team has no resolvers: reviews are never requested from teams here, and the type is
# in the schema so that the usual `... on Team { slug }` beside `... on User` is valid.
_PLAIN = {"RateLimit", "PageInfo", "CheckRunStateCount", "StatusContextStateCount", "Team"}
_TYPES: dict[type, str] = {
    PullRequest: "PullRequest", Repo: "Repository", HeadCommit: "Commit",
    PullCommit: "PullRequestCommit", Rollup: "StatusCheckRollup", ReviewOf: "PullRequestReview",
    RequestOf: "ReviewRequest",
}


def _type_of(value: Any, _info: GraphQLResolveInfo, _abstract: Any) -> str:
    if isinstance(value, Account):
        return value.kind
    if isinstance(value, RollupItem):
        return "CheckRun" if value.check.kind == "check_run" else "StatusContext"
    return _TYPES[type(value)]


def bind(schema: GraphQLSchema) -> None:
    """Give the schema its resolvers, and refuse to start if a field was left without one."""
    fake_graphql.bind(schema, _RESOLVERS, _PLAIN, _type_of, "github_schema.graphql")
