"""{{ placeholders }} in commands: checked at load time, substituted at run time into one argument
each, or shlex-quoted into a shell script, so a value never becomes shell syntax by accident."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Collection

from projctld.team.workflows.model import GIT_FIELDS, Value

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)+$")
_HIDDEN = re.compile("\x00([0-9]+)\x00")


class TemplateError(Exception):
    """A placeholder that is not a known name, or has no value; `column` is 1-based in the text
    it sits in (0 when not known)."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


def names(text: str) -> list[tuple[str, int]]:
    """The dotted names of the placeholders in `text`, each with its 1-based column."""
    found = []
    end = 0
    for match in _PLACEHOLDER.finditer(text):
        _unclosed(text, end, match.start())
        name = match.group(1).strip()
        if not _DOTTED.match(name):
            raise TemplateError(f"`{match.group()}` is not a name like {{{{ params.NAME }}}} or "
                                "{{ git.commit_sha }} (templates substitute values, nothing "
                                "more)", match.start() + 1)
        found.append((name, match.start() + 1))
        end = match.end()
    _unclosed(text, end, len(text))
    return found


def _unclosed(text: str, start: int, end: int) -> None:
    opening = text.find("{{", start, end)
    if opening >= 0:
        raise TemplateError("`{{` has no closing `}}`", opening + 1)


def check(text: str, params: Collection[str]) -> None:
    """TemplateError unless every placeholder names a declared parameter or a git fact."""
    for name, column in names(text):
        root, *rest = name.split(".")
        if root == "params":
            if len(rest) != 1 or rest[0] not in params:
                declared = ", ".join(params) or "none"
                raise TemplateError(f"`{{{{ {name} }}}}`: no such parameter is declared "
                                    f"(declared: {declared})", column)
        elif root == "git":
            if len(rest) != 1 or rest[0] not in GIT_FIELDS:
                known = ", ".join(f"git.{field}" for field in GIT_FIELDS)
                raise TemplateError(f"`{{{{ {name} }}}}`: unknown git fact (known: {known})",
                                    column)
        elif root == "steps":
            raise TemplateError(f"`{{{{ {name} }}}}`: step results cannot be substituted into "
                                "commands; use them in a `condition`", column)
        else:
            raise TemplateError(f"`{{{{ {name} }}}}`: templates use params.NAME or git.FIELD",
                                column)


def split(command: str) -> list[str]:
    """shlex.split, with every placeholder kept whole inside the argument it stands in (so that
    "deploy {{ params.env }}" is two arguments); ValueError if the quoting does not close."""
    hidden: list[str] = []

    def hide(match: re.Match[str]) -> str:
        hidden.append(match.group())
        return f"\x00{len(hidden) - 1}\x00"

    args = shlex.split(_PLACEHOLDER.sub(hide, command))
    return [_HIDDEN.sub(lambda m: hidden[int(m.group(1))], arg) for arg in args]


def render(text: str, lookup: Callable[[str], Value], *, quote: bool = False) -> str:
    """`text` with each placeholder replaced by its value; with `quote`, shlex-quoted for sh."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        text = format_value(name, lookup(name))
        return shlex.quote(text) if quote else text

    return _PLACEHOLDER.sub(value, text)


def format_value(name: str, value: Value) -> str:
    if value is None:
        raise TemplateError(f"{{{{ {name} }}}} has no value")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
