"""`projctld db backup` and `projctld db recover`: a copy of the state database that leaves
nothing behind, and a new database from a damaged one with every row that can still be read.

`mv state.db state.db.broken` is not enough: the newest writes may live only in `state.db-wal`,
which stays behind, and a new database started beside a stale WAL reads it as its own. Here
the files move together, into a directory of their own, and the WAL is read (and checkpointed
into the moved file) rather than left to be mixed up.

What cannot be learned again is this device's events (the unsynced ones above all) and its
identity, which every later event continues: those are what recovery is for. Upstream snapshots,
cached replies, checkouts and workflow runs are carried over when they read whole and are
otherwise learned again; the folded project state is rebuilt from the events, and the sync
cursors start over unless every event was read, so that the hub sends back anything missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from projctld.errors import StoreError
from projctld.store.backup import copy_database
from projctld.store.database import Database, migrations, private_directory
from projctld.store.events import EventStore

# Rebuilt from the events, never copied.
_DERIVED = ("deployments", "notes", "branches")
_COMPANIONS = ("-wal", "-shm")
# Rows copied at a time: cached replies can be large.
_BATCH = 500
# The byte of the shared-memory file that every SQLite connection to a WAL database holds a
# shared lock on while it is open (UNIX_SHM_DMS in SQLite's os_unix.c).
_SHM_DMS = 128


@dataclass
class Recovered:
    aside: str
    events: int = 0
    waiting: int = 0
    device: str | None = None
    unreadable: list[str] = field(default_factory=list)  # tables not read whole
    opened: bool = True  # False: nothing in the damaged file could be read at all


def in_use(path: str) -> bool:
    """True while a process (a daemon, a doctor, an sqlite3 shell) has the database open."""
    try:
        fd = os.open(path + "-shm", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # no shared memory: no connection
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS, os.SEEK_SET)
    except OSError:
        return True
    finally:
        os.close(fd)  # also releases the probe's lock
    return False


def refuse_if_in_use(path: str) -> None:
    if in_use(path):
        raise StoreError(f"a process has {path} open (projctld, or an sqlite3 shell)",
                         suggestions=["projctl daemon stop  # then run this again"],
                         code="in_use")


def backup(path: str, destination: str) -> tuple[int, int]:
    """A consistent copy of the database `path` at `destination`, WAL included, while a daemon
    writes or after one was killed. Returns (events, events not yet sent to the hub)."""
    source = _open_existing(path)
    try:
        copy_database(source, destination)
    finally:
        source.close()
    return _count_events(destination)


def recover(path: str) -> Recovered:
    """Move the database at `path` aside with its WAL, and put in its place a new one holding
    everything that can be read from it. Nothing may have it open (refuse_if_in_use)."""
    refuse_if_in_use(path)
    if not os.path.lexists(path):
        raise StoreError(f"no state database at {path}: nothing to recover",
                         suggestions=["projctl daemon start  # creates a new one"])
    _refuse_newer(path)
    aside = _move_aside(path)
    moved = os.path.join(aside, os.path.basename(path))
    result = Recovered(aside=aside)
    fresh = path + ".recovering"
    for suffix in ("", *_COMPANIONS):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fresh + suffix)  # a recovery that was interrupted
    target = Database(fresh)
    source = None
    try:
        try:
            source = sqlite3.connect(f"file:{quote(moved)}?mode=rw", uri=True,
                                     isolation_level=None)
            tables = _tables(source)
        except sqlite3.DatabaseError:  # not a database at all (its header is gone)
            result.opened, tables = False, {}
        if tables:
            with target.transaction():  # all of it, or a failed recovery that left no file
                result.unreadable = _carry(source, target, tables)
        store = EventStore(target)  # this device's identity, carried over or new
        store.refold()
        result.device = store.device
    finally:
        if source is not None:
            source.close()  # the last connection: the moved WAL is checkpointed into it
        target.close()
    result.events, result.waiting = _count_events(fresh)
    os.rename(fresh, path)
    return result


def _open_existing(path: str) -> sqlite3.Connection:
    if not os.path.exists(path):
        raise StoreError(f"no state database at {path}",
                         suggestions=["projctld db backup --database PATH DESTINATION  # for "
                                      "another one"])
    try:
        return sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}",
                         suggestions=["projctld db recover  # if it is damaged"]) from None


def _move_aside(path: str) -> str:
    """Move the database and its WAL and shared memory into `PATH.broken-TIME/`, under their
    own names, so that they stay a pair; the WAL first, so that an interruption never leaves
    the database without the WAL it needs at `path`."""
    aside = f"{path}.broken-{time.strftime('%Y%m%d-%H%M%S')}"
    private_directory(os.path.join(aside, "x"))
    for suffix in (*_COMPANIONS, ""):
        with contextlib.suppress(FileNotFoundError):
            os.rename(path + suffix, os.path.join(aside, os.path.basename(path) + suffix))
    return aside


def _tables(conn: sqlite3.Connection) -> dict[str, list[str]]:
    tables = {}
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        with contextlib.suppress(sqlite3.DatabaseError):
            tables[name] = [row[1] for row in conn.execute(f"PRAGMA table_info({name})")]
    return tables


def _refuse_newer(path: str) -> None:
    """A newer projctl's database is recovered by that projctl, which knows all its columns.
    Read from the file's header (user_version, at byte 60), which needs no connection."""
    with open(path, "rb") as handle:
        header = handle.read(64)
    if header.startswith(b"SQLite format 3\x00") and len(header) == 64:
        version = int.from_bytes(header[60:64], "big")
        if version > len(migrations()):
            raise StoreError(f"{path} has schema {version}, newer than this projctld "
                             f"understands ({len(migrations())}): nothing was changed",
                             suggestions=["pip install --upgrade projctl  # then run this "
                                          "again"])


def _carry(source: sqlite3.Connection, target: Database,
           tables: dict[str, list[str]]) -> list[str]:
    """Copy every row that reads from `source` into `target`; the tables not read whole."""
    unreadable = []
    wanted = {name: cols for name, cols in _tables(target.conn).items() if name not in _DERIVED}
    whole_events = True
    for name, columns in wanted.items():
        shared = [c for c in columns if c in tables.get(name, [])]
        if not shared or name == "sync_cursors":
            continue
        if not _copy(source, target, name, shared):
            unreadable.append(name)
            whole_events = whole_events and name != "events"
    # Every event is here, so the hub has nothing more to send from before the cursors; else
    # they start over (none copied) and the hub sends back what it holds.
    if whole_events and "sync_cursors" in tables and \
            not _copy(source, target, "sync_cursors", ["project", "after"]):
        target.conn.execute("DELETE FROM sync_cursors")
    return unreadable


def _copy(source: sqlite3.Connection, target: Database, table: str, columns: list[str]) -> bool:
    """Copy the rows of `table` that can be read, in batches, walking it from both ends past
    damage (the primary key keeps a row read twice once); True when it read whole."""
    select = f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid"
    insert = (f"INSERT OR REPLACE INTO {table}({', '.join(columns)}) VALUES "
              f"({', '.join('?' * len(columns))})")
    for order in ("", " DESC"):
        batch: list[tuple] = []
        try:
            # Row by row: a fetchmany that meets the damage would drop what it had read.
            for row in source.execute(select + order):
                batch.append(row)
                if len(batch) == _BATCH:
                    target.conn.executemany(insert, batch)
                    batch.clear()
            stopped = False
        except sqlite3.DatabaseError:
            stopped = True
        target.conn.executemany(insert, batch)
        if not stopped:
            return order == ""
    return False


def _count_events(path: str) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True)
    try:
        return conn.execute("SELECT count(*), coalesce(sum(pushed = 0), 0) FROM events").fetchone()
    except sqlite3.Error:
        return 0, 0
    finally:
        conn.close()
