"""The daemon's client of the hub: push and pull over HTTP with msgpack bodies; faults mapped.

Every httpx exception and every refusal becomes an UpstreamError with what to do about it, and
the hub's own refusals (HubError bodies) keep their code, message and suggestions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import httpx
import msgspec

from projctld import __version__
from projctld.errors import UpstreamError
from projctld.team.sync import wire
from projctld.team.sync.events import Event
from projctld.upstream.tokens import TokenSource

T = TypeVar("T")
_push_encoder = msgspec.msgpack.Encoder()
_push_reply = msgspec.msgpack.Decoder(wire.PushReply)
_pull_reply = msgspec.msgpack.Decoder(wire.PullReply)
_health_reply = msgspec.msgpack.Decoder(wire.Health)
_hub_error = msgspec.msgpack.Decoder(wire.HubError)
_json_error = msgspec.json.Decoder(wire.HubError)


class HubClient:
    """One hub. `clock` is the hub's clock from its latest reply (0 before any)."""

    def __init__(self, client: httpx.AsyncClient, url: str, token: TokenSource) -> None:
        self._client = client
        self.url = url.rstrip("/")
        self._token = token
        self.clock = 0

    async def push(self, events: Sequence[Event]) -> wire.PushReply:
        body = _push_encoder.encode(wire.PushRequest(events=list(events)))
        response = await self._send("POST", "/v1/events", content=body,
                                    headers={"content-type": wire.MSGPACK})
        return self._decode(response, _push_reply)

    async def pull(self, project: str, after: int, limit: int, wait: float = 0.0
                   ) -> wire.PullReply:
        response = await self._send(
            "GET", "/v1/events",
            params={"project": project, "after": after, "limit": limit, "wait": wait},
            # A long poll may take its whole wait before the first byte comes back.
            timeout=httpx.Timeout(wait + 15.0))
        return self._decode(response, _pull_reply)

    async def health(self) -> wire.Health:
        """The hub's version, the oldest client it accepts and its storage; needs no token."""
        return self._decode(await self._send("GET", "/v1/health", auth=False), _health_reply)

    async def _send(self, method: str, path: str, *, auth: bool = True,
                    **kwargs: object) -> httpx.Response:
        headers = {
            **({"authorization": f"Bearer {await self._token.get()}"} if auth else {}),
            "accept": wire.MSGPACK,
            wire.CLIENT_VERSION_HEADER: __version__,
            **kwargs.pop("headers", {}),  # type: ignore[dict-item]
        }
        try:
            response = await self._client.request(method, self.url + path, headers=headers,
                                                  **kwargs)  # type: ignore[arg-type]
        except httpx.TimeoutException:
            raise UpstreamError(f"the hub at {self.url} did not answer in time", code="timeout",
                                retryable=True) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"cannot reach the hub at {self.url}: {exc or type(exc).__name__}",
                code="unreachable", retryable=True,
                suggestions=["events wait on this machine and are sent when it is back",
                             f"check [sync] hub in your config if {self.url} is wrong"],
            ) from None
        clock = response.headers.get(wire.HUB_CLOCK_HEADER, "")
        if clock.isdigit():
            self.clock = int(clock)
        if response.status_code >= 400:
            raise self._refusal(response)
        return response

    def _refusal(self, response: httpx.Response) -> UpstreamError:
        status = response.status_code
        try:
            decoder = _hub_error if wire.MSGPACK in response.headers.get("content-type", "") \
                else _json_error
            refusal = decoder.decode(response.content)
        except msgspec.DecodeError:
            refusal = None
        if status == 401:
            self._token.rejected()  # a command's token is asked for again on the next attempt
        if refusal is None:
            return UpstreamError(
                f"the hub at {self.url} answered HTTP {status}",
                code="server_error" if status >= 500 else "rejected", retryable=status >= 500,
                suggestions=[f"is {self.url} a projctl hub? `curl {self.url}/v1/health`"])
        suggestions = list(refusal.suggestions)
        if status == 401:
            suggestions += [f"the hub token comes from {self._token.origin}", self._token.fix()]
        return UpstreamError(f"the hub refused: {refusal.message}", code=refusal.code,
                             retryable=status >= 500 or status == 429, suggestions=suggestions)

    def _decode(self, response: httpx.Response, decoder: msgspec.msgpack.Decoder[T]) -> T:
        try:
            return decoder.decode(response.content)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"the hub at {self.url} sent a reply this projctld cannot "
                                f"read: {exc}", code="malformed", retryable=True,
                                suggestions=["projctl daemon restart  # after upgrading"]) from None
