"""Nothing recorded is lost: a state directory removed under a running daemon, a damaged
database moved aside by the advised command, a backup taken while a daemon runs or after it was
killed. Real daemons, real files; every note is looked for after a restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3

import pytest


@pytest.fixture
def web(sandbox):
    """A config with one project, `web`, that notes go to; no hub, so every note waits."""
    sandbox.write_config("[projects.web]\n")
    return sandbox


def note(sandbox, text: str, code: int = 0) -> str:
    result = sandbox.client("note", "-p", "web", text)
    assert result.returncode == code, result.stderr
    return result.stdout + result.stderr


def logged(sandbox) -> tuple[list[str], dict]:
    """The texts of web's notes, oldest first, and the sync view, from a daemon's log."""
    result = sandbox.client("log", "web", "--json", "--limit", "1000")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    return [e["payload"]["text"] for e in reply["events"] if e["type"] == "note.added"], \
        reply["sync"]


def restart(sandbox) -> None:
    assert sandbox.client("daemon", "stop").returncode == 0
    assert sandbox.client("daemon", "start").returncode == 0


def test_a_state_directory_removed_under_the_daemon_loses_nothing(web) -> None:
    for text in ("one", "two"):
        note(web, text)
    _, before = logged(web)
    shutil.rmtree(web.state_dir)
    note(web, "three")  # acknowledged only once it is in a file at the database's path
    database = os.path.join(web.state_dir, "state.db")
    assert os.path.exists(database)
    assert os.stat(web.state_dir).st_mode & 0o777 == 0o700
    assert os.stat(database).st_mode & 0o777 == 0o600
    result = web.client("doctor", "--json", timeout=90)
    (check,) = [c for c in json.loads(result.stdout) if c["name"] == "state database"]
    assert check["status"] == "warn" and "nothing was lost" in check["detail"]
    # Removed again, and this time nothing is written before the daemon stops.
    shutil.rmtree(web.state_dir)
    restart(web)
    texts, after = logged(web)
    assert texts == ["one", "two", "three"]
    assert after["waiting"] == 3 and after["device"] == before["device"]
    note(web, "four")  # the device goes on with its own sequence
    assert logged(web)[0][-1] == "four"


def test_a_database_that_cannot_be_written_again_refuses_records_and_doctor_says_so(web) -> None:
    note(web, "one")
    shutil.rmtree(web.state_dir)
    with open(web.state_dir, "w"):  # where the directory was, a file: it cannot come back
        pass
    said = note(web, "refused", code=1)
    assert "nothing more is recorded" in said and "was removed while projctld ran" in said
    status = json.loads(web.client("status", "--json").stdout)
    assert "was removed while projctld ran" in status["state"]["last_error"]
    result = web.client("doctor", "--json", timeout=90)
    (check,) = [c for c in json.loads(result.stdout) if c["name"] == "state database"]
    assert check["status"] == "fail"
    assert check["detail"].startswith("projctld runs but its database was removed")
    assert check["fix"].startswith(f"mkdir -p -m 700 {web.state_dir}")
    os.unlink(web.state_dir)
    note(web, "two")  # the file comes back with everything the daemon held
    restart(web)
    assert logged(web)[0] == ["one", "two"]
    result = web.client("doctor", "--json", timeout=90)
    (check,) = [c for c in json.loads(result.stdout) if c["name"] == "state database"]
    assert check["status"] == "ok", check


def test_a_database_replaced_under_the_daemon_is_not_overwritten(web) -> None:
    note(web, "one")
    database = os.path.join(web.state_dir, "state.db")
    # Another database put in its place (a restore by hand while the daemon ran).
    other = os.path.join(web.root, "other.db")
    sqlite3.connect(other).execute("CREATE TABLE mine (x)").connection.close()
    with open(other, "rb") as handle:
        content = handle.read()
    os.replace(other, database)
    said = note(web, "refused", code=1)
    assert "was replaced by another file while projctld ran" in said
    (aside,) = [name for name in os.listdir(web.state_dir) if name.startswith("state.db.held-")]
    kept = sqlite3.connect(os.path.join(web.state_dir, aside))
    assert kept.execute("SELECT type FROM events").fetchall() == [("note.added",)]
    kept.close()
    with open(database, "rb") as handle:
        assert handle.read() == content  # the new file is left as it was put there
    restart(web)  # now on the new file, which the old one's WAL did not mix into
    tables = sqlite3.connect(database).execute(
        "SELECT name FROM sqlite_master WHERE name IN ('mine', 'events')").fetchall()
    assert sorted(tables) == [("events",), ("mine",)]
    assert logged(web)[0] == []


def test_killed_daemon_left_notes_only_in_the_wal(web) -> None:
    """The premise of the advice below: after kill -9, recent notes live only in the WAL."""
    note(web, "in the wal")
    pid = json.loads(web.client("status", "--json").stdout)["daemon"]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert os.path.getsize(os.path.join(web.state_dir, "state.db-wal")) > 0
