"""The handle every daemon component shares: config, state, polling, sync, start time, shutdown."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from projctl_client.protocol import (
    PROTOCOL_VERSION,
    ConfigProblem,
    DaemonInfo,
    MetricsReport,
    Reloaded,
)
from projctld import __version__
from projctld.config import Config
from projctld.daemon.knowledge import Knowledge
from projctld.daemon.status import StatusViews
from projctld.ops import metrics
from projctld.ops.metrics import RequestMetrics
from projctld.plugins.host import PluginHost
from projctld.prompt.files import PromptFiles
from projctld.prompt.segments import Segments
from projctld.store.database import Database
from projctld.team.runs import Runs
from projctld.team.sync.journal import Journal
from projctld.team.sync.runner import SyncRunner
from projctld.upstream.polling import Poller
from projctld.upstream.providers.http import UpstreamHttp


@dataclass
class DaemonContext:
    config: Config
    config_path: str
    config_loaded_at: float
    socket_path: str
    db: Database
    knowledge: Knowledge
    poller: Poller
    journal: Journal
    runner: SyncRunner
    segments: Segments
    prompt_files: PromptFiles
    plugins: PluginHost
    runs: Runs
    requests: RequestMetrics
    hosts: list[UpstreamHttp]
    started_at: float
    sandbox: bool = False
    # Set while the daemon runs without its config (it started with a broken one).
    config_error: ConfigProblem | None = None
    # Reads the config again and applies it (daemon/reload.py).
    reload: Callable[[], Awaitable[Reloaded]] | None = None
    shutdown: anyio.Event = field(default_factory=anyio.Event)
    status_views: StatusViews = field(init=False)

    def __post_init__(self) -> None:
        self.status_views = StatusViews(self)

    def changed(self) -> None:
        """Something a view shows has changed: a poll ended, an event came or went, a sync."""
        self.status_views.changed()
        self.prompt_files.wake()

    def info(self) -> DaemonInfo:
        return DaemonInfo(
            version=__version__,
            protocol=PROTOCOL_VERSION,
            pid=os.getpid(),
            started_at=self.started_at,
            config_path=self.config_path,
            config_loaded_at=self.config_loaded_at,
            socket_path=self.socket_path,
            state_path=self.db.path,
        )

    def metrics(self) -> MetricsReport:
        return metrics.report(self.requests, self.hosts, self.runner.view(),
                              started_at=self.started_at)
