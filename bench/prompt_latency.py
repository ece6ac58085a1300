"""The prompt: whole-process `projctl prompt` against bare python, and the zero-process snippets.

Run it from the repository root with the dev virtualenv's interpreter:

    .venv/bin/python bench/prompt_latency.py [--rounds N] [--renders N] [--editable]

1. In a throw-away sandbox and (unless --editable) a throw-away virtualenv with projctl
   installed as users install it, a real `projctld run`; then `projctl prompt` (the installed
   script), `projctl status` and a bare `python -c pass` of the same interpreter, interleaved.
   Goal: `projctl prompt` at most 1.5x bare python.
2. The `projctl shell-init` snippets of bash, zsh and fish: processes spawned per prompt,
   counted with strace (goal 0), and the time of one prompt render in bash, zsh and fish (a loop
   of renders in one shell, less the same loop calling an empty function).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time

from client_latency import (
    BASELINE,
    ClientError,
    compile_client,
    install,
    make_sandbox,
    percentile,
    run_checked,
    start_daemon,
    stop_daemon,
    time_process,
)

GOAL_RATIO = 1.5
SHELLS = {
    "bash": (["bash", "--norc", "--noprofile", "-c"], "for ((i = 0; i < {n}; i++)); do {f}; done"),
    "zsh": (["zsh", "-f", "-c"], "for ((i = 0; i < {n}; i++)); do {f}; done"),
    # Not `seq`: it is a process of its own.
    "fish": (["fish", "--no-config", "-c"],
             "set i 0; while test $i -lt {n}; set i (math $i + 1); {f}; end"),
}
EMPTY = {"bash": "__empty() { :; }", "zsh": "__empty() { : }", "fish": "function __empty; end"}


def bench_processes(python: str, box, rounds: int) -> None:  # type: ignore[no-untyped-def]
    projctl = os.path.join(os.path.dirname(python), "projctl")
    argv = {BASELINE: [python, "-c", "pass"], "projctl prompt": [projctl, "prompt"],
            "projctl status": [projctl, "status"]}
    names = list(argv)
    for name in names:  # warm-up
        time_process(argv[name], box)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(time_process(argv[name], box))
    bare = statistics.median(samples[BASELINE])
    print(f"{'command':<20}{'median ms':>10}{'p90 ms':>9}{'x bare':>8}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<20}{median:>10.1f}{percentile(values, 0.9):>9.1f}{median / bare:>8.2f}")
    ratio = statistics.median(samples["projctl prompt"]) / bare
    print(f"goal: projctl prompt <= {GOAL_RATIO}x bare python -> {ratio:.2f}x, "
          f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}")


def snippet_file(python: str, box, shell: str) -> str:  # type: ignore[no-untyped-def]
    projctl = os.path.join(os.path.dirname(python), "projctl")
    path = os.path.join(box.root, f"init.{shell}")
    with open(path, "w") as handle:
        handle.write(run_checked([projctl, "shell-init", shell], box).stdout)
    return path


def count_spawned(shell: str, snippet: str, box, renders: int) -> int:  # type: ignore[no-untyped-def]
    strace = shutil.which("strace")
    if strace is None:
        raise SystemExit("error: strace is needed to count processes (apt-get install strace)")
    argv, loop = SHELLS[shell]
    trace = os.path.join(box.root, "trace")
    script = f"source {snippet}; {loop.format(n=renders, f='__projctl_prompt')}"
    run_checked([strace, "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork,execve", "-o", trace,
                 *argv, script], box)
    with open(trace) as handle:
        calls = [line for line in handle if "resumed" not in line]
    # The shell's own exec is not spawned by the prompt; threads are not processes.
    return len([line for line in calls[1:] if "CLONE_THREAD" not in line])


def render_micros(shell: str, snippet: str, box, renders: int) -> float:  # type: ignore[no-untyped-def]
    argv, loop = SHELLS[shell]

    def run(function: str) -> float:
        script = f"source {snippet}; {EMPTY[shell]}; {loop.format(n=renders, f=function)}"
        started = time.perf_counter()
        run_checked([*argv, script], box)
        return time.perf_counter() - started

    per_render = []
    for _ in range(5):
        per_render.append((run("__projctl_prompt") - run("__empty")) / renders * 1e6)
    return statistics.median(per_render)


def bench_snippets(python: str, box, renders: int) -> None:  # type: ignore[no-untyped-def]
    segment = run_checked([os.path.join(os.path.dirname(python), "projctl"), "prompt"], box)
    print(f"segment in the demo checkout: {segment.stdout.strip()!r}")
    for shell in SHELLS:
        if shutil.which(shell) is None:
            print(f"{shell:<5} not installed; skipped")
            continue
        snippet = snippet_file(python, box, shell)
        spawned = count_spawned(shell, snippet, box, 100)
        micros = render_micros(shell, snippet, box, renders)
        print(f"{shell:<5} processes spawned per prompt: {spawned / 100:g} (goal 0: "
              f"{'met' if spawned == 0 else 'NOT met'}); one render {micros:,.0f} µs "
              f"(median of 5 loops of {renders:,})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--renders", type=int, default=2000)
    parser.add_argument("--editable", action="store_true",
                        help="time this interpreter's (editable) install instead of a fresh one")
    args = parser.parse_args()
    box = make_sandbox()
    try:
        python = sys.executable if args.editable else install(box)
        compile_client(python, box)
        with open(os.path.join(box.root, "config", "projctl", "config.toml"), "a") as handle:
            handle.write('\n[prompt]\nformat = "{project}[ {ref}][ {ci}][ ↑{waiting}]"\n')
        daemon = start_daemon(python, box)
        try:
            print(f"\n== whole processes, {args.rounds} rounds, cwd = the demo checkout ==")
            bench_processes(python, box, args.rounds)
            print("\n== zero-process prompts: projctl shell-init snippets ==")
            bench_snippets(python, box, args.renders)
        finally:
            stop_daemon(daemon)
    except ClientError as exc:
        raise SystemExit(f"error: {exc.message}") from None
    finally:
        shutil.rmtree(box.root, ignore_errors=True)


if __name__ == "__main__":
    main()
