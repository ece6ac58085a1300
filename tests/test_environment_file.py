"""The daemon's tokens come from the environment file whichever shell starts it, every token
error says where it looked and what mends it, and doctor says where the running daemon's token
came from. Real daemons against the fake GitHub."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from projctld.sandbox.dataset import generate
from projctld.sandbox.demo import Upstreams, start_fakes

TOKEN = "pjt-envfile-3c1e77ab90d2"
FILE = "~/config/projctl/environment"  # as messages show it: HOME is the sandbox's root


@pytest.fixture
def github() -> Iterator[Upstreams]:
    with contextlib.ExitStack() as stack:
        yield start_fakes(stack, generate(github_repos=1, gitlab_projects=1, changes_per_repo=2,
                                          tickets=2, jira_projects=1), token=TOKEN)


def configure(sandbox, up: Upstreams) -> None:
    sandbox.write_config(f'[github]\napi_url = "{up.github_url}"\ntoken_env = "PJ_GH"\n\n'
                         f'[projects.web]\ngithub = {json.dumps(up.data.github_repos)}\n')


def environment_file(sandbox, text: str, mode: int = 0o600) -> str:
    path = os.path.join(sandbox.root, "config", "projctl", "environment")
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    return path


def github_check(sandbox) -> dict:
    checks = json.loads(sandbox.client("doctor", "--json", timeout=90).stdout)
    return next(check for check in checks if check["name"] == "github")


def test_the_token_comes_from_the_file_whatever_shell_starts_the_daemon(sandbox,
                                                                        github) -> None:
    configure(sandbox, github)
    environment_file(sandbox, f"# projctl's tokens\nPJ_GH='{TOKEN}'\n")
    assert "PJ_GH" not in sandbox.env  # a shell without it starts the daemon
    assert sandbox.client("refresh").returncode == 0
    check = github_check(sandbox)
    assert check["status"] == "ok"
    assert check["detail"].startswith(f"token from $PJ_GH (in {FILE}) works for @")
    # Killed, and started again from a shell with an old token: the file wins.
    os.kill(json.loads(sandbox.client("status", "--json").stdout)["daemon"]["pid"],
            signal.SIGKILL)
    stale = sandbox.client("refresh", env={"PJ_GH": "pjt-stale-token-000000"})
    assert stale.returncode == 0, stale.stdout + stale.stderr


def test_a_missing_token_says_where_it_looked_and_a_reload_mends_it(sandbox, github) -> None:
    configure(sandbox, github)
    missing = sandbox.client("refresh")
    assert missing.returncode == 1
    said = " ".join((missing.stdout + missing.stderr).split())
    assert f"no GitHub token: $PJ_GH is set neither in {FILE} nor in the environment projctld " \
        "was started with" in said
    assert f"put PJ_GH=<the token> in {FILE} (chmod 600), then projctl daemon reload; or export " \
        "PJ_GH=<the token> and run projctl daemon restart from that shell" in said
    before = json.loads(sandbox.client("status", "--json").stdout)["daemon"]["pid"]

    # The first fix, as given: the file, then a reload. No restart, no new shell.
    path = environment_file(sandbox, f"PJ_GH={TOKEN}\n")
    reload = sandbox.client("daemon", "reload")
    assert reload.returncode == 0 and "applied environment file" in reload.stdout
    assert sandbox.client("refresh").returncode == 0
    assert json.loads(sandbox.client("status", "--json").stdout)["daemon"]["pid"] == before
    # Taken out of the file again: the daemon no longer has it.
    environment_file(sandbox, "# nothing\n")
    assert sandbox.client("daemon", "reload").returncode == 0
    assert sandbox.client("refresh").returncode == 1
    os.unlink(path)

    # The second fix, as given: a restart from a shell that has it.
    assert sandbox.client("daemon", "restart", env={"PJ_GH": TOKEN}).returncode == 0
    assert sandbox.client("refresh").returncode == 0
    check = github_check(sandbox)
    assert check["detail"].startswith("token from $PJ_GH (inherited when projctld started) "
                                      "works for @")


def test_an_environment_file_others_can_read_is_refused_with_the_fix(sandbox, github) -> None:
    configure(sandbox, github)
    path = environment_file(sandbox, f"PJ_GH={TOKEN}\n", mode=0o644)
    problem = f"{path}: it holds tokens but other users can read it (mode 644)"
    check = subprocess.run([sys.executable, "-m", "projctld", "config", "check"],
                           env=sandbox.env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 2
    assert problem in check.stderr and f"try: chmod 600 {path}" in check.stderr
    # A daemon that must start anyway runs without it, says why, and never used the token.
    status = sandbox.client("status")
    assert status.returncode == 0 and problem in status.stderr
    assert github.github.requests == []
    assert sandbox.client("daemon", "restart").returncode == 2

    os.chmod(path, 0o600)
    assert sandbox.client("daemon", "reload").returncode == 0
    assert sandbox.client("refresh").returncode == 0


def test_a_line_systemd_would_not_read_is_refused(sandbox, github) -> None:
    configure(sandbox, github)
    environment_file(sandbox, f"export PJ_GH={TOKEN}\n")
    check = subprocess.run([sys.executable, "-m", "projctld", "config", "check"],
                           env=sandbox.env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 2
    assert "line 1: expected NAME=VALUE (no `export`: systemd reads this file too)" \
        in check.stderr
    assert TOKEN not in check.stderr
