"""Where an upstream's token comes from: an environment variable, a command, or the config file.

The order is environment, then command, then file: an explicit `GITHUB_TOKEN=... projctld run`
overrides the usual source. A command's token (`gh auth token`) is asked again after a 401, since
such tokens are rotated by their tool. Tokens are never logged and never leave this process
except in the Authorization header.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Mapping

import anyio
import anyio.to_thread

from projctl_client import paths
from projctld import environment
from projctld.config import UpstreamConfig
from projctld.errors import UpstreamError
from projctld.redact import remember

COMMAND_TIMEOUT = 10.0
# After a 401 the command runs again, but not more often than this.
COMMAND_RETRY_INTERVAL = 60.0


class TokenSource:
    def __init__(self, upstream: str, section: str, config: UpstreamConfig,
                 environ: Mapping[str, str] = os.environ, *, file: str = "") -> None:
        self._upstream = upstream  # "GitHub": how messages name it
        self._section = section  # "github": the config table
        self._config = config
        # The hub's `token_file`: read at every request, so that a token another process
        # rotates there (a GitHub App installation token, valid for an hour) is taken at once.
        self._file = file
        self._environ = environ
        self._from_command: str | None = None
        self._command_run_at = 0.0
        self._command_lock = anyio.Lock()

    @property
    def origin(self) -> str:
        """Where the token comes from, for messages: `$GITHUB_TOKEN (in ~/.config/projctl/
        environment)`, `gh auth token`, ..."""
        if self._from_env():
            name = self._config.token_env
            if self._environ is not os.environ:
                return f"${name}"
            if environment.from_file(name):
                return f"${name} (in {environment.shown(environment.path())})"
            return f"${name} (inherited when projctld started)"
        if self._file:
            return f"the file {self._file}"
        if self._config.token_command:
            return f"`{self._config.token_command}`"
        if self._config.token:
            return f"`token` in [{self._section}]"
        return "nowhere"

    async def get(self) -> str:
        """The token; from here on it is redacted from every text this process shows."""
        token = await self._find()
        remember(token)
        return token

    async def _find(self) -> str:
        config = self._config
        if value := self._from_env():
            return value
        if self._file:
            return await anyio.to_thread.run_sync(self._read_file)
        if config.token_command:
            # Every project's first poll asks at once; the command runs once.
            async with self._command_lock:
                if self._from_command is None:
                    self._from_command = await self._run_command()
            return self._from_command
        if config.token:
            return config.token
        env_hint = config.token_env or "token_env"
        raise UpstreamError(
            f"no {self._upstream} token: ${env_hint} is set neither in "
            f"{environment.shown(paths.environment_path())} nor in the environment projctld "
            f"was started with, and [{self._section}] has no token_command or token",
            code="token",
            suggestions=[self.fix(),
                         *([f'token_command = "gh auth token"  # in [{self._section}]']
                           if self._section == "github" else [])],
        )

    def fix(self) -> str:
        """What puts a working token where this source looks (a refresh does not read the
        environment again: the file and a reload do, and so does a restart from a shell)."""
        config = self._config
        if self._file and not self._from_env():
            return f"write a valid token into {self._file}; it is read at every request"
        if config.token_command and not self._from_env():
            return (f"run `{config.token_command}` yourself: it must print a valid token "
                    "(projctld asks it again after a refusal)")
        if config.token and not self._from_env():
            return (f"set token in [{self._section}] of the config (chmod 600 it), then "
                    "projctl daemon reload")
        file = environment.shown(paths.environment_path())
        name = config.token_env
        if not name:
            return (f'set token_env = "NAME" in [{self._section}] and put NAME=<the token> in '
                    f"{file} (chmod 600), then projctl daemon reload")
        return (f"put {name}=<the token> in {file} (chmod 600), then projctl daemon reload; or "
                f"export {name}=<the token> and run projctl daemon restart from that shell")

    def _read_file(self) -> str:
        try:
            with open(self._file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            problem = getattr(exc, "strerror", None) or str(exc)
        else:
            if token:
                return token
            problem = "it is empty"
        raise UpstreamError(
            f"cannot read the {self._upstream} token from {self._file}: {problem}",
            code="token",
            suggestions=[f"write the token into {self._file} (chmod 600), readable by the hub"])

    def _from_env(self) -> str:
        name = self._config.token_env
        return self._environ.get(name, "").strip() if name else ""

    def rejected(self) -> bool:
        """The upstream refused the token: forget a command's token so that it runs again.
        True when asking again may help."""
        if self._from_command is None or time.monotonic() - self._command_run_at < \
                COMMAND_RETRY_INTERVAL:
            return False
        self._from_command = None
        return True

    async def _run_command(self) -> str:
        command = self._config.token_command
        self._command_run_at = time.monotonic()
        try:
            with anyio.fail_after(COMMAND_TIMEOUT):
                result = await anyio.run_process(shlex.split(command), check=False,
                                                 stdin=subprocess.DEVNULL)
        except TimeoutError:
            problem = f"did not finish within {COMMAND_TIMEOUT:g} s"
        except (OSError, ValueError) as exc:
            problem = f"could not run: {getattr(exc, 'strerror', None) or exc}"
        else:
            token = result.stdout.decode(errors="replace").strip()
            if result.returncode == 0 and token:
                return token
            detail = result.stderr.decode(errors="replace").strip().splitlines()
            problem = (f"exited with status {result.returncode}" if result.returncode
                       else "printed nothing") + (f": {detail[0][:200]}" if detail else "")
        raise UpstreamError(
            f"the {self._upstream} token command `{command}` {problem}",
            code="token",
            suggestions=[f"run `{command}` yourself to see what it needs "
                         "(for gh: `gh auth login`)"],
        )
