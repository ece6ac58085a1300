"""What the fake GitLab's GraphQL fields answer: resolvers over the dataset, GitLab's keyset
paging of merge request lists, and the errors GitLab gives for a field.

gitlab_graphql.py binds these to the schema (gitlab_schema.graphql) and runs requests.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from graphql import GraphQLResolveInfo, GraphQLSchema

from projctld.sandbox import fake_graphql
from projctld.sandbox.dataset import Dataset, MergeRequest, Pipeline, stable_id

# GitlabSchema.default_max_page_size: a connection answers at most this many nodes, whatever
# `first` asks (docs.gitlab.com/api/graphql/#limits: "Maximum page size: 100 records").
MAX_PAGE_SIZE = 100
# Gitlab::Graphql::Errors::ResourceNotAvailable, the error GitLab gives a field it will not
# resolve for this user.
NOT_AVAILABLE = ("The resource that you are attempting to access does not exist or you don't "
                 "have permission to perform this action")
# Gitlab::Graphql::Pagination::Keyset::Connection, for an `after`/`before` it cannot read.
BAD_CURSOR = "Please provide a valid cursor"
REVIEWED = ("reviewed", "requested_changes", "approved")
Tier = Literal["free", "premium"]


class GitLabFieldError(Exception):
    """A field GitLab will not resolve: null, and an error with its path beside the data."""


@dataclass
class Request:
    """One GraphQL request being run: what its resolvers need besides their parent object."""

    data: Dataset
    user: str | None  # None: no token was sent, GitLab answers as to an anonymous visitor
    tier: Tier
    web: str  # the instance's web address, as its URLs show it
    # (project, iid, field name) -> the message of an error GitLab gives for that field.
    field_errors: dict[tuple[str, int, str], str] = field(default_factory=dict)


@dataclass(slots=True)
class Me:
    username: str


@dataclass(slots=True)
class Person:
    username: str


@dataclass(slots=True)
class Review:
    mr: MergeRequest
    username: str


def _state(info: GraphQLResolveInfo) -> Request:
    return info.context


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _created(mr: MergeRequest) -> float:
    return mr.created_at or mr.updated_at


def _gid(kind: str, number: int) -> str:
    return f"gid://gitlab/{kind}/{number}"


def user_id(username: str) -> int:
    return stable_id(username) % 10_000_000


def project_id(path: str) -> int:
    return stable_id(path) % 100_000_000


def detailed_merge_status(mr: MergeRequest, tier: Tier) -> str:
    """On Free, approvals are optional: no approval rule holds a merge request back."""
    if tier == "free" and mr.detailed_merge_status == "not_approved":
        return "mergeable"
    return mr.detailed_merge_status


def merge_status(detailed: str, conflicts: bool) -> str:
    """The older merge status, which speaks only of conflicts and checking."""
    if detailed in ("checking", "unchecked", "preparing"):
        return "checking"
    return "cannot_be_merged" if conflicts or detailed == "conflict" else "can_be_merged"


# -- merge request lists: keyset paging (Gitlab::Graphql::Pagination::Keyset::Connection)

# MergeRequestSort: the column each value orders by, and whether it descends. The lower-case
# values are the names deprecated in GitLab 13.5; `created_desc` is still the default.
_SORTS = {
    "CREATED_ASC": ("created_at", False), "CREATED_DESC": ("created_at", True),
    "TITLE_ASC": ("title", False), "TITLE_DESC": ("title", True),
    "UPDATED_ASC": ("updated_at", False), "UPDATED_DESC": ("updated_at", True),
    "created_asc": ("created_at", False), "created_desc": ("created_at", True),
    "updated_asc": ("updated_at", False), "updated_desc": ("updated_at", True),
}


def _column(mr: MergeRequest, column: str) -> str:
    if column == "title":
        return mr.title
    moment = _created(mr) if column == "created_at" else mr.updated_at
    # As GitLab's cursors carry a timestamp: to the microsecond, in UTC.
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment)) + \
        f".{int(moment % 1 * 1_000_000):06d}000 +0000"


def _cursor(mr: MergeRequest, column: str) -> str:
    return base64.b64encode(json.dumps({column: _column(mr, column), "id": str(mr.id)},
                                       separators=(",", ":")).encode()).decode()


def _position(cursor: str, column: str) -> tuple[str, int]:
    try:
        decoded = json.loads(base64.b64decode(cursor, validate=True))
        return str(decoded[column]), int(decoded["id"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise GitLabFieldError(BAD_CURSOR) from None


def merge_request_list(wanted: Callable[[MergeRequest, Any], bool]) -> Callable[..., Any]:
    """A merge request list: those `wanted` for the parent (CurrentUser's lists: the user's;
    Project.mergeRequests: the project's), in the order asked, one keyset page of it."""

    def resolve(parent: Any, info: GraphQLResolveInfo, state: str | None = None,
                sort: str = "created_desc", draft: bool | None = None,
                first: int | None = None, last: int | None = None,
                after: str | None = None, before: str | None = None) -> dict[str, Any]:
        data = _state(info).data
        found = [mr for path in data.gitlab_projects for mr in data.merge_requests.get(path, [])
                 if wanted(mr, parent)
                 and (state in (None, "all") or mr.state == state)
                 and (draft is None or mr.draft == draft)]
        column, descending = _SORTS[sort]
        found.sort(key=lambda mr: (_column(mr, column), mr.id), reverse=descending)

        def key(mr: MergeRequest) -> tuple[str, int]:
            return _column(mr, column), mr.id

        # The list is ordered: what comes after a cursor is a tail of it, what comes before
        # a head.
        start, end = 0, len(found)
        if after is not None:
            bound = _position(after, column)
            start = next((i for i, mr in enumerate(found)
                          if (key(mr) < bound if descending else key(mr) > bound)), end)
        if before is not None:
            bound = _position(before, column)
            end = next((i for i, mr in enumerate(found)
                        if not (key(mr) > bound if descending else key(mr) < bound)), end)
            end = max(start, end)
        size = min(max(0, first), MAX_PAGE_SIZE) if first is not None else None
        if size is None and last is None:
            size = MAX_PAGE_SIZE
        window = found[start:end]
        if size is not None:
            page = window[:size]
            more, fewer = len(window) > size, start > 0
        else:
            keep = min(max(0, last or 0), MAX_PAGE_SIZE)
            page = window[len(window) - keep:] if keep else []
            more, fewer = end < len(found), len(window) > keep
        return {
            "count": len(found),
            "nodes": page,
            "edges": [{"cursor": _cursor(mr, column), "node": mr} for mr in page],
            "pageInfo": {
                "startCursor": _cursor(page[0], column) if page else None,
                "endCursor": _cursor(page[-1], column) if page else None,
                "hasNextPage": more,
                "hasPreviousPage": fewer,
            },
        }

    return resolve


def _people(items: list[Any]) -> dict[str, Any]:
    """A small connection (approvers, reviewers): every node on one page."""
    page = items[:MAX_PAGE_SIZE]
    return {"count": len(items), "nodes": page,
            "edges": [{"cursor": base64.b64encode(f'{{"id":"{i}"}}'.encode()).decode(),
                       "node": item} for i, item in enumerate(page)],
            "pageInfo": {"startCursor": None, "endCursor": None,
                         "hasNextPage": len(items) > len(page), "hasPreviousPage": False}}


# -- merge request fields


def _checked(name: str, resolve: Callable[..., Any]) -> Callable[..., Any]:
    """A merge request field that answers the error a test set for it, if any."""

    def field_resolver(mr: MergeRequest, info: GraphQLResolveInfo, **args: Any) -> Any:
        message = _state(info).field_errors.get((mr.project, mr.iid, name))
        if message is not None:
            raise GitLabFieldError(message)
        return resolve(mr, info, **args)

    return field_resolver


def _approvals_required(mr: MergeRequest, info: GraphQLResolveInfo) -> int | None:
    state = _state(info)
    return None if state.tier == "free" else state.data.gitlab_approvals_required.get(
        mr.project, 0)


def _approvals_left(mr: MergeRequest, info: GraphQLResolveInfo) -> int | None:
    required = _approvals_required(mr, info)
    return None if required is None else max(0, required - len(mr.approved_by))


def _approved(mr: MergeRequest, info: GraphQLResolveInfo) -> bool:
    """Premium: no approval rule wants an approval any more ("true if no required approvals
    are configured"); Free: somebody approved, as the approvals endpoint says on Free."""
    left = _approvals_left(mr, info)
    return bool(mr.approved_by) if left is None else left == 0


def _detailed(mr: MergeRequest, info: GraphQLResolveInfo) -> str:
    return detailed_merge_status(mr, _state(info).tier)


def _merge_status(mr: MergeRequest, info: GraphQLResolveInfo) -> str:
    return merge_status(_detailed(mr, info), mr.has_conflicts)


def _web(info: GraphQLResolveInfo, path: str) -> str:
    return f"{_state(info).web}/{path}"


_MERGE_REQUEST: dict[str, Callable[..., Any]] = {
    "approvalsLeft": _approvals_left,
    "approvalsRequired": _approvals_required,
    "approved": _approved,
    "approvedBy": lambda mr, _i, **_a: _people([Person(u) for u in mr.approved_by]),
    "author": lambda mr, _i: Person(mr.author),
    # `cannot_be_merged?`: the merge status says so (merge_request_type.rb).
    "conflicts": lambda mr, i: _merge_status(mr, i) == "cannot_be_merged",
    "createdAt": lambda mr, _i: _iso(_created(mr)),
    "detailedMergeStatus": lambda mr, i: _detailed(mr, i).upper(),
    "draft": lambda mr, _i: mr.draft,
    "headPipeline": lambda mr, _i: mr.head_pipeline,
    "id": lambda mr, _i: _gid("MergeRequest", mr.id),
    "iid": lambda mr, _i: str(mr.iid),
    "mergeStatusEnum": lambda mr, i: _merge_status(mr, i).upper(),
    "project": lambda mr, _i: mr.project,
    "projectId": lambda mr, _i: project_id(mr.project),
    "reference": lambda mr, _i, full=False: f"{mr.project}!{mr.iid}" if full else f"!{mr.iid}",
    "reviewers": lambda mr, _i, **_a: _people([Review(mr, u) for u in mr.reviewers]),
    "sourceBranch": lambda mr, _i: mr.source_branch,
    "diffHeadSha": lambda mr, _i: mr.sha,
    "state": lambda mr, _i: mr.state,
    "targetBranch": lambda mr, _i: mr.target_branch,
    "title": lambda mr, _i: mr.title,
    "updatedAt": lambda mr, _i: _iso(mr.updated_at),
    "webUrl": lambda mr, i: _web(i, f"{mr.project}/-/merge_requests/{mr.iid}"),
}


def _person(kind: Callable[[Any], str]) -> dict[str, Callable[..., Any]]:
    return {
        "id": lambda p, _i: _gid("User", user_id(kind(p))),
        "name": lambda p, i: _state(i).data.name_of(kind(p)),
        "username": lambda p, _i: kind(p),
        "webUrl": lambda p, i: _web(i, kind(p)),
    }


def _project(_root: Any, info: GraphQLResolveInfo, fullPath: str) -> str | None:
    """Query.project: the project at that full path (any case), or null, with no error, for a
    path GitLab does not know or the user may not read (ProjectsFinder finds nothing)."""
    state = _state(info)
    if state.user is None:
        return None
    return next((path for path in state.data.gitlab_projects
                 if path.lower() == fullPath.lower()), None)


def _review_state(review: Review) -> str:
    return review.mr.reviewer_states.get(review.username, "unreviewed")


def _finished(pipeline: Pipeline) -> bool:
    return pipeline.status in ("success", "failed", "canceled", "skipped")


_RESOLVERS: dict[str, dict[str, Callable[..., Any]]] = {
    "Query": {"currentUser": lambda _r, i: Me(_state(i).user) if _state(i).user else None,
              "project": _project},
    "CurrentUser": {
        **{name: resolve for name, resolve in _person(lambda me: me.username).items()},
        "authoredMergeRequests": merge_request_list(lambda mr, me: mr.author == me.username),
        "assignedMergeRequests": merge_request_list(
            lambda mr, me: me.username in mr.assignees),
        "reviewRequestedMergeRequests": merge_request_list(
            lambda mr, me: me.username in mr.reviewers),
    },
    "MergeRequest": {name: _checked(name, resolve) for name, resolve in _MERGE_REQUEST.items()},
    "MergeRequestAuthor": _person(lambda p: p.username),
    "UserCore": _person(lambda p: p.username),
    "MergeRequestReviewer": {**_person(lambda r: r.username),
                             "mergeRequestInteraction": lambda r, _i: r},
    "UserMergeRequestInteraction": {
        "approved": lambda r, _i: r.username in r.mr.approved_by,
        "reviewState": lambda r, _i: _review_state(r).upper(),
        "reviewed": lambda r, _i: _review_state(r) in REVIEWED,
    },
    "Pipeline": {
        "createdAt": lambda p, _i: _iso(p.created_at),
        "finishedAt": lambda p, _i: _iso(p.updated_at) if _finished(p) else None,
        "id": lambda p, _i: _gid("Ci::Pipeline", p.id),
        "iid": lambda p, _i: str(p.iid),
        # Relative to the instance's web address (the reference: "Relative path to the
        # pipeline's page").
        "path": lambda p, _i: f"/{p.project}/-/pipelines/{p.id}",
        "ref": lambda p, _i: p.ref,
        "startedAt": lambda p, _i: _iso(p.started_at) if p.started_at else None,
        "status": lambda p, _i: p.status.upper(),
        "updatedAt": lambda p, _i: _iso(p.updated_at),
    },
    "Project": {
        "fullPath": lambda path, _i: path,
        "id": lambda path, _i: _gid("Project", project_id(path)),
        "mergeRequests": merge_request_list(lambda mr, path: mr.project == path),
        "name": lambda path, _i: path.rsplit("/", 1)[-1],
    },
}
_PLAIN = {"PageInfo"}


def bind(schema: GraphQLSchema) -> None:
    """Give the schema its resolvers, and refuse to start if a field was left without one."""
    fake_graphql.bind(schema, _RESOLVERS, _PLAIN, lambda *_: "", "gitlab_schema.graphql")
