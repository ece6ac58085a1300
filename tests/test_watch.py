"""`projctl watch` in a real terminal (tmux): it redraws when the daemon's view changes (pushed
over the socket, never polled) and quits cleanly on `q` or Ctrl-C, the screen restored; and
`--json`, one line per change."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

from test_status_command import Tmux
from test_upstream_status import config_text, configure, git_checkout, my_pull


def _refresh(sandbox) -> None:
    done = sandbox.client("refresh", "--wait", "30")
    assert done.returncode == 0, done.stdout + done.stderr


def _until(tmux: Tmux, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux("capture-pane", "-p", "-t", "t")
        if text in screen:
            return screen
        assert time.monotonic() < deadline, f"{text!r} never showed; the screen:\n{screen}"
        time.sleep(0.05)


def test_watch_redraws_on_a_change_and_quits_restoring_the_screen(sandbox, upstreams) -> None:
    pull = my_pull(upstreams)
    checkout = git_checkout(os.path.join(sandbox.root, "web"), pull.head_ref)
    configure(sandbox, config_text(upstreams, paths=[checkout]))
    sandbox.start_daemon()
    _refresh(sandbox)
    tmux = Tmux(sandbox.root, sandbox.env)
    try:
        for quit_key in ("q", "C-c"):
            command = (f"cd {shlex.quote(checkout)} && echo before-watch && "
                       f"{shlex.quote(sys.executable)} -m projctl_client watch; "
                       f"echo \"[exit $?]\"; sleep 600")
            tmux("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", command)
            screen = _until(tmux, f"{pull.repo}#{pull.number}")
            assert "before-watch" not in screen  # drawn on a screen of its own
            title = f"Renamed {quit_key} by the test"
            pull.title, pull.updated_at = title, time.time()
            _refresh(sandbox)
            _until(tmux, title)  # redrawn in place, pushed by the daemon
            tmux("send-keys", "-t", "t", quit_key)
            screen = _until(tmux, "[exit 0]")
            assert "before-watch" in screen and title not in screen  # the screen restored
            tmux("kill-session", "-t", "t")
    finally:
        tmux.stop()


def test_watch_json_writes_one_line_per_change(sandbox, upstreams) -> None:
    pull = my_pull(upstreams)
    configure(sandbox, config_text(upstreams))
    sandbox.start_daemon()
    _refresh(sandbox)
    watching = subprocess.Popen([sys.executable, "-m", "projctl_client", "watch", "--json"],
                                env=sandbox.env, stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(watching.stdout.readline())
        assert first["projects"][0]["name"] == "web"
        _refresh(sandbox)  # a poll that changes nothing shown: no line
        pull.title, pull.updated_at = "Renamed for the JSON watcher", time.time()
        _refresh(sandbox)
        second = json.loads(watching.stdout.readline())
        titles = [cr["title"] for cr in second["projects"][0]["change_requests"]]
        assert "Renamed for the JSON watcher" in titles
    finally:
        watching.terminate()
        watching.wait(10)
