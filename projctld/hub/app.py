"""The hub's HTTP service: its routes, body encodings and error replies, as one Litestar app."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIType,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec import Parameter as ParameterSpec
from litestar.params import Parameter
from litestar.response import Redirect, Stream, Template
from litestar.types import Message, Scope

from projctl_client.protocol import DeliveryReport
from projctld import __version__
from projctld.errors import ProjctlError
from projctld.hub.auth import (
    DEFAULT_MIN_CLIENT_VERSION,
    Refusal,
    authenticate,
    check_client_version,
    parse_version,
)
from projctld.hub.metrics import DEFAULT_SLOW_REQUEST, HubMetrics
from projctld.hub.service import HubService, token_hint
from projctld.hub.storage.interface import HubStorage
from projctld.hub.upstream.intermediary import Intermediary, WebhookReply
from projctld.hub.upstream.webhooks import MAX_DELIVERY, Rejected
from projctld.hub.web import views
from projctld.hub.web.access import PageError, SignInNeeded
from projctld.hub.web.pages import SECURITY_HEADERS, Pages, static_router, template_config
from projctld.logging import get_logger
from projctld.ops.prometheus import MEDIA_TYPE
from projctld.team.sync.events import DeviceId, Event, EventId, ProjectName
from projctld.team.sync.wire import (
    CLIENT_VERSION_HEADER,
    DEVICE_HEADER,
    DEVICE_TIME_HEADER,
    HUB_CLOCK_HEADER,
    HUB_ID_HEADER,
    HUB_OFFSET_HEADER,
    JSON,
    LATEST_VERSION_HEADER,
    MAX_BATCH,
    MAX_BODY,
    MAX_PAGE,
    MAX_WAIT,
    MIN_VERSION_HEADER,
    MSGPACK,
    Health,
    HubError,
    PullReply,
    PushReply,
    PushRequest,
)
from projctld.upstream.wire import FRAMES, STREAM, UPSTREAM, UpstreamReply
from projctld.upstream.wire import MAX_WAIT as MAX_UPSTREAM_WAIT

log = get_logger(__name__)

EVENTS = "/v1/events"
WEBHOOKS = "/v1/webhooks/{kind:str}"
DELIVERY = "/v1/metrics"
HEALTH = "/v1/health"
OPENAPI = "/v1/openapi.json"
METRICS = "/metrics"
DEFAULT_PAGE = 500
# The largest hub_seq (PostgreSQL's bigint), so the largest cursor a pull may name.
MAX_CURSOR = 2**63 - 1
# A name no event can carry is refused before storage sees it: PostgreSQL cannot even
# compare a text holding NUL, and would fail the pull with a 503.
_PROJECT_PATTERN = ProjectName.__metadata__[0].pattern
_EVENT_ID_PATTERN = EventId.__metadata__[0].pattern
_DEVICE_PATTERN = re.compile(DeviceId.__metadata__[0].pattern)


class _Batch(msgspec.Struct, frozen=True):
    """PushRequest without its length limit: too many events is a 413, not a malformed body."""

    events: list[Event]
    partial: bool = False
    resent: Annotated[list[str], msgspec.Meta(max_length=MAX_BATCH)] = []


_DECODERS = {
    MSGPACK: msgspec.msgpack.Decoder(_Batch),
    JSON: msgspec.json.Decoder(_Batch),
}
_ENCODERS = {MSGPACK: msgspec.msgpack.Encoder(), JSON: msgspec.json.Encoder()}

_STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
}
_ROUTES_HINT = (f"the hub serves {EVENTS}, {DELIVERY}, {HEALTH}, {OPENAPI}, {METRICS}, "
                f"{UPSTREAM} and /v1/webhooks/KIND, and its team pages from /")
# The routes of the team pages, as /metrics names them (static files: one label).
_PAGE_ROUTES = ("/", "/signin", "/signout", "/projects", "/p/{project:str}",
                "/p/{project:str}/deployments", "/p/{project:str}/timeline",
                "/p/{project:str}/metrics", "/p/{project:str}/changes", "/s/{secret:str}",
                "/static/{file_path:path}")


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    return {status: ResponseSpec(HubError, description=description)
            for status, description in {
                400: "A malformed request: the body, a parameter, a header; or, without "
                     "`partial`, an event the hub refuses (invalid_event, clock_ahead)",
                401: "No bearer token, or an unknown or revoked one",
                403: "The token may not read or write this project, or the device is "
                     "another user's",
                409: "The device's log disagrees with the hub's (seq_conflict)",
                413: "The body or the batch is too large, or, without `partial`, one event",
                415: "The body is neither application/msgpack nor application/json",
                426: "The client is older than the hub accepts",
                503: "The hub cannot use its storage right now: send it again later",
            }.items() if status in statuses}


class _Hub:
    """The state behind the routes: the service, the oldest client accepted, the metrics."""

    def __init__(self, storage: HubStorage, min_client_version: str,
                 slow_request: float, wall: Callable[[], float],
                 intermediary: Intermediary | None = None) -> None:
        self.service = HubService(storage, wall=wall)
        self.intermediary = intermediary or Intermediary(storage, None, None, wall=wall)
        self.min_client_version = min_client_version
        self.metrics = HubMetrics(storage.kind, (EVENTS, DELIVERY, HEALTH, OPENAPI, METRICS,
                                                 UPSTREAM, STREAM, WEBHOOKS,
                                                 WEBHOOKS + "/{instance:str}",
                                                 *_PAGE_ROUTES), self.service, slow_request)
        self.metrics.upstream = self.intermediary

    async def upstream(
        self,
        request: Request[Any, Any, State],
        project: Annotated[str, Parameter(pattern=_PROJECT_PATTERN,
                                          description="The project whose upstream state to read")],
        after: Annotated[int, Parameter(ge=0, le=MAX_CURSOR, description="The version last "
                                        "held: only sources changed since come back")] = 0,
        wait: Annotated[float, Parameter(ge=0, le=MAX_UPSTREAM_WAIT, description="Seconds to "
                                         "wait for a change when there is none yet")] = 0.0,
    ) -> Response[UpstreamReply]:
        """The project's upstream state as the hub polled it for the team (GitHub, GitLab,
        Jira): what devices configured with `[upstreams] via = "hub"` show."""
        token = await authenticate(request.headers, self.service.storage)
        self.metrics.stage(request.scope, "auth")
        reply = await self.intermediary.state(token, project, after, wait)
        return _reply(request, reply)

    async def upstream_stream(
        self,
        request: Request[Any, Any, State],
        project: Annotated[str, Parameter(pattern=_PROJECT_PATTERN,
                                          description="The project whose upstream state to read")],
        after: Annotated[int, Parameter(ge=0, le=MAX_CURSOR, description="The version last "
                                        "held")] = 0,
    ) -> Stream:
        """The project's upstream state as a stream of frames (a 4-byte big-endian length
        and a msgpack UpstreamReply; length 0 is a keep-alive) as it changes: what devices
        with `[upstreams] via = "hub"` hold open."""
        token = await authenticate(request.headers, self.service.storage)
        self.metrics.stage(request.scope, "auth")
        frames = await self.intermediary.stream(token, project, after)
        return Stream(frames, media_type=FRAMES, headers={"cache-control": "no-store"})

    async def webhook_of_instance(self, request: Request[Any, Any, State], kind: str,
                                  instance: str) -> Response[WebhookReply]:
        """A webhook delivery from a named instance (`[github.ghe]`: /v1/webhooks/github/ghe)."""
        return await self.webhook(request, kind, instance)

    async def webhook(self, request: Request[Any, Any, State], kind: str,
                      instance: str | None = None) -> Response[WebhookReply]:
        """A webhook delivery from GitHub, GitLab or Jira (docs/hub.md says how to set one
        up): signature checked, replays taken once, the sources it names refreshed now."""
        if kind not in ("github", "gitlab", "jira"):
            raise Refusal(404, "not_found", f"the hub takes no webhooks of {kind!r}",
                          suggestions=[f"POST to {WEBHOOKS.replace('{kind:str}', '')}github, "
                                       "gitlab or jira"])
        body = await _read_body(request, MAX_DELIVERY, "deliveries larger than "
                                f"{MAX_DELIVERY} bytes are refused; send only the events "
                                "docs/hub.md lists")
        try:
            reply = await self.intermediary.webhook(kind, instance, request.headers, body)
        except Rejected as exc:
            raise Refusal(exc.status, exc.code, exc.message, suggestions=[exc.suggestion],
                          headers={}) from None
        return _reply(request, reply, 202 if reply.status == "ignored" else 200)

    async def push(self, request: Request[Any, Any, State]) -> Response[PushReply]:
        """Store a batch of events; pushing the same events again is harmless.

        The body is a PushRequest, as application/msgpack or application/json. With
        `partial`, the events the hub can take are stored and each other one is named in
        `refused`; without it, one refused event refuses the batch.
        """
        token = await authenticate(request.headers, self.service.storage)
        self.metrics.stage(request.scope, "auth")
        device = self._device(request)
        media_type = request.content_type[0]
        decoder = _DECODERS.get(media_type)
        if decoder is None:
            raise Refusal(415, "unsupported_media_type",
                          f"cannot read a body of type {media_type or '(none)'!r}",
                          suggestions=[f"send Content-Type: {MSGPACK} or {JSON}"])
        batch = _decode(decoder, await _read_body(request), media_type)
        self.metrics.stage(request.scope, "decode")
        reply = await self.service.push(token, batch.events, partial=batch.partial,
                                        device=device, resent=batch.resent,
                                        stage=self._stages(request))
        return _reply(request, reply)

    async def pull(
        self,
        request: Request[Any, Any, State],
        project: Annotated[str, Parameter(pattern=_PROJECT_PATTERN,
                                          description="The project whose events to pull")],
        after: Annotated[int, Parameter(ge=0, le=MAX_CURSOR, description="The cursor: the "
                                        "last hub_seq already held")] = 0,
        after_id: Annotated[str | None, Parameter(
            pattern=_EVENT_ID_PATTERN, description="The id of the event at `after`, when the "
            "puller holds it: a hub that no longer holds it there answers `cursor_unknown`"
        )] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        wait: Annotated[float, Parameter(ge=0, le=MAX_WAIT, description="Seconds to wait "
                                         "for an event when there is none yet")] = 0.0,
    ) -> Response[PullReply]:
        """Events of one project after a cursor, oldest first; optionally waits for one."""
        token = await authenticate(request.headers, self.service.storage)
        self.metrics.stage(request.scope, "auth")
        reply = await self.service.pull(token, project, after, limit, wait=wait,
                                        after_id=after_id, device=self._device(request),
                                        stage=self._stages(request))
        return _reply(request, reply)

    async def delivery(
        self,
        request: Request[Any, Any, State],
        project: Annotated[str, Parameter(pattern=_PROJECT_PATTERN,
                                          description="The project to measure")],
        environment: Annotated[str | None, Parameter(
            min_length=1, max_length=256, pattern="^[^\x00]*$",
            description="One environment; all of them when left out")] = None,
        days: Annotated[float, Parameter(ge=1 / 24, le=365, description="The period, in "
                                         "days before now; `previous` is the one before")] = 30,
    ) -> Response[DeliveryReport]:
        """The project's delivery metrics (DORA's four keys) from the hub's events, as
        `projctl report --json` makes them from a device's log (docs/metrics.md)."""
        token = await authenticate(request.headers, self.service.storage)
        if not token.can_read(project):
            raise Refusal(403, "forbidden",
                          f"token {token.id} of {token.user} may not read project {project}",
                          suggestions=[token_hint(token.user, project, write=False)])
        return _reply(request, await views.metrics(self.service.storage, project,
                                                   now=self.service.now(), days=days,
                                                   environment=environment))

    def _stages(self, request: Request[Any, Any, State]) -> Callable[[str], None]:
        return lambda name: self.metrics.stage(request.scope, name)

    def _device(self, request: Request[Any, Any, State]) -> str | None:
        """The device the request names, whose clock the hub takes note of (authenticated
        requests only: anyone could claim any time)."""
        device = request.headers.get(DEVICE_HEADER)
        if device is None:
            return None
        if not _DEVICE_PATTERN.match(device):
            raise Refusal(400, "invalid_header",
                          f"the {DEVICE_HEADER} header is not a device id",
                          suggestions=["send the id of the device's state database, or leave "
                                       "the header out"])
        try:
            device_time = float(request.headers.get(DEVICE_TIME_HEADER, "nan"))
        except ValueError:
            device_time = math.nan
        self.service.heard(device, device_time)
        return device

    async def health(self, request: Request[Any, Any, State]) -> Response[Health]:
        """Whether the hub runs, its version, the oldest client it accepts, its storage and
        its database's identity."""
        storage = self.service.storage
        return _reply(request, Health(status="ok", version=__version__,
                                      min_client_version=self.min_client_version,
                                      storage=storage.kind, hub_id=storage.hub_id))

    async def prometheus(self) -> Response[str]:
        """The hub's counters in Prometheus' text format: replies by route and status, their
        latency, events accepted, refused and pulled, memory, its clock's offset. No token
        needed; no project is named."""
        return Response(self.metrics.exposition(), media_type=MEDIA_TYPE)  # + charset

    async def check_version(self, request: Request[Any, Any, State]) -> None:
        self.metrics.request_started(request.scope)
        check_client_version(request.headers, self.min_client_version)

    async def stamp(self, message: Message, scope: Scope) -> None:
        """Add the version, identity and clock headers to every reply, errors included;
        count it."""
        self.metrics.reply_started(message, scope)
        if message["type"] == "http.response.start":
            offset = self.service.clocks.offset()
            message["headers"] = [*message.get("headers", ()), *(
                (name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()), *(
                (name.encode(), value.encode()) for name, value in (
                    (MIN_VERSION_HEADER, self.min_client_version),
                    (LATEST_VERSION_HEADER, __version__),
                    (HUB_CLOCK_HEADER, str(self.service.clock.now())),
                    (HUB_ID_HEADER, self.service.storage.hub_id),
                    *(((HUB_OFFSET_HEADER, f"{offset:.3f}"),) if offset is not None else ()),
                ))]


async def _read_body(request: Request[Any, Any, State], limit: int = MAX_BODY,
                     advice: str = f"push at most {MAX_BATCH} events at a time, in several "
                     "requests") -> bytes:
    too_large = Refusal(413, "too_large", f"the body is larger than {limit} bytes",
                        suggestions=[advice])
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    # Counted while reading too: a chunked body declares no length.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(decoder: msgspec.msgpack.Decoder | msgspec.json.Decoder, body: bytes,
            media_type: str) -> _Batch:
    try:
        batch = decoder.decode(body)
    # ValidationError is a DecodeError and names the offending field; invalid UTF-8 in a
    # msgpack string is a UnicodeDecodeError.
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _invalid_body(f"the {media_type} body is not a PushRequest: {exc}") from None
    except RecursionError:
        raise _invalid_body(f"the {media_type} body is nested too deeply") from None
    if len(batch.events) > MAX_BATCH:
        raise Refusal(413, "too_large",
                      f"the batch holds {len(batch.events)} events, more than {MAX_BATCH}",
                      suggestions=[f"push at most {MAX_BATCH} events at a time"])
    return batch


def _invalid_body(message: str) -> Refusal:
    return Refusal(400, "invalid_body", message,
                   suggestions=["send a PushRequest as described in /v1/openapi.json"])


def _media_type(request: Request[Any, Any, State]) -> str:
    return request.accept.best_match([JSON, MSGPACK], default=JSON)


def _reply(request: Request[Any, Any, State], body: msgspec.Struct, status: int = 200,
           headers: dict[str, str] | None = None) -> Response[Any]:
    media_type = _media_type(request)
    return Response(_ENCODERS[media_type].encode(body), status_code=status,
                    media_type=media_type, headers=headers)


def _refused(request: Request[Any, Any, State], exc: Refusal) -> Response[Any]:
    log.info("request_refused", method=request.method, path=request.url.path,
             status=exc.status, code=exc.code)
    return _reply(request, HubError(code=exc.code, message=exc.message,
                                    suggestions=exc.suggestions), exc.status, exc.headers)


def _http_error(request: Request[Any, Any, State], exc: HTTPException) -> Response[Any]:
    """Litestar's own refusals (unknown path, wrong method, bad parameters) as HubErrors."""
    if isinstance(exc, ValidationException):
        problems = exc.extra if isinstance(exc.extra, list) else []
        details = "; ".join(
            f"{getattr(problem.get('source'), 'value', 'query')} parameter "
            f"`{problem.get('key', '')}`: {problem.get('message', '')}"
            for problem in problems if isinstance(problem, dict))
        return _refused(request, Refusal(
            400, "invalid_parameter", details or exc.detail,
            suggestions=["see the parameters in /v1/openapi.json"]))
    status = exc.status_code
    message, suggestions = {
        404: (f"the hub has nothing at {request.url.path}", [_ROUTES_HINT]),
        405: (f"{request.url.path} does not take {request.method}", [_ROUTES_HINT]),
    }.get(status, (exc.detail, []))
    return _refused(request, Refusal(status, _STATUS_CODES.get(status, f"http_{status}"),
                                     message, suggestions=suggestions,
                                     headers=exc.headers or None))


def _page_error(request: Request[Any, Any, State], exc: PageError) -> Response[Any]:
    log.info("page_refused", path=request.url.path, status=exc.status)
    return Template(template_name="error.html", status_code=exc.status, media_type="text/html",
                    headers={"cache-control": "no-store"},
                    context={"viewer": None, "title": exc.title, "message": exc.message})


def _sign_in(request: Request[Any, Any, State], exc: SignInNeeded) -> Response[Any]:
    if request.url.path.endswith("/changes"):  # the live poll: a script, not a person
        return Response(b'{"signed_in": false}', status_code=401, media_type=JSON)
    return Redirect("/signin", status_code=303)


def _unavailable(request: Request[Any, Any, State], exc: ProjctlError) -> Response[Any]:
    # The message names server paths: it is for the operator's log, not for the client.
    log.error("storage_failed", method=request.method, path=request.url.path,
              error=exc.message, suggestions=exc.suggestions)
    return _reply(request, HubError(
        code="unavailable", message="the hub cannot use its storage right now",
        suggestions=["try again later; the events wait on the device meanwhile",
                     "the hub's operator finds the cause in its log"]), 503)


def _internal(request: Request[Any, Any, State], exc: Exception) -> Response[Any]:
    log.error("request_failed", method=request.method, path=request.url.path, exc_info=exc)
    return _reply(request, HubError(
        code="internal", message="the hub failed to answer this request",
        suggestions=["try again later", "the hub's operator finds the cause in its log"]), 500)


def create_app(storage: HubStorage, *, min_client_version: str = DEFAULT_MIN_CLIENT_VERSION,
               slow_request: float = DEFAULT_SLOW_REQUEST,
               wall: Callable[[], float] = time.time,
               intermediary: Intermediary | None = None) -> Litestar:
    """The hub over `storage` (already open), refusing clients older than
    `min_client_version`, logging requests slower than `slow_request` seconds; `wall` is its
    clock (tests move it); `intermediary` serves upstream state and webhooks (without one, the
    hub polls nothing and refuses every webhook)."""
    if parse_version(min_client_version) is None:
        raise ValueError(f"min_client_version {min_client_version!r} is not a version")
    hub = _Hub(storage, min_client_version, slow_request, wall, intermediary)
    pages = Pages(storage, hub.service.now)
    app = Litestar(
        route_handlers=[
            *pages.handlers(),
            static_router(),
            get(DELIVERY, responses=_errors(400, 401, 403, 426, 503),
                operation_id="delivery_metrics")(hub.delivery),
            post(EVENTS, status_code=200, request_max_body_size=None,
                 responses=_errors(400, 401, 403, 409, 413, 415, 426, 503),
                 operation_id="push_events")(hub.push),
            get(EVENTS, responses=_errors(400, 401, 403, 426, 503),
                operation_id="pull_events")(hub.pull),
            get(HEALTH, operation_id="health", responses=_errors(400, 426))(hub.health),
            get(UPSTREAM, responses=_errors(400, 401, 403, 426, 503),
                operation_id="upstream_state")(hub.upstream),
            # Outside the OpenAPI description: a stream of frames has no schema there, and
            # webhooks are the services' to call, as they document them (docs/hub.md).
            get(STREAM, include_in_schema=False)(hub.upstream_stream),
            post(WEBHOOKS, status_code=200, request_max_body_size=None,
                 include_in_schema=False)(hub.webhook),
            post(WEBHOOKS + "/{instance:str}", status_code=200, request_max_body_size=None,
                 include_in_schema=False)(hub.webhook_of_instance),
            get(METRICS, operation_id="metrics", media_type=MEDIA_TYPE,
                responses=_errors(400, 426))(hub.prometheus),
        ],
        before_request=hub.check_version,
        before_send=[hub.stamp],
        # Litestar's own logging would print tracebacks with their locals, request headers and
        # so bearer tokens included; _internal logs through structlog, which redacts.
        logging_config=None,
        template_config=template_config(),
        exception_handlers={
            PageError: _page_error,
            SignInNeeded: _sign_in,
            Refusal: _refused,
            HTTPException: _http_error,
            ProjctlError: _unavailable,
            Exception: _internal,
        },
        openapi_config=OpenAPIConfig(
            # Served at this path itself: Litestar answers any other GET under its OpenAPI
            # path with an HTML page of its own, which must not shadow /v1/*.
            title="projctl hub", version=__version__, path=OPENAPI,
            render_plugins=[JsonRenderPlugin(path="/")],
            description="Devices push their team events here and pull each other's. Bodies "
            f"are {MSGPACK} or {JSON}, carrying the same structures.",
        ),
    )
    _complete_description(app)
    return app


_VERSION_PARAMETER = ParameterSpec(
    name=CLIENT_VERSION_HEADER, param_in="header", required=False,
    description="The client's version; the hub refuses an older one than it accepts with 426",
    schema=Schema(type=OpenAPIType.STRING, pattern=r"^[0-9]+(\.[0-9]+)*"))
_STAMP_HEADERS = {
    MIN_VERSION_HEADER: OpenAPIHeader(
        required=True, description="The oldest client version the hub accepts",
        schema=Schema(type=OpenAPIType.STRING)),
    LATEST_VERSION_HEADER: OpenAPIHeader(
        required=True, description="The hub's own version", schema=Schema(type=OpenAPIType.STRING)),
    HUB_CLOCK_HEADER: OpenAPIHeader(
        required=True, description="The hub's hybrid logical clock, for devices to merge",
        schema=Schema(type=OpenAPIType.INTEGER, minimum=0)),
    HUB_ID_HEADER: OpenAPIHeader(
        required=True, description="The identity of the hub's database: another one means the "
        "hub was replaced", schema=Schema(type=OpenAPIType.STRING)),
    HUB_OFFSET_HEADER: OpenAPIHeader(
        required=False, description="Seconds the hub's clock runs behind its devices' "
        "(negative: ahead), once two of them agree", schema=Schema(type=OpenAPIType.NUMBER)),
}
_DEVICE_PARAMETERS = [
    ParameterSpec(
        name=DEVICE_HEADER, param_in="header", required=False,
        description="The requesting device: the reply's `mark` says what the hub holds of its "
        "log", schema=Schema(type=OpenAPIType.STRING,
                             pattern=DeviceId.__metadata__[0].pattern)),
    ParameterSpec(
        name=DEVICE_TIME_HEADER, param_in="header", required=False,
        description="The device's wall clock in Unix seconds, compared with the hub's",
        schema=Schema(type=OpenAPIType.STRING)),
]
_CHALLENGE = {"WWW-Authenticate": OpenAPIHeader(
    required=True, description="Names the scheme: Bearer", schema=Schema(type=OpenAPIType.STRING))}


def _complete_description(app: Litestar) -> None:
    """Complete the OpenAPI description with what Litestar cannot see.

    Litestar describes only a body it decodes itself, while the push route decodes its own (in
    two encodings, counting bytes as they come), so the PushRequest schema is added here, from
    msgspec. The rest happens outside what a route declares: every JSON body is offered in
    msgpack too (_reply answers in either); the version header is read (check_version) and the
    version and clock headers are sent (stamp) by hooks around every route; the events routes
    check the bearer token themselves. And the cursor's bound is made exact: Litestar writes
    bounds as floats, in which 2**63 - 1 becomes 2**63.
    """
    openapi = app.openapi_schema
    _, schemas = msgspec.json.schema_components(
        [PushRequest], ref_template="#/components/schemas/{name}")
    openapi.components.schemas.update(schemas)
    openapi.components.security_schemes = {"bearer": SecurityScheme(
        type="http", scheme="bearer", description="A token of `projctld hub token create`")}
    reference = Reference(ref="#/components/schemas/PushRequest")
    events = openapi.paths[EVENTS]
    events.post.request_body = RequestBody(required=True, content={
        media_type: OpenAPIMediaType(schema=reference) for media_type in (MSGPACK, JSON)})
    events.get.security = events.post.security = [{"bearer": []}]
    openapi.paths[DELIVERY].get.security = [{"bearer": []}]
    events.get.parameters = [*(events.get.parameters or ()), *_DEVICE_PARAMETERS]
    events.post.parameters = [*(events.post.parameters or ()), *_DEVICE_PARAMETERS]
    cursor = next(p for p in events.get.parameters or () if p.name == "after")
    cursor.schema.maximum = MAX_CURSOR
    # A query parameter is absent or a string, never null.
    cursor_id = next(p for p in events.get.parameters or () if p.name == "after_id")
    cursor_id.schema = Schema(type=OpenAPIType.STRING, pattern=_EVENT_ID_PATTERN,
                              description=cursor_id.description)
    for path_item in openapi.paths.values():
        for operation in (path_item.get, path_item.put, path_item.post, path_item.patch,
                          path_item.delete):
            if operation is None:
                continue
            operation.parameters = [*(operation.parameters or ()), _VERSION_PARAMETER]
            for status, response in operation.responses.items():
                if response.content and JSON in response.content:
                    response.content[MSGPACK] = response.content[JSON]
                response.headers = {**(response.headers or {}), **_STAMP_HEADERS,
                                    **(_CHALLENGE if status == "401" else {})}
