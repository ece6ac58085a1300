"""From a change upstream to the user knowing: notification, `watch` screen, `wait`'s exit; and
what watching and waiting cost upstream.

Run it from the repository root with the dev virtualenv's interpreter:

    .venv/bin/python bench/notify_latency.py [--samples N] [--window S] [--interval S]

A real projctld polls the fake GitHub, GitLab and Jira on loopback (GitHub every `--interval`
seconds, 40 by default: 20 while the user is active, and 15, the CI-running interval, while CI
of mine runs or someone waits), on a real session bus (dbus-daemon) with the test notification
server of tests/notification_server.py. Nothing calls `projctl refresh` while measuring: every
poll is the daemon's own.

1. Latency, `--samples` times: CI of my pull request running, `projctl watch --json` and
   `projctl wait ci` open in its checkout; then the fake's checks all pass at t0. The time from
   t0 to the notification being shown, to the watch line that shows it, and to wait's exit, in
   seconds and in CI-running intervals (goal: within one interval plus 0.2 s).
2. Upstream requests per minute over `--window` seconds each (180: a 20 s poll cycle puts one
   poll more or less in a minute), CI not running: with nothing open,
   with `projctl watch` open, with `projctl wait review` waiting (goal: watching costs nothing;
   waiting only the faster polling of the sources it waits on).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from notification_server import start_session_bus  # noqa: E402

from projctld.sandbox.dataset import generate  # noqa: E402
from projctld.sandbox.demo import TOKEN, start_fakes  # noqa: E402
from projctld.upstream.polling import RUNNING_CI_INTERVAL  # noqa: E402


def _client(env: dict, *args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "projctl_client", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def _ci(pull, state: str) -> None:
    for check in pull.checks:
        if state == "running":
            check.status, check.conclusion = "in_progress", None
        else:
            check.status, check.conclusion = "completed", state
    pull.updated_at = time.time()


def _config(up, checkout: str, interval: float) -> str:
    token = f'token = "{TOKEN}"\ntoken_env = ""'
    return f"""
[github]
api_url = "{up.github_url}"
interval = {interval}
{token}
[gitlab]
url = "{up.gitlab_url}"
{token}
[jira]
url = "{up.jira_url}"
email = "{up.data.jira_email}"
{token}
[desktop]
burst = 0.1
[projects.web]
paths = ["{checkout}"]
github = {json.dumps(up.data.github_repos)}
gitlab = {json.dumps(up.data.gitlab_projects)}
jira = "project = {up.data.jira_projects[0]}"
"""


def _requests(up) -> dict[str, int]:
    return {"github": len(up.github.requests), "gitlab": len(up.gitlab.requests),
            "jira": len(up.jira.requests)}


def _lines(process: subprocess.Popen[str], into: list[tuple[float, str]]) -> None:
    for line in process.stdout:  # type: ignore[union-attr]
        into.append((time.monotonic(), line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--window", type=float, default=180.0)
    parser.add_argument("--interval", type=float, default=40.0)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="pjbench", dir="/tmp")
    bus = start_session_bus()
    bus.serve_notifications()
    env = {**os.environ, "XDG_CONFIG_HOME": f"{root}/config", "XDG_STATE_HOME": f"{root}/state",
           "XDG_RUNTIME_DIR": f"{root}/run", "HOME": root, "DBUS_SESSION_BUS_ADDRESS": bus.address,
           "PROJCTL_NO_AUTOSTART": "1"}
    for name in ("PROJCTL_CONFIG", "PROJCTL_SOCKET"):
        env.pop(name, None)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        stack.callback(bus.stop)
        up = start_fakes(stack, generate(github_repos=3, gitlab_projects=2, changes_per_repo=5,
                                         tickets=40, jira_projects=1))
        me = up.data.github_login
        pull = next(pr for prs in up.data.pulls.values() for pr in prs
                    if pr.author == me and pr.state == "open")
        checkout = os.path.join(root, "web")
        os.makedirs(checkout)
        for command in (["init", "-q", "-b", pull.head_ref],
                        ["commit", "-q", "--allow-empty", "-m", "x"]):
            subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@e", *command],
                           cwd=checkout, check=True)
        os.makedirs(f"{root}/config/projctl")
        with open(f"{root}/config/projctl/config.toml", "w") as handle:
            handle.write(_config(up, checkout, args.interval))
        os.chmod(f"{root}/config/projctl/config.toml", 0o600)
        daemon = subprocess.Popen([sys.executable, "-m", "projctld", "run"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(daemon.wait, 15)
        stack.callback(daemon.terminate)
        deadline = time.monotonic() + 20
        while _client(env, "ping").returncode != 0:
            assert time.monotonic() < deadline, "projctld did not start"
            time.sleep(0.1)
        _ci(pull, "running")
        _client(env, "refresh", "--wait", "30")
        _client(env, "refresh", "--wait", "30")  # a read to compare the next ones with

        print(f"GitHub interval {args.interval:g} s; CI-running interval "
              f"{RUNNING_CI_INTERVAL:g} s (goal: within it + 0.2 s)")
        figures: dict[str, list[float]] = {"notification": [], "watch": [], "wait": []}
        # From the poll that read the change (its first request after t0) to each: what the
        # daemon and the clients add to the poll's own timing.
        after_poll: dict[str, list[float]] = {"notification": [], "watch": [], "wait": []}
        for sample in range(args.samples):
            _ci(pull, "running")
            _client(env, "refresh", "--wait", "30")  # set up: CI running, as read
            watched: list[tuple[float, str]] = []
            watch = subprocess.Popen([sys.executable, "-m", "projctl_client", "watch", "--json"],
                                     env=env, cwd=checkout, stdout=subprocess.PIPE, text=True)
            threading.Thread(target=_lines, args=(watch, watched), daemon=True).start()
            waiting = subprocess.Popen(
                [sys.executable, "-m", "projctl_client", "wait", "ci", "--timeout", "120"],
                env=env, cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while not watched:
                time.sleep(0.02)
            # Both connected; then the change comes at a random moment of the poll cycle (the
            # set-up's refresh has just restarted it).
            time.sleep(0.5 + random.uniform(0, RUNNING_CI_INTERVAL))
            shown_before = len(bus.shown)
            up.github.reset_log()
            t0, t0_wall = time.monotonic(), time.time()
            _ci(pull, "success")
            waiting.wait(120)
            figures["wait"].append(time.monotonic() - t0)
            deadline = time.monotonic() + 30
            while len(bus.shown) == shown_before and time.monotonic() < deadline:
                time.sleep(0.01)
            # The bus records when it was shown: the server's thread appends as it is called.
            figures["notification"].append(_shown_at(bus, shown_before, t0))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                passed = [at for at, line in watched if _ci_state(line, pull) == "success"]
                if passed:
                    figures["watch"].append(passed[0] - t0)
                    break
                time.sleep(0.01)
            watch.terminate()
            watch.wait(10)
            polled = min((r.received_at for r in up.github.requests
                          if r.received_at >= t0_wall), default=None)
            if polled is not None:
                read_at = polled - t0_wall
                for what in after_poll:
                    if len(figures[what]) == sample + 1:
                        after_poll[what].append(figures[what][-1] - read_at)
            print(f"  sample {sample + 1}: notification {figures['notification'][-1]:.2f} s, "
                  f"watch {figures['watch'][-1] if figures['watch'] else float('nan'):.2f} s, "
                  f"wait {figures['wait'][-1]:.2f} s (exit {waiting.returncode})")
        for what, values in figures.items():
            values = [v for v in values if v == v]  # nan: not seen in time
            if values:
                median = statistics.median(values)
                print(f"{what:>13}: median {median:.2f} s = {median / RUNNING_CI_INTERVAL:.2f} "
                      f"intervals, max {max(values):.2f} s = "
                      f"{max(values) / RUNNING_CI_INTERVAL:.2f} intervals "
                      f"(goal {RUNNING_CI_INTERVAL + 0.2:.1f} s)")
        for what, values in after_poll.items():
            values = [v for v in values if v == v]
            if values:
                print(f"{what:>13} after the poll that read it: median "
                      f"{statistics.median(values):.3f} s, max {max(values):.3f} s")

        _ci(pull, "success")
        _client(env, "refresh", "--wait", "30")
        rates = {}
        for mode in ("nothing open", "watching", "waiting"):
            opened = None
            if mode == "watching":
                opened = subprocess.Popen([sys.executable, "-m", "projctl_client", "watch",
                                           "--json"], env=env, cwd=checkout,
                                          stdout=subprocess.DEVNULL)
            elif mode == "waiting":
                pull.review_decision = "REVIEW_REQUIRED"
                _client(env, "refresh", "--wait", "30")
                opened = subprocess.Popen([sys.executable, "-m", "projctl_client", "wait",
                                           "review", "--timeout", str(args.window + 30)],
                                          env=env, cwd=checkout, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            for fake in (up.github, up.gitlab, up.jira):
                fake.reset_log()
            time.sleep(args.window)
            rates[mode] = {name: count * 60 / args.window
                           for name, count in _requests(up).items()}
            if opened is not None:
                opened.terminate()
                opened.wait(10)
            _client(env, "ping")  # the user stays active in every mode alike
        base = sum(rates["nothing open"].values())
        for mode, rate in rates.items():
            each = ", ".join(f"{name} {count:.1f}" for name, count in rate.items())
            print(f"upstream requests per minute, {mode:>12}: {sum(rate.values()):.1f} "
                  f"({sum(rate.values()) / base:.2f}x nothing open; {each})")


def _ci_state(line: str, pull) -> str | None:
    try:
        view = json.loads(line)
    except ValueError:
        return None
    branch = view.get("branch") or {}
    cr = branch.get("change_request") or {}
    return (cr.get("ci") or {}).get("state")


def _shown_at(bus, index: int, t0: float) -> float:
    with bus.lock:
        if len(bus.shown) <= index:
            return float("nan")
    return bus.shown_at[index] - t0


if __name__ == "__main__":
    main()
