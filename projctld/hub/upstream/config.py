"""The hub's config (hub.toml beside its database): upstream instances, credentials, projects.

The upstream tables and `[projects.NAME]` are the daemon's own (config.py validates them), so
that a repository, a GitLab project or a JQL is written the same on a laptop and on the hub.
Only the hub reads these keys beside them, in any instance's table:

- `token_file`: a file holding the token, read at every request (where a GitHub App
  installation token, rotated hourly by another process, is best kept);
- `webhook_secret_env`, `webhook_secret_file`, `webhook_secret`: the secret its webhooks are
  signed with (GitHub, Jira) or carry (GitLab's X-Gitlab-Token);

and a `[hub]` table: `lease`, the seconds one hub process holds the right to poll.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field

from projctld.config import KINDS, Config, config_from_raw
from projctld.errors import ConfigError

HUB_KEYS = ("token_file", "webhook_secret_env", "webhook_secret_file", "webhook_secret")
DEFAULT_LEASE = 15.0


@dataclass(frozen=True)
class HubConfig:
    path: str
    upstream: Config = field(default_factory=Config)
    token_files: dict[str, str] = field(default_factory=dict)  # by instance
    secrets: dict[str, bytes] = field(default_factory=dict)  # webhook secrets, by instance
    lease: float = DEFAULT_LEASE

    @property
    def polls(self) -> bool:
        """Whether any project names an upstream: else the hub polls nothing."""
        return any(project.upstreams() for project in self.upstream.projects.values())

    def projects_of(self, instance: str, part: str) -> list[str]:
        """The projects that poll `part` (a repository, a GitLab project path) on `instance`,
        compared as the services do: without regard to case."""
        wanted = part.lower()
        return [name for name, project in self.upstream.projects.items()
                if wanted in (p.lower() for p in project.parts(instance))]


def default_path(database_url: str, state_dir: str) -> str:
    """hub.toml beside a SQLite database; for PostgreSQL, in the hub's state directory."""
    if database_url.startswith("sqlite://"):
        return os.path.join(os.path.dirname(database_url.removeprefix("sqlite://")) or ".",
                            "hub.toml")
    return os.path.join(state_dir, "hub.toml")


def load_hub_config(path: str, environ: dict[str, str] | None = None) -> HubConfig:
    """The hub's config at `path`; a missing file is a hub that polls nothing."""
    environ = dict(os.environ) if environ is None else environ
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        return HubConfig(path)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}",
                          suggestions=[f"fix the line it names in {path}"]) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    hub = raw.pop("hub", {})
    if not isinstance(hub, dict) or set(hub) - {"lease"}:
        raise ConfigError(f"{path}: [hub] takes only `lease` (seconds one hub process holds "
                          "the right to poll)", suggestions=[f"fix [hub] in {path}"])
    lease = hub.get("lease", DEFAULT_LEASE)
    if not isinstance(lease, int | float) or not 5 <= lease <= 600:
        raise ConfigError(f"{path}: hub.lease must be a number of seconds from 5 to 600",
                          suggestions=[f"fix hub.lease in {path}"])
    extras: dict[str, dict[str, str]] = {}
    for kind in KINDS:
        table = raw.get(kind)
        if not isinstance(table, dict):
            continue
        extras[kind] = _pop_hub_keys(path, kind, table)
        for name, sub in table.items():
            if isinstance(sub, dict):
                extras[name] = _pop_hub_keys(path, f"{kind}.{name}", sub)
    upstream = config_from_raw(path, raw)
    token_files = {name: keys["token_file"] for name, keys in extras.items()
                   if keys.get("token_file")}
    secrets = {name: _secret(path, name, keys, environ) for name, keys in extras.items()
               if any(key.startswith("webhook_secret") for key in keys)}
    return HubConfig(path, upstream, token_files, secrets, float(lease))


def _pop_hub_keys(path: str, where: str, table: dict) -> dict[str, str]:
    found = {}
    for key in HUB_KEYS:
        if key in table:
            value = table.pop(key)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{path}: {where}.{key} must be a non-empty string",
                                  suggestions=[f"fix {where}.{key} in {path}"])
            found[key] = value
    return found


def _readable_by_others(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False


def _secret(path: str, name: str, keys: dict[str, str], environ: dict[str, str]) -> bytes:
    """The webhook secret: from the environment, else a file, else the config itself."""
    if variable := keys.get("webhook_secret_env"):
        if value := environ.get(variable, "").strip():
            return value.encode()
        if "webhook_secret_file" not in keys and "webhook_secret" not in keys:
            raise ConfigError(f"{path}: the webhook secret of {name} comes from ${variable}, "
                              "which is not set",
                              suggestions=[f"export {variable}=<the secret> before "
                                           "`projctld hub serve`"])
    if file := keys.get("webhook_secret_file"):
        try:
            with open(file, encoding="utf-8") as handle:
                value = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the webhook secret of {name} from {file}: "
                              f"{getattr(exc, 'strerror', None) or exc}",
                              suggestions=[f"check {file}"]) from None
        if value:
            return value.encode()
    if value := keys.get("webhook_secret", ""):
        if _readable_by_others(path):
            raise ConfigError(f"{path} holds a webhook secret and others may read it",
                              suggestions=[f"chmod 600 {path}"])
        return value.encode()
    raise ConfigError(f"{path}: the webhook secret of {name} is empty",
                      suggestions=[f"set webhook_secret_env, webhook_secret_file or "
                                   f"webhook_secret in the table of {name}"])
