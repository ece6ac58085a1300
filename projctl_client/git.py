"""Find the git checkout around a directory and its branch by reading .git, without running git."""

from __future__ import annotations

import os


def find_checkout(start: str) -> dict[str, object] | None:
    """The checkout containing `start`: {"root", "branch", "head"}; None outside any repository.

    `branch` is None on a detached HEAD; `head` is None before the first commit. Linked worktrees
    and submodules (a `.git` file pointing elsewhere) are followed.
    """
    path = os.path.abspath(start)
    while True:
        gitdir = _gitdir_of(path)
        if gitdir is not None:
            branch, head = _read_head(gitdir)
            return {"root": path, "branch": branch, "head": head}
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def _gitdir_of(path: str) -> str | None:
    dotgit = os.path.join(path, ".git")
    if os.path.isdir(dotgit):
        return dotgit
    if os.path.isfile(dotgit):
        content = _read(dotgit)
        if content and content.startswith("gitdir:"):
            return os.path.normpath(os.path.join(path, content[len("gitdir:"):].strip()))
    return None


def _read_head(gitdir: str) -> tuple[str | None, str | None]:
    head = _read(os.path.join(gitdir, "HEAD")) or ""
    if head.startswith("ref:"):
        ref = head[len("ref:"):].strip()
        branch = ref.removeprefix("refs/heads/")
        return branch, _resolve_ref(gitdir, ref)
    return None, head or None


def _resolve_ref(gitdir: str, ref: str) -> str | None:
    # A linked worktree keeps HEAD in its own gitdir and the shared refs in the "commondir".
    common = _read(os.path.join(gitdir, "commondir"))
    common_dir = os.path.normpath(os.path.join(gitdir, common)) if common else gitdir
    for directory in dict.fromkeys((gitdir, common_dir)):
        sha = _read(os.path.join(directory, ref))
        if sha:
            return sha
    packed = _read(os.path.join(common_dir, "packed-refs")) or ""
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref:
            return sha
    return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None
