"""GitHub's issue search over the dataset: the qualifiers a pull request search uses, as GitHub
reads them (https://docs.github.com/search-github/searching-on-github/searching-issues-and-pull-requests).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from projctld.sandbox.dataset import PEOPLE, Dataset, PullRequest

# GitHub's words when a repo: qualifier names a repository that does not exist or that the token
# cannot see (REST: 422 "Validation Failed", e.g. googleapis/release-please#948), and when only
# user qualifiers do (peakoss/anti-slop#7).
UNSEARCHABLE = ("The listed users and repositories cannot be searched either because the "
                "resources do not exist or you do not have permission to view them.")
UNSEARCHABLE_USERS = ("The listed users cannot be searched either because the users do not "
                      "exist or you do not have permission to view the users.")
# "Regardless of the number of matches, a maximum of 1,000 results will be available" (schema).
RESULT_LIMIT = 1000

_TERM = re.compile(r'-?[\w-]+:"[^"]*"|"[^"]*"|\S+')
# Qualifiers whose value is a login (`@me` is the viewer).
_KINDS = {"is": {"pr", "issue", "open", "closed", "merged", "unmerged", "draft"},
          "type": {"pr", "issue"}, "state": {"open", "closed"}}
_USER_KEYS = {"author", "assignee", "review-requested", "user-review-requested", "reviewed-by"}
_SORTS: dict[str, Callable[[PullRequest], float]] = {
    "updated": lambda p: p.updated_at,
    "created": lambda p: p.created_at or p.updated_at,
}


class SearchRefused(Exception):
    """The search cannot run at all (GitHub: 422 in REST, an INVALID error in GraphQL)."""


def search_pulls(data: Dataset, query: str) -> list[PullRequest]:
    """The pull requests `query` finds, newest update first unless a sort: qualifier says.

    Several repo: (or org:/user:) qualifiers widen the search; every other qualifier narrows it,
    and a leading "-" negates it. Unknown qualifiers and free words are matched against titles.
    Issues are not modelled, so `is:issue` finds nothing.
    """
    me = data.github_login.lower()
    users = {me, *(login.lower() for login, _ in PEOPLE), *(n.lower() for n in data.names)}
    owners = {repo.split("/")[0].lower() for repo in data.github_repos}
    repos = {repo.lower(): repo for repo in data.github_repos}
    tests: list[Callable[[PullRequest], bool]] = []
    scopes: list[Callable[[PullRequest], bool]] = []
    words: list[str] = []
    bad_repos = bad_users = False
    sort, descending = "updated", True
    for term in _TERM.findall(query):
        negate = term.startswith("-") and ":" in term
        key, colon, value = term.removeprefix("-").partition(":")
        key, value = key.lower(), value.strip('"')
        lowered = value.lower()
        login = me if lowered == "@me" else lowered
        test: Callable[[PullRequest], bool] | None = None
        if not colon or not value:
            words.append(term.strip('"').lower())
            continue
        if lowered in _KINDS.get(key, ()):
            test = _is(lowered)
        elif key in ("archived", "draft") and lowered in ("true", "false"):
            wanted = lowered == "true"
            test = ((lambda p, w=wanted: (p.repo in data.archived) == w) if key == "archived"
                    else (lambda p, w=wanted: p.draft == w))
        elif key in _USER_KEYS:
            bad_users |= login not in users
            test = _by_user(key, login)
        elif key == "repo":
            repo = repos.get(lowered)
            bad_repos |= repo is None
            test = lambda p, r=repo: p.repo == r  # noqa: E731
        elif key in ("org", "user"):
            bad_users |= lowered not in owners and lowered not in users
            test = lambda p, o=lowered: p.repo.split("/")[0].lower() == o  # noqa: E731
        elif key in ("head", "base"):
            test = (lambda p, v=value: p.head_ref == v) if key == "head" else \
                (lambda p, v=value: p.base_ref == v)
        elif key == "sort" and lowered.rsplit("-", 1)[0] in _SORTS:
            sort, _, order = lowered.partition("-")
            descending = order != "asc"
            continue
        else:
            words.append(term.lower())
            continue
        if negate:
            tests.append(lambda p, t=test: not t(p))
        elif key in ("repo", "org", "user"):
            scopes.append(test)
        else:
            tests.append(test)
    if bad_repos:
        raise SearchRefused(UNSEARCHABLE)
    if bad_users:
        raise SearchRefused(UNSEARCHABLE_USERS)
    found = [
        pull for repo in data.github_repos for pull in data.pulls.get(repo, [])
        if (not scopes or any(scope(pull) for scope in scopes))
        and all(test(pull) for test in tests)
        and all(word in pull.title.lower() for word in words)
    ]
    found.sort(key=_SORTS[sort], reverse=descending)
    return found


def _is(value: str) -> Callable[[PullRequest], bool]:
    if value == "pr":
        return lambda p: True
    if value == "issue":
        return lambda p: False
    if value == "draft":
        return lambda p: p.draft
    if value == "closed":  # a merged pull request is closed too
        return lambda p: p.state in ("closed", "merged")
    if value == "unmerged":  # open ones too: `is:closed is:unmerged` is the usual pair
        return lambda p: p.state != "merged"
    return lambda p: p.state == value


def _by_user(key: str, login: str) -> Callable[[PullRequest], bool]:
    if key == "author":
        return lambda p: p.author.lower() == login
    if key == "assignee":
        return lambda p: login in (a.lower() for a in p.assignees)
    if key == "reviewed-by":
        return lambda p: any(r.author.lower() == login and r.state != "PENDING"
                             for r in p.reviews)
    # review-requested: also a team of the user's; teams are not modelled, so both read the same.
    return lambda p: login in (r.lower() for r in p.review_requested)
