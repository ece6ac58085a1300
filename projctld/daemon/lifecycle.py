"""The daemon's lifecycle: start-up in order, serve until told to stop, shut down in reverse.

Start-up: config, logging, the single-instance lock, the socket, the store, the pollers and
their schedule, the event sync, then `on_ready`. Shutdown (SIGTERM, SIGINT or a Shutdown
request): stop accepting, let requests in flight finish within `daemon.shutdown_timeout`, stop
polling and syncing, close the HTTP client, flush and close the store, remove the socket
(unless systemd passed it: socket activation), release the lock. Under systemd it also sends
READY=1, watchdog pings and STOPPING=1 (projctld/daemon/systemd.py).
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable

import anyio
import httpx

from projctl_client import paths
from projctl_client.protocol import Reloaded
from projctld import __version__, environment
from projctld import logging as logs
from projctld.config import Config, load_with_environment
from projctld.daemon import listener, reload, systemd
from projctld.daemon.context import DaemonContext
from projctld.daemon.knowledge import Knowledge
from projctld.errors import ConfigError, StoreError
from projctld.ops import prometheus
from projctld.ops.metrics import RequestMetrics
from projctld.ops.metrics_http import serve_metrics
from projctld.plugins.host import PluginHost
from projctld.prompt.files import PromptFiles
from projctld.prompt.segments import Segments
from projctld.rpc.handlers import Handlers
from projctld.rpc.server import RpcServer
from projctld.store import last_config
from projctld.store.checkouts import CheckoutTable
from projctld.store.compaction import Compaction
from projctld.store.database import Database
from projctld.store.events import EventStore
from projctld.store.http_cache import HttpCache
from projctld.store.notifications import NotificationTable
from projctld.store.runs import RunTable
from projctld.store.snapshots import SnapshotTable
from projctld.team.runs import Runs
from projctld.team.sync.hlc import HybridClock
from projctld.team.sync.hubclient import HubClient
from projctld.team.sync.journal import Journal
from projctld.team.sync.runner import SyncRunner
from projctld.upstream import viahub
from projctld.upstream.notify.desktop import Desktop
from projctld.upstream.notify.inbox import Inbox
from projctld.upstream.notify.notifier import Notifier
from projctld.upstream.polling import Poller
from projctld.upstream.providers import create_providers
from projctld.upstream.providers.http import UpstreamHttp
from projctld.upstream.scheduler import PollScheduler
from projctld.upstream.tokens import TokenSource

log = logs.get_logger(__name__)
# The first compaction comes this long after start-up, behind the first polls: a daemon
# restarted more often than [retention] interval (a laptop's) must still compact.
_FIRST_COMPACTION = 60.0
# How often the state database's file is looked for when nothing is written (one stat).
DATABASE_CHECK_INTERVAL = 5.0


async def serve(config_path: str, socket_path: str, on_ready: Callable[[], None], *,
                database: str,
                sandbox: Callable[[contextlib.ExitStack], Config] | None = None) -> None:
    """Run the daemon; `sandbox`, when given, starts fake upstreams and returns their config."""
    started_at = time.time()
    async with contextlib.AsyncExitStack() as stack:
        # Registered in reverse of the order they must be undone in.
        broken: ConfigError | None = None
        if sandbox:
            config: Config | None = sandbox(stack.enter_context(contextlib.ExitStack()))
        else:
            config, broken = _load(config_path)
        logs.configure(*((config.daemon.log_level, config.daemon.log_format) if config
                         else ("info", "auto")))
        notifier = systemd.Notifier.from_environ()
        # Bound (or taken from systemd) before the store opens so that it is removed only after
        # the store is closed; clients that connect meanwhile wait in the backlog until we serve.
        sock, socket_path = stack.enter_context(listener.listen(socket_path))
        db = Database(database)
        stack.callback(db.close)
        problem = None
        if broken is not None:
            # The event log must work on a plane whatever the config says: run the last
            # config that loaded, poll nothing, and say so in every reply.
            config = last_config.load(db)
            problem = reload.problem_of(broken, config_path, config)
            config = config or Config()
            log.error("config_broken", error=broken.message, running=problem.running)
        elif not sandbox:
            last_config.save(db, config)
        assert config is not None
        knowledge = Knowledge(CheckoutTable(db), config)
        stack.callback(knowledge.flush)
        client = await stack.enter_async_context(httpx.AsyncClient(
            timeout=config.polling.request_timeout, follow_redirects=True,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        ))
        plugins = await PluginHost.start(config, client)
        hosts: list[UpstreamHttp] = []
        cache = HttpCache(db, started_at)
        # Upstream state from the team's hub needs no token here, unless it may fall back.
        via_hub = config.upstreams.via == "hub" and bool(config.sync.hub)
        direct = not via_hub or config.upstreams.fallback
        providers = {**(create_providers(config, client, cache, hosts=hosts) if direct else {}),
                     **plugins.providers}
        snapshots = SnapshotTable(db)
        poller = Poller(config, providers, snapshots, plugin_sources=plugins.sources,
                        mirrored=viahub.mirrored(config, snapshots) if via_hub else None)
        events = EventStore(db)
        events.on_stored = plugins.events_stored
        clock = HybridClock(events.max_hlc())
        hub = HubClient(client, config.sync.hub, TokenSource("hub", "sync", config.sync),
                        events.device) if config.sync.hub else None
        feed = viahub.HubFeed(hub, poller, config) if via_hub and hub else None
        runner = SyncRunner(events, hub, clock, config.sync, list(config.projects))
        segments = Segments(config.prompt, knowledge, poller, events, syncing=hub is not None,
                            stuck_after=config.polling.stuck_after)
        prompt_files = PromptFiles(
            paths.prompt_dir(socket_path), segments, knowledge,
            [path for project in config.projects.values() for path in project.paths])
        journal = Journal(events, clock, runner, config.sync.actor or getpass.getuser())
        runs = Runs(RunTable(db), journal, config.workflows)
        compaction = Compaction(db, config.retention, events.device, cache)
        ctx = DaemonContext(
            config=config, config_path=config_path, config_loaded_at=started_at,
            socket_path=socket_path, db=db, knowledge=knowledge, poller=poller,
            journal=journal,
            runner=runner, segments=segments, prompt_files=prompt_files,
            plugins=plugins, runs=runs, requests=RequestMetrics(config.daemon.slow_request),
            hosts=hosts, started_at=started_at, sandbox=sandbox is not None,
            config_error=problem,
        )
        poller.on_polled = runner.on_change = ctx.changed
        notices = NotificationTable(db)
        ctx.notifier = Notifier(config.desktop, notices, Desktop())
        # With a broken config nothing is polled, the inbox neither, until a reload mends it.
        ctx.inbox = Inbox(config, providers if problem is None else {}, notices)
        poller.on_read = ctx.notifier.polled
        runs.on_finished = ctx.notifier.run_finished
        ctx.inbox.on_change = ctx.changed
        ctx.changed()  # the first look at deployments, to compare later ones with
        handlers = Handlers(ctx)
        server = RpcServer(
            handlers, handle_now=handlers.now,
            max_connections=config.daemon.max_connections,
            idle_timeout=config.daemon.idle_timeout,
            frame_timeout=min(10.0, config.daemon.idle_timeout),
            metrics=ctx.requests,
        )
        server.config_error = problem
        schedule = PollScheduler(poller)
        reloader = reload.Reloader(ctx, client=client, cache=cache, scheduler=schedule,
                                   compaction=compaction, server=server)
        ctx.reload = None if sandbox else reloader.reload
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_stop_on_signal, ctx.shutdown)
            if ctx.reload is not None:
                tasks.start_soon(_reload_on_hangup, ctx.reload)
            tasks.start_soon(runner.run)
            if feed is not None:
                tasks.start_soon(feed.run)
            tasks.start_soon(plugins.run)
            tasks.start_soon(prompt_files.run)
            tasks.start_soon(ctx.notifier.run)
            tasks.start_soon(ctx.inbox.run)
            tasks.start_soon(_watch_database, db)
            if config.daemon.metrics_listen:
                await tasks.start(serve_metrics, config.daemon.metrics_listen,
                                  lambda: prometheus.render(prometheus.daemon_families(
                                      ctx.metrics())))
            runs.start(tasks)
            poller.start(tasks)
            schedule.start(polling=problem is None)
            schedule.every(config.retention.interval, compaction.scheduled, "compaction",
                           first_at=time.time() + _FIRST_COMPACTION)
            log.info("serving", socket=socket_path, pid=os.getpid(), version=__version__,
                     state=db.path, config=config_path, sources=len(poller.sources),
                     hub=config.sync.hub or None, device=events.device)
            for note in config.notes:
                log.warning("config_note", note=note, config=config_path)
            on_ready()
            tasks.start_soon(_tell_systemd, notifier, ctx.shutdown,
                             f"serving {socket_path}, {len(poller.sources)} sources")
            try:
                await server.serve(sock, ctx.shutdown, config.daemon.shutdown_timeout)
            finally:
                schedule.shutdown()
                tasks.cancel_scope.cancel()
        log.info("stopping", uptime_s=round(time.time() - started_at, 3))
    log.info("stopped")


async def _tell_systemd(notifier: systemd.Notifier, stop: anyio.Event, status: str) -> None:
    """READY=1 now, WATCHDOG=1 every half WatchdogSec= until `stop` is set, then STOPPING=1.

    The pings come from this event loop, so a loop that hangs stops them and systemd restarts us.
    """
    notifier.notify("READY=1", f"STATUS={status}")
    while not stop.is_set():
        with anyio.move_on_after(notifier.watchdog_interval or math.inf):
            await stop.wait()
        if not stop.is_set():
            notifier.notify("WATCHDOG=1")
    notifier.notify("STOPPING=1", "STATUS=stopping")


async def _watch_database(db: Database) -> None:
    """Notice within seconds a state database removed while nothing is written (writes check
    for themselves), so that it is written again while the file held still has everything."""
    said = None
    while True:
        await anyio.sleep(DATABASE_CHECK_INTERVAL)
        try:
            db.verify()
        except StoreError as exc:
            if exc.message != said:
                log.error("state_database_unsaved", error=exc.message)
            said = exc.message
        else:
            said = None


def _load(config_path: str) -> tuple[Config | None, ConfigError | None]:
    """The config and the environment file, applied; or the error that stops them, with the
    environment file applied still when it is the config that is broken."""
    try:
        config = load_with_environment(config_path)
    except ConfigError as exc:
        with contextlib.suppress(ConfigError):
            environment.apply()
        return None, exc
    environment.apply()
    return config, None


async def _reload_on_hangup(apply: Callable[[], Awaitable[Reloaded]]) -> None:
    """SIGHUP reloads the config, as `projctl daemon reload` does; the log says how it went."""
    with anyio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            log.info("signal_received", signal="SIGHUP")
            try:
                await apply()
            except ConfigError as exc:
                log.error("config_reload_refused", error=exc.message,
                          keeps="the running config")


async def _stop_on_signal(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal_received", signal=signal.Signals(signum).name,
                     already_stopping=stop.is_set())
            stop.set()
