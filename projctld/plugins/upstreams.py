"""Upstreams that plugins add: polled on the built-in ones' schedule, shown in status alike."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from projctld.config import Config, ProjectConfig
from projctld.errors import UpstreamError
from projctld.plugins.threads import Abandoned, call_in_thread
from projctld.upstream.providers.model import Snapshot

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# The bounds of the built-in intervals (config.PollSeconds).
MIN_INTERVAL, MAX_INTERVAL = 10.0, 86400.0


@dataclass(frozen=True)
class Upstream:
    """What a plugin's `projctl_upstreams` returns, one per upstream it polls.

    `poll(project)` runs on its own thread, at most `timeout` seconds, every `interval` seconds
    (halved while the user is active, backing off after failures, as for GitHub). It returns a
    `projctld.upstream.providers.model.Snapshot`, or a dict of its shape: {"change_requests": [...],
    "pipelines": [...], "tickets": [...]} of the fields of ChangeRequestView, PipelineView and
    TicketView in projctl_client/protocol.py. Raising `projctld.errors.UpstreamError` says what
    went wrong and what to do; status shows it and keeps the last good data.
    """

    name: str
    poll: Callable[[str], Snapshot | dict]
    projects: Sequence[str] = ()  # empty: every configured project
    interval: float = 300.0
    timeout: float = 30.0


def problem(upstream: object, taken: set[str], config: Config) -> str | None:
    """Why a plugin's answer cannot be used as an upstream, or None when it can."""
    if not isinstance(upstream, Upstream):
        return f"returned {type(upstream).__name__}, not projctld.plugins.Upstream"
    if not _NAME.match(upstream.name):
        return f"upstream name {upstream.name!r} is not 1-32 lowercase letters, digits, _ or -"
    if upstream.name in config.instances() or upstream.name in taken:
        return f"upstream name {upstream.name!r} is taken"
    if not MIN_INTERVAL <= upstream.interval <= MAX_INTERVAL:
        return f"upstream {upstream.name}: interval {upstream.interval!r} is not between " \
               f"{MIN_INTERVAL:g} and {MAX_INTERVAL:g} seconds"
    if not 0 < upstream.timeout <= 600:
        return f"upstream {upstream.name}: timeout {upstream.timeout!r} is not in (0, 600]"
    unknown = [p for p in upstream.projects if p not in config.projects]
    if unknown:
        return f"upstream {upstream.name}: no configured project named {', '.join(unknown)}"
    return None


class PluginProvider:
    """A plugin's Upstream seen as a Provider (upstream/providers/model.py) by the poller."""

    def __init__(self, upstream: Upstream, plugin: str,
                 report: Callable[[str, Exception | None], None]) -> None:
        self.upstream = upstream.name
        self._spec = upstream
        self._plugin = plugin
        self._report = report
        # Projects whose poll timed out and still runs: never a second thread for one project.
        self._running: set[str] = set()

    async def poll(self, project: str, config: ProjectConfig, *, fresh: bool) -> Snapshot:
        what = f"{self.upstream} (plugin {self._plugin})"
        if project in self._running:
            raise UpstreamError(f"{what}: the previous poll of {project} has not returned yet",
                                code="timeout", retryable=True,
                                suggestions=["projctl plugins  # the plugin's last error"])
        self._running.add(project)

        def run() -> Snapshot | dict:
            try:
                return self._spec.poll(project)
            finally:
                self._running.discard(project)

        try:
            result = await call_in_thread(run, timeout=self._spec.timeout,
                                          name=f"projctl plugin {self._plugin}")
        except UpstreamError:
            raise
        except Abandoned as exc:
            self._report(f"{project}: {exc}", None)
            raise UpstreamError(
                f"{what} did not answer within {self._spec.timeout:g} s", code="timeout",
                retryable=True, suggestions=["projctl plugins  # the plugin's last error"],
            ) from None
        except Exception as exc:
            self._report(f"{project}: {type(exc).__name__}: {exc}", exc)
            raise UpstreamError(f"{what} failed: {type(exc).__name__}: {exc}", code="plugin",
                                suggestions=["projctl plugins", "the daemon's log has the "
                                             "traceback; report it to the plugin's authors"]
                                ) from None
        try:
            # Through builtins, so that a Snapshot the plugin built is checked field by field too.
            return msgspec.convert(msgspec.to_builtins(result), Snapshot)
        except (msgspec.ValidationError, TypeError) as exc:
            self._report(f"{project}: returned data of the wrong shape: {exc}", None)
            raise UpstreamError(f"{what} returned data of the wrong shape: {exc}",
                                code="malformed",
                                suggestions=["report it to the plugin's authors"]) from None
