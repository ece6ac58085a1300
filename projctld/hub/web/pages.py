"""The team pages' routes: sign-in and sign-out, the projects, a project's environments, its
deployments, timeline and delivery metrics, share links, and the live-update poll."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from projctl_client.protocol import DeliveryPeriod
from projctld.hub.storage.interface import HubStorage, Timeline, hash_token
from projctld.hub.web import access, charts, views
from projctld.hub.web.access import PageError, SignInNeeded, Viewer
from projctld.team.delivery import DAY
from projctld.team.sync.events import EventType, ProjectName, PulledEvent
from projctld.team.sync.hlc import pack

HERE = Path(__file__).parent
Web = Request[Any, Any, State]
PERIODS = (7, 30, 90)
# The live-update poll waits this long for an event before answering "nothing new".
LIVE_WAIT = 25.0
_PROJECT = re.compile(ProjectName.__metadata__[0].pattern)
_TYPE = re.compile(EventType.__metadata__[0].pattern)
_FAMILIES = ("deployment", "note", "branch", "workflow")
_SINCE = {"1d": 1, "7d": 7, "30d": 30, "90d": 90}
_MAX_FILTER = 256
_CURSOR = re.compile(r"^([0-9]{1,19}):([A-Za-z0-9_-]{1,64}):([0-9]{1,19})$")
# Every page: nothing but this hub's own files, no inline script or style, no frames.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "x-content-type-options": "nosniff",
    # Not no-referrer: with it, a browser sends its own forms with `Origin: null`.
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


def template_config() -> TemplateConfig:
    environment = Environment(loader=FileSystemLoader(HERE / "templates"),
                              autoescape=select_autoescape(default=True, default_for_string=True),
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.globals.update(when=when, span=span, percent=percent, short=short,
                               summary=summary)
    return TemplateConfig(engine=JinjaTemplateEngine.from_environment(environment))


def static_router() -> Any:
    return create_static_files_router(path="/static", directories=[HERE / "static"],
                                      include_in_schema=False, send_as_attachment=False)


class Pages:
    """The page handlers over one hub's storage; `now` is the hub's (corrected) clock."""

    def __init__(self, storage: HubStorage, now: Callable[[], float]) -> None:
        self.storage = storage
        self.now = now

    def handlers(self) -> list[HTTPRouteHandler]:
        page = {"include_in_schema": False}
        return [
            get("/", **page)(self.home),
            get("/signin", **page)(self.signin_form),
            post("/signin", request_max_body_size=8192, status_code=303, **page)(self.signin),
            post("/signout", request_max_body_size=8192, status_code=303, **page)(self.signout),
            get("/projects", **page)(self.projects),
            get("/p/{project:str}", **page)(self.project),
            get("/p/{project:str}/deployments", **page)(self.deployments),
            get("/p/{project:str}/timeline", **page)(self.timeline),
            get("/p/{project:str}/metrics", **page)(self.metrics),
            get("/p/{project:str}/changes", **page)(self.changes),
            get("/s/{secret:str}", **page)(self.shared),
        ]

    # Signing in and out.

    async def home(self, request: Web) -> Redirect:
        signed_in = await access.viewer(request, self.storage, now=self.now())
        return Redirect("/projects" if signed_in else "/signin", status_code=303)

    async def signin_form(self, request: Web) -> Template:
        return self._signin_page(request)

    def _signin_page(self, request: Web, *, problem: str | None = None,
                     status: int = 200) -> Template:
        # The form's CSRF secret lives in a cookie of its own until there is a session.
        csrf = request.cookies.get(access.SIGNIN_COOKIE) or ""
        cookies = []
        if not re.fullmatch(r"[0-9a-f]{64}", csrf):
            csrf = access.new_secret()
            cookies.append(Cookie(key=access.SIGNIN_COOKIE, value=csrf, path="/",
                                  httponly=True, samesite="strict",
                                  secure=request.url.scheme == "https", max_age=3600))
        return _page("signin.html", status=status, cookies=cookies, viewer=None, csrf=csrf,
                     problem=problem)

    async def signin(self, request: Web) -> Response[Any]:
        access.check_origin(request)
        form = await request.form()
        access.check_csrf(form.get("csrf"), request.cookies.get(access.SIGNIN_COOKIE))
        token = str(form.get("token") or "").strip()
        record = await self.storage.find_token(hash_token(token)) if 0 < len(token) <= 200 \
            else None
        if record is None or record.revoked:
            return self._signin_page(
                request, status=401,
                problem="The hub does not know this token, or it was revoked. Paste the "
                "token `projctld hub token create` printed (it starts with pjh_).")
        now = self.now()
        secret, expires = await access.open_session(self.storage, now=now,
                                                    token_hash=hash_token(token),
                                                    user=record.user)
        return Redirect("/projects", status_code=303, cookies=[
            access.session_cookie(request, secret, expires),
            access.cleared(request, access.SIGNIN_COOKIE)])

    async def signout(self, request: Web) -> Redirect:
        access.check_origin(request)
        form = await request.form()
        signed_in = await access.viewer(request, self.storage, now=self.now())
        if signed_in is not None:
            access.check_csrf(form.get("csrf"), signed_in.csrf)
            await self.storage.delete_session(signed_in.session_hash)
        return Redirect("/signin", status_code=303,
                        cookies=[access.cleared(request, access.SESSION_COOKIE)])

    async def shared(self, request: Web, secret: FromPath[str]) -> Template:
        """A share link: its project's page, and a session for the pages it links to (the
        secret is in this one address only)."""
        now = self.now()
        share = await self.storage.find_share(hash_token(secret)) if len(secret) <= 128 \
            else None
        if share is None or not share.live(now):
            raise PageError(404, "Link not valid",
                            "This share link is unknown, has expired, or was revoked. Ask "
                            "whoever sent it for a new one.")
        value, expires = await access.open_session(self.storage, now=now, share=share)
        session_hash = hash_token(value)
        found = await self.storage.find_session(session_hash)
        assert found is not None
        viewer = Viewer(session_hash=session_hash, csrf=found.csrf, share=share)
        return await self._project_page(viewer, share.project, cookies=[
            access.session_cookie(request, value, expires)])

    # The pages.

    async def projects(self, request: Web) -> Template:
        viewer = await self._viewer(request)
        names = viewer.readable(await self.storage.projects())
        return _page("projects.html", viewer=viewer, projects=names)

    async def project(self, request: Web, project: FromPath[str]) -> Template:
        viewer = await self._viewer(request, project)
        return await self._project_page(viewer, project)

    async def _project_page(self, viewer: Viewer, project: str, *,
                            cookies: list[Cookie] | None = None) -> Template:
        environments = await views.environments(self.storage, project)
        recent, _ = await views.timeline(self.storage, project, Timeline(limit=10))
        return _page("project.html", cookies=cookies or [], viewer=viewer, project=project,
                     environments=environments, recent=recent,
                     live=await self.storage.last_hub_seq(project))

    async def deployments(self, request: Web, project: FromPath[str]) -> Template:
        viewer = await self._viewer(request, project)
        environment = _filter(request, "environment")
        if environment is None:
            raise PageError(400, "Which environment?",
                            "Name one: …/deployments?environment=production")
        history, deployed = await views.deployments_of(self.storage, project, environment,
                                                       views.ENVIRONMENT_HISTORY)
        return _page("deployments.html", viewer=viewer, project=project,
                     environment=environment, history=history, deployed=deployed,
                     live=await self.storage.last_hub_seq(project))

    async def timeline(self, request: Web, project: FromPath[str]) -> Template:
        viewer = await self._viewer(request, project)
        kind = _filter(request, "type")
        if kind is not None and kind not in _FAMILIES and not _TYPE.match(kind):
            raise PageError(400, "No such type", "Choose a type from the list.")
        since = request.query_params.get("since") or None
        if since is not None and since not in _SINCE:
            raise PageError(400, "No such period", "Choose a period from the list.")
        before = _cursor(request.query_params.get("before"))
        query = Timeline(
            since_hlc=pack(int((self.now() - _SINCE[since] * DAY) * 1000)) if since else 0,
            before=before, types=(kind,) if kind else (), user=_filter(request, "who"),
            environment=_filter(request, "environment"), limit=views.TIMELINE_PAGE)
        events, older = await views.timeline(self.storage, project, query)
        filters = {"type": kind or "", "who": query.user or "",
                   "environment": query.environment or "", "since": since or ""}
        return _page("timeline.html", viewer=viewer, project=project, events=events,
                     older=older, filters=filters, families=_FAMILIES, periods=list(_SINCE),
                     environments=await self.storage.environments(project,
                                                                  views.MAX_ENVIRONMENTS),
                     live=await self.storage.last_hub_seq(project))

    async def metrics(self, request: Web, project: FromPath[str]) -> Template:
        viewer = await self._viewer(request, project)
        days_text = request.query_params.get("days") or "30"
        if days_text not in {str(days) for days in PERIODS}:
            raise PageError(400, "No such period", "Choose 7, 30 or 90 days.")
        days = int(days_text)
        known = await self.storage.environments(project, views.MAX_ENVIRONMENTS)
        environment = _filter(request, "environment")
        if "environment" not in request.query_params and "production" in known:
            environment = "production"  # what DORA measures, when there is one
        report = await views.metrics(self.storage, project, now=self.now(), days=days,
                                     environment=environment)
        return _page("metrics.html", viewer=viewer, project=project, report=report,
                     days=days, periods=PERIODS, environments=known, environment=environment,
                     keys=_keys(report.current, report.previous, days),
                     charts=_charts(report.current, days),
                     live=await self.storage.last_hub_seq(project))

    async def changes(self, request: Web, project: FromPath[str]) -> Response[Any]:
        """Live updates: answers once the project holds an event after `after`, or after
        LIVE_WAIT seconds, with its newest hub_seq (the page then fetches itself again)."""
        await self._viewer(request, project)
        after_text = request.query_params.get("after", "0")
        after = int(after_text) if after_text.isdigit() and len(after_text) < 19 else 0
        await self.storage.wait_for_events(project, after, LIVE_WAIT)
        # Asked again: a session revoked meanwhile learns nothing more.
        await self._viewer(request, project)
        return Response(msgspec.json.encode({"after": await self.storage.last_hub_seq(project)}),
                        media_type="application/json",
                        headers={"cache-control": "no-store"})

    async def _viewer(self, request: Web,
                      project: str | None = None) -> Viewer:
        """The request's live session, and its right to read `project`: a page of a project
        it may not read is the same 404 as one of no project at all."""
        viewer = await access.viewer(request, self.storage, now=self.now())
        if viewer is None:
            raise SignInNeeded
        if project is not None and (not _PROJECT.match(project) or not viewer.can_read(project)):
            raise PageError(404, "No such project",
                            f"There is no project {project!r} here that you may see.")
        return viewer


def _page(name: str, *, status: int = 200, cookies: list[Cookie] | None = None,
          **context: Any) -> Template:
    return Template(template_name=name, context=context, status_code=status,
                    cookies=cookies or [], headers={"cache-control": "no-store"},
                    media_type="text/html")


def _filter(request: Web, name: str) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and (len(value) > _MAX_FILTER or "\x00" in value):
        raise PageError(400, "Filter too long", f"The {name} filter is longer than "
                        f"{_MAX_FILTER} characters.")
    return value


def _cursor(text: str | None) -> tuple[int, str, int] | None:
    if not text:
        return None
    match = _CURSOR.match(text)
    if match is None:
        raise PageError(400, "Not a page", "This address names no page of the timeline.")
    return int(match.group(1)), match.group(2), int(match.group(3))


# What the templates show numbers as.


def when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def span(seconds: float | None) -> str:
    """A duration people read: `45 s`, `12 min`, `3.5 h`, `2.1 d`."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * DAY:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY:.1f} d"


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def short(ident: str | None) -> str:
    return (ident or "")[-8:]


def summary(event: PulledEvent) -> str:
    """The words that tell one event of a type from another (the template escapes them)."""
    kind, payload = event.type, event.payload

    def text(name: str) -> str:
        value = payload.get(name)
        return value if isinstance(value, str) else ""

    if kind.startswith("note."):
        return text("text")
    if kind == "branch.created":
        base = f" from {text('base')}" if text("base") else ""
        return f"{text('name')}{base}" + (f" at {text('commit')[:7]}" if text("commit") else "")
    if kind == "deployment.started":
        what = "@".join(part for part in (text("branch"), text("commit")[:7]) if part)
        return f"{short(text('deployment'))} to {text('environment')}" + \
            (f": {what}" if what else "")
    if kind in ("deployment.completed", "deployment.failed"):
        took = payload.get("duration")
        words = f"{short(text('deployment'))} to {text('environment')}"
        if isinstance(took, int | float):
            words += f" after {span(float(took))}"
        return words + (f": {text('reason')}" if text("reason") else "")
    if kind == "deployment.marked":
        said = "caused a failure" if payload.get("caused_failure", True) else \
            "did not cause a failure after all"
        return f"{short(text('deployment'))} to {text('environment')} {said}" + \
            (f": {text('reason')}" if text("reason") else "")
    if kind.startswith("workflow."):
        step = text("step") or text("workflow")
        outcome = ""
        if "success" in payload:
            outcome = " succeeded" if payload.get("success") else " failed"
        return f"{step}{outcome} (run {short(text('run'))})"
    return ", ".join(f"{key}={value}" for key, value in list(payload.items())[:8]
                     if isinstance(value, str | int | float))[:200]


def _keys(current: DeliveryPeriod, previous: DeliveryPeriod, days: int) -> list[dict]:
    """The four keys with their values now and before, and which way they went."""

    def trend(now: float | None, before: float | None, higher_is_better: bool) -> str:
        if now is None or before is None:
            return "no comparison"
        if math.isclose(now, before):
            return "unchanged"
        better = (now > before) == higher_is_better
        return f"{'up' if now > before else 'down'} from {{}}, {'better' if better else 'worse'}"

    rows = [
        ("Deployment frequency", f"{current.deployments} ({current.per_day:.2f} a day)",
         f"{previous.deployments} ({previous.per_day:.2f} a day)",
         trend(current.per_day, previous.per_day, True),
         "Deployments that completed in the period."),
        ("Lead time for changes", span(current.lead_time), span(previous.lead_time),
         trend(current.lead_time, previous.lead_time, False),
         f"Median from commit to completed deployment, over {current.lead_times} of "
         f"{current.deployments} deployments whose commit time is known."),
        ("Change failure rate", percent(current.change_failure_rate),
         percent(previous.change_failure_rate),
         trend(current.change_failure_rate, previous.change_failure_rate, False),
         f"{current.failed} failed and {current.marked} marked as causing a failure, of "
         f"{current.deployments + current.failed} deployments that ended."),
        ("Time to restore", span(current.restore_time), span(previous.restore_time),
         trend(current.restore_time, previous.restore_time, False),
         f"Median from a failure to the next completed deployment of its environment, over "
         f"{current.restored} failures restored" + (
             f"; {current.unrestored} not restored yet" if current.unrestored else "") + "."),
    ]
    return [{"name": name, "now": now, "before": before,
             "trend": change.format(before) if "{}" in change else change, "help": help_}
            for name, now, before, change, help_ in rows]


def _charts(period: DeliveryPeriod, days: int) -> list[dict]:
    buckets = period.buckets
    weekly = days > 31
    labels = [("week of " if weekly else "") + time.strftime("%b %d", time.gmtime(b.start))
              for b in buckets]
    short_labels = [time.strftime("%d %b", time.gmtime(b.start)) for b in buckets]
    rates = [b.failures / (b.deployments + b.failed) if b.deployments + b.failed else None
             for b in buckets]
    unit = "week" if weekly else "day"

    def described(name: str, values: list[float | None], show: Callable[[float], str]) -> str:
        known = [(label, v) for label, v in zip(labels, values, strict=True) if v is not None]
        if not known:
            return f"{name}: nothing to show in the last {days} days."
        top = max(known, key=lambda pair: pair[1])
        return (f"{name} per {unit} over the last {days} days: values on {len(known)} of "
                f"{len(values)} {unit}s, highest {show(top[1])} ({top[0]}).")

    series = [
        ("Deployments", [float(b.deployments) for b in buckets], lambda v: f"{v:.0f}", "bar"),
        ("Lead time (median)", [b.lead_time for b in buckets], span, "bar"),
        ("Change failure rate", rates, percent, "bad"),
        ("Time to restore (median)", [b.restore_time for b in buckets], span, "bad"),
    ]
    return [{"title": title, "svg": charts.bar_chart(
        f"{title} per {unit}", described(title, values, show), short_labels, values, show,
        kind=kind)} for title, values, show, kind in series]
