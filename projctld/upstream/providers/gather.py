"""Run a provider's requests concurrently and fail with the first error itself, not a group."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def gather(calls: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Results in the order of `calls`. When one fails the others are cancelled and its
    exception is raised as it is (task groups would wrap it in an ExceptionGroup, which the
    poller's `except UpstreamError` would not see)."""
    results: list[T | None] = [None] * len(calls)

    async def run(index: int) -> None:
        results[index] = await calls[index]()

    try:
        async with anyio.create_task_group() as tasks:
            for index in range(len(calls)):
                tasks.start_soon(run, index)
    except BaseExceptionGroup as group:
        raise _first_leaf(group) from None
    return results  # type: ignore[return-value]


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
