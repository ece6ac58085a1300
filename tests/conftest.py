"""Shared fixtures: an isolated XDG sandbox per test and a real projctld running in it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from projctl_client.connection import Connection, connect


@dataclass
class Sandbox:
    """Config, state and runtime directories of one test, and ways to run projctl in them."""

    root: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> str:
        return os.path.join(self.root, "config", "projctl", "config.toml")

    @property
    def state_dir(self) -> str:
        return os.path.join(self.root, "state", "projctl")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.root, "run", "projctl", "projctld.sock")

    def write_config(self, text: str) -> None:
        os.makedirs(os.path.dirname(self.config_path), exist_ok=True)
        with open(self.config_path, "w") as handle:
            handle.write(text)

    def client(self, *args: str, cwd: str | None = None, env: dict[str, str] | None = None,
               timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run `projctl ARGS` as a user would, in a separate process."""
        return subprocess.run(
            [sys.executable, "-m", "projctl_client", *args], cwd=cwd or self.root,
            env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout,
        )

    def spawn_daemon(self, *extra: str) -> subprocess.Popen[bytes]:
        """Start `projctld run` in the foreground of a child process (not yet ready)."""
        return subprocess.Popen(
            [sys.executable, "-m", "projctld", "run", *extra], env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

    def start_daemon(self) -> subprocess.Popen[bytes]:
        """Start projctld and return once it answers."""
        process = self.spawn_daemon()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"projctld exited: {process.stderr.read().decode()}")
            try:
                connect(self.socket_path, timeout=5).close()
                return process
            except Exception:
                time.sleep(0.02)
        process.kill()
        raise AssertionError("projctld did not become ready in 15 s")

    def connect(self, timeout: float = 10) -> Connection:
        return connect(self.socket_path, timeout=timeout)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    # Short paths: a Unix socket path must fit in 107 bytes, pytest's tmp_path often does not.
    root = tempfile.mkdtemp(prefix="pj", dir="/tmp")
    box = Sandbox(root)
    variables = {
        "XDG_CONFIG_HOME": os.path.join(root, "config"),
        "XDG_STATE_HOME": os.path.join(root, "state"),
        "XDG_RUNTIME_DIR": os.path.join(root, "run"),
        "HOME": root,
        "PROJCTL_START_TIMEOUT": "20",
    }
    for name in ("PROJCTL_CONFIG", "PROJCTL_SOCKET", "PROJCTL_NO_AUTOSTART", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    box.env = dict(os.environ)
    yield box
    _stop_daemons(box)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def daemon(sandbox: Sandbox) -> Iterator[subprocess.Popen[bytes]]:
    """A running projctld in the sandbox; stopped with SIGTERM afterwards."""
    process = sandbox.start_daemon()
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _stop_daemons(box: Sandbox) -> None:
    """Stop whatever daemon a test left behind (autostarted ones are not our children)."""
    lock = box.socket_path + ".lock"
    try:
        with open(lock) as handle:
            # Only a held lock names a live daemon; a free one may name a pid reused since.
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pid = int(handle.read().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
