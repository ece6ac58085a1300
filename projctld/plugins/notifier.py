"""The built-in `notify` plugin: chosen team events posted to a Slack-compatible webhook.

The hook only formats and queues (a bounded queue: past `[notify] queue` waiting posts, new ones
are dropped and logged); one background task posts them in order, trying a failed post again
after `backoff`, twice that, and so on, `retries` times. Nothing waits for a webhook.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.from_thread
import anyio.lowlevel
import httpx

from projctld.config import NotifyConfig
from projctld.logging import get_logger
from projctld.plugins.hookspecs import hookimpl
from projctld.team.sync.events import Event

log = get_logger(__name__)
# A Retry-After longer than this is not waited for: the post is retried after this instead.
_MAX_WAIT = 60.0


class Notifier:
    def __init__(self, config: NotifyConfig, client: httpx.AsyncClient,
                 report: Callable[[str, Exception | None], None]) -> None:
        self._config = config
        self._client = client
        self._report = report
        self._host = httpx.URL(config.webhook).host  # the URL itself is a secret: never logged
        # Hooks run on plugin threads; the queue belongs to the event loop.
        self._token = anyio.lowlevel.current_token()
        self._send, self._receive = anyio.create_memory_object_stream[str](config.queue)
        self.posted = 0
        self.dropped = 0

    @hookimpl
    def projctl_event(self, event: Event, origin: str) -> None:
        if self.wants(event, origin):
            anyio.from_thread.run_sync(self._enqueue, message(event), token=self._token)

    def wants(self, event: Event, origin: str) -> bool:
        config = self._config
        if origin not in config.origins:
            return False
        if not any(event.type == kind or event.type.startswith(kind + ".")
                   for kind in config.events):
            return False
        environment = event.payload.get("environment")
        return environment is None or not config.environments \
            or environment in config.environments

    def _enqueue(self, text: str) -> None:
        try:
            self._send.send_nowait(text)
        except anyio.WouldBlock:
            self.dropped += 1
            log.warning("notify_dropped", queue=self._config.queue, dropped=self.dropped)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # shutting down: nothing posts any more

    async def run(self) -> None:
        """Post what is queued, in order, until cancelled."""
        async with self._receive:
            async for text in self._receive:
                await self._post(text)

    async def _post(self, text: str) -> None:
        config = self._config
        attempts = config.retries + 1
        for attempt in range(1, attempts + 1):
            wait = config.backoff * 2 ** (attempt - 1)
            try:
                response = await self._client.post(config.webhook, json={"text": text},
                                                   timeout=config.timeout)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.is_success:
                    self.posted += 1
                    log.info("notified", host=self._host, attempts=attempt)
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    attempts = attempt  # the webhook refused this post: trying again won't help
                    break
                wait = max(wait, _retry_after(response))
            if attempt < attempts:
                log.warning("notify_retrying", host=self._host, problem=problem,
                            attempt=attempt, wait_s=wait)
                await anyio.sleep(wait)
        self._report(f"the webhook on {self._host} was not reached after {attempts} "
                     f"attempt{'s' if attempts > 1 else ''}: {problem}", None)


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(_MAX_WAIT, max(0.0, float(response.headers.get("retry-after", 0))))
    except ValueError:  # an HTTP date: the backoff will do
        return 0.0


def message(event: Event) -> str:
    """One line for people, escaped as Slack wants `&`, `<` and `>`."""
    payload, who, project = event.payload, event.actor, event.project
    environment = payload.get("environment", "?")
    took = _span(payload.get("duration"))
    match event.type:
        case "deployment.started":
            ref = payload.get("branch") or (payload.get("commit") or "")[:7]
            text = f"{who} is deploying {project}{f' {ref}' if ref else ''} to {environment}"
        case "deployment.completed":
            text = f"{who} deployed {project} to {environment}{f' in {took}' if took else ''}"
        case "deployment.failed":
            why = payload.get("reason") or f"exit status {payload.get('exit_status')}"
            text = f"{who}'s deployment of {project} to {environment} failed" \
                   f"{f' after {took}' if took else ''}: {why}"
        case "note.added" | "note.edited":
            text = f"{who} noted in {project}: {payload.get('text', '')}"
        case "branch.created":
            text = f"{who} created branch {payload.get('name')} in {project}"
        case _:
            text = f"{who}: {event.type} in {project}"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _span(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"
