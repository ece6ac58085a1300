"""The state database: one SQLite file in WAL mode, migrated by numbered .sql files."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import time
from collections.abc import Iterator
from importlib import resources

from projctl_client.paths import InsecureDirectory, ensure_private_dir
from projctld.errors import StoreError

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str]]:
    """(number, sql) for every file in migrations/, in order; numbers must run 1, 2, 3, ..."""
    found = []
    for entry in resources.files("projctld.store").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    if [number for number, _ in found] != list(range(1, len(found) + 1)):
        raise StoreError("migrations are not numbered 0001, 0002, ... without gaps")
    return found


def make_private(path: str) -> None:
    """Make `path`'s directory 0700 and the database, its WAL and shared memory 0600 (SQLite
    gives the WAL and shared memory the database's mode): they hold every team event and every
    cached upstream reply."""
    directory = os.path.dirname(path)
    try:
        ensure_private_dir(directory)
    except InsecureDirectory as exc:
        raise StoreError(f"the state directory is not private: {exc}",
                         suggestions=["set XDG_STATE_HOME to a directory of your own"]) from None
    except OSError as exc:
        raise StoreError(
            f"cannot create the state directory {directory}: {exc.strerror}",
            suggestions=[f"check what is at {directory}, or set XDG_STATE_HOME elsewhere"],
        ) from None
    private_files(path)


def private_files(path: str) -> None:
    """Create the SQLite database `path` 0600 if it is missing, and tighten it, its WAL and its
    shared memory if they are looser; never through a link."""
    directory = os.path.dirname(path)
    for name in (path, path + "-wal", path + "-shm"):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                         | (os.O_CREAT if name == path else 0), 0o600)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreError(f"cannot open {name}: {exc.strerror}",
                             suggestions=[f"ls -l {directory}  # the file must be yours"]) from None
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                os.fchmod(fd, 0o600)  # made by an older projctld, or by hand
        except OSError as exc:
            raise StoreError(f"cannot make {name} private: {exc.strerror}",
                             suggestions=[f"ls -l {directory}  # the file must be yours"]) from None
        finally:
            os.close(fd)


class Database:
    """The open state database. One writer (the daemon's event loop); WAL lets readers in."""

    def __init__(self, path: str) -> None:
        self.path = path
        make_private(path)
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across application crashes in WAL mode; only power loss can
            # drop the last transactions, which the next poll or sync restores.
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA busy_timeout=5000")
            self.schema_version = self._migrate()
            self.created_at = self._created_at()
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def error(self, exc: sqlite3.Error) -> StoreError:
        """Translate a sqlite3 failure into what the user should do about it."""
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            suggestions = [
                f"mv {self.path} {self.path}.broken  # projctld starts afresh and re-learns "
                "what it knew from upstream; unsynced records stay in the moved file"
            ]
        else:
            suggestions = [f"check free space and permissions in {os.path.dirname(self.path)}"]
        return StoreError(
            f"the state database {self.path} cannot be used: {exc}",
            suggestions=suggestions,
            context={"path": self.path},
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside commits together or not at all."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def write_many(self, sql: str, params: list[tuple]) -> None:
        """Run one statement for every parameter tuple, all in one transaction."""
        if not params:
            return
        with self.transaction() as conn:
            conn.executemany(sql, params)

    def read(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def _migrate(self) -> int:
        current = self.conn.execute("PRAGMA user_version").fetchone()[0]
        known = migrations()
        if current > len(known):
            raise StoreError(
                f"the state database {self.path} has schema {current}, newer than this "
                f"projctld understands ({len(known)})",
                suggestions=["pip install --upgrade projctl", "projctl daemon restart"],
            )
        for number, sql in known[current:]:
            # executescript commits on its own, so the transaction is part of the script; the
            # version bump is inside it, so a migration applies entirely or not at all.
            try:
                self.conn.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;"
                )
            except sqlite3.Error:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        return len(known)

    def _created_at(self) -> float:
        self.conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('created_at', ?)", (str(time.time()),)
        )
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'created_at'").fetchone()
        return float(row[0])

    def close(self) -> None:
        self.conn.close()
