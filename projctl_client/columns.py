"""Tables laid out for a width: cells with shorter forms for narrow terminals, one flexible
column that gets what the others leave, rows aligned, painted and linked."""

from __future__ import annotations

from typing import NamedTuple

from projctl_client.render import Style
from projctl_client.terminal import clip, fit, link, text_width, wrap


class Canvas:
    """Where tables and lines go: so many columns, with colours and links or not."""

    def __init__(self, width: int, colours: bool, links: bool) -> None:
        self.width = width
        self.colours = colours
        self.links = links
        self.style = Style(None, on=colours)

    def paint(self, colour: str, text: str) -> str:
        return self.style.paint(colour, text) if colour else text

    def cell(self, cell: Cell, text: str, size: int, columns: int, last: bool = True) -> str:
        """`text` (the form of `cell` chosen, `size` columns wide) painted, linked and padded
        to `columns`."""
        if cell.colour and text and self.colours:
            text = f"{getattr(self.style, cell.colour)}{text}{self.style.reset}"
        if cell.url and self.links:
            text = link(cell.url, text)
        return text if last or size >= columns else text + " " * (columns - size)

    def wrap(self, line: str, indent: int = 0) -> list[str]:
        return wrap(line, self.width, indent)


class Cell:
    """One cell of a table: its forms, longest first (a column takes the longest that fits),
    its colour and link. A cell that `clips` is cut to any width, keeping `keep` after it."""

    __slots__ = ("clips", "colour", "forms", "keep", "url", "widths")

    def __init__(self, forms: tuple[str, ...], colour: str = "", url: str | None = None,
                 clips: bool = False, keep: str = "") -> None:
        if keep:
            forms = tuple([form + keep if form else "" for form in forms])
        self.forms = forms
        self.colour, self.url, self.clips, self.keep = colour, url, clips, keep
        # Measured once: a table asks for them again and again.
        self.widths = tuple([text_width(form) for form in forms])

    @property
    def natural(self) -> int:
        return self.widths[0]

    def least(self, column_least: int) -> int:
        return min(self.widths[0], column_least) if self.clips else self.widths[-1]

    def at(self, columns: int) -> tuple[str, int]:
        """The form shown in `columns`, and its width."""
        for form, size in zip(self.forms, self.widths, strict=True):
            if size <= columns:
                return form, size
        if self.clips:
            last = self.forms[-1][:len(self.forms[-1]) - len(self.keep)]
            cut = clip(last, columns - text_width(self.keep)) + self.keep
            return cut, text_width(cut)
        return self.forms[-1], self.widths[-1]


EMPTY = Cell(("",))


def text(value: str, colour: str = "", url: str | None = None, clips: bool = False) -> Cell:
    return Cell((value,), colour, url, clips)


class Column(NamedTuple):
    """A table column: the `flex` one gets what the others leave; `least` is as narrow as
    its clipping cells start; `gap` the spaces before it. A `uniform` column shows the same
    form in every row (refs, names), the others the longest that fits in each (CI)."""

    flex: bool = False
    least: int = 0
    gap: int = 1
    uniform: bool = False


def table(page: Canvas, rows: list[list[Cell]], columns: list[Column], indent: int,
          grow: tuple[int, ...] = (), overflow_indent: int | None = None,
          sizes: list[int] | None = None) -> list[str]:
    """The rows laid out in aligned columns within the page's width (see `widths`, unless
    given its `sizes`). With `overflow_indent`, a row still too wide is wrapped under that
    indent instead of cut."""
    sizes = sizes or widths(page, rows, columns, indent, grow)
    return [line for row in _rows(page, rows, columns, indent, sizes)
            for line in ([row] if not isinstance(row, _Overflow)
                         else page.wrap(row, overflow_indent) if overflow_indent is not None
                         else [fit(row, page.width)])]


class _Overflow(str):
    """A table row wider than the page (a column could not be made narrow enough)."""


def widths(page: Canvas, rows: list[list[Cell]], columns: list[Column], indent: int,
           grow: tuple[int, ...] = ()) -> list[int]:
    """The width each column gets (0: not shown, as a column no row fills). The columns in
    `grow` start at their shortest forms, the flex column (the titles) then takes what is
    left up to its longest cell, and what is still left lets the `grow` columns take longer
    forms, in the order given; every other column is as wide as its longest cell."""
    count = len(columns)
    natural = [max((row[i].natural for row in rows), default=0) for i in range(count)]
    shown = [i for i in range(count) if natural[i] > 0]
    sizes = list(natural)
    for i in grow:
        least = max(row[i].least(columns[i].least) for row in rows)
        sizes[i] = _snap(rows, columns, i, min(natural[i], least))
    flex = next((i for i in shown if columns[i].flex), None)
    gaps = sum(columns[i].gap for i in shown[1:])
    room = page.width - indent - gaps - sum(sizes[i] for i in shown if i != flex)
    if flex is not None:
        sizes[flex] = max(0, min(natural[flex], room))
        room -= sizes[flex]
    for i in grow:
        if room > 0 and sizes[i] < natural[i]:
            size = _snap(rows, columns, i, min(natural[i], sizes[i] + room))
            room -= size - sizes[i]
            sizes[i] = size
    return sizes


def _snap(rows: list[list[Cell]], columns: list[Column], column: int, size: int) -> int:
    """The width column `column` takes when given `size`: that of the forms it then shows."""
    if columns[column].uniform:
        return max(width for _, width in _column(rows, columns, column, size))
    # The widest form each cell shows in `size` (a cut one is `size` wide).
    return max(next((width for width in row[column].widths if width <= size),
                    size if row[column].clips else row[column].widths[-1]) for row in rows)


def _column(rows: list[list[Cell]], columns: list[Column], column: int,
            size: int) -> list[tuple[str, int]]:
    """The text of each cell of column `column` at width `size`, and its width."""
    cells = [row[column] for row in rows]
    if columns[column].uniform:
        # The longest form every cell shows whole, the same for all; else as each can.
        depth = max(len(cell.forms) for cell in cells)
        for form in range(depth):
            chosen = [min(form, len(cell.forms) - 1) for cell in cells]
            if all(cell.widths[k] <= size for cell, k in zip(cells, chosen, strict=True)):
                return [(cell.forms[k], cell.widths[k])
                        for cell, k in zip(cells, chosen, strict=True)]
    return [cell.at(size) for cell in cells]


def _rows(page: Canvas, rows: list[list[Cell]], columns: list[Column], indent: int,
          sizes: list[int]) -> list[str]:
    shown = [i for i, size in enumerate(sizes) if size > 0]
    texts = {i: _column(rows, columns, i, sizes[i]) for i in shown}
    # A row's width is known from its cells: all but the last are padded to their column.
    before_last = indent + sum(columns[i].gap for i in shown[1:]) \
        + sum(sizes[i] for i in shown[:-1])
    gaps = {i: " " * columns[i].gap for i in shown[1:]}
    last = shown[-1] if shown else -1
    lines = []
    for index, row in enumerate(rows):
        parts = [" " * indent]
        for i in shown:
            if i in gaps:
                parts.append(gaps[i])
            text, size = texts[i][index]
            parts.append(page.cell(row[i], text, size, sizes[i], i == last))
        line = "".join(parts).rstrip(" ")
        used = before_last + (texts[shown[-1]][index][1] if shown else 0)
        lines.append(line if used <= page.width else _Overflow(line))
    return lines
