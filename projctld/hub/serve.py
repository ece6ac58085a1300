"""Running the hub: its app under uvicorn over the storage a URL names, until SIGTERM or SIGINT."""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable, Iterator

import anyio
import uvicorn
from anyio.abc import TaskStatus
from litestar import Litestar

from projctld import logging as logs
from projctld.errors import StartupError
from projctld.hub.app import create_app
from projctld.hub.metrics import DEFAULT_SLOW_REQUEST
from projctld.hub.storage.backends import open_storage
from projctld.hub.storage.interface import HubStorage
from projctld.hub.upstream.config import HubConfig
from projctld.hub.upstream.intermediary import Intermediary
from projctld.hub.upstream.polling import hub_polling

log = logs.get_logger(__name__)

# Requests still running this long after a stop signal are cancelled. Long-poll pulls are not
# among them: they are answered (empty) at the signal, and their devices pull again from the
# hub's next run.
SHUTDOWN_GRACE = 5.0


class _Server(uvicorn.Server):
    """uvicorn that reports once it listens, and leaves the signals to serve_hub: its own
    handling re-raises the signal after shutting down, which would end the process before the
    storage is closed."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_hub(database_url: str, host: str, port: int, *, min_client_version: str,
                    slow_request: float = DEFAULT_SLOW_REQUEST,
                    on_ready: Callable[[str], None] | None = None,
                    config: HubConfig | None = None) -> None:
    """Serve the hub on host:port (0 picks a free port) until SIGTERM or SIGINT.

    `on_ready` gets the hub's URL, with the port actually bound, once it accepts connections.
    `config` (hub.toml) names the upstreams it polls for the team and their webhooks.
    """
    storage = open_storage(database_url)
    await storage.open()
    try:
        async with hub_polling(config or HubConfig(""), storage) as poller:
            intermediary = Intermediary(storage, config, poller)
            app = create_app(storage, min_client_version=min_client_version,
                             slow_request=slow_request, intermediary=intermediary)
            await _serve(app, storage, host, port, on_ready, intermediary.stop)
    finally:
        await storage.close()


async def _serve(app: Litestar, storage: HubStorage, host: str, port: int,
                 on_ready: Callable[[str], None] | None, on_stop: Callable[[], None]) -> None:
    with _bind(host, port) as sock:
        bound = sock.getsockname()[1]
        url = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
        config = uvicorn.Config(app, host=host, port=bound, log_config=None,
                                lifespan="on", timeout_graceful_shutdown=SHUTDOWN_GRACE)
        server = _Server(config, lambda: on_ready(url) if on_ready else None)
        async with anyio.create_task_group() as tasks:
            await tasks.start(_stop_on_signal, server, storage, on_stop)
            log.info("hub_starting", url=url, storage=storage.kind)
            await server.serve(sockets=[sock])
            tasks.cancel_scope.cancel()
    log.info("hub_stopped")


@contextlib.contextmanager
def _bind(host: str, port: int) -> Iterator[socket.socket]:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}: {exc.strerror or exc}",
                           suggestions=["pass --host 127.0.0.1, or an address of this "
                                        "machine"]) from None
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {host} port {port}: {exc.strerror or exc}",
                suggestions=[f"stop whatever listens on port {port}, or pass another --port",
                             "pass --host 127.0.0.1, or an address of this machine"],
            ) from None
        yield sock


async def _stop_on_signal(server: uvicorn.Server, storage: HubStorage,
                          on_stop: Callable[[], None], *,
                          task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("signal_received", signal=signal.Signals(signum).name)
            # A second signal stops waiting for the requests still in flight.
            server.force_exit = server.should_exit
            server.should_exit = True
            storage.stop_waiting()
            on_stop()  # upstream streams end, as long polls are answered
