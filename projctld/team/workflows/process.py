"""One command as a subprocess in a session of its own, so that its whole tree can be ended."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import Process

from projctld.team.workflows.output import LineSplitter

KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
_POLL = 0.02


@dataclass(frozen=True)
class Exit:
    """How a command ended: `exit_code` is None when it did not end by itself."""

    exit_code: int | None
    reason: str  # "" when it exited with status 0


async def run_process(argv: Sequence[str], *, cwd: str, env: dict[str, str] | None,
                      timeout: float | None, on_line: Callable[[str], Awaitable[None]],
                      grace: float = KILL_GRACE) -> Exit:
    """Run `argv` with stdout and stderr merged into `on_line`, one line at a time.

    On timeout or cancellation its process group gets SIGTERM, then SIGKILL after `grace`.
    When the command exits, whatever it left running in its group is ended the same way, so
    that no step leaves processes behind (or holds its output pipe open).
    """
    try:
        # Shielded: cancelled while its pipes are being set up, the process would run on,
        # unknown to the cleanup below (and a cancelled open has started it all the same).
        with anyio.CancelScope(shield=True):
            process = await anyio.open_process(
                list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
    except OSError as exc:
        return Exit(None, f"could not start {argv[0]}: {exc.strerror or exc}")
    try:
        with anyio.move_on_after(timeout) as deadline:
            await _supervise(process, on_line, grace)
    finally:
        with anyio.CancelScope(shield=True):
            await end_group(process, grace)
            await process.aclose()
    if deadline.cancelled_caught:
        return Exit(None, f"timed out after {timeout:g} s; its processes were ended")
    code = process.returncode
    assert code is not None
    if code < 0:
        return Exit(code, f"killed by signal {_signal_name(-code)}")
    return Exit(code, f"exit status {code}" if code else "")


async def _supervise(process: Process, on_line: Callable[[str], Awaitable[None]],
                     grace: float) -> None:
    assert process.stdout is not None
    stdout = process.stdout
    drained = anyio.Event()

    async def pump() -> None:
        lines = LineSplitter()
        try:
            async for chunk in stdout:
                for line in lines.feed(chunk):
                    await on_line(line)
            for line in lines.flush():
                await on_line(line)
        finally:
            drained.set()

    async with anyio.create_task_group() as group:
        group.start_soon(pump)
        await process.wait()
        await end_group(process, grace)
        # Only a process that left the group (setsid) can still hold the pipe: stop waiting.
        with anyio.move_on_after(grace):
            await drained.wait()
        group.cancel_scope.cancel()


async def end_group(process: Process, grace: float) -> None:
    """SIGTERM the process group led by `process`, SIGKILL what is left after `grace`, reap."""
    pgid = process.pid
    if _signal_group(pgid, signal.SIGTERM):
        with anyio.move_on_after(grace):
            await process.wait()
            while _group_running(pgid):
                await anyio.sleep(_POLL)
        if _signal_group(pgid, signal.SIGKILL):
            # A signal is delivered, not obeyed at once: an orphan of the group (that nobody
            # here reaps) may still run a moment after. Return once none does.
            with anyio.move_on_after(_KILLED_WITHIN):
                while _group_running(pgid):
                    await anyio.sleep(_POLL)
    await process.wait()


# How long processes may take to die once sent SIGKILL (a loaded machine takes a while).
_KILLED_WITHIN = 2.0


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the group; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _group_running(pgid: int) -> bool:
    """Whether a process of the group still runs. Zombies count for killpg but not here: where
    nothing reaps orphans (a container without an init), they would hold us for the grace."""
    if not _signal_group(pgid, 0):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in filter(str.isdigit, entries):
        try:
            with open(f"/proc/{entry}/stat") as handle:
                state, _parent, group = handle.read().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if group == str(pgid) and state != "Z":
            return True
    return False


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
