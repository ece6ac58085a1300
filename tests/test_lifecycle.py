"""The daemon's life as a user sees it through `projctl` and `projctld`, all real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading

import pytest

from projctl_client.connection import DaemonError, request

REPO_CONFIG = '[projects.demo]\npaths = ["{root}/demo"]\n'


@pytest.fixture
def demo(sandbox):
    """A project `demo` with a git checkout on branch `main` with one commit."""
    root = os.path.join(sandbox.root, "demo")
    os.makedirs(root)
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=root, check=True)
    sandbox.write_config(REPO_CONFIG.format(root=sandbox.root))
    return root


def is_running(sandbox) -> bool:
    return sandbox.client("daemon", "status").returncode == 0


def test_status_starts_the_daemon_and_shows_the_checkout_and_projects(sandbox, demo) -> None:
    result = sandbox.client("status", cwd=os.path.join(demo))
    assert result.returncode == 0, result.stderr
    assert "Here      ~/demo  main @ " in result.stdout
    assert "(project demo)" in result.stdout
    assert "demo      ~/demo" in result.stdout
    assert "seen just now" in result.stdout
    assert "1 checkout known" in result.stdout
    assert is_running(sandbox)


def test_status_json_is_the_documented_view(sandbox, demo) -> None:
    result = sandbox.client("status", "--json", cwd=demo)
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert list(view) == ["generated_at", "daemon", "checkout", "projects", "state", "branch",
                          "sandbox", "sync", "notices", "inbox", "inbox_known", "config_error"]
    assert view["inbox"] == [] and view["inbox_known"] == ""  # no GitHub or GitLab: no inbox
    assert view["config_error"] is None
    assert list(view["daemon"]) == ["version", "protocol", "pid", "started_at", "config_path",
                                    "config_loaded_at", "socket_path", "state_path"]
    assert view["checkout"]["root"] == demo
    assert view["checkout"]["branch"] == "main"
    assert len(view["checkout"]["head"]) == 40
    assert view["checkout"]["project"] == "demo"
    assert view["projects"][0]["name"] == "demo"
    assert view["projects"][0]["checkouts"][0]["root"] == demo
    assert view["state"]["checkouts_known"] == 1
    assert view["state"]["last_error"] is None
    assert view["projects"][0]["environments"] == ["development", "staging", "production"]
    assert view["projects"][0]["deployments"] == []
    assert view["sync"]["hub"] is None
    assert view["sync"]["waiting"] == 0
    outside = json.loads(sandbox.client("status", "--json").stdout)
    assert outside["checkout"] is None


def test_status_without_projects_says_how_to_add_one(sandbox) -> None:
    result = sandbox.client("status")
    assert result.returncode == 0, result.stderr
    assert "not in a git repository" in result.stdout
    assert "No projects configured yet" in result.stdout
    assert "[projects.NAME]" in result.stdout


def test_ping_prints_version_and_round_trip(sandbox, daemon) -> None:
    result = sandbox.client("ping")
    assert result.returncode == 0
    assert result.stdout.startswith(f"projctld 0.1.0 (protocol 1, pid {daemon.pid}) answered in ")
    assert result.stdout.rstrip().endswith(" ms")


def test_without_autostart_the_client_exits_3_and_says_what_to_type(sandbox) -> None:
    for command in (["status"], ["status", "--json"], ["ping"]):
        result = sandbox.client(*command, env={"PROJCTL_NO_AUTOSTART": "1"})
        assert result.returncode == 3
        assert "projctld is not running" in result.stderr
        assert "try: projctl daemon start" in result.stderr
        assert result.stdout == ""
    assert not is_running(sandbox)


def test_daemon_start_status_stop_restart(sandbox) -> None:
    stopped = sandbox.client("daemon", "status")
    assert stopped.returncode == 3
    assert "projctld is not running" in stopped.stdout
    started = sandbox.client("daemon", "start")
    assert started.returncode == 0 and started.stdout.startswith("started projctld (pid ")
    again = sandbox.client("daemon", "start")
    assert again.returncode == 0 and "already running" in again.stdout
    running = sandbox.client("daemon", "status")
    assert running.returncode == 0
    assert "projctld is running" in running.stdout
    assert "version   0.1.0 (protocol 1)" in running.stdout
    first_pid = json.loads(sandbox.client("status", "--json").stdout)["daemon"]["pid"]
    restarted = sandbox.client("daemon", "restart")
    assert restarted.returncode == 0, restarted.stderr
    assert f"stopped projctld (pid {first_pid})" in restarted.stdout
    second_pid = json.loads(sandbox.client("status", "--json").stdout)["daemon"]["pid"]
    assert second_pid != first_pid
    stop = sandbox.client("daemon", "stop")
    assert stop.returncode == 0 and f"stopped projctld (pid {second_pid})" in stop.stdout
    assert not os.path.exists(sandbox.socket_path)
    assert sandbox.client("daemon", "stop").stdout.strip() == "projctld is not running"


def test_a_second_daemon_on_the_same_socket_exits_with_a_clear_message(sandbox, daemon) -> None:
    second = sandbox.spawn_daemon()
    _, stderr = second.communicate(timeout=30)
    assert second.returncode == 1
    assert f"another projctld (pid {daemon.pid}) already serves" in stderr.decode()
    assert b"Traceback" not in stderr
    assert sandbox.client("ping").returncode == 0


def test_clients_racing_to_autostart_end_with_one_daemon(sandbox) -> None:
    results = []

    def run() -> None:
        results.append(sandbox.client("ping"))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.returncode for r in results] == [0] * 4, [r.stderr for r in results]
    assert len({r.stdout.split("pid ")[1].split(")")[0] for r in results}) == 1


def test_a_killed_daemons_stale_socket_is_replaced(sandbox) -> None:
    first = sandbox.start_daemon()
    first.kill()
    first.wait()
    assert stat.S_ISSOCK(os.lstat(sandbox.socket_path).st_mode)  # left behind
    result = sandbox.client("ping")
    assert result.returncode == 0, result.stderr
    assert f"pid {first.pid})" not in result.stdout


def test_a_file_in_place_of_the_socket_is_left_alone(sandbox) -> None:
    os.makedirs(os.path.dirname(sandbox.socket_path), mode=0o700)
    with open(sandbox.socket_path, "w") as handle:
        handle.write("mine")
    process = sandbox.spawn_daemon()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "exists and is not a socket" in stderr.decode()
    with open(sandbox.socket_path) as handle:
        assert handle.read() == "mine"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_daemon_in_order(sandbox, signum) -> None:
    process = sandbox.start_daemon()
    with sandbox.connect() as conn:
        conn.call(request("status", checkout=None))
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert not os.path.exists(sandbox.socket_path)
    events = [json.loads(line)["event"] for line in stderr.decode().splitlines()]
    assert events == ["serving", "signal_received", "stopping", "stopped"]


def test_a_shutdown_request_stops_the_daemon(sandbox, daemon) -> None:
    with sandbox.connect() as conn:
        assert conn.call(request("shutdown"))["type"] == "ack"
    assert daemon.wait(timeout=30) == 0
    assert not os.path.exists(sandbox.socket_path)


def test_what_the_daemon_knows_survives_a_restart(sandbox, demo) -> None:
    before = json.loads(sandbox.client("status", "--json", cwd=demo).stdout)
    assert sandbox.client("daemon", "stop").returncode == 0
    after = json.loads(sandbox.client("status", "--json").stdout)  # not in the checkout now
    assert after["daemon"]["pid"] != before["daemon"]["pid"]
    assert after["state"]["created_at"] == before["state"]["created_at"]
    (known,) = after["projects"][0]["checkouts"]
    assert known["root"] == demo
    assert known["first_seen_at"] == before["checkout"]["first_seen_at"]
    assert known["head"] == before["checkout"]["head"]


def test_startup_failures_exit_non_zero_with_a_message(sandbox) -> None:
    long_socket = "/tmp/" + "x" * 120 + ".sock"
    client = sandbox.client("ping", env={"PROJCTL_SOCKET": long_socket})
    assert client.returncode == 3
    assert "path too long" in client.stderr and "PROJCTL_SOCKET" in client.stderr
    daemon = subprocess.run([sys.executable, "-m", "projctld", "run"], capture_output=True,
                            text=True, env={**sandbox.env, "PROJCTL_SOCKET": long_socket})
    assert daemon.returncode == 1
    assert "Unix sockets allow 107" in daemon.stderr and "PROJCTL_SOCKET" in daemon.stderr
    # A file where the state directory should be.
    os.makedirs(os.path.dirname(sandbox.state_dir))
    with open(sandbox.state_dir, "w"):
        pass
    process = sandbox.spawn_daemon()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1
    assert b"Traceback" not in stderr
    assert b"projctld: error:" in stderr


def test_a_damaged_state_database_is_explained(sandbox) -> None:
    os.makedirs(sandbox.state_dir)
    with open(os.path.join(sandbox.state_dir, "state.db"), "wb") as handle:
        handle.write(b"this is not sqlite" * 100)
    result = sandbox.client("status")
    assert result.returncode == 3
    assert "state database" in result.stderr and "cannot be used" in result.stderr
    assert "projctl daemon stop && projctld db recover && projctl daemon start" in result.stderr


def test_a_daemon_that_does_not_answer_is_reported_within_the_timeout(sandbox) -> None:
    os.makedirs(os.path.dirname(sandbox.socket_path), mode=0o700)
    with socket.socket(socket.AF_UNIX) as silent:
        silent.bind(sandbox.socket_path)
        silent.listen()
        result = sandbox.client("status", env={"PROJCTL_TIMEOUT": "0.5"})
    assert result.returncode == 3
    assert "did not answer within 0.5 s" in result.stderr
    assert "try: projctl daemon restart" in result.stderr


def test_an_error_reply_carries_its_suggestions_to_the_client(sandbox, daemon) -> None:
    with sandbox.connect() as conn, pytest.raises(DaemonError) as caught:
        conn.call({"type": "ping", "protocol": 2, "client": "9.0.0"})
    assert caught.value.code == "unsupported_protocol"
    assert caught.value.suggestions == ["projctl daemon restart"]
    assert caught.value.context["daemon_protocol"] == "1"


def test_help_reads_well(sandbox) -> None:
    top = sandbox.client("--help")
    assert top.returncode == 0
    for command in ("status", "ping", "daemon"):
        assert f"  {command} " in top.stdout
    assert "Exit codes" in top.stdout
    for command in (["status"], ["ping"], ["daemon"], ["daemon", "start"], ["daemon", "stop"],
                    ["daemon", "status"], ["daemon", "restart"]):
        result = sandbox.client(*command, "--help")
        assert result.returncode == 0 and result.stdout.startswith(
            f"Usage: projctl {' '.join(command)}"
        )
    assert sandbox.client("--version").stdout.strip() == "projctl, version 0.1.0"
    unknown = sandbox.client("stauts")
    assert unknown.returncode == 2 and "No such command 'stauts'" in unknown.stderr


def test_a_started_daemon_rotates_a_large_log_at_start(sandbox) -> None:
    log = os.path.join(sandbox.state_dir, "projctld.log")
    os.makedirs(sandbox.state_dir)
    with open(log, "w") as old:
        old.write('{"event": "an old line"}\n' * 50_000)  # 1.3 MB, past the 1 MiB bound
    assert sandbox.client("daemon", "start").returncode == 0
    with open(log + ".1") as rotated:
        assert rotated.read().count("an old line") == 50_000
    with open(log) as fresh:
        events = [json.loads(line)["event"] for line in fresh]
    assert "serving" in events and "an old line" not in events


def test_a_running_daemon_keeps_its_log_file_bounded(sandbox) -> None:
    # Every request is "slow" at this threshold, so each one writes a line.
    sandbox.write_config("[daemon]\nslow_request = 0.000001\n")
    log = os.path.join(sandbox.root, "projctld.log")
    limit = 8192
    process = sandbox.start_daemon("--log-file", log, "--log-max-bytes", str(limit))
    try:
        with sandbox.connect() as conn:
            for _ in range(200):
                assert conn.call(request("ping"))["type"] == "pong"
        assert os.path.getsize(log) <= limit + 1024  # one line past the bound at most
        with open(log + ".1") as older:
            lines = older.read().splitlines()
        assert len(lines) > 10
        assert all(json.loads(line)["event"] == "slow_request" for line in lines[-10:])
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    with open(log) as last:
        assert json.loads(last.read().splitlines()[-1])["event"] == "stopped"
