"""Who may talk to the hub: the bearer token check, the client version check, and Refusal."""

from __future__ import annotations

import re
from collections.abc import Mapping

from projctld.hub.storage.interface import HubStorage, TokenRecord, hash_token
from projctld.team.sync.wire import CLIENT_VERSION_HEADER

# The oldest client that speaks this protocol; raised when the protocol changes incompatibly.
DEFAULT_MIN_CLIENT_VERSION = "0.1.0"


class Refusal(Exception):
    """A request the hub turns down; it becomes an HTTP error reply with a HubError body."""

    def __init__(self, status: int, code: str, message: str, *,
                 suggestions: list[str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.suggestions = suggestions or []
        self.headers = headers or {}


_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")
# No version part is this long; int() refuses more than 4300 digits, so a header of them would
# fail the request (a 500) instead of being refused as no version.
_MAX_PART_DIGITS = 18


def parse_version(text: str) -> tuple[int, ...] | None:
    """The leading numeric dotted parts ("0.2.0rc1" → (0, 2, 0)); None when there are none.

    Pre-release and local suffixes are ignored: the hub only needs "older than the minimum".
    """
    match = _VERSION.match(text.strip())
    if match is None:
        return None
    digits = match.group().split(".")
    if any(len(part) > _MAX_PART_DIGITS for part in digits):
        return None
    parts = [int(part) for part in digits]
    # Trailing zeros carry no meaning, so "1.2" and "1.2.0" compare equal.
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def check_client_version(headers: Mapping[str, str], minimum: str) -> None:
    """Refuse a client older than `minimum`; a request without the header (curl) passes."""
    sent = headers.get(CLIENT_VERSION_HEADER)
    if sent is None:
        return
    version = parse_version(sent)
    if version is None:
        raise Refusal(400, "invalid_version",
                      f"the {CLIENT_VERSION_HEADER} header {sent!r} is not a version like 1.2.3",
                      suggestions=[f"send {CLIENT_VERSION_HEADER}: X.Y.Z, or leave it out"])
    floor = parse_version(minimum)
    if floor is not None and version < floor:
        raise Refusal(
            426, "upgrade_required",
            f"this hub needs projctl {minimum} or newer; this client is {sent.strip()}",
            suggestions=[f"pip install --upgrade 'projctl>={minimum}'", "projctl daemon restart"],
        )


async def authenticate(headers: Mapping[str, str], storage: HubStorage) -> TokenRecord:
    """The token the request's `Authorization: Bearer` header names, if it is known and live."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("this request carries no bearer token")
    record = await storage.find_token(hash_token(token))
    if record is None:
        raise _unauthorized("the hub does not know this token")
    if record.revoked:
        raise _unauthorized(f"token {record.id} has been revoked")
    return record


def _unauthorized(message: str) -> Refusal:
    return Refusal(
        401, "unauthorized", message,
        suggestions=[
            "ask the hub's operator for a token: projctld hub token create --user YOU "
            "--project PROJECT [--write]",
            "then export PROJCTL_HUB_TOKEN=<token> (or set token_env in the [sync] section)",
        ],
        headers={"WWW-Authenticate": "Bearer"},
    )
