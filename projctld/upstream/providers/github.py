"""GitHub: my pull requests (GraphQL search) and my Actions runs per branch (REST, conditional).

Cost is what decides the shape. Per-repository `pullRequests` connections cost about 6 points a
poll for 15 repositories; two searches (`author:@me`, `review-requested:@me`) over every
configured repository cost 2 whatever the number of repositories, and one search result serves
every project for 0.9 of an interval (the snapshot's `as_of` says how old it is). Actions runs
come from REST with ETags: unchanged, they answer 304, which costs nothing.
"""

from __future__ import annotations

import functools
import time
from datetime import datetime
from urllib.parse import urlencode

import anyio
import msgspec

from projctl_client.protocol import ChangeRequestView, CiView, PipelineView
from projctld.config import GitHubConfig, ProjectConfig
from projctld.errors import UpstreamError
from projctld.upstream.providers.gather import gather
from projctld.upstream.providers.http import UpstreamHttp, next_link
from projctld.upstream.providers.model import Snapshot, latest_per_branch

# Repositories per search: qualifiers do not count against the 256-character query limit, but
# one search string per few dozen repositories keeps each well inside what GitHub accepts.
REPOS_PER_SEARCH = 40
PAGE_SIZE = 50
MAX_SEARCH_PAGES = 4
RUNS_PER_PAGE = 50
MAX_RUN_PAGES = 2

_PR_FRAGMENT = """\
fragment pr on PullRequest {
  number title url isDraft updatedAt headRefName baseRefName reviewDecision
  author { login }
  repository { nameWithOwner }
  commits(last: 1) { nodes { commit { oid statusCheckRollup { state
    contexts(first: 25) { totalCount nodes {
      __typename
      ... on CheckRun { name status conclusion detailsUrl }
      ... on StatusContext { context state targetUrl }
    } }
  } } } }
}
"""


def _search_query(aliases: list[str], *, after: bool = False) -> str:
    """One document that runs every search at once, each under its alias; with `after`, the
    next page of a single search."""
    variables = [f"$q{i}: String!" for i in range(len(aliases))]
    if after:
        variables.append("$after: String")
    cursor = ", after: $after" if after else ""
    searches = "\n".join(
        f"  {alias}: search(type: ISSUE, query: $q{i}, first: {PAGE_SIZE}{cursor}) "
        "{ issueCount pageInfo { hasNextPage endCursor } nodes { ...pr } }"
        for i, alias in enumerate(aliases)
    )
    return (f"query({', '.join(variables)}) {{\n  viewer {{ login }}\n"
            f"  rateLimit {{ cost remaining limit resetAt }}\n{searches}\n}}\n{_PR_FRAGMENT}")


class _Login(msgspec.Struct):
    login: str


class _CheckRun(msgspec.Struct, tag_field="__typename", tag="CheckRun"):
    name: str
    status: str
    conclusion: str | None = None
    detailsUrl: str | None = None


class _StatusContext(msgspec.Struct, tag_field="__typename", tag="StatusContext"):
    context: str
    state: str
    targetUrl: str | None = None


class _Contexts(msgspec.Struct):
    totalCount: int
    nodes: list[_CheckRun | _StatusContext]


class _Rollup(msgspec.Struct):
    state: str
    contexts: _Contexts


class _Commit(msgspec.Struct):
    oid: str
    statusCheckRollup: _Rollup | None = None


class _CommitNode(msgspec.Struct):
    commit: _Commit


class _Commits(msgspec.Struct):
    nodes: list[_CommitNode]


class _Repository(msgspec.Struct):
    nameWithOwner: str


class _PullRequest(msgspec.Struct):
    number: int
    title: str
    url: str
    isDraft: bool
    updatedAt: datetime
    headRefName: str
    baseRefName: str
    reviewDecision: str | None
    author: _Login | None
    repository: _Repository
    commits: _Commits


class _PageInfo(msgspec.Struct):
    hasNextPage: bool
    endCursor: str | None = None


class _Search(msgspec.Struct):
    issueCount: int
    pageInfo: _PageInfo
    nodes: list[_PullRequest]


class _GraphQLError(msgspec.Struct):
    message: str
    type: str | None = None


class _GraphQLReply(msgspec.Struct):
    data: dict[str, msgspec.Raw] | None = None
    errors: list[_GraphQLError] = []


class _Run(msgspec.Struct):
    id: int
    head_sha: str
    html_url: str
    updated_at: datetime
    name: str | None = None
    head_branch: str | None = None
    status: str | None = None
    conclusion: str | None = None


class _Runs(msgspec.Struct):
    workflow_runs: list[_Run]


class _Searched(msgspec.Struct):
    """The shared result of one round of searches."""

    login: str
    mine: list[ChangeRequestView]
    asked_at: float


class GitHub:
    upstream = "github"

    def __init__(self, http: UpstreamHttp, config: GitHubConfig, all_repos: list[str],
                 clock=time.time) -> None:
        self._http = http
        self._api = config.api_url.rstrip("/")
        self._graphql = _graphql_url(self._api)
        # Jobs of different projects drift apart with jitter; sharing for most of an interval
        # keeps the search at about one per interval however many projects there are.
        self._share_for = config.interval * 0.9
        self._repos = sorted(set(all_repos))
        self._clock = clock
        self._lock = anyio.Lock()
        self._searched: _Searched | None = None
        self._search_failed: tuple[float, UpstreamError] | None = None

    async def poll(self, project: str, config: ProjectConfig, *, fresh: bool) -> Snapshot:
        searched = await self._shared_search(0.0 if fresh else self._share_for)
        repos = set(config.github)
        runs = await gather([functools.partial(self._runs, repo, searched.login)
                             for repo in config.github])
        return Snapshot(
            change_requests=[cr for cr in searched.mine if cr.repo in repos],
            pipelines=latest_per_branch(run for repo_runs in runs for run in repo_runs),
            as_of=searched.asked_at,
        )

    async def _shared_search(self, max_age: float) -> _Searched:
        """The searches over every configured repository, run once for all projects: a caller
        reuses a result (or a failure) that began at most `max_age` before it asked."""
        asked_at = self._clock()
        async with self._lock:
            if self._searched is not None and self._searched.asked_at >= asked_at - max_age:
                return self._searched
            if self._search_failed is not None and \
                    self._search_failed[0] >= asked_at - max_age:
                raise self._search_failed[1]
            started = self._clock()
            try:
                self._searched = await self._search(started)
            except UpstreamError as exc:
                self._search_failed = (started, exc)
                raise
            self._search_failed = None
            return self._searched

    async def _search(self, asked_at: float) -> _Searched:
        chunks = [self._repos[i:i + REPOS_PER_SEARCH]
                  for i in range(0, len(self._repos), REPOS_PER_SEARCH)]
        queries = {}
        for i, chunk in enumerate(chunks):
            scope = " ".join(f"repo:{repo}" for repo in chunk)
            queries[f"mine{i}"] = f"is:pr is:open archived:false author:@me {scope}"
            queries[f"review{i}"] = f"is:pr is:open archived:false review-requested:@me {scope}"
        aliases = list(queries)
        data = await self._graphql_call(
            _search_query(aliases), {f"q{i}": queries[a] for i, a in enumerate(aliases)}
        )
        login = self._http.decode_part(data.get("viewer"), _Login, what="the viewer").login
        found: dict[str, ChangeRequestView] = {}
        for alias in aliases:
            review = alias.startswith("review")
            search = self._http.decode_part(data.get(alias), _Search, what="search results")
            nodes = list(search.nodes)
            page = 1
            while search.pageInfo.hasNextPage and page < MAX_SEARCH_PAGES:
                more = await self._graphql_call(
                    _search_query([alias], after=True),
                    {"q0": queries[alias], "after": search.pageInfo.endCursor})
                search = self._http.decode_part(more.get(alias), _Search,
                                                what="search results")
                nodes += search.nodes
                page += 1
            for node in nodes:
                view = _change_request(node, login, review_requested=review)
                earlier = found.get(view.url)
                if earlier is not None:
                    view = msgspec.structs.replace(
                        view, review_requested=view.review_requested or earlier.review_requested
                    )
                found[view.url] = view
        mine = sorted(found.values(), key=lambda cr: cr.updated_at, reverse=True)
        return _Searched(login=login, mine=mine, asked_at=asked_at)

    async def _graphql_call(self, query: str, variables: dict) -> dict[str, msgspec.Raw]:
        fetched = await self._http.post(
            self._graphql, {"query": query, "variables": variables},
            what="the pull request search", resource="graphql",
        )
        reply = self._http.decode(fetched, _GraphQLReply, what="a GraphQL reply")
        if reply.errors and not reply.data:
            first = reply.errors[0]
            if first.type == "RATE_LIMIT":  # GraphQL says so in a 200
                raise self._http.rate_limited(
                    f"GitHub's GraphQL budget is spent: {first.message[:300]}", "graphql")
            raise UpstreamError(
                f"GitHub refused the pull request search: {first.message[:300]}",
                code="not_found" if first.type == "NOT_FOUND" else "rejected",
                suggestions=["check the repository names under `github` in your projects"],
            )
        return reply.data or {}

    async def _runs(self, repo: str, login: str) -> list[PipelineView]:
        query = urlencode({"actor": login, "per_page": RUNS_PER_PAGE})
        url: str | None = f"{self._api}/repos/{repo}/actions/runs?{query}"
        views: list[PipelineView] = []
        for _ in range(MAX_RUN_PAGES):
            if url is None:
                break
            fetched = await self._http.get(url, what=f"repository {repo}")
            page = self._http.decode(fetched, _Runs, what="workflow runs")
            views += [_pipeline(repo, run) for run in page.workflow_runs if run.head_branch]
            if len(page.workflow_runs) < RUNS_PER_PAGE:
                break
            url = next_link(fetched.headers)
        return views


def _graphql_url(api: str) -> str:
    """github.com serves GraphQL at /graphql; Enterprise Server at /api/graphql beside /api/v3."""
    if api.endswith("/api/v3"):
        return api[: -len("/v3")] + "/graphql"
    return api + "/graphql"


_REVIEW = {"APPROVED": "approved", "CHANGES_REQUESTED": "changes_requested",
           "REVIEW_REQUIRED": "review_required"}
_FAILED = {"FAILURE", "TIMED_OUT", "CANCELLED", "ACTION_REQUIRED", "STARTUP_FAILURE", "ERROR"}
_PASSED = {"SUCCESS", "NEUTRAL", "SKIPPED"}


def _change_request(pr: _PullRequest, login: str, *, review_requested: bool) -> ChangeRequestView:
    commit = pr.commits.nodes[-1].commit if pr.commits.nodes else None
    author = pr.author.login if pr.author else "ghost"
    return ChangeRequestView(
        upstream="github", repo=pr.repository.nameWithOwner, number=pr.number,
        ref=f"{pr.repository.nameWithOwner}#{pr.number}", title=pr.title, url=pr.url,
        author=author, source_branch=pr.headRefName, target_branch=pr.baseRefName,
        draft=pr.isDraft, review=_REVIEW.get(pr.reviewDecision or "", "none"),
        ci=_ci(commit.statusCheckRollup if commit else None, pr.url),
        mine=author == login, review_requested=review_requested,
        updated_at=pr.updatedAt.timestamp(),
    )


def _ci(rollup: _Rollup | None, pr_url: str) -> CiView:
    if rollup is None:
        return CiView(state="none")
    passed = failed = running = 0
    failing = []
    for context in rollup.contexts.nodes:
        if isinstance(context, _CheckRun):
            name, done, result = context.name, context.status == "COMPLETED", context.conclusion
            # Only a check run can say it is under way; queued ones and statuses just wait.
            running += context.status == "IN_PROGRESS"
        else:
            name, done, result = context.context, context.state not in ("PENDING", "EXPECTED"), \
                context.state
        if not done:
            continue
        if result in _FAILED:
            failed += 1
            failing.append(name)
        elif result in _PASSED:
            passed += 1
    if rollup.state in ("FAILURE", "ERROR"):
        state = "failure"
    elif rollup.state in ("PENDING", "EXPECTED"):
        state = "running" if running else "pending"
    else:
        state = "success"
    return CiView(state=state, url=f"{pr_url}/checks", passed=passed, failed=failed,
                  running=running, failing=failing)


_RUN_RESULT = {"success": "success", "failure": "failure", "timed_out": "failure",
               "startup_failure": "failure", "action_required": "failure",
               "cancelled": "canceled", "skipped": "skipped", "neutral": "skipped",
               "stale": "skipped"}


def _pipeline(repo: str, run: _Run) -> PipelineView:
    if run.status == "completed":
        state = _RUN_RESULT.get(run.conclusion or "", "none")
    else:
        state = "running" if run.status == "in_progress" else "pending"
    return PipelineView(
        upstream="github", repo=repo, branch=run.head_branch or "", sha=run.head_sha,
        state=state, name=run.name or "", url=run.html_url, updated_at=run.updated_at.timestamp(),
    )
