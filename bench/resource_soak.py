"""Resource soak: hours of polling and team sync on a virtual clock, with and without compaction.

Run it from the repository root with the dev virtualenv's interpreter:

    .venv/bin/python bench/resource_soak.py [--hours H] [--step S] [--window-hours W]
                                            [--every E] [--teammates N]

The day is projctld/sandbox/soak.py's: three upstreams that change at every poll (CI moving,
a change request opening every few polls under a cached URL of its own), this device and
N teammates recording notes, edits, deployments, branches and workflow events through an
in-process hub, one workflow run with output an hour, polls as often as an active user gets
them. Time is compressed by ticks of S virtual seconds run back to back; the figure printed is
virtual seconds per real second.

Each variant runs in a child process of its own, so that its peak RSS (VmHWM) is its own:
first without compaction (the reference), then with compaction every hour and a retention of W
hours for events, runs and cached replies. With the default 30 days a day would compact
nothing: W hours scaled down shows in one day the steady state that weeks reach. Every E hours
a line shows the database and WAL sizes (the WAL column is its peak since the line before),
rows per table, and VmRSS / VmHWM; the compacted variant's lines come right after a
compaction. Then a comparison of the two at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import anyio

from projctld import logging as logs
from projctld.config import RetentionConfig
from projctld.sandbox.soak import HOUR, Soak

TABLES = ("events", "deployments", "notes", "branches", "snapshots", "http_cache",
          "workflow_runs", "checkouts")
HEADER = ("  hour   db KiB  WAL KiB  events  deploy  notes  branch  snaps  http  runs  chk"
          "  RSS MiB  HWM MiB")


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise SystemExit(f"error: no {field} in /proc/self/status")


async def soak_variant(args: argparse.Namespace) -> dict:
    """Run one variant in this process and return its figures at the end."""
    window_days = args.window_hours / 24
    retention = RetentionConfig(events_days=window_days, runs_days=window_days,
                                http_cache_days=window_days, interval=HOUR) \
        if args.variant == "on" else None
    peak_wal = 0
    next_line = args.every * HOUR
    with tempfile.TemporaryDirectory(prefix="pjsoak", dir="/tmp") as root:
        soak = Soak(root, retention=retention, step=args.step, teammates=args.teammates)
        await soak.start()

        def line(soak: Soak) -> str:
            db, _ = soak.file_sizes()
            rows = soak.rows()
            counts = "".join(f"{rows.get(table, 0):>{width}}" for table, width in
                             zip(TABLES, (8, 8, 7, 8, 7, 6, 6, 5), strict=True))
            return (f"{soak.hours:6.1f} {db / 1024:8.0f} {peak_wal / 1024:8.0f}{counts}"
                    f" {_status_mib('VmRSS'):8.1f} {_status_mib('VmHWM'):8.1f}")

        def tick(soak: Soak) -> None:
            nonlocal peak_wal, next_line
            peak_wal = max(peak_wal, soak.file_sizes()[1])
            if soak.clock.now - soak.started_at >= next_line:
                print(line(soak), flush=True)
                next_line += args.every * HOUR
                peak_wal = 0

        print(HEADER, flush=True)
        started = time.perf_counter()
        try:
            await soak.run(args.hours, every=args.step, on_sample=tick)
            elapsed = time.perf_counter() - started
            db, wal = soak.file_sizes()
            figures = {"db": db, "wal": wal, "rows": soak.rows(), "polls": soak.polls,
                       "recorded": sum(soak.recorded.values()), "elapsed": elapsed,
                       "rss": _status_mib("VmRSS"), "hwm": _status_mib("VmHWM")}
        finally:
            await soak.stop()
    print(f"{figures['polls']:,} polls and {figures['recorded']:,} events in "
          f"{args.hours:g} virtual hours took {elapsed:.1f} s: "
          f"{args.hours * HOUR / elapsed:,.0f} virtual seconds per second", flush=True)
    return figures


def run_child(variant: str, argv: list[str]) -> dict:
    """Run one variant in a fresh interpreter; its lines pass through, its figures come back."""
    child = subprocess.run([sys.executable, __file__, *argv, "--variant", variant],
                           stdout=subprocess.PIPE, text=True, check=True)
    *lines, result = child.stdout.splitlines()
    print("\n".join(lines))
    return json.loads(result)


def compare(off: dict, on: dict) -> None:
    print("\n== at the end: without compaction / with compaction ==")
    rows = [("database file, KiB", off["db"] / 1024, on["db"] / 1024),
            ("WAL, KiB", off["wal"] / 1024, on["wal"] / 1024),
            ("database + WAL, KiB", (off["db"] + off["wal"]) / 1024,
             (on["db"] + on["wal"]) / 1024)]
    rows += [(f"rows in {table}", off["rows"].get(table, 0), on["rows"].get(table, 0))
             for table in TABLES]
    rows += [("VmRSS, MiB", off["rss"], on["rss"]), ("VmHWM, MiB", off["hwm"], on["hwm"])]
    for name, without, with_ in rows:
        ratio = f"{without / with_:6.2f}x" if with_ else "      -"
        print(f"{name:<24}{without:>12,.1f}{with_:>12,.1f}  {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="virtual hours to run")
    parser.add_argument("--step", type=float, default=60.0,
                        help="virtual seconds per tick (the compression)")
    parser.add_argument("--window-hours", type=float, default=6.0,
                        help="retention of events, runs and cached replies when compacting")
    parser.add_argument("--every", type=float, default=3.0, help="hours between lines")
    parser.add_argument("--teammates", type=int, default=3)
    parser.add_argument("--variant", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logs.configure("warning", "console")  # the in-process poller would log every poll
    if args.variant:
        print(json.dumps(anyio.run(soak_variant, args)))
        return
    argv = sys.argv[1:]
    print(f"== {args.hours:g} h without compaction (reference) ==")
    off = run_child("off", argv)
    print(f"\n== {args.hours:g} h with compaction every hour, {args.window_hours:g} h retention ==")
    on = run_child("on", argv)
    compare(off, on)


if __name__ == "__main__":
    main()
