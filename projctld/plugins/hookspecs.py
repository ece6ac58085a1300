"""The hooks a projctld plugin may implement, and the pluggy markers that declare them.

Every hook is a plain function (not async). The daemon calls each plugin's implementation on its
own thread with a time limit (`[plugins] timeout`); one that raises or overruns is reported in
`projctl plugins` and the log and left out, and the other plugins' answers still count. A plugin
implements only the hooks it needs, and only with the arguments it wants: pluggy passes
arguments by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import pluggy

if TYPE_CHECKING:
    from projctl_client.protocol import Reply, Request, StatusView
    from projctld.config import Config
    from projctld.plugins.upstreams import Upstream
    from projctld.team.sync.events import Event

PROJECT = "projctl"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def projctl_configure(config: Config, settings: dict[str, Any]) -> None:
    """Called once at start, before any other hook: the daemon's config and this plugin's own
    `[plugins.settings.NAME]` table (empty when there is none)."""


@hookspec
def projctl_before_request(request: Request) -> None:
    """A client command is about to be handled (any request but ping and status, which must
    stay cheap; status has projctl_status_view). The request is a frozen msgspec Struct."""


@hookspec
def projctl_after_request(request: Request, reply: Reply) -> Reply | None:
    """A client command was handled (the same requests as projctl_before_request), `reply`
    being what the client will get, an Error included. Return a replacement reply (for example
    `msgspec.structs.replace(reply, ...)`) or None to keep it; each plugin gets the reply as the
    one before it left it."""


@hookspec
def projctl_validate_deployment(project: str, environment: str, branch: str | None,
                                commit: str | None, actor: str,
                                dry_run: bool) -> Iterable[str] | str | None:
    """`projctl deploy` is about to record and run a deployment (or, with `dry_run`, to show
    it). Return messages to refuse it: the client shows every plugin's messages and nothing is
    recorded or run. Return None or [] to allow it. A plugin that fails here does not refuse."""


@hookspec
def projctl_event(event: Event, origin: Literal["recorded", "received"]) -> None:
    """A team event was stored: `recorded` on this machine, or `received` from the hub. Called
    in the background after the event is on disk, in order, never delaying the command or the
    sync that stored it; when plugins fall far behind, events are dropped for them (and logged)."""


@hookspec
def projctl_status_view(view: StatusView) -> StatusView | None:
    """The status view about to be sent to `projctl status` (a copy: change it freely). Return
    the view to send, or None to send the one before. `view.notices` holds lines that the
    client shows under the current checkout."""


@hookspec
def projctl_upstreams(config: Config) -> Iterable[Upstream] | Upstream | None:
    """Called once at start: upstreams this plugin polls, beside GitHub, GitLab and Jira. Their
    change requests, pipelines and tickets appear in `projctl status` like the built-in ones'."""


@hookspec
def projctl_request(name: str, args: Any, project: str | None) -> Any:
    """A request to this plugin from `projctl call request` or a command plugin: `name` says
    what is asked, `args` are JSON values (None when none were sent), `project` is the project
    named or the caller's checkout's (None outside every project). Only the named plugin's
    implementation is called. Return JSON values (dicts, lists, str, int, float, bool, None;
    tuples, dataclasses and Structs are converted), at most 256 KiB; raise
    `projctld.plugins.RequestRefused(message, suggestions=[...])` to refuse it."""
