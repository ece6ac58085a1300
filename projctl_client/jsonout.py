"""JSON text of a decoded view, as `json.dumps(indent=2, ensure_ascii=False)` writes it.

`import json` costs about 7 ms (it imports `re`), more than the rest of `projctl status --json`;
this writer needs no import and is held equal to the json module by a property test.
"""

from __future__ import annotations

# Only for the annotations (not evaluated): importing typing or collections.abc would cost the
# hot path of `projctl status --json` more than this module.
Callable = Iterable = object

# JSON must escape the quote, the backslash and the control characters; nothing else.
_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r",
                 ord("\t"): "\\t", ord("\b"): "\\b", ord("\f"): "\\f"})


def dumps(value: object) -> str:
    out: list[str] = []
    _write(value, out, "\n")
    return "".join(out)


def stream(head: dict, key: str, pages: Iterable[list], tail: Callable[[], dict],
           write: Callable[[str], object]) -> None:
    """Write `{**head, key: [every item of every page], **tail()}` exactly as dumps would,
    a page at a time: a list too long to hold whole (`projctl log --json`) never is."""
    out: list[str] = []
    separator = "{\n  "
    for name, value in head.items():
        out.append(f'{separator}"{str(name).translate(_ESCAPES)}": ')
        _write(value, out, "\n  ")
        separator = ",\n  "
    out.append(f'{separator}"{str(key).translate(_ESCAPES)}": ')
    write("".join(out))
    opening = "[\n    "
    for page in pages:
        for item in page:
            chunk = [opening]
            _write(item, chunk, "\n    ")
            write("".join(chunk))
            opening = ",\n    "
    out = ["[]" if opening.startswith("[") else "\n  ]"]
    for name, value in tail().items():
        out.append(f',\n  "{str(name).translate(_ESCAPES)}": ')
        _write(value, out, "\n  ")
    out.append("\n}")
    write("".join(out))


def _write(value: object, out: list[str], newline: str) -> None:
    if isinstance(value, str):
        out.append(f'"{value.translate(_ESCAPES)}"')
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = newline + "  "
        separator = "{" + inner
        for key, item in value.items():
            out.append(f'{separator}"{str(key).translate(_ESCAPES)}": ')
            _write(item, out, inner)
            separator = "," + inner
        out.append(newline + "}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        inner = newline + "  "
        separator = "[" + inner
        for item in value:
            out.append(separator)
            _write(item, out, inner)
            separator = "," + inner
        out.append(newline + "]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON")


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)
