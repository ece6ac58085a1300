"""One `match` over the request union: what each request does to the daemon and what it answers."""

from __future__ import annotations

from projctl_client.protocol import Ack, Ping, Pong, Reply, Request, Shutdown, Status
from projctld.context import DaemonContext
from projctld.status import build_status


class Handlers:
    def __init__(self, ctx: DaemonContext) -> None:
        self._ctx = ctx

    async def __call__(self, request: Request) -> Reply:
        match request:
            case Ping():
                return Pong(daemon=self._ctx.info())
            case Status(checkout=checkout):
                return build_status(self._ctx, checkout)
            case Shutdown():
                self._ctx.shutdown.set()
                return Ack(message="projctld is stopping")
