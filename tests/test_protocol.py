"""The wire format: minipack agrees with msgspec, requests fit the schema, frames are bounded."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from projctl_client import frames, git, minipack
from projctl_client.connection import request
from projctl_client.protocol import (
    PROTOCOL_VERSION,
    Checkout,
    CheckoutView,
    DaemonInfo,
    Ping,
    ProjectView,
    Request,
    Shutdown,
    StateInfo,
    Status,
    StatusView,
)

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False) | st.text() | st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(), inner, max_size=20),
    max_leaves=60,
)


@given(values)
def test_minipack_encodes_what_msgspec_decodes(value: object) -> None:
    assert msgspec.msgpack.decode(minipack.encode(value)) == value


@given(values)
def test_minipack_decodes_what_msgspec_encodes(value: object) -> None:
    assert minipack.decode(msgspec.msgpack.encode(value)) == value


@given(values)
def test_minipack_writes_the_same_bytes_as_msgspec(value: object) -> None:
    assert minipack.encode(value) == msgspec.msgpack.encode(value)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "truncated"),
        (b"\x92\x01", "truncated"),
        (b"\xda\x00\x10abc", "truncated"),
        (b"\x01\x02", "trailing"),
        (b"\xd4\x01\x00", "not part of the protocol"),  # fixext 1
        (b"\xc1", "not part of the protocol"),  # never used
        (b"\xa2\xff\xfe", "UTF-8"),
        (b"\x91" * 100 + b"\x00", "deeply"),
        (b"\x81\x90\x00", "hashable"),
    ],
)
def test_minipack_refuses_what_is_not_one_msgpack_object(data: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        minipack.decode(data)


def test_minipack_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(TypeError, match="set"):
        minipack.encode({1, 2})
    with pytest.raises(OverflowError):
        minipack.encode(2**64)


def test_client_requests_decode_into_the_schema(tmp_path) -> None:
    decoder = msgspec.msgpack.Decoder(Request)
    checkout = {"root": str(tmp_path), "branch": "main", "head": "ab" * 20}
    assert decoder.decode(minipack.encode(request("ping"))) == Ping()
    assert decoder.decode(minipack.encode(request("shutdown"))) == Shutdown()
    status = decoder.decode(minipack.encode(request("status", checkout=checkout)))
    assert status == Status(checkout=Checkout(**checkout))
    assert status.protocol == PROTOCOL_VERSION
    assert decoder.decode(minipack.encode(request("status", checkout=None))).checkout is None
    # What `projctl status` sends for its text, as hotpath builds it.
    text = {"output": "short", "tickets_per_status": 5, "width": 80, "colours": True,
            "links": False, "home": str(tmp_path), "project": "web"}
    assert decoder.decode(minipack.encode(request("status", checkout=checkout, **text))) == \
        Status(checkout=Checkout(**checkout), **text)
    assert decoder.decode(minipack.encode(request("status", output="json", project=None))) \
        == Status(output="json")
    with pytest.raises(msgspec.ValidationError, match="width"):
        decoder.decode(minipack.encode(request("status", width=5)))


def test_a_checkout_the_client_finds_fits_the_schema(tmp_path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/feature/x\n")
    found = git.find_checkout(str(tmp_path))
    assert msgspec.convert(found, Checkout) == Checkout(str(tmp_path), "feature/x", None)


def test_the_status_view_reaches_the_client_as_its_builtins() -> None:
    info = DaemonInfo(version="0.1.0", protocol=1, pid=7, started_at=1.5, config_path="/c",
                      config_loaded_at=1.5, socket_path="/s", state_path="/d")
    here = CheckoutView(root="/r", branch=None, head="f" * 40, project="p",
                        first_seen_at=1.0, last_seen_at=2.0)
    view = StatusView(generated_at=3.0, daemon=info, checkout=here,
                      projects=[ProjectView(name="p", paths=["/r"], checkouts=[here])],
                      state=StateInfo(path="/d", schema_version=1, created_at=0.5,
                                      checkouts_known=1))
    assert minipack.decode(msgspec.msgpack.encode(view)) == msgspec.to_builtins(view)


def test_frames_over_the_limit_are_refused_from_the_header() -> None:
    assert frames.body_length(frames.frame(b"x" * 10)[:4]) == 10
    with pytest.raises(frames.FrameTooLarge):
        frames.body_length(b"\xff\xff\xff\xff")
    with pytest.raises(frames.FrameTooLarge):
        frames.frame(b"x" * (frames.MAX_FRAME + 1))
