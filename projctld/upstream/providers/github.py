"""GitHub: my pull requests (GraphQL search) and my Actions runs per repository (REST, conditional).

Cost decides the shape. Four searches over every configured repository (`author:@me`,
`review-requested:@me`, `assignee:@me`, `reviewed-by:@me`) cost 2 points a poll whatever the
number of repositories (GitHub counts the connections a query could need, per hundred), and one
search result serves every project for 0.9 of an interval (the snapshot's `as_of` says how old
it is). Actions runs come from REST with ETags: unchanged, they answer 304, which costs nothing.

GraphQL answers 200 with `data` and `errors` side by side, and each part is kept or named:

- a `repo:` qualifier GitHub cannot search (a typo, a repository renamed or out of the token's
  reach) fails the whole search, so `repository(owner, name)` is asked for every repository (at
  the first poll, after a failed search, and for known-bad ones every few minutes): it answers
  each apart, follows renames, and tells a missing repository from a forbidden one; the search
  then runs over the good ones and each bad one is a problem of its own;
- a pull request hidden by an organisation's SAML single sign-on is a `null` node with a
  FORBIDDEN error (`extensions.saml_failure`): the other nodes stay, the organisation is named
  with where to authorise the token;
- RATE_LIMITED (RATE_LIMIT in older answers) is a rate limit, whatever else came;
- check counts come from the rollup's own `checkRunCountsByState` and
  `statusContextCountsByState`, exact however many checks there are, and the contexts are
  paged until every failing one is named.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import anyio
import msgspec

from projctl_client.protocol import ChangeRequestView, CiView, PipelineView, SourceProblem
from projctld.config import GitHubConfig, ProjectConfig
from projctld.errors import UpstreamError
from projctld.logging import get_logger
from projctld.upstream.providers.gather import gather, gather_parts
from projctld.upstream.providers.graphql import GraphQLError, GraphQLReply, OptionalFields
from projctld.upstream.providers.http import Fetched, UpstreamHttp, next_link
from projctld.upstream.providers.model import Snapshot, latest_per_branch

log = get_logger(__name__)

# Repositories per search: qualifiers do not count against the 256-character query limit, but
# one search string per few dozen repositories keeps each well inside what GitHub accepts.
REPOS_PER_SEARCH = 40
# Pull requests per search page. GitHub counts a query's cost in the requests its connections
# could need: each search is one, and the contexts of each pull request's rollup one per node,
# so four searches of 50 cost (4 + 4 * 50) / 100 = 2 points; more pages follow when needed.
PAGE_SIZE = 50
MAX_SEARCH_PAGES = 4
# Contexts per request: their number does not change the cost (one request per rollup).
CONTEXTS_PAGE = 100
MAX_CONTEXT_PAGES = 5
RUNS_PER_PAGE = 50
MAX_RUN_PAGES = 2
# A repository that failed its check is asked about again after this many seconds.
RECHECK_AFTER = 300.0
# The searches, by role; a pull request found by several has every role.
SEARCHES = {"mine": "author:@me", "review": "review-requested:@me",
            "assigned": "assignee:@me", "reviewed": "reviewed-by:@me"}
# The hub's team scope: every open pull request of the repositories, in one search; whose
# each is, each device works out from its author (the hub's user identities).
TEAM_SEARCHES = {"open": ""}
RATE_LIMIT_TYPES = ("RATE_LIMITED", "RATE_LIMIT")

_CONTEXT_FRAGMENT = """\
fragment context on StatusCheckRollupContext {
  __typename
  ... on CheckRun { name status conclusion detailsUrl startedAt }
  ... on StatusContext { context state targetUrl createdAt }
}
"""
# Fields that an older GitHub Enterprise Server may not have (the counts came in GHES 3.x,
# mergeStateStatus was a preview, PullRequest.statusCheckRollup is newer than the head commit's):
# a search that GitHub refuses for one of them (undefinedField) is asked again without it, and
# the instance is remembered to lack it.
OPTIONAL_FIELDS = ("mergeable", "mergeStateStatus", "checkRunCountsByState",
                   "statusCheckRollup", "statusContextCountsByState")


def _pr_fragment(omit: frozenset[str] = frozenset()) -> str:
    def field(name: str, text: str) -> str:
        return "" if name in omit else text

    rollup = f"""statusCheckRollup {{ id state
    contexts(first: {CONTEXTS_PAGE}) {{
      {field("checkRunCountsByState", "checkRunCountsByState { state count }")}
      {field("statusContextCountsByState", "statusContextCountsByState { state count }")}
      pageInfo {{ hasNextPage endCursor }}
      nodes {{ ...context }}
    }} }}"""
    # The pull request's own rollup (of its head ref) costs no commits connection; where it
    # is missing, the head commit's (commits(last: 1) costs one request per pull request).
    if "statusCheckRollup" in omit:
        rollup = f"commits(last: 1) {{ nodes {{ commit {{ {rollup} }} }} }}"
    return f"""\
fragment pr on PullRequest {{
  number title url isDraft updatedAt headRefName baseRefName reviewDecision
  {field("mergeable", "mergeable")} {field("mergeStateStatus", "mergeStateStatus")}
  author {{ login }}
  repository {{ nameWithOwner }}
  {rollup}
}}
"""


def _search_query(aliases: list[str], *, after: bool = False,
                  omit: frozenset[str] = frozenset()) -> str:
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
            f"  rateLimit {{ cost remaining limit resetAt }}\n{searches}\n}}\n"
            f"{_pr_fragment(omit)}{_CONTEXT_FRAGMENT}")


def _repositories_query(count: int) -> str:
    """`repository(owner, name)` for each of `count` repositories: each answers apart."""
    variables = ", ".join(f"$o{i}: String!, $n{i}: String!" for i in range(count))
    fields = "\n".join(f"  r{i}: repository(owner: $o{i}, name: $n{i}) "
                       "{ nameWithOwner isArchived }" for i in range(count))
    return f"query({variables}) {{\n{fields}\n}}\n"


def _contexts_query(count: int) -> str:
    """The next page of contexts of `count` rollups, by node id."""
    variables = ", ".join(f"$id{i}: ID!, $after{i}: String" for i in range(count))
    fields = "\n".join(
        f"  c{i}: node(id: $id{i}) {{ ... on StatusCheckRollup {{ "
        f"contexts(first: {CONTEXTS_PAGE}, after: $after{i}) {{ "
        "pageInfo { hasNextPage endCursor } nodes { ...context } } } }"
        for i in range(count))
    return f"query({variables}) {{\n{fields}\n}}\n{_CONTEXT_FRAGMENT}"


class _Login(msgspec.Struct):
    login: str


class _CheckRun(msgspec.Struct, tag_field="__typename", tag="CheckRun"):
    name: str
    status: str
    conclusion: str | None = None
    detailsUrl: str | None = None
    startedAt: datetime | None = None


class _StatusContext(msgspec.Struct, tag_field="__typename", tag="StatusContext"):
    context: str
    state: str
    targetUrl: str | None = None
    createdAt: datetime | None = None


class _StateCount(msgspec.Struct):
    state: str
    count: int


class _PageInfo(msgspec.Struct):
    hasNextPage: bool
    endCursor: str | None = None


class _Contexts(msgspec.Struct):
    nodes: list[_CheckRun | _StatusContext]
    # None where GitHub Enterprise Server predates the counts: then the nodes are counted.
    checkRunCountsByState: list[_StateCount] | None = None
    statusContextCountsByState: list[_StateCount] | None = None
    pageInfo: _PageInfo | None = None
    totalCount: int | None = None


class _Rollup(msgspec.Struct):
    state: str
    contexts: _Contexts
    id: str | None = None


class _Commit(msgspec.Struct):
    statusCheckRollup: _Rollup | None = None


class _CommitNode(msgspec.Struct):
    commit: _Commit


class _Commits(msgspec.Struct):
    nodes: list[_CommitNode]


class _Repository(msgspec.Struct):
    nameWithOwner: str
    isArchived: bool = False


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
    mergeable: str | None = None
    mergeStateStatus: str | None = None
    statusCheckRollup: _Rollup | None = None
    commits: _Commits | None = None  # where the pull request's own rollup is missing

    @property
    def rollup(self) -> _Rollup | None:
        if self.commits is not None:
            nodes = self.commits.nodes
            return nodes[-1].commit.statusCheckRollup if nodes else None
        return self.statusCheckRollup


class _Search(msgspec.Struct):
    issueCount: int
    pageInfo: _PageInfo
    nodes: list[msgspec.Raw]  # a node is `null` where GitHub hides it (SAML) or failed it


class _Run(msgspec.Struct):
    id: int
    head_sha: str
    html_url: str
    updated_at: datetime
    name: str | None = None
    head_branch: str | None = None
    status: str | None = None
    conclusion: str | None = None
    run_started_at: datetime | None = None
    created_at: datetime | None = None


class _Runs(msgspec.Struct):
    workflow_runs: list[_Run]


class _Searched(msgspec.Struct):
    """The shared result of one round of searches."""

    login: str
    mine: list[ChangeRequestView]
    asked_at: float
    # What could not be read, by repository (lower case) or for every repository ("*").
    problems: dict[str, SourceProblem]
    hidden: list[SourceProblem]  # what single sign-on hid, by organisation
    canonical: dict[str, str]  # a configured name (lower case) -> GitHub's name, renames followed


class _Checked(msgspec.Struct):
    """What `repository(owner, name)` said of one configured repository."""

    at: float
    name: str | None = None  # GitHub's own name; None: it could not be read
    problem: SourceProblem | None = None


class GitHub:
    def __init__(self, http: UpstreamHttp, config: GitHubConfig, all_repos: list[str], *,
                 name: str = "github", clock=time.time, stuck_after: float = 43200.0,
                 scope: str = "mine") -> None:
        self.upstream = name
        # "team" (the hub): every open pull request and every recent run, not the viewer's.
        self._team = scope == "team"
        self._searches = TEAM_SEARCHES if self._team else SEARCHES
        self._http = http
        self.http = http  # the inbox (upstream/notify/inbox.py) reads through it too
        self._api = config.api_url.rstrip("/")
        self._graphql = _graphql_url(self._api)
        self._web = _web_url(self._api)
        # Jobs of different projects drift apart with jitter; sharing for most of an interval
        # keeps the search at about one per interval however many projects there are.
        self._share_for = config.interval * 0.9
        self._repos = sorted({repo.lower(): repo for repo in all_repos}.values())
        self._clock = clock
        self._lock = anyio.Lock()
        self._searched: _Searched | None = None
        self._search_failed: tuple[float, UpstreamError] | None = None
        self._checked: dict[str, _Checked] = {}  # by configured name, lower case
        self._optional = OptionalFields(OPTIONAL_FIELDS)  # and those this instance lacks

    async def poll(self, project: str, config: ProjectConfig, *, fresh: bool) -> Snapshot:
        searched = await self._shared_search(0.0 if fresh else self._share_for)
        repos = config.parts(self.upstream)
        problems = [msgspec.structs.replace(found, part=repo) for repo in repos
                    if (found := searched.problems.get(repo.lower()))]
        problems += [found for found in searched.problems.values() if found.part == "*"]
        good = [repo for repo in repos if repo.lower() not in searched.problems]
        names = {repo: searched.canonical.get(repo.lower(), repo) for repo in good}
        wanted = {name.lower() for name in names.values()}
        runs, failed_runs = await gather_parts({
            repo: functools.partial(self._runs, name, searched.login)
            for repo, name in names.items()})
        owners = {name.split("/")[0].lower() for name in names.values()}
        # What single sign-on hid concerns the projects with repositories of that organisation;
        # when GitHub did not say which, every project.
        problems += failed_runs + [hidden for hidden in searched.hidden
                                   if hidden.part == "*" or hidden.part.lower() in owners]
        return Snapshot(
            change_requests=[cr for cr in searched.mine if cr.repo.lower() in wanted],
            pipelines=latest_per_branch(run for repo in names if repo in runs
                                        for run in runs[repo]),
            as_of=searched.asked_at,
            problems=problems,
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
        """Check the repositories that need it beside the searches; when a search fails
        because of a repository, check them all and search again without the bad ones."""
        due = [repo for repo in self._repos if self._check_due(repo, asked_at)]
        searched = self._searchable()
        outcome: list[Any] = [None, None]

        async def search() -> None:
            outcome[0] = await self._search_once(searched)

        async def check() -> None:
            outcome[1] = await self._check(due, asked_at)

        await gather([search, check] if due else [search])
        result = outcome[0]
        if isinstance(result, UpstreamError):
            # Which repository spoiled it: ask each (again), then search without the bad ones
            # and by the names renamed ones answer to now.
            if set(due) != set(self._repos):
                await self._check(self._repos, asked_at)
            retry = self._searchable()
            if retry == searched:
                raise result
            result = await self._search_once(retry) if retry else None
            if isinstance(result, UpstreamError):
                raise result
        # Nothing to search (every repository is bad): no login is needed, no runs are asked.
        login, found, hidden, problems = result or ("", [], [], {})
        for repo in self._repos:
            checked = self._checked.get(repo.lower())
            if checked is not None and checked.problem is not None:
                problems[repo.lower()] = checked.problem
        if hidden:
            hidden = self._name_hidden(hidden)
        return _Searched(
            login=login, mine=sorted(found, key=lambda cr: cr.updated_at, reverse=True),
            asked_at=asked_at, problems=problems, hidden=hidden,
            canonical={repo: checked.name for repo, checked in self._checked.items()
                       if checked.name},
        )

    def _check_due(self, repo: str, now: float) -> bool:
        checked = self._checked.get(repo.lower())
        return checked is None or (checked.name is None and now - checked.at >= RECHECK_AFTER)

    def _searchable(self) -> list[str]:
        """The names to search: every repository not known to be bad, by its current name."""
        return [self._name(repo) for repo in self._repos
                if (checked := self._checked.get(repo.lower())) is None or checked.name]

    def _name(self, repo: str) -> str:
        """The name GitHub answers to now (after a rename), else the configured one."""
        checked = self._checked.get(repo.lower())
        return checked.name if checked is not None and checked.name else repo

    async def _check(self, repos: list[str], now: float) -> None:
        """Ask `repository(owner, name)` of each: a name GitHub follows (renames), or why not."""
        variables: dict[str, str] = {}
        for i, repo in enumerate(repos):
            variables[f"o{i}"], _, variables[f"n{i}"] = repo.partition("/")
        reply, fetched = await self._graphql_call(
            _repositories_query(len(repos)), variables, what="the configured repositories")
        if reply.data is None:  # the query itself was refused: it says nothing of any one
            first = (reply.errors or [GraphQLError("no data in the answer")])[0]
            raise UpstreamError(
                f"{self._http.name} refused to look up the configured repositories: "
                f"{first.message[:300]}", code="rejected", suggestions=self._http.hints.rejected)
        errors = {error.alias: error for error in reply.errors if error.alias}
        for i, repo in enumerate(repos):
            raw = (reply.data or {}).get(f"r{i}")
            found = None if _null(raw) else self._http.decode_part(
                raw, _Repository, what=f"repository {repo}")
            if found is not None:
                self._checked[repo.lower()] = _Checked(now, name=found.nameWithOwner)
                continue
            error = errors.get(f"r{i}")
            self._checked[repo.lower()] = _Checked(
                now, problem=self._repository_problem(repo, error, fetched))

    def _repository_problem(self, repo: str, error: GraphQLError | None,
                            fetched: Fetched) -> SourceProblem:
        message = error.message if error else ""
        if error is not None and _saml(error):
            return self._saml_problem(repo, repo.split("/")[0], fetched)
        if error is not None and error.type == "FORBIDDEN":
            return SourceProblem(
                part=repo, code="forbidden",
                message=f"{self._http.name} forbids the token to read {repo}: {message[:200]}",
                suggestions=self._http.hints.forbidden)
        if error is not None and error.type != "NOT_FOUND":
            return SourceProblem(
                part=repo, code="rejected",
                message=f"{self._http.name} could not look up {repo}: {message[:200]}",
                suggestions=self._http.hints.rejected)
        return SourceProblem(
            part=repo, code="not_found",
            message=f"{self._http.name} has no repository {repo}, or the token cannot see it",
            suggestions=[f"check the name in your config against {self._web}/{repo}",
                         *self._http.hints.not_found[1:]])

    def _saml_problem(self, part: str, org: str | None, fetched: Fetched) -> SourceProblem:
        """`org` is None when GitHub did not say which organisation it is."""
        url = _sso_url(fetched.headers.get("x-github-sso", "")) or \
            f"{self._web}/settings/tokens"
        which = f"the {org} organisation" if org else "an organisation"
        return SourceProblem(
            part=part, code="saml",
            message=f"{which} enforces SAML single sign-on and the token is not "
                    f"authorised for it, so {self._http.name} hides its pull requests",
            suggestions=[f"authorise the token for {org or 'that organisation'}: open {url} "
                         "(for a personal access token: Settings > Developer settings > Tokens "
                         f"> Configure SSO > Authorize next to {org or 'the organisation'}); "
                         "then `projctl refresh`",
                         "or, with the GitHub CLI's token: gh auth refresh"])

    def _name_hidden(self, hidden: list[SourceProblem]) -> list[SourceProblem]:
        """Hidden nodes say nothing of whose they are: name the organisations whose configured
        repositories single sign-on hides, if the checks found them."""
        saml_repos = [repo for repo in self._repos
                      if (checked := self._checked.get(repo.lower())) is not None
                      and checked.problem is not None and checked.problem.code == "saml"]
        if saml_repos:
            return []  # each such repository is a problem of its own already
        return hidden

    async def _search_once(self, names: list[str]) -> tuple[
            str, list[ChangeRequestView], list[SourceProblem], dict[str, SourceProblem]
    ] | UpstreamError | None:
        """Every search over the repositories `names`: the login, the pull requests found,
        what single sign-on hid, and what was cut short; an UpstreamError (returned) when a
        search failed."""
        if not names:
            return None
        chunks = [names[i:i + REPOS_PER_SEARCH] for i in range(0, len(names), REPOS_PER_SEARCH)]
        queries = {}
        for i, chunk in enumerate(chunks):
            scope = " ".join(f"repo:{repo}" for repo in chunk)
            for role, qualifier in self._searches.items():
                queries[f"{role}{i}"] = " ".join(
                    filter(None, ("is:pr is:open archived:false", qualifier, scope)))
        aliases = list(queries)
        variables = {f"q{i}": queries[a] for i, a in enumerate(aliases)}
        while True:  # at most once per optional field: each round leaves out more
            reply, fetched = await self._graphql_call(
                _search_query(aliases, omit=self._optional.omit), variables,
                what="the pull request search")
            missing = self._optional.learn(reply.errors)
            if not missing:
                break
            log.info("github_fields_missing", upstream=self.upstream, fields=sorted(missing))
        failed = self._failed_search(reply, aliases)
        if failed is not None:
            return failed
        data = reply.data or {}
        login = self._http.decode_part(data.get("viewer"), _Login, what="the viewer").login
        pulls: dict[str, tuple[_PullRequest, set[str]]] = {}  # by URL, with the roles found
        hidden = 0
        errors = list(reply.errors)
        truncated: dict[str, SourceProblem] = {}
        for alias in aliases:
            role = alias.rstrip("0123456789")
            search = self._http.decode_part(data.get(alias), _Search, what="search results")
            nodes = list(search.nodes)
            page = 1
            while search.pageInfo.hasNextPage and page < MAX_SEARCH_PAGES:
                more, _ = await self._graphql_call(
                    _search_query([alias], after=True, omit=self._optional.omit),
                    {"q0": queries[alias], "after": search.pageInfo.endCursor},
                    what="the pull request search")
                failed = self._failed_search(more, [alias])
                if failed is not None:
                    return failed
                search = self._http.decode_part((more.data or {}).get(alias), _Search,
                                                what="search results")
                nodes += search.nodes
                errors += more.errors
                page += 1
            if search.pageInfo.hasNextPage:
                truncated["*"] = SourceProblem(
                    part="*", code="truncated",
                    message=f"more than {MAX_SEARCH_PAGES * PAGE_SIZE} open pull requests match "
                            f"`{self._searches[role] or 'is:open'}`: only the "
                            f"{MAX_SEARCH_PAGES * PAGE_SIZE} newest are shown",
                    suggestions=["close or merge some, or split the repositories between "
                                 "projects"])
            # A hidden pull request is a null node in every search that finds it: count the
            # most any one search hid.
            hidden = max(hidden, sum(1 for node in nodes if _null(node)))
            # A node that is not a pull request (nothing was asked of it) is `{}`.
            for node in nodes:
                if _null(node) or bytes(node).strip() == b"{}":
                    continue
                pull = self._http.decode_part(node, _PullRequest, what="a pull request")
                pulls.setdefault(pull.url, (pull, set()))[1].add(role)
        found = list(pulls.values())
        views = await self._complete_failing(
            [pull for pull, _ in found],
            [_change_request(pull, login, self.upstream) for pull, _ in found])
        for index, (_, roles) in enumerate(found):
            for role in roles:
                views[index] = _with_role(views[index], role)
        hidden_problems = self._hidden(errors, fetched, hidden) if hidden else []
        return login, views, hidden_problems, truncated

    def _failed_search(self, reply: GraphQLReply, aliases: list[str]) -> UpstreamError | None:
        """The search's own failure (not a node's): GitHub nulls `data` when a non-null search
        fails, so any error on a search alias, or no data at all, is one."""
        failing = [error for error in reply.errors
                   if error.alias in aliases and (not error.path or len(error.path) == 1)]
        if reply.data is not None and not failing and \
                not any(_null(reply.data.get(alias)) for alias in aliases):
            return None
        first = (failing or reply.errors or [GraphQLError("no data in the answer")])[0]
        return UpstreamError(
            f"{self._http.name} refused the pull request search: {first.message[:300]}",
            code="not_found" if first.type in ("NOT_FOUND", "INVALID") else "rejected",
            suggestions=self._http.hints.not_found)

    def _hidden(self, errors: list[GraphQLError], fetched: Fetched,
                count: int) -> list[SourceProblem]:
        """What null nodes hide: an organisation's single sign-on, named where GitHub says."""
        saml = [error for error in errors if _saml(error)]
        org = _sso_org(fetched.headers.get("x-github-sso", ""))
        if saml:
            problem = self._saml_problem(org or "*", org, fetched)
            what = "a pull request" if count == 1 else f"at least {count} pull requests"
            return [msgspec.structs.replace(
                problem, message=f"{what} hidden: {problem.message}")]
        message = next((error.message for error in errors if error.path), "no reason given")
        return [SourceProblem(part="*", code="rejected",
                              message=f"{self._http.name} left out {count} pull requests: "
                                      f"{message[:200]}",
                              suggestions=self._http.hints.forbidden)]

    async def _complete_failing(self, pulls: list[_PullRequest],
                                views: list[ChangeRequestView]) -> list[ChangeRequestView]:
        """Page the contexts of each pull request whose failing checks are not all named yet."""
        wanting: dict[int, _Rollup] = {}
        for index, pull in enumerate(pulls):
            rollup, view = pull.rollup, views[index]
            if (rollup is None or view.ci is None or rollup.id is None
                    or rollup.contexts.pageInfo is None
                    or not rollup.contexts.pageInfo.hasNextPage
                    or len(view.ci.failing) >= view.ci.failed):
                continue
            wanting[index] = rollup
        cursors = {index: rollup.contexts.pageInfo.endCursor  # type: ignore[union-attr]
                   for index, rollup in wanting.items()}
        extra: dict[int, list[_CheckRun | _StatusContext]] = {index: [] for index in wanting}
        for _ in range(MAX_CONTEXT_PAGES):
            if not cursors:
                break
            order = list(cursors)
            variables: dict[str, str | None] = {}
            for i, index in enumerate(order):
                variables[f"id{i}"] = wanting[index].id
                variables[f"after{i}"] = cursors[index]
            reply, _ = await self._graphql_call(_contexts_query(len(order)), variables,
                                                what="the checks of a pull request")
            cursors = {}
            for i, index in enumerate(order):
                raw = (reply.data or {}).get(f"c{i}")
                page = None if _null(raw) else self._http.decode_part(
                    raw, _RollupOnly, what="checks")
                if page is None:
                    continue
                contexts = page.contexts
                extra[index] += contexts.nodes
                failing = views[index].ci.failing + _failing(extra[index])  # type: ignore
                if contexts.pageInfo is not None and contexts.pageInfo.hasNextPage \
                        and len(failing) < views[index].ci.failed:  # type: ignore[union-attr]
                    cursors[index] = contexts.pageInfo.endCursor
        for index, more in extra.items():
            ci = views[index].ci
            assert ci is not None
            names = list(dict.fromkeys([*ci.failing, *_failing(more)]))
            views[index] = msgspec.structs.replace(
                views[index], ci=msgspec.structs.replace(ci, failing=names))
        return views

    async def _graphql_call(self, query: str, variables: dict, *,
                            what: str) -> tuple[GraphQLReply, Fetched]:
        fetched = await self._http.post(self._graphql, {"query": query, "variables": variables},
                                        what=what, resource="graphql")
        reply = self._http.decode(fetched, GraphQLReply, what="a GraphQL reply")
        limited = [error for error in reply.errors if error.type in RATE_LIMIT_TYPES]
        if limited:  # GraphQL says so in a 200, with or without data
            raise self._http.rate_limited(
                f"{self._http.name}'s GraphQL budget is spent: {limited[0].message[:300]}",
                "graphql")
        return reply, fetched

    async def _runs(self, repo: str, login: str) -> list[PipelineView]:
        # The team's runs (the hub): every actor's; a device picks its branches from them.
        query = urlencode({"per_page": RUNS_PER_PAGE} if self._team else
                          {"actor": login, "per_page": RUNS_PER_PAGE})
        url: str | None = f"{self._api}/repos/{repo}/actions/runs?{query}"
        views: list[PipelineView] = []
        for _ in range(MAX_RUN_PAGES):
            if url is None:
                break
            fetched = await self._http.get(url, what=f"repository {repo}")
            page = self._http.decode(fetched, _Runs, what="workflow runs")
            views += [_pipeline(repo, run, self.upstream) for run in page.workflow_runs
                      if run.head_branch]
            if len(page.workflow_runs) < RUNS_PER_PAGE:
                break
            url = next_link(fetched.headers)
        return views


class _RollupOnly(msgspec.Struct):
    contexts: _Contexts


def _saml(error: GraphQLError) -> bool:
    """An error of a node that an organisation's SAML single sign-on hides."""
    return bool((error.extensions or {}).get("saml_failure")) or "SAML" in error.message


def _null(raw: msgspec.Raw | None) -> bool:
    """A part of the answer that is missing or `null`."""
    return raw is None or bytes(raw).strip() == b"null"


def _with_role(view: ChangeRequestView, role: str) -> ChangeRequestView:
    flags = {"review": "review_requested", "assigned": "assigned", "reviewed": "reviewed"}
    if role not in flags:
        return view
    return msgspec.structs.replace(view, **{flags[role]: True})


def _graphql_url(api: str) -> str:
    """github.com serves GraphQL at /graphql; Enterprise Server at /api/graphql beside /api/v3."""
    if api.endswith("/api/v3"):
        return api[: -len("/v3")] + "/graphql"
    return api + "/graphql"


def _web_url(api: str) -> str:
    """https://github.com for api.github.com; https://HOST for Enterprise's HOST/api/v3."""
    if api.endswith("/api/v3"):
        return api[: -len("/api/v3")]
    return re.sub(r"//api\.", "//", api, count=1)


_SSO_URL = re.compile(r"url=(\S+)")
_SSO_ORG = re.compile(r"/orgs/([^/]+)/sso")


def _sso_url(header: str) -> str | None:
    """The authorisation URL of `X-GitHub-SSO: required; url=...`."""
    match = _SSO_URL.search(header)
    return match[1].rstrip(";,") if match else None


def _sso_org(header: str) -> str | None:
    match = _SSO_ORG.search(header)
    return match[1] if match else None


_REVIEW = {"APPROVED": "approved", "CHANGES_REQUESTED": "changes_requested",
           "REVIEW_REQUIRED": "review_required"}
_CONFLICTS = {"MERGEABLE": False, "CONFLICTING": True}
# Check run states (CheckRunState, what the counts are by) and conclusions, and status states.
_FAILED = {"FAILURE", "TIMED_OUT", "CANCELLED", "ACTION_REQUIRED", "STARTUP_FAILURE", "ERROR"}
_PASSED = {"SUCCESS", "NEUTRAL", "SKIPPED", "STALE"}
_RUNNING = {"IN_PROGRESS"}
_WAITING = {"QUEUED", "PENDING", "WAITING", "REQUESTED", "EXPECTED"}


def _change_request(pr: _PullRequest, login: str, upstream: str = "github"
                    ) -> ChangeRequestView:
    author = pr.author.login if pr.author else "ghost"
    return ChangeRequestView(
        upstream=upstream, repo=pr.repository.nameWithOwner, number=pr.number,
        ref=f"{pr.repository.nameWithOwner}#{pr.number}", title=pr.title, url=pr.url,
        author=author, source_branch=pr.headRefName, target_branch=pr.baseRefName,
        draft=pr.isDraft, review=_REVIEW.get(pr.reviewDecision or "", "none"),
        ci=_ci(pr.rollup, pr.url),
        mine=author == login, updated_at=pr.updatedAt.timestamp(),
        conflicts=_CONFLICTS.get(pr.mergeable or ""),
        merge_status=pr.mergeStateStatus.lower() if pr.mergeStateStatus else None,
    )


def _ci(rollup: _Rollup | None, pr_url: str) -> CiView:
    if rollup is None:
        return CiView(state="none")
    contexts = rollup.contexts
    counts: dict[str, int] = {}
    if contexts.checkRunCountsByState is not None or \
            contexts.statusContextCountsByState is not None:
        for entry in [*(contexts.checkRunCountsByState or []),
                      *(contexts.statusContextCountsByState or [])]:
            counts[entry.state] = counts.get(entry.state, 0) + entry.count
    else:  # no counts (an older Enterprise Server): what the nodes say
        for context in contexts.nodes:
            counts[_context_state(context)] = counts.get(_context_state(context), 0) + 1

    def total(states: set[str]) -> int:
        return sum(count for state, count in counts.items() if state in states)

    running = total(_RUNNING)
    if rollup.state in ("FAILURE", "ERROR"):
        state = "failure"
    elif rollup.state in ("PENDING", "EXPECTED"):
        state = "running" if running else "pending"
    else:
        state = "success"
    started = [started for context in contexts.nodes
               if (started := _started(context)) is not None]
    return CiView(state=state, url=f"{pr_url}/checks", passed=total(_PASSED),
                  failed=total(_FAILED), running=running, pending=total(_WAITING),
                  failing=_failing(contexts.nodes), started_at=min(started, default=None))


def _context_state(context: _CheckRun | _StatusContext) -> str:
    """A node's state in the words of the counts (CheckRunState, StatusState)."""
    if isinstance(context, _StatusContext):
        return context.state
    if context.status == "COMPLETED":
        return context.conclusion or "COMPLETED"
    return context.status


def _failing(contexts: Iterable[_CheckRun | _StatusContext]) -> list[str]:
    return [context.name if isinstance(context, _CheckRun) else context.context
            for context in contexts if _context_state(context) in _FAILED]


def _started(context: _CheckRun | _StatusContext) -> float | None:
    """When an unfinished check started (statuses: when it was posted)."""
    if _context_state(context) not in _RUNNING | _WAITING:
        return None
    moment = context.startedAt if isinstance(context, _CheckRun) else context.createdAt
    return moment.timestamp() if moment else None


_RUN_RESULT = {"success": "success", "failure": "failure", "timed_out": "failure",
               "startup_failure": "failure", "action_required": "failure",
               "cancelled": "canceled", "skipped": "skipped", "neutral": "skipped",
               "stale": "skipped"}


def _pipeline(repo: str, run: _Run, upstream: str = "github") -> PipelineView:
    if run.status == "completed":
        state = _RUN_RESULT.get(run.conclusion or "", "none")
    else:
        state = "running" if run.status == "in_progress" else "pending"
    started = run.run_started_at or run.created_at
    return PipelineView(
        upstream=upstream, repo=repo, branch=run.head_branch or "", sha=run.head_sha,
        state=state, name=run.name or "", url=run.html_url, updated_at=run.updated_at.timestamp(),
        started_at=started.timestamp() if started else None,
    )
