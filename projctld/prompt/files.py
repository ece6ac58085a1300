"""The prompt files: what shells read with built-ins only, so that a prompt spawns no process.

Under the directory (`paths.prompt_dir`), for every checkout root R of a configured project:

    R/.repo            the segment for a branch with no change request or CI (or a detached HEAD)
    R/.branch/NAME     the segment for branch NAME, for every branch upstream knows
    .alive             the epoch second of the daemon's last heartbeat, rewritten every HEARTBEAT

R keeps its path under the directory: `/run/user/1000/projctl/projctld-prompt/home/me/app`.
A segment file holds eight lines: plain, ansi, bash and zsh (see format.STYLES), each first as
the daemon sees it and then as it must read once the daemon is gone (marked stale): a shell
picks the second when `.alive` is older than shellinit.GONE_AFTER. Every file is replaced
atomically, and only when its text changed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time

import anyio
import msgspec

from projctl_client.shellinit import ALIVE, BRANCHES, HEARTBEAT, REPO
from projctld.daemon.knowledge import Knowledge
from projctld.logging import get_logger
from projctld.prompt.format import STYLES, render
from projctld.prompt.segments import Segments

log = get_logger(__name__)

# Configured project paths are scanned for checkouts (and their worktrees) this often.
DISCOVER_EVERY = 30.0
# Changes often come in bursts (a poll, then a sync); one write after they settle.
SETTLE = 0.05


class PromptFiles:
    def __init__(self, directory: str, segments: Segments, knowledge: Knowledge,
                 project_paths: list[str]) -> None:
        self.directory = directory
        self._segments = segments
        self._knowledge = knowledge
        self._project_paths = project_paths
        self._written: dict[str, str] = {}
        self._discovered: set[str] = set()
        self._discovered_at = float("-inf")
        self._alive_at = float("-inf")
        self._woken = anyio.Event()
        self._failing = False

    def configure(self, project_paths: list[str]) -> None:
        """The projects' paths changed (a reload): look for checkouts in them again."""
        self._project_paths = project_paths
        self._discovered_at = float("-inf")
        self.wake()

    def wake(self) -> None:
        """Something a prompt shows may have changed: rewrite soon."""
        self._woken.set()

    def knows(self, root: str) -> bool:
        return os.path.join(self.directory, root.lstrip("/"), REPO) in self._written

    async def run(self) -> None:
        self._reset()
        try:
            while True:
                self.write(time.time())
                with anyio.move_on_after(HEARTBEAT):
                    await self._woken.wait()
                self._woken = anyio.Event()
                await anyio.sleep(SETTLE)
        finally:
            # Shells then show the last segments marked stale, at once.
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.directory, ALIVE))

    def write(self, now: float) -> None:
        """Bring every file up to date; a failure is logged, never raised."""
        try:
            wanted = self._wanted(now)
            for path in self._written.keys() - wanted.keys():
                self._remove(path)
                del self._written[path]
            for path, text in wanted.items():
                if self._written.get(path) != text:
                    self._replace(path, text)
                    self._written[path] = text
            if now - self._alive_at >= HEARTBEAT * 0.9:
                self._replace(os.path.join(self.directory, ALIVE), f"{int(now)}\n")
                self._alive_at = now
        except (OSError, ValueError) as exc:  # ValueError: a NUL in a root an old daemon saved
            if not self._failing:
                log.warning("prompt_files_failed", directory=self.directory,
                            error=getattr(exc, "strerror", None) or str(exc))
            self._failing = True
            return
        if self._failing:
            log.info("prompt_files_recovered", directory=self.directory)
        self._failing = False

    def _wanted(self, now: float) -> dict[str, str]:
        waiting = self._segments.waiting()
        # Every checkout of a project shows the same for a branch: render each pair once.
        rendered: dict[tuple[str, str | None], str] = {}

        def lines(project: str, branch: str | None) -> str:
            if (project, branch) not in rendered:
                rendered[project, branch] = self._lines(project, branch, waiting, now)
            return rendered[project, branch]

        wanted: dict[str, str] = {}
        for root in self._roots(now):
            project = self._knowledge.project_of(root)
            if project is None:
                continue
            base = os.path.join(self.directory, root.lstrip("/"))
            wanted[os.path.join(base, REPO)] = lines(project, None)
            for branch in self._segments.branches(project):
                if _safe_branch(branch):
                    wanted[os.path.join(base, BRANCHES, branch)] = lines(project, branch)
        return wanted

    def _lines(self, project: str, branch: str | None, waiting: int, now: float) -> str:
        facts = self._segments.facts(project, branch, waiting, now)
        gone = msgspec.structs.replace(facts, stale=True)
        template, marker = self._segments.template, self._segments.stale_marker
        return "".join(f"{render(template, facts, style, marker)}\n"
                       f"{render(template, gone, style, marker)}\n" for style in STYLES)

    def _roots(self, now: float) -> set[str]:
        if now - self._discovered_at >= DISCOVER_EVERY:
            self._discovered = set(_discover(self._project_paths))
            self._discovered_at = now
        return self._discovered | {row.root for row in self._knowledge.checkouts()}

    def _reset(self) -> None:
        """Start from an empty directory: files of an earlier run may describe another config."""
        try:
            info = os.lstat(self.directory)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                shutil.rmtree(self.directory, ignore_errors=True)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)

    def _replace(self, path: str, text: str) -> None:
        temporary = os.path.join(self.directory, f".tmp-{os.getpid()}")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            _make_parents(path, self.directory)
            os.replace(temporary, path)
        except IsADirectoryError:  # branch a/b's directory where branch a now goes
            shutil.rmtree(path)
            os.replace(temporary, path)

    def _remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(OSError):  # not empty, or already gone
            os.removedirs(os.path.dirname(path))


def _make_parents(path: str, top: str) -> None:
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        # A file of branch a stands where branch a/b needs a directory: it is outdated.
        probe = parent
        while probe != top and not os.path.isdir(probe):
            if os.path.lexists(probe):
                os.unlink(probe)
                break
            probe = os.path.dirname(probe)
        os.makedirs(parent, mode=0o700, exist_ok=True)


def _safe_branch(branch: str) -> bool:
    """A branch name from upstream data that cannot climb out of the checkout's directory."""
    parts = branch.split("/")
    return all(part and not part.startswith(".") and part.isprintable() and len(part) <= 200
               for part in parts) and len(branch) <= 1000


def _discover(project_paths: list[str]) -> list[str]:
    """Checkouts at each project path or one level below it, and their linked worktrees."""
    roots = []
    for path in project_paths:
        candidates = [path]
        with contextlib.suppress(OSError), os.scandir(path) as entries:
            candidates += [entry.path for entry in entries
                           if entry.is_dir(follow_symlinks=False)
                           and not entry.name.startswith(".")]
        for candidate in candidates:
            if os.path.lexists(os.path.join(candidate, ".git")):
                roots.append(candidate)
                roots += _worktrees(candidate)
    return roots


def _worktrees(root: str) -> list[str]:
    found = []
    with contextlib.suppress(OSError), os.scandir(os.path.join(root, ".git", "worktrees")) as it:
        for entry in it:
            try:
                with open(os.path.join(entry.path, "gitdir"), encoding="utf-8") as handle:
                    dotgit = handle.read().strip()
            except OSError:
                continue
            if os.path.isfile(dotgit):  # else the worktree was moved or deleted
                found.append(os.path.dirname(dotgit))
    return found
