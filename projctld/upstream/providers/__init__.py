"""One provider per upstream (GitHub, GitLab, Jira), built from the config around one client."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping

import httpx

from projctld import __version__
from projctld.config import Config, GitHubConfig, GitLabConfig, Instance, JiraConfig
from projctld.store.http_cache import HttpCache
from projctld.upstream.providers.github import GitHub
from projctld.upstream.providers.gitlab import GitLab
from projctld.upstream.providers.governor import Governor
from projctld.upstream.providers.http import AuthHeaders, Hints, UpstreamHttp
from projctld.upstream.providers.jira import Jira
from projctld.upstream.providers.model import Provider
from projctld.upstream.tokens import TokenSource

USER_AGENT = f"projctl/{__version__} (+https://github.com/projctl/projctl)"
# What every request to each upstream carries besides its token.
HEADERS = {
    "github": {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
               "User-Agent": USER_AGENT},
    "gitlab": {"User-Agent": USER_AGENT},
    "jira": {"Accept": "application/json", "User-Agent": USER_AGENT},
}
# Requests in flight per host. GitHub documents limits on concurrent requests (its secondary
# limits); GitLab documents rates only, and a cold poll over REST (an instance without GraphQL)
# reads three things per merge request of mine at once (32: the daemon's connections kept alive).
CONCURRENCY = {"github": 16, "gitlab": 32, "jira": 16}


def auth_headers(instance: Instance) -> AuthHeaders:
    """How an instance wants its token sent (the providers and `projctl doctor` alike)."""
    section = instance.section
    if isinstance(section, GitLabConfig) and section.auth == "private-token":
        return lambda token: {"PRIVATE-TOKEN": token}
    if isinstance(section, JiraConfig) and section.email:
        email = section.email

        def basic(token: str) -> dict[str, str]:  # Jira Cloud: the email and an API token
            return {"Authorization": "Basic " + base64.b64encode(
                f"{email}:{token}".encode()).decode()}

        return basic
    # GitHub, GitLab OAuth tokens, and Jira Data Center personal access tokens.
    return lambda token: {"Authorization": f"Bearer {token}"}


def hints(instance: Instance) -> Hints:
    """The advice for the faults a user can fix, in this instance's words."""
    table, kind = instance.table, instance.kind
    prefix = "" if instance.name == kind else f"{instance.name}:"
    if kind == "github":
        return Hints(
            auth=["gh auth status  # when the token comes from gh"],
            forbidden=["give the token the `repo` scope (classic) or read access to "
                       "pull requests, actions and commit statuses (fine-grained)"],
            not_found=[f"check the names under `github` in your projects ({prefix}OWNER/NAME, "
                       "as in the repository's URL)",
                       "a private repository needs a token that can read it"],
        )
    if kind == "gitlab":
        return Hints(
            auth=["a new token needs the `read_api` scope"],
            forbidden=["the token needs the `read_api` scope and access to the project"],
            not_found=[f"check the paths under `gitlab` in your projects ({prefix}GROUP/"
                       "SUBGROUP/NAME, as in the project's URL)"],
        )
    return Hints(
        auth=[f"Jira Cloud: set `email` in [{table}] and an API token from "
              f"id.atlassian.com in ${instance.section.token_env}",
              f"Jira Data Center or Server: leave `email` empty in [{table}] and use a "
              "personal access token"],
        forbidden=["the account cannot browse the projects in the JQL"],
        not_found=[f"check `url` in [{table}]: the site's address as your browser shows it"],
        rejected=["check the project's `jira` JQL in Jira's issue search"],
    )


def create_providers(config: Config, client: httpx.AsyncClient, cache: HttpCache,
                     clock: Callable[[], float] = time.time,
                     hosts: list[UpstreamHttp] | None = None, *,
                     token_files: Mapping[str, str] | None = None,
                     scope: str = "mine") -> dict[str, Provider]:
    """The providers of the instances some project uses, keyed by instance name; each one's
    HTTP side is appended to `hosts` (for `projctl metrics`); `clock` is for benchmarks that
    compress time. Instances on one host share its rate-limit governor. The hub passes
    `token_files` (by instance) and `scope="team"`: every open change request of the
    repositories, not the token owner's."""
    used = {upstream for project in config.projects.values() for upstream in project.upstreams()}
    governors: dict[str, Governor] = {}

    def governor(url: str, kind: str) -> Governor:
        parsed = httpx.URL(url)
        host = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host
        return governors.setdefault(host, Governor(host, CONCURRENCY[kind]))

    providers: dict[str, Provider] = {}
    built: list[UpstreamHttp] = []
    for name, instance in config.instances().items():
        if name not in used:
            continue
        http = UpstreamHttp(
            client, name=instance.title, governor=governor(instance.url, instance.kind),
            cache=cache, clock=clock,
            token=TokenSource(instance.title, instance.table, instance.section,
                              file=(token_files or {}).get(name, "")),
            auth_headers=auth_headers(instance), headers=HEADERS[instance.kind],
            hints=hints(instance),
        )
        section = instance.section
        if isinstance(section, GitHubConfig):
            repos = [repo for project in config.projects.values()
                     for repo in project.parts(name)]
            providers[name] = GitHub(http, section, repos, name=name, clock=clock,
                                     stuck_after=config.polling.stuck_after, scope=scope)
        elif isinstance(section, GitLabConfig):
            providers[name] = GitLab(http, section, name=name, clock=clock, scope=scope)
        else:
            assert isinstance(section, JiraConfig)
            providers[name] = Jira(http, section, name=name)
        built.append(http)
    if hosts is not None:
        hosts.extend(built)
    return providers
