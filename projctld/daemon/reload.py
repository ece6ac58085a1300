"""Applying a config to the running daemon (`projctl daemon reload`, SIGHUP): what changes live,
what waits for a restart.

Live: [projects], [github], [gitlab], [jira] (and their named instances), [polling], [prompt],
[workflows], [retention], [sync] (but a hub turned on or off), [daemon] log_level, log_format
and slow_request, and the variables of the environment file (tokens). A workflow run under way
goes on as it started.

Only at a restart (`projctl daemon restart`): [daemon] shutdown_timeout, idle_timeout,
max_connections and metrics_listen (the socket server and the metrics listener are made once),
[plugins] and [notify] (a plugin's module is imported once and cannot be imported afresh), and
[sync] hub going from none to one or back. Until then they keep their running values, and the
reply and `projctl doctor` name them.

A config or environment file that does not load changes nothing.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass

import anyio
import httpx

from projctl_client.protocol import ConfigProblem, Reloaded
from projctld import environment
from projctld import logging as logs
from projctld.config import Config, effective, load_with_environment
from projctld.daemon.context import DaemonContext
from projctld.errors import ConfigError
from projctld.rpc.server import RpcServer
from projctld.store import last_config
from projctld.store.compaction import Compaction
from projctld.store.http_cache import HttpCache
from projctld.team.sync.hubclient import HubClient
from projctld.upstream.providers import create_providers
from projctld.upstream.providers.http import UpstreamHttp
from projctld.upstream.scheduler import PollScheduler
from projctld.upstream.tokens import TokenSource

log = logs.get_logger(__name__)

# What the upstream providers are made from: rebuilt (and their counters reset) on a change.
_UPSTREAM = ("github", "gitlab", "jira", "extra_instances", "polling", "projects")


def problem_of(exc: ConfigError, config_path: str, running: Config | None) -> ConfigProblem:
    """What every reply says while the daemon runs without its config."""
    if running is None:
        fallback = "no config (none ever loaded here), and polls nothing"
    else:
        names = ", ".join(running.projects) or "no projects"
        fallback = f"the last config that loaded ({names}), and polls nothing"
    return ConfigProblem(
        path=exc.context.get("file", config_path), message=exc.message, running=fallback,
        suggestions=[*exc.suggestions, "projctl daemon reload  # once it is fixed"])


@dataclass
class Reloader:
    """What a reload reaches that the context does not hold."""

    ctx: DaemonContext
    client: httpx.AsyncClient
    cache: HttpCache
    scheduler: PollScheduler
    compaction: Compaction
    server: RpcServer

    def __post_init__(self) -> None:
        self._lock = anyio.Lock()

    async def reload(self) -> Reloaded:
        """Read the config and the environment file again and apply them, or raise
        ConfigError and change nothing."""
        async with self._lock:
            ctx = self.ctx
            new = load_with_environment(ctx.config_path)
            before = environment.applied()
            environment.apply()
            runs, applied, waiting = effective(ctx.config, new)
            if environment.applied() != before:
                applied.append("environment file")
            self._apply(runs, rebuild=ctx.config_error is not None
                        or any(name in applied for name in _UPSTREAM))
            if ctx.config_error is not None:  # polling starts with the jobs made above
                log.info("config_repaired", config=ctx.config_path)
                ctx.config_error = self.server.config_error = None
            last_config.save(ctx.db, new)
            log.info("config_reloaded", applied=applied, restart_needed=waiting)
            return Reloaded(config_path=ctx.config_path, applied=applied,
                            restart_needed=waiting)

    def _apply(self, config: Config, *, rebuild: bool) -> None:
        ctx = self.ctx
        old, ctx.config, ctx.config_loaded_at = ctx.config, config, time.time()
        logs.configure(config.daemon.log_level, config.daemon.log_format)
        ctx.requests.slow_threshold = config.daemon.slow_request
        ctx.knowledge.configure(config)
        ctx.segments.configure(config.prompt)
        ctx.segments.stuck_after = config.polling.stuck_after
        ctx.prompt_files.configure(
            [path for project in config.projects.values() for path in project.paths])
        ctx.runs.configure(config.workflows)
        ctx.journal.actor = config.sync.actor or getpass.getuser()
        self.compaction.configure(config.retention)
        if config.retention.interval != old.retention.interval:
            self.scheduler.every(config.retention.interval, self.compaction.scheduled,
                                 "compaction", first_at=time.time() + config.retention.interval)
        # A new client only for a changed [sync]: it knows the hub's clock from its replies.
        hub = HubClient(self.client, config.sync.hub, TokenSource("hub", "sync", config.sync)) \
            if config.sync.hub and config.sync != old.sync else None
        ctx.runner.configure(config.sync, list(config.projects), hub)
        self.client.timeout = httpx.Timeout(config.polling.request_timeout)
        if rebuild:
            hosts: list[UpstreamHttp] = []
            # Upstream state from the hub needs no token here, unless it may fall back.
            direct = config.upstreams.via == "direct" or config.upstreams.fallback
            providers = {**(create_providers(config, self.client, self.cache, hosts=hosts)
                            if direct else {}), **ctx.plugins.providers}
            ctx.hosts[:] = hosts
            ctx.poller.reconfigure(config, providers)
            self.scheduler.sync_jobs()
            if ctx.inbox is not None:
                ctx.inbox.reconfigure(config, providers)
        elif ctx.inbox is not None and config.desktop.inbox != old.desktop.inbox:
            ctx.inbox.reconfigure(config)
        if ctx.notifier is not None:
            ctx.notifier.configure(config.desktop)
        ctx.changed()
