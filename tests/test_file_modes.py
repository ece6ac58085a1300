"""What projctld keeps on disk is private, and it touches nothing outside its own files: real
daemons, a real hub, a shared sticky directory with a planted link, run as whoever runs the tests
(root here)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time

import pytest


def mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_state_files_are_0600_in_0700_directories_and_loose_ones_are_tightened(sandbox) -> None:
    # What an older projctl left: a state directory of mode 755, a database and a log of 644.
    os.makedirs(sandbox.state_dir, mode=0o755)
    os.chmod(sandbox.state_dir, 0o755)
    for name in ("state.db", "projctld.log"):
        with open(os.path.join(sandbox.state_dir, name), "w"):
            pass
        os.chmod(os.path.join(sandbox.state_dir, name), 0o644)
    # The sqlite file must be a database: an empty file is one.
    assert sandbox.client("note", "-p", "web", "x").returncode != 0  # no project: still starts
    assert sandbox.client("ping").returncode == 0
    assert mode(sandbox.state_dir) == 0o700
    for name in ("state.db", "state.db-wal", "state.db-shm", "projctld.log"):
        assert mode(os.path.join(sandbox.state_dir, name)) == 0o600, name
    assert mode(os.path.dirname(sandbox.socket_path)) == 0o700
    assert mode(sandbox.socket_path) == 0o600
    assert mode(sandbox.socket_path + ".lock") == 0o600


def test_the_demo_daemon_keeps_its_state_private_too(sandbox) -> None:
    result = sandbox.client("demo", timeout=90)
    assert result.returncode == 0, result.stderr
    sandbox_dir = os.path.join(sandbox.state_dir, "sandbox")
    assert mode(sandbox.state_dir) == mode(sandbox_dir) == 0o700
    for name in ("state.db", "projctld.log"):
        assert mode(os.path.join(sandbox_dir, name)) == 0o600
    assert sandbox.client("demo", "--stop").returncode == 0


def test_the_hubs_default_database_is_private(sandbox) -> None:
    # No --database: $XDG_STATE_HOME/projctl/hub.db.
    result = subprocess.run(
        [sys.executable, "-m", "projctld", "hub", "token", "create", "--user", "ann",
         "--project", "web"], env={k: v for k, v in sandbox.env.items()
                                   if k != "PROJCTL_HUB_DATABASE"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert mode(sandbox.state_dir) == 0o700
    assert mode(os.path.join(sandbox.state_dir, "hub.db")) == 0o600


def test_doctor_flags_a_loose_state_directory_with_the_fix(sandbox) -> None:
    assert sandbox.client("ping").returncode == 0
    assert sandbox.client("daemon", "stop").returncode == 0
    os.chmod(sandbox.state_dir, 0o755)
    database = os.path.join(sandbox.state_dir, "state.db")
    os.chmod(database, 0o644)
    result = sandbox.client("doctor", "--json", timeout=90)
    (check,) = [c for c in json.loads(result.stdout) if c["name"] == "state database"]
    assert result.returncode == 1 and check["status"] == "fail"
    assert f"{sandbox.state_dir} has mode 755, not 700" in check["detail"]
    assert "state.db has mode 644, not 600" in check["detail"]
    # The read-only look at the database leaves a WAL and shared memory of the database's mode.
    assert check["fix"].startswith(f"chmod 700 {sandbox.state_dir} && chmod 600 {database}")
    # The fix, as printed, mends it.
    subprocess.run(check["fix"], shell=True, check=True)
    result = sandbox.client("doctor", "--json", timeout=90)
    (check,) = [c for c in json.loads(result.stdout) if c["name"] == "state database"]
    assert check["status"] == "ok", check


def _snapshot(directory: str) -> dict[str, tuple]:
    """Every entry in `directory`: its type, mode, owner, size and content (for files)."""
    found = {".": (mode(directory), os.lstat(directory).st_uid)}
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        info = os.lstat(path)
        content = None
        if stat.S_ISLNK(info.st_mode):
            content = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            with open(path, "rb") as handle:
                content = handle.read()
        found[name] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid,
                       content)
    return found


def test_a_daemon_in_a_shared_sticky_directory_changes_nothing_there(sandbox) -> None:
    """PROJCTL_SOCKET in a directory like /tmp, where another user planted a link at the lock's
    path pointing at a file of the daemon's user: the daemon refuses the directory, with what to
    do instead, and leaves the directory, the link and the file as they were."""
    shared = tempfile.mkdtemp(prefix="pjshared", dir="/tmp")
    try:
        os.chmod(shared, 0o1777)
        victim = os.path.join(sandbox.root, "victim")
        with open(victim, "w") as handle:
            handle.write("precious\n")
        lock = os.path.join(shared, "x.sock.lock")
        os.symlink(victim, lock)
        if os.geteuid() == 0:
            os.lchown(lock, 65534, 65534)  # planted by another user, as on a real machine
        before, victim_before = _snapshot(shared), _snapshot(sandbox.root)["victim"]

        env = {"PROJCTL_SOCKET": os.path.join(shared, "x.sock")}
        daemon = subprocess.run([sys.executable, "-m", "projctld", "run"], capture_output=True,
                                text=True, timeout=60, env={**sandbox.env, **env})
        client = sandbox.client("note", "-p", "web", "hello", env=env)
        doctor = json.loads(sandbox.client("doctor", "--json", env=env, timeout=90).stdout)

        assert daemon.returncode == 1 and "Traceback" not in daemon.stderr
        assert f"{shared} is shared: other users may write in it (mode 1777)" in daemon.stderr
        advice = f"export PROJCTL_SOCKET=/tmp/projctl-{os.getuid()}/projctld.sock"
        assert advice in daemon.stderr
        assert client.returncode == 3 and f"{shared} is shared" in client.stderr
        (check,) = [c for c in doctor if c["name"] == "socket"]
        assert check["status"] == "fail" and check["detail"].startswith(f"{shared} is shared")
        assert check["fix"].startswith(advice)  # never `chmod 700` of a shared directory
        assert _snapshot(shared) == before
        assert _snapshot(sandbox.root)["victim"] == victim_before
    finally:
        subprocess.run(["rm", "-rf", shared], check=True)


def test_a_link_at_the_lock_path_is_never_followed(sandbox) -> None:
    run_dir = os.path.dirname(sandbox.socket_path)
    os.makedirs(run_dir, mode=0o700)
    victim = os.path.join(sandbox.root, "victim")
    with open(victim, "w") as handle:
        handle.write("precious\n")
    os.symlink(victim, sandbox.socket_path + ".lock")
    result = sandbox.client("ping")
    assert result.returncode == 3
    assert f"the lock file {sandbox.socket_path}.lock is a symbolic link" in result.stderr
    with open(victim) as handle:
        assert handle.read() == "precious\n"
    assert not os.path.exists(sandbox.socket_path)


@pytest.mark.parametrize("as_root", [False, True])
def test_the_advice_for_a_socket_path_too_long_works(sandbox, as_root) -> None:
    """The suggestion is run as printed, by root and by an ordinary user, and a daemon then
    serves there. Their temporary directory is a shared sticky one, as /tmp is."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to be root and to become an ordinary user")
    user = [] if as_root else ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if not as_root and subprocess.run(
            [*user, sys.executable, "-c", "import projctld, projctl_client, msgspec, anyio"],
            capture_output=True, timeout=60, cwd="/").returncode != 0:
        # A checkout (or its virtualenv) under a directory only root may enter, as a clone
        # in a 0700 /tmp is: the ordinary user cannot run this projctl at all.
        pytest.skip(f"uid 65534 cannot import projctl from {sys.prefix} (a directory above "
                    "it is closed to other users); the root case still runs")
    # Under a temporary directory every user can reach (this machine's /tmp may not be one).
    parent = next(p for p in ("/tmp", "/var/tmp", "/dev/shm") if mode(p) == 0o1777)
    tmp = tempfile.mkdtemp(prefix="pjtmp", dir=parent)
    os.chmod(tmp, 0o1777)
    home = os.path.join(tmp, "home")
    os.mkdir(home)
    os.chmod(home, 0o777)  # the ordinary user's home, config and state
    env = {**{k: v for k, v in sandbox.env.items() if k != "XDG_RUNTIME_DIR"},
           "PROJCTL_SOCKET": "/tmp/" + "x" * 120 + ".sock", "TMPDIR": tmp, "HOME": home,
           "XDG_STATE_HOME": home, "XDG_CONFIG_HOME": home, "PROJCTL_START_TIMEOUT": "30"}
    try:
        failed = subprocess.run([*user, sys.executable, "-m", "projctld", "run"],
                                capture_output=True, text=True, timeout=60, env=env, cwd=tmp)
        assert failed.returncode == 1, failed.stderr
        (advice,) = [line.split("try: ", 1)[1] for line in failed.stderr.splitlines()
                     if "try: export PROJCTL_SOCKET=" in line]
        uid = 0 if as_root else 65534
        assert advice.startswith(f"export PROJCTL_SOCKET={tmp}/projctl-{uid}/projctld.sock")
        # The shell runs the advice as printed; this Python may not be runnable from a shell
        # of the ordinary user here, so the shell only reports what the advice set.
        shell = subprocess.run([*user, "bash", "-c", f'{advice}\nprintf %s "$PROJCTL_SOCKET"'],
                               capture_output=True, text=True, timeout=60, env=env, cwd=tmp)
        advised = {**env, "PROJCTL_SOCKET": shell.stdout, "PROJCTL_NO_AUTOSTART": "1"}
        daemon = subprocess.Popen([*user, sys.executable, "-m", "projctld", "run"], env=advised,
                                  cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def client(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*user, sys.executable, "-m", "projctl_client", *args],
                                  capture_output=True, text=True, timeout=60, env=advised,
                                  cwd=tmp)

        deadline = time.monotonic() + 30
        while (pinged := client("ping")).returncode != 0 and time.monotonic() < deadline \
                and daemon.poll() is None:
            time.sleep(0.1)
        assert pinged.returncode == 0, pinged.stderr + daemon.stderr.read().decode()
        # A note for a project that is not configured: refused by a daemon that serves.
        assert client("note", "-p", "nowhere", "x").returncode == 1
        assert client("daemon", "stop").returncode == 0
        assert daemon.wait(timeout=30) == 0
        assert mode(os.path.join(tmp, f"projctl-{uid}")) == 0o700
        assert mode(tmp) == 0o1777
    finally:
        subprocess.run(["rm", "-rf", tmp], check=False)
