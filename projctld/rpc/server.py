"""The daemon's end of the socket: accept, check the peer, read frames, answer, drain on shutdown.

Every fault a client can cause ends in an Error reply or a closed connection for that client
only: a frame over MAX_FRAME is refused from its header, a request that does not decode is
answered with what was wrong, a silent or stalled client is dropped after a timeout, and past
`max_connections` new clients are told the daemon is busy.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable

import anyio
import msgspec
from anyio.abc import SocketAttribute, SocketListener, SocketStream

from projctl_client.frames import HEADER_SIZE, FrameTooLarge, body_length, frame
from projctl_client.protocol import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    Envelope,
    Error,
    Reply,
    Request,
    StatusView,
)
from projctld import __version__
from projctld.errors import ProjctlError
from projctld.logging import get_logger
from projctld.metrics import RequestMetrics, RequestTiming

log = get_logger(__name__)

Handler = Callable[[Request], Awaitable[Reply]]
_PEERCRED = struct.Struct("3i")
# msgspec raises RecursionError, not DecodeError, for maps nested about a thousand deep, and
# UnicodeDecodeError for a str that is not UTF-8 where a field or the type tag is read.
_UNDECODABLE = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)
# Echoed client text is cut so that an error about a huge field still fits in a frame.
_ECHO_LIMIT = 200
_CLIENT_GONE = (
    anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
    anyio.ClosedResourceError, ConnectionError,
)


class _Connection:
    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.busy = False
        # When the wait in progress times out (time.monotonic()); the sweeper ends it then.
        self.expires = math.inf


class RpcServer:
    def __init__(
        self,
        handle: Handler,
        *,
        max_connections: int = 256,
        idle_timeout: float = 60.0,
        frame_timeout: float = 10.0,
        metrics: RequestMetrics | None = None,
    ) -> None:
        self._handle = handle
        self.metrics = metrics or RequestMetrics(slow_threshold=float("inf"))
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._frame_timeout = frame_timeout
        # A timeout ends its connection up to a tenth of itself late: one sweep for all
        # connections costs less than a timer armed and cancelled at every wait.
        self._sweep_interval = min(1.0, max(0.01, min(idle_timeout, frame_timeout) / 10))
        self._connections: set[_Connection] = set()
        self._draining = False
        self._decoder = msgspec.msgpack.Decoder(Request)
        self._envelope = msgspec.msgpack.Decoder(Envelope)
        self._encoder = msgspec.msgpack.Encoder()
        # The status view last sent and its encoding: status.StatusViews serves the same view
        # object again while nothing changed (and never alters one), so it is encoded once.
        self._status: tuple[StatusView | None, bytes] = (None, b"")

    async def serve(self, listener: SocketListener, stop: anyio.Event, grace: float) -> None:
        """Serve until `stop` is set; then stop accepting, give requests in flight up to
        `grace` seconds to finish, and close every connection."""
        async with anyio.create_task_group() as connections:
            async with anyio.create_task_group() as acceptor:
                acceptor.start_soon(self._accept, listener, connections)
                acceptor.start_soon(self._sweep)
                await stop.wait()
                acceptor.cancel_scope.cancel()
            await listener.aclose()
            self._draining = True
            for conn in list(self._connections):
                if not conn.busy:
                    conn.scope.cancel()
            with anyio.move_on_after(grace):
                while any(conn.busy for conn in self._connections):
                    await anyio.sleep(0.01)
            if self._connections:
                log.warning("shutdown_cut_requests", requests=len(self._connections))
            connections.cancel_scope.cancel()

    async def _sweep(self) -> None:
        """End the connections whose wait has timed out."""
        while True:
            await anyio.sleep(self._sweep_interval)
            now = time.monotonic()
            for conn in self._connections:
                if conn.expires <= now:
                    conn.scope.cancel()

    async def _accept(self, listener: SocketListener, connections: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # out of file descriptors, say: wait and keep serving
                log.warning("accept_failed", error=str(exc))
                await anyio.sleep(0.1)
                continue
            connections.start_soon(self._serve_connection, stream)

    async def _serve_connection(self, stream: SocketStream) -> None:
        conn = _Connection()
        with conn.scope:
            async with stream:
                refusal = self._refusal(stream)
                if refusal is not None:
                    await self._send_quietly(stream, refusal)
                    return
                self._connections.add(conn)
                self.metrics.open_connections = len(self._connections)
                try:
                    await self._requests(stream, conn)
                except _CLIENT_GONE:
                    pass
                except Exception:
                    # A fault no test foresaw costs this client its connection, never the daemon.
                    log.exception("connection_failed")
                finally:
                    self._connections.discard(conn)
                    self.metrics.open_connections = len(self._connections)

    def _refusal(self, stream: SocketStream) -> Error | None:
        """Why this connection may not send requests, checked before reading anything."""
        raw = stream.extra(SocketAttribute.raw_socket)
        _pid, uid, _gid = _PEERCRED.unpack(
            raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
        if uid != os.getuid():
            log.warning("peer_refused", uid=uid)
            return Error(code="forbidden", message=f"this projctld serves uid {os.getuid()} only")
        if len(self._connections) >= self._max_connections:
            log.warning("connection_refused_busy", open=len(self._connections))
            return Error(
                code="busy",
                message=f"projctld already has {len(self._connections)} clients connected",
                suggestions=["try again in a moment"],
            )
        return None

    async def _requests(self, stream: SocketStream, conn: _Connection) -> None:
        # Each wait sets when it expires (see _sweep): a timeout scope per wait would cost more
        # than the request itself.
        reader = _FrameReader(stream)
        raw = stream.extra(SocketAttribute.raw_socket)
        while not self._draining:
            if reader.buffered:  # requests sent ahead: let the other clients have a turn first
                await anyio.lowlevel.checkpoint()
            conn.expires = time.monotonic() + self._idle_timeout
            header = await reader.read_exactly(HEADER_SIZE)
            conn.busy = True
            timing = RequestTiming()
            try:
                length = body_length(header)
            except FrameTooLarge as exc:
                timing.rpc, timing.error = "frame_too_large", True
                timing.mark("read")
                self.metrics.record(timing)
                # The body is never read, so the stream cannot be resynchronised: answer, close.
                await self._send_quietly(stream, Error(
                    code="frame_too_large", message=str(exc), context={"limit": str(MAX_FRAME)}
                ))
                return
            conn.expires = time.monotonic() + self._frame_timeout
            body = await reader.read_exactly(length)
            timing.mark("read")
            conn.expires = math.inf  # a refresh or a followed run may wait long
            reply = await self._answer(body, timing)
            # A client that stops reading would otherwise hold its slot (and the reply) forever.
            conn.expires = time.monotonic() + self._frame_timeout
            await _send(stream, raw, frame(reply))
            timing.mark("send")
            self.metrics.record(timing)
            conn.busy = False

    async def _answer(self, body: bytes, timing: RequestTiming) -> bytes:
        try:
            request = self._decoder.decode(body)
        except _UNDECODABLE as exc:
            timing.mark("decode")
            reply: Reply = self._malformed(body, exc)
        else:
            timing.mark("decode")
            timing.identify(request)
            if request.protocol != PROTOCOL_VERSION:
                reply = _protocol_mismatch(request.protocol, request.client)
            else:
                reply = await self._dispatch(request)
        timing.mark("handle")
        timing.error = isinstance(reply, Error)
        if isinstance(reply, StatusView):
            if reply is not self._status[0]:
                self._status = (reply, self._encoder.encode(reply))
            encoded = self._status[1]
        else:
            encoded = self._encoder.encode(reply)
        if len(encoded) > MAX_FRAME:
            log.error("reply_too_large", type=type(reply).__name__, size=len(encoded))
            encoded = self._encoder.encode(Error(
                code="internal", message="the reply was larger than the protocol allows",
                suggestions=["report this as a bug in projctl"],
            ))
        timing.mark("encode")
        return encoded

    async def _dispatch(self, request: Request) -> Reply:
        try:
            return await self._handle(request)
        except ProjctlError as exc:
            return error_reply(exc)
        except Exception:
            log.exception("request_failed", request=type(request).__name__)
            return Error(
                code="internal",
                message="projctld failed while handling this request; its log has the details",
                suggestions=["projctl daemon status"],
            )

    def _malformed(self, body: bytes, exc: Exception) -> Error:
        # A request from another protocol version may not fit today's union at all; its
        # envelope still says which version it was, and that is the useful answer.
        try:
            envelope = self._envelope.decode(body)
        except _UNDECODABLE:
            envelope = None
        if envelope is not None and envelope.protocol not in (0, PROTOCOL_VERSION):
            return _protocol_mismatch(envelope.protocol, envelope.client)
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return Error(code="bad_request", message=f"malformed request: {_clip(problem)}")

    async def _send_quietly(self, stream: SocketStream, reply: Reply) -> None:
        try:
            with anyio.move_on_after(1.0):
                await stream.send(frame(self._encoder.encode(reply)))
        except _CLIENT_GONE:
            pass


class _FrameReader:
    """Reads whole frames off a stream, taking whatever has arrived at each read: a request's
    body comes with its header, where reading the header alone would cost one more trip
    through the event loop, behind every other client's request (anyio's
    BufferedByteReceiveStream asks for exactly the bytes still missing)."""

    def __init__(self, stream: SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += await self._stream.receive()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


async def _send(stream: SocketStream, raw: socket.socket, data: bytes) -> None:
    """Send `data`, at once when the socket takes it all (as it nearly always does). anyio's
    send passes through the event loop first, which puts the reply, already made, behind every
    other client's request: at 64 clients that cost a quarter of the throughput and pushed
    p99 past 5 ms (bench/status_load.py)."""
    try:
        sent = raw.send(data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        await stream.send(data[sent:])


def error_reply(exc: ProjctlError) -> Error:
    """The Error reply that tells the client about a refusal, with what to do next."""
    return Error(code=exc.code, message=exc.message, context=exc.context,
                 suggestions=exc.suggestions)


def _clip(text: str) -> str:
    return text if len(text) <= _ECHO_LIMIT else text[:_ECHO_LIMIT] + "…"


def _protocol_mismatch(theirs: int, client: str) -> Error:
    client = _clip(client)
    if theirs > PROTOCOL_VERSION:
        older, suggestion = "the daemon is older than the client", "projctl daemon restart"
    else:
        older, suggestion = "this client is older than the daemon", "pip install --upgrade projctl"
    return Error(
        code="unsupported_protocol",
        message=f"projctl {client} speaks protocol {theirs} but the running projctld "
        f"{__version__} speaks {PROTOCOL_VERSION}: {older}",
        context={"client_protocol": str(theirs), "daemon_protocol": str(PROTOCOL_VERSION),
                 "client_version": client, "daemon_version": __version__},
        suggestions=[suggestion],
    )
