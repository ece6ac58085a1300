"""`projctl watch`: the status view pushed to the client each time what it shows changes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from projctl_client.protocol import Reply, Status, StatusView, Watch
from projctld.daemon import status_output
from projctld.daemon.context import DaemonContext
from projctld.rpc.server import Stream

# What changes at every poll or sync without anything to show for it: left out when deciding
# whether the view changed.
_VOLATILE = frozenset({"generated_at", "attempted_at", "next_poll_at", "polling", "fetched_at",
                       "last_seen_at", "stale", "daemon", "state", "last_attempt",
                       "next_attempt", "syncing", "last_success", "clock"})
# The text says how old each line is: it is sent again this often even when nothing changed,
# so that the ages on the screen stay true.
AGES_EVERY = 30.0


def watch(ctx: DaemonContext, request: Watch) -> Stream:
    status_output.check_project(request.project, list(ctx.config.projects), ctx.config_path)
    ctx.poller.touch()  # as a status would; watching on does not keep the user "active"
    as_status = Status(checkout=request.checkout, tickets_per_status=request.tickets_per_status,
                       project=request.project, output=request.output, width=request.width,
                       colours=request.colours, links=request.links, home=request.home,
                       client=request.client, command=request.command)
    return Stream(_frames(ctx, request, as_status))


async def _frames(ctx: DaemonContext, request: Watch, as_status: Status
                  ) -> AsyncIterator[Reply]:
    last: bytes | None = None
    sent_at = 0.0
    while True:
        version = ctx.version
        view = ctx.status_views.get(request.checkout, request.tickets_per_status)
        if ctx.plugins.transforms_status:
            view = await ctx.plugins.status_view(view)
        mark = fingerprint(status_output.only(view, request.project))
        now = time.monotonic()
        if mark != last or (request.output != "json" and now - sent_at >= AGES_EVERY):
            yield status_output.write(view, as_status, ctx.config_error)
            last, sent_at = mark, now
        await ctx.next_change(version, AGES_EVERY if request.output != "json" else 3600.0)


def fingerprint(view: StatusView) -> bytes:
    """The view without what changes at every poll: equal while nothing shown has changed."""
    return msgspec.msgpack.encode(_without_volatile(msgspec.to_builtins(view)))


def _without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value
