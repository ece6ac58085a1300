"""Measures how long `projctl status`/`ping` take as whole processes and as RPCs to projctld.

Run it from the repository root with the dev virtualenv's interpreter:

    .venv/bin/python bench/client_latency.py [--rounds N] [--editable]

It builds a throw-away sandbox (XDG directories, a config with one project, a git repository)
and, unless --editable, a throw-away virtualenv with projctl installed the way users install it
(`pip install .`, about half a minute): an editable install loads a setuptools finder at every
interpreter start (~9 ms of pathlib, re, urllib...), which inflates the bare baseline and hides
the client's real cost. It starts `projctld run` from that environment, times whole `projctl`
processes against a bare `python -c pass` of the same interpreter,
shows where the client's import time goes, then times 10,000 status and ping round trips over
one connection and reports the daemon's memory before and after. Nothing outside the sandbox
is touched except the client's bytecode cache (see compile_client).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from projctl_client.connection import ClientError, Connection, connect, request

GOAL_RATIO = 2.5
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
RPC_COUNT = 10_000
IMPORTTIME_RUNS = 5
IMPORTTIME_TOP = 8
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = "python -c pass"


def commands(python: str) -> dict[str, list[str]]:
    """The timed commands; `projctl` is pip's console script next to `python`."""
    projctl = os.path.join(os.path.dirname(python), "projctl")
    return {
        BASELINE: [python, "-c", "pass"],
        "projctl status": [projctl, "status"],
        "projctl status --json": [projctl, "status", "--json"],
        "projctl ping": [projctl, "ping"],
    }


@dataclass
class Sandbox:
    """A private root with XDG directories, a config naming one project and its git checkout."""

    root: str
    env: dict[str, str]

    @property
    def demo(self) -> str:
        return os.path.join(self.root, "demo")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.root, "run", "projctl", "projctld.sock")

    @property
    def daemon_log(self) -> str:
        return os.path.join(self.root, "projctld.log")


def make_sandbox() -> Sandbox:
    # realpath: the client reports os.getcwd(), which never contains symlinks.
    root = os.path.realpath(tempfile.mkdtemp(prefix="pjb", dir="/tmp"))
    env = dict(os.environ)
    for name in ("PROJCTL_CONFIG", "PROJCTL_SOCKET", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    env.update(
        XDG_CONFIG_HOME=os.path.join(root, "config"),
        XDG_STATE_HOME=os.path.join(root, "state"),
        XDG_RUNTIME_DIR=os.path.join(root, "run"),
        HOME=root,
        PROJCTL_NO_AUTOSTART="1",  # a client must never start a second, unmanaged daemon
    )
    box = Sandbox(root, env)
    config_dir = os.path.join(root, "config", "projctl")
    os.makedirs(config_dir)
    with open(os.path.join(config_dir, "config.toml"), "w") as handle:
        handle.write(f'[projects.demo]\npaths = ["{box.demo}"]\n')
    os.makedirs(box.demo)
    git = ["git", "-C", box.demo]
    run_checked([*git, "init", "-q", "-b", "main"], box)
    run_checked(
        [*git, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "--allow-empty", "-qm", "x"],
        box,
    )
    return box


def run_in_demo(argv: list[str], box: Sandbox) -> subprocess.CompletedProcess[str]:
    """Run a command in the demo repository with the sandbox environment, output captured."""
    return subprocess.run(argv, cwd=box.demo, env=box.env, capture_output=True, text=True)


def check_exit(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Abort the benchmark with the command's output unless it exited 0."""
    if result.returncode != 0:
        raise SystemExit(
            f"error: `{' '.join(result.args)}` exited with {result.returncode}\n"
            f"stdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}"
        )
    return result


def run_checked(argv: list[str], box: Sandbox) -> subprocess.CompletedProcess[str]:
    return check_exit(run_in_demo(argv, box))


def install(box: Sandbox) -> str:
    """A virtualenv in the sandbox with projctl installed from this checkout; its python."""
    venv = os.path.join(box.root, "venv")
    print(f"installing projctl into {venv} (pip install {REPO}) ...", flush=True)
    run_checked([sys.executable, "-m", "venv", venv], box)
    python = os.path.join(venv, "bin", "python")
    run_checked([python, "-m", "pip", "install", "-q", REPO], box)
    return python


def compile_client(python: str, box: Sandbox) -> None:
    """Write the client's .pyc files so that no timed run pays for compiling them.

    This environment sets PYTHONDONTWRITEBYTECODE=1 and an editable install never compiles
    anything, whereas `pip install` of a wheel compiles every module: without this, each timed
    `projctl` would recompile the client from source and look several times slower than it is
    for users. The sandbox environment also drops PYTHONDONTWRITEBYTECODE for the same reason.
    """
    code = "import os, projctl_client; print(os.path.dirname(projctl_client.__file__))"
    package_dir = run_checked([python, "-c", code], box).stdout.strip()
    run_checked([python, "-m", "compileall", "-q", package_dir], box)


def start_daemon(python: str, box: Sandbox) -> subprocess.Popen[bytes]:
    """Start `projctld run` in the sandbox and return once its socket accepts connections."""
    with open(box.daemon_log, "wb") as log_file:
        process = subprocess.Popen(
            [python, "-m", "projctld", "run"], env=box.env, stdout=log_file, stderr=log_file
        )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = daemon_log(box)
            raise SystemExit(f"error: projctld exited with {process.returncode}:\n{log}")
        try:
            connect(box.socket_path, timeout=5).close()
            return process
        except ClientError:
            time.sleep(0.02)
    stop_daemon(process)
    log = daemon_log(box)
    raise SystemExit(f"error: projctld was not ready within {READY_TIMEOUT:g} s:\n{log}")


def daemon_log(box: Sandbox) -> str:
    with open(box.daemon_log, errors="replace") as handle:
        return handle.read()


def stop_daemon(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"projctld ignored SIGTERM for {STOP_TIMEOUT:g} s; killing it")
            process.kill()
            process.wait()
    print(f"projctld stopped with exit code {process.returncode}")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise SystemExit(f"error: no VmRSS in /proc/{pid}/status")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (fraction in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def time_process(argv: list[str], box: Sandbox) -> float:
    """Wall-clock milliseconds of one whole process run, which must exit 0."""
    started = time.perf_counter()
    result = run_in_demo(argv, box)
    elapsed = time.perf_counter() - started
    check_exit(result)
    return elapsed * 1000


def time_commands(python: str, box: Sandbox, rounds: int) -> dict[str, list[float]]:
    """Run every command once per round, rotating the order each round; one untimed warm-up."""
    timed = commands(python)
    names = list(timed)
    for name in names:
        time_process(timed[name], box)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(time_process(timed[name], box))
    return samples


def print_latency_table(python: str, samples: dict[str, list[float]]) -> None:
    baseline = statistics.median(samples[BASELINE])
    print(f"{'command':<24}{'median ms':>10}{'p90 ms':>9}{'x bare':>8}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(
            f"{name:<24}{median:>10.1f}{percentile(values, 0.9):>9.1f}{median / baseline:>8.2f}"
        )
    ratio = statistics.median(samples["projctl status"]) / baseline
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    print(f"goal: projctl status <= {GOAL_RATIO}x bare python -> {ratio:.2f}x, {verdict}")
    if python == sys.executable and any(name.startswith("__editable__") for name in sys.modules):
        print(
            "note: this interpreter imports a setuptools editable-install finder at every start\n"
            "      (under `site` below); bare python pays it too, so the ratios here are lower\n"
            "      than they would be for a wheel install"
        )


@dataclass
class ImportEntry:
    name: str
    depth: int  # nesting level: 0 unless another module's import triggered this one
    cumulative_us: int


def import_times(python: str, box: Sandbox) -> list[ImportEntry]:
    """The `-X importtime` entries of one `projctl status`, in the order imports finished."""
    argv = [python, "-X", "importtime", "-m", "projctl_client", "status"]
    entries = []
    for line in run_checked(argv, box).stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or not fields[1].strip().isdigit():
            continue  # other stderr output, or the column header
        indent = len(fields[2]) - len(fields[2].lstrip()) - 1
        entries.append(ImportEntry(fields[2].strip(), indent // 2, int(fields[1])))
    return entries


def startup_split(entries: list[ImportEntry]) -> tuple[int, int]:
    """Microseconds of top-level imports up to and including `site`, and of those after it."""
    top_level = [entry for entry in entries if entry.depth == 0]
    site_index = next(i for i, entry in enumerate(top_level) if entry.name == "site")
    before = sum(entry.cumulative_us for entry in top_level[: site_index + 1])
    return before, sum(entry.cumulative_us for entry in top_level[site_index + 1 :])


def print_import_times(python: str, box: Sandbox) -> None:
    runs = [import_times(python, box) for _ in range(IMPORTTIME_RUNS)]
    per_module: dict[str, list[int]] = {}
    for entry in (entry for run in runs for entry in run):
        per_module.setdefault(entry.name, []).append(entry.cumulative_us)
    medians = {name: statistics.median(values) for name, values in per_module.items()}
    top = sorted(medians.items(), key=lambda item: item[1], reverse=True)[:IMPORTTIME_TOP]
    print(
        f"python -X importtime -m projctl_client status: top cumulative imports "
        f"(median of {IMPORTTIME_RUNS} runs)"
    )
    for name, micros in top:
        print(f"  {micros / 1000:>6.2f} ms  {name}")
    splits = [startup_split(run) for run in runs]
    before = statistics.median(split[0] for split in splits) / 1000
    after = statistics.median(split[1] for split in splits) / 1000
    print(f"  top-level imports through site: {before:.2f} ms; after site: {after:.2f} ms")


def time_rpc(conn: Connection, message: dict[str, object]) -> list[int]:
    """Nanoseconds of RPC_COUNT sequential calls of `message` on one connection."""
    durations = []
    for _ in range(RPC_COUNT):
        started = time.perf_counter_ns()
        conn.call(message)
        durations.append(time.perf_counter_ns() - started)
    return durations


def print_rpc(label: str, durations: list[int]) -> None:
    micros = [ns / 1000 for ns in durations]
    rate = len(durations) / (sum(durations) / 1e9)
    print(
        f"{label:<8} p50 {percentile(micros, 0.5):>7.1f}  p90 {percentile(micros, 0.9):>7.1f}  "
        f"p99 {percentile(micros, 0.99):>7.1f}  max {max(micros):>8.1f} µs  {rate:>8.0f} req/s"
    )


def bench_rpc(box: Sandbox) -> None:
    head = run_checked(["git", "-C", box.demo, "rev-parse", "HEAD"], box).stdout.strip()
    checkout = {"root": box.demo, "branch": "main", "head": head}
    messages = {"status": request("status", checkout=checkout), "ping": request("ping")}
    print(f"RPC round trips: {RPC_COUNT} sequential requests on one connection")
    with connect(box.socket_path) as conn:
        for label, message in messages.items():
            print_rpc(label, time_rpc(conn, message))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="timed rounds (default 60)")
    parser.add_argument("--editable", action="store_true",
                        help="time this interpreter's (editable) install instead of a fresh one")
    args = parser.parse_args()
    box = make_sandbox()
    try:
        python = sys.executable if args.editable else install(box)
        compile_client(python, box)
        daemon = start_daemon(python, box)
        try:
            print(f"python {sys.version.split()[0]} at {python}")
            print(f"projctld pid {daemon.pid}: RSS after start {rss_mib(daemon.pid):.1f} MiB\n")
            print(f"whole processes: {args.rounds} rounds after one warm-up round, cwd = demo repo")
            print_latency_table(python, time_commands(python, box, args.rounds))
            print()
            print_import_times(python, box)
            print()
            bench_rpc(box)
            print(f"\nprojctld RSS after the RPC loops {rss_mib(daemon.pid):.1f} MiB")
        finally:
            stop_daemon(daemon)
    finally:
        shutil.rmtree(box.root, ignore_errors=True)


if __name__ == "__main__":
    main()
