"""The msgpack subset the protocol uses, in plain Python, for commands that cannot afford msgspec.

Importing msgspec costs more than the whole budget of `projctl status` (see bench/), so the hot
commands encode and decode with this: nil, bool, int, float, str, bin, array and map. Extension
types are not part of the protocol and are refused. tests/test_minipack.py proves it agrees with
msgspec in both directions.
"""

from __future__ import annotations

import struct

_MAX_DEPTH = 64
_FLOAT64 = struct.Struct(">d")


def encode(value: object) -> bytes:
    """Encode builtins (None, bool, int, float, str, bytes, list, tuple, dict) as msgpack."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _encode(value: object, out: bytearray) -> None:
    if value is None:
        out.append(0xC0)
    elif value is True:
        out.append(0xC3)
    elif value is False:
        out.append(0xC2)
    elif isinstance(value, int):
        _encode_int(value, out)
    elif isinstance(value, float):
        out += b"\xcb" + struct.pack(">d", value)
    elif isinstance(value, str):
        data = value.encode()
        _encode_length(len(data), out, fix=0xA0, fix_max=31, tags=(0xD9, 0xDA, 0xDB))
        out += data
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        _encode_length(len(data), out, fix=None, fix_max=-1, tags=(0xC4, 0xC5, 0xC6))
        out += data
    elif isinstance(value, (list, tuple)):
        _encode_length(len(value), out, fix=0x90, fix_max=15, tags=(None, 0xDC, 0xDD))
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        _encode_length(len(value), out, fix=0x80, fix_max=15, tags=(None, 0xDE, 0xDF))
        for key, item in value.items():
            _encode(key, out)
            _encode(item, out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as msgpack")


def _encode_int(value: int, out: bytearray) -> None:
    if 0 <= value <= 0x7F:
        out.append(value)
    elif -32 <= value < 0:
        out.append(value & 0xFF)
    elif value > 0:
        for tag, fmt, limit in ((0xCC, ">B", 0xFF), (0xCD, ">H", 0xFFFF),
                                (0xCE, ">I", 0xFFFFFFFF), (0xCF, ">Q", 0xFFFFFFFFFFFFFFFF)):
            if value <= limit:
                out.append(tag)
                out += struct.pack(fmt, value)
                return
        raise OverflowError("int too large for msgpack")
    else:
        for tag, fmt, limit in ((0xD0, ">b", -0x80), (0xD1, ">h", -0x8000),
                                (0xD2, ">i", -0x80000000), (0xD3, ">q", -0x8000000000000000)):
            if value >= limit:
                out.append(tag)
                out += struct.pack(fmt, value)
                return
        raise OverflowError("int too small for msgpack")


def _encode_length(
    length: int, out: bytearray, *, fix: int | None, fix_max: int, tags: tuple[int | None, ...]
) -> None:
    """Write the header of a str/bin/array/map: fix form, then 8-, 16- and 32-bit lengths."""
    if fix is not None and length <= fix_max:
        out.append(fix | length)
        return
    tag8, tag16, tag32 = tags
    if tag8 is not None and length <= 0xFF:
        out += bytes((tag8, length))
    elif length <= 0xFFFF:
        out.append(tag16)  # type: ignore[arg-type]
        out += struct.pack(">H", length)
    elif length <= 0xFFFFFFFF:
        out.append(tag32)  # type: ignore[arg-type]
        out += struct.pack(">I", length)
    else:
        raise OverflowError("object too large for msgpack")


# Fixed-width scalars by tag: (struct format, size).
_SCALARS = {
    0xCA: (">f", 4), 0xCB: (">d", 8),
    0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
    0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8),
}
# Length-prefixed families by tag: (kind, struct format of the length, its size).
_SIZED = {
    0xD9: ("str", ">B", 1), 0xDA: ("str", ">H", 2), 0xDB: ("str", ">I", 4),
    0xC4: ("bin", ">B", 1), 0xC5: ("bin", ">H", 2), 0xC6: ("bin", ">I", 4),
    0xDC: ("array", ">H", 2), 0xDD: ("array", ">I", 4),
    0xDE: ("map", ">H", 2), 0xDF: ("map", ">I", 4),
}


def decode(data: bytes) -> object:
    """Decode one msgpack object that must span all of `data`; ValueError on anything else."""
    try:
        value, end = _decode(data, 0, 0)
    except (IndexError, struct.error) as exc:
        raise ValueError("truncated msgpack") from exc
    except UnicodeDecodeError as exc:
        raise ValueError("msgpack str is not valid UTF-8") from exc
    if end != len(data):
        raise ValueError(f"{len(data) - end} trailing bytes after msgpack object")
    return value


def _decode(data: bytes, pos: int, depth: int) -> tuple[object, int]:
    if depth > _MAX_DEPTH:
        raise ValueError("msgpack nested too deeply")
    tag = data[pos]
    pos += 1
    if tag <= 0x7F:
        return tag, pos
    if tag >= 0xE0:
        return tag - 0x100, pos
    if 0xA0 <= tag <= 0xBF:
        return _take_str(data, pos, tag & 0x1F)
    if 0x90 <= tag <= 0x9F:
        return _take_array(data, pos, tag & 0x0F, depth)
    if 0x80 <= tag <= 0x8F:
        return _take_map(data, pos, tag & 0x0F, depth)
    if tag == 0xC0:
        return None, pos
    if tag == 0xC2:
        return False, pos
    if tag == 0xC3:
        return True, pos
    if tag in _SCALARS:
        fmt, size = _SCALARS[tag]
        return struct.unpack_from(fmt, data, pos)[0], pos + size
    if tag in _SIZED:
        kind, fmt, size = _SIZED[tag]
        length = struct.unpack_from(fmt, data, pos)[0]
        pos += size
        if kind == "str":
            return _take_str(data, pos, length)
        if kind == "bin":
            return _take_bytes(data, pos, length)
        if kind == "array":
            return _take_array(data, pos, length, depth)
        return _take_map(data, pos, length, depth)
    raise ValueError(f"msgpack type 0x{tag:02x} is not part of the protocol")


def _take_short(data: bytes, pos: int) -> tuple[object, int] | None:
    """The common scalars (short str, small int, nil, bool, float64) without a call to
    _decode; None for anything else. A status view is mostly these, and the calls saved are
    most of a large view's decoding time."""
    tag = data[pos]
    if 0xA0 <= tag <= 0xBF:
        end = pos + 1 + (tag & 0x1F)
        if end > len(data):
            raise ValueError("truncated msgpack")
        return data[pos + 1:end].decode(), end
    if tag <= 0x7F:
        return tag, pos + 1
    if tag == 0xC0:
        return None, pos + 1
    if tag == 0xC2 or tag == 0xC3:
        return tag == 0xC3, pos + 1
    if tag == 0xCB:
        return _FLOAT64.unpack_from(data, pos + 1)[0], pos + 9
    return None


def _take_bytes(data: bytes, pos: int, length: int) -> tuple[bytes, int]:
    end = pos + length
    if end > len(data):
        raise ValueError("truncated msgpack")
    return bytes(data[pos:end]), end


def _take_str(data: bytes, pos: int, length: int) -> tuple[str, int]:
    raw, end = _take_bytes(data, pos, length)
    try:
        return raw.decode(), end
    except UnicodeDecodeError as exc:
        raise ValueError("msgpack str is not valid UTF-8") from exc


def _take_array(data: bytes, pos: int, length: int, depth: int) -> tuple[list[object], int]:
    items = []
    for _ in range(length):
        item = _take_short(data, pos) or _decode(data, pos, depth + 1)
        items.append(item[0])
        pos = item[1]
    return items, pos


def _take_map(data: bytes, pos: int, length: int, depth: int) -> tuple[dict[object, object], int]:
    result: dict[object, object] = {}
    for _ in range(length):
        key, pos = _take_short(data, pos) or _decode(data, pos, depth + 1)
        value, pos = _take_short(data, pos) or _decode(data, pos, depth + 1)
        try:
            result[key] = value
        except TypeError as exc:
            raise ValueError("msgpack map key is not hashable") from exc
    return result, pos
