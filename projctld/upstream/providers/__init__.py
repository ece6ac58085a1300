"""One provider per upstream (GitHub, GitLab, Jira), built from the config around one client."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import httpx

from projctld import __version__
from projctld.config import Config
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


def auth_headers(upstream: str, config: Config) -> AuthHeaders:
    """How `upstream` wants its token sent (the providers and `projctl doctor` alike)."""
    if upstream == "gitlab" and config.gitlab.auth == "private-token":
        return lambda token: {"PRIVATE-TOKEN": token}
    if upstream == "jira" and config.jira.email:
        email = config.jira.email

        def basic(token: str) -> dict[str, str]:  # Jira Cloud: the email and an API token
            return {"Authorization": "Basic " + base64.b64encode(
                f"{email}:{token}".encode()).decode()}

        return basic
    # GitHub, GitLab OAuth tokens, and Jira Data Center personal access tokens.
    return lambda token: {"Authorization": f"Bearer {token}"}


def create_providers(config: Config, client: httpx.AsyncClient, cache: HttpCache,
                     clock: Callable[[], float] = time.time,
                     hosts: list[UpstreamHttp] | None = None) -> dict[str, Provider]:
    """The providers that some project uses, keyed by upstream name; each one's HTTP side is
    appended to `hosts` (for `projctl metrics`); `clock` is for benchmarks that compress time."""
    used = {upstream for project in config.projects.values() for upstream in project.upstreams()}
    governors: dict[str, Governor] = {}

    def governor(url: str) -> Governor:
        parsed = httpx.URL(url)
        host = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host
        return governors.setdefault(host, Governor(host))

    providers: dict[str, Provider] = {}
    built: list[UpstreamHttp] = []
    if "github" in used:
        section = config.github
        http = UpstreamHttp(
            client, name="GitHub", governor=governor(section.api_url), cache=cache, clock=clock,
            token=TokenSource("GitHub", "github", section),
            auth_headers=auth_headers("github", config), headers=HEADERS["github"],
            hints=Hints(
                auth=["gh auth status  # when the token comes from gh"],
                forbidden=["give the token the `repo` scope (classic) or read access to "
                           "pull requests, actions and commit statuses (fine-grained)"],
                not_found=["check the names under `github` in your projects "
                           "(OWNER/NAME, as in the repository's URL)",
                           "a private repository needs a token that can read it"],
            ),
        )
        repos = [repo for project in config.projects.values() for repo in project.github]
        providers["github"] = GitHub(http, section, repos, clock=clock)
        built.append(http)
    if "gitlab" in used:
        gitlab = config.gitlab
        http = UpstreamHttp(
            client, name="GitLab", governor=governor(gitlab.url), cache=cache, clock=clock,
            token=TokenSource("GitLab", "gitlab", gitlab),
            auth_headers=auth_headers("gitlab", config), headers=HEADERS["gitlab"],
            hints=Hints(
                auth=["a new token needs the `read_api` scope"],
                forbidden=["the token needs the `read_api` scope and access to the project"],
                not_found=["check the paths under `gitlab` in your projects "
                           "(GROUP/SUBGROUP/NAME, as in the project's URL)"],
            ),
        )
        providers["gitlab"] = GitLab(http, gitlab)
        built.append(http)
    if "jira" in used:
        jira = config.jira
        http = UpstreamHttp(
            client, name="Jira", governor=governor(jira.url), cache=cache, clock=clock,
            token=TokenSource("Jira", "jira", jira), auth_headers=auth_headers("jira", config),
            headers=HEADERS["jira"],
            hints=Hints(
                auth=["Jira Cloud: set `email` in [jira] and an API token from "
                      "id.atlassian.com in $JIRA_API_TOKEN",
                      "Jira Data Center: leave `email` empty and use a personal access token"],
                forbidden=["the account cannot browse the projects in the JQL"],
                not_found=["check `url` in [jira] (https://SITE.atlassian.net)"],
                rejected=["check the `jira` JQL of the project in Jira's issue search"],
            ),
        )
        providers["jira"] = Jira(http, jira)
        built.append(http)
    if hosts is not None:
        hosts.extend(built)
    return providers
