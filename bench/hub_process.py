"""A `projctld hub serve` child process for the benchmarks that need a real hub."""

from __future__ import annotations

import subprocess
import sys
import threading


class Hub:
    """A hub serving `database` on a free loopback port; `url` is where it listens."""

    def __init__(self, database: str, project: str) -> None:
        self.database = database
        self.project = project
        self.process = subprocess.Popen(
            [sys.executable, "-m", "projctld", "hub", "serve", "--database", database,
             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = [""]
        reader = threading.Thread(target=lambda: line.__setitem__(
            0, self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(60)  # a first PostgreSQL schema takes a while on a busy machine
        if "listening on " not in line[0]:
            self.process.kill()
            raise SystemExit(f"error: the hub did not start: {line[0]!r}")
        self.url = line[0].split("listening on ")[1].split()[0]

    def token(self, user: str, *, write: bool = False) -> str:
        """A new token of `user` on the benchmark's project, read-only unless `write`."""
        return subprocess.run(
            [sys.executable, "-m", "projctld", "hub", "token", "create", "--user", user,
             "--project", self.project, *(["--write"] if write else []),
             "--database", self.database],
            capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
