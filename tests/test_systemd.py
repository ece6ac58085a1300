"""projctld under systemd: the units, socket activation, sd_notify and `install-systemd`, real."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid

import pytest

from projctl_client.connection import connect
from projctld.daemon import systemd
from projctld.ops import unitfiles

SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
SOCKET_ACTIVATE = "/usr/bin/systemd-socket-activate"
# Hang guards only, far above what anything here needs; never a timing assertion.
GUARD = 30


def install(sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "projctld", "install-systemd", *args],
                          env=sandbox.env, capture_output=True, text=True, timeout=GUARD)


def this_projctld() -> str:
    """The ExecStart= command the units should name: the venv's script, as the brief says."""
    script = os.path.join(os.path.dirname(sys.executable), "projctld")
    return script if os.access(script, os.X_OK) else f"{sys.executable} -m projctld"


def verify(sandbox, *units: str, user: bool) -> str:
    """What `systemd-analyze verify` has to say about `units`: nothing when they are right.

    Offline (systemd is not PID 1 here): no man page lookups, no generators. A misspelt
    directive is only a warning with exit status 0, so the warnings count as much as the status.
    """
    os.makedirs(sandbox.env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, *(["--user"] if user else []), "verify", "--man=no",
         "--generators=no", *units],
        env=sandbox.env, capture_output=True, text=True, timeout=GUARD)
    return result.stderr + ("" if result.returncode == 0 else f"exit {result.returncode}")


@pytest.fixture
def units(sandbox) -> str:
    """Every unit as `install-systemd --user --hub --dir` writes it for this installation."""
    directory = os.path.join(sandbox.root, "units")
    result = install(sandbox, "--user", "--hub", "--dir", directory)
    assert result.returncode == 0, result.stderr
    return directory


def test_the_user_units_pass_systemd_analyze_verify(sandbox, units) -> None:
    assert verify(sandbox, os.path.join(units, "projctld.service"),
                  os.path.join(units, "projctld.socket"), user=True) == ""


def test_the_hub_unit_passes_systemd_analyze_verify(sandbox, units) -> None:
    assert verify(sandbox, os.path.join(units, "projctl-hub.service"), user=False) == ""


def test_verify_would_catch_a_misspelt_directive(sandbox, units) -> None:
    broken = os.path.join(sandbox.root, "projctl-hub.service")
    with open(os.path.join(units, "projctl-hub.service")) as source, open(broken, "w") as out:
        text = source.read()
        assert "\nProtectHome=yes\n" in text
        out.write(text.replace("\nProtectHome=yes\n", "\nProtectHom=yes\n"))
    assert "Unknown key 'ProtectHom'" in verify(sandbox, broken, user=False)


def test_the_hubs_sandbox_keeps_its_exposure_low(sandbox, units) -> None:
    # `systemd-analyze security` scores 0 (locked down) to 10 (exposed); the threshold is in
    # tenths. Losing the system call filter or the empty capability set crosses 2.0.
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--threshold=20",
         os.path.join(units, "projctl-hub.service")],
        env=sandbox.env, capture_output=True, text=True, timeout=GUARD)
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_systemd_writes_the_user_units_for_this_installation(sandbox) -> None:
    result = install(sandbox)
    assert result.returncode == 0, result.stderr
    directory = os.path.join(sandbox.root, "config", "systemd", "user")
    assert sorted(os.listdir(directory)) == ["projctld.service", "projctld.socket"]
    with open(os.path.join(directory, "projctld.service")) as handle:
        service = handle.read()
    assert f"\nExecStart={this_projctld()} run\n" in service
    assert "\nType=notify\n" in service and "\nWatchdogSec=" in service
    with open(os.path.join(directory, "projctld.socket")) as handle:
        assert "\nListenStream=%t/projctl/projctld.sock\n" in handle.read()
    assert f"wrote {directory}/projctld.service\n" in result.stdout
    assert "  systemctl --user daemon-reload\n" in result.stdout
    assert "  systemctl --user enable --now projctld.socket\n" in result.stdout
    assert result.stderr == ""


def test_install_systemd_hub_writes_the_system_unit(sandbox) -> None:
    directory = os.path.join(sandbox.root, "system")
    result = install(sandbox, "--hub", "--dir", directory)
    assert result.returncode == 0, result.stderr
    assert os.listdir(directory) == ["projctl-hub.service"]
    with open(os.path.join(directory, "projctl-hub.service")) as handle:
        hub = handle.read()
    assert f"\nExecStart={this_projctld()} hub serve --host 127.0.0.1 --port 8470\n" in hub
    assert "\nDynamicUser=yes\n" in hub and "\nStateDirectory=projctl-hub\n" in hub
    assert "systemctl enable --now projctl-hub.service" in result.stdout
    assert "hub token create" in result.stdout


def test_install_systemd_dry_run_writes_nothing(sandbox) -> None:
    result = install(sandbox, "--user", "--hub", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(os.path.join(sandbox.root, "config", "systemd"))
    for name in ("projctld.service", "projctld.socket"):
        assert f"# would write {sandbox.root}/config/systemd/user/{name}:" in result.stdout
    assert "# would write /etc/systemd/system/projctl-hub.service:" in result.stdout
    assert f"\nExecStart={this_projctld()} run\n" in result.stdout
    assert "systemctl --user enable --now projctld.socket" in result.stdout


def test_install_systemd_refuses_a_directory_it_cannot_write(sandbox) -> None:
    blocker = os.path.join(sandbox.root, "a-file")
    with open(blocker, "w"):
        pass
    result = install(sandbox, "--dir", os.path.join(blocker, "units"))
    assert result.returncode == 1
    assert f"cannot write the units into {blocker}/units: Not a directory" in result.stderr
    assert "try: projctld install-systemd --dir DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_installation_path_with_spaces_and_percent_signs_is_quoted(sandbox) -> None:
    # The script beside the interpreter is what the units run; systemd-analyze checks that
    # the path it reads from ExecStart= exists, so a wrong quote or escape fails here.
    odd = os.path.join(sandbox.root, "my venv 100%", "bin")
    os.makedirs(odd)
    os.symlink(os.path.join(os.path.dirname(sys.executable), "projctld"),
               os.path.join(odd, "projctld"))
    command = unitfiles.projctld_command(os.path.join(odd, "python"))
    assert command == [os.path.join(odd, "projctld")]
    unit = os.path.join(sandbox.root, "projctl-hub.service")
    with open(unit, "w") as handle:
        handle.write(unitfiles.render("projctl-hub.service", command))
    assert verify(sandbox, unit, user=False) == ""
    empty = os.path.join(sandbox.root, "bare", "bin")
    os.makedirs(empty)
    assert unitfiles.projctld_command(os.path.join(empty, "python")) == [
        os.path.join(empty, "python"), "-m", "projctld"]


def test_an_installation_the_hub_cannot_see_is_named(sandbox) -> None:
    assert unitfiles.hidden_from_hub(["/opt/projctl/bin/projctld", "/usr"]) is None
    assert unitfiles.hidden_from_hub(
        ["/opt/projctl/bin/projctld", "/root/.pyenv/versions/3.11.7"]) == \
        "/root/.pyenv/versions/3.11.7"
    linked = os.path.join(sandbox.root, "python")
    os.symlink("/home/ann/.pyenv/bin/python3.11", linked)  # as a venv's python often is
    assert unitfiles.hidden_from_hub([linked]) == "/home/ann/.pyenv/bin/python3.11"


def activation_env(sandbox) -> list[str]:
    """systemd-socket-activate passes on only the variables named with -E (and PATH, HOME)."""
    names = ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "PYTHONPATH",
             "PYTHONDONTWRITEBYTECODE")
    return [f"-E{name}={sandbox.env[name]}" for name in names if name in sandbox.env]


def wait_for_socket(path: str, process: subprocess.Popen[str]) -> os.stat_result:
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return os.lstat(path)
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    raise AssertionError(f"{path} did not appear")


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid`, read from /proc (a child may end while we read)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    # pid (comm) state ppid ...: comm may hold spaces and parentheses
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return found


def wait_for_no_children(process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + GUARD
    while children_of(process.pid):
        assert time.monotonic() < deadline, f"what {process.args[0]} started did not exit"
        time.sleep(0.01)


def test_socket_activation_serves_systemds_socket_and_leaves_it_in_place(sandbox) -> None:
    path = sandbox.socket_path
    os.makedirs(os.path.dirname(path), mode=0o700)
    activator = subprocess.Popen(
        [SOCKET_ACTIVATE, "-l", path, *activation_env(sandbox),
         sys.executable, "-m", "projctld", "run"],
        env=sandbox.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        before = wait_for_socket(path, activator)
        assert stat.S_ISSOCK(before.st_mode)
        # A daemon started the usual way must not take the path from under systemd.
        plain = sandbox.spawn_daemon()
        _, stderr = plain.communicate(timeout=GUARD)
        assert plain.returncode == 1
        assert f"another projctld serves {path} on demand" in stderr.decode()
        assert os.lstat(path).st_ino == before.st_ino
        # What `projctl daemon restart` does once the old daemon is gone: the daemon it starts
        # refuses as above, and the client then connects, which makes systemd-socket-activate
        # exec projctld in its own process.
        subprocess.run([sys.executable, "-c", "from projctl_client import daemonctl; "
                        "daemonctl.start()"], env=sandbox.env, check=True, timeout=GUARD)
        ping = sandbox.client("ping", env={"PROJCTL_NO_AUTOSTART": "1"})
        assert ping.returncode == 0, ping.stderr
        assert f"pid {activator.pid})" in ping.stdout
        view = json.loads(sandbox.client("status", "--json").stdout)
        assert view["daemon"]["socket_path"] == path
        activator.send_signal(signal.SIGTERM)
        _, log = activator.communicate(timeout=GUARD)
    finally:
        if activator.poll() is None:
            activator.kill()
            activator.wait()
    assert activator.returncode == 0, log
    events = [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]
    assert events == ["socket_activated", "serving", "signal_received", "stopping", "stopped"]
    after = os.lstat(path)  # still there: the socket is systemd's to remove
    assert stat.S_ISSOCK(after.st_mode) and after.st_ino == before.st_ino


@pytest.mark.parametrize("mode", ["--datagram", "--accept"])
def test_a_passed_socket_that_cannot_serve_stops_the_daemon_clearly(sandbox, mode) -> None:
    path = sandbox.socket_path
    os.makedirs(os.path.dirname(path), mode=0o700)
    activator = subprocess.Popen(
        [SOCKET_ACTIVATE, "-l", path, mode, *activation_env(sandbox),
         sys.executable, "-m", "projctld", "run"],
        env=sandbox.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_socket(path, activator)
        kind = socket.SOCK_DGRAM if mode == "--datagram" else socket.SOCK_STREAM
        with socket.socket(socket.AF_UNIX, kind) as trigger:
            trigger.settimeout(GUARD)
            trigger.connect(path)
            if mode == "--datagram":
                trigger.send(b"x")
            else:  # the daemon that was given this connection ends, and so does the connection
                assert trigger.recv(1) == b""
        if mode == "--accept":
            # systemd-socket-activate kills its children when it dies (PR_SET_PDEATHSIG), and
            # the daemon closes the connection before it writes why it stops: end the
            # activator only once the daemon it started has exited.
            wait_for_no_children(activator)
            activator.send_signal(signal.SIGTERM)
        _, stderr = activator.communicate(timeout=GUARD)
    finally:
        if activator.poll() is None:
            activator.kill()
            activator.wait()
    described = "SOCK_DGRAM" if mode == "--datagram" else "SOCK_STREAM, not listening"
    assert f"systemd passed an unusable socket (AF_UNIX {described})" in stderr
    assert "try: check projctld.socket" in stderr
    assert "Traceback" not in stderr
    if mode == "--datagram":
        assert activator.returncode == 1


def notify_socket(address: str) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + address[1:] if address.startswith("@") else address)
    receiver.settimeout(GUARD)
    return receiver


def spawn(sandbox, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "projctld", "run"],
                            env={**sandbox.env, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("namespace", ["path", "abstract"])
def test_systemd_hears_ready_watchdog_pings_and_stopping_in_order(sandbox, namespace) -> None:
    address = (os.path.join(sandbox.root, "notify") if namespace == "path"
               else f"@projctl-test-{uuid.uuid4().hex}")
    with notify_socket(address) as receiver:
        daemon = spawn(sandbox, NOTIFY_SOCKET=address, WATCHDOG_USEC="200000")
        try:
            messages = [receiver.recv(4096).decode()]
            while not messages[-1].startswith("WATCHDOG=1"):
                messages.append(receiver.recv(4096).decode())
            daemon.send_signal(signal.SIGTERM)
            while not messages[-1].startswith("STOPPING=1"):
                messages.append(receiver.recv(4096).decode())
            assert daemon.wait(timeout=GUARD) == 0
            receiver.setblocking(False)
            with pytest.raises(BlockingIOError):  # nothing after STOPPING=1
                receiver.recv(4096)
        finally:
            if daemon.poll() is None:
                daemon.kill()
            daemon.communicate()
    first = messages[0].splitlines()
    assert first[0] == "READY=1"
    assert first[1] == f"STATUS=serving {sandbox.socket_path}, 0 sources"
    assert set(messages[1:-1]) == {"WATCHDOG=1"}
    assert messages[-1] == "STOPPING=1\nSTATUS=stopping"


def test_a_notify_socket_that_is_gone_is_logged_once_and_harmless(sandbox) -> None:
    # READY=1 and STOPPING=1 both fail, and pings every 10 ms in between: one line in the log.
    daemon = spawn(sandbox, NOTIFY_SOCKET=os.path.join(sandbox.root, "gone"),
                   WATCHDOG_USEC="20000")
    try:
        deadline = time.monotonic() + GUARD
        while time.monotonic() < deadline:
            assert daemon.poll() is None, daemon.communicate()
            try:
                connect(sandbox.socket_path, timeout=GUARD).close()
                break
            except Exception:
                time.sleep(0.01)
        assert sandbox.client("ping", env={"PROJCTL_NO_AUTOSTART": "1"}).returncode == 0
        daemon.send_signal(signal.SIGTERM)
        _, log = daemon.communicate(timeout=GUARD)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0
    failures = [json.loads(line) for line in log.splitlines()
                if '"systemd_notify_failed"' in line]
    assert len(failures) == 1
    assert failures[0]["error"] == "No such file or directory"


def test_systemd_variables_meant_for_another_process_are_ignored_and_removed(
        monkeypatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "projctld.socket")
    notifier = systemd.Notifier.from_environ()
    assert notifier.address == "/run/systemd/notify"
    assert notifier.watchdog_interval is None  # the watchdog watches another process
    assert systemd.inherited_socket() is None
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID",
                 "LISTEN_FDS", "LISTEN_FDNAMES"):
        assert name not in os.environ
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.Notifier.from_environ().watchdog_interval == 15.0
