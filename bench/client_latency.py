"""Measures how long `projctl status`/`ping`/`note`/`prompt` take as whole processes and as RPCs
to projctld, without plugins and with plugin commands installed, and what dispatching
`projctl NAME` to a plugin executable costs.

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

Every command is timed in two set-ups, in alternation: without plugins, and with ten plugin
executables (`projctl-tool0`...) in a directory on PATH and a package of three entry-point
commands (`projctl.commands`) installed, which the hot commands must not pay for. Both set-ups
have a directory on PYTHONPATH (empty in the first), so that they differ only by the plugins.
The dispatch figure times `projctl hello` (exec'd to `projctl-hello` on PATH, a shell script
that exits at once) against running `projctl-hello` directly.
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


PLUGIN_EXECUTABLES = 10
ENTRY_POINT_COMMANDS = ("alpha", "beta", "gamma")
DIRECT = "projctl-hello (direct)"
DISPATCHED = "projctl hello"
DISPATCH_GOAL_MS = 5.0
BARE, PLUGINS = "no plugins", "plugins"


def commands(python: str) -> dict[str, list[str]]:
    """The timed commands; `projctl` is the console script next to `python`."""
    projctl = os.path.join(os.path.dirname(python), "projctl")
    return {
        BASELINE: [python, "-c", "pass"],
        "projctl status": [projctl, "status"],
        "projctl status --json": [projctl, "status", "--json"],
        "projctl ping": [projctl, "ping"],
        "projctl note TEXT": [projctl, "note", "timed by bench/client_latency.py"],
        "projctl prompt": [projctl, "prompt"],
    }


def dispatch_commands(python: str, box: Sandbox) -> dict[str, list[str]]:
    """A plugin executable run directly, and as `projctl hello` (timed with plugins only)."""
    projctl = os.path.join(os.path.dirname(python), "projctl")
    return {DIRECT: [os.path.join(box.plugin_bin, "projctl-hello")],
            DISPATCHED: [projctl, "hello"]}


@dataclass
class Sandbox:
    """A private root with XDG directories, a config naming one project and its git checkout."""

    root: str
    env: dict[str, str]
    # The environment of each set-up (BARE, PLUGINS): `env` with its PATH and PYTHONPATH.
    setups: dict[str, dict[str, str]] | None = None

    @property
    def demo(self) -> str:
        return os.path.join(self.root, "demo")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.root, "run", "projctl", "projctld.sock")

    @property
    def daemon_log(self) -> str:
        return os.path.join(self.root, "projctld.log")

    @property
    def plugin_bin(self) -> str:
        return os.path.join(self.root, "plugin-bin")


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


def run_in_demo(argv: list[str], box: Sandbox,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in the demo repository with the sandbox environment, output captured."""
    return subprocess.run(argv, cwd=box.demo, env=env or box.env, capture_output=True,
                          text=True)


def check_exit(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Abort the benchmark with the command's output unless it exited 0."""
    if result.returncode != 0:
        raise SystemExit(
            f"error: `{' '.join(result.args)}` exited with {result.returncode}\n"
            f"stdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}"
        )
    return result


def run_checked(argv: list[str], box: Sandbox,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return check_exit(run_in_demo(argv, box, env))


def install(box: Sandbox) -> str:
    """A virtualenv in the sandbox with projctl installed from this checkout; its python."""
    venv = os.path.join(box.root, "venv")
    print(f"installing projctl into {venv} (pip install {REPO}) ...", flush=True)
    run_checked([sys.executable, "-m", "venv", venv], box)
    python = os.path.join(venv, "bin", "python")
    run_checked([python, "-m", "pip", "install", "-q", REPO], box)
    return python


def install_plugins(python: str, box: Sandbox) -> None:
    """Ten plugin executables and `projctl-hello` in a directory, and a package with three
    entry-point commands installed into a directory (pip, `--target`); box.setups gets the
    environment without them and with them."""
    os.makedirs(box.plugin_bin)
    for name in [f"tool{n}" for n in range(PLUGIN_EXECUTABLES)] + ["hello"]:
        path = os.path.join(box.plugin_bin, f"projctl-{name}")
        with open(path, "w") as handle:
            handle.write("#!/bin/sh\nexit 0\n")
        os.chmod(path, 0o755)
    source = os.path.join(box.root, "bench-commands")
    os.makedirs(source)
    points = "\n".join(f'{name} = "bench_commands:{name}"' for name in ENTRY_POINT_COMMANDS)
    with open(os.path.join(source, "pyproject.toml"), "w") as handle:
        handle.write('[build-system]\nrequires = ["setuptools>=61"]\n'
                     'build-backend = "setuptools.build_meta"\n\n'
                     '[project]\nname = "bench-commands"\nversion = "1.0"\n\n'
                     f'[project.entry-points."projctl.commands"]\n{points}\n\n'
                     '[tool.setuptools]\npy-modules = ["bench_commands"]\n')
    with open(os.path.join(source, "bench_commands.py"), "w") as handle:
        handle.write("import click\n" + "".join(
            f"\n\n@click.command()\ndef {name}():\n    \"\"\"A bench command.\"\"\"\n"
            for name in ENTRY_POINT_COMMANDS))
    site, empty = os.path.join(box.root, "site"), os.path.join(box.root, "site-empty")
    os.makedirs(empty)
    run_checked([python, "-m", "pip", "install", "-q", "--no-deps",
                 "--target", site, source], box)
    box.setups = {
        BARE: {**box.env, "PYTHONPATH": empty},
        PLUGINS: {**box.env, "PYTHONPATH": site,
                  "PATH": os.pathsep.join([box.plugin_bin, box.env["PATH"]])},
    }
    listed = run_checked([os.path.join(os.path.dirname(python), "projctl"), "--help"], box,
                         box.setups[PLUGINS]).stdout
    missing = [n for n in (*ENTRY_POINT_COMMANDS, "tool0", "hello") if f"  {n} " not in listed]
    if missing:
        raise SystemExit(f"error: `projctl --help` does not list the plugins {missing}")


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


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's memory in MiB from /proc: VmRSS now, or VmHWM, its peak."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise SystemExit(f"error: no {field} in /proc/{pid}/status")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (fraction in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def time_process(argv: list[str], box: Sandbox, env: dict[str, str] | None = None) -> float:
    """Wall-clock milliseconds of one whole process run, which must exit 0 (in the sandbox's
    environment unless `env` is given)."""
    started = time.perf_counter()
    result = run_in_demo(argv, box, env)
    elapsed = time.perf_counter() - started
    check_exit(result)
    return elapsed * 1000


Samples = dict[tuple[str, str], list[float]]  # (set-up, command): milliseconds


def time_commands(python: str, box: Sandbox, rounds: int) -> Samples:
    """Run every command in both set-ups (and the dispatch pair with plugins) once per round,
    rotating the order each round; one untimed warm-up round."""
    assert box.setups is not None
    timed = [(setup, name, argv) for name, argv in commands(python).items()
             for setup in (BARE, PLUGINS)]
    timed += [(PLUGINS, name, argv) for name, argv in dispatch_commands(python, box).items()]
    for setup, _, argv in timed:
        time_process(argv, box, box.setups[setup])
    samples: Samples = {(setup, name): [] for setup, name, _ in timed}
    for round_index in range(rounds):
        shift = round_index % len(timed)
        for setup, name, argv in timed[shift:] + timed[:shift]:
            samples[setup, name].append(time_process(argv, box, box.setups[setup]))
    return samples


def print_latency_table(python: str, samples: Samples) -> None:
    baseline = statistics.median(samples[BARE, BASELINE])
    print(f"{'command':<24}{'median ms':>10}{'p90 ms':>9}{'x bare':>8}"
          f"{'with plugins':>14}{'p90 ms':>9}{'ratio':>7}")
    for name in commands(python):
        plain, plugged = samples[BARE, name], samples[PLUGINS, name]
        median, with_plugins = statistics.median(plain), statistics.median(plugged)
        print(f"{name:<24}{median:>10.1f}{percentile(plain, 0.9):>9.1f}"
              f"{median / baseline:>8.2f}{with_plugins:>14.1f}{percentile(plugged, 0.9):>9.1f}"
              f"{with_plugins / median:>7.2f}")
    ratio = statistics.median(samples[BARE, "projctl status"]) / baseline
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    print(f"goal: projctl status <= {GOAL_RATIO}x bare python -> {ratio:.2f}x, {verdict}")
    print(f"'with plugins': {PLUGIN_EXECUTABLES} plugin executables on PATH and "
          f"{len(ENTRY_POINT_COMMANDS)} entry-point commands installed; 'ratio' is its median "
          "over the median without")
    if python == sys.executable and any(name.startswith("__editable__") for name in sys.modules):
        print(
            "note: this interpreter imports a setuptools editable-install finder at every start\n"
            "      (under `site` below); bare python pays it too, so the ratios here are lower\n"
            "      than they would be for a wheel install"
        )


def print_dispatch(samples: Samples) -> None:
    direct = statistics.median(samples[PLUGINS, DIRECT])
    dispatched = statistics.median(samples[PLUGINS, DISPATCHED])
    bare = statistics.median(samples[PLUGINS, BASELINE])
    extra = dispatched - direct
    verdict = "met" if extra < DISPATCH_GOAL_MS else "NOT met"
    print(f"dispatch: `{DISPATCHED}` (exec'd to projctl-hello on PATH) against projctl-hello "
          "run directly, medians")
    print(f"  {DIRECT:<28}{direct:>8.1f} ms")
    print(f"  {DISPATCHED:<28}{dispatched:>8.1f} ms")
    print(f"  extra cost of dispatching   {extra:>8.1f} ms  (goal < {DISPATCH_GOAL_MS:g} ms: "
          f"{verdict})")
    print(f"  python -c pass              {bare:>8.1f} ms  (an interpreter's start and exit, "
          "which the `projctl` script pays first)")
    print(f"  projctl hello - that        {dispatched - bare:>8.1f} ms  (finding the file, "
          "asking the daemon's version, exec, and the plugin's own run)")


@dataclass
class ImportEntry:
    name: str
    depth: int  # nesting level: 0 unless another module's import triggered this one
    cumulative_us: int


def import_times(python: str, box: Sandbox, env: dict[str, str] | None = None,
                 command: str = "status") -> list[ImportEntry]:
    """The `-X importtime` entries of one `projctl COMMAND`, in the order imports finished."""
    argv = [python, "-X", "importtime", "-m", "projctl_client", command]
    entries = []
    for line in run_checked(argv, box, env).stderr.splitlines():
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
    assert box.setups is not None
    for command in ("status", "ping", "prompt"):
        for setup in (BARE, PLUGINS):
            names = {entry.name for entry in import_times(python, box, box.setups[setup],
                                                          command)}
            looked = sorted(names & {"importlib.metadata", "projctl_client.commands", "click"})
            print(f"  projctl {command:<7} {setup:<11}: {len(names)} modules imported; "
                  f"plugin machinery among them: {', '.join(looked) or 'none'}")


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
        install_plugins(python, box)
        daemon = start_daemon(python, box)
        try:
            print(f"python {sys.version.split()[0]} at {python}")
            print(f"projctld pid {daemon.pid}: RSS after start {rss_mib(daemon.pid):.1f} MiB\n")
            print(f"whole processes: {args.rounds} rounds after one warm-up round, cwd = demo repo")
            samples = time_commands(python, box, args.rounds)
            print_latency_table(python, samples)
            print()
            print_dispatch(samples)
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
