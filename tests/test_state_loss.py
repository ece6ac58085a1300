"""Nothing recorded is lost: a state directory removed under a running daemon, a damaged
database moved aside by the advised command, a backup taken while a daemon runs or after it was
killed. Real daemons, real files; every note is looked for after a restart."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import pytest

from projctld.store import salvage
from projctld.store.database import Database
from projctld.store.events import EventStore
from projctld.team.sync import events


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


def projctld(sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "projctld", *args], env=sandbox.env,
                          capture_output=True, text=True, timeout=60)


def run_advice(sandbox, advice: str) -> None:
    """Run a command line that projctl printed, as the user would in a shell."""
    env = {**sandbox.env, "PATH": os.path.dirname(sys.executable) + ":" + os.environ["PATH"]}
    done = subprocess.run(["bash", "-c", advice], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def kill_daemon(sandbox) -> None:
    """kill -9, as a crash or an OOM killer would; returns once the lock is free."""
    with open(sandbox.socket_path + ".lock") as handle:
        pid = int(handle.read())
    os.kill(pid, signal.SIGKILL)
    with open(sandbox.socket_path + ".lock") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # waits for the kernel to release the dead's lock


def state_check(sandbox) -> dict:
    result = sandbox.client("doctor", "--json", timeout=90)
    (check,) = [c for c in json.loads(result.stdout) if c["name"] == "state database"]
    return check


def test_the_advice_for_a_damaged_database_keeps_every_note(web) -> None:
    for text in ("one", "two", "three"):
        note(web, text)
    _, before = logged(web)
    database = os.path.join(web.state_dir, "state.db")
    # Damage (an index whose schema row is gone), written, like the notes, to the WAL only: the
    # daemon holds the database open, so closing this connection does not checkpoint it.
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("CREATE INDEX doomed ON snapshots(project)")
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("DELETE FROM sqlite_master WHERE name = 'doomed'")
    conn.close()
    kill_daemon(web)
    assert os.path.getsize(database + "-wal") > 0  # where the notes are

    check = state_check(web)
    assert check["status"] == "fail" and "is damaged" in check["detail"]
    assert check["fix"].startswith("projctl daemon stop && projctld db recover && "
                                   "projctl daemon start")
    run_advice(web, check["fix"])

    texts, after = logged(web)
    assert texts == ["one", "two", "three"]
    assert after["waiting"] == 3 and after["device"] == before["device"]
    assert state_check(web)["status"] == "ok"
    (aside,) = [n for n in os.listdir(web.state_dir) if n.startswith("state.db.broken-")]
    assert os.listdir(os.path.join(web.state_dir, aside)) == ["state.db"]  # WAL folded in
    note(web, "four")
    assert logged(web)[0][-1] == "four"


def test_the_advice_when_the_file_is_no_database_any_more(web) -> None:
    note(web, "one")
    assert web.client("daemon", "stop").returncode == 0
    database = os.path.join(web.state_dir, "state.db")
    with open(database, "r+b") as handle:
        handle.write(b"this is not sqlite" * 10)
    with open(database, "rb") as handle:
        damaged = handle.read()
    result = web.client("status")
    assert result.returncode == 3 and "cannot be used" in result.stderr
    (advice,) = [line.split("try: ", 1)[1] for line in result.stderr.splitlines()
                 if "projctld db recover" in line]
    run_advice(web, advice)
    assert web.client("status").returncode == 0
    (aside,) = [n for n in os.listdir(web.state_dir) if n.startswith("state.db.broken-")]
    with open(os.path.join(web.state_dir, aside, "state.db"), "rb") as handle:
        assert handle.read() == damaged  # kept as it was, for whoever can read more of it


def events_in(path: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT seq, pushed FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_a_backup_holds_what_the_wal_holds_while_running_and_after_a_kill(web) -> None:
    for text in ("one", "two"):
        note(web, text)
    running = os.path.join(web.root, "running.db")
    result = projctld(web, "db", "backup", running)
    assert result.returncode == 0, result.stderr
    assert "2 events, 2 not yet sent to the hub" in result.stderr
    note(web, "three")
    kill_daemon(web)
    killed = os.path.join(web.root, "killed.db")
    assert projctld(web, "db", "backup", killed).returncode == 0
    for copy, count in ((running, 2), (killed, 3)):
        assert not os.path.exists(copy + "-wal")  # one file, all of it
        assert os.stat(copy).st_mode & 0o777 == 0o600
        assert events_in(copy) == [(seq, 0) for seq in range(1, count + 1)]
    refused = projctld(web, "db", "backup", killed)
    assert refused.returncode == 1 and "exists already" in refused.stderr


def test_recover_refuses_while_the_daemon_runs(web) -> None:
    note(web, "one")
    listing = sorted(os.listdir(web.state_dir))
    result = projctld(web, "db", "recover")
    assert result.returncode == 1
    assert "projctld is running" in result.stderr and "projctl daemon stop" in result.stderr
    assert sorted(os.listdir(web.state_dir)) == listing
    assert logged(web)[0] == ["one"]
    # Any other process that has a database open (an sqlite3 shell here) keeps it too.
    copy = os.path.join(web.root, "copy.db")
    assert projctld(web, "db", "backup", copy).returncode == 0
    conn = sqlite3.connect(copy)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("SELECT count(*) FROM events").fetchall()
    refused = projctld(web, "db", "recover", "--database", copy)
    assert refused.returncode == 1 and f"a process has {copy} open" in refused.stderr
    conn.close()
    done = projctld(web, "db", "recover", "--database", copy)
    assert done.returncode == 0 and "holds 1 event, 1 of them not yet sent" in done.stderr


def test_recover_walks_a_table_from_both_ends_past_a_damaged_page(tmp_path) -> None:
    """Damage inside the events table itself: what reads from either end is kept, the newest
    events (the unsynced ones) among them, and the sync cursors start over so that the hub
    sends back what it holds of the rest."""
    path = str(tmp_path / "state.db")
    db = Database(path)
    store = EventStore(db)
    for number in range(3000):
        text = f"note {number} " + "x" * 100
        store.append(project="web", actor="ann", type="note.added",
                     payload=events.NoteAdded(note=events.uuid7(), text=text),
                     hlc=number + 1, now=1_800_000_000.0 + number)
    store.mark_pushed(list(range(1, 2991)))  # the newest ten wait for the hub
    db.write_many("INSERT INTO sync_cursors(project, after) VALUES (?, ?)", [("web", 42)])
    device = store.device
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # A leaf page from the middle of the events table (dbstat lists each table's pages).
    leaves = [row[0] for row in db.conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' ORDER BY pageno")]
    page_size = db.conn.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with open(path, "r+b") as handle:
        handle.seek((leaves[len(leaves) // 2] - 1) * page_size)
        handle.write(b"\xff" * page_size)

    done = salvage.recover(path)
    assert done.unreadable == ["events"] and done.device == device
    # One leaf page's events are gone (the hub has them: they were pushed), no more.
    assert 3000 - len(leaves) < done.events < 3000 and done.waiting == 10
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT max(seq) FROM events").fetchone() == (3000,)
        assert conn.execute("SELECT count(*) FROM sync_cursors").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (done.events,)
    finally:
        conn.close()
