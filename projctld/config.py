"""The daemon's TOML config as frozen msgspec Structs; loading validates and explains errors."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
import typing
from typing import Annotated, Literal
from urllib.parse import urlsplit

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
# A repository or project may name the instance it lives on first: "ghe:acme/web".
_INSTANCE_PREFIX = r"([a-z][a-z0-9-]{0,31}:)?"
_GITHUB_REPO = rf"^{_INSTANCE_PREFIX}[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
_GITLAB_PROJECT = rf"^{_INSTANCE_PREFIX}([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+|[0-9]+)$"
_INSTANCE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
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
    _GITHUB_REPO: 'OWNER/NAME, e.g. "acme/web", or INSTANCE:OWNER/NAME for another GitHub, '
                  'e.g. "ghe:acme/web"',
    _GITLAB_PROJECT: 'a project path with its groups, e.g. "acme/platform/api", or its numeric id '
                     '(INSTANCE:PATH for another GitLab)',
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
    # CI running or pending longer than this is shown as stuck and no longer speeds polling.
    stuck_after: Annotated[float, msgspec.Meta(ge=600, le=30 * 86400)] = 43200.0


class UpstreamConfig(_Section):
    """Where a token comes from: the environment, then a command, then this file."""

    token_env: str = ""
    token_command: str = ""
    token: str = ""


# Tagged so that a named instance's section (a union of the three) encodes and decodes as
# itself (the last good config is stored as JSON); a config file need not, but may, say `kind`.
class GitHubConfig(UpstreamConfig, tag_field="kind", tag="github"):
    api_url: HttpUrl = "https://api.github.com"
    token_env: str = "GITHUB_TOKEN"
    interval: PollSeconds = 60.0


class GitLabConfig(UpstreamConfig, tag_field="kind", tag="gitlab"):
    url: Annotated[str, msgspec.Meta(pattern=_GITLAB_URL)] = "https://gitlab.com"
    token_env: str = "GITLAB_TOKEN"
    auth: Literal["private-token", "bearer"] = "private-token"
    interval: PollSeconds = 60.0


class JiraConfig(UpstreamConfig, tag_field="kind", tag="jira"):
    url: Annotated[str, msgspec.Meta(pattern=_OPTIONAL_URL)] = ""
    email: str = ""
    token_env: str = "JIRA_API_TOKEN"
    interval: PollSeconds = 300.0
    # Jira Cloud and Data Center (or Server) answer searches differently; "auto" asks the site.
    flavour: Literal["auto", "cloud", "data-center"] = "auto"


Kind = Literal["github", "gitlab", "jira"]
KINDS: tuple[Kind, ...] = ("github", "gitlab", "jira")
SECTIONS: dict[str, type[UpstreamConfig]] = {
    "github": GitHubConfig, "gitlab": GitLabConfig, "jira": JiraConfig}


class Instance(msgspec.Struct, frozen=True):
    """One upstream host: the default `github`, `gitlab` and `jira`, or a named extra one."""

    name: str
    kind: Kind
    section: GitHubConfig | GitLabConfig | JiraConfig

    @property
    def interval(self) -> float:
        return self.section.interval

    @property
    def table(self) -> str:
        """Its table in the config file: `github`, or `github.ghe` for a named instance."""
        return self.kind if self.name == self.kind else f"{self.kind}.{self.name}"

    @property
    def title(self) -> str:
        """How messages name it: `GitHub`, or `GitHub ghe` for a named instance."""
        brand = {"github": "GitHub", "gitlab": "GitLab", "jira": "Jira"}[self.kind]
        return brand if self.name == self.kind else f"{brand} {self.name}"

    @property
    def url(self) -> str:
        section = self.section
        return section.api_url if isinstance(section, GitHubConfig) else section.url


class SyncConfig(UpstreamConfig):
    """The team hub that events sync through; without `hub` they stay on this machine."""

    hub: Annotated[str, msgspec.Meta(pattern=_HUB_URL)] = ""
    token_env: str = "PROJCTL_HUB_TOKEN"
    actor: Annotated[str, msgspec.Meta(max_length=MAX_NAME)] = ""
    interval: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 30.0
    debounce: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.5
    max_backoff: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 300.0
    live: bool = True


class UpstreamsConfig(_Section):
    """Where upstream state comes from: polled by this daemon ("direct") or read from the
    team's hub ([sync] hub), which polls for everyone and needs no token here ("hub")."""

    via: Literal["direct", "hub"] = "direct"
    # With via = "hub": poll directly, with this machine's tokens, while the hub has been
    # unreachable for `fallback_after` seconds.
    fallback: bool = False
    fallback_after: Annotated[float, msgspec.Meta(ge=5, le=86400)] = 300.0


class PromptConfig(_Section):
    """What `projctl prompt` and the shell snippets show; see projctld/prompt/format.py."""

    format: Annotated[str, msgspec.Meta(max_length=256)] = DEFAULT_FORMAT
    stale_marker: Annotated[str, msgspec.Meta(max_length=16)] = DEFAULT_STALE_MARKER


EnvironmentName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class ProjectConfig(_Section):
    paths: list[str] = []
    github: list[GitHubRepo] = []
    gitlab: list[GitLabProject] = []
    # The JQL for the default Jira site, or a JQL per Jira instance: {ops = "project = OPS"}.
    jira: str | dict[str, str] = ""
    environments: Annotated[list[EnvironmentName], msgspec.Meta(min_length=1)] = \
        msgspec.field(default_factory=lambda: ["development", "staging", "production"])
    deploy: str = ""

    def upstreams(self) -> list[str]:
        """The instances this project polls, in the order status shows them."""
        names: list[str] = []
        for kind in KINDS:
            for instance in self._parts(kind):
                if instance not in names:
                    names.append(instance)
        return names

    def parts(self, instance: str) -> list[str]:
        """What this project polls on `instance`: repositories, project paths, or one JQL."""
        for kind in KINDS:
            if instance in (found := self._parts(kind)):
                return found[instance]
        return []

    def _parts(self, kind: Kind) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        if kind == "jira":
            queries = {"jira": self.jira} if isinstance(self.jira, str) else self.jira
            for name, jql in queries.items():
                if jql:
                    found.setdefault(name, []).append(jql)
            return found
        for entry in getattr(self, kind):
            name, colon, path = entry.partition(":")
            instance, part = (name, path) if colon else (kind, entry)
            found.setdefault(instance, []).append(part)
        return found


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


# Local wall-clock hours without desktop notifications, "22:00-07:00"; "" for none.
_QUIET_HOURS = r"^(([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9])?$"


class DesktopConfig(_Section):
    """Desktop notifications of transitions that concern me (upstream/notify/), and the inbox
    (GitHub notifications, GitLab to-dos) that `projctl inbox` and status show."""

    enabled: bool = True
    ci: bool = True  # CI on my change request or branch finished
    review_requested: bool = True
    approved: bool = True
    changes_requested: bool = True
    closed: bool = True  # my change request merged or closed
    deployment_failed: bool = True  # a teammate's deployment failed
    workflow_finished: bool = True  # a workflow run I started finished
    # Any deployment to these environments, whoever ran it and however it ended.
    deployments_to: list[EnvironmentName] = []
    quiet_hours: Annotated[str, msgspec.Meta(pattern=_QUIET_HOURS)] = ""
    per_minute: Annotated[int, msgspec.Meta(ge=1, le=60)] = 6
    # Transitions on one change request or branch within this many seconds are one notification.
    burst: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.1
    inbox: bool = True


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
    desktop: DesktopConfig = DesktopConfig()
    retention: RetentionConfig = RetentionConfig()
    upstreams: UpstreamsConfig = UpstreamsConfig()
    projects: dict[str, ProjectConfig] = {}
    # Loaded by the workflow engine, which checks conditions and templates with line numbers.
    workflows: dict[str, Workflow] = {}
    # Named extra instances, from the sub-tables of [github], [gitlab] and [jira].
    extra_instances: dict[str, Instance] = {}
    # What loading understood but would rather see written otherwise, or found missing (a
    # project path that does not exist): logged at start, shown by doctor and `config check`.
    notes: list[str] = []

    def instances(self) -> dict[str, Instance]:
        """Every instance by name: the three defaults, then the named ones."""
        found = {kind: Instance(kind, kind, getattr(self, kind)) for kind in KINDS}
        return {**found, **self.extra_instances}

    def instance(self, name: str) -> Instance:
        return self.instances()[name]


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
    return config_from_raw(path, raw)


def config_from_raw(path: str, raw: dict) -> Config:
    """Validate a config read from the TOML at `path` (the hub's config reuses this for its
    upstreams and projects); `raw` is consumed."""
    # Projects are validated one by one so that an error can name the project it is in.
    raw_projects = raw.pop("projects", {})
    raw_workflows = raw.pop("workflows", None)
    if "extra_instances" in raw:
        raise _error(path, "extra_instances", "unknown key; another GitHub, GitLab or Jira "
                     'is a table inside its kind\'s, e.g. [github.ghe] api_url = "..."')
    extra = _extra_instances(path, raw)
    config = msgspec.structs.replace(_convert(path, raw, Config, ""), extra_instances=extra)
    if not isinstance(raw_projects, dict):
        raise _error(path, "projects", f"expected a table, got {_toml_type(raw_projects)}")
    projects = {}
    notes: list[str] = []
    for name, raw_project in raw_projects.items():
        if not _PROJECT_NAME.match(name):
            raise _error(path, f"projects.{name}", "a project name is 1-64 letters, digits, "
                         "`.`, `_` or `-`, starting with a letter or digit")
        if isinstance(raw_project, dict):
            notes += _normalise_parts(raw_project, f"projects.{name}", config.instances())
        project = _convert(path, raw_project, ProjectConfig, f"projects.{name}")
        projects[name] = msgspec.structs.replace(
            project, paths=[_resolve(p, os.path.dirname(path)) for p in project.paths]
        )
        notes += [f"projects.{name}.paths: {shown} does not exist (yet): no checkout there "
                  "belongs to the project until it does"
                  for shown, resolved in zip(project.paths, projects[name].paths, strict=True)
                  if not os.path.exists(resolved)]
    config = msgspec.structs.replace(config, projects=projects, notes=notes)
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


def _extra_instances(path: str, raw: dict) -> dict[str, Instance]:
    """The sub-tables of [github], [gitlab] and [jira], taken out of `raw`: each is another
    instance of that kind, named by its key ([github.ghe] is instance `ghe`)."""
    found: dict[str, Instance] = {}
    for kind in KINDS:
        table = raw.get(kind)
        if not isinstance(table, dict):
            continue
        for name in [key for key, value in table.items() if isinstance(value, dict)]:
            where = f"{kind}.{name}"
            if not _INSTANCE_NAME.match(name) or name in KINDS:
                raise _error(path, where, "an instance name is 1-32 lowercase letters, digits "
                             "or `-`, starting with a letter, and not github, gitlab or jira")
            if name in found:
                raise _error(path, where, f"the name {name} is taken by "
                             f"[{found[name].kind}.{name}]; instance names are unique")
            section_type = SECTIONS[kind]
            section_raw = table.pop(name)
            # Another host never gets the default instance's token by accident.
            section_raw.setdefault("token_env", _token_env(name))
            section = _convert(path, section_raw, section_type, where)
            found[name] = Instance(name, kind, section)  # type: ignore[arg-type]
    return found


# A repository as people paste it: a web or clone URL of a known instance, or with `.git`.
_REPOSITORY_URL = re.compile(
    r"^(?:https?://|ssh://(?:[^@/]+@)?|git@)(?P<host>[^/:]+)(?::\d+)?[:/](?P<path>.+?)"
    r"(?:\.git)?/?$")


def _normalise_parts(raw_project: dict, where: str, instances: dict[str, Instance]) -> list[str]:
    """Rewrite, in place, repositories and GitLab projects written as URLs (of an instance the
    config knows) or with `.git` into the configured form; a note for each rewritten one."""
    notes = []
    for kind in ("github", "gitlab"):
        entries = raw_project.get(kind)
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if not isinstance(entry, str):
                continue
            written = _configured_form(entry.strip(), kind, instances)
            if written != entry:
                entries[index] = written
                notes.append(f"{where}.{kind}[{index}]: read {entry!r} as {written!r}; write "
                             f"it so to silence this note")
    return notes


def _configured_form(entry: str, kind: Kind, instances: dict[str, Instance]) -> str:
    match = _REPOSITORY_URL.match(entry)
    if match is None:
        return entry.removesuffix(".git")
    host = match["host"].lower()
    for name, instance in instances.items():
        if instance.kind != kind:
            continue
        web = urlsplit(instance.url).hostname or ""
        if kind == "github" and web == "api.github.com":
            web = "github.com"
        if web == host:
            # GitLab's pages of a project follow "/-/": the project's path is before it.
            path = match["path"].split("/-/")[0].strip("/")
            return path if name == kind else f"{name}:{path}"
    return entry  # a host no instance has: validation says so, with the value


def _token_env(instance: str) -> str:
    """The default token variable of a named instance: `ghe` reads $GHE_TOKEN."""
    return re.sub(r"[^A-Z0-9]", "_", instance.upper()) + "_TOKEN"


def load_with_environment(path: str) -> Config:
    """The config at `path` as a start or a reload reads it: the environment file (with the
    tokens) checked first. Applies nothing; raises ConfigError."""
    from projctld import environment  # it reads paths; config.py is imported everywhere

    environment.read(environment.path())
    return load_config(path)


# What a reload cannot apply, only a restart (projctld/daemon/reload.py says why): these keys
# of [daemon], these sections, and a hub turned on or off; the rest applies live.
DAEMON_AT_RESTART = ("shutdown_timeout", "idle_timeout", "max_connections", "metrics_listen")
SECTIONS_AT_RESTART = ("plugins", "notify", "upstreams")


def effective(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """The config that runs after a reload from `old` to `new`: `new`, but with the keys that
    only a restart applies at their running values; and the sections applied live, and the
    changed keys waiting for a restart."""
    waiting = [f"daemon.{key}" for key in DAEMON_AT_RESTART
               if getattr(old.daemon, key) != getattr(new.daemon, key)]
    waiting += [name for name in SECTIONS_AT_RESTART if getattr(old, name) != getattr(new, name)]
    daemon = msgspec.structs.replace(
        new.daemon, **{key: getattr(old.daemon, key) for key in DAEMON_AT_RESTART})
    sync = new.sync
    if bool(old.sync.hub) != bool(new.sync.hub):
        waiting.append("sync.hub")
        sync = old.sync
    runs = msgspec.structs.replace(new, daemon=daemon, sync=sync, plugins=old.plugins,
                                   notify=old.notify, upstreams=old.upstreams)
    applied = [field for field in msgspec.structs.fields(Config) if field.name != "notes"
               and getattr(old, field.name) != getattr(runs, field.name)]
    return runs, [field.name for field in applied], waiting


def _check_upstreams(path: str, config: Config) -> None:
    """What the schema cannot say: each instance a project names exists and has what it needs,
    and a token in a file needs a private file."""
    instances = config.instances()
    for name, project in config.projects.items():
        for kind in KINDS:
            for instance in project._parts(kind):
                known = instances.get(instance)
                key = f"projects.{name}.{kind}"
                if known is None or known.kind != kind:
                    others = [i for i, found in instances.items()
                              if found.kind == kind and i != kind]
                    raise _error(path, key, f"no {kind} instance named {instance!r}: add "
                                 f"[{kind}.{instance}] with its URL" + (
                                     f" (known: {', '.join(others)})" if others else ""))
                if isinstance(known.section, JiraConfig) and not known.section.url:
                    table = "jira" if instance == "jira" else f"jira.{instance}"
                    raise _error(path, key, f"a JQL query needs the Jira site: set `url` in "
                                 f'[{table}], e.g. url = "https://acme.atlassian.net"')
    for name, project in config.projects.items():
        if project.deploy:
            try:
                shlex.split(project.deploy)
            except ValueError as exc:
                raise _error(path, f"projects.{name}.deploy",
                             f"cannot split the command into arguments: {exc}") from None
    if config.upstreams.via == "hub" and not config.sync.hub:
        raise _error(path, "upstreams.via", '"hub" reads upstream state from the team\'s hub: '
                     'set hub in [sync] (e.g. hub = "https://hub.example.com")')
    if config.sync.actor:
        problem = name_problem(config.sync.actor)
        if problem is not None:
            raise _error(path, "sync.actor", f"it names you on every event, and {problem}")
    inline = [name if name in KINDS else f"{instance.kind}.{name}"
              for name, instance in instances.items() if instance.section.token]
    inline += ["sync"] if config.sync.token else []
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
        suggestions=["`projctl config example` shows every key, its type and its default"],
        context={"file": path, "key": key},
    )


def _convert(path: str, raw: object, section: type[S], prefix: str) -> S:
    """msgspec.convert, with its error rewritten to name the file and the dotted key."""
    try:
        return msgspec.convert(raw, section)
    except msgspec.ValidationError as exc:
        raise _explain(path, str(exc), section, prefix, raw) from None


def _value_at(raw: object, location: str) -> object:
    """The raw value at a msgspec location such as `github[0]` or `daemon.log_level`."""
    for part in filter(None, re.split(r"\.|\[|\]", location)):
        if isinstance(raw, dict):
            raw = raw.get(part)
        elif isinstance(raw, list) and part.isdigit() and int(part) < len(raw):
            raw = raw[int(part)]
        else:
            return None
    return raw


def _explain(path: str, detail: str, section: type[msgspec.Struct], prefix: str,
             raw: object = None) -> ConfigError:
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
        if f"`str` matching regex {pattern!r}" in problem:
            value = _value_at(raw, location)
            got = f" (got {value!r})" if isinstance(value, str) else ""
            problem = problem.replace(f"`str` matching regex {pattern!r}", meaning + got)
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
