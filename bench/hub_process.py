"""A `projctld hub serve` child process for the benchmarks that need a real hub."""

from __future__ import annotations

import os
import subprocess
import sys
import threading


class Hub:
    """A hub serving `database` on a free loopback port; `url` is where it listens.

    `config` is its hub.toml, `env` what its environment adds, `log` a file for its stderr
    (else it is dropped); `project` is what its tokens cover ("*" for every project).
    """

    def __init__(self, database: str, project: str, *, config: str | None = None,
                 env: dict[str, str] | None = None, log: str | None = None) -> None:
        self.database = database
        self.project = project
        self.log = log
        with open(log, "a") if log else open(os.devnull, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "projctld", "hub", "serve", "--database", database,
                 "--port", "0", *(["--config", config] if config else [])],
                stdout=subprocess.PIPE, stderr=stderr, text=True, env={**os.environ, **(env or {})})
        line = [""]
        reader = threading.Thread(target=lambda: line.__setitem__(
            0, self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(60)  # a first PostgreSQL schema takes a while on a busy machine
        if "listening on " not in line[0]:
            self.process.kill()
            raise SystemExit(f"error: the hub did not start: {line[0]!r}"
                             + (f"; see {log}" if log else ""))
        self.url = line[0].split("listening on ")[1].split()[0]

    def cli(self, *args: str) -> str:
        """What `projctld hub ARGS --database DATABASE` prints; it must succeed."""
        return subprocess.run(
            [sys.executable, "-m", "projctld", "hub", *args, "--database", self.database],
            capture_output=True, text=True, check=True, timeout=60).stdout.strip()

    def token(self, user: str, *, write: bool = False) -> str:
        """A new token of `user` on the hub's project, read-only unless `write`."""
        return self.cli("token", "create", "--user", user, "--project", self.project,
                        *(["--write"] if write else [])).splitlines()[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
