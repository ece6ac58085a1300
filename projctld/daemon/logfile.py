"""projctld's own log file, kept bounded: past a size it becomes `<name>.1` and starts afresh."""

from __future__ import annotations

import io
import os
import threading

# With one old file kept, the log never takes more than twice this.
DEFAULT_MAX_BYTES = 1 << 20


class RotatingLog(io.TextIOBase):
    """A text stream appending to `path`; the daemon's sys.stdout and sys.stderr.

    A daemon runs for weeks, so the size is checked at every write, not only at start-up. File
    descriptors 1 and 2 follow each new file, so that what bypasses Python's streams (a child
    process, faulthandler) lands in the current file too. Writes come from the event loop and
    from plugin threads, hence the lock.
    """

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._file = self._open()
        if self._size > max_bytes:
            self._rotate()

    def write(self, text: str) -> int:
        with self._lock:
            if self._size > self.max_bytes:
                self._rotate()
            self._file.write(text)
            self._file.flush()
            self._size += len(text.encode("utf-8", "backslashreplace"))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def fileno(self) -> int:
        return self._file.fileno()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)  # it holds what the team and the upstreams said: private
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        self._size = os.fstat(fd).st_size
        return open(fd, "a", encoding="utf-8", errors="backslashreplace")

    def _rotate(self) -> None:
        try:
            os.replace(self.path, self.path + ".1")
            new = self._open()
        except OSError:
            # A full or read-only disk: go on appending rather than lose the lines.
            self._size = 0
            return
        self._file.close()
        self._file = new
