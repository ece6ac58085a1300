"""Finding the checkout and branch by reading .git, checked against real git repositories."""

from __future__ import annotations

import subprocess

import pytest

from projctl_client.git import find_checkout


def git(cwd, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main",
         *args], cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "commit", "-q", "--allow-empty", "-m", "one")
    return root


def test_outside_a_repository_there_is_no_checkout(tmp_path) -> None:
    assert find_checkout(str(tmp_path)) is None


def test_a_fresh_repository_has_a_branch_and_no_head(tmp_path) -> None:
    git(tmp_path, "init", "-q")
    assert find_checkout(str(tmp_path)) == {"root": str(tmp_path), "branch": "main", "head": None}


def test_branch_and_head_from_a_subdirectory(repo) -> None:
    (repo / "a" / "b").mkdir(parents=True)
    git(repo, "switch", "-q", "-c", "feature/login")
    assert find_checkout(str(repo / "a" / "b")) == {
        "root": str(repo), "branch": "feature/login", "head": git(repo, "rev-parse", "HEAD"),
    }


def test_detached_head(repo) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "switch", "-q", "--detach", sha)
    assert find_checkout(str(repo)) == {"root": str(repo), "branch": None, "head": sha}


def test_packed_refs(repo) -> None:
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert find_checkout(str(repo))["head"] == git(repo, "rev-parse", "HEAD")


def test_linked_worktree(repo, tmp_path) -> None:
    git(repo, "commit", "-q", "--allow-empty", "-m", "two")
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "hotfix", str(worktree))
    assert find_checkout(str(worktree)) == {
        "root": str(worktree), "branch": "hotfix", "head": git(worktree, "rev-parse", "HEAD"),
    }
    # The main checkout is unaffected.
    assert find_checkout(str(repo))["branch"] == "main"


def test_submodule_is_its_own_checkout(repo, tmp_path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    git(inner, "init", "-q")
    git(inner, "commit", "-q", "--allow-empty", "-m", "inner")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(inner), "sub")
    found = find_checkout(str(repo / "sub"))
    assert found == {"root": str(repo / "sub"), "branch": "main",
                     "head": git(repo / "sub", "rev-parse", "HEAD")}
