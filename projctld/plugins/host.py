"""The plugin host: loads plugins into pluggy and calls their hooks one plugin at a time, each on
its own thread with a time limit, so that no plugin can stop the daemon or a command.

A plugin that fails to import or register, raises in a hook or overruns `[plugins] timeout` is
logged, counted and its last error kept (`projctl plugins` shows them); what the other plugins
answered still counts. A hook that no plugin implements costs one list lookup.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import msgspec
import pluggy
from pluggy import HookCaller, HookImpl

from projctl_client.protocol import (
    Ping,
    PluginView,
    Prompt,
    Reply,
    Request,
    Status,
    StatusView,
)
from projctld import __version__
from projctld.config import Config
from projctld.errors import ProjctlError
from projctld.logging import get_logger
from projctld.plugins import hookspecs, requests
from projctld.plugins.discovery import Candidate, candidates
from projctld.plugins.notifier import Notifier
from projctld.plugins.threads import Abandoned, call_in_thread
from projctld.plugins.upstreams import PluginProvider, Upstream, problem
from projctld.redact import redact_text
from projctld.rpc.server import error_reply
from projctld.team.sync.events import Event
from projctld.upstream.polling import Key
from projctld.upstream.providers.model import Provider

log = get_logger(__name__)
HOOKS = tuple(name for name in vars(hookspecs) if name.startswith("projctl_"))
CONFIGURE = "projctl_configure"
BEFORE = "projctl_before_request"
AFTER = "projctl_after_request"
VALIDATE = "projctl_validate_deployment"
EVENT = "projctl_event"
STATUS = "projctl_status_view"
UPSTREAMS = "projctl_upstreams"
REQUEST = requests.HOOK
# Importing a plugin (and making its instance) may take this long; past it, it is skipped.
IMPORT_TIMEOUT = 5.0
# Batches of stored events waiting for the plugins; past this many, new ones are dropped.
EVENT_BACKLOG = 1000
# Ping measures the round trip, status and prompt run in shell prompts: they stay off plugin
# threads (status has its own hook, projctl_status_view).
_UNHOOKED = (Ping, Status, Prompt)
_FAILED = object()
_encode = msgspec.msgpack.Encoder().encode
_DECODERS: dict[Any, msgspec.msgpack.Decoder[Any]] = {
    Reply: msgspec.msgpack.Decoder(Reply), StatusView: msgspec.msgpack.Decoder(StatusView)}


@dataclass
class PluginRecord:
    name: str
    source: str
    target: str
    version: str
    loaded: bool = False
    disabled: bool = False
    hooks: list[str] = field(default_factory=list)
    errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    # Hooks with a call that timed out and still runs: never a second thread stuck in one.
    stuck: set[str] = field(default_factory=set)

    def view(self) -> PluginView:
        return PluginView(name=self.name, source=self.source, target=self.target,
                          version=self.version, loaded=self.loaded, disabled=self.disabled,
                          hooks=self.hooks, errors=self.errors, last_error=self.last_error,
                          last_error_at=self.last_error_at)


class PluginHost:
    def __init__(self, timeout: float = 2.0) -> None:
        self.timeout = timeout
        self.records: list[PluginRecord] = []
        # What plugins' projctl_upstreams added: providers by upstream, and (project, upstream)
        # sources with their intervals, for the poller.
        self.providers: dict[str, Provider] = {}
        self.sources: dict[Key, float] = {}
        self.events_dropped = 0
        self._manager = pluggy.PluginManager(hookspecs.PROJECT)
        self._manager.add_hookspecs(hookspecs)
        self._loaded: dict[str, PluginRecord] = {}
        self._impls: dict[str, list[HookImpl]] = {name: [] for name in HOOKS}
        self._background: list[Callable[[], Awaitable[None]]] = []
        self._request_slots = requests.Slots()
        self._events_in, self._events_out = \
            anyio.create_memory_object_stream[tuple[Sequence[Event], str]](EVENT_BACKLOG)

    @classmethod
    async def start(cls, config: Config, client: httpx.AsyncClient) -> PluginHost:
        """Load the plugins the config allows, configure them and collect their upstreams."""
        host = cls(config.plugins.timeout)
        disabled = set(config.plugins.disabled)
        if config.notify.webhook:
            host._add_notifier(config, client, disabled)
        for candidate in candidates(config.plugins.modules):
            await host._load(candidate, disabled)
        host._impls = {name: getattr(host._manager.hook, name).get_hookimpls() for name in HOOKS}
        await host._configure(config)
        await host._collect_upstreams(config)
        if host.records:
            log.info("plugins", loaded=[r.name for r in host.records if r.loaded],
                     disabled=[r.name for r in host.records if r.disabled],
                     failed=[r.name for r in host.records if not (r.loaded or r.disabled)],
                     upstreams=sorted(host.providers))
        return host

    def views(self) -> list[PluginView]:
        return [record.view() for record in self.records]

    async def run(self) -> None:
        """The plugins' background work until cancelled: event delivery, the notifier's posts."""
        async with anyio.create_task_group() as tasks:
            for task in self._background:
                tasks.start_soon(task)
            try:
                async for events, origin in self._events_out:
                    for event in events:
                        for impl in self._impls[EVENT]:
                            await self._call(impl, EVENT, {"event": event, "origin": origin})
            finally:
                self._events_out.close()
                self._events_in.close()

    # The hooks, as the daemon calls them.

    def hooks(self, request: Request) -> bool:
        """Whether before- or after-request hooks see `request` (they run in threads: a
        request they see cannot be answered without waiting)."""
        return not isinstance(request, _UNHOOKED) and bool(self._impls[BEFORE]
                                                            or self._impls[AFTER])

    @property
    def transforms_status(self) -> bool:
        """Whether a status view passes through plugins (in threads) before it is sent."""
        return bool(self._impls[STATUS])

    async def around_request(self, request: Request,
                             handle: Callable[[Request], Awaitable[Reply]]) -> Reply:
        """`handle(request)` between the before and after hooks; a refusal (ProjctlError)
        becomes its Error reply here, so that after-hooks see it too."""
        if not self.hooks(request):
            return await handle(request)
        if self._impls[BEFORE]:
            await self._gather(BEFORE, {"request": request})
        try:
            reply = await handle(request)
        except ProjctlError as exc:
            reply = error_reply(exc)
        for impl in self._impls[AFTER]:
            result = await self._call(impl, AFTER, {"request": request,
                                                    "reply": _roundtrip(reply, Reply)})
            replacement = self._checked(impl, AFTER, result, Reply)
            if replacement is not None:
                reply = replacement
        return reply

    async def validate_deployment(self, **details: Any) -> list[tuple[str, str]]:
        """Every plugin's objections to a deployment, as (plugin, message); [] allows it."""
        if not self._impls[VALIDATE]:
            return []
        refusals = []
        for impl, result in await self._gather(VALIDATE, details):
            messages = [result] if isinstance(result, str) else result
            if messages is None:
                continue
            if not isinstance(messages, list | tuple | set) \
                    or not all(isinstance(m, str) for m in messages):
                self._failed(self._loaded[impl.plugin_name], VALIDATE,
                             f"returned {type(result).__name__}, not a list of messages; "
                             "ignored", None)
                continue
            refusals += [(impl.plugin_name, m.strip()) for m in messages if m.strip()]
        return refusals

    def events_stored(self, events: Sequence[Event], origin: str) -> None:
        """EventStore.on_stored: queue the events for projctl_event; never waits."""
        if not self._impls[EVENT]:
            return
        try:
            self._events_in.send_nowait((events, origin))
        except anyio.WouldBlock:
            self.events_dropped += len(events)
            log.warning("plugin_events_dropped", events=len(events), dropped=self.events_dropped,
                        backlog=EVENT_BACKLOG)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # shutting down: the plugins stopped listening

    async def status_view(self, view: StatusView) -> StatusView:
        for impl in self._impls[STATUS]:
            result = await self._call(impl, STATUS, {"view": _roundtrip(view, StatusView)})
            replacement = self._checked(impl, STATUS, result, StatusView)
            if replacement is not None:
                view = replacement
        return view

    async def request(self, plugin: str, name: str, args: Any, project: str | None) -> Any:
        """What plugin `plugin`'s projctl_request hook answers (requests.py): JSON values."""
        impl = next((impl for impl in self._impls[REQUEST] if impl.plugin_name == plugin), None)
        if impl is None:
            record = next((r for r in self.records if r.name == plugin), None)
            reason = None if record is None else "disabled in the config" if record.disabled \
                else f"it failed to load: {record.last_error}" if not record.loaded else None
            raise requests.unknown_plugin(
                plugin, list(self._loaded), [i.plugin_name for i in self._impls[REQUEST]],
                reason)
        requests.check_args(plugin, name, args)
        record = self._loaded[plugin]
        kwargs = {"name": name, "args": args, "project": project}
        values = [kwargs[argument] for argument in impl.argnames]
        return await requests.ask(
            lambda: impl.function(*values), plugin=plugin, name=name, timeout=self.timeout,
            slots=self._request_slots,
            failed=lambda message, exc: self._failed(record, REQUEST, message, exc))

    # Loading.

    def _new_record(self, name: str, source: str, target: str, version: str) -> PluginRecord:
        record = PluginRecord(name, source, target, version)
        self.records.append(record)
        if any(other.name == name for other in self.records[:-1]):
            self._failed(record, "load", f"another plugin is already named {name!r}; "
                         "this one is skipped", None)
        return record

    def _add_notifier(self, config: Config, client: httpx.AsyncClient,
                      disabled: set[str]) -> None:
        record = self._new_record("notify", "built-in", "projctld.plugins.notifier",
                                  __version__)
        if "notify" in disabled:
            record.disabled = True
            return
        notifier = Notifier(config.notify, client,
                            lambda text, exc: self._failed(record, "notify", text, exc))
        if self._register(record, notifier):
            self._background.append(notifier.run)

    async def _load(self, candidate: Candidate, disabled: set[str]) -> None:
        record = self._new_record(candidate.name, candidate.source, candidate.target,
                                  candidate.version)
        if record.errors:
            return
        if candidate.name in disabled:
            record.disabled = True
            return
        try:
            plugin = await call_in_thread(candidate.load, timeout=IMPORT_TIMEOUT,
                                          name=f"projctl plugin {candidate.name}")
        except Abandoned as exc:
            self._failed(record, "load", f"import {exc}; skipped", None)
        except Exception as exc:
            self._failed(record, "load", f"{type(exc).__name__}: {exc}", exc)
        else:
            self._register(record, plugin)

    def _register(self, record: PluginRecord, plugin: object) -> bool:
        try:
            self._manager.register(plugin, name=record.name)
        except Exception as exc:  # pluggy: a hook taking an argument its spec does not have
            self._failed(record, "load", str(exc), None)
            return False
        callers = self._manager.get_hookcallers(plugin) or []
        problems = [p for caller in callers for p in _problems(caller, plugin)]
        names = {caller.name for caller in callers}
        problems += [f"{name} is not marked with @hookimpl (from projctld.plugins import "
                     "hookimpl)" for name in dir(plugin) if name.startswith("projctl_")
                     and name not in names and inspect.isroutine(getattr(plugin, name, None))]
        if problems:
            self._manager.unregister(plugin)
            self._failed(record, "load", "; ".join(problems), None)
            return False
        record.loaded, record.hooks = True, sorted(names)
        self._loaded[record.name] = record
        return True

    async def _configure(self, config: Config) -> None:
        for impl in self._impls[CONFIGURE]:
            settings = config.plugins.settings.get(impl.plugin_name, {})
            await self._call(impl, CONFIGURE, {"config": config, "settings": settings})

    async def _collect_upstreams(self, config: Config) -> None:
        for impl in self._impls[UPSTREAMS]:
            record = self._loaded[impl.plugin_name]
            result = await self._call(impl, UPSTREAMS, {"config": config})
            if result is _FAILED or result is None:
                continue
            offered = [result] if isinstance(result, Upstream) else result
            if not isinstance(offered, list | tuple):
                self._failed(record, UPSTREAMS, f"returned {type(result).__name__}, not a list "
                             "of projctld.plugins.Upstream", None)
                continue
            for upstream in offered:
                why = problem(upstream, set(self.providers), config)
                if why is not None:
                    self._failed(record, UPSTREAMS, why, None)
                    continue
                self.providers[upstream.name] = PluginProvider(
                    upstream, record.name,
                    lambda text, exc, label=f"upstream {upstream.name}", record=record:
                        self._failed(record, label, text, exc))
                for project in upstream.projects or config.projects:
                    self.sources[(project, upstream.name)] = upstream.interval

    # Calling.

    async def _gather(self, hook: str, kwargs: dict[str, Any]) -> list[tuple[HookImpl, Any]]:
        """Every implementation at once; the answers of those that did not fail, in order."""
        impls = self._impls[hook]
        results: list[Any] = [_FAILED] * len(impls)

        async def one(index: int, impl: HookImpl) -> None:
            results[index] = await self._call(impl, hook, kwargs)

        async with anyio.create_task_group() as tasks:
            for index, impl in enumerate(impls):
                tasks.start_soon(one, index, impl)
        return [(impl, result) for impl, result in zip(impls, results, strict=True)
                if result is not _FAILED]

    async def _call(self, impl: HookImpl, hook: str, kwargs: dict[str, Any]) -> Any:
        """One plugin's implementation on its own thread; _FAILED if it raised or overran."""
        record = self._loaded[impl.plugin_name]
        if hook in record.stuck:
            self._failed(record, hook, "skipped: a call that timed out earlier has not "
                         "returned yet", None)
            return _FAILED
        args = [kwargs[name] for name in impl.argnames]

        def run() -> Any:
            try:
                return impl.function(*args)
            finally:
                record.stuck.discard(hook)

        record.stuck.add(hook)
        try:
            return await call_in_thread(run, timeout=self.timeout,
                                        name=f"projctl plugin {record.name}")
        except Abandoned as exc:
            self._failed(record, hook, f"{exc} (plugins.timeout); abandoned", None)
        except Exception as exc:
            self._failed(record, hook, f"{type(exc).__name__}: {exc}", exc)
        return _FAILED

    def _checked(self, impl: HookImpl, hook: str, result: Any, kind: Any) -> Any:
        """A plugin's replacement, checked against the wire schema; None to keep the original."""
        if result is _FAILED or result is None:
            return None
        try:
            return _roundtrip(result, kind)
        except (msgspec.ValidationError, TypeError) as exc:
            expected = "a reply" if kind is Reply else kind.__name__
            self._failed(self._loaded[impl.plugin_name], hook,
                         f"returned {type(result).__name__} that is not {expected}: {exc}; "
                         "ignored", None)
            return None

    def _failed(self, record: PluginRecord, hook: str, message: str,
                exc: Exception | None) -> None:
        record.errors += 1
        record.last_error = redact_text(f"{hook}: {message}")
        record.last_error_at = time.time()
        if exc is None:
            log.warning("plugin_failed", plugin=record.name, hook=hook, error=message)
        else:
            log.warning("plugin_failed", plugin=record.name, hook=hook, error=message,
                        exc_info=exc)


def _roundtrip(value: Any, kind: Any) -> Any:
    """A deep copy through msgpack, which also proves that `value` fits `kind`: plugins get
    copies, since views share objects with the daemon's state."""
    return _DECODERS[kind].decode(_encode(value))


def _problems(caller: HookCaller, plugin: object) -> Iterator[str]:
    if not caller.has_spec():
        yield f"{caller.name} is not a projctl hook (they are: {', '.join(HOOKS)})"
        return
    for impl in caller.get_hookimpls():
        if impl.plugin is not plugin:
            continue
        if impl.wrapper or impl.hookwrapper:
            yield f"{caller.name}: hook wrappers are not supported"
        elif inspect.iscoroutinefunction(impl.function) \
                or inspect.isasyncgenfunction(impl.function):
            yield f"{caller.name} must be a plain function, not async"
