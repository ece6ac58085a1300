"""The daemon's TOML config as frozen msgspec Structs; loading validates and explains errors."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
import typing
from typing import Annotated, Literal

import msgspec

from projctld.errors import ConfigError
from projctld.prompt.format import DEFAULT_FORMAT, DEFAULT_STALE_MARKER, FormatError, parse
from projctld.team.sync.events import MAX_NAME, name_problem
from projctld.team.workflows import Workflow, WorkflowError, load_table

S = typing.TypeVar("S", bound=msgspec.Struct)
Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
PollSeconds = Annotated[float, msgspec.Meta(ge=10, le=86400)]
_URL = r"^https?://[^\s/]+[^\s]*$"
# The same shape as _URL, kept apart so that its error can show a GitLab example.
_GITLAB_URL = r"^(https?://[^\s/]+[^\s]*)$"
_GITHUB_REPO = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
_GITLAB_PROJECT = r"^([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+|[0-9]+)$"
_OPTIONAL_URL = r"^(https?://[^\s/]+[^\s]*)?$"
_HUB_URL = r"^((https?)://[^\s/]+[^\s]*)?$"  # _OPTIONAL_URL's shape, with its own example
_WEBHOOK_URL = r"^(https?://[^\s/]+[^\s]*|)$"  # _OPTIONAL_URL's shape, with its own example
# PORT, :PORT (loopback) or HOST:PORT, HOST an IPv4 address, a name or a bracketed IPv6 address.
_LISTEN = r"^((\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)?:)?[0-9]{1,5}$|^$"
_PLUGIN_MODULE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_.]*)?$"
HttpUrl = Annotated[str, msgspec.Meta(pattern=_URL)]
GitHubRepo = Annotated[str, msgspec.Meta(pattern=_GITHUB_REPO)]
GitLabProject = Annotated[str, msgspec.Meta(pattern=_GITLAB_PROJECT)]
# What each pattern means, for error messages (msgspec would quote the regex).
_PATTERN_MEANING = {
    _URL: 'an http(s) URL, e.g. "https://ghe.example.com/api/v3"',
    _GITLAB_URL: 'an http(s) URL, e.g. "https://gitlab.example.com"',
    _OPTIONAL_URL: 'an http(s) URL, e.g. "https://acme.atlassian.net"',
    _HUB_URL: 'the hub\'s http(s) URL, e.g. "https://hub.example.com" or "http://10.0.0.5:8470"',
    _GITHUB_REPO: 'OWNER/NAME, e.g. "acme/web"',
    _GITLAB_PROJECT: 'a project path with its groups, e.g. "acme/platform/api", or its numeric id',
    _WEBHOOK_URL: 'a webhook URL, e.g. "https://hooks.slack.com/services/T0/B0/XXXX"',
    _LISTEN: 'a port on loopback, e.g. "9464", or an address and port, e.g. "0.0.0.0:9464"',
    _PLUGIN_MODULE: 'a module path, e.g. "mypkg.plugin" or "mypkg.plugin:object"',
}


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class DaemonConfig(_Section):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "console", "json"] = "auto"
    shutdown_timeout: Seconds = 5.0
    idle_timeout: Seconds = 60.0
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 256
    slow_request: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 0.1
    metrics_listen: Annotated[str, msgspec.Meta(pattern=_LISTEN)] = ""


class PollingConfig(_Section):
    active_window: PollSeconds = 300.0
    idle_after: PollSeconds = 1800.0
    max_backoff: PollSeconds = 900.0
    request_timeout: Seconds = 10.0


class UpstreamConfig(_Section):
    """Where a token comes from: the environment, then a command, then this file."""

    token_env: str = ""
    token_command: str = ""
    token: str = ""


class GitHubConfig(UpstreamConfig):
    api_url: HttpUrl = "https://api.github.com"
    token_env: str = "GITHUB_TOKEN"
    interval: PollSeconds = 60.0


class GitLabConfig(UpstreamConfig):
    url: Annotated[str, msgspec.Meta(pattern=_GITLAB_URL)] = "https://gitlab.com"
    token_env: str = "GITLAB_TOKEN"
    auth: Literal["private-token", "bearer"] = "private-token"
    interval: PollSeconds = 60.0


class JiraConfig(UpstreamConfig):
    url: Annotated[str, msgspec.Meta(pattern=_OPTIONAL_URL)] = ""
    email: str = ""
    token_env: str = "JIRA_API_TOKEN"
    interval: PollSeconds = 300.0


class SyncConfig(UpstreamConfig):
    """The team hub that events sync through; without `hub` they stay on this machine."""

    hub: Annotated[str, msgspec.Meta(pattern=_HUB_URL)] = ""
    token_env: str = "PROJCTL_HUB_TOKEN"
    actor: Annotated[str, msgspec.Meta(max_length=MAX_NAME)] = ""
    interval: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 30.0
    debounce: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.5
    max_backoff: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 300.0
    live: bool = True


class PromptConfig(_Section):
    """What `projctl prompt` and the shell snippets show; see projctld/prompt/format.py."""

    format: Annotated[str, msgspec.Meta(max_length=256)] = DEFAULT_FORMAT
    stale_marker: Annotated[str, msgspec.Meta(max_length=16)] = DEFAULT_STALE_MARKER


EnvironmentName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class ProjectConfig(_Section):
    paths: list[str] = []
    github: list[GitHubRepo] = []
    gitlab: list[GitLabProject] = []
    jira: str = ""
    environments: Annotated[list[EnvironmentName], msgspec.Meta(min_length=1)] = \
        msgspec.field(default_factory=lambda: ["development", "staging", "production"])
    deploy: str = ""

    def upstreams(self) -> list[str]:
        """The upstreams this project polls, in the order status shows them."""
        return [name for name in UPSTREAMS if getattr(self, name)]


UPSTREAMS = ("github", "gitlab", "jira")


class PluginsConfig(_Section):
    """Plugins to load beside the installed `projctl.plugins` entry points, and ones to skip."""

    modules: list[Annotated[str, msgspec.Meta(pattern=_PLUGIN_MODULE)]] = []
    disabled: list[str] = []
    timeout: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    settings: dict[str, dict[str, typing.Any]] = {}


class NotifyConfig(_Section):
    """The built-in notifier: chosen team events posted to a Slack-compatible webhook."""

    webhook: Annotated[str, msgspec.Meta(pattern=_WEBHOOK_URL)] = ""
    events: list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]] = \
        msgspec.field(default_factory=lambda: ["deployment.completed", "deployment.failed"])
    environments: list[EnvironmentName] = []
    origins: list[Literal["recorded", "received"]] = msgspec.field(
        default_factory=lambda: ["recorded"])
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 3
    backoff: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    timeout: Seconds = 10.0
    queue: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 100


Days = Annotated[float, msgspec.Meta(gt=0, le=36500)]


class RetentionConfig(_Section):
    """How much history the state database keeps (store/compaction.py); never project state."""

    events_days: Days = 30.0
    runs_days: Days = 30.0
    http_cache_days: Days = 30.0
    interval: Annotated[float, msgspec.Meta(ge=60, le=86400)] = 3600.0


class Config(_Section):
    daemon: DaemonConfig = DaemonConfig()
    polling: PollingConfig = PollingConfig()
    github: GitHubConfig = GitHubConfig()
    gitlab: GitLabConfig = GitLabConfig()
    jira: JiraConfig = JiraConfig()
    sync: SyncConfig = SyncConfig()
    prompt: PromptConfig = PromptConfig()
    plugins: PluginsConfig = PluginsConfig()
    notify: NotifyConfig = NotifyConfig()
    retention: RetentionConfig = RetentionConfig()
    projects: dict[str, ProjectConfig] = {}
    # Loaded by the workflow engine, which checks conditions and templates with line numbers.
    workflows: dict[str, Workflow] = {}


def load_config(path: str) -> Config:
    """Read and validate the config at `path`; a missing file means all defaults."""
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        return Config()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}",
            suggestions=[f"fix the line it names in {path}"],
            context={"file": path},
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", context={"file": path}) from None
    # Projects are validated one by one so that an error can name the project it is in.
    raw_projects = raw.pop("projects", {})
    raw_workflows = raw.pop("workflows", None)
    config = _convert(path, raw, Config, "")
    if not isinstance(raw_projects, dict):
        raise _error(path, "projects", f"expected a table, got {_toml_type(raw_projects)}")
    projects = {}
    for name, raw_project in raw_projects.items():
        if not _PROJECT_NAME.match(name):
            raise _error(path, f"projects.{name}", "a project name is 1-64 letters, digits, "
                         "`.`, `_` or `-`, starting with a letter or digit")
        project = _convert(path, raw_project, ProjectConfig, f"projects.{name}")
        projects[name] = msgspec.structs.replace(
            project, paths=[_resolve(p, os.path.dirname(path)) for p in project.paths]
        )
    config = msgspec.structs.replace(config, projects=projects)
    if raw_workflows is not None:
        try:
            workflows = load_table(raw_workflows, path=path)
        except WorkflowError as exc:
            raise ConfigError(exc.message, suggestions=exc.suggestions,
                              context=exc.context) from None
        config = msgspec.structs.replace(config, workflows=workflows)
    _check_upstreams(path, config)
    try:
        parse(config.prompt.format)
    except FormatError as exc:
        raise _error(path, "prompt.format", exc.problem) from None
    return config


def _check_upstreams(path: str, config: Config) -> None:
    """What the schema cannot say: Jira needs a URL, and a token in a file needs a private file."""
    if config.jira.url == "":
        for name, project in config.projects.items():
            if project.jira:
                raise _error(path, f"projects.{name}.jira",
                             "a JQL query needs the Jira site: set `url` in [jira], "
                             'e.g. url = "https://acme.atlassian.net"')
    for name, project in config.projects.items():
        if project.deploy:
            try:
                shlex.split(project.deploy)
            except ValueError as exc:
                raise _error(path, f"projects.{name}.deploy",
                             f"cannot split the command into arguments: {exc}") from None
    if config.sync.actor:
        problem = name_problem(config.sync.actor)
        if problem is not None:
            raise _error(path, "sync.actor", f"it names you on every event, and {problem}")
    inline = [name for name in (*UPSTREAMS, "sync") if getattr(config, name).token]
    if inline:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(
                f"{path}: `{inline[0]}.token`: this file holds a token but other users can "
                f"read it (mode {mode:o})",
                suggestions=[f"chmod 600 {path}",
                             f"or remove `token` and use `token_env` / `token_command` "
                             f"in [{inline[0]}]"],
                context={"file": path, "key": f"{inline[0]}.token"},
            )


_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LOCATION = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")
_MSGSPEC_TYPES = {"`object`": "a table", "`array`": "an array", "`str`": "a string",
                  "`int`": "an integer", "`float`": "a number", "`bool`": "true or false"}
_TOML_TYPES = {dict: "a table", list: "an array", str: "a string", int: "an integer",
               float: "a float", bool: "a boolean"}


def _resolve(path: str, base: str) -> str:
    # Checkout roots arrive as real paths (os.getcwd resolves links), so compare real paths.
    return os.path.realpath(os.path.join(base, os.path.expanduser(path)))


def _toml_type(value: object) -> str:
    return _TOML_TYPES.get(type(value), type(value).__name__)


def _error(path: str, key: str, problem: str) -> ConfigError:
    return ConfigError(
        f"{path}: `{key}`: {problem}",
        suggestions=["see config.example.toml for every key, its type and its default"],
        context={"file": path, "key": key},
    )


def _convert(path: str, raw: object, section: type[S], prefix: str) -> S:
    """msgspec.convert, with its error rewritten to name the file and the dotted key."""
    try:
        return msgspec.convert(raw, section)
    except msgspec.ValidationError as exc:
        raise _explain(path, str(exc), section, prefix) from None


def _explain(path: str, detail: str, section: type[msgspec.Struct], prefix: str) -> ConfigError:
    match = _LOCATION.search(detail)
    location = match["path"].lstrip(".") if match else ""
    problem = detail[: match.start()] if match else detail
    key = ".".join(part for part in (prefix, location) if part)
    unknown = _UNKNOWN.match(problem)
    if unknown:
        table = _section_at(section, location)
        known = ", ".join(f.name for f in msgspec.structs.fields(table)) if table else ""
        key = ".".join(part for part in (key, unknown["field"]) if part)
        return _error(path, key, "unknown key" + (f"; known here: {known}" if known else ""))
    problem = problem.replace("Expected", "expected")
    for pattern, meaning in _PATTERN_MEANING.items():
        problem = problem.replace(f"`str` matching regex {pattern!r}", meaning)
    for msgspec_name, toml_name in _MSGSPEC_TYPES.items():
        problem = problem.replace(msgspec_name, toml_name)
    choices = _choices(section, location)
    if choices:
        got = problem.split(" ", 3)[-1] if problem.startswith("Invalid enum") else problem
        problem = f"expected one of {', '.join(choices)} ({got})"
    return _error(path, key, problem)


def _section_at(section: type[msgspec.Struct], location: str) -> type[msgspec.Struct] | None:
    """The Struct for the table at a dotted location inside `section`."""
    for part in filter(None, location.split(".")):
        field_type = {f.name: f.type for f in msgspec.structs.fields(section)}.get(part)
        if not (isinstance(field_type, type) and issubclass(field_type, msgspec.Struct)):
            return None
        section = field_type
    return section


def _choices(section: type[msgspec.Struct], location: str) -> list[str]:
    """The allowed values when the key at `location` is a Literal (or a list of them)."""
    table_path, _, name = location.rpartition(".")
    name, item, _ = name.partition("[")  # `origins[0]`: an item of a list
    table = _section_at(section, table_path)
    if table is None:
        return []
    field_type = {f.name: f.type for f in msgspec.structs.fields(table)}.get(name)
    if item and typing.get_origin(field_type) is list:
        (field_type,) = typing.get_args(field_type)
    if typing.get_origin(field_type) is not Literal:
        return []
    return [str(value) for value in typing.get_args(field_type)]
