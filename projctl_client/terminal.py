"""What the terminal can show (its width, colours, links) and painted text measured, clipped
and wrapped to a width with its escape codes kept whole.

The hot path imports this, so it imports nothing new: `shutil.get_terminal_size` is redone
with `os` (shutil imports fnmatch and re), and `unicodedata` is imported only to measure text
that is not ASCII.
"""

from __future__ import annotations

import os

# The columns a layout is made for: a pipe gets PIPE_WIDTH unless COLUMNS says otherwise;
# COLUMNS and the terminal are held to these bounds (the protocol's too).
PIPE_WIDTH = 80
MIN_WIDTH = 20
MAX_WIDTH = 1000
# `PROJCTL_LINKS=never` turns links off, `always` on in any colour terminal; `auto` (the
# default) only in the terminals known to show them (_LINKING_* below).
LINKS_VARIABLE = "PROJCTL_LINKS"
_ON = ("1", "always", "yes", "on", "true")
_OFF = ("0", "never", "no", "off", "false")
# Terminals that show OSC 8 links, as their environment names them; inside tmux or screen the
# outer terminal's variables still show, but the multiplexer may not pass links on.
_LINKING_PROGRAMS = ("iTerm.app", "WezTerm", "vscode", "ghostty")
_LINKING_TERMS = ("xterm-kitty", "xterm-ghostty", "foot", "foot-extra", "wezterm")
_LINKING_MARKERS = ("WT_SESSION", "KITTY_WINDOW_ID", "DOMTERM")
_VTE_WITH_LINKS = 5000  # VTE 0.50 (GNOME Terminal, Tilix, ...)

RESET = "\033[0m"
_LINK_END = "\033]8;;\033\\"
ELLIPSIS = "…"


def width(stream: object) -> int:
    """The columns to lay out for: COLUMNS when set, else the size of the terminal `stream`
    is, else PIPE_WIDTH; held within MIN_WIDTH..MAX_WIDTH."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return _bounded(int(columns))
    try:
        size = os.get_terminal_size(stream.fileno()).columns  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return PIPE_WIDTH
    return _bounded(size) if size > 0 else PIPE_WIDTH


def _bounded(columns: int) -> int:
    return max(MIN_WIDTH, min(MAX_WIDTH, columns))


def colours(stream: object) -> bool:
    """Whether `stream` takes escape codes: a terminal, without NO_COLOR, not TERM=dumb."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ \
        and os.environ.get("TERM") != "dumb"


def links(stream: object) -> bool:
    """Whether to write change requests, pipelines and tickets as OSC 8 links: never where
    colours are off (a pipe, NO_COLOR, TERM=dumb); else as PROJCTL_LINKS says."""
    if not colours(stream):
        return False
    choice = os.environ.get(LINKS_VARIABLE, "auto").strip().lower()
    if choice in _OFF:
        return False
    return choice in _ON or known_to_link(os.environ)


def known_to_link(env: dict[str, str] | os._Environ[str]) -> bool:
    if env.get("TMUX") or env.get("STY"):
        return False
    if env.get("TERM_PROGRAM") in _LINKING_PROGRAMS or env.get("TERM") in _LINKING_TERMS:
        return True
    if any(env.get(name) for name in _LINKING_MARKERS):
        return True
    vte = env.get("VTE_VERSION", "")
    return vte.isdigit() and int(vte) >= _VTE_WITH_LINKS


def link(url: str | None, text: str) -> str:
    """`text` as an OSC 8 link to `url`; plain text for a URL that is not a printable
    http(s) address (nothing from upstream may write its own escape codes)."""
    if not url or not url.startswith(("https://", "http://")) or not url.isascii() \
            or not url.isprintable() or " " in url:
        return text
    return f"\033]8;;{url}\033\\{text}{_LINK_END}"


# What must not reach the terminal from upstream text: control characters (which could move
# the cursor or write escape codes) and the bidirectional overrides (which reorder a line).
_UNPRINTABLE = {code: "\ufffd" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0),
                                            *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_UNPRINTABLE.update({ord("\t"): " ", ord("\n"): " ", ord("\r"): " "})


def printable(text: str) -> str:
    """`text` with control characters and direction overrides made harmless."""
    return text if text.isprintable() else text.translate(_UNPRINTABLE)


def text_width(text: str) -> int:
    """The columns plain `text` takes: wide East Asian characters and emoji take two,
    combining marks and zero-width characters none."""
    if text.isascii():
        return len(text)
    size = _TEXTS.get(text)
    if size is None:
        size = sum(_char_width(char) for char in text)
        if len(_TEXTS) >= _TEXTS_KEPT:
            _TEXTS.clear()
        _TEXTS[text] = size
    return size


# The widths of the texts that are not ASCII measured last (CI cells, symbols: the same few
# again and again), and of each such character.
_TEXTS: dict[str, int] = {}
_TEXTS_KEPT = 4096
_WIDTHS: dict[str, int] = {}


def _char_width(char: str) -> int:
    if char < "\u0300":
        return 1
    size = _WIDTHS.get(char)
    if size is None:
        import unicodedata  # only for text that needs it

        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
            size = 0
        else:
            size = 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
        if len(_WIDTHS) < 4096:
            _WIDTHS[char] = size
    return size


def clip(text: str, columns: int) -> str:
    """Plain `text` cut to `columns`, with `…` where it was cut."""
    if text_width(text) <= columns:
        return text
    if columns <= 0:
        return ""
    if text.isascii():
        return text[:columns - 1] + ELLIPSIS
    kept, used = [], 0
    for char in text:
        size = text_width(char)
        if used + size > columns - 1:
            break
        kept.append(char)
        used += size
    return "".join(kept) + ELLIPSIS


def pad(text: str, columns: int) -> str:
    """Plain `text` followed by spaces up to `columns`."""
    return text + " " * (columns - text_width(text))


def _pieces(line: str) -> list[tuple[bool, str]]:
    """A painted line as (is an escape sequence, text) pieces: CSI and OSC sequences whole."""
    pieces: list[tuple[bool, str]] = []
    start = 0
    while True:
        escape = line.find("\033", start)
        if escape < 0:
            if start < len(line):
                pieces.append((False, line[start:]))
            return pieces
        if escape > start:
            pieces.append((False, line[start:escape]))
        end = _escape_end(line, escape)
        pieces.append((True, line[escape:end]))
        start = end


def _escape_end(line: str, start: int) -> int:
    kind = line[start + 1:start + 2]
    if kind == "[":  # CSI: parameters, then one final byte from @ to ~
        index = start + 2
        while index < len(line) and not "@" <= line[index] <= "~":
            index += 1
        return min(index + 1, len(line))
    if kind == "]":  # OSC: ended by BEL or ESC backslash
        bell, st = line.find("\007", start), line.find("\033\\", start)
        ends = [e + 1 for e in (bell,) if e >= 0] + [e + 2 for e in (st,) if e >= 0]
        return min(ends) if ends else len(line)
    return min(start + 2, len(line))


def visible(line: str) -> str:
    """A painted line without its escape sequences."""
    return "".join(text for escape, text in _pieces(line) if not escape)


def line_width(line: str) -> int:
    """The columns a painted line takes."""
    return text_width(visible(line)) if "\033" in line else text_width(line)


def fit(line: str, columns: int) -> str:
    """A painted line cut to `columns` (with `…`); every escape sequence is kept, so what it
    opened is closed again."""
    if line_width(line) <= columns:
        return line
    out, used, cut = [], 0, False
    for escape, text in _pieces(line):
        if escape:
            out.append(text)
            continue
        if cut:
            continue
        for char in text:
            size = text_width(char)
            if used + size > columns - 1:
                out.append(ELLIPSIS)
                cut = True
                break
            out.append(char)
            used += size
    return "".join(out)


class _State:
    """The colour and link open at a point of a painted line, to close at the end of a
    wrapped line and open again at the start of the next."""

    def __init__(self) -> None:
        self.sgr = ""
        self.link = ""

    def take(self, escape: str) -> None:
        if escape.startswith("\033]8;"):
            self.link = "" if escape in (_LINK_END, "\033]8;;\007") else escape
        elif escape.endswith("m"):
            self.sgr = "" if escape in (RESET, "\033[m") else self.sgr + escape

    def close(self) -> str:
        return (RESET if self.sgr else "") + (_LINK_END if self.link else "")

    def reopen(self) -> str:
        return self.link + self.sgr


def wrap(line: str, columns: int, indent: int = 0) -> list[str]:
    """A painted line broken at spaces into lines of at most `columns`, the second and later
    indented by `indent`; the spaces within a line are kept, and a word longer than a line is
    cut where the line ends."""
    if line_width(line) <= columns:
        return [line]
    indent = min(indent, columns // 2)
    lines: list[str] = []
    state = _State()
    current: list[str] = []
    used = start = 0  # the columns filled, and those the line began with

    def new_line() -> None:
        nonlocal current, used, start
        lines.append("".join(current).rstrip(" ") + state.close())
        current = [" " * indent, state.reopen()]
        used = start = indent

    for spaces, pieces, size in _words(line):
        if used > start and used + spaces + size > columns:
            new_line()
        elif used > start or not lines:
            current.append(" " * spaces)
            used += spaces
        for escape, piece in pieces:
            if escape:
                state.take(piece)
                current.append(piece)
                continue
            for char in piece:
                char_size = text_width(char)
                if used + char_size > columns:
                    new_line()
                current.append(char)
                used += char_size
    lines.append("".join(current).rstrip(" "))
    return lines


def _words(line: str) -> list[tuple[int, list[tuple[bool, str]], int]]:
    """The words of a painted line: the spaces before each, its (is escape, text) pieces, and
    its width (escapes between spaces make a word of width 0)."""
    words: list[tuple[int, list[tuple[bool, str]], int]] = []
    spaces, current, size = 0, [], 0
    for escape, piece in _pieces(line):
        if escape:
            current.append((True, piece))
            continue
        for index, part in enumerate(piece.split(" ")):
            if index:  # a space
                if current:
                    words.append((spaces, current, size))
                    spaces, current, size = 0, [], 0
                spaces += 1
            if part:
                current.append((False, part))
                size += text_width(part)
    if current:
        words.append((spaces, current, size))
    return words
