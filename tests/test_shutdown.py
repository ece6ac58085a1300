"""Ordered shutdown of the RPC server: stop accepting, let requests in flight finish, then cut."""

from __future__ import annotations

import os
import socket
import tempfile

import anyio
import pytest

from projctl_client.connection import DaemonUnavailable, connect, request
from projctl_client.protocol import Ack, Reply, Request
from projctld.rpc.server import RpcServer

# A hang guard for the whole scenario, far above what it needs; not a timing assertion.
GUARD = 30


class SlowHandler:
    """Answers Ack after `delay` seconds and tells the test when a request has arrived."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.arrived = anyio.Event()
        self.finished = 0

    async def __call__(self, request: Request) -> Reply:
        self.arrived.set()
        await anyio.sleep(self.delay)
        self.finished += 1
        return Ack(message="done")


@pytest.fixture
def socket_path():
    directory = tempfile.mkdtemp(prefix="pjs", dir="/tmp")
    yield os.path.join(directory, "s.sock")


def listen(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen()
    return sock


def test_a_request_in_flight_finishes_and_idle_clients_are_closed(socket_path) -> None:
    handler = SlowHandler(delay=0.3)
    replies: list[dict] = []
    idle_outcome: list[str] = []

    def slow_client() -> None:
        with connect(socket_path) as conn:
            replies.append(conn.call(request("ping")))

    def idle_client(connected: anyio.Event) -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(GUARD)
            sock.connect(socket_path)
            anyio.from_thread.run_sync(connected.set)
            # Sends nothing; recv returns b"" once the server closes the connection.
            idle_outcome.append("closed" if sock.recv(1) == b"" else "answered")

    async def scenario() -> None:
        server = RpcServer(handler, idle_timeout=60)
        stop = anyio.Event()
        listener = listen(socket_path)
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(server.serve, listener, stop, 10.0)
                idle_connected = anyio.Event()
                tasks.start_soon(anyio.to_thread.run_sync, idle_client, idle_connected)
                await idle_connected.wait()
                tasks.start_soon(anyio.to_thread.run_sync, slow_client)
                await handler.arrived.wait()
                stop.set()
        assert server.metrics.open_connections == 0

    anyio.run(scenario)
    assert replies == [{"type": "ack", "message": "done", "config_error": None}]
    assert handler.finished == 1
    assert idle_outcome == ["closed"]
    with pytest.raises(DaemonUnavailable):
        connect(socket_path)  # no longer accepting


def test_a_request_that_outlives_the_grace_period_is_cut(socket_path) -> None:
    handler = SlowHandler(delay=3600)
    outcome: list[str] = []

    def client() -> None:
        try:
            with connect(socket_path) as conn:
                conn.call(request("ping"))
        except DaemonUnavailable as exc:
            outcome.append(exc.message)

    async def scenario() -> None:
        server = RpcServer(handler)
        stop = anyio.Event()
        listener = listen(socket_path)
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(server.serve, listener, stop, 0.2)
                tasks.start_soon(anyio.to_thread.run_sync, client)
                await handler.arrived.wait()
                stop.set()

    anyio.run(scenario)
    assert handler.finished == 0
    assert outcome and "lost the connection" in outcome[0]

