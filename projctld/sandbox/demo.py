"""The sandbox behind `projctl demo`, the tests and the benchmarks: fakes and a config for them."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from projctld.config import Config, GitHubConfig, GitLabConfig, JiraConfig, ProjectConfig
from projctld.sandbox.dataset import Dataset, generate
from projctld.sandbox.fake_github import FakeGitHub
from projctld.sandbox.fake_gitlab import FakeGitLab
from projctld.sandbox.fake_jira import FakeJira

TOKEN = "sandbox-token"


@dataclass
class Upstreams:
    """Three running fakes serving one dataset."""

    data: Dataset
    github: FakeGitHub
    gitlab: FakeGitLab
    jira: FakeJira
    github_url: str
    gitlab_url: str
    jira_url: str


def start_fakes(stack: contextlib.ExitStack, data: Dataset, *, token: str = TOKEN,
                github_prefix: str = "", jira_flavour: str = "cloud") -> Upstreams:
    """Start the three fakes on loopback; `stack` stops them."""
    github = FakeGitHub(data, token=token, prefix=github_prefix)
    gitlab = FakeGitLab(data, token=token)
    jira = FakeJira(data, token=token, flavour=jira_flavour)
    urls = []
    for fake in (github, gitlab, jira):
        urls.append(fake.start())
        stack.callback(fake.stop)
    return Upstreams(data, github, gitlab, jira, *urls)


def sandbox_config(upstreams: Upstreams, *, projects: int = 2, my_open_tickets: bool = True,
                   token: str = TOKEN, paths: dict[str, list[str]] | None = None) -> Config:
    """A config that polls the fakes: repositories dealt round-robin into `projects` projects,
    each with the JQL of one Jira project. The token is inline and no environment variable is
    consulted, so a real GITHUB_TOKEN never reaches a fake."""
    data = upstreams.data
    names = ["web", "platform", "mobile", "data", "infra", "billing", "search", "auth"]
    names += [f"project{i}" for i in range(len(names), projects)]
    tables = {}
    for index in range(projects):
        name = names[index]
        jira_key = data.jira_projects[index % len(data.jira_projects)]
        jql = f"project = {jira_key}"
        if my_open_tickets:
            jql += " AND assignee = currentUser() AND statusCategory != Done"
        tables[name] = ProjectConfig(
            paths=(paths or {}).get(name, []),
            github=data.github_repos[index::projects],
            gitlab=data.gitlab_projects[index::projects],
            jira=jql + " ORDER BY updated DESC",
        )
    return Config(
        github=GitHubConfig(api_url=upstreams.github_url, token_env="", token=token),
        gitlab=GitLabConfig(url=upstreams.gitlab_url, token_env="", token=token),
        jira=JiraConfig(url=upstreams.jira_url, email=data.jira_email, token_env="",
                        token=token),
        projects=tables,
    )


def start_sandbox(stack: contextlib.ExitStack) -> Config:
    """What `projctld run --sandbox` polls: a small, pleasant dataset in two projects."""
    data = generate(github_repos=3, gitlab_projects=2, changes_per_repo=4, tickets=30,
                    jira_projects=2)
    return sandbox_config(start_fakes(stack, data), projects=2)
