"""The prompt segment's format language and its rendering as plain text or coloured for a shell.

A format is text with placeholders and optional groups:

    [{ref}][ {review}][ {ci}][ ↑{waiting}][ {stale}]

`{name}` is replaced by a fact; `[ ... ]` is kept only when at least one placeholder inside it is
non-empty, so separators vanish with what they separate. `\\{`, `\\}`, `\\[`, `\\]` and `\\\\`
are literal characters. The result is stripped of surrounding spaces.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from projctld.errors import ProjctlError

DEFAULT_FORMAT = "[{ref}][ {review}][ {ci}][ ↑{waiting}][ {stale}]"
# Not `~`: beside a path in a prompt it reads as the home directory.
DEFAULT_STALE_MARKER = "≈"
Style = Literal["plain", "ansi", "bash", "zsh"]
STYLES: tuple[Style, ...] = ("plain", "ansi", "bash", "zsh")
_COLOURS = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "cyan": "36"}
# How review and CI states read in a prompt, and their colour; "none" reads as nothing.
_REVIEW = {"approved": ("approved", "green"), "changes_requested": ("changes", "red"),
           "review_required": ("review", "yellow")}
_CI = {"success": ("✓", "green"), "failure": ("✗", "red"), "running": ("●", "yellow"),
       "pending": ("○", "yellow"), "canceled": ("⊘", "dim"), "skipped": ("-", "dim"),
       "stuck": ("◌", "red"), "manual": ("▷", "yellow")}
PLACEHOLDERS = ("project", "ref", "number", "review", "ci", "waiting", "stale", "instance")


class PromptFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What a prompt can show for one checkout and branch."""

    project: str
    upstream: str | None = None  # the kind of the branch's change request's upstream
    instance: str = ""  # its instance, when it is a named one (ghe), not github or gitlab
    number: int | None = None
    # False when no change request was found but none could be looked for yet (not fetched):
    # {ref} then shows `?`, never the absence of one as a fact.
    known: bool = True
    review: str = "none"
    ci: str = "none"
    waiting: int = 0
    stale: bool = False


class FormatError(ProjctlError):
    def __init__(self, problem: str, fmt: str) -> None:
        self.problem = problem
        super().__init__(
            f"prompt format {fmt!r}: {problem}", code="bad_prompt_format",
            suggestions=[f"placeholders: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}; "
                         "[ ... ] drops its text when its placeholders are empty; "
                         "\\{ \\} \\[ \\] are literal",
                         f"the default is --format '{DEFAULT_FORMAT}'"],
        )


# A parsed format: literal strings and placeholder names (tuples), some inside groups (lists).
Part = str | tuple[str]
Template = list[Part | list[Part]]


def parse(fmt: str) -> Template:
    """The template of `fmt`; FormatError says what is wrong and where."""
    template: Template = []
    group: list[Part] | None = None
    literal: list[str] = []
    index = 0

    def flush() -> None:
        if literal:
            (group if group is not None else template).append("".join(literal))
            literal.clear()

    while index < len(fmt):
        char = fmt[index]
        if char == "\\":
            if index + 1 == len(fmt) or fmt[index + 1] not in "{}[]\\":
                raise FormatError(f"at {index + 1}: `\\` escapes only {{ }} [ ] and \\", fmt)
            literal.append(fmt[index + 1])
            index += 2
            continue
        if char == "{":
            end = fmt.find("}", index)
            name = fmt[index + 1:end] if end != -1 else ""
            if end == -1 or name not in PLACEHOLDERS:
                shown = fmt[index:end + 1] if end != -1 else fmt[index:]
                raise FormatError(f"at {index + 1}: unknown placeholder {shown}", fmt)
            flush()
            (group if group is not None else template).append((name,))
            index = end + 1
            continue
        if char == "[":
            if group is not None:
                raise FormatError(f"at {index + 1}: groups [ ... ] do not nest", fmt)
            flush()
            group = []
        elif char == "]":
            if group is None:
                raise FormatError(f"at {index + 1}: `]` closes no group", fmt)
            flush()
            template.append(group)
            group = None
        elif char == "}":
            raise FormatError(f"at {index + 1}: `}}` closes no placeholder", fmt)
        else:
            literal.append(char)
        index += 1
    if group is not None:
        raise FormatError("a group [ ... ] is not closed", fmt)
    flush()
    return template


def render(template: Template, facts: PromptFacts, style: Style, stale_marker: str) -> str:
    """The segment; for bash and zsh, colour codes are marked as taking no room on the line."""
    values = _values(facts, stale_marker)
    out: list[str] = []
    for part in template:
        if isinstance(part, list):
            if any(isinstance(p, tuple) and values[p[0]][0] for p in part):
                out.extend(_piece(p, values, style) for p in part)
        else:
            out.append(_piece(part, values, style))
    return "".join(out).strip()


def _values(facts: PromptFacts, stale_marker: str) -> dict[str, tuple[str, str | None]]:
    sign = "!" if facts.upstream == "gitlab" else "#"
    return {
        "project": (facts.project, None),
        "ref": (f"{sign}{facts.number}" if facts.number is not None
                else "" if facts.known else "?", "cyan"),
        "number": (str(facts.number) if facts.number is not None else "", "cyan"),
        "review": _REVIEW.get(facts.review, ("", None)),
        "ci": _CI.get(facts.ci, ("", None)),
        "waiting": (str(facts.waiting) if facts.waiting else "", "yellow"),
        "stale": (stale_marker if facts.stale else "", "dim"),
        "instance": (facts.instance, "dim"),
    }


def _piece(part: Part, values: dict[str, tuple[str, str | None]], style: Style) -> str:
    if isinstance(part, str):
        return _text(part, style)
    text, colour = values[part[0]]
    text = _text(_printable(text), style)
    if not text or colour is None or style == "plain":
        return text
    return _invisible(f"\x1b[{_COLOURS[colour]}m", style) + text + _invisible("\x1b[0m", style)


def _text(text: str, style: Style) -> str:
    # zsh expands % escapes in a prompt, so a literal % must be doubled.
    return text.replace("%", "%%") if style == "zsh" else text


def _invisible(code: str, style: Style) -> str:
    # Shells count every byte of the prompt as a column unless told which bytes print nothing.
    if style == "bash":
        return f"\x01{code}\x02"
    if style == "zsh":
        return f"%{{{code}%}}"
    return code


def _printable(text: str) -> str:
    """Without control characters: upstream data must not move the cursor or end the line."""
    return "".join(c for c in text if c.isprintable())
