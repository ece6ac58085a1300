"""Whole copies of a state database through SQLite's backup API: one self-contained file.

The backup API reads through the connection, so the copy holds what the WAL holds too (a plain
`cp` or `mv` of state.db leaves that behind), and it is consistent while a daemon writes. The
copy is written beside its destination and renamed into place, so a crash never leaves half a
copy under the final name, and it is 0600 like the original.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3

from projctld.errors import StoreError


def copy_database(source: sqlite3.Connection, destination: str) -> None:
    """Write everything `source` holds to `destination` (which must not exist yet), as one file
    with no WAL beside it."""
    partial = destination + ".partial"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)  # left by a copy that was interrupted
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600))
        target = sqlite3.connect(partial, isolation_level=None)
        try:
            source.backup(target)
            # The copy says WAL in its header, like its source; it is checkpointed and closed
            # here as a single file, so that it can be copied or mailed as it is.
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        if os.path.lexists(destination):
            raise FileExistsError(destination)
        os.rename(partial, destination)
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        reason = getattr(exc, "strerror", None) or str(exc)
        if isinstance(exc, FileExistsError):
            reason = "it exists already; choose another name"
        raise StoreError(f"cannot write a copy of the state database to {destination}: "
                         f"{reason}", suggestions=[f"df -h {os.path.dirname(destination)}  # "
                                                   "free space, and whether it is yours"],
                         context={"path": destination}) from None
