"""GitLab: merge requests I wrote, am assigned or review, with their head pipeline; my pipelines.

A list of merge requests lacks `head_pipeline`, so the ones that concern me are fetched one by one;
every GET is conditional, so an unchanged merge request costs a 304. Offset pagination follows
`Link` / `x-next-page` and never relies on `x-total`, which GitLab drops above 10,000 rows.
"""

from __future__ import annotations

import functools
from datetime import datetime
from urllib.parse import quote, urlencode

import anyio
import msgspec

from projctl_client.protocol import ChangeRequestView, CiView, PipelineView
from projctld.config import GitLabConfig, ProjectConfig
from projctld.upstream.providers.gather import gather, gather_parts
from projctld.upstream.providers.http import Fetched, UpstreamHttp, next_link
from projctld.upstream.providers.model import Snapshot, latest_per_branch

PER_PAGE = 100
MAX_PAGES = 10
PIPELINES_PER_PAGE = 50


class _User(msgspec.Struct):
    username: str


class _Pipeline(msgspec.Struct):
    id: int
    ref: str
    status: str
    web_url: str
    updated_at: datetime
    sha: str | None = None


class _MergeRequest(msgspec.Struct):
    iid: int
    title: str
    web_url: str
    source_branch: str
    target_branch: str
    author: _User
    updated_at: datetime
    assignees: list[_User] = []
    reviewers: list[_User] = []
    draft: bool = False
    detailed_merge_status: str | None = None
    head_pipeline: _Pipeline | None = None


class GitLab:
    def __init__(self, http: UpstreamHttp, config: GitLabConfig, *, name: str = "gitlab") -> None:
        self.upstream = name
        self._http = http
        self._api = config.url.rstrip("/") + "/api/v4"
        self._username: str | None = None
        self._me_lock = anyio.Lock()  # every project's first poll needs it: ask once

    async def poll(self, project: str, config: ProjectConfig, *, fresh: bool) -> Snapshot:
        username = await self._me()
        # Every project's merge requests and pipelines at once: a cold poll costs three round
        # trips (user, lists, details), not three per project; one project that fails costs
        # only itself.
        results, problems = await gather_parts({
            path: functools.partial(self._project, path, username)
            for path in config.parts(self.upstream)})
        return Snapshot(
            change_requests=sorted((cr for crs, _ in results.values() for cr in crs),
                                   key=lambda cr: cr.updated_at, reverse=True),
            pipelines=latest_per_branch(p for _, ps in results.values() for p in ps),
            problems=problems,
        )

    async def _project(self, path: str, username: str
                       ) -> tuple[list[ChangeRequestView], list[PipelineView]]:
        change_requests, pipelines = await gather([
            functools.partial(self._merge_requests, path, username),
            functools.partial(self._pipelines, path, username)])
        return change_requests, pipelines  # type: ignore[return-value]

    async def _me(self) -> str:
        async with self._me_lock:
            if self._username is None:
                fetched = await self._http.get(f"{self._api}/user", what="the current user")
                self._username = self._http.decode(fetched, _User,
                                                   what="the current user").username
        return self._username

    async def _merge_requests(self, path: str, username: str) -> list[ChangeRequestView]:
        base = f"{self._api}/projects/{quote(path, safe='')}/merge_requests"
        listed = []
        first = f"{base}?{urlencode({'state': 'opened', 'per_page': PER_PAGE})}"
        async for page in self._pages(first, what=f"project {path}"):
            listed += self._http.decode(page, list[_MergeRequest], what="merge requests")
        relevant = [mr for mr in listed if _concerns(mr, username)]

        async def detail(iid: int) -> _MergeRequest:
            fetched = await self._http.get(f"{base}/{iid}", what=f"merge request {path}!{iid}")
            return self._http.decode(fetched, _MergeRequest, what="a merge request")

        detailed = await gather([functools.partial(detail, mr.iid) for mr in relevant])
        return [_change_request(path, mr, username) for mr in detailed]

    async def _pipelines(self, path: str, username: str) -> list[PipelineView]:
        query = urlencode({"username": username, "per_page": PIPELINES_PER_PAGE,
                           "order_by": "id", "sort": "desc"})
        url = f"{self._api}/projects/{quote(path, safe='')}/pipelines?{query}"
        fetched = await self._http.get(url, what=f"project {path}")
        return [_pipeline(path, p) for p in
                self._http.decode(fetched, list[_Pipeline], what="pipelines")]

    async def _pages(self, url: str, *, what: str):
        """Each page of an offset- or keyset-paginated listing, at most MAX_PAGES."""
        next_url: str | None = url
        for _ in range(MAX_PAGES):
            if next_url is None:
                return
            fetched = await self._http.get(next_url, what=what)
            yield fetched
            next_url = _next_page(fetched, next_url)


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


def _concerns(mr: _MergeRequest, username: str) -> bool:
    return (mr.author.username == username
            or any(user.username == username for user in mr.assignees)
            or any(user.username == username for user in mr.reviewers))


# detailed_merge_status says what blocks a merge; "mergeable" means no approval is missing.
_REVIEW = {"not_approved": "review_required", "requested_changes": "changes_requested",
           "mergeable": "approved"}
_PIPELINE_STATE = {"success": "success", "failed": "failure", "canceled": "canceled",
                   "canceling": "canceled", "skipped": "skipped", "running": "running"}


def _state(status: str) -> str:
    return _PIPELINE_STATE.get(status, "pending")


def _change_request(path: str, mr: _MergeRequest, username: str) -> ChangeRequestView:
    pipeline = mr.head_pipeline
    return ChangeRequestView(
        upstream="gitlab", repo=path, number=mr.iid, ref=f"{path}!{mr.iid}", title=mr.title,
        url=mr.web_url, author=mr.author.username, source_branch=mr.source_branch,
        target_branch=mr.target_branch, draft=mr.draft,
        review=_REVIEW.get(mr.detailed_merge_status or "", "none"),
        ci=CiView(state=_state(pipeline.status), url=pipeline.web_url) if pipeline
        else CiView(state="none"),
        mine=mr.author.username == username,
        review_requested=any(user.username == username for user in mr.reviewers),
        assigned=any(user.username == username for user in mr.assignees),
        updated_at=mr.updated_at.timestamp(),
    )


def _pipeline(path: str, pipeline: _Pipeline) -> PipelineView:
    return PipelineView(
        upstream="gitlab", repo=path, branch=pipeline.ref, sha=pipeline.sha,
        state=_state(pipeline.status), name="pipeline", url=pipeline.web_url,
        updated_at=pipeline.updated_at.timestamp(),
    )
