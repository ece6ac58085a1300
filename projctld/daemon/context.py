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
from projctld.daemon.status import DEPLOYMENTS_PER_ENVIRONMENT, StatusViews
from projctld.errors import StoreError
from projctld.logging import get_logger
from projctld.ops import metrics
from projctld.ops.metrics import RequestMetrics
from projctld.plugins.host import PluginHost
from projctld.prompt.files import PromptFiles
from projctld.prompt.segments import Segments
from projctld.store.database import Database
from projctld.team.runs import Runs
from projctld.team.sync.journal import Journal
from projctld.team.sync.runner import SyncRunner
from projctld.upstream.notify.inbox import Inbox
from projctld.upstream.notify.notifier import Notifier
from projctld.upstream.polling import Poller
from projctld.upstream.providers.http import UpstreamHttp

log = get_logger(__name__)


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
    # Desktop notifications and the inbox (upstream/notify/).
    notifier: Notifier | None = None
    inbox: Inbox | None = None
    status_views: StatusViews = field(init=False)
    # Counts changed() calls; watch and wait streams sleep until it moves.
    version: int = field(init=False, default=0)
    _moved: anyio.Event = field(init=False, default_factory=anyio.Event)

    def __post_init__(self) -> None:
        self.status_views = StatusViews(self)

    def changed(self) -> None:
        """Something a view shows has changed: a poll ended, an event came or went, a sync."""
        self.status_views.changed()
        self.prompt_files.wake()
        self.version += 1
        self._moved.set()
        self._moved = anyio.Event()
        if self.notifier is not None:
            self._look_at_deployments(self.notifier)

    async def next_change(self, version: int, timeout: float) -> None:
        """Return once changed() has been called since `version` was read, or after
        `timeout` seconds."""
        if self.version != version:
            return
        with anyio.move_on_after(timeout):
            await self._moved.wait()

    def _look_at_deployments(self, notifier: Notifier) -> None:
        store = self.journal.store
        try:
            for project in self.config.projects:
                deployments = store.deployments(project, DEPLOYMENTS_PER_ENVIRONMENT)
                mine = {d.deployment for d in deployments
                        if store.started_by(project, d.deployment)[0] == store.device}
                notifier.deployments(project, deployments, mine)
        except StoreError as exc:
            log.warning("deployments_unread_for_notifications", error=exc.message)

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
