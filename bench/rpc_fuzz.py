"""Fuzz a real projctld for longer: 100,000 random, mutated and sequenced frames, replies counted.

Run it from the repository root with the dev virtualenv's interpreter:

    .venv/bin/python bench/rpc_fuzz.py [--frames N] [--seed N]

It throws what tests/test_rpc_fuzz.py throws (the frames and the oracle are in
tests/rpc_fuzzing.py), far more of it, at a `projctld run` started in a throw-away XDG sandbox
(under $TMPDIR) with the test's projects and workflows: each connection gets a stream of random
bytes, one mutated request or a sequence of frames, then its end. It prints frames per second
(Hypothesis drawing the frames included), the replies by kind, how connections ended, every
broken promise with one example, the daemon's VmRSS before and after and its peak (VmHWM), and
whether it still answers a ping. It exits with 1 when a promise was broken or the daemon died.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter

from client_latency import (
    ClientError,
    Sandbox,
    connect,
    daemon_log,
    request,
    start_daemon,
    stop_daemon,
)
from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st

# The frames and the oracle are the test's own, so that this bench throws exactly what it does.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
import rpc_fuzzing as fuzz

# Connections per Hypothesis run: each run starts its generation afresh, from its own seed.
BATCH = 2000


class Tally:
    """What came back, over every connection."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.frames = 0
        self.connections = 0
        self.harmful = 0
        self.replies: Counter[str] = Counter()
        self.endings: Counter[str] = Counter()
        self.problems: Counter[str] = Counter()
        self.shown: dict[str, str] = {}
        self.talking = 0.0  # seconds spent sending to and reading from the daemon
        self.slowest = 0.0
        self.slowest_frames = ""

    def throw(self, path: str, frames: list[bytes]) -> None:
        frames = frames[:self.budget - self.frames]
        if not frames:
            return
        stream = b"".join(frames)
        expected = fuzz.plan(stream)
        if not expected.harmless:
            self.harmful += 1
            assume(False)
        started = time.perf_counter()
        try:
            received = fuzz.converse(path, stream)
        except TimeoutError:
            received = None
        took = time.perf_counter() - started
        self.talking += took
        if took > self.slowest:
            self.slowest, self.slowest_frames = took, _describe(expected)
        self.frames += len(frames)
        self.connections += 1
        if received is None:
            self._problem(f"no end within {fuzz.TIMEOUT:g} s", expected)
            return
        outcome = fuzz.judge(expected, received)
        self.replies.update(outcome.kinds)
        self.endings[outcome.ending] += 1
        for problem in outcome.problems:
            self._problem(problem, expected)

    def _problem(self, problem: str, expected: fuzz.Plan) -> None:
        # Counted by their first words (the rest names the frame), one example kept of each.
        key = " ".join(problem.split()[:6])
        self.problems[key] += 1
        self.shown.setdefault(key, f"{problem}\n    frames: {_describe(expected)}")


def _describe(expected: fuzz.Plan) -> str:
    return "; ".join(e.describe() for e in expected.expected) + f" ({expected.ending})"


def streams(root: str) -> st.SearchStrategy[list[bytes]]:
    """The three kinds of connection in tests/test_rpc_fuzz.py, one picked per connection."""
    return st.one_of(fuzz.random_streams(), fuzz.mutated_frames(root).map(lambda f: [f]),
                     fuzz.sequences(root))


def run(tally: Tally, path: str, root: str, seed_value: int) -> None:
    batch = 0
    while tally.frames < tally.budget:
        @seed(seed_value + batch)
        @settings(max_examples=min(BATCH, tally.budget - tally.frames), database=None,
                  deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(frames=streams(root))
        def one(frames: list[bytes]) -> None:
            tally.throw(path, frames)

        one()
        batch += 1


def make_box() -> Sandbox:
    root = os.path.realpath(tempfile.mkdtemp(prefix="pjf"))
    env = {k: v for k, v in os.environ.items() if k not in ("PROJCTL_CONFIG", "PROJCTL_SOCKET")}
    env.update(XDG_CONFIG_HOME=os.path.join(root, "config"),
               XDG_STATE_HOME=os.path.join(root, "state"),
               XDG_RUNTIME_DIR=os.path.join(root, "run"), HOME=root, PROJCTL_NO_AUTOSTART="1")
    box = Sandbox(root, env)
    os.makedirs(os.path.join(root, "config", "projctl"))
    with open(os.path.join(root, "config", "projctl", "config.toml"), "w") as handle:
        handle.write('[daemon]\nlog_level = "warning"\n' + fuzz.daemon_config(root))
    return box


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def answers_ping(path: str) -> bool:
    """A well-behaved client on a fresh connection gets a pong."""
    try:
        with connect(path, timeout=10) as conn:
            return conn.call(request("ping"))["type"] == "pong"
    except ClientError:
        return False


def report(tally: Tally, seconds: float) -> None:
    print(f"frames: {tally.frames:,} on {tally.connections:,} connections in {seconds:.1f} s: "
          f"{tally.frames / seconds:,.0f} frames/s "
          f"({tally.talking:.1f} s of it talking to projctld, the rest drawing frames; "
          f"slowest connection {tally.slowest * 1000:.0f} ms)")
    print(f"  the slowest: {tally.slowest_frames}")
    if tally.harmful:
        print(f"  not sent: {tally.harmful:,} streams holding a Shutdown, a Doctor or a real "
              "RunStart (see rpc_fuzzing.Plan.harmless)")
    print(f"replies: {sum(tally.replies.values()):,}, by kind:")
    for kind, count in tally.replies.most_common():
        print(f"  {kind:<32}{count:>10,}")
    print("connections ended by:")
    for ending, label in (("eof", "the client, after its last frame (eof)"),
                          ("too_large", "projctld, after a frame over MAX_FRAME"),
                          ("truncated", "projctld, at a truncated frame")):
        print(f"  {label:<48}{tally.endings[ending]:>10,}")
    print(f"broken promises: {sum(tally.problems.values()):,}")
    for key, count in tally.problems.most_common():
        print(f"  {count:,} x {tally.shown[key]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000,
                        help="frames to send in all (default 100000)")
    parser.add_argument("--seed", type=int, default=20261121, help="Hypothesis seed")
    args = parser.parse_args()
    box = make_box()
    try:
        daemon = start_daemon(sys.executable, box)
        try:
            print(f"projctld pid {daemon.pid}, python {sys.version.split()[0]}, "
                  f"sandbox {box.root}, seed {args.seed}")
            rss, peak = fuzz.kib(daemon.pid, "VmRSS"), fuzz.kib(daemon.pid, "VmHWM")
            print(f"projctld before: VmRSS {mib(rss)}, VmHWM {mib(peak)}\n")
            tally = Tally(args.frames)
            started = time.perf_counter()
            run(tally, box.socket_path, box.root, args.seed)
            report(tally, time.perf_counter() - started)
            alive = daemon.poll() is None
            if alive:
                after, peak = fuzz.kib(daemon.pid, "VmRSS"), fuzz.kib(daemon.pid, "VmHWM")
                print(f"\nprojctld after: VmRSS {mib(after)} ({mib(after - rss)} more), "
                      f"VmHWM {mib(peak)}")
            up = alive and answers_ping(box.socket_path)
            print(f"projctld still up: {'yes, it answers a ping' if up else 'NO'}")
            if not up:
                print(daemon_log(box)[-4000:])
        finally:
            stop_daemon(daemon)
    finally:
        shutil.rmtree(box.root, ignore_errors=True)
    sys.exit(0 if up and not tally.problems else 1)


if __name__ == "__main__":
    main()
