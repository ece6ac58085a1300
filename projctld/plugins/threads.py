"""Plugin code runs on daemon threads, bounded in time, so that it can never hold the event loop.

anyio's worker threads are not daemon threads: one stuck in a plugin's endless loop would keep
the process from exiting after an orderly shutdown. These workers are daemon threads, reused
like anyio's (a call costs about the same, ~0.1 ms); a call that never returns keeps its worker,
which is simply left behind, and the next call starts another.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

T = TypeVar("T")


class Abandoned(Exception):
    """The call did not return in time; it goes on in its thread, and its result is dropped."""


class _Worker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="projctl plugin", daemon=True)
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            self.jobs.get()()
            _idle.append(self)


_idle: collections.deque[_Worker] = collections.deque()


async def call_in_thread(func: Callable[[], T], *, timeout: float, name: str) -> T:
    """`func()` on a daemon thread named `name`. What it raises is raised here; a BaseException
    that is not an Exception (SystemExit from a plugin, say) becomes a RuntimeError, so that
    plugin code can never stop the daemon. Raises Abandoned after `timeout` seconds."""
    done = anyio.Event()
    token = anyio.lowlevel.current_token()
    outcome: list[T] = []
    failure: list[Exception] = []

    def job() -> None:
        threading.current_thread().name = name
        try:
            outcome.append(func())
        except Exception as exc:
            failure.append(exc)
        except BaseException as exc:
            failure.append(RuntimeError(f"{type(exc).__name__}: {exc}"))
        finally:
            # The loop may be gone when an abandoned call returns at last: nobody waits then.
            with contextlib.suppress(Exception):
                anyio.from_thread.run_sync(done.set, token=token)

    try:
        worker = _idle.pop()
    except IndexError:
        worker = _Worker()
        worker.start()
    worker.jobs.put(job)
    with anyio.move_on_after(timeout):
        await done.wait()
    if failure:
        raise failure[0]
    if not outcome:
        raise Abandoned(f"did not return within {timeout:g} s")
    return outcome[0]
