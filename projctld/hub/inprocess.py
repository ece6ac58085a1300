"""A hub in this process: the Hub protocol of team/sync/exchange.py over a HubService, without
HTTP. For the soak and the tests that drive many devices fast; a refusal is the UpstreamError
HubClient would raise for it, so the exchange meets the very rules a hub over HTTP applies."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from projctld.errors import UpstreamError
from projctld.hub.auth import Refusal
from projctld.hub.service import HubService
from projctld.hub.storage.interface import TokenRecord
from projctld.team.sync import wire
from projctld.team.sync.clockcheck import ClockReading
from projctld.team.sync.events import Event


class InProcessHub:
    """`device`'s view of the hub `service` with `token`; `wall` is the device's own clock."""

    def __init__(self, service: HubService, token: TokenRecord, device: str,
                 wall: Callable[[], float]) -> None:
        self.service = service
        self.token = token
        self._device = device
        self._wall = wall
        self.clock = 0
        self.hub_id = ""
        self.reading: ClockReading | None = None

    async def push(self, events: Sequence[Event], resent: Sequence[str] = ()
                   ) -> wire.PushReply:
        self._heard()
        try:
            return await self.service.push(self.token, list(events), partial=True,
                                           device=self._device, resent=resent)
        except Refusal as exc:
            raise _error(exc) from None
        finally:
            self._replied()

    async def pull(self, project: str, after: int, limit: int, wait: float = 0.0,
                   after_id: str | None = None, sent: Callable[[], None] | None = None
                   ) -> wire.PullReply:
        self._heard()
        if sent is not None:
            sent()  # nothing to send: the service answers within this call
        try:
            return await self.service.pull(self.token, project, after, limit, wait=wait,
                                           after_id=after_id if after else None,
                                           device=self._device)
        except Refusal as exc:
            raise _error(exc) from None
        finally:
            self._replied()

    def _heard(self) -> None:
        self.service.heard(self._device, self._wall())

    def _replied(self) -> None:
        """What the reply's headers would have said."""
        self.clock = self.service.clock.now()
        self.hub_id = self.service.storage.hub_id
        self.reading = ClockReading(device_ahead=self._wall() - self.service.wall(),
                                    hub_behind=self.service.clocks.offset())


def _error(refusal: Refusal) -> UpstreamError:
    return UpstreamError(f"the hub refused: {refusal.message}", code=refusal.code,
                         retryable=refusal.status >= 500 or refusal.status == 429,
                         suggestions=refusal.suggestions)
