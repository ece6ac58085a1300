"""GitLab: the merge requests I wrote, am assigned or review, their CI and review; my pipelines.

What is asked (docs.gitlab.com/api/graphql/, api/projects, api/pipelines, api/users):

- One GraphQL request (gitlab_graphql.py) for every merge request that concerns me, on every
  project, with all that status needs of each: `currentUser`'s authored, assigned and
  review-requested lists of open merge requests, newest first, 50 a page (a longer list is
  paged alone). The server filters them, so they hold only what concerns me: their cost grows
  neither with a project's size nor with the number of projects. One answer serves every
  project for 0.9 of an interval, as GitHub's search does. Each merge request is matched to a
  configured project by `projectId`: a project may be configured by path (any case, or an old
  path, which the API follows to the renamed project) or by id, and GitLab tells each one's
  id once (GET /projects/:id; ids never change). A POST cannot be conditional: the one request
  is counted against the rate limit at every poll, in place of three lists and three reads per
  merge request that answered 304 (which GitLab counts too: it documents no exemption).
- Per project, my newest pipelines (`/projects/:id/pipelines?username=ME`), conditional. A
  project GitLab does not know, or that the token may not read, costs only itself: it is named
  as a problem.

The hub's team scope (`scope="team"`, hub/polling.py) asks per configured project instead, on
its own: every open merge request of it (GraphQL `project(fullPath:) { mergeRequests(state:
opened) }`, or over REST `/projects/:id/merge_requests?state=opened` and each one read in full),
MAX_LISTED (REST: MAX_PAGES * PER_PAGE) at most, more said `truncated`; and its newest
pipelines, whoever ran them. Nobody is "me" there: each device picks out its own by the hub's
user identities (upstream/viahub.py), from the author and `review_requested_from`.

A cold poll has two round trips on its critical path: the GraphQL request, /user (remembered
for the daemon's life) and each project's id together; then each project's pipelines, which
need my username. A steady poll has one.

An instance without a usable GraphQL API (404 at /api/graphql: before 12.1, or the `graphql`
feature flag off; or one that lacks a list the query cannot do without) is read over REST as
before GraphQL, and GraphQL is tried again an hour later: three instance-wide lists
(`scope=created_by_me`, `scope=assigned_to_me`, `scope=all&reviewer_username=ME`), then per
merge request, at once for every project, the merge request itself (the lists lack
`head_pipeline`), its `/approvals`, and its `/reviewers` when it has any. Every GET is
conditional. Offset pagination follows `Link` / `x-next-page` and never relies on `x-total`,
which GitLab drops above 10,000 rows.

Review, from the approvals (REST `/approvals`; GraphQL `approvedBy` and `approvalsLeft`. Free:
who approved; Premium also `approvals_left`, how many approvals the rules still want), the
reviewers' states (REST `/reviewers` `state`, GraphQL `reviewState`: unreviewed,
review_started, reviewed, requested_changes, approved, unapproved; older instances know only
the first and third) and `detailed_merge_status` (GraphQL's upper-case enum read in REST's
lower-case words):

- changes_requested: a reviewer's state is `requested_changes`, or the status is
  `requested_changes` ("the merge request has reviewers who have requested changes");
- approved: somebody approved (`approved_by` is not empty) and no approval is missing
  (`approvals_left` is 0 or, on Free, absent; the status is not `not_approved`);
- review_required: an approval rule still wants an approval (`approvals_left` > 0, or the
  status is `not_approved`);
- none: otherwise. `mergeable` says only that nothing blocks a merge: on a project without
  approval rules nobody had to approve, and nobody is said to have.

An instance that lacks one of these (an older REST endpoint answering 404, an older GraphQL
field refused as undefined) gives the review from what there is; the endpoint is asked again
an hour later, the field not for the daemon's life. GraphQL answers a field it could not
resolve with null and an error beside the rest: every other merge request stays, a head
pipeline GitLab could not tell is shown as unknown (not as no CI), and each fault is named.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import anyio
import msgspec

from projctl_client.protocol import ChangeRequestView, CiView, PipelineView, SourceProblem
from projctld.config import GitLabConfig, ProjectConfig
from projctld.errors import UpstreamError
from projctld.logging import get_logger
from projctld.upstream.providers import gitlab_graphql
from projctld.upstream.providers.gather import gather, gather_parts
from projctld.upstream.providers.gitlab_graphql import (
    WORDS,
    Found,
    Listed,
    MergeRequestReader,
    Unusable,
)
from projctld.upstream.providers.http import IF_IT_PASSES, Fetched, UpstreamHttp, next_link
from projctld.upstream.providers.model import Snapshot, latest_per_branch

log = get_logger(__name__)

PER_PAGE = 100
# Pages per list: 1,000 open merge requests of mine in each role. More is said, not dropped.
MAX_PAGES = 10
PIPELINES_PER_PAGE = 50
# A missing endpoint (an older instance) is asked about again after this many seconds.
RECHECK_MISSING = 3600.0
# The instance-wide lists, by role; a merge request found by several has every role.
LISTS = {"created": {"scope": "created_by_me"}, "assigned": {"scope": "assigned_to_me"},
         "review": {"scope": "all"}}  # + reviewer_username=ME
# Reviewer states that are a review given (GitLab's MergeRequestReviewer states).
REVIEWED = ("reviewed", "requested_changes", "approved")


class _User(msgspec.Struct):
    username: str


class _Project(msgspec.Struct):
    id: int


class _HeadPipeline(msgspec.Struct):
    """What a merge request's CI needs of its head pipeline."""

    status: str
    web_url: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None  # only on a single pipeline, null until a job starts


class _Pipeline(_HeadPipeline, kw_only=True):
    id: int
    ref: str
    updated_at: datetime
    sha: str | None = None


class _References(msgspec.Struct):
    full: str


class _MergeRequest(msgspec.Struct):
    iid: int
    title: str
    web_url: str
    source_branch: str
    target_branch: str
    author: _User
    updated_at: datetime
    project_id: int = 0
    assignees: list[_User] = []
    reviewers: list[_User] = []
    draft: bool = False
    work_in_progress: bool = False  # before `draft` (GitLab 14.0)
    detailed_merge_status: str | None = None
    merge_status: str | None = None
    has_conflicts: bool = False
    references: _References | None = None
    head_pipeline: _HeadPipeline | None = None
    sha: str | None = None  # the source branch's head commit


class _Approval(msgspec.Struct):
    user: _User


class _Approvals(msgspec.Struct):
    approved: bool | None = None
    approved_by: list[_Approval] = []
    approvals_required: int | None = None  # Premium and up
    approvals_left: int | None = None  # Premium and up


class _Reviewer(msgspec.Struct):
    user: _User
    state: str | None = None


class _Listed(msgspec.Struct):
    """One shared instance-wide list, newest first."""

    asked_at: float
    merge_requests: list[_MergeRequest]
    complete: bool  # read to its end, not cut at MAX_PAGES


class GitLab:
    def __init__(self, http: UpstreamHttp, config: GitLabConfig, *, name: str = "gitlab",
                 clock: Callable[[], float] = time.time, scope: str = "mine") -> None:
        self.upstream = name
        # "team" (the hub): every open merge request and every pipeline of each project,
        # not the token user's; each device picks out its own (upstream/viahub.py).
        self._team = scope == "team"
        self._http = http
        self.http = http  # the inbox (upstream/notify/inbox.py) reads through it too
        self._api = config.url.rstrip("/") + "/api/v4"
        self._clock = clock
        # Jobs of different projects drift apart with jitter; sharing for most of an interval
        # keeps the lists at about one round per interval however many projects there are.
        self._share_for = config.interval * 0.9
        self._username: str | None = None
        self._me_lock = anyio.Lock()  # every project's first poll needs it: ask once
        self._graphql = MergeRequestReader(http, config.url)
        self._answer_lock = anyio.Lock()
        self._answer: tuple[float, Found] | None = None  # shared, and when it was asked
        self._answer_failed: tuple[float, UpstreamError] | None = None
        self._list_locks = {role: anyio.Lock() for role in LISTS}
        self._listed: dict[str, _Listed] = {}
        self._failed: dict[str, tuple[float, UpstreamError]] = {}
        self._projects: dict[str, _Project] = {}  # by configured path (lower case) or id
        # What this instance lacks ("graphql", or the approvals or reviewers endpoint): since when.
        self._missing: dict[str, float] = {}

    async def poll(self, project: str, config: ProjectConfig, *, fresh: bool) -> Snapshot:
        if self._team:
            return await self._poll_team(config)
        max_age = 0.0 if fresh else self._share_for
        if not self._lacks("graphql"):
            try:
                return await self._poll_graphql(config, max_age)
            except Unusable as exc:
                log.info("gitlab_graphql_unusable", upstream=self.upstream, reason=str(exc))
                self._missing["graphql"] = self._clock()
        return await self._poll_rest(config, max_age)

    # -- GraphQL: one request for every project's merge requests

    async def _poll_graphql(self, config: ProjectConfig, max_age: float) -> Snapshot:
        """The shared answer beside my pipelines and each project's id: two round trips cold
        (/user, then the pipelines that need my username), one steady."""
        read: list[tuple[float, Found]] = []
        ready = anyio.Event()

        async def fetch() -> None:
            read.append(await self._shared_read(max_age))
            ready.set()

        async def projects() -> tuple[dict[str, Any], list[SourceProblem]]:
            return await gather_parts({
                path: functools.partial(self._project_graphql, path, read, ready)
                for path in config.parts(self.upstream)})

        _, (results, problems) = await gather([fetch, projects])  # type: ignore[misc]
        asked_at, found = read[0]
        problems += [problem for _, _, extra in results.values() for problem in extra]
        # A merge request left out of several lists counts once: the most any list left out.
        count = max(len(messages) for messages in found.left_out.values())
        if count:
            message = next(m[0] for m in found.left_out.values() if m)
            problems.append(SourceProblem(
                part="*", code="rejected",
                message=f"{self._http.name} left out {'a' if count == 1 else count} merge "
                        f"request{'s' if count > 1 else ''} of yours: {message[:200]}",
                suggestions=[IF_IT_PASSES, *self._http.hints.forbidden]))
        problems += [self._truncated(role, gitlab_graphql.MAX_LISTED)
                     for role in gitlab_graphql.ROLES if not found.complete[role]]
        return Snapshot(
            # GraphQL's times are whole seconds: ties are told apart, so that an answer that
            # has not changed gives the same snapshot.
            change_requests=sorted((cr for crs, _, _ in results.values() for cr in crs),
                                   key=lambda cr: (cr.updated_at, cr.repo, cr.number),
                                   reverse=True),
            pipelines=latest_per_branch(p for _, ps, _ in results.values() for p in ps),
            as_of=asked_at, problems=problems)

    async def _shared_read(self, max_age: float) -> tuple[float, Found]:
        """The GraphQL answer, asked once for every project: a caller reuses an answer (or a
        failure) that began at most `max_age` before it asked."""
        asked_at = self._clock()
        async with self._answer_lock:
            if self._answer is not None and self._answer[0] >= asked_at - max_age:
                return self._answer
            if self._answer_failed is not None and \
                    self._answer_failed[0] >= asked_at - max_age:
                raise self._answer_failed[1]
            started = self._clock()
            try:
                self._answer = (started, await self._graphql.read())
            except UpstreamError as exc:
                self._answer_failed = (started, exc)
                raise
            self._answer_failed = None
            return self._answer

    async def _project_graphql(self, path: str, read: list[tuple[float, Found]],
                               ready: anyio.Event
                               ) -> tuple[list[ChangeRequestView], list[PipelineView],
                                          list[SourceProblem]]:
        """One configured project: my pipelines, its id, then its merge requests as read."""
        pipelines: list[PipelineView] = []

        async def my_pipelines() -> None:
            pipelines.extend(await self._pipelines(path, await self._me()))

        async def merge_requests() -> tuple[list[ChangeRequestView], list[SourceProblem]]:
            known = await self._resolve(path)
            await ready.wait()
            found = read[0][1]
            mine = [listed for listed in found.merge_requests
                    if listed.node.project_id == known.id]
            views = [_from_graphql(self.upstream, path, listed, found.username)
                     for listed in mine]
            broken = [listed for listed in mine if listed.broken]
            if not broken:
                return views, []
            fields = sorted({name for listed in broken for name in listed.broken})
            refs = ", ".join(f"!{listed.node.iid}" for listed in broken[:5])
            # Of this project's source, not of the project as a part: it was read, and what
            # it held before must not come back (keep_failed_parts would bring back the merge
            # requests closed since).
            return views, [SourceProblem(
                part="*", code="rejected",
                message=f"{self._http.name} could not tell the {', '.join(fields)} of {refs}: "
                        f"{broken[0].messages[0][:200]}",
                suggestions=[IF_IT_PASSES, *self._http.hints.forbidden])]

        _, (views, problems) = await gather([my_pipelines, merge_requests])  # type: ignore[misc]
        return views, pipelines, problems

    # -- the hub's team scope: per project, every open merge request and every pipeline

    async def _poll_team(self, config: ProjectConfig) -> Snapshot:
        """Each configured project on its own: one that fails costs only itself."""
        asked_at = self._clock()
        results, problems = await gather_parts({
            path: functools.partial(self._team_project, path)
            for path in config.parts(self.upstream)})
        return Snapshot(
            change_requests=sorted((cr for crs, _, _ in results.values() for cr in crs),
                                   key=lambda cr: (cr.updated_at, cr.repo, cr.number),
                                   reverse=True),
            pipelines=latest_per_branch(p for _, ps, _ in results.values() for p in ps),
            as_of=asked_at,
            problems=problems + [problem for _, _, extra in results.values() for problem in extra])

    async def _team_project(self, path: str) -> tuple[list[ChangeRequestView],
                                                      list[PipelineView], list[SourceProblem]]:
        """Every open merge request of the project (GraphQL, or REST where it is unusable),
        beside its newest pipelines, whoever ran them."""
        pipelines: list[PipelineView] = []

        async def every_pipeline() -> None:
            pipelines.extend(await self._pipelines(path, None))

        async def merge_requests() -> tuple[list[ChangeRequestView], list[SourceProblem]]:
            if not self._lacks("graphql"):
                try:
                    return await self._team_graphql(path)
                except Unusable as exc:
                    log.info("gitlab_graphql_unusable", upstream=self.upstream, reason=str(exc))
                    self._missing["graphql"] = self._clock()
            return await self._team_rest(path)

        _, (views, problems) = await gather([every_pipeline, merge_requests])  # type: ignore[misc]
        return views, pipelines, problems

    async def _team_graphql(self, path: str
                            ) -> tuple[list[ChangeRequestView], list[SourceProblem]]:
        found = await self._graphql.read_project(path)
        views = [_from_graphql(self.upstream, path, listed, "", team=True)
                 for listed in found.merge_requests]
        problems = []
        broken = [listed for listed in found.merge_requests if listed.broken]
        if broken:
            fields = sorted({name for listed in broken for name in listed.broken})
            refs = ", ".join(f"!{listed.node.iid}" for listed in broken[:5])
            problems.append(SourceProblem(
                part="*", code="rejected",
                message=f"{self._http.name} could not tell the {', '.join(fields)} of {refs}: "
                        f"{broken[0].messages[0][:200]}",
                suggestions=[IF_IT_PASSES, *self._http.hints.forbidden]))
        if found.left_out:
            count = len(found.left_out)
            problems.append(SourceProblem(
                part="*", code="rejected",
                message=f"{self._http.name} left out {'a' if count == 1 else count} open merge "
                        f"request{'s' if count > 1 else ''} of {path}: "
                        f"{found.left_out[0][:200]}",
                suggestions=[IF_IT_PASSES, *self._http.hints.forbidden]))
        if not found.complete:
            problems.append(self._team_truncated(path, gitlab_graphql.MAX_LISTED))
        return views, problems

    async def _team_rest(self, path: str
                         ) -> tuple[list[ChangeRequestView], list[SourceProblem]]:
        """GET /projects/:id/merge_requests?state=opened, newest first, MAX_PAGES pages at most
        (conditional, as every GET), then each one read in full as for mine."""
        params = {"state": "opened", "order_by": "updated_at", "sort": "desc",
                  "per_page": PER_PAGE}
        next_url: str | None = (f"{self._api}/projects/{quote(path, safe='')}/merge_requests?"
                                f"{urlencode(params)}")
        listed: list[_MergeRequest] = []
        for _ in range(MAX_PAGES):
            if next_url is None:
                break
            fetched = await self._http.get(next_url, what=f"the open merge requests of {path}")
            listed += self._http.decode(fetched, list[_MergeRequest], what="merge requests")
            next_url = _next_page(fetched, next_url)
        views = await gather([functools.partial(self._read, path, mr, "") for mr in listed])
        problems = [] if next_url is None else [self._team_truncated(path, MAX_PAGES * PER_PAGE)]
        return [view for view in views if view is not None], problems

    def _team_truncated(self, path: str, count: int) -> SourceProblem:
        shown = f"{count:,}"
        return SourceProblem(
            part="*", code="truncated",
            message=f"{self._http.name} lists more than {shown} open merge requests in {path}: "
                    f"only the {shown} updated last are shown",
            suggestions=["close or merge the merge requests nobody works on any more"])

    # -- REST: three instance-wide lists, and each merge request read (instances without
    # GraphQL, or whose GraphQL lacks what is asked)

    async def _poll_rest(self, config: ProjectConfig, max_age: float) -> Snapshot:
        # Nothing waits for more than it needs: the lists that do not need my username go out
        # with /user and each project's id, and a merge request is read as soon as a list
        # that holds it is in.
        found: dict[str, _Listed] = {}
        ready = {role: anyio.Event() for role in LISTS}

        async def fetch(role: str) -> None:
            found[role] = await self._shared(role, max_age)
            ready[role].set()

        async def projects() -> tuple[dict[str, Any], list[SourceProblem]]:
            # One project that fails costs only itself; a failed list fails the whole poll.
            return await gather_parts({
                path: functools.partial(self._project, path, found, ready)
                for path in config.parts(self.upstream)})

        *_, (results, problems) = await gather(  # type: ignore[misc]
            [*(functools.partial(fetch, role) for role in LISTS), projects])
        return Snapshot(
            change_requests=sorted((cr for crs, _ in results.values() for cr in crs),
                                   key=lambda cr: cr.updated_at, reverse=True),
            pipelines=latest_per_branch(p for _, ps in results.values() for p in ps),
            as_of=min(listed.asked_at for listed in found.values()),
            problems=problems + [self._truncated(role, MAX_PAGES * PER_PAGE) for role in LISTS
                                 if not found[role].complete],
        )

    async def _me(self) -> str:
        async with self._me_lock:
            if self._username is None:
                fetched = await self._http.get(f"{self._api}/user", what="the current user")
                self._username = self._http.decode(fetched, _User,
                                                   what="the current user").username
        return self._username

    async def _project(self, path: str, found: dict[str, _Listed],
                       ready: dict[str, anyio.Event]
                       ) -> tuple[list[ChangeRequestView], list[PipelineView]]:
        """One configured project: my pipelines; its id, then the merge requests of mine in
        it as each list comes in, each read in full."""
        pipelines: list[PipelineView] = []
        read: list[ChangeRequestView] = []
        seen: set[int] = set()

        async def my_pipelines() -> None:
            pipelines.extend(await self._pipelines(path, await self._me()))

        async def merge_requests() -> None:
            known = await self._resolve(path)

            async def of(role: str) -> None:
                await ready[role].wait()
                new = [mr for mr in found[role].merge_requests
                       if mr.project_id == known.id and mr.iid not in seen]
                seen.update(mr.iid for mr in new)
                me = await self._me()
                views = await gather([functools.partial(self._read, path, mr, me)
                                      for mr in new])
                read.extend(view for view in views if view is not None)

            await gather([functools.partial(of, role) for role in LISTS])

        await gather([my_pipelines, merge_requests])
        return read, pipelines

    async def _resolve(self, path: str) -> _Project:
        """The project's id, asked once: the id of a project never changes."""
        key = path.lower()
        if key not in self._projects:
            fetched = await self._http.get(f"{self._api}/projects/{quote(path, safe='')}",
                                           what=f"project {path}")
            self._projects[key] = self._http.decode(fetched, _Project, what=f"project {path}")
        return self._projects[key]

    async def _shared(self, role: str, max_age: float) -> _Listed:
        """One instance-wide list, fetched once for every project: a caller reuses a result
        (or a failure) that began at most `max_age` before it asked."""
        asked_at = self._clock()
        username = await self._me() if role == "review" else None
        async with self._list_locks[role]:
            listed = self._listed.get(role)
            if listed is not None and listed.asked_at >= asked_at - max_age:
                return listed
            failed = self._failed.get(role)
            if failed is not None and failed[0] >= asked_at - max_age:
                raise failed[1]
            started = self._clock()
            try:
                self._listed[role] = await self._list(role, username, started)
            except UpstreamError as exc:
                self._failed[role] = (started, exc)
                raise
            self._failed.pop(role, None)
            return self._listed[role]

    async def _list(self, role: str, username: str | None, asked_at: float) -> _Listed:
        """One instance-wide list, newest first, at most MAX_PAGES pages."""
        params: dict[str, Any] = {**LISTS[role], "state": "opened", "order_by": "updated_at",
                                  "sort": "desc", "per_page": PER_PAGE}
        if username is not None:
            params["reviewer_username"] = username
        next_url: str | None = f"{self._api}/merge_requests?{urlencode(params)}"
        listed: list[_MergeRequest] = []
        for _ in range(MAX_PAGES):
            if next_url is None:
                break
            fetched = await self._http.get(next_url, what=f"merge requests {WORDS[role]}")
            listed += self._http.decode(fetched, list[_MergeRequest], what="merge requests")
            next_url = _next_page(fetched, next_url)
        return _Listed(asked_at=asked_at, merge_requests=listed, complete=next_url is None)

    def _truncated(self, role: str, count: int) -> SourceProblem:
        shown = f"{count:,}"
        return SourceProblem(
            part="*", code="truncated",
            message=f"{self._http.name} lists more than {shown} open merge requests "
                    f"{WORDS[role]}: only the {shown} updated last are shown",
            suggestions=["close or merge the merge requests you no longer need"])

    async def _pipelines(self, path: str, username: str | None) -> list[PipelineView]:
        """The project's newest pipelines: `username`'s, or everyone's (None: team scope)."""
        query = urlencode({**({"username": username} if username is not None else {}),
                           "per_page": PIPELINES_PER_PAGE, "order_by": "id", "sort": "desc"})
        url = f"{self._api}/projects/{quote(path, safe='')}/pipelines?{query}"
        fetched = await self._http.get(url, what=f"project {path}")
        return [_pipeline(self.upstream, path, p) for p in
                self._http.decode(fetched, list[_Pipeline], what="pipelines")]

    async def _read(self, path: str, listed: _MergeRequest,
                    username: str) -> ChangeRequestView | None:
        """A merge request with its head pipeline, approvals and reviewers' states, read at
        once, as `username` sees it ("": the team's); None when it is gone since it was
        listed."""
        base = f"{self._api}/projects/{quote(path, safe='')}/merge_requests/{listed.iid}"
        what = f"merge request {path}!{listed.iid}"
        outcome: list[Any] = [None, None, None]

        async def detail() -> None:
            outcome[0] = await self._optional(base, _MergeRequest, what=what)

        async def approvals() -> None:
            outcome[1] = await self._optional(base + "/approvals", _Approvals,
                                              what=f"the approvals of {what}", endpoint="approvals")

        async def reviewers() -> None:
            outcome[2] = await self._optional(base + "/reviewers", list[_Reviewer],
                                              what=f"the reviewers of {what}", endpoint="reviewers")

        calls = [detail]
        if not self._lacks("approvals"):
            calls.append(approvals)
        if listed.reviewers and not self._lacks("reviewers"):
            calls.append(reviewers)
        await gather(calls)
        mr = outcome[0]
        if mr is None:
            return None
        for endpoint, index in (("approvals", 1), ("reviewers", 2)):
            if outcome[index] is _MISSING:
                # The merge request is there and the endpoint is not: an older instance.
                self._missing[endpoint] = self._clock()
                outcome[index] = None
        return _change_request(self.upstream, path, mr, username,
                               approvals=outcome[1], reviewers=outcome[2], team=self._team)

    async def _optional(self, url: str, shape: Any, *, what: str,
                        endpoint: str | None = None) -> Any:
        """GET and decode `url`; a 404 is None for the merge request itself (gone since it was
        listed) and _MISSING for an endpoint (which an older instance lacks)."""
        try:
            fetched = await self._http.get(url, what=what)
        except UpstreamError as exc:
            if exc.code == "not_found":
                return None if endpoint is None else _MISSING
            raise
        return self._http.decode(fetched, shape, what=what)

    def _lacks(self, endpoint: str) -> bool:
        since = self._missing.get(endpoint)
        return since is not None and self._clock() - since < RECHECK_MISSING


_MISSING = object()


def _next_page(fetched: Fetched, url: str) -> str | None:
    link = next_link(fetched.headers)
    if link:
        return link
    page = fetched.headers.get("x-next-page", "").strip()
    base, _, query = url.partition("?")
    params = [p for p in query.split("&") if p and not p.startswith("page=")]
    current = next((p.removeprefix("page=") for p in query.split("&") if p.startswith("page=")),
                   "1")
    # Only a page past this one: anything else (empty, garbled by a proxy, a page already
    # read) would fetch the same rows again until MAX_PAGES.
    if not (page.isdecimal() and current.isdecimal() and int(page) > int(current)):
        return None
    return f"{base}?{'&'.join([*params, f'page={int(page)}'])}"


# Pipeline statuses (pipelines.md): those not listed here have not finished, and wait for a
# runner, a resource or a time; `manual` waits for a person, and is not pending.
_PIPELINE_STATE = {"success": "success", "failed": "failure", "canceled": "canceled",
                   "canceling": "canceled", "skipped": "skipped", "running": "running",
                   "manual": "manual"}


def _state(status: str) -> str:
    return _PIPELINE_STATE.get(status, "pending")


def review(approvals: _Approvals | None, reviewers: list[_Reviewer] | None,
           merge_status: str | None) -> str:
    """approved, changes_requested, review_required or none, as the module docstring says."""
    states = [reviewer.state for reviewer in reviewers or []]
    if "requested_changes" in states or merge_status == "requested_changes":
        return "changes_requested"
    left = approvals.approvals_left if approvals is not None else None
    missing = merge_status == "not_approved" or (left is not None and left > 0)
    if approvals is not None and approvals.approved_by and not missing:
        return "approved"
    return "review_required" if missing else "none"


def _conflicts(mr: _MergeRequest) -> bool | None:
    """Whether it has conflicts; None while GitLab has not checked (has_conflicts is false
    unless merge_status is cannot_be_merged, which a check not yet run cannot say)."""
    if mr.has_conflicts or mr.detailed_merge_status == "conflict":
        return True
    if mr.merge_status not in ("can_be_merged", "cannot_be_merged"):
        return None
    return False


def _ts(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def _change_request(upstream: str, path: str, mr: _MergeRequest, username: str, *,
                    approvals: _Approvals | None = None,
                    reviewers: list[_Reviewer] | None = None,
                    team: bool = False) -> ChangeRequestView:
    pipeline = mr.head_pipeline
    ci = CiView(state="none")
    if pipeline is not None:
        ci = CiView(state=_state(pipeline.status), url=pipeline.web_url,
                    started_at=_ts(pipeline.started_at or pipeline.created_at))
    mine_state = next((r.state for r in reviewers or [] if r.user.username == username), None)
    approved_by = [a.user.username for a in approvals.approved_by] if approvals else []
    am_reviewer = any(user.username == username for user in mr.reviewers)
    reviewed = mine_state in REVIEWED or username in approved_by
    return ChangeRequestView(
        upstream=upstream, repo=path, number=mr.iid,
        ref=mr.references.full if mr.references else f"{path}!{mr.iid}", title=mr.title,
        url=mr.web_url, author=mr.author.username, source_branch=mr.source_branch,
        target_branch=mr.target_branch, draft=mr.draft or mr.work_in_progress,
        review=review(approvals, reviewers, mr.detailed_merge_status), ci=ci,
        mine=mr.author.username == username,
        # Asked and not given yet; a review given and then asked for again is unreviewed.
        review_requested=am_reviewer and not reviewed,
        assigned=any(user.username == username for user in mr.assignees),
        updated_at=mr.updated_at.timestamp(),
        reviewed=reviewed and mr.author.username != username,
        conflicts=_conflicts(mr),
        merge_status=mr.detailed_merge_status.lower() if mr.detailed_merge_status else None,
        approvals_left=approvals.approvals_left if approvals else None,
        approved_by=approved_by, head=mr.sha,
        # The team scope: whom a review is asked of and not given yet, for each device to
        # pick itself out (as review_requested is worked out for me above).
        review_requested_from=[] if not team else [
            user.username for user in mr.reviewers
            if user.username not in approved_by and next(
                (r.state for r in reviewers or [] if r.user.username == user.username),
                None) not in REVIEWED],
    )


def _pipeline(upstream: str, path: str, pipeline: _Pipeline) -> PipelineView:
    return PipelineView(
        upstream=upstream, repo=path, branch=pipeline.ref, sha=pipeline.sha,
        state=_state(pipeline.status), name="pipeline", url=pipeline.web_url,
        updated_at=pipeline.updated_at.timestamp(),
        # Lists carry no `started_at`: the pipeline's creation is the oldest it can be.
        started_at=_ts(pipeline.started_at or pipeline.created_at),
    )


def _from_graphql(upstream: str, path: str, listed: Listed, username: str, *,
                  team: bool = False) -> ChangeRequestView:
    """A merge request as GraphQL told it, in the shapes REST gives (lower-case statuses,
    approvals, reviewers' states), so that one mapping serves both."""
    node = listed.node
    author = node.author.username if node.author else (
        username if "created" in listed.roles else "ghost")
    reviewers = [r for r in (node.reviewers.nodes if node.reviewers else []) if r is not None]
    names = [r.username for r in reviewers]
    if "review" in listed.roles and username not in names:  # the list says so, if not they
        names.append(username)
    head = node.head_pipeline
    mr = _MergeRequest(
        iid=int(node.iid), title=node.title, web_url=node.web_url or "",
        source_branch=node.source_branch, target_branch=node.target_branch,
        author=_User(author), updated_at=node.updated_at, project_id=node.project_id,
        # Assigned to me is what the list of that name holds; who else is not asked.
        assignees=[_User(username)] if "assigned" in listed.roles else [],
        reviewers=[_User(name) for name in names], draft=node.draft,
        detailed_merge_status=_lower(node.detailed_merge_status),
        merge_status=_lower(node.merge_status_enum), has_conflicts=node.conflicts,
        references=_References(full=node.reference), sha=node.diff_head_sha,
        head_pipeline=None if head is None else _HeadPipeline(
            status=head.status.lower(), web_url=_web_url(node.web_url, head.path),
            created_at=head.created_at, started_at=head.started_at))
    approvals = None
    if node.approved_by is not None and "approvedBy" not in listed.broken:
        approvals = _Approvals(
            approved_by=[_Approval(_User(u.username)) for u in node.approved_by.nodes if u],
            approvals_left=node.approvals_left)
    states = None
    if node.reviewers is not None and "reviewers" not in listed.broken:
        states = [_Reviewer(_User(r.username), _lower(
            r.merge_request_interaction.review_state if r.merge_request_interaction else None))
            for r in reviewers]
    view = _change_request(upstream, path, mr, username, approvals=approvals, reviewers=states,
                           team=team)
    if "headPipeline" in listed.broken:  # not "no pipeline": GitLab did not say
        view = msgspec.structs.replace(view, ci=None)
    return view


def _lower(value: str | None) -> str | None:
    """A GraphQL enum value in the words REST uses (NOT_APPROVED: not_approved)."""
    return value.lower() if value is not None else None


def _web_url(merge_request_url: str | None, path: str | None) -> str | None:
    """A pipeline's address: its path, on the web address the merge request's shows (the
    instance's own, which the API's address need not be)."""
    if not merge_request_url or not path:
        return None
    parts = urlsplit(merge_request_url)
    return f"{parts.scheme}://{parts.netloc}{path}"
