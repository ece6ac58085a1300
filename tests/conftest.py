"""Shared fixtures: an isolated XDG sandbox per test and a real projctld running in it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from projctl_client import git
from projctl_client.connection import Connection, connect, request
from projctld.sandbox.dataset import generate
from projctld.sandbox.demo import TOKEN, Upstreams, sandbox_config, start_fakes


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

    def start_daemon(self, *extra: str) -> subprocess.Popen[bytes]:
        """Start projctld (`projctld run EXTRA`) and return once it answers."""
        process = self.spawn_daemon(*extra)
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


def _variables(root: str) -> dict[str, str]:
    return {
        "XDG_CONFIG_HOME": os.path.join(root, "config"),
        "XDG_STATE_HOME": os.path.join(root, "state"),
        "XDG_RUNTIME_DIR": os.path.join(root, "run"),
        "HOME": root,
        "PROJCTL_START_TIMEOUT": "20",
    }


# DBUS_SESSION_BUS_ADDRESS: a test's daemon never shows notifications on the desktop of whoever
# runs the tests (tests/test_notify.py gives its daemons a bus of their own).
_CLEARED = ("PROJCTL_CONFIG", "PROJCTL_SOCKET", "PROJCTL_NO_AUTOSTART", "NO_COLOR",
            "DBUS_SESSION_BUS_ADDRESS")


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    # Short paths: a Unix socket path must fit in 107 bytes, pytest's tmp_path often does not.
    root = tempfile.mkdtemp(prefix="pj", dir="/tmp")
    box = Sandbox(root)
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in _variables(root).items():
        monkeypatch.setenv(name, value)
    box.env = dict(os.environ)
    yield box
    _stop_daemons(box)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def more_sandboxes() -> Iterator[Callable[[], Sandbox]]:
    """Makes further sandboxes (other devices of a team) beside `sandbox`, each with its own
    config, state and daemon; unlike `sandbox`, they leave this process's environment alone."""
    made: list[Sandbox] = []

    def make() -> Sandbox:
        root = tempfile.mkdtemp(prefix="pj", dir="/tmp")
        base = {k: v for k, v in os.environ.items() if k not in _CLEARED}
        made.append(Sandbox(root, {**base, **_variables(root)}))
        return made[-1]

    yield make
    for box in made:
        _stop_daemons(box)
        shutil.rmtree(box.root, ignore_errors=True)


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


@dataclass
class HubProcess:
    """A real `projctld hub serve` in a child process, and ways to stop it and make tokens."""

    database: str
    port: int = 0
    process: subprocess.Popen[str] | None = None
    extra: tuple[str, ...] = ()
    env: dict[str, str] | None = None  # None: this process's

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubProcess:
        """Start (again, on the same port once one was chosen) and wait for the ready line."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "projctld", "hub", "serve", "--database", self.database,
             "--port", str(self.port), *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
        )
        ready = [""]
        reader = threading.Thread(target=lambda: ready.__setitem__(
            0, self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(20)
        line = ready[0]
        if "listening on http://127.0.0.1:" not in line:
            self.process.kill()
            raise AssertionError(f"the hub did not start: {line!r} "
                                 f"{self.process.stderr.read()}")  # type: ignore[union-attr]
        self.port = int(line.split("127.0.0.1:")[1].split()[0])
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def token(self, user: str, *projects: str, write: bool = True) -> str:
        args = [sys.executable, "-m", "projctld", "hub", "token", "create", "--user", user,
                "--database", self.database, *(f"--project={p}" for p in projects)]
        result = subprocess.run([*args, "--write"] if write else args, capture_output=True,
                                text=True, timeout=30, check=True)
        return result.stdout.strip()


@pytest.fixture
def hub_server() -> Iterator[Callable[..., HubProcess]]:
    """Starts real hubs on SQLite files (or the database given); all stopped afterwards."""
    started: list[HubProcess] = []
    root = tempfile.mkdtemp(prefix="pjhub", dir="/tmp")

    def start(database: str | None = None, *extra: str,
              env: dict[str, str] | None = None) -> HubProcess:
        hub = HubProcess(database or f"sqlite:///{root}/hub{len(started)}.db", extra=extra,
                         env=env)
        started.append(hub.start())
        return hub

    yield start
    for hub in started:
        hub.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    """The fake GitHub, GitLab and Jira on loopback, with a small generated dataset."""
    with contextlib.ExitStack() as stack:
        yield start_fakes(stack, generate(github_repos=3, gitlab_projects=2, changes_per_repo=5,
                                          tickets=40, jira_projects=1))


CLOCK_SHIM = os.path.join(os.path.dirname(__file__), "clockshim")


def skewed(env: dict[str, str], seconds: float) -> dict[str, str]:
    """`env` for a process whose wall clock runs `seconds` off (tests/clockshim)."""
    path = env.get("PYTHONPATH")
    return {**env, "PROJCTL_TEST_CLOCK_SKEW": str(seconds),
            "PYTHONPATH": CLOCK_SHIM + (os.pathsep + path if path else "")}


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (for a server started next)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class FieldStatus:
    """A real projctld over the field dataset of bench/upstream_polling.py (5 projects, 125
    change requests, 300 tickets), refreshed, run from a checkout of project web on the
    branch of a pull request of mine; `view` is the status view the text is written from."""

    box: Sandbox
    up: Upstreams
    checkout: str
    view: dict


@pytest.fixture(scope="session")
def field_status() -> Iterator[FieldStatus]:
    with contextlib.ExitStack() as stack:
        data = generate(github_repos=15, gitlab_projects=10, changes_per_repo=8, tickets=300,
                        jira_projects=5)
        up = start_fakes(stack, data, token=TOKEN)
        root = tempfile.mkdtemp(prefix="pjf", dir="/tmp")
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        base = {k: v for k, v in os.environ.items() if k not in _CLEARED}
        box = Sandbox(root, {**base, **_variables(root)})
        mine = next(pr for prs in data.pulls.values() for pr in prs
                    if pr.author == data.github_login and pr.state == "open")
        checkout = os.path.join(root, "web")
        os.makedirs(checkout)
        for command in (["init", "-q", "-b", mine.head_ref],
                        ["commit", "-q", "--allow-empty", "-m", "x"]):
            subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", *command],
                           cwd=checkout, check=True)
        config = sandbox_config(up, projects=5, my_open_tickets=False,
                                paths={"web": [checkout]})
        box.write_config(_toml(config))
        os.chmod(box.config_path, 0o600)
        daemon = box.start_daemon()
        stack.callback(_stop_daemons, box)
        stack.callback(daemon.terminate)
        refreshed = box.client("refresh", "--wait", "60", timeout=90)
        assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
        with box.connect() as conn:
            view = conn.call(request("status", checkout=git.find_checkout(checkout),
                                     tickets_per_status=5))
        del view["type"]
        yield FieldStatus(box, up, checkout, view)


def _toml(config: object) -> str:
    """The TOML of a sandbox config: its upstream sections and projects, flat values."""
    lines = []
    tables = [(kind, getattr(config, kind)) for kind in ("github", "gitlab", "jira")]
    tables += [(f"projects.{name}", project) for name, project in config.projects.items()]
    for name, table in tables:
        lines.append(f"[{name}]")
        for key in table.__struct_fields__:
            value = getattr(table, key)
            if value is not None:
                lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"
