"""Secrets out of text: the one redaction that logs, stored upstream errors and replies all use.

Two nets, because neither alone is enough:

- shapes: header echoes (`Authorization: Bearer …`, `PRIVATE-TOKEN: …`, `Cookie: …`), scheme
  words (`Bearer …`, `Basic …`, `token …`), secret query parameters (`access_token=…`) and the
  token formats of GitHub, GitLab, Atlassian and the hub;
- values: every token this process has used (`remember`), wherever it shows up in a text, even
  quoted bare by an upstream's error message.
"""

from __future__ import annotations

import re
import threading

REDACTED = "[redacted]"

# A header that carries a credential, the separator, an optional quote and scheme word, and the
# credential itself (to the end of the value).
_HEADER = (
    r"(?P<header>\b(?:proxy-)?authorization|\bprivate-token|\bjob-token|\bx-api-key"
    r"|\bapi-key|\bx-auth-token|\bx-atlassian-token|\b(?:set-)?cookie)"
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<scheme>(?:bearer|basic|token|digest|negotiate|apikey)\s+)?"
    # A cookie's further `; name=value` pairs are part of its value.
    r"(?P<value>[^\s\"',;}]+(?:;\s*[^\s\"',;}=:]+=[^\s\"',;}]*)*)"
)
# A scheme word followed by a credential, anywhere in a text. The credential has a digit or a
# sign no word has, so that "a token required" stays as it is.
_SCHEME = (r"\b(?P<word>bearer|basic|token)(?P<gap>\s+|=)"
           r"(?P<cred>(?=[A-Za-z.-]*[0-9_~+/=])[A-Za-z0-9._~+/=-]{8,})")
# Query and form parameters that hold secrets.
_PARAM = (r"(?P<param>\b(?:access_token|private_token|refresh_token|api_key|apikey|password"
          r"|passwd|secret|client_secret)=)(?P<pvalue>[^\s&\"',;}]+)")
# Tokens recognisable by their format, whatever surrounds them.
_SHAPE = (r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}"
          r"|ATATT[A-Za-z0-9_=-]{20,}|pjh_[A-Za-z0-9]{16,})")
_SECRET_TEXT = re.compile(f"(?i:{_HEADER}|{_SCHEME}|{_PARAM})|{_SHAPE}")

# Values shorter than this are not remembered: they would blank ordinary words.
MIN_REMEMBERED = 8
# Tokens rotate (a token command is asked again after a 401); the newest this many are kept.
MAX_REMEMBERED = 64
_known: dict[str, None] = {}  # insertion-ordered set
_lock = threading.Lock()


def remember(secret: str) -> None:
    """Redact `secret` from every text from now on (a token this process holds)."""
    secret = secret.strip()
    if len(secret) < MIN_REMEMBERED:
        return
    with _lock:
        _known.pop(secret, None)
        _known[secret] = None
        while len(_known) > MAX_REMEMBERED:
            del _known[next(iter(_known))]


def _replace(match: re.Match[str]) -> str:
    if match.group("header"):
        return match.group("header") + match.group("sep") + (match.group("scheme") or "") \
            + REDACTED
    if match.group("word"):
        return match.group("word") + match.group("gap") + REDACTED
    if match.group("param"):
        return match.group("param") + REDACTED
    return REDACTED


def redact_text(text: str) -> str:
    """`text` with every secret it holds replaced by [redacted]."""
    if _known:
        with _lock:
            known = sorted(_known, key=len, reverse=True)  # a token inside another goes last
        for secret in known:
            if secret in text:
                text = text.replace(secret, REDACTED)
    return _SECRET_TEXT.sub(_replace, text)


def redact_all(texts: list[str]) -> list[str]:
    return [redact_text(text) for text in texts]
