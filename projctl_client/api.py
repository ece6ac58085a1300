"""How plugins talk to projctld, version API_VERSION: the methods of `projctl call` (JSON in, JSON
out, for executables in any language), and the same as Python functions for command plugins.

Stable within an API version: methods and arguments are only ever added, and replies only gain
fields. Replies are the views of the wire schema (projctl_client/protocol.py) without their
`type`: `status` is `projctl status --json`'s view, `log` is `projctl log --json`'s, `note`
and `event` are Recorded, `request` is PluginReply. Every function raises CallError, with
`message`, `suggestions` (what to type next), `exit_code` (README's table) and, when projctld
refused, its `code`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from projctl_client import __version__, commands, git
from projctl_client.connection import ClientError, DaemonError, NotRunning, connect, request
from projctl_client.daemonctl import connect_or_start
from projctl_client.frames import PROTOCOL_VERSION

API_VERSION = commands.API_VERSION
CallError = ClientError
# Each method's arguments and the JSON types each takes (None: any JSON value).
METHODS: dict[str, dict[str, tuple[type, ...] | None]] = {
    "version": {},
    "status": {},
    "log": {"project": (str,), "types": (list,), "since": (int, float), "limit": (int,)},
    "note": {"text": (str,), "project": (str,)},
    "event": {"type": (str,), "payload": (dict,), "project": (str,)},
    "request": {"plugin": (str,), "name": (str,), "args": None, "project": (str,)},
}
REQUIRED = {"note": ("text",), "event": ("type",), "request": ("plugin", "name")}
LOG_LIMIT = 10_000  # as `projctl log --limit`


class UsageError(ClientError):
    """A method or arguments that no projctld would take (exit code 2)."""

    exit_code = 2


def version() -> dict[str, Any]:
    """This interface's version, this projctl's, and the running daemon's (None when none
    runs: it is not started for this)."""
    try:
        with connect() as conn:
            daemon = conn.call(request("ping"))["daemon"]
    except NotRunning:
        daemon = None
    return {"api": API_VERSION, "client": __version__, "protocol": PROTOCOL_VERSION,
            "daemon": daemon}


def status() -> dict[str, Any]:
    """The status view, for the current directory's checkout (`projctl status --json`)."""
    view = _ask("status", checkout=_checkout())
    view["config_error"] = view.pop("config_error", None)  # listed last, as status --json
    return view


def log(project: str | None = None, types: list[str] | tuple[str, ...] = (),
        since: float | None = None, limit: int = 50) -> dict[str, Any]:
    """The newest `limit` events of a project (the current checkout's by default), oldest
    first; `types` are types or their prefixes (`x.sentry` matches x.sentry.release)."""
    head: dict[str, Any] = {}
    events = [event for page in log_pages(head, project, types, since, limit) for event in page]
    return {"project": head["project"], "events": events, "sync": head["sync"]}


def log_pages(head: dict[str, Any], project: str | None = None,
              types: list[str] | tuple[str, ...] = (), since: float | None = None,
              limit: int = 50) -> Iterator[list[dict[str, Any]]]:
    """`log`'s events a page at a time, for a history too large to hold; `head` gets the
    reply's project and sync as they come."""
    if not 1 <= limit <= LOG_LIMIT:
        raise UsageError(f"limit is from 1 to {LOG_LIMIT}, not {limit}")
    fields = {"checkout": _checkout(), "project": project, "since": since,
              "types": list(types), "paged": True}
    try:
        with connect_or_start() as conn:
            cursor, wanted = None, limit
            while wanted > 0:
                view = conn.call(request("log", **fields, limit=wanted, cursor=cursor))
                head.update(project=view["project"], sync=view["sync"])
                yield view["events"]  # type: ignore[misc]
                wanted -= len(view["events"])  # type: ignore[arg-type]
                cursor = view.get("next")
                if not cursor:
                    return
    except DaemonError as exc:
        raise _for_call(exc, "log") from None


def note(text: str, project: str | None = None) -> dict[str, Any]:
    """Record a note (the project named, else the current checkout's): the event and sync."""
    return _ask("note", checkout=_checkout(), project=project, text=text)


def event(type: str, payload: dict[str, Any] | None = None,
          project: str | None = None) -> dict[str, Any]:
    """Record a team event of a plugin's own type `x.NAME.TYPE` with `payload` (JSON values;
    the event at most 64 KiB): kept, synced and shown by `projctl log` like any other."""
    from projctl_client.protocol import PLUGIN_EVENT_TYPE

    if len(type) > 64 or not re.match(PLUGIN_EVENT_TYPE, type):
        raise UsageError(f"{type!r} is not a plugin's event type: x.NAME.TYPE, lower-case "
                         "letters, digits and _, at most 64 characters (e.g. x.sentry.release)")
    return _ask("record_event", checkout=_checkout(), project=project, event_type=type,
                payload=payload or {})


def plugin_request(plugin: str, name: str, args: Any = None,
                   project: str | None = None) -> dict[str, Any]:
    """Ask daemon plugin `plugin` (its name in `projctl plugins`) for `name` with `args`
    (JSON values, at most 64 KiB): {"plugin", "name", "reply"}, the reply being whatever its
    projctl_request hook answered."""
    return _ask("plugin_request", checkout=_checkout(), project=project, plugin=plugin,
                name=name, args=args)


_FUNCTIONS = {"version": version, "status": status, "log": log, "note": note, "event": event,
              "request": plugin_request}


def call(method: str, args: dict[str, Any]) -> dict[str, Any]:
    """`projctl call METHOD ARGS`: the method's reply; UsageError for a method or arguments
    that do not fit METHODS."""
    check(method, args)
    return _FUNCTIONS[method](**args)


def check(method: str, args: object) -> None:
    """Refuse (UsageError) a method that does not exist, or arguments it does not take."""
    if method not in METHODS:
        raise UsageError(f"no method {method!r}; the methods are: {', '.join(METHODS)}",
                         ["projctl call --help"])
    if not isinstance(args, dict):
        raise UsageError(f"the arguments of {method} are a JSON object, not "
                         f"{_json_type(args)}", [f"projctl call {method} '{{...}}'"])
    taken = METHODS[method]
    for key, value in args.items():
        if key not in taken:
            accepted = ", ".join(taken) or "none"
            raise UsageError(f"{method} takes no argument {key!r} (it takes: {accepted})",
                             ["projctl call --help"])
        kinds = taken[key]
        if kinds is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            wanted = " or ".join(_JSON_NAMES[kind] for kind in kinds)
            raise UsageError(f"{method}: {key} is {wanted}, not {_json_type(value)}")
    if not all(isinstance(kind, str) for kind in args.get("types", [])):
        raise UsageError(f"{method}: types is an array of strings")
    missing = [key for key in REQUIRED.get(method, ()) if key not in args]
    if missing:
        raise UsageError(f"{method} needs {', '.join(missing)}", ["projctl call --help"])


_JSON_NAMES = {str: "a string", list: "an array", dict: "an object", int: "a number",
               float: "a number"}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return next((name for kind, name in _JSON_NAMES.items() if isinstance(value, kind)),
                type(value).__name__)


def _checkout() -> dict[str, object] | None:
    try:
        return git.find_checkout(os.getcwd())
    except OSError:  # the working directory was deleted under us
        return None


def _ask(kind: str, **fields: object) -> dict[str, Any]:
    try:
        with connect_or_start() as conn:
            reply = conn.call(request(kind, **fields))
    except DaemonError as exc:
        raise _for_call(exc, kind) from None
    del reply["type"]
    return reply


def _for_call(exc: DaemonError, kind: str) -> DaemonError:
    """A refusal as plugins get it; a daemon older than this request is told how to mend."""
    if exc.code == "bad_request" and f"'{kind}'" in exc.message:
        exc.message = (f"the running projctld does not know this request ({kind}): it is "
                       f"older than this projctl {__version__}")
        exc.suggestions = ["projctl daemon restart  # runs the installed projctld"]
    return exc
