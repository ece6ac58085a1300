"""The client's JSON writer writes exactly what `json.dumps(indent=2, ensure_ascii=False)` does."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from projctl_client import jsonout

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                      max_size=4),
    max_leaves=30,
)


@given(values)
def test_equal_to_the_json_module(value: object) -> None:
    assert jsonout.dumps(value) == json.dumps(value, indent=2, ensure_ascii=False)


def test_control_characters_quotes_and_non_ascii() -> None:
    value = {"k\"ey": ["a\\b\n\t\x00\x1f", "é ✓ 日本", -0.0, 1e300, float("inf")]}
    assert jsonout.dumps(value) == json.dumps(value, indent=2, ensure_ascii=False)


@given(st.dictionaries(st.text(), values, max_size=3), st.lists(st.lists(values, max_size=3),
                                                                max_size=4),
       st.dictionaries(st.text(), values, max_size=2))
def test_a_list_written_page_by_page_is_what_dumps_writes(head: dict, pages: list[list],
                                                          tail: dict) -> None:
    head.pop("events", None)
    tail = {key: value for key, value in tail.items() if key not in head and key != "events"}
    written: list[str] = []
    jsonout.stream(head, "events", pages, lambda: tail, written.append)
    whole = {**head, "events": [item for page in pages for item in page], **tail}
    assert "".join(written) == jsonout.dumps(whole)
