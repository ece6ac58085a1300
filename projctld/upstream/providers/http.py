"""One upstream host as the providers see it: auth, the governor, conditional GETs, retries, errors.

Every httpx exception and every unwanted status becomes an UpstreamError here, with what to do
about it; providers only decode bodies and map shapes.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import httpx
import msgspec

from projctld.errors import UpstreamError
from projctld.logging import get_logger
from projctld.redact import redact_text
from projctld.store.http_cache import HttpCache
from projctld.upstream.providers.governor import MAX_INLINE_WAIT, Governor
from projctld.upstream.tokens import TokenSource

log = get_logger(__name__)
T = TypeVar("T")

# A body larger than this is refused rather than held in memory (no listing we ask for is near).
MAX_BODY = 16 << 20
RETRIES = 2
RETRY_BASE = 0.5
# The advice for a fault that is the upstream's or the network's, and likely to pass.
IF_IT_PASSES = ("nothing to do if it passes: polling retries by itself; the last good data "
                "stays shown")


@dataclass
class Counters:
    """What one host has cost, for benchmarks and `projctl metrics`."""

    requests: int = 0
    conditional_hits: int = 0
    failures: int = 0
    retries: int = 0
    by_resource: dict[str, int] = field(default_factory=dict)
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None

    def failed(self, exc: UpstreamError, now: float) -> None:
        self.failures += 1
        self.last_error, self.last_error_at = exc.code, now


@dataclass
class Fetched:
    status: int
    body: bytes
    headers: httpx.Headers
    url: str
    from_cache: bool = False


@dataclass
class Hints:
    """Upstream-specific advice for the faults a user can fix."""

    auth: list[str]
    forbidden: list[str]
    not_found: list[str]
    rejected: list[str] = field(
        default_factory=lambda: ["report this as a bug in projctl if it persists"])


AuthHeaders = Callable[[str], dict[str, str]]


class UpstreamHttp:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        name: str,
        governor: Governor,
        cache: HttpCache,
        token: TokenSource,
        auth_headers: AuthHeaders,
        hints: Hints,
        headers: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.name = name
        self.governor = governor
        self.counters = Counters()
        self._client = client
        self._cache = cache
        self._token = token
        self._auth_headers = auth_headers
        self.hints = hints
        self._headers = headers or {}
        self._clock = clock
        self._sleep = sleep

    async def get(self, url: str, *, what: str, resource: str = "core",
                  conditional: bool = True) -> Fetched:
        """GET `url` (absolute, with its query); a 304 is answered from the stored body."""
        validators = self._cache.validators(url) if conditional else None
        extra = {}
        if validators:
            etag, last_modified = validators
            if etag:
                extra["If-None-Match"] = etag
            if last_modified:
                extra["If-Modified-Since"] = last_modified
        fetched = await self._send("GET", url, what=what, resource=resource, headers=extra)
        if fetched.status == 304:
            body = self._cache.body(url)
            if body is None:  # the stored body is gone: ask again without validators
                self._cache.forget(url)
                return await self.get(url, what=what, resource=resource, conditional=False)
            self.counters.conditional_hits += 1
            return Fetched(200, body, fetched.headers, url, from_cache=True)
        etag = fetched.headers.get("etag")
        last_modified = fetched.headers.get("last-modified")
        if conditional and (etag or last_modified):
            self._cache.store(url, etag, last_modified, fetched.body, self._clock())
        return fetched

    async def post(self, url: str, payload: Any, *, what: str, resource: str = "core") -> Fetched:
        return await self._send("POST", url, what=what, resource=resource,
                                content=msgspec.json.encode(payload),
                                headers={"Content-Type": "application/json"})

    async def patch(self, url: str, *, what: str, resource: str = "core") -> Fetched:
        return await self._send("PATCH", url, what=what, resource=resource, headers={})

    def forget(self, url: str) -> None:
        """Drop what is cached for `url`: a write made it out of date."""
        self._cache.forget(url)

    def decode(self, fetched: Fetched, shape: type[T], *, what: str) -> T:
        """The body as `shape`; anything else is this upstream's `malformed` error."""
        try:
            return self.decode_part(fetched.body, shape, what=what)
        except UpstreamError as exc:
            if fetched.from_cache:
                self._cache.forget(fetched.url)
            exc.context["url"] = fetched.url
            raise

    def decode_part(self, raw: bytes | msgspec.Raw | None, shape: type[T], *, what: str) -> T:
        """JSON (a whole body, or a part of one such as a GraphQL alias) as `shape`."""
        if raw is None:
            problem = "it is missing"
        else:
            try:
                return msgspec.json.decode(raw, type=shape)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                problem = _clip(str(exc))
        advice = [IF_IT_PASSES]
        if raw is not None and bytes(raw).lstrip()[:1] == b"<":
            # What a captive portal or a single sign-on proxy answers in place of the API.
            problem = "an HTML page came instead of JSON"
            advice.append(f"if a browser shows a sign-in page for {self.name} or this network, "
                          "sign in there")
        raise UpstreamError(
            f"{self.name} sent {what} that projctld cannot read: {problem}",
            code="malformed", retryable=True, suggestions=advice,
        )

    def rate_limited(self, message: str, resource: str) -> UpstreamError:
        """A refusal on rate grounds, saying when the governor lets `resource` go again (the
        poller holds its next poll until then)."""
        now = self._clock()
        held, _ = self.governor.wait_needed(resource, now)
        # A hold is told first; a spent budget can outlast it.
        wait = held + self.governor.wait_needed(resource, now + held)[0]
        if wait > 0:
            message += f"; next request at {_clock_time(now + wait)}"
        return UpstreamError(
            message, code="rate_limited",
            suggestions=["nothing to do: polling waits as told and resumes by itself; the last "
                         "good data stays shown"],
            context={"wait_s": str(math.ceil(wait))} if wait > 0 else {},
        )

    async def _send(self, method: str, url: str, *, what: str, resource: str,
                    headers: dict[str, str], content: bytes | None = None) -> Fetched:
        attempt = 0
        token_retried = False
        while True:
            await self._wait_for_governor(resource)
            try:
                fetched = await self._once(method, url, resource, headers, content)
            except UpstreamError as exc:
                if not exc.retryable or attempt >= RETRIES:
                    self.counters.failed(exc, self._clock())
                    raise
                attempt += 1
                self.counters.retries += 1
                delay = RETRY_BASE * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                log.info("upstream_retry", upstream=self.name, url=url, error=exc.code,
                         attempt=attempt, delay_s=round(delay, 2))
                await self._sleep(delay)
                continue
            if fetched.status == 401 and not token_retried and self._token.rejected():
                token_retried = True  # a rotated token from its command may work
                continue
            if fetched.status < 300 or fetched.status == 304:
                self.counters.last_success = self._clock()
                return fetched
            refusal = self._refusal(fetched, what, resource)
            self.counters.failed(refusal, self._clock())
            raise refusal

    async def _wait_for_governor(self, resource: str) -> None:
        # Asked again after every wait: a spent budget can hold past a Retry-After, and answers
        # to other requests meanwhile can have extended the hold.
        while True:
            wait, reason = self.governor.wait_needed(resource, self._clock())
            if wait <= 0:
                return
            if wait > MAX_INLINE_WAIT:
                raise UpstreamError(
                    f"{self.name} is rate-limited: {reason}; next request at "
                    f"{_clock_time(self._clock() + wait)}",
                    code="rate_limited",
                    suggestions=["nothing to do: polling resumes by itself; the last good data "
                                 "stays shown"],
                    context={"wait_s": f"{wait:.0f}"},
                )
            await self._sleep(wait)

    async def _once(self, method: str, url: str, resource: str, headers: dict[str, str],
                    content: bytes | None) -> Fetched:
        token = await self._token.get()
        request_headers = {**self._headers, **self._auth_headers(token), **headers}
        async with self.governor.slot():
            self.counters.requests += 1
            self.counters.by_resource[resource] = self.counters.by_resource.get(resource, 0) + 1
            try:
                async with self._client.stream(method, url, headers=request_headers,
                                               content=content) as response:
                    body = await _read_bounded(response)
            except httpx.TimeoutException:
                raise UpstreamError(
                    f"{self.name} did not answer in time ({_host(url)})", code="timeout",
                    retryable=True, suggestions=[
                        IF_IT_PASSES, "if it persists, check the network, or allow slow answers "
                                 "more time with `request_timeout` in [polling]"],
                ) from None
            except httpx.RemoteProtocolError as exc:
                # It was reached: the connection dropped mid-answer, or the answer was not HTTP.
                raise UpstreamError(
                    f"the answer from {self.name} was cut off or garbled "
                    f"({_host(url)}: {_clip(str(exc))})", code="unreachable", retryable=True,
                    suggestions=[IF_IT_PASSES, f"if it persists, check the network or any proxy "
                                          f"between you and {self.name}"],
                ) from None
            except httpx.DecodingError as exc:
                raise UpstreamError(
                    f"{self.name} sent an answer that cannot be decompressed "
                    f"({_host(url)}: {_clip(str(exc))})", code="malformed", retryable=True,
                    suggestions=[IF_IT_PASSES, f"if it persists, check any proxy between you and "
                                          f"{self.name}"],
                ) from None
            except (httpx.RequestError, OSError) as exc:  # refused, unresolved, redirect loop
                raise UpstreamError(
                    f"cannot reach {self.name} at {_host(url)}: {_clip(str(exc)) or 'no route'}",
                    code="unreachable", retryable=True,
                    suggestions=["check the network; polling backs off and resumes by itself"],
                ) from None
        self.governor.observe(response, resource, self._clock())
        fetched = Fetched(response.status_code, body, response.headers, url)
        if response.status_code >= 500:
            raise UpstreamError(
                f"{self.name} failed with {response.status_code} {response.reason_phrase} "
                f"({_host(url)})", code="server_error", retryable=True,
                suggestions=[f"nothing to do: the fault is {self.name}'s; polling backs off and "
                             "retries, and the last good data stays shown"],
            )
        return fetched

    def _refusal(self, fetched: Fetched, what: str, resource: str) -> UpstreamError:
        status = fetched.status
        detail = _message_of(fetched.body)
        said = f": {detail}" if detail else ""
        if status == 401:
            return UpstreamError(
                f"{self.name} refused the token from {self._token.origin} (401{said})",
                code="auth", suggestions=[self._token.fix(), *self.hints.auth],
            )
        held, _ = self.governor.wait_needed("", self._clock())  # a hold, whatever the budgets
        limited = held > 0 or fetched.headers.get("x-ratelimit-remaining") == "0"
        if status == 429 or (status == 403 and (limited or "rate limit" in detail.lower())):
            return self.rate_limited(f"{self.name} is rate-limiting us ({status}{said})", resource)
        sso = fetched.headers.get("x-github-sso", "")
        if status == 403 and sso:
            # GitHub: the organisation enforces SAML single sign-on and the token is not
            # authorised for it; the header holds where to authorise it.
            url = sso.partition("url=")[2].split(";")[0].strip()
            return UpstreamError(
                f"{self.name} hides {what}: its organisation enforces SAML single sign-on and "
                f"the token from {self._token.origin} is not authorised for it (403)",
                code="saml", suggestions=[
                    f"authorise the token for the organisation: open {url}" if url else
                    "authorise the token for the organisation: Settings > Developer settings "
                    "> Tokens > Configure SSO", "then `projctl refresh`"])
        if status == 403:
            scopes = fetched.headers.get("x-accepted-oauth-scopes")
            has = fetched.headers.get("x-oauth-scopes")
            scope_hint = (
                [f"the token has scopes `{has}`; this needs `{scopes}`"] if scopes else []
            )
            return UpstreamError(
                f"{self.name} denies the token from {self._token.origin} access to {what} "
                f"(403{said})",
                code="forbidden", suggestions=scope_hint + self.hints.forbidden,
            )
        if status == 404:
            return UpstreamError(
                f"{self.name} answered 404 Not Found for {what}: it is not there, or the "
                "token cannot see it", code="not_found", suggestions=self.hints.not_found,
            )
        return UpstreamError(
            f"{self.name} rejected the request for {what} ({status}{said})", code="rejected",
            suggestions=self.hints.rejected,
        )


async def _read_bounded(response: httpx.Response) -> bytes:
    chunks = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY:
            raise UpstreamError(
                f"a response from {_host(str(response.url))} exceeded {MAX_BODY >> 20} MiB",
                code="malformed", retryable=False,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _message_of(body: bytes) -> str:
    """The human message in an error body: GitHub/GitLab `message`, Jira `errorMessages`, a
    GraphQL refusal's first `errors` message (GitLab's 401 "Invalid token"); redacted before it
    is clipped, since some servers and proxies quote our request's headers."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return ""
    if not isinstance(data, dict):
        return ""
    message = data.get("message")
    if isinstance(message, str):
        return _clip(redact_text(message))
    messages = data.get("errorMessages")
    if isinstance(messages, list) and messages and isinstance(messages[0], str):
        return _clip(redact_text(messages[0]))
    errors = data.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict) \
            and isinstance(errors[0].get("message"), str):
        return _clip(redact_text(errors[0]["message"]))
    return ""


def _clock_time(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def _host(url: str) -> str:
    return httpx.URL(url).host


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def next_link(headers: httpx.Headers) -> str | None:
    """The `rel="next"` URL of an RFC 8288 Link header (GitHub and GitLab pagination)."""
    for part in headers.get("link", "").split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") and target.strip().startswith("<"):
            return target.strip()[1:-1]
    return None
