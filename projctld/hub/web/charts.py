"""Bar charts as inline SVG, drawn on the server: each with a title and a description that
says what it shows in words (the page puts the same numbers in a table beside it)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 400, 180
_LEFT, _BOTTOM, _TOP = 52, 26, 14
_ids = itertools.count(1)


def bar_chart(title: str, description: str, labels: Sequence[str],
              values: Sequence[float | None], label_of: Callable[[float], str], *,
              kind: str = "bar") -> Markup:
    """Bars for `values` (None: nothing to show, drawn as no bar), under `labels`; the axis
    is marked with `label_of` its top value. `kind` is a CSS class (bar, bad)."""
    chart = next(_ids)
    known = [value for value in values if value is not None]
    top = max(known, default=0.0) or 1.0
    inner_width, inner_height = WIDTH - _LEFT - 8, HEIGHT - _TOP - _BOTTOM
    slot = inner_width / max(1, len(values))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart{chart}-title chart{chart}-desc" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart{chart}-title">{escape(title)}</title>',
        f'<desc id="chart{chart}-desc">{escape(description)}</desc>',
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + inner_height}" x2="{WIDTH - 8}" '
        f'y2="{_TOP + inner_height}"/>',
        f'<text class="tick" x="{_LEFT - 4}" y="{_TOP + 8}" text-anchor="end">'
        f'{escape(label_of(top))}</text>',
        f'<text class="tick" x="{_LEFT - 4}" y="{_TOP + inner_height}" text-anchor="end">'
        f'{escape(label_of(0.0))}</text>',
    ]
    every = max(1, -(-len(labels) // 5))  # at most five labels along the bottom
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = _LEFT + index * slot
        if value is not None and value > 0:
            height = max(1.0, inner_height * value / top)
            parts.append(
                f'<rect class="{escape(kind)}" x="{x + slot * 0.15:.1f}" '
                f'y="{_TOP + inner_height - height:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{height:.1f}"><title>{escape(label)}: {escape(label_of(value))}'
                '</title></rect>')
        if index % every == 0:
            parts.append(f'<text class="tick" x="{x + slot / 2:.1f}" '
                         f'y="{HEIGHT - 8}" text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
