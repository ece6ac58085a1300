"""The state database: one SQLite file in WAL mode, migrated by numbered .sql files."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sqlite3
import stat
import time
from collections.abc import Iterator
from importlib import resources

from projctl_client.paths import InsecureDirectory, database_path, ensure_private_dir
from projctld.errors import StoreError
from projctld.logging import get_logger
from projctld.store.backup import copy_database

log = get_logger(__name__)

# SQLITE_CORRUPT and SQLITE_NOTADB: what `projctld db recover` is for.
_DAMAGED = (11, 26)
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


def recover_command(path: str) -> str:
    """The one safe way to move a damaged state database aside (never `mv`, which leaves its
    WAL, and the newest records with it, behind): projctld/store/salvage.py."""
    database = "" if path == database_path() else f" --database {shlex.quote(path)}"
    return (f"projctl daemon stop && projctld db recover{database} && projctl daemon start  "
            "# moves it aside with its WAL and keeps every event that can be read, the "
            "unsynced ones too")


def make_private(path: str) -> None:
    """Make `path`'s directory 0700 and the database, its WAL and shared memory 0600 (SQLite
    gives the WAL and shared memory the database's mode): they hold every team event and every
    cached upstream reply."""
    private_directory(path)
    private_files(path)


def private_directory(path: str) -> None:
    """Create the directory of the database `path` 0700, or check that it is private."""
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
    """The open state database. One writer (the daemon's event loop); WAL lets readers in.

    The file it holds open must stay the one at its path: a state directory removed while the
    daemon runs (a cleanup script, `rm -rf ~/.local/state`) would otherwise take every later
    write with it, acknowledged and gone at the next start. `verify` notices (it runs around
    every write transaction and every few seconds) and writes the file again from the one held
    open, which still has everything; see `_rewrite`.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        # Why writes are refused, while the file at `path` is not the one held (else None),
        # and what mends it.
        self.problem: str | None = None
        self.problem_fix: str | None = None
        self.rewritten_at: float | None = None
        make_private(path)
        try:
            self.conn = _connect(path)
            self._identity = _identity(path)
            self.schema_version = self._migrate()
            self.created_at = self._created_at()
            self._companions = _companions(path)  # there once something was written
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def error(self, exc: sqlite3.Error) -> StoreError:
        """Translate a sqlite3 failure into what the user should do about it."""
        if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _DAMAGED:
            suggestions = [recover_command(self.path)]
        elif isinstance(exc, sqlite3.IntegrityError):  # not damage: a bug of ours
            suggestions = ["projctl daemon restart  # and report this as a bug in projctl, "
                           "with the daemon's log"]
        else:
            suggestions = [f"check free space and permissions in {os.path.dirname(self.path)}"]
        return StoreError(
            f"the state database {self.path} cannot be used: {exc}",
            suggestions=suggestions,
            context={"path": self.path},
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside commits together or not at all, to the
        file at `path` (verified before and after), or a StoreError says why not."""
        self.verify()
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
        # Removed meanwhile: the write is in the file held, which is written again now.
        self.verify()

    def verify(self) -> None:
        """Make sure the file at `path` is the one held open; if it was removed, write it again
        from the one held. Raises StoreError while writes would be lost."""
        try:
            if _identity(self.path) == self._identity:
                self.problem = self.problem_fix = None
                if len(self._companions) < 2:  # SQLite makes them at the first write
                    self._companions = _companions(self.path)
                return
            replaced = True
        except FileNotFoundError:
            replaced = False
        except OSError as exc:
            replaced = False
            log.warning("state_database_unseen", path=self.path, error=exc.strerror)
        if replaced:
            self._set_aside()
        else:
            self._rewrite()

    def _rewrite(self) -> None:
        """The file was removed: write everything the held one has to `path` again (the backup
        API reads the held file and its WAL, which live on while open), then continue there."""
        try:
            private_directory(self.path)
            copy_database(self.conn, self.path)
        except StoreError as exc:
            reason = exc.message
            self.problem = (f"{self.path} was removed while projctld ran, and projctld cannot "
                            f"write it again ({reason}); everything recorded is still held by "
                            "the running daemon, so do not stop it")
            self.problem_fix = (f"mkdir -p -m 700 {os.path.dirname(self.path)}  # or free "
                                "space there; the next write or `projctl doctor` writes it again")
            raise StoreError(f"nothing more is recorded: {self.problem}",
                             suggestions=[self.problem_fix], code="state_removed",
                             context={"path": self.path}) from None
        # Closing the held file removes the WAL and shared memory at `path` by name: they are
        # its own (when only state.db was removed), which the new file must never read.
        self.conn.close()
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path + suffix)
        self.conn = _connect(self.path)
        self._identity = _identity(self.path)
        self._companions = _companions(self.path)
        self.problem = self.problem_fix = None
        self.rewritten_at = time.time()
        log.warning("state_database_rewritten", path=self.path,
                    reason="the file was removed while projctld ran")

    def _set_aside(self) -> None:
        """Another file took `path` (put there by hand): it is not ours to overwrite, so what
        the held file has goes beside it, and no more writes are taken."""
        if self.problem is None:
            aside = f"{self.path}.held-{time.strftime('%Y%m%d-%H%M%S')}"
            try:
                copy_database(self.conn, aside)
                saved = f"what projctld held is saved in {aside}"
            except StoreError as exc:
                saved = f"what projctld held is still in memory ({exc.message})"
            # The held file's WAL and shared memory are still at `path`: SQLite would read
            # them as the new file's. They go (the held file keeps them open, and the copy
            # aside has their content).
            for suffix, identity in self._companions.items():
                with contextlib.suppress(OSError):
                    if _identity(self.path + suffix) == identity:
                        os.unlink(self.path + suffix)
            self.problem = (f"{self.path} was replaced by another file while projctld ran; "
                            f"{saved}")
            self.problem_fix = "projctl daemon restart  # to use the new file"
            log.error("state_database_replaced", path=self.path, problem=self.problem)
        raise StoreError(f"nothing more is recorded: {self.problem}",
                         suggestions=[self.problem_fix], code="state_replaced",
                         context={"path": self.path})

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
        with contextlib.suppress(StoreError):  # said already; nothing more can be done
            self.verify()
        if self.problem is None or "replaced" not in self.problem:
            self.conn.close()
        # A held file whose path another file took stays unclosed: closing would remove the
        # WAL and shared memory at that path, which are the other file's. Exit closes it.


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode; only power loss can drop the
    # last transactions, which the next poll or sync restores.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _companions(path: str) -> dict[str, tuple[int, int]]:
    """The WAL and shared memory of the database at `path`, which live as long as it is open."""
    found = {}
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(OSError):
            found[suffix] = _identity(path + suffix)
    return found


def _identity(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino
