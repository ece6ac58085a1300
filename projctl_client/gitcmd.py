"""Running git itself, for the commands that create branches or resolve refs (not the hot path)."""

from __future__ import annotations

import subprocess

from projctl_client.connection import ClientError


def run(args: list[str], *, cwd: str | None = None) -> int:
    """Run `git ARGS` with the terminal's stdio, so the user sees git's own words; its status."""
    try:
        return subprocess.run(["git", *args], cwd=cwd).returncode
    except FileNotFoundError:
        raise _no_git() from None


def commit_of(ref: str, *, cwd: str | None = None) -> str | None:
    """The full sha of the commit `ref` names, or None when it names none."""
    if ref.startswith("-"):  # git would read it as an option
        return None
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            cwd=cwd, capture_output=True, text=True,
        )
    except FileNotFoundError:
        raise _no_git() from None
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def _no_git() -> ClientError:
    return ClientError("git is not installed or not on PATH", ["install git, then run this again"])


def commit_time(commit: str, *, cwd: str | None = None) -> float | None:
    """The committer time of `commit` (Unix seconds), as lead time counts from it; None when
    git cannot tell (no such commit here, git missing: the deployment is recorded all the
    same, without it)."""
    if commit.startswith("-"):
        return None
    try:
        result = subprocess.run(["git", "show", "-s", "--format=%ct", commit, "--"],
                                cwd=cwd, capture_output=True, text=True)
    except OSError:
        return None
    text = result.stdout.strip()
    return float(text) if result.returncode == 0 and text.isdigit() else None
