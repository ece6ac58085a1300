"""The one exception tree of projctld; every fault a user can meet is one of these.

    ProjctlError           code, message, suggestions (what to type next), context
    ├── ConfigError        the config file is unreadable, not TOML, or does not validate (exit 2)
    ├── StartupError       the daemon cannot start: another one serves the socket, the socket
    │                      directory is unsafe, the socket path is too long            (exit 1)
    ├── StoreError         the state database cannot be opened, migrated or written     (exit 1)
    └── UpstreamError      GitHub, GitLab, Jira or the team hub refused, failed, held us off
                           or sent a body we cannot read; recorded as that source's (or the
                           sync's) error, never fatal

A ProjctlError raised while serving a request becomes that request's Error reply.

Boundaries (sqlite3, sockets, httpx, config parsing) translate their exceptions into these, so that
`projctld` prints one clear message and never a traceback for a fault a user can fix.
"""

from __future__ import annotations


class ProjctlError(Exception):
    code = "error"
    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        suggestions: list[str] | None = None,
        context: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.suggestions = suggestions or []
        self.context = context or {}
        if code is not None:
            self.code = code


class ConfigError(ProjctlError):
    code = "config"
    exit_code = 2


class StartupError(ProjctlError):
    code = "startup"


class StoreError(ProjctlError):
    code = "store"


class UpstreamError(ProjctlError):
    """A poll of one upstream failed; `retryable` faults (5xx, timeouts, unreachable) back off.

    Codes: auth, forbidden, saml (an organisation's single sign-on hides it), not_found,
    rate_limited, unreachable, timeout, server_error, rejected (another 4xx), malformed (a body
    we cannot read), token (no token or its command failed), truncated (more than the bounds
    allow, as a part's problem).
    """

    code = "upstream"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retryable: bool = False,
        suggestions: list[str] | None = None,
        context: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, suggestions=suggestions, context=context, code=code)
        self.retryable = retryable
