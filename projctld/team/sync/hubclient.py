"""The daemon's client of the hub: push and pull over HTTP with msgpack bodies; faults mapped.

Every httpx exception and every refusal becomes an UpstreamError with what to do about it, and
the hub's own refusals (HubError bodies) keep their code, message and suggestions.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

import httpx
import msgspec

from projctld import __version__
from projctld.errors import UpstreamError
from projctld.team.sync import wire
from projctld.team.sync.clockcheck import ClockReading
from projctld.team.sync.events import Event
from projctld.upstream.tokens import TokenSource
from projctld.upstream.wire import FRAMES, KEEPALIVE, STREAM, UPSTREAM, UpstreamReply

T = TypeVar("T")
# The largest reply read from a hub: a pull page ends after about wire.MAX_PAGE_BYTES, but its
# last event may be one of those larger than events are now (a hub keeps them from before).
MAX_REPLY = wire.MAX_BODY + (2 << 20)
_push_encoder = msgspec.msgpack.Encoder()
_push_reply = msgspec.msgpack.Decoder(wire.PushReply)
_pull_reply = msgspec.msgpack.Decoder(wire.PullReply)
_health_reply = msgspec.msgpack.Decoder(wire.Health)
_upstream_reply = msgspec.msgpack.Decoder(UpstreamReply)
_hub_error = msgspec.msgpack.Decoder(wire.HubError)
_json_error = msgspec.json.Decoder(wire.HubError)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _bounded(response: httpx.Response) -> bytes:
    """A refusal's body, at most 64 KiB of it."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > 65536:
            break
    return b"".join(chunks)


class HubClient:
    """One hub, for `device`. From its latest reply: `clock`, the hub's clock (0 before any);
    `hub_id`, its database's identity ("" before any, or from a hub older than that);
    `reading`, how this clock compares with the hub's (None before a reply with a Date)."""

    def __init__(self, client: httpx.AsyncClient, url: str, token: TokenSource,
                 device: str = "", *, wall: Callable[[], float] = time.time) -> None:
        self._client = client
        self.url = url.rstrip("/")
        self._token = token
        self._device = device
        self._wall = wall
        self.clock = 0
        self.hub_id = ""
        self.reading: ClockReading | None = None

    async def push(self, events: Sequence[Event], resent: Sequence[str] = ()
                   ) -> wire.PushReply:
        body = _push_encoder.encode(wire.PushRequest(events=list(events), partial=True,
                                                     resent=list(resent)))
        # Handed over as a stream: httpx keeps a request's content in it, and a request
        # lives on (in its response's reference cycle) until the garbage collector comes by.
        reply = await self._send("POST", "/v1/events", content=_once(body),
                                 headers={"content-type": wire.MSGPACK,
                                          "content-length": str(len(body))})
        del body
        return self._decode(reply, _push_reply)

    async def pull(self, project: str, after: int, limit: int, wait: float = 0.0,
                   after_id: str | None = None, sent: Callable[[], None] | None = None
                   ) -> wire.PullReply:
        params: dict[str, object] = {"project": project, "after": after, "limit": limit,
                                     "wait": wait}
        if after and after_id:
            params["after_id"] = after_id
        extensions = {}
        if sent is not None:
            async def trace(name: str, info: object) -> None:
                # httpcore's events: the request is out once its (empty) body is.
                if name.endswith("send_request_body.complete"):
                    sent()

            extensions["trace"] = trace
        reply = await self._send(
            "GET", "/v1/events", params=params, extensions=extensions,
            # A long poll may take its whole wait before the first byte comes back.
            timeout=httpx.Timeout(wait + 15.0))
        return self._decode(reply, _pull_reply)

    async def upstream(self, project: str, after: int, wait: float = 0.0) -> UpstreamReply:
        """The project's upstream state as the hub polls it for the team, changed after the
        version `after`; waits up to `wait` s for a change when there is none."""
        reply = await self._send("GET", UPSTREAM, params={"project": project, "after": after,
                                                          "wait": wait},
                                 timeout=httpx.Timeout(wait + 15.0))
        return self._decode(reply, _upstream_reply)

    async def upstream_stream(self, project: str, after: int) -> AsyncIterator[UpstreamReply]:
        """The project's upstream state as the hub streams it: each change after the
        version `after` as it comes, until the hub ends the stream (then open another). A
        fault or a refusal is raised as an UpstreamError, like every other call's."""
        headers = {"authorization": f"Bearer {await self._token.get()}", "accept": FRAMES,
                   wire.CLIENT_VERSION_HEADER: __version__}
        try:
            async with self._client.stream(
                    "GET", self.url + STREAM, params={"project": project, "after": after},
                    headers=headers, timeout=httpx.Timeout(15.0, read=KEEPALIVE * 2 + 5)
            ) as response:
                self._note(response.headers)
                if response.status_code >= 400:
                    raise self._refusal(response, await _bounded(response))
                buffer = b""
                async for chunk in response.aiter_bytes():
                    buffer += chunk
                    while len(buffer) >= 4:
                        size = int.from_bytes(buffer[:4], "big")
                        if size > MAX_REPLY:
                            raise UpstreamError(
                                f"the hub at {self.url} sent a frame of {size} bytes",
                                code="malformed", retryable=True)
                        if len(buffer) < 4 + size:
                            break
                        frame, buffer = buffer[4:4 + size], buffer[4 + size:]
                        if frame:  # an empty one keeps the stream alive
                            yield self._decode(frame, _upstream_reply)
        except httpx.TimeoutException:
            raise UpstreamError(f"the hub at {self.url} went silent", code="timeout",
                                retryable=True) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"cannot reach the hub at {self.url}: {exc or type(exc).__name__}",
                code="unreachable", retryable=True,
                suggestions=[f"check [sync] hub in your config if {self.url} is wrong"],
            ) from None

    async def health(self) -> wire.Health:
        """The hub's version, the oldest client it accepts and its storage; needs no token."""
        return self._decode(await self._send("GET", "/v1/health", auth=False), _health_reply)

    async def _send(self, method: str, path: str, *, auth: bool = True,
                    **kwargs: object) -> bytes:
        """The body of the hub's reply; a refusal raised as an UpstreamError."""
        headers = {
            **({"authorization": f"Bearer {await self._token.get()}"} if auth else {}),
            "accept": wire.MSGPACK,
            wire.CLIENT_VERSION_HEADER: __version__,
            **({wire.DEVICE_HEADER: self._device,
                wire.DEVICE_TIME_HEADER: f"{self._wall():.3f}"} if self._device else {}),
            **kwargs.pop("headers", {}),  # type: ignore[dict-item]
        }
        try:
            # Streamed and read here: httpx keeps a response's body in it, and a response
            # lives on in a reference cycle until the garbage collector comes by, so pulled
            # pages would pile up in memory. And a reply too large is cut off.
            async with self._client.stream(method, self.url + path, headers=headers,
                                           **kwargs) as response:  # type: ignore[arg-type]
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_REPLY:
                        raise UpstreamError(
                            f"the hub at {self.url} sent a reply larger than {MAX_REPLY} "
                            "bytes", code="malformed", retryable=True,
                            suggestions=[f"is {self.url} a projctl hub? "
                                         f"`curl {self.url}/v1/health`"])
                    chunks.append(chunk)
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
        body = b"".join(chunks)
        self._note(response.headers)
        if response.status_code >= 400:
            raise self._refusal(response, body)
        return body

    def _note(self, headers: httpx.Headers) -> None:
        """What every reply says of the hub: its clock, its identity, its time."""
        clock = headers.get(wire.HUB_CLOCK_HEADER, "")
        if clock.isdigit():
            self.clock = int(clock)
        self.hub_id = headers.get(wire.HUB_ID_HEADER, "")[:64] or self.hub_id
        try:
            date = email.utils.parsedate_to_datetime(headers.get("date", ""))
            offset = headers.get(wire.HUB_OFFSET_HEADER)
            hub_behind = float(offset) if offset is not None else None
        except (TypeError, ValueError, IndexError):
            return
        # Date has whole seconds, cut off: the hub's time was half a second later on average.
        self.reading = ClockReading(device_ahead=self._wall() - date.timestamp() - 0.5,
                                    hub_behind=hub_behind)

    def _refusal(self, response: httpx.Response, body: bytes) -> UpstreamError:
        status = response.status_code
        try:
            decoder = _hub_error if wire.MSGPACK in response.headers.get("content-type", "") \
                else _json_error
            refusal = decoder.decode(body)
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

    def _decode(self, body: bytes, decoder: msgspec.msgpack.Decoder[T]) -> T:
        try:
            return decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"the hub at {self.url} sent a reply this projctld cannot "
                                f"read: {exc}", code="malformed", retryable=True,
                                suggestions=["projctl daemon restart  # after upgrading"]) from None
