"""The frame every peer speaks: a 4-byte big-endian body length, then a msgpack body."""

from __future__ import annotations

import struct

PROTOCOL_VERSION = 1
# A status view with hundreds of change requests stays far below this; anything larger is a bug
# or an attack, and refusing it before reading keeps one client from taking the daemon's memory.
MAX_FRAME = 1 << 20
HEADER_SIZE = 4

_HEADER = struct.Struct(">I")


class FrameTooLarge(ValueError):
    """A frame announced or built larger than MAX_FRAME."""

    def __init__(self, length: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
        self.length = length


def frame(body: bytes) -> bytes:
    """Prefix a body with its length; refuse bodies no peer would accept."""
    if len(body) > MAX_FRAME:
        raise FrameTooLarge(len(body))
    return _HEADER.pack(len(body)) + body


def body_length(header: bytes) -> int:
    """Read a frame header; raise FrameTooLarge before anyone allocates for the body."""
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise FrameTooLarge(length)
    return length
