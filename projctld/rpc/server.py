"""The daemon's end of the socket: accept, check the peer, read frames, answer, drain on shutdown.

Every fault a client can cause ends in an Error reply or a closed connection for that client
only: a frame over MAX_FRAME is refused from its header, a request that does not decode is
answered with what was wrong, a silent or stalled client is dropped after a timeout, and past
`max_connections` new clients are told the daemon is busy.

Each connection is an asyncio Protocol (the daemon runs anyio on asyncio): the event loop hands
over bytes as they arrive, and a request that can be answered without waiting, as status and
most others can, is answered in that same callback. Only the requests that wait (a refresh,
`sync --now`, a deployment, a followed run) get a task. A stream (watch, wait) is such a task
whose handler answers a Stream: its frames are sent as they come and an end frame closes it;
it ends when the client hangs up or the daemon stops. A task per connection reading through
anyio's streams cost two to three times the CPU per lone request: each read registered the socket
with epoll and removed it again, and each request passed through the loop several times
(bench/status_load.py).
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import msgspec
from anyio.abc import TaskGroup

from projctl_client.frames import HEADER_SIZE, FrameTooLarge, body_length, frame
from projctl_client.protocol import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    ConfigProblem,
    Envelope,
    Error,
    Reply,
    Request,
    StatusOutput,
    StatusView,
    StreamEnd,
)
from projctld import __version__
from projctld.daemon.listener import BACKLOG
from projctld.errors import ProjctlError
from projctld.logging import get_logger
from projctld.ops.metrics import RequestMetrics, RequestTiming

log = get_logger(__name__)


class Stream:
    """A reply of many frames: the handler's async iterator of replies; StreamEnd follows."""

    def __init__(self, frames: AsyncIterator[Reply]) -> None:
        self.frames = frames


Handler = Callable[[Request], Awaitable[Reply | Stream]]
# The reply to a request when it needs no waiting, else None (it then goes to the Handler).
ImmediateHandler = Callable[[Request], Reply | None]
_PEERCRED = struct.Struct("3i")
# msgspec raises RecursionError, not DecodeError, for maps nested about a thousand deep, and
# UnicodeDecodeError for a str that is not UTF-8 where a field or the type tag is read.
_UNDECODABLE = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)
# Echoed client text is cut so that an error about a huge field still fits in a frame.
_ECHO_LIMIT = 200
# Requests one connection may have answered in a row while others wait: a client that sends
# thousands at once takes turns with the rest.
_FAIR_SHARE = 16


class RpcServer:
    def __init__(
        self,
        handle: Handler,
        *,
        handle_now: ImmediateHandler | None = None,
        max_connections: int = 256,
        idle_timeout: float = 60.0,
        frame_timeout: float = 10.0,
        metrics: RequestMetrics | None = None,
    ) -> None:
        self._handle = handle
        self._handle_now = handle_now
        self.metrics = metrics or RequestMetrics(slow_threshold=float("inf"))
        self._max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        # A timeout ends its connection up to a tenth of itself late: one sweep for all
        # connections costs less than a timer armed and cancelled at every wait.
        self._sweep_interval = min(1.0, max(0.01, min(idle_timeout, frame_timeout) / 10))
        self._connections: set[_Connection] = set()
        self.draining = False
        self._tasks: TaskGroup | None = None
        self._decoder = msgspec.msgpack.Decoder(Request)
        self._envelope = msgspec.msgpack.Decoder(Envelope)
        self._encoder = msgspec.msgpack.Encoder()
        # The status view (or output) last sent and its encoding: status.StatusViews serves
        # the same object again while nothing changed (and never alters one), so it is
        # encoded once.
        self._status: tuple[StatusView | StatusOutput | None, bytes] = (None, b"")
        # Told in every reply while set: the daemon runs without its config.
        self.config_error: ConfigProblem | None = None

    async def serve(self, sock: socket.socket, stop: anyio.Event, grace: float) -> None:
        """Serve on the listening Unix socket `sock` until `stop` is set; then stop accepting,
        give requests in flight up to `grace` seconds to finish, and close every connection."""
        loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            # asyncio listens again with its own backlog: keep the one the socket was made with.
            server = await loop.create_unix_server(lambda: _Connection(self), sock=sock,
                                                   backlog=BACKLOG)
            tasks.start_soon(self._sweep)
            await stop.wait()
            server.close()
            self.draining = True
            for conn in list(self._connections):
                if conn.streaming is not None:
                    conn.streaming.cancel()  # it sends its end frame, then closes
                elif not conn.busy:
                    conn.close()
            with anyio.move_on_after(grace):
                while any(conn.busy for conn in self._connections):
                    await anyio.sleep(0.01)
            if self._connections:
                log.warning("shutdown_cut_requests", requests=len(self._connections))
            for conn in list(self._connections):
                conn.abort()
            # Each connection_lost comes one loop iteration after its abort.
            with anyio.move_on_after(1.0):
                while self._connections:
                    await anyio.sleep(0)
            tasks.cancel_scope.cancel()

    async def _sweep(self) -> None:
        """End the connections whose wait has timed out."""
        while True:
            await anyio.sleep(self._sweep_interval)
            now = time.monotonic()
            for conn in list(self._connections):
                if conn.expires <= now:
                    conn.abort()

    def opened(self, conn: _Connection, sock: socket.socket) -> Error | None:
        """Register a new connection, or say why it may not send requests."""
        _pid, uid, _gid = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
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
        self._connections.add(conn)
        self.metrics.open_connections = len(self._connections)
        return None

    def closed(self, conn: _Connection) -> None:
        self._connections.discard(conn)
        self.metrics.open_connections = len(self._connections)

    def spawn(self, job: Callable[[], Awaitable[None]]) -> None:
        assert self._tasks is not None
        self._tasks.start_soon(job)

    def decode(self, body: bytes, timing: RequestTiming) -> Request | Error:
        """The request in `body`, or the Error that answers it when it is not one."""
        try:
            request = self._decoder.decode(body)
        except _UNDECODABLE as exc:
            timing.mark("decode")
            return self._malformed(body, exc)
        timing.mark("decode")
        timing.identify(request)
        if request.protocol != PROTOCOL_VERSION:
            return _protocol_mismatch(request.protocol, request.client)
        return request

    def answer_now(self, request: Request) -> Reply | None:
        if self._handle_now is None:
            return None
        try:
            return self._handle_now(request)
        except Exception as exc:
            return self._failed(request, exc)

    async def answer(self, request: Request) -> Reply | Stream:
        try:
            return await self._handle(request)
        except Exception as exc:
            return self._failed(request, exc)

    def _failed(self, request: Request, exc: Exception) -> Error:
        """The reply to a request whose handler raised `exc` (called in its except block)."""
        if isinstance(exc, ProjctlError):
            return error_reply(exc)
        log.exception("request_failed", request=type(request).__name__)
        return self.failed(exc)

    def failed(self, exc: Exception) -> Error:
        """The reply that tells of a fault (a ProjctlError says its own)."""
        if isinstance(exc, ProjctlError):
            return error_reply(exc)
        return Error(
            code="internal",
            message="projctld failed while handling this request; its log has the details",
            suggestions=["projctl daemon status"],
        )

    def encode(self, reply: Reply, timing: RequestTiming) -> bytes:
        """`reply` as a whole frame, header and all."""
        timing.mark("handle")
        timing.error = isinstance(reply, Error)
        if reply.config_error is not self.config_error:
            reply.config_error = self.config_error
            self._status = (None, b"")  # a view encoded before says otherwise
        if isinstance(reply, StatusView | StatusOutput):
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
        return frame(encoded)

    def refusal_frame(self, reply: Error) -> bytes:
        return frame(self._encoder.encode(reply))

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


class _Connection(asyncio.Protocol):
    """One client: its unread bytes, and whether a request of it is being answered in a task.

    While a request waits in its task, while the client does not read its replies, and while
    whole requests wait their turn, reading stops, so that what a client sends is held here
    only a frame or a read at a time. An end of file is therefore only seen with every whole
    request answered: asyncio then closes the connection, after the replies still buffered.
    """

    def __init__(self, server: RpcServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._timing: RequestTiming | None = None  # of the frame being read
        self.busy = False  # a task is answering a request
        # While a stream is sent: cancelled when the client hangs up or the daemon stops.
        self.streaming: anyio.CancelScope | None = None
        self._writable = True  # the client reads its replies
        # When the wait in progress times out (time.monotonic()); the server's sweep ends it.
        self.expires = math.inf

    # asyncio's calls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        refusal = self._server.opened(self, transport.get_extra_info("socket"))
        if refusal is not None:
            transport.write(self._server.refusal_frame(refusal))
            transport.close()
            return
        self.expires = time.monotonic() + self._server.idle_timeout

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self.streaming is not None and len(self._buffer) > MAX_FRAME:
            self._pause_reading()  # what it sends meanwhile waits for the stream's end
        self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.closed(self)
        if self.streaming is not None:
            self.streaming.cancel()

    def pause_writing(self) -> None:
        """The client does not read its replies: read no more requests until it does, and
        drop it if it has not in frame_timeout (it would hold its slot and the replies)."""
        self._writable = False
        self._pause_reading()
        self.expires = time.monotonic() + self._server.frame_timeout

    def resume_writing(self) -> None:
        self._writable = True
        self._process()

    # The connection's own work

    def close(self) -> None:
        assert self._transport is not None
        self._transport.close()

    def abort(self) -> None:
        assert self._transport is not None
        self._transport.abort()

    def _process(self) -> None:
        """Answer each whole request in the buffer, up to a fair share, then wait for more."""
        transport, server = self._transport, self._server
        assert transport is not None
        try:
            for _ in range(_FAIR_SHARE):
                if self.busy or not self._writable or transport.is_closing():
                    return
                if server.draining:
                    transport.close()
                    return
                if not self._answer_next():
                    break
            else:
                # Its turn is over; the rest of its requests wait behind everyone else's.
                self._pause_reading()
                asyncio.get_running_loop().call_soon(self._process)
                return
            self._resume_reading()
            timeout = server.frame_timeout if self._buffer else server.idle_timeout
            self.expires = time.monotonic() + timeout
        except Exception:
            # A fault no test foresaw costs this client its connection, never the daemon.
            log.exception("connection_failed")
            transport.abort()

    def _answer_next(self) -> bool:
        """Answer the next request if the buffer holds all of it; False when it does not."""
        buffer, server = self._buffer, self._server
        if len(buffer) < HEADER_SIZE:
            return False
        timing = self._timing = self._timing or RequestTiming()
        try:
            length = body_length(buffer[:HEADER_SIZE])
        except FrameTooLarge as exc:
            timing.rpc, timing.error = "frame_too_large", True
            timing.mark("read")
            server.metrics.record(timing)
            # The body is never read, so the stream cannot be resynchronised: answer, close.
            self._transport.write(server.refusal_frame(Error(  # type: ignore[union-attr]
                code="frame_too_large", message=str(exc), context={"limit": str(MAX_FRAME)}
            )))
            self._transport.close()  # type: ignore[union-attr]
            return False
        if len(buffer) < HEADER_SIZE + length:
            return False
        body = bytes(buffer[HEADER_SIZE:HEADER_SIZE + length])
        del buffer[:HEADER_SIZE + length]
        self._timing = None
        timing.mark("read")
        request = server.decode(body, timing)
        reply = request if isinstance(request, Error) else server.answer_now(request)
        if reply is None:
            self._answer_later(request, timing)  # type: ignore[arg-type]
        else:
            self._send(server.encode(reply, timing), timing)
        return True

    def _answer_later(self, request: Request, timing: RequestTiming) -> None:
        self.busy = True
        self.expires = math.inf  # a refresh or a followed run may wait long
        self._pause_reading()

        async def answer() -> None:
            reply = await self._server.answer(request)
            if isinstance(reply, Stream):
                sent = await self._stream(reply, timing)
                reply = StreamEnd(reason="stopping" if self._server.draining else "done")
            else:
                sent = False
            self.busy = False
            if self._transport.is_closing():  # type: ignore[union-attr]
                return  # cut at shutdown, or the client hung up on a stream
            try:
                if sent:  # a stream's request was recorded at its first frame
                    self._transport.write(  # type: ignore[union-attr]
                        self._server.encode(reply, RequestTiming()))
                else:
                    self._send(self._server.encode(reply, timing), timing)
            except Exception:
                log.exception("connection_failed")
                self._transport.abort()
                return
            self._process()

        self._server.spawn(answer)

    async def _stream(self, stream: Stream, timing: RequestTiming) -> bool:
        """Send each frame of `stream` as it comes, until it ends, the client hangs up or the
        daemon stops; whether any was sent. Reading goes on meanwhile, only so that a hang-up
        is seen."""
        transport = self._transport
        assert transport is not None
        self._resume_reading()
        sent = False

        def emit(reply: Reply) -> None:
            nonlocal sent
            # The request's latency is to its first frame; the rest are not requests.
            if sent:
                transport.write(self._server.encode(reply, RequestTiming()))
            else:
                self._send(self._server.encode(reply, timing), timing)
                sent = True

        with anyio.CancelScope() as scope:
            self.streaming = scope
            try:
                async for reply in stream.frames:
                    if transport.is_closing():
                        break
                    emit(reply)
            except Exception as exc:
                if not isinstance(exc, ProjctlError):
                    log.exception("stream_failed")
                if not transport.is_closing():
                    emit(self._server.failed(exc))
            finally:
                self.streaming = None
                with anyio.CancelScope(shield=True):
                    await stream.frames.aclose()  # type: ignore[attr-defined]
        self._pause_reading()
        return sent

    def _send(self, data: bytes, timing: RequestTiming) -> None:
        self._transport.write(data)  # type: ignore[union-attr]
        timing.mark("send")
        self._server.metrics.record(timing)

    def _pause_reading(self) -> None:
        if not self._transport.is_closing():  # type: ignore[union-attr]
            self._transport.pause_reading()  # type: ignore[union-attr]

    def _resume_reading(self) -> None:
        if not self._transport.is_closing():  # type: ignore[union-attr]
            self._transport.resume_reading()  # type: ignore[union-attr]


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
