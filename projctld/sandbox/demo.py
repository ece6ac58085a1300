"""The sandbox behind `projctl demo`, the tests and the benchmarks: fakes and a config for them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import msgspec

from projctl_client import paths
from projctld.config import Config, GitHubConfig, GitLabConfig, JiraConfig, ProjectConfig
from projctld.sandbox.dataset import Dataset, Thread, Todo, generate
from projctld.sandbox.fake_github import FakeGitHub
from projctld.sandbox.fake_gitlab import FakeGitLab
from projctld.sandbox.fake_jira import FakeJira
from projctld.team.workflows import load_table

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


# The demo's own workflow and deploy command: harmless, quick, and showing what they do.
DEMO_WORKFLOWS = {"hello": {
    "description": "Say hello from the demo's checkout, then note it for the team",
    "steps": [
        {"name": "greet", "command": ["sh", "-c", "echo hello from {{ git.branch }}; sleep 1"]},
        # This interpreter's projctl: the demo must work before `projctl` is on the PATH.
        {"name": "note", "command": [sys.executable, "-m", "projctl_client", "note",
                                     "the hello workflow ran"]},
    ],
}}
DEMO_DEPLOY = ("sh -c 'echo deploying $PROJCTL_BRANCH to $PROJCTL_ENVIRONMENT, a demo: nothing "
               "leaves this machine; sleep 1; echo done'")


def start_sandbox(stack: contextlib.ExitStack) -> Config:
    """What `projctld run --sandbox` polls: a small, pleasant dataset in two projects, and a
    real git checkout of project web on the branch of one of my pull requests, so that `Here`,
    the prompt, notes, deployments and workflows can be tried in it."""
    data = generate(github_repos=3, gitlab_projects=2, changes_per_repo=4, tickets=30,
                    jira_projects=2)
    config = sandbox_config(start_fakes(stack, data), projects=2)
    mine = next(pr for pr in data.pulls[data.github_repos[0]]
                if pr.author == data.github_login and pr.state == "open")
    checkout = demo_checkout(mine.head_ref)
    if checkout:  # the pull request's head is the checkout's HEAD: `wait ci` waits for its CI
        mine.head_sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, text=True,
                                       capture_output=True).stdout.strip() or mine.head_sha
    demo_inbox(data)
    web = msgspec.structs.replace(config.projects["web"], paths=[checkout] if checkout else [],
                                  environments=["staging", "production"], deploy=DEMO_DEPLOY)
    return msgspec.structs.replace(
        config, projects={**config.projects, "web": web},
        workflows=load_table(DEMO_WORKFLOWS, path="(sandbox: built-in demo data)", text=""))


def demo_inbox(data: Dataset) -> None:
    """What asks for me in the demo's inbox: a review and a mention on GitHub, a failed
    pipeline on GitLab, each on a change request of the dataset."""
    now = time.time()
    theirs = [pr for pr in data.pulls[data.github_repos[0]]
              if pr.author != data.github_login and pr.state == "open"]
    reasons = ("review_requested", "mention")
    for index, (reason, pr) in enumerate(zip(reasons, theirs[:2], strict=False)):
        data.notifications.append(Thread(
            id=str(9001 + index), reason=reason, repo=pr.repo, title=pr.title,
            number=pr.number, updated_at=now - 600 * (index + 1)))
    mrs = data.merge_requests[data.gitlab_projects[0]]
    if mrs:
        data.todos.append(Todo(id=501, action="build_failed", project=mrs[0].project,
                               title=mrs[0].title, iid=mrs[0].iid, author=mrs[0].author,
                               created_at=now - 1800))


def demo_checkout(branch: str) -> str | None:
    """The demo's git checkout (made once, under the sandbox's own state), on `branch`; None
    when git is not there to make it (the demo then has no checkout)."""
    path = os.path.join(os.path.dirname(paths.database_path(sandbox=True)), "checkout", "web")
    if os.path.isdir(os.path.join(path, ".git")):
        return os.path.realpath(path)
    os.makedirs(path, mode=0o700, exist_ok=True)
    git = ["git", "-c", "user.name=projctl demo", "-c", "user.email=demo@projctl.invalid",
           "-c", "init.defaultBranch=main"]
    try:
        for command in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "demo"],
                        ["switch", "-q", "-c", branch]):
            subprocess.run([*git, *command], cwd=path, check=True, capture_output=True,
                           timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return os.path.realpath(path)
