"""Property: whatever frames a client throws at a live projctld, it answers as its server promises,
keeps serving, and keeps its memory (the frames and the oracle: tests/rpc_fuzzing.py)."""

from __future__ import annotations

import typing
from collections.abc import Callable

import pytest
import rpc_fuzzing as fuzz
from conftest import Sandbox
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from test_rpc_robustness import Daemon, projctld  # noqa: F401  (the fixture, used by name)

from projctl_client import protocol

# What the daemon's RSS may gain over one test's examples. It holds one frame (at most
# MAX_FRAME, 1 MiB) and one reply at a time here, so what stays is what the allocator keeps of
# freed megabyte buffers (glibc serves them from its heap once one has been freed, and trims
# that lazily), SQLite's page cache (2 MiB by default) over the events the examples record, and
# code run for the first time: under 3 MiB in practice. The mutated and sequence examples make
# the daemon read some 60 MiB of frames each, so one that kept every body it read grows by
# that much (tried: 55 and 64 MiB), several times this bound.
RSS_GROWTH_KIB = 16 * 1024
# Sized so that the three take well under a minute on a slow two-core machine, even a busy one.
EXAMPLES = {"random": 1500, "mutated": 2000, "sequences": 1000}


@pytest.fixture
def daemon(projctld: Callable[..., Daemon], sandbox: Sandbox) -> Daemon:  # noqa: F811
    """projctld with the projects and workflows that the fuzzed requests name."""
    return projctld(config=fuzz.daemon_config(sandbox.root))


def throw(daemon: Daemon, frames: st.SearchStrategy[list[bytes]], examples: int) -> None:
    """Throw `examples` streams of `frames` at the daemon, one connection each; each must be
    answered as rpc_fuzzing.plan says. Then it must answer a ping and not have grown much."""
    daemon.ping_ok()
    before = daemon.rss_kib()
    recent: list[bytes] = []  # a death may come a little after the stream that caused it

    def failure(problem: str) -> str:
        if daemon.process.poll() is None:
            return f"{problem}\nprojctld log:\n{daemon.log()}"
        return (f"{problem}\nprojctld has died, after one of these streams:\n"
                + "\n".join(fuzz.clip(repr(s)) for s in recent) + f"\nits log:\n{daemon.log()}")

    # No shrinking: an example's outcome may rest on what earlier ones did to the daemon (events
    # recorded, checkouts seen, a death a moment later), so shrinking would chase flakes, for
    # minutes over megabyte frames. The assertion names the frame and the reply at fault.
    @settings(max_examples=examples, deadline=None, phases=[Phase.reuse, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(frames=frames)
    def one_connection(frames: list[bytes]) -> None:
        stream = b"".join(frames)
        expected = fuzz.plan(stream)
        assume(expected.harmless)
        recent[:] = [*recent[-2:], stream]
        try:
            received = fuzz.converse(daemon.path, stream)
        except OSError as exc:  # refused: it died; timed out: it hangs
            raise AssertionError(failure(f"talking to projctld: {exc!r}")) from exc
        outcome = fuzz.judge(expected, received)
        assert not outcome.problems, failure("\n".join(outcome.problems))

    one_connection()
    daemon.ping_ok()
    growth = daemon.rss_kib() - before
    print(f"projctld VmRSS grew {growth} KiB over {examples} examples")
    assert growth < RSS_GROWTH_KIB, f"projctld grew {growth} KiB over {examples} examples"


def test_every_request_type_is_fuzzed_or_excluded_for_a_reason() -> None:
    fuzzed = set(typing.get_args(protocol.Request)) - set(fuzz.EXCLUDED)
    assert fuzz.fuzzed_request_types() == fuzzed
    assert set(fuzz.ANSWERS) == fuzzed


def test_random_byte_streams(daemon: Daemon) -> None:
    throw(daemon, fuzz.random_streams(), EXAMPLES["random"])


def test_mutated_requests(daemon: Daemon, sandbox: Sandbox) -> None:
    throw(daemon, fuzz.mutated_frames(sandbox.root).map(lambda frame: [frame]),
          EXAMPLES["mutated"])


def test_sequences_of_frames_on_one_connection(daemon: Daemon, sandbox: Sandbox) -> None:
    throw(daemon, fuzz.sequences(sandbox.root), EXAMPLES["sequences"])
