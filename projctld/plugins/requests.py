"""A daemon plugin's own requests (its projctl_request hook), as `projctl call request` and command
plugins send them: one plugin's handler on its own thread, bounded in size, time and threads.

What goes wrong is told to the caller as an Error with what to do next; when it is the
plugin's fault (it raised, overran, or answered what JSON cannot carry) it is also kept for
`projctl plugins`, like any hook's failure. A handler refuses a request on purpose by raising
RequestRefused: that is an answer, not a failure.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from projctld.errors import ProjctlError
from projctld.plugins.threads import Abandoned, call_in_thread
from projctld.team.sync.events import json_only

HOOK = "projctl_request"
# Bytes of a request's arguments and of a handler's reply, encoded as msgpack: a reply stays
# far inside the RPC frame (MAX_FRAME, 1 MiB) with its envelope.
MAX_ARGS = 64 << 10
MAX_REPLY = 256 << 10
# Calls of one plugin's handler whose threads have not returned yet, those abandoned after the
# timeout included: past this many, new ones are refused until one returns, so that a handler
# that hangs holds at most this many threads.
IN_FLIGHT = 4
# Characters of a refusal's message, and of each of its (at most 10) suggestions, passed on.
_TEXT = 2000
_encode = msgspec.msgpack.Encoder().encode


class RequestRefused(ProjctlError):
    """Raise it in projctl_request to refuse a request with a message for the caller (and
    `suggestions`: what to type next). It reaches the caller as the Error `plugin_refused`."""

    code = "plugin_refused"


class Slots:
    """How many calls of each plugin's handler still hold a thread (they end on those threads,
    hence the lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    def take(self, plugin: str) -> bool:
        with self._lock:
            if self._held.get(plugin, 0) >= IN_FLIGHT:
                return False
            self._held[plugin] = self._held.get(plugin, 0) + 1
            return True

    def give(self, plugin: str) -> None:
        with self._lock:
            self._held[plugin] -= 1


def check_args(plugin: str, name: str, args: Any) -> None:
    """Refuse arguments that are not JSON values or are larger than MAX_ARGS."""
    if not json_only(args):
        raise ProjctlError(
            f"the arguments of request {name!r} to plugin {plugin} hold a value JSON cannot "
            "carry (binary, an extension type, a non-string key, NaN, an infinity or an "
            "integer beyond 64 bits)", code="bad_request",
            suggestions=["keep arguments to strings, numbers, booleans, null, arrays and "
                         "objects"])
    size = len(_encode(args))
    if size > MAX_ARGS:
        raise ProjctlError(
            f"the arguments of request {name!r} to plugin {plugin} are {size} bytes, more "
            f"than the {MAX_ARGS // 1024} KiB a plugin request may carry", code="too_large",
            suggestions=["send less, or have the plugin read it from a file"])


def unknown_plugin(plugin: str, loaded: list[str], handlers: list[str],
                   reason: str | None) -> ProjctlError:
    """The refusal of a request to a plugin that is not loaded or has no handler."""
    if plugin in loaded:
        return ProjctlError(
            f"plugin {plugin} has no request handler (no projctl_request hook)",
            code="no_request_handler",
            suggestions=["projctl plugins  # the hooks each plugin implements"])
    close = difflib.get_close_matches(plugin, handlers, n=1, cutoff=0.6)
    why = f" ({reason})" if reason else ""
    return ProjctlError(
        f"no loaded plugin named {plugin!r}{why}; plugins that answer requests: "
        f"{', '.join(handlers) or 'none'}", code="unknown_plugin",
        suggestions=[*(f"did you mean {name}?" for name in close), "projctl plugins"])


async def ask(function: Callable[[], Any], *, plugin: str, name: str, timeout: float,
              slots: Slots, failed: Callable[[str, Exception | None], None]) -> Any:
    """`function()` (the bound hook call) on a plugin thread: its reply, as JSON values.
    `failed(message, exc)` records a fault of the plugin's; every fault raises ProjctlError."""
    if not slots.take(plugin):
        raise ProjctlError(
            f"plugin {plugin} is still working on {IN_FLIGHT} earlier requests (some may have "
            "timed out and not returned yet); try again later", code="plugin_busy",
            suggestions=["projctl plugins  # its errors"])

    def run() -> Any:
        try:
            return function()
        finally:
            slots.give(plugin)

    what = f"plugin {plugin} on request {name!r}"
    try:
        result = await call_in_thread(run, timeout=timeout, name=f"projctl plugin {plugin}")
    except RequestRefused as exc:
        raise ProjctlError(
            exc.message[:_TEXT] or f"{what}: refused", code=RequestRefused.code,
            context={"plugin": plugin}, suggestions=[s[:_TEXT] for s in exc.suggestions[:10]],
        ) from None
    except Abandoned as exc:
        failed(f"request {name!r}: {exc} (plugins.timeout); abandoned", None)
        raise ProjctlError(f"{what} did not answer within {timeout:g} s ([plugins] timeout)",
                           code="plugin_timeout", context={"plugin": plugin},
                           suggestions=["projctl plugins  # its errors"]) from None
    except Exception as exc:
        failed(f"request {name!r}: {type(exc).__name__}: {exc}", exc)
        raise ProjctlError(f"{what} failed: {type(exc).__name__}: {str(exc)[:_TEXT]}",
                           code="plugin_failed", context={"plugin": plugin},
                           suggestions=["the daemon's log has the traceback; report it to "
                                        "the plugin's authors"]) from None
    value, problem = _reply(result)
    if problem is not None:
        failed(f"request {name!r}: {problem}", None)
        raise ProjctlError(f"{what} answered {problem}", code="plugin_failed",
                           context={"plugin": plugin},
                           suggestions=["report it to the plugin's authors"])
    return value


def _reply(result: Any) -> tuple[Any, str | None]:
    """A handler's answer as it is sent, or why it cannot be. Tuples, sets, dataclasses,
    Structs and datetimes become what msgspec.to_builtins makes of them; anything else must be
    JSON (bytes are not turned into base64 behind the plugin's back)."""
    try:
        value = msgspec.to_builtins(result, builtin_types=(bytes, bytearray, memoryview))
    except (TypeError, ValueError, RecursionError) as exc:
        return None, f"a {type(result).__name__} that is not JSON ({exc})"
    if not json_only(value):
        return None, ("a value JSON cannot carry (bytes, a non-string key, NaN, an infinity "
                      "or an integer beyond 64 bits)")
    size = len(_encode(value))
    if size > MAX_REPLY:
        return None, f"{size} bytes, more than the {MAX_REPLY // 1024} KiB a reply may hold"
    return value, None
