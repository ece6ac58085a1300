"""GitLab's GraphQL API as the GitLab provider asks it: every open merge request that concerns me,
with all its review and CI, in one request per poll; or, in the hub's team scope, every open
merge request of one project (`project_query`, one request per project and page).

What is asked (docs.gitlab.com/api/graphql/reference/, gitlab-org/gitlab's
doc/api/graphql/reference/_index.md): `currentUser` (type CurrentUser) and its
three lists, `authoredMergeRequests`, `assignedMergeRequests` and `reviewRequestedMergeRequests`
(MergeRequestConnection; state: MergeRequestState, sort: MergeRequestSort, the four standard
paging arguments), each merge request with:

    iid: String!, title: String!, webUrl: String, sourceBranch / targetBranch: String!,
    draft: Boolean!, conflicts: Boolean! (`cannot_be_merged?`), updatedAt: Time!,
    projectId: Int! (the REST id), reference(full: true): String!, diffHeadSha: String,
    detailedMergeStatus: DetailedMergeStatus (GitLab 15: an alpha field in 2022, before REST
    had detailed_merge_status in 15.6), mergeStatusEnum: MergeStatus (14.0),
    approvalsLeft: Int (Enterprise Edition: null where no rule applies, absent on Community
    Edition), author { username }, approvedBy { nodes { username } } (UserCoreConnection),
    reviewers { nodes { username mergeRequestInteraction { reviewState } } }
    (MergeRequestReviewerConnection; reviewState: MergeRequestReviewState),
    headPipeline { status path startedAt createdAt } (Pipeline; status: PipelineStatusEnum!,
    path relative to the instance's web address).

`approved` and `approvalsRequired` are not asked: the review worked out in gitlab.py reads who
approved and what is left, and `approved` would cost 2 and fail on Community Edition before
16.3. The fields an older instance may lack (OPTIONAL_FIELDS) are left out when it refuses them
(graphql-ruby's undefinedField) and the query is asked again, once per daemon; a refusal of
anything else, or no GraphQL API at all (404 at /api/graphql: before 12.1, or the feature flag
off), is `Unusable`, and the provider reads REST instead.

Complexity, scored as GitLab does (docs.gitlab.com/api/graphql/#maximum-query-complexity: at
most 250 with a token; app/graphql/types/base_field.rb and resolvers/base_resolver.rb: each
field 1, +1 if it calls Gitaly, a definition's own constant instead (reviewers: 5); a list with
a resolver adds its own 1, +1 for `sort`, then 1% of itself per node it may return):

    merge request: 11 plain fields 11, detailedMergeStatus 2, mergeStatusEnum 1,
      approvalsLeft 2, author 2, approvedBy 3, reviewers 5 + 4, headPipeline 5     = 35
    one list of 50: (35 + nodes 1 + pageInfo 3 + resolver 2) * (1 + 50 * 1%)        = 61
    currentUser 1 + username 1 + three lists                                       = 185

185 of 250. A server that scores the query higher (a later GitLab) refuses it before running
it ("Query has complexity of N, which exceeds max complexity of 250"); the page is then halved
and the query asked again, down to MIN_PAGE_SIZE. The next page of one list (keyset cursors)
is asked alone: 63.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from projctld.errors import UpstreamError
from projctld.logging import get_logger
from projctld.upstream.providers.gather import gather
from projctld.upstream.providers.graphql import (
    GraphQLError,
    GraphQLReply,
    OptionalFields,
    undefined_fields,
)
from projctld.upstream.providers.http import UpstreamHttp

log = get_logger(__name__)

# The lists, by role (the provider's words for them); a merge request in several has each role.
ROLES = {"created": "authoredMergeRequests", "assigned": "assignedMergeRequests",
         "review": "reviewRequestedMergeRequests"}
# How each list is named in what is shown.
WORDS = {"created": "that you created", "assigned": "assigned to you",
         "review": "that you review"}
# The hub's team scope reads each project's open merge requests under this alias.
TEAM_ROLE = "open"
PAGE_SIZE = 50
MIN_PAGE_SIZE = 10
# Merge requests read per list: 1,000 open ones of mine in each role. More is said, not dropped.
MAX_LISTED = 1000
# Fields an older (or Community Edition) instance may lack; `mergeRequestInteraction` and
# `reviewState` go together.
OPTIONAL_FIELDS = ("approvalsLeft", "detailedMergeStatus", "mergeStatusEnum",
                   "mergeRequestInteraction", "reviewState")
_COMPLEXITY = "exceeds max complexity"


def _fragment(omit: frozenset[str]) -> str:
    def optional(name: str, text: str | None = None) -> str:
        return "" if name in omit else (text or name)

    interaction = "" if {"mergeRequestInteraction", "reviewState"} & omit else \
        " mergeRequestInteraction { reviewState }"
    return f"""\
fragment mr on MergeRequest {{
  iid title webUrl sourceBranch targetBranch draft conflicts updatedAt projectId diffHeadSha
  reference(full: true)
  {optional("detailedMergeStatus")} {optional("mergeStatusEnum")} {optional("approvalsLeft")}
  author {{ username }}
  approvedBy {{ nodes {{ username }} }}
  reviewers {{ nodes {{ username{interaction} }} }}
  headPipeline {{ status path startedAt createdAt }}
}}
"""


def query(roles: Iterable[str], *, first: int, after: bool = False,
          omit: frozenset[str] = frozenset()) -> str:
    """The lists of `roles` under their role's alias; with `after`, from a cursor each."""
    roles = list(roles)
    variables = ["$first: Int!"] + ([f"$after_{role}: String" for role in roles] if after else [])
    lists = "\n".join(
        f"    {role}: {ROLES[role]}(state: opened, sort: UPDATED_DESC, first: $first"
        f"{f', after: $after_{role}' if after else ''}) "
        "{ pageInfo { hasNextPage endCursor } nodes { ...mr } }"
        for role in roles)
    return (f"query({', '.join(variables)}) {{\n  currentUser {{\n    username\n{lists}\n"
            f"  }}\n}}\n{_fragment(omit)}")


def project_query(*, first: int, after: bool = False, omit: frozenset[str] = frozenset()) -> str:
    """The hub's team scope: every open merge request of one project (Query.project(fullPath:),
    Project.mergeRequests), newest first; with `after`, from a cursor. Scored as above:
    project 1 + one list of 50 (61) = 62."""
    cursor = ", $after: String" if after else ""
    return (f"query($path: ID!, $first: Int!{cursor}) {{\n  project(fullPath: $path) {{\n"
            f"    {TEAM_ROLE}: mergeRequests(state: opened, sort: UPDATED_DESC, first: $first"
            f"{', after: $after' if after else ''}) "
            "{ pageInfo { hasNextPage endCursor } nodes { ...mr } }\n  }\n}\n"
            + _fragment(omit))


class Unusable(Exception):
    """This instance's GraphQL API cannot answer what is asked: read REST instead."""


# -- what GitLab answers


class User(msgspec.Struct):
    username: str


class _Users(msgspec.Struct):
    nodes: list[User | None] = []


class _Interaction(msgspec.Struct, rename="camel"):
    review_state: str | None = None


class Reviewer(msgspec.Struct, rename="camel"):
    username: str
    merge_request_interaction: _Interaction | None = None


class _Reviewers(msgspec.Struct):
    nodes: list[Reviewer | None] = []


class HeadPipeline(msgspec.Struct, rename="camel"):
    status: str
    path: str | None = None
    started_at: datetime | None = None
    created_at: datetime | None = None


class Node(msgspec.Struct, rename="camel"):
    """A merge request as GraphQL answers it; optional fields are None where left out."""

    iid: str
    title: str
    source_branch: str
    target_branch: str
    draft: bool
    conflicts: bool
    updated_at: datetime
    project_id: int
    reference: str
    web_url: str | None = None
    author: User | None = None
    approved_by: _Users | None = None
    reviewers: _Reviewers | None = None
    head_pipeline: HeadPipeline | None = None
    detailed_merge_status: str | None = None
    merge_status_enum: str | None = None
    approvals_left: int | None = None
    diff_head_sha: str | None = None


class _PageInfo(msgspec.Struct, rename="camel"):
    has_next_page: bool
    end_cursor: str | None = None


class _List(msgspec.Struct, rename="camel"):
    page_info: _PageInfo
    nodes: list[msgspec.Raw]  # a node is null where GitLab failed one of its non-null fields


_NULL = msgspec.Raw(b"null")


class _Me(msgspec.Struct):
    username: str
    # Each list asked; null where GitLab failed it (or it was not asked: a next page of another).
    created: msgspec.Raw = _NULL
    assigned: msgspec.Raw = _NULL
    review: msgspec.Raw = _NULL


@dataclass
class Listed:
    """A merge request that concerns me: its roles, and its fields GitLab failed to answer."""

    node: Node
    roles: set[str]
    broken: set[str] = field(default_factory=set)
    messages: list[str] = field(default_factory=list)


@dataclass
class ProjectFound:
    """Every open merge request of one project (the hub's team scope), at most MAX_LISTED."""

    merge_requests: list[Listed]
    complete: bool  # read to its end, not cut at MAX_LISTED
    left_out: list[str]  # the message of each merge request GitLab answered null


class _Project(msgspec.Struct):
    open: msgspec.Raw = _NULL  # the list, under its alias TEAM_ROLE


@dataclass
class Found:
    username: str
    merge_requests: list[Listed]
    complete: dict[str, bool]  # by role: read to its end, not cut at MAX_LISTED
    # By list, the message of each merge request GitLab answered null: one null in several
    # lists is the same merge request or not, nothing tells.
    left_out: dict[str, list[str]]


class MergeRequestReader:
    """The one query, for one GitLab instance; what it learns of the instance is kept."""

    def __init__(self, http: UpstreamHttp, url: str) -> None:
        self._http = http
        self.url = url.rstrip("/") + "/api/graphql"
        self._optional = OptionalFields(OPTIONAL_FIELDS)
        self._first = PAGE_SIZE

    async def read(self) -> Found:
        reply = await self._ask(list(ROLES), {})
        me = self._me(reply)
        found: dict[tuple[int, str], Listed] = {}
        left_out: dict[str, list[str]] = {role: [] for role in ROLES}
        complete: dict[str, bool] = {}

        async def one(role: str) -> None:
            answer, raw, listed = reply, getattr(me, role), 0
            while True:
                page = self._list(answer, role, raw)
                listed += self._take(page, role, answer, found, left_out[role])
                more = page.page_info.has_next_page
                if not more or listed >= MAX_LISTED:
                    complete[role] = not more
                    return
                answer = await self._ask([role], {f"after_{role}": page.page_info.end_cursor})
                raw = getattr(self._me(answer), role)

        await gather([functools.partial(one, role) for role in ROLES])
        return Found(me.username, list(found.values()), complete, left_out)

    async def read_project(self, path: str) -> ProjectFound:
        """Every open merge request of the project at `path`, newest first, MAX_LISTED at most
        (the hub's team scope). A project GitLab does not know, or the token may not read, is
        null without an error: that is not_found."""
        found: dict[tuple[int, str], Listed] = {}
        left_out: list[str] = []
        cursor: str | None = None
        listed = 0
        what = f"the open merge requests of {path}"
        while True:
            reply = await self._ask_text(
                lambda first, omit, after=cursor is not None: project_query(
                    first=first, after=after, omit=omit),
                {"path": path, **({"after": cursor} if cursor is not None else {})}, what)
            raw = (reply.data or {}).get("project")
            if raw is None or bytes(raw).strip() == b"null":
                if reply.errors:
                    raise self._refused(reply.errors, what)
                raise UpstreamError(
                    f"{self._http.name} has no project {path}, or the token may not read it",
                    code="not_found", suggestions=self._http.hints.not_found)
            holder = self._http.decode_part(raw, _Project, what=f"project {path}")
            if bytes(holder.open).strip() == b"null":
                raise self._refused(reply.errors, what)
            page = self._http.decode_part(holder.open, _List, what="merge requests")
            listed += self._take(page, TEAM_ROLE, reply, found, left_out)
            more = page.page_info.has_next_page
            if not more or listed >= MAX_LISTED:
                return ProjectFound(list(found.values()), not more, left_out)
            cursor = page.page_info.end_cursor

    async def _ask(self, roles: list[str], cursors: dict[str, str | None]) -> GraphQLReply:
        return await self._ask_text(
            lambda first, omit: query(roles, first=first, after=bool(cursors), omit=omit),
            cursors, "the merge requests that concern you")

    async def _ask_text(self, make: Callable[[int, frozenset[str]], str],
                        variables: dict[str, str | None], what: str) -> GraphQLReply:
        """The query `make` writes, asked again without the optional fields the instance
        refuses and with smaller pages while it scores the query too high."""
        while True:
            text = make(self._first, self._optional.omit)
            reply = await self._post(text, {"first": self._first, **variables}, what)
            missing = self._optional.learn(reply.errors)
            if missing:
                log.info("gitlab_fields_missing", upstream=self._http.name,
                         fields=sorted(missing))
                continue
            if reply.data is not None:
                return reply
            if any(_COMPLEXITY in error.message for error in reply.errors) and \
                    self._first > MIN_PAGE_SIZE:
                self._first = max(MIN_PAGE_SIZE, self._first // 2)
                log.info("gitlab_page_halved", upstream=self._http.name, first=self._first)
                continue
            refused = [error for error in reply.errors if error.code]
            if refused:  # the schema has not what is asked, beyond what can be done without
                names = sorted(undefined_fields(refused)) or [refused[0].message[:200]]
                raise Unusable(f"GraphQL refused {', '.join(names)}")
            raise self._refused(reply.errors)

    async def _post(self, text: str, variables: dict[str, object], what: str) -> GraphQLReply:
        try:
            fetched = await self._http.post(self.url, {"query": text, "variables": variables},
                                            what=what)
        except UpstreamError as exc:
            if exc.code == "not_found":
                raise Unusable(f"no GraphQL API at {self.url} (404)") from None
            raise
        return self._http.decode(fetched, GraphQLReply, what="a GraphQL reply")

    def _refused(self, errors: list[GraphQLError], what: str = "the merge request query"
                 ) -> UpstreamError:
        first = (errors or [GraphQLError("no data in the answer")])[0]
        return UpstreamError(f"{self._http.name} refused {what}: {first.message[:300]}",
                             code="rejected", suggestions=self._http.hints.rejected)

    def _me(self, reply: GraphQLReply) -> _Me:
        raw = (reply.data or {}).get("currentUser")
        if raw is None or bytes(raw).strip() == b"null":
            if reply.errors:
                raise self._refused(reply.errors)
            # No error, no user: GitLab ran the query as for an anonymous visitor.
            raise UpstreamError(
                f"{self._http.name} did not take the token as a user's for its GraphQL API",
                code="auth", suggestions=self._http.hints.auth)
        return self._http.decode_part(raw, _Me, what="the current user")

    def _list(self, reply: GraphQLReply, role: str, raw: msgspec.Raw) -> _List:
        if bytes(raw).strip() == b"null":
            raise self._refused([e for e in reply.errors if e.path and e.path[1:2] == [role]]
                                or reply.errors, f"the list of merge requests {WORDS[role]}")
        return self._http.decode_part(raw, _List, what="merge requests")

    def _take(self, page: _List, role: str, reply: GraphQLReply,
              found: dict[tuple[int, str], Listed], left_out: list[str]) -> int:
        """Keep every merge request of the page, with the fields GitLab failed to answer."""
        failed: dict[int, list[GraphQLError]] = {}
        for error in reply.errors:
            path = error.path or []
            if path[1:3] == [role, "nodes"] and len(path) > 3 and isinstance(path[3], int):
                failed.setdefault(path[3], []).append(error)
        for index, raw in enumerate(page.nodes):
            errors = failed.get(index, [])
            if bytes(raw).strip() == b"null":
                left_out.append(errors[0].message if errors else "no reason given")
                continue
            node = self._http.decode_part(raw, Node, what="a merge request")
            listed = found.setdefault((node.project_id, node.iid), Listed(node, set()))
            listed.roles.add(role)
            for error in errors:
                path = error.path or []
                listed.broken.add(str(path[4]) if len(path) > 4 else "*")
                listed.messages.append(error.message)
        return len(page.nodes)
