"""Who looks at a page: browser sessions (signed in with a hub token, or opened by a share
link), their cookie, their expiry, and the CSRF check of every form."""

from __future__ import annotations

import hmac
import os
import time
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie, State

from projctld.hub.storage.interface import (
    HubStorage,
    SessionRecord,
    ShareRecord,
    TokenRecord,
    hash_token,
)

SESSION_COOKIE = "projctl_session"
# The sign-in form's own CSRF secret, before there is a session (double submit: the form must
# send back what this cookie holds, which another site can neither read nor set).
SIGNIN_COOKIE = "projctl_signin"
# How long a sign-in lasts; a share link's session ends with the link, if sooner.
SESSION_SECONDS = 12 * 3600


class PageError(Exception):
    """A page the hub will not show: rendered as an HTML page with this status."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class SignInNeeded(Exception):
    """No live session: the browser is sent to the sign-in form."""


@dataclass(frozen=True)
class Viewer:
    """A live session: a token's user, or a share link's one project."""

    session_hash: str
    csrf: str
    token: TokenRecord | None = None
    share: ShareRecord | None = None

    @property
    def user(self) -> str | None:
        return self.token.user if self.token is not None else None

    def can_read(self, project: str) -> bool:
        if self.token is not None:
            return self.token.can_read(project)
        return self.share is not None and self.share.project == project

    def readable(self, known: list[str]) -> list[str]:
        """The projects of `known` (those with events) this viewer may read; a token's named
        projects too, even before their first event."""
        if self.token is None:
            return [self.share.project] if self.share is not None else []
        named = [] if "*" in self.token.projects else self.token.projects
        return sorted({project for project in [*known, *named] if self.can_read(project)})


def new_secret() -> str:
    return os.urandom(32).hex()


async def viewer(request: Request[Any, Any, State], storage: HubStorage, *,
                 now: float) -> Viewer | None:
    """The live session the request's cookie names, if any: not expired, its token not
    revoked, its share link neither revoked nor expired (looked up at every request)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 128:
        return None
    session_hash = hash_token(cookie)
    session = await storage.find_session(session_hash)
    if session is None or session.expires_at <= now:
        return None
    if session.token_hash is not None:
        token = await storage.find_token(session.token_hash)
        if token is None or token.revoked:
            return None
        return Viewer(session_hash=session_hash, csrf=session.csrf, token=token)
    share = await storage.share(session.share_id or "")
    if share is None or not share.live(now):
        return None
    return Viewer(session_hash=session_hash, csrf=session.csrf, share=share)


async def open_session(storage: HubStorage, *, now: float, token_hash: str | None = None,
                       share: ShareRecord | None = None, user: str = "") -> tuple[str, float]:
    """Store a new session; (the cookie's value, when it expires)."""
    secret = new_secret()
    expires = now + SESSION_SECONDS
    if share is not None:
        expires = min(expires, share.expires_at)
    await storage.add_session(hash_token(secret), SessionRecord(
        user=user, csrf=new_secret(), created_at=now, expires_at=expires,
        token_hash=token_hash, share_id=share.id if share is not None else None))
    return secret, expires


def session_cookie(request: Request[Any, Any, State], value: str, expires: float) -> Cookie:
    """HttpOnly, SameSite=Strict, Secure when the hub is reached over TLS (a proxy in front
    saying so with X-Forwarded-Proto: uvicorn trusts it from loopback)."""
    return Cookie(key=SESSION_COOKIE, value=value, path="/", httponly=True, samesite="strict",
                  secure=request.url.scheme == "https",
                  max_age=max(0, int(expires - time.time())))


def cleared(request: Request[Any, Any, State], name: str) -> Cookie:
    return Cookie(key=name, value="", path="/", httponly=True, samesite="strict",
                  secure=request.url.scheme == "https", max_age=0)


def check_csrf(sent: object, expected: str | None) -> None:
    """Refuse a form whose CSRF field is not the one the hub gave: a page of another site
    cannot know it."""
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise PageError(403, "Form refused",
                        "This form did not come from this hub's own page, or that page is "
                        "too old. Open the page again and send the form from there.")


def check_origin(request: Request[Any, Any, State]) -> None:
    """A form's Origin, when the browser sends one, must be this hub's own."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin != own:
        raise PageError(403, "Form refused", "This form was sent from another site.")
