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
