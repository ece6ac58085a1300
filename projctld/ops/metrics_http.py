"""The daemon's optional Prometheus endpoint (`daemon.metrics_listen`): GET /metrics over HTTP/1.1.

A scrape is one small GET, so this is a minimal server on anyio rather than an HTTP framework
in every developer's daemon: it reads one request head, answers it and closes the connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from projctld.logging import get_logger
from projctld.ops.prometheus import CONTENT_TYPE

log = get_logger(__name__)

MAX_HEAD = 8192
HEAD_TIMEOUT = 5.0
LOOPBACK = "127.0.0.1"


def parse_listen(value: str) -> tuple[str, int]:
    """"9464" and ":9464" mean loopback; "HOST:PORT" and "[V6]:PORT" say where."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or LOOPBACK
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"daemon.metrics_listen: port {number} is not between 1 and 65535")
    return host, number


async def serve_metrics(listen: str, exposition: Callable[[], str],
                        task_status: anyio.abc.TaskStatus[tuple[str, int] | None]
                        = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve `exposition()` at /metrics on `listen` until cancelled; reports the bound address.

    A port that cannot be bound is logged and leaves the daemon serving without the endpoint:
    metrics must never cost a developer their status.
    """
    try:
        host, port = parse_listen(listen)
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except (OSError, ValueError) as exc:
        log.error("metrics_listen_failed", listen=listen, error=str(exc),
                  fix="set daemon.metrics_listen to a free port, or \"\" to turn it off")
        task_status.started(None)
        return
    bound = listener.extra(anyio.abc.SocketAttribute.local_address)
    log.info("metrics_listening", address=f"{bound[0]}:{bound[1]}")
    task_status.started((bound[0], bound[1]))
    async with listener:
        await listener.serve(lambda stream: _answer(stream, exposition))


async def _answer(stream: SocketStream, exposition: Callable[[], str]) -> None:
    async with stream:
        try:
            with anyio.fail_after(HEAD_TIMEOUT):
                head = await BufferedByteReceiveStream(stream).receive_until(b"\r\n\r\n",
                                                                             MAX_HEAD)
            method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        except (TimeoutError, anyio.DelimiterNotFound, anyio.EndOfStream,
                anyio.IncompleteRead, anyio.BrokenResourceError, ValueError, OSError):
            return
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            status, body, extra = "405 Method Not Allowed", "only GET /metrics\n", \
                "Allow: GET, HEAD\r\n"
        elif path != "/metrics":
            status, body, extra = "404 Not Found", "projctld serves only /metrics\n", ""
        else:
            status, body, extra = "200 OK", exposition(), ""
        content = body.encode()
        response = (f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                    f"Content-Length: {len(content)}\r\n{extra}Connection: close\r\n\r\n")
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await stream.send(response.encode() + (b"" if method == "HEAD" else content))
