"""A step's output kept within bounds: bytes split into lines, and only the last lines kept."""

from __future__ import annotations

from collections import deque

MAX_LINE_BYTES = 4096
TAIL_LINES = 200
TAIL_BYTES = 64 * 1024


class LineSplitter:
    """Cuts a byte stream into text lines; a line longer than `max_bytes` is cut short (and
    says how much was cut) rather than held in memory whole."""

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_bytes
        self._partial = bytearray()
        self._cut = 0

    def feed(self, data: bytes) -> list[str]:
        lines = []
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            self._take(data[start:newline])
            lines.append(self._finish())
            start = newline + 1
        self._take(data[start:])
        return lines

    def flush(self) -> list[str]:
        """The last line, if the stream ended without a newline."""
        return [self._finish()] if self._partial or self._cut else []

    def _take(self, chunk: bytes) -> None:
        room = self._max - len(self._partial)
        self._partial += chunk[:room]
        self._cut += max(0, len(chunk) - room)

    def _finish(self) -> str:
        line = self._partial.decode(errors="replace").removesuffix("\r")
        if self._cut:
            line += f" [... {self._cut} bytes cut]"
        self._partial.clear()
        self._cut = 0
        return line


class OutputTail:
    """The last `max_lines` lines (and at most `max_bytes` of them), and how many were dropped."""

    def __init__(self, max_lines: int = TAIL_LINES, max_bytes: int = TAIL_BYTES) -> None:
        self._lines: deque[str] = deque()
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._size = 0
        self.dropped = 0

    def add(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line)
        while len(self._lines) > self._max_lines or (self._size > self._max_bytes
                                                      and len(self._lines) > 1):
            self._size -= len(self._lines.popleft())
            self.dropped += 1

    @property
    def lines(self) -> list[str]:
        return list(self._lines)
