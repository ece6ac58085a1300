"""Schemathesis against a real hub for longer: thousands of requests per operation, on SQLite and
PostgreSQL, counted by operation, mode and status, with every failure the checks find.

Run it from the repository root with the dev virtualenv's interpreter:

    .venv/bin/python bench/hub_fuzz.py [--examples N] [--seed N] [--postgres [DSN]]

It runs what tests/test_hub_schema_fuzz.py runs (the same requests and checks: no 5xx, and the
status, content type, headers and body each as the hub's /v1/openapi.json says), with far more
examples and against a `projctld hub serve` process: first on a SQLite file, then on
PostgreSQL, in a throw-away database `projctl_fuzz` on the server of --postgres (by default
the local one; left out with a note when that cannot be reached and --postgres was not given).
For each it prints the requests of every operation and mode by status, and each distinct
failure with one request that shows it; it exits with 1 when there was any.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator

import psycopg
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import APIOperation, GenerationMode
from schemathesis.core.failures import Failure
from sync_throughput import Hub

# The requests and checks are the test's own, so that this bench runs exactly what it runs.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
from test_hub_schema_fuzz import Request, load, operations, requests

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DATABASE = "projctl_fuzz"
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


class Tally:
    """Replies by (operation, mode) and status; failures by (operation, code and title)."""

    def __init__(self) -> None:
        self.replies: Counter[tuple[str, str, int]] = Counter()
        self.failures: Counter[tuple[str, str]] = Counter()
        self.shown: dict[tuple[str, str], str] = {}

    def run(self, operation: APIOperation, mode: GenerationMode, tokens: list[str],
            examples: int, seed_value: int) -> None:
        @seed(seed_value)
        @settings(max_examples=examples, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(request=requests(operation, mode, tokens))
        def one(request: Request) -> None:
            response = request.send()
            self.replies[operation.label, mode.value, response.status_code] += 1
            # Counted rather than raised: Hypothesis would stop at the first and shrink it.
            try:
                request.check(response)
            except* Failure as found:
                for failure in found.exceptions:
                    key = (operation.label, f"{failure.code} {failure.title}")
                    self.failures[key] += 1
                    self.shown.setdefault(key, str(found))

        one()


def token(hub: Hub, user: str, project: str, *, write: bool) -> str:
    args = [sys.executable, "-m", "projctld", "hub", "token", "create", "--user", user,
            "--project", project, "--database", hub.database]
    return subprocess.run([*args, "--write"] if write else args, capture_output=True, text=True,
                          check=True).stdout.strip()


def fuzz(kind: str, database: str, examples: int, seed_value: int) -> int:
    """Fuzz a hub on `database`; prints its figures and returns how many failures it found."""
    print(f"\n== {kind} hub: {examples:,} examples per operation and mode, seed {seed_value} ==")
    hub = Hub(database)
    tally = Tally()
    try:
        # A writer of every project, and a reader of one (the test's two tokens).
        tokens = [token(hub, "fuzz", "*", write=True), token(hub, "reader", "demo", write=False)]
        started = time.perf_counter()
        for operation in operations(load(hub.url)):
            for mode in MODES:
                tally.run(operation, mode, tokens, examples, seed_value)
        elapsed = time.perf_counter() - started
    finally:
        hub.stop()
    statuses = sorted({status for _, _, status in tally.replies})
    rows = sorted({(label, mode) for label, mode, _ in tally.replies})
    print(f"{'operation':<20}{'mode':<10}{'requests':>9}" + "".join(f"{s:>7}" for s in statuses))
    for label, mode in rows:
        counts = [tally.replies[label, mode, status] for status in statuses]
        print(f"{label:<20}{mode:<10}{sum(counts):>9,}" + "".join(f"{c:>7,}" for c in counts))
    total = sum(tally.replies.values())
    print(f"{total:,} requests in {elapsed:.1f} s ({total / elapsed:,.0f}/s)")
    print(f"failures: {sum(tally.failures.values())}")
    for (label, what), count in sorted(tally.failures.items()):
        print(f"\n-- {label}: {what} ({count}x); the first:\n{tally.shown[label, what]}")
    return sum(tally.failures.values())


@contextlib.contextmanager
def postgres_database(dsn: str) -> Iterator[str]:
    """A fresh database DATABASE on the server of `dsn`, dropped afterwards; its URL."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    try:
        yield dsn.rsplit("/", 1)[0] + f"/{DATABASE}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000,
                        help="examples per operation and generation mode (default 1000)")
    parser.add_argument("--seed", type=int, default=random.randrange(2**32),
                        help="Hypothesis' seed, to repeat a run (default: a new one)")
    parser.add_argument("--postgres", nargs="?", const=os.environ.get(
        "PROJCTL_TEST_POSTGRES_DSN", LOCAL_POSTGRES), help="PostgreSQL's DSN (default: "
        "$PROJCTL_TEST_POSTGRES_DSN or the local server, left out if unreachable)")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="pjfuzz", dir="/tmp")
    try:
        failures = fuzz("sqlite", f"sqlite:///{root}/hub.db", args.examples, args.seed)
        dsn = args.postgres or os.environ.get("PROJCTL_TEST_POSTGRES_DSN", LOCAL_POSTGRES)
        try:
            with postgres_database(dsn) as url:
                failures += fuzz("postgresql", url, args.examples, args.seed)
        except psycopg.OperationalError as exc:
            if args.postgres:
                raise SystemExit(f"error: cannot reach PostgreSQL at {dsn}: {exc}") from None
            print(f"\n== postgresql hub: left out, {dsn} cannot be reached (pass --postgres "
                  "DSN to name another) ==")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if failures:
        raise SystemExit(f"\nerror: {failures} failures")


if __name__ == "__main__":
    main()
