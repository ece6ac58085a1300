"""`projctl doctor`'s daemon-side checks: config, each upstream's token, the hub, state, systemd.

They run in the daemon (the Doctor request) or, with the daemon down, in `projctld doctor`.
Every check yields one CheckView whatever happens: a fault inside a check is that check's
`fail`, never a traceback. Details say where a token was looked for and what it may do, never
the token itself.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import sqlite3
import stat
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import date
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote

import anyio
import httpx
import msgspec

from projctl_client import paths
from projctl_client.protocol import CheckView, DoctorReport
from projctld import __version__, environment
from projctld.config import (
    KINDS,
    SECTIONS,
    Config,
    GitHubConfig,
    GitLabConfig,
    Instance,
    JiraConfig,
    UpstreamConfig,
    effective,
    load_with_environment,
)
from projctld.errors import ProjctlError, StoreError, UpstreamError
from projctld.hub.auth import parse_version
from projctld.logging import get_logger
from projctld.redact import redact_text
from projctld.store.database import Database, migrations, recover_command
from projctld.team.sync.hubclient import HubClient
from projctld.upstream.providers import HEADERS, auth_headers
from projctld.upstream.tokens import TokenSource

if TYPE_CHECKING:
    from projctld.daemon.context import DaemonContext

log = get_logger(__name__)

# Each request may take this long; a whole check more, since a token command may run first.
NETWORK_TIMEOUT = 5.0
CHECK_TIMEOUT = 20.0
SYSTEMCTL_TIMEOUT = 5.0
# A GitLab token that expires within this many days is worth a warning.
EXPIRY_WARNING_DAYS = 7
# The scopes that let a GitLab token read merge requests and pipelines.
GITLAB_SCOPES = {"read_api", "api"}
# A pull after this cursor returns nothing, so it proves only that the token may read.
_NO_EVENTS = 2**63 - 1


class Outcome(NamedTuple):
    status: str
    detail: str
    fix: str | None = None


class Problem(Exception):
    """Raised where a check knows, before its end, that it fails."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.outcome = Outcome("fail", detail, fix)


async def report(ctx: DaemonContext) -> DoctorReport:
    """The Doctor reply: the checks as the running daemon sees them."""
    with contextlib.suppress(StoreError):  # the check below tells
        ctx.db.verify()
    return DoctorReport(checks=await run_checks(
        ctx.config_path, ctx.db.path, running=ctx.config, loaded_at=ctx.config_loaded_at,
        sandbox=ctx.sandbox, held=ctx.db, started_broken=ctx.config_error is not None))


async def run_checks(config_path: str, database: str, *, running: Config | None = None,
                     loaded_at: float = 0.0, sandbox: bool = False,
                     held: Database | None = None,
                     started_broken: bool = False) -> list[CheckView]:
    """Every check, run concurrently, in a fixed order. `running` is the config the daemon
    runs (None without a daemon): the upstreams are checked as it polls them; `held` is the
    state database it holds open."""
    on_disk: list[Config] = []

    async def config_check() -> Outcome:
        config, outcome = _config(config_path, running, loaded_at, sandbox, started_broken)
        if config is not None:
            on_disk.append(config)
        return outcome

    # First, alone: the other checks look at the config it loads.
    first = await _guarded("config", config_check)
    # A daemon that started with a broken config runs one without its inline tokens: the
    # checks look at the file as it is now instead.
    config = next(iter(on_disk), None) if started_broken else running or next(iter(on_disk),
                                                                                  None)
    async with httpx.AsyncClient(timeout=NETWORK_TIMEOUT, follow_redirects=True) as http:
        # The three default instances always, then each named one (which exists to be used).
        instances = config.instances() if config is not None else {
            kind: Instance(kind, kind, SECTIONS[kind]()) for kind in KINDS}
        checks: list[tuple[str, Callable[[], Awaitable[Outcome]]]] = [
            (name, functools.partial(_upstream, config, instance, http, config_path))
            for name, instance in instances.items()
        ]
        checks += [
            ("hub", lambda: _hub(config, http, config_path)),
            ("state database", lambda: _state(database, held)),
            ("systemd", _systemd),
        ]
        views: list[CheckView | None] = [None] * len(checks)

        async def run(index: int) -> None:
            name, check = checks[index]
            views[index] = await _guarded(name, check)

        async with anyio.create_task_group() as tasks:
            for index in range(len(checks)):
                tasks.start_soon(run, index)
    return [first, *(view for view in views if view is not None)]


async def _guarded(name: str, check: Callable[[], Awaitable[Outcome]]) -> CheckView:
    try:
        with anyio.fail_after(CHECK_TIMEOUT):
            outcome = await check()
    except Problem as problem:
        outcome = problem.outcome
    except TimeoutError:
        outcome = Outcome("fail", f"the check did not finish within {CHECK_TIMEOUT:g} s",
                          "projctl doctor  # again; a slow network or token command is the "
                          "usual cause")
    except ProjctlError as exc:
        outcome = Outcome("fail", exc.message, exc.suggestions[0] if exc.suggestions
                          else "projctl doctor  # again; if it fails the same way, report it")
    except Exception as exc:
        log.exception("doctor_check_failed", check=name)
        outcome = Outcome("fail", f"the check itself failed: {type(exc).__name__}: {exc}",
                          "report this as a bug in projctl, with the output of "
                          "`projctld doctor --json`")
    # What an API, a hub or a token command said may quote a credential.
    return CheckView(name=name, status=outcome.status, detail=redact_text(outcome.detail),
                     fix=None if outcome.fix is None else redact_text(outcome.fix))


# -- the config


def _config(path: str, running: Config | None, loaded_at: float, sandbox: bool,
            started_broken: bool = False) -> tuple[Config | None, Outcome]:
    """The config file as it is now, and what to say of it."""
    if sandbox:
        return None, Outcome("skip", "the sandbox daemon runs built-in demo data, not a config "
                                     "file")
    try:
        config = load_with_environment(path)
    except ProjctlError as exc:
        if started_broken:
            still = ("; projctld started without it: it serves the event log on the last "
                     "config that loaded and polls nothing")
        elif running:
            still = (f"; projctld still runs the config it read at {_clock(loaded_at)}, and a "
                     "restart or a reload would keep it")
        else:
            still = ""
        return None, Outcome("fail", exc.message + still,
                             exc.suggestions[0] if exc.suggestions else f"edit {path}")
    if not os.path.exists(path):
        return config, Outcome("ok", f"no file at {path}: every default applies")
    if started_broken:
        return config, Outcome("warn", f"{path} is valid now, but projctld started while it "
                                       "was not and polls nothing", "projctl daemon reload")
    if running is not None and msgspec.structs.replace(running, notes=[]) != \
            msgspec.structs.replace(config, notes=[]):
        _, live, waiting = effective(running, config)
        if live:
            return config, Outcome("warn", f"{path} is valid but changed since projctld read "
                                           f"it at {_clock(loaded_at)}", "projctl daemon reload")
        return config, Outcome("warn", f"{path} is valid but changes {', '.join(waiting)}, "
                                       "which only a restart applies", "projctl daemon restart")
    if not config.projects:
        return config, Outcome(
            "warn", f"{path} is valid but has no [projects.NAME] table: nothing to poll",
            f'add [projects.NAME] with paths = ["~/src/NAME"] and github, gitlab or jira '
            f"to {path}")
    names = ", ".join(config.projects)
    count = len(config.projects)
    valid = f"{path} is valid: {count} project{'s' * (count != 1)} ({names})"
    if config.notes:
        return config, Outcome("warn", f"{valid}; " + "; ".join(config.notes),
                               f"edit {path} as the note says")
    return config, Outcome("ok", valid)


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


# -- GitHub, GitLab, Jira

async def _upstream(config: Config | None, instance: Instance, http: httpx.AsyncClient,
                    config_path: str) -> Outcome:
    if config is None:
        return Outcome("skip", "the config does not load (see `config`)")
    if not any(instance.name in project.upstreams() for project in config.projects.values()):
        return Outcome("skip", f"no project uses {instance.title}")
    if config.upstreams.via == "hub" and not config.upstreams.fallback:
        return Outcome("skip", f"{instance.title} is read from the team's hub ([upstreams] "
                       'via = "hub"): no token is needed here')
    check = {"github": _github, "gitlab": _gitlab, "jira": _jira}[instance.kind]
    outcome = await check(instance, http, config_path)
    if instance.name == instance.kind:
        return outcome
    # A named instance's line says which host it checked.
    return outcome._replace(detail=f"{httpx.URL(instance.url).host}: {outcome.detail}")


async def _token(source: TokenSource) -> str:
    try:
        return await source.get()
    except UpstreamError as exc:  # it always says where to put a token, or how to run its command
        raise Problem(exc.message, exc.suggestions[0]) from None


async def _get(http: httpx.AsyncClient, url: str, headers: dict[str, str], *, name: str,
               source: TokenSource, new_token: str, url_key: str,
               passes: tuple[int, ...] = ()) -> httpx.Response:
    """GET `url`; anything but a 2xx (or a status in `passes`) is a Problem saying what to do."""
    host = httpx.URL(url).host
    try:
        response = await http.get(url, headers=headers)
    except httpx.TimeoutException:
        raise Problem(f"{name} did not answer within {NETWORK_TIMEOUT:g} s ({host})",
                      f"curl -sSI {shlex.quote(url)}  # does it answer from here?") from None
    except httpx.HTTPError as exc:
        raise Problem(f"cannot reach {name} at {host}: {exc or type(exc).__name__}",
                      f"check the network, and {url_key}") from None
    status = response.status_code
    if status < 300 or status in passes:
        return response
    if status == 401:
        raise Problem(f"{name} refused the token from {source.origin} (401 "
                      f"{response.reason_phrase})", new_token)
    if status >= 500:
        raise Problem(f"{name} failed with {status} {response.reason_phrase} ({host})",
                      "projctl doctor  # again later; polling retries by itself")
    raise Problem(f"{name} answered {status} {response.reason_phrase} to GET "
                  f"{httpx.URL(url).path}", f"check {url_key}")


def _json(response: httpx.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise Problem(f"{httpx.URL(str(response.url)).host} answered with something that is "
                      "not the API's JSON (a proxy or sign-in page?)",
                      f"curl -sS {shlex.quote(str(response.url))}  # shows what answers")
    return data


def _store_token(section: str, config: UpstreamConfig, config_path: str) -> str:
    """How to put a new token where projctld looks for this one."""
    if config.token_env and (os.environ.get(config.token_env) or not
                             (config.token_command or config.token)):
        return (f"put {config.token_env}=<the token> in "
                f"{environment.shown(paths.environment_path())} (chmod 600), then: projctl "
                "daemon reload")
    if config.token_command:
        return f"make `{config.token_command}` print it"
    return f'set token = "<the token>" in [{section}] of {config_path} (chmod 600 it)'


def _github_web(section: GitHubConfig) -> str:
    """github.com for api.github.com; https://HOST for Enterprise's https://HOST/api/v3."""
    api = httpx.URL(section.api_url)
    host = "github.com" if api.host == "api.github.com" else api.netloc.decode()
    return f"{api.scheme}://{host}"


async def _github(instance: Instance, http: httpx.AsyncClient, config_path: str) -> Outcome:
    section = instance.section
    assert isinstance(section, GitHubConfig)
    source = TokenSource(instance.title, instance.table, section)
    if source.origin == f"`{section.token_command}`" and \
            section.token_command.split()[:1] == ["gh"]:
        new_token = "gh auth refresh --scopes repo  # then: projctl daemon restart"
    else:
        new_token = (f"create a token at {_github_web(section)}/settings/tokens/new?scopes=repo"
                     f"&description=projctl, then "
                     f"{_store_token(instance.table, section, config_path)}")
    token = await _token(source)
    response = await _get(
        http, section.api_url.rstrip("/") + "/user",
        {**HEADERS["github"], **auth_headers(instance)(token)}, name=instance.title,
        source=source, new_token=new_token,
        url_key=f"api_url in [{instance.table}] of {config_path}")
    who = f"token from {source.origin} works for @{_json(response).get('login', '?')}"
    header = response.headers.get("x-oauth-scopes")
    if header is None:
        # Fine-grained tokens and app tokens carry permissions, which no endpoint lists.
        return Outcome("ok", f"{who}; it is fine-grained, so GitHub does not list what it may "
                             "do: projctl needs read access to pull requests, actions, commit "
                             "statuses and metadata; the inbox (GitHub notifications, "
                             "`projctl inbox done`) needs a classic token, which GitHub's "
                             "notifications API requires")
    scopes = sorted(scope.strip() for scope in header.split(",") if scope.strip())
    has = f"classic token with scopes {', '.join(scopes)}" if scopes else \
        "classic token with no scope"
    # `repo` is what reads private repositories' pull requests, checks and Actions runs;
    # public ones need no scope, and none of projctl's queries needs read:org.
    if "repo" not in scopes:
        inbox = "" if "notifications" in scopes else \
            "; nor can it read the inbox or mark it done (`notifications` or `repo`)"
        return Outcome("warn", f"{who}; {has}: without `repo` the pull requests and CI of "
                               f"private repositories stay invisible{inbox}", new_token)
    return Outcome("ok", f"{who}; {has}")


async def _gitlab(instance: Instance, http: httpx.AsyncClient, config_path: str) -> Outcome:
    section = instance.section
    assert isinstance(section, GitLabConfig)
    source = TokenSource(instance.title, instance.table, section)
    site = section.url.rstrip("/")
    new_token = (f"create a token with the read_api scope at {site}/-/user_settings/"
                 f"personal_access_tokens?name=projctl&scopes=read_api, then "
                 f"{_store_token(instance.table, section, config_path)}")
    token = await _token(source)
    headers = {**HEADERS["gitlab"], **auth_headers(instance)(token)}
    fetch = {"name": instance.title, "source": source, "new_token": new_token,
             "url_key": f"url in [{instance.table}] of {config_path}"}
    response = await _get(http, f"{site}/api/v4/personal_access_tokens/self", headers,
                          passes=(403, 404), **fetch)
    if response.status_code in (403, 404):
        # OAuth tokens, and GitLab before 15.5, have no such endpoint; /user still proves
        # that the token works.
        user = _json(await _get(http, f"{site}/api/v4/user", headers, **fetch))
        return Outcome("ok", f"token from {source.origin} works for {user.get('username', '?')}"
                             "; GitLab does not describe this token (an OAuth token, or GitLab "
                             "before 15.5), so its scopes are unknown: projctl needs read_api")
    described = _json(response)
    scopes = sorted(str(scope) for scope in described.get("scopes") or [])
    has = f"token from {source.origin} has scopes {', '.join(scopes) or '(none)'}"
    if not GITLAB_SCOPES & set(scopes):
        return Outcome("fail", f"{has}: projctl needs read_api (or api) to read merge requests "
                               "and pipelines", new_token)
    if "api" not in scopes:  # reading needs read_api; `projctl inbox done` writes
        has += "; `projctl inbox done` needs the api scope, which it lacks"
    expires = _date(described.get("expires_at"))
    if expires is None:
        return Outcome("ok", has)
    days = (expires - date.today()).days
    if days <= EXPIRY_WARNING_DAYS:
        return Outcome("warn", f"{has}; it expires on {expires} (in {days} "
                               f"day{'s' * (days != 1)})", new_token)
    return Outcome("ok", f"{has}; it expires on {expires}")


def _date(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


async def _jira(instance: Instance, http: httpx.AsyncClient, config_path: str) -> Outcome:
    section = instance.section
    assert isinstance(section, JiraConfig)
    source = TokenSource(instance.title, instance.table, section)
    where = _store_token(instance.table, section, config_path)
    if section.email:
        new_token = (f"check email in [{instance.table}] of {config_path}, or create an API "
                     f"token at https://id.atlassian.com/manage-profile/security/api-tokens, "
                     f"then {where}")
    else:
        new_token = (f"create a personal access token in Jira's profile page (Profile > "
                     f"Personal Access Tokens), then {where}")
    token = await _token(source)
    # /rest/api/2 is served by Jira Cloud and Data Center alike; /rest/api/3 only by Cloud.
    response = await _get(
        http, section.url.rstrip("/") + "/rest/api/2/myself",
        {**HEADERS["jira"], **auth_headers(instance)(token)}, name=instance.title,
        source=source, new_token=new_token,
        url_key=f"url in [{instance.table}] of {config_path}")
    me = _json(response).get("displayName", "?")
    return Outcome("ok", f"token from {source.origin} works for {me}; Jira lists no token's "
                         "permissions: `projctl refresh` shows whether each project's JQL "
                         "may be searched")


# -- the hub


async def _hub(config: Config | None, http: httpx.AsyncClient, config_path: str) -> Outcome:
    if config is None:
        return Outcome("skip", "the config does not load (see `config`)")
    section = config.sync
    if not section.hub:
        return Outcome("skip", "no hub in [sync]: team events stay on this machine")
    source = TokenSource("hub", "sync", section)
    hub = HubClient(http, section.hub, source)
    try:
        health = await hub.health()
    except UpstreamError as exc:
        if exc.code == "upgrade_required":
            raise Problem(exc.message, " && ".join(exc.suggestions)) from None
        raise Problem(exc.message, f"curl {hub.url}/v1/health  # must answer; else fix hub in "
                                   f"[sync] of {config_path}") from None
    answers = (f"{hub.url} answers: hub {health.version} ({health.storage}), accepting "
               f"projctl {health.min_client_version} and newer")
    try:
        await _token(source)
    except Problem as problem:
        raise Problem(f"{answers}; but {problem.outcome.detail}", problem.outcome.fix) from None
    projects = list(config.projects)
    for project in projects:
        try:
            await hub.pull(project, _NO_EVENTS, 1)
        except UpstreamError as exc:
            raise Problem(f"{answers}; but with the token from {source.origin}: {exc.message}",
                          exc.suggestions[0] if exc.suggestions else
                          "ask the hub's operator: the hub's log says why") from None
    reads = f"; the token from {source.origin} reads {', '.join(projects)}" if projects else ""
    ours, theirs = parse_version(__version__), parse_version(health.version)
    if ours is not None and theirs is not None and theirs > ours:
        return Outcome("warn", f"{answers}{reads}; this projctl {__version__} is older than "
                               "the hub",
                       f"pip install --upgrade 'projctl>={health.version}' && "
                       "projctl daemon restart")
    return Outcome("ok", answers + reads)


# -- the state database


async def _state(path: str, held: Database | None) -> Outcome:
    return await _held_database(held) or await anyio.to_thread.run_sync(_state_database, path)


async def _held_database(held: Database | None) -> Outcome | None:
    """What the running daemon knows of its database file, when that is the news."""
    if held is None:
        return None
    if held.problem is not None:
        return Outcome("fail", f"projctld runs but its database was "
                               f"{'replaced' if 'replaced' in held.problem else 'removed'}: "
                               f"{held.problem}", held.problem_fix)
    if held.rewritten_at is not None:
        outcome = await anyio.to_thread.run_sync(_state_database, held.path)
        if outcome.status == "ok":
            directory = os.path.dirname(held.path)
            return Outcome("warn", f"{outcome.detail}; it was removed while projctld ran, and "
                                   f"projctld wrote it again at {_clock(held.rewritten_at)} "
                                   "from the file it held: nothing was lost",
                           f"find what removed {directory} (a cleanup job or a sync tool?) "
                           "and keep it away from it")
        return outcome
    return None


def _state_database(path: str) -> Outcome:
    """PRAGMA integrity_check on a read-only connection of its own (run in a thread)."""
    if not os.path.exists(path):
        return Outcome("skip", f"no state database at {path} yet: projctld creates it when it "
                               "starts")
    move_aside = recover_command(path)
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
        try:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            schema = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        return Outcome("fail", f"cannot read {path}: {exc}",
                       f"ls -l {shlex.quote(os.path.dirname(path))}  # the file must be yours "
                       "and readable")
    except sqlite3.DatabaseError as exc:
        return Outcome("fail", f"{path} is damaged: {exc}", move_aside)
    if problems != ["ok"]:
        # A problem may span lines, under a "*** in database main ***" heading.
        lines = [line for problem in problems for line in problem.splitlines()
                 if not line.startswith("*** ")] or problems
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        return Outcome("fail", f"{path} is damaged: {lines[0]}{more}", move_aside)
    known = len(migrations())
    if schema > known:
        return Outcome("fail", f"{path} has schema {schema}, newer than this projctld "
                               f"understands ({known})",
                       "pip install --upgrade projctl && projctl daemon restart")
    size = os.path.getsize(path) / 1024
    shown = f"{size:.0f} KiB" if size < 1024 else f"{size / 1024:.1f} MiB"
    healthy = f"{path}: integrity ok, schema {schema}, {shown}"
    loose, fix = _loose_state(os.path.dirname(path))
    if loose:
        return Outcome("fail", f"{healthy}; but {', '.join(loose)}: other local users can read "
                               "every team event and cached upstream reply", fix)
    return Outcome("ok", healthy)


# What the state directory holds besides the database: the log of a daemon the client started
# and the hub's default database.
_STATE_FILES = ("state.db", "state.db-wal", "state.db-shm", "projctld.log", "projctld.log.1",
                "hub.db", "hub.db-wal", "hub.db-shm")


def _loose_state(directory: str) -> tuple[list[str], str | None]:
    """What in the state directory others may read (the directory 0700 and its files 0600 are
    what projctld makes), and the command that mends it."""
    loose, commands = [], []
    mode = stat.S_IMODE(os.stat(directory).st_mode)
    if mode & 0o077:
        loose.append(f"{directory} has mode {mode:o}, not 700")
        commands.append(f"chmod 700 {shlex.quote(directory)}")
    files = []
    for name in _STATE_FILES:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(os.lstat(os.path.join(directory, name)).st_mode)
            if mode & 0o077:
                loose.append(f"{name} has mode {mode:o}, not 600")
                files.append(shlex.quote(os.path.join(directory, name)))
    if files:
        commands.append("chmod 600 " + " ".join(files))
    return loose, " && ".join(commands) or None


# -- systemd

UNITS = ("projctld.socket", "projctld.service")


async def _systemd() -> Outcome:
    if shutil.which("systemctl") is None:
        return Outcome("skip", "systemctl is not installed: projctl starts projctld itself")
    command = ["systemctl", "--user", "show", "--property=Id,LoadState,UnitFileState,"
               "ActiveState,SubState", *UNITS]
    try:
        with anyio.fail_after(SYSTEMCTL_TIMEOUT):
            result = await anyio.run_process(command, check=False, stdin=subprocess.DEVNULL)
    except TimeoutError:
        return Outcome("skip", f"`systemctl --user` did not answer within "
                               f"{SYSTEMCTL_TIMEOUT:g} s: projctl starts projctld itself")
    except OSError as exc:
        return Outcome("skip", f"cannot run systemctl: {exc.strerror or exc}")
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip().splitlines()
        reason = said[0] if said else f"exit status {result.returncode}"
        return Outcome("skip", f"no systemd user manager answers ({reason}): projctl starts "
                               "projctld itself")
    return systemd_verdict(parse_show(result.stdout.decode(errors="replace")))


def parse_show(text: str) -> dict[str, dict[str, str]]:
    """`systemctl show` output (blocks of KEY=VALUE lines, one per unit) by unit Id."""
    units = {}
    for block in text.strip().split("\n\n"):
        properties = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        units[properties.get("Id", "")] = properties
    return units


def systemd_verdict(units: dict[str, dict[str, str]]) -> Outcome:
    """What the states of projctld's user units mean for the user."""
    socket, service = (units.get(name, {}) for name in UNITS)
    if all(unit.get("LoadState") in (None, "not-found") for unit in (socket, service)):
        return Outcome("skip", "projctld's user units are not installed: projctl starts "
                               "projctld itself (`projctld install-systemd` sets them up)")
    restart = "systemctl --user restart projctld.socket projctld.service"
    for name, unit in zip(UNITS, (socket, service), strict=True):
        if unit.get("ActiveState") == "failed":
            return Outcome("fail", f"{name} failed ({unit.get('SubState', '?')})",
                           f"journalctl --user -u {name} -n 50  # says why; then: {restart}")
    if socket.get("LoadState") != "loaded":
        return Outcome("warn", "projctld.service is installed without projctld.socket",
                       "projctld install-systemd && systemctl --user daemon-reload")
    if socket.get("UnitFileState") != "enabled":
        return Outcome("warn", "projctld.socket is installed but not enabled: it is not "
                               "there after the next login",
                       "systemctl --user enable --now projctld.socket")
    if "active" not in (socket.get("ActiveState"), service.get("ActiveState")):
        return Outcome("warn", "projctld.socket is enabled but not listening",
                       "systemctl --user start projctld.socket")
    return Outcome("ok", f"projctld.socket {socket.get('ActiveState')} "
                         f"({socket.get('UnitFileState')}), projctld.service "
                         f"{service.get('ActiveState')} ({service.get('UnitFileState')})")
