"""`projctl watch` and `projctl wait`: the daemon's streams, drawn or waited on.

Neither polls: each sends one request and reads the frames the daemon pushes. A daemon that
stops (a restart) ends its stream with reason "stopping"; both connect again and go on.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time

from projctl_client import git, refs, terminal
from projctl_client.connection import (
    ClientError,
    Connection,
    DaemonError,
    DaemonUnavailable,
    connect,
    request,
)
from projctl_client.daemonctl import connect_or_start

# Exit codes of `projctl wait`.
PASSED, FAILED, BAD_USAGE, TIMED_OUT = 0, 1, 2, 124
_OUTCOME_EXIT = {"passed": PASSED, "approved": PASSED, "failed": FAILED,
                 "changes_requested": FAILED, "closed": FAILED, "timeout": TIMED_OUT}
# Requests answered with a refusal that is the user's to fix: exit 2, as bad usage.
_USAGE_CODES = ("bad_usage", "unknown_ref", "unknown_project")
# How long a stream waits for a restarting daemon before giving up (watch; wait has its timeout).
RECONNECT_FOR = 30.0
_ENTER, _LEAVE = "\033[?1049h\033[?25l", "\033[?25h\033[?1049l"


def _checkout() -> dict | None:
    try:
        return git.find_checkout(os.getcwd())
    except OSError:
        return None


def _reconnect(until: float) -> Connection:
    """A connection to the daemon, tried until `until` (time.monotonic) while it restarts."""
    while True:
        try:
            return connect()
        except DaemonUnavailable:
            if time.monotonic() >= until:
                raise
            time.sleep(0.1)


# watch

def watch(as_json: bool, short: bool, project: str | None) -> int:
    out = sys.stdout
    screen = not as_json and out.isatty()
    fields: dict[str, object] = {"output": "json"} if as_json else {
        "output": "short" if short else "text", "tickets_per_status": 3,
        "colours": terminal.colours(out), "links": terminal.links(out),
        "home": os.path.expanduser("~")}
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    old_wakeup = signal.set_wakeup_fd(wake_write)
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: None) if screen else None
    keys = _Keys() if screen and sys.stdin.isatty() else None
    if screen:
        out.write(_ENTER)
        out.flush()
    try:
        conn = connect_or_start()
        while True:
            fields["width"] = terminal.width(out)
            conn.send(request("watch", checkout=_checkout(), project=project, **fields))
            ended = _draw_until(conn, out, screen, as_json, keys, wake_read)
            conn.close()
            if ended == "quit":
                return 0
            if ended == "stopping":
                conn = _reconnect(time.monotonic() + RECONNECT_FOR)
            else:  # resized: ask again for the new width
                conn = connect()
    except KeyboardInterrupt:
        return 0
    except ClientError as exc:
        if screen:
            out.write(_LEAVE)
            screen = False
        from projctl_client import render

        print(render.error(exc), file=sys.stderr)
        return BAD_USAGE if isinstance(exc, DaemonError) and exc.code in _USAGE_CODES \
            else exc.exit_code
    finally:
        if keys is not None:
            keys.restore()
        if screen:
            out.write(_LEAVE)
            out.flush()
        signal.set_wakeup_fd(old_wakeup)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        os.close(wake_read)
        os.close(wake_write)


def _draw_until(conn: Connection, out: object, screen: bool, as_json: bool,
                keys: _Keys | None, wake: int) -> str:
    """Draw each frame until the user quits ("quit"), the terminal is resized ("resized") or
    the daemon stops ("stopping")."""
    watched = [conn.fileno(), wake] + ([keys.fd] if keys else [])
    while True:
        ready, _, _ = select.select(watched, [], [])
        if keys is not None and keys.fd in ready and keys.quit():
            return "quit"
        if wake in ready:
            os.read(wake, 512)
            if screen:
                return "resized"
        if conn.fileno() not in ready:
            continue
        try:
            frame = conn.receive()
        except DaemonUnavailable:
            return "stopping"
        if frame["type"] == "stream_end":
            return "stopping" if frame.get("reason") == "stopping" else "quit"
        text = frame["output"].decode() if frame["type"] == "status_output" \
            else json.dumps({k: v for k, v in frame.items() if k != "type"})
        if as_json:
            out.write(json.dumps(json.loads(text), separators=(",", ":")) + "\n")  # type: ignore[attr-defined]
        elif screen:
            rows = os.get_terminal_size(out.fileno()).lines  # type: ignore[attr-defined]
            lines = text.rstrip("\n").split("\n")[:max(1, rows - 1)]
            out.write("\033[H\033[2J" + "\n".join(lines))  # type: ignore[attr-defined]
        else:
            out.write(text + "\n")  # type: ignore[attr-defined]
        out.flush()  # type: ignore[attr-defined]


class _Keys:
    """The terminal's keys one at a time (cbreak: Ctrl-C still interrupts), restored after."""

    def __init__(self) -> None:
        import termios
        import tty

        self.fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)

    def quit(self) -> bool:
        return "q" in os.read(self.fd, 64).decode(errors="replace").lower()

    def restore(self) -> None:
        import termios

        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)


# wait

def wait(what: str, ref: str | None, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    here = _checkout()
    try:
        conn = connect_or_start()
        fields: dict[str, object] = {"what": what}
        if ref is not None:
            view = conn.call(request("status", checkout=here))
            fields["url"] = refs.resolve(view, ref).url
        else:
            fields["checkout"] = here
        said = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"projctl: timed out after {timeout:g} s", file=sys.stderr)
                return TIMED_OUT
            conn.send(request("wait", timeout=left, **fields))
            outcome, said = _follow(conn, said)
            conn.close()
            if outcome is not None:
                return outcome
            print("projctl: projctld is restarting; waiting on", file=sys.stderr)
            try:
                conn = _reconnect(deadline)
            except DaemonUnavailable:
                print(f"projctl: timed out after {timeout:g} s (projctld did not come back)",
                      file=sys.stderr)
                return TIMED_OUT
    except KeyboardInterrupt:
        return 130
    except ClientError as exc:
        from projctl_client import render

        print(render.error(exc), file=sys.stderr)
        if isinstance(exc, DaemonUnavailable) or (
                isinstance(exc, DaemonError) and exc.code not in _USAGE_CODES):
            return exc.exit_code
        return BAD_USAGE  # a REF that names nothing, a checkout with no branch, ...


def _follow(conn: Connection, said: str | None) -> tuple[int | None, str | None]:
    """Read progress until an outcome (its exit code) or the daemon stops (None)."""
    while True:
        try:
            frame = conn.receive()
        except DaemonUnavailable:
            return None, said
        if frame["type"] == "stream_end":
            return None, said
        line = progress_line(frame)
        outcome = frame.get("outcome")
        if outcome is not None:
            print(line)
            for name in frame.get("failing") or []:
                print(f"  failed: {name}")
            if frame.get("ci_url") and outcome in ("failed", "passed"):
                print(f"  {frame['ci_url']}")
            if frame.get("url"):
                print(f"  {frame['url']}")
            return _OUTCOME_EXIT[str(outcome)], said
        if line != said:
            print(line, file=sys.stderr)
            said = line


# CI's states as a sentence says them ("is still failing", not "is still failure").
_STATE_WORDS = {"success": "passing", "failure": "failing", "canceled": "cancelled"}


def progress_line(frame: dict) -> str:
    what = "CI" if frame["what"] == "ci" else "review"
    target, outcome = frame["target"], frame.get("outcome")
    state = _STATE_WORDS.get(frame["state"], frame["state"].replace("_", " "))
    note = f" ({frame['note']})" if frame.get("note") else ""
    if outcome == "timeout":
        return f"timed out: {what} of {target} is still {state}{note}"
    if outcome is not None:
        return f"{what} {str(outcome).replace('_', ' ')}: {target}{note}"
    return f"waiting: {what} of {target} is {state}{note}"
