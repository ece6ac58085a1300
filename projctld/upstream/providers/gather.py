"""Run a provider's requests concurrently: fail with the first error itself, not a group, or
keep each part's own refusal apart so that it costs only that part."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from projctl_client.protocol import SourceProblem
from projctld.errors import UpstreamError

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


# Refusals that concern one part (a repository, a project) and not the upstream: a name that
# does not exist (any more), one the token may not read, one an organisation's single sign-on
# hides, a query refused as invalid. Anything else (offline, rate-limited, a bad token, a 5xx)
# would fail every part alike, and is the whole source's error.
PART_CODES = frozenset({"not_found", "forbidden", "saml", "rejected"})


async def gather_parts(calls: dict[str, Callable[[], Awaitable[T]]]
                       ) -> tuple[dict[str, T], list[SourceProblem]]:
    """Each part's result, concurrently, and a problem for each part the upstream refused.
    An error of the upstream itself is raised as it is, as `gather` does."""
    results: dict[str, T] = {}
    problems: list[SourceProblem] = []

    async def one(part: str) -> None:
        try:
            results[part] = await calls[part]()
        except UpstreamError as exc:
            if exc.code not in PART_CODES:
                raise
            problems.append(problem(part, exc))

    await gather([functools.partial(one, part) for part in calls])
    order = {part: index for index, part in enumerate(calls)}
    problems.sort(key=lambda found: order[found.part])
    return results, problems


def problem(part: str, exc: UpstreamError) -> SourceProblem:
    return SourceProblem(part=part, code=exc.code, message=exc.message,
                         suggestions=exc.suggestions)
