"""`projctld`: the daemon's command line (`run` in the foreground) and the team hub's (`hub`)."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import click
import msgspec

from projctl_client import paths
from projctld import __version__
from projctld.daemon.logfile import DEFAULT_MAX_BYTES, RotatingLog
from projctld.errors import ProjctlError
from projctld.hub.auth import DEFAULT_MIN_CLIENT_VERSION, parse_version
from projctld.hub.storage.backends import open_storage
from projctld.hub.storage.interface import (
    HubStorage,
    ShareRecord,
    TokenRecord,
    new_share,
    new_token,
)
from projctld.team.sync.events import ProjectName

T = TypeVar("T")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="projctld")
def main() -> None:
    """projctld: the per-user daemon behind projctl.

    It keeps projctl's state warm and answers the client over a Unix socket. You rarely run it
    by hand: `projctl` starts it in the background on first use.
    """


@main.command()
@click.option(
    "--ready-fd", type=int, default=None, metavar="FD",
    help="Write `ready` to this file descriptor once serving, or `error: ...` if start-up "
    "fails, then close it (how `projctl` waits for a daemon it starts).",
)
@click.option(
    "--sandbox", is_flag=True,
    help="Poll built-in fake GitHub, GitLab and Jira servers with demo data instead of the "
    "config (what `projctl demo` runs); state goes to $XDG_STATE_HOME/projctl/sandbox/.",
)
@click.option(
    "--log-file", type=click.Path(dir_okay=False), default=None, metavar="PATH",
    help="Append the log (stdout and stderr) to PATH, which is kept under --log-max-bytes: "
    "past that it becomes PATH.1 and a new PATH starts (how `projctl` starts it).",
)
@click.option("--log-max-bytes", type=click.IntRange(min=4096), default=DEFAULT_MAX_BYTES,
              show_default=True, help="The size at which --log-file is rotated.")
def run(ready_fd: int | None, sandbox: bool, log_file: str | None, log_max_bytes: int) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT.

    Reads $PROJCTL_CONFIG (or $XDG_CONFIG_HOME/projctl/config.toml) and the variables of
    $XDG_CONFIG_HOME/projctl/environment, keeps its state in $XDG_STATE_HOME/projctl/ and
    listens on $PROJCTL_SOCKET (or $XDG_RUNTIME_DIR/projctl/projctld.sock). SIGHUP reloads
    the config. With a config that does not load it still starts, serves the team's event log
    on the last config that loaded, polls nothing and says so in every reply. Exits 0 after an
    orderly shutdown, 1 for a start-up failure.
    """
    import anyio

    from projctld.daemon import lifecycle

    def report(text: str) -> None:
        nonlocal ready_fd
        if ready_fd is not None:
            try:
                os.write(ready_fd, text.encode())
                os.close(ready_fd)
            except OSError:
                pass
            ready_fd = None

    try:
        if log_file:
            try:
                sys.stdout = sys.stderr = RotatingLog(log_file, log_max_bytes)
            except OSError as exc:
                raise ProjctlError(f"cannot write the log file {log_file}: {exc.strerror}",
                                   suggestions=["check that its directory exists and is yours"]
                                   ) from None
        if sandbox:
            from projctld.sandbox.demo import start_sandbox

            anyio.run(functools.partial(
                lifecycle.serve, "(sandbox: built-in demo data)", paths.socket_path(),
                lambda: report("ready\n"), database=paths.database_path(sandbox=True),
                sandbox=start_sandbox,
            ))
        else:
            anyio.run(functools.partial(
                lifecycle.serve, paths.config_path(), paths.socket_path(),
                lambda: report("ready\n"), database=paths.database_path(),
            ))
    except ProjctlError as exc:
        report("\n".join(_error_lines(exc)) + "\n")
        _fail(exc)
    except Exception as exc:
        traceback.print_exc()
        report(f"error: projctld failed: {type(exc).__name__}: {exc}\n"
               f"try: read {log_file or paths.log_path(sandbox=sandbox)}\n")
        sys.exit(1)


def _error_lines(exc: ProjctlError) -> list[str]:
    return [f"error: {exc.message}", *(f"try: {s}" for s in exc.suggestions)]


def _fail(exc: ProjctlError) -> NoReturn:
    click.echo("projctld: " + "\n  ".join(_error_lines(exc)), err=True)
    sys.exit(exc.exit_code)


@main.group()
def config() -> None:
    """The config file and the environment file, as projctld reads them."""


@config.command("check")
def config_check() -> None:
    """Check the config ($PROJCTL_CONFIG or $XDG_CONFIG_HOME/projctl/config.toml) and the
    environment file ($XDG_CONFIG_HOME/projctl/environment) as a start or a reload would
    read them. Exits 0 when they load, 2 with the mistake when not (what `projctl daemon
    restart` runs first, with the projctld it is about to start)."""
    from projctld.config import load_with_environment

    path = paths.config_path()
    try:
        loaded = load_with_environment(path)
    except ProjctlError as exc:
        _fail(exc)
    names = ", ".join(loaded.projects)
    count = len(loaded.projects)
    where = path if os.path.exists(path) else f"{path} (no file: every default)"
    click.echo(f"{where} is valid: {count} project{'s' * (count != 1)}"
               + (f" ({names})" if names else ""))
    for note in loaded.notes:
        click.echo(f"note: {note}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(as_json: bool) -> None:
    """Run `projctl doctor`'s daemon-side checks here, without a daemon: the config, each
    upstream's token and what it may do, the hub, the state database and systemd.

    `projctl doctor` runs this when projctld is down. Exits 1 if a check failed.
    """
    import anyio

    from projctl_client import doctor as client_doctor
    from projctl_client import jsonout
    from projctld import environment
    from projctld import logging as logs
    from projctld.ops.doctor import run_checks

    logs.configure("warning")  # on stderr: stdout carries the checks
    with contextlib.suppress(ProjctlError):  # the config check says what is wrong with it
        environment.apply()  # the tokens a daemon started now would have
    checks = [msgspec.to_builtins(check) for check in anyio.run(
        run_checks, paths.config_path(), paths.database_path())]
    click.echo(jsonout.dumps(checks) if as_json else client_doctor.text(checks, sys.stdout))
    sys.exit(1 if any(check["status"] == "fail" for check in checks) else 0)


@main.group()
def db() -> None:
    """The state database: a copy that leaves nothing behind, and a new one from a damaged one.

    Use these, never `mv` or `cp` of state.db: the newest records may be only in state.db-wal
    beside it.
    """


def _state_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--database", metavar="PATH", default=paths.database_path,
        show_default="$XDG_STATE_HOME/projctl/state.db", type=click.Path(dir_okay=False),
        help="The state database to work on.")(command)


@db.command("backup")
@click.argument("destination", type=click.Path(dir_okay=False))
@_state_option
def db_backup(destination: str, database: str) -> None:
    """Copy the state database to DESTINATION, a new file: one self-contained file with what
    the WAL holds too, consistent while projctld runs and after it was killed (SQLite's
    backup API). It can be copied anywhere as it is."""
    from projctld.store import salvage

    destination = os.path.abspath(destination)
    try:
        events, waiting = salvage.backup(os.path.abspath(database), destination)
    except ProjctlError as exc:
        _fail(exc)
    click.echo(f"projctld: copied {database} to {destination}: {events} events, {waiting} not "
               "yet sent to the hub", err=True)


@db.command("recover")
@_state_option
def db_recover(database: str) -> None:
    """Move a damaged state database aside, with its WAL, into STATE.db.broken-TIME/, and put
    in its place a new one with every row that can still be read: this device's events (the
    unsynced ones above all) and its identity, checkouts and runs. The project state is
    rebuilt from the events; what the hub holds comes back at the next sync, upstream data at
    the next poll. Refuses while projctld or another process has the database open."""
    from projctld.daemon import listener
    from projctld.store import salvage

    database = os.path.abspath(database)
    try:
        with contextlib.ExitStack() as stack:
            if database == paths.database_path():
                # Held throughout, so that no daemon starts on the database meanwhile.
                try:
                    stack.enter_context(listener.instance_lock(paths.socket_path()))
                except ProjctlError as exc:
                    if exc.code != "already_running":
                        raise
                    raise ProjctlError(f"projctld is running: {exc.message}",
                                       suggestions=["projctl daemon stop  # then run this "
                                                    "again"]) from None
            done = salvage.recover(database)
    except ProjctlError as exc:
        _fail(exc)
    lines = [f"projctld: moved {database} and its WAL to {done.aside}/"]
    if not done.opened:
        lines.append("  nothing in it could be read (it is not an SQLite database any more); "
                     "a new, empty database took its place")
    else:
        lines.append(f"  a new {database} holds {done.events} event{'s' * (done.events != 1)}, "
                     f"{done.waiting} of them not yet sent to the hub, as device {done.device}")
    if done.unreadable:
        lines.append(f"  not read whole: {', '.join(done.unreadable)}; the hub sends back what "
                     "it holds at the next sync, upstream data comes back at the next poll")
    lines.append("  next: projctl daemon start")
    click.echo("\n".join(lines), err=True)


@main.command("install-systemd")
@click.option("--user", "user_units", is_flag=True,
              help="Write the user units projctld.service and projctld.socket to "
              "$XDG_CONFIG_HOME/systemd/user/ (what happens without --hub too).")
@click.option("--hub", is_flag=True,
              help="Write the team hub's system unit projctl-hub.service to "
              "/etc/systemd/system/ (as root).")
@click.option("--dir", "directory", metavar="DIR", type=click.Path(file_okay=False),
              help="Write the units into DIR instead, to copy or package them.")
@click.option("--dry-run", is_flag=True, help="Show the units and where they would go; "
              "write nothing.")
def install_systemd(user_units: bool, hub: bool, directory: str | None, dry_run: bool) -> None:
    """Install systemd units that run this installation's projctld, then say what to run.

    The user units start projctld on the first projctl command (socket activation) and
    restart it if it fails or hangs; the hub's unit runs `projctld hub serve` as a hardened
    system service with its SQLite database in /var/lib/projctl-hub/.
    """
    from projctld.ops import unitfiles

    try:
        unitfiles.install(user=user_units or not hub, hub=hub, directory=directory,
                          dry_run=dry_run, echo=click.echo,
                          warn=lambda text: click.echo(text, err=True))
    except ProjctlError as exc:
        _fail(exc)


@main.group()
def hub() -> None:
    """The team hub: the HTTP service that devices sync their team events through.

    One hub serves a team: run `projctld hub serve` on a machine everyone reaches, create a
    token per person with `projctld hub token create`, and point each projctl at the hub in the
    [sync] section of its config.
    """


def _database_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--database", metavar="URL", envvar="PROJCTL_HUB_DATABASE",
        default=lambda: f"sqlite://{paths.state_dir()}/hub.db",
        show_default="$PROJCTL_HUB_DATABASE, else sqlite:///$XDG_STATE_HOME/projctl/hub.db",
        help="Where the hub keeps events and tokens: sqlite:///PATH or "
        "postgresql://USER:PASSWORD@HOST:PORT/DB.",
    )(command)


def _check_version(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if parse_version(value) is None:
        raise click.BadParameter(f"{value!r} is not a version like 1.2.3")
    return value


@hub.command("serve")
@_database_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; 0.0.0.0 for every interface.")
@click.option("--port", type=click.IntRange(0, 65535), default=8470, show_default=True,
              help="The TCP port; 0 picks a free one (the ready line names it).")
@click.option("--min-client-version", default=DEFAULT_MIN_CLIENT_VERSION, show_default=True,
              metavar="X.Y.Z", callback=_check_version,
              help="Refuse clients older than this with 426 and the upgrade command.")
@click.option("--slow-request", type=click.FloatRange(0, min_open=True), default=1.0,
              show_default=True, metavar="SECONDS",
              help="Log requests slower than this, with where the time went (a long poll's "
                   "wait does not count).")
@click.option("--config", "config_path", metavar="PATH", envvar="PROJCTL_HUB_CONFIG",
              show_default="$PROJCTL_HUB_CONFIG, else hub.toml beside a SQLite database "
              "(for PostgreSQL: in $XDG_STATE_HOME/projctl)",
              help="The hub's config: the upstreams it polls for the team, their tokens and "
                   "webhook secrets (docs/hub.md). Missing: it polls nothing.")
def hub_serve(database: str, host: str, port: int, min_client_version: str,
              slow_request: float, config_path: str | None) -> None:
    """Serve the hub in the foreground until SIGTERM or SIGINT.

    Prints `projctl hub listening on URL (storage: KIND)` once it accepts connections; logs go
    to stderr. Put TLS in front of it (a reverse proxy) when it is reachable beyond this machine.
    """
    import anyio

    from projctld import logging as logs
    from projctld.hub.serve import serve_hub
    from projctld.hub.upstream.config import default_path, load_hub_config

    logs.configure("info")
    try:
        kind = open_storage(database).kind
        config = load_hub_config(config_path or default_path(database, paths.state_dir()))
        anyio.run(functools.partial(
            serve_hub, database, host, port, min_client_version=min_client_version,
            slow_request=slow_request, config=config,
            on_ready=lambda url: click.echo(f"projctl hub listening on {url} (storage: {kind})"),
        ))
    except ProjctlError as exc:
        _fail(exc)


@hub.command("copy")
@click.option("--from", "source", required=True, metavar="URL",
              help="The hub database to copy: sqlite:///PATH or postgresql://...")
@click.option("--to", "target", required=True, metavar="URL",
              help="An empty database to copy it into (a new SQLite file, or an empty "
                   "PostgreSQL database or schema).")
def hub_copy(source: str, target: str) -> None:
    """Copy a hub's database into a new one: every event, device and token.

    To move a team's hub (from SQLite to PostgreSQL, say): stop the hub, copy, start the hub
    on the new database, and point the devices at it if its URL changed. Nothing is lost:
    devices send again whatever reached the old hub after the copy (docs/hub.md: Moving or
    restoring a hub).
    """
    import anyio

    from projctld.hub.storage.copy import copy_hub

    async def run_copy() -> None:
        stores = [open_storage(source), open_storage(target)]
        for store in stores:
            await store.open()
        try:
            copied = await copy_hub(*stores, progress=lambda events: click.echo(
                f"projctld: {events} events copied", err=True) if events % 50_000 == 0
                else None)
            click.echo(f"projctld: copied {copied.events} events, {copied.devices} devices and "
                       f"{copied.tokens} tokens into a new hub database (id "
                       f"{stores[1].hub_id}); start the hub on it: projctld hub serve "
                       "--database ...", err=True)
        finally:
            for store in stores:
                await store.close()

    try:
        anyio.run(run_copy)
    except ProjctlError as exc:
        _fail(exc)


@hub.group("token")
def hub_token() -> None:
    """The bearer tokens that devices show the hub; the hub keeps only their hashes."""


def _on_storage(database: str, work: Callable[[HubStorage], Awaitable[T]]) -> T:
    """Run `work` against the hub's storage, opened for just this."""
    import anyio

    async def run_work() -> T:
        storage = open_storage(database)
        await storage.open()
        try:
            return await work(storage)
        finally:
            await storage.close()

    try:
        return anyio.run(run_work)
    except ProjctlError as exc:
        _fail(exc)


_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
_PROJECT = re.compile(ProjectName.__metadata__[0].pattern)


def _check_user(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not _USER.match(value):
        raise click.BadParameter(f"{value!r} is not a user name: letters, digits and . _ @ + -")
    return value


def _check_projects(_ctx: click.Context, _param: click.Parameter,
                    value: tuple[str, ...]) -> tuple[str, ...]:
    for project in value:
        if project != "*" and not _PROJECT.match(project):
            raise click.BadParameter(
                f"{project!r} is not a project name (as in [projects.NAME]), nor '*' for all")
    return value


@hub_token.command("create")
@click.option("--user", required=True, callback=_check_user,
              help="Whose token it is; events pushed with it are that user's.")
@click.option("--project", "projects", multiple=True, required=True, callback=_check_projects,
              help="A project the token may use; repeat it for more, '*' means every project.")
@click.option("--write", is_flag=True, help="Allow pushing events, not only pulling them.")
@_database_option
def hub_token_create(user: str, projects: tuple[str, ...], write: bool, database: str) -> None:
    """Create a token and print it, once, on stdout."""
    token, token_hash, token_id = new_token()
    record = TokenRecord(id=token_id, user=user, projects=sorted(set(projects)), write=write,
                         created_at=time.time())
    _on_storage(database, lambda storage: storage.add_token(token_hash, record))
    click.echo(token)
    click.echo(
        f"projctld: token {token_id} of {user} may {'read and write' if write else 'read'} "
        f"{_projects_text(record.projects)}. It is not shown again: on {user}'s machine, "
        "export PROJCTL_HUB_TOKEN=<the token> (or name another variable with token_env in "
        "the [sync] section of the config) and restart the daemon: projctl daemon restart",
        err=True,
    )


def _projects_text(projects: list[str]) -> str:
    return "every project" if "*" in projects else "project " + ", ".join(projects)


@hub_token.command("list")
@_database_option
def hub_token_list(database: str) -> None:
    """List the tokens: id, user, rights, projects, when created and whether revoked."""
    records = _on_storage(database, lambda storage: storage.list_tokens())
    if not records:
        click.echo("no tokens yet; create one with: projctld hub token create --user USER "
                   "--project PROJECT [--write]", err=True)
        return
    rows = [("ID", "USER", "RIGHTS", "PROJECTS", "CREATED", "REVOKED")] + [
        (r.id, r.user, "read+write" if r.write else "read", ",".join(r.projects),
         time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(r.created_at)),
         "yes" if r.revoked else "no")
        for r in records
    ]
    _echo_table(rows)


@hub_token.command("revoke")
@click.argument("token_id", metavar="ID")
@_database_option
def hub_token_revoke(token_id: str, database: str) -> None:
    """Revoke a token: the hub refuses it from the next request on."""
    if not _on_storage(database, lambda storage: storage.revoke_token(token_id)):
        _fail(ProjctlError(f"no token has the id {token_id!r}",
                           suggestions=["projctld hub token list  # shows the ids"]))
    click.echo(f"projctld: token {token_id} revoked", err=True)


@hub.group("share")
def hub_share() -> None:
    """Read-only links to one project's team page, for people without a token (a manager, a
    stakeholder). A link is its own secret: whoever has it sees that project until it expires
    or is revoked. The hub keeps only its hash."""


@hub_share.command("create")
@click.option("--project", required=True, metavar="P", help="The one project it shows.")
@click.option("--days", type=click.IntRange(1, 365), default=30, show_default=True,
              help="How long it works.")
@click.option("--url", "base_url", metavar="URL", envvar="PROJCTL_HUB_URL",
              help="The hub's address as people reach it (https://hub.example.com), to print "
              "the whole link; else its path.")
@_database_option
def hub_share_create(project: str, days: int, base_url: str | None, database: str) -> None:
    """Create a share link and print it, once, on stdout."""
    if not _PROJECT.match(project):
        raise click.BadParameter(f"{project!r} is not a project name (as in [projects.NAME])",
                                 param_hint="--project")
    secret, share_hash, share_id = new_share()
    now = time.time()
    record = ShareRecord(id=share_id, project=project, created_at=now,
                         expires_at=now + days * 86400)
    _on_storage(database, lambda storage: storage.add_share(share_hash, record))
    click.echo(f"{(base_url or '').rstrip('/')}/s/{secret}")
    click.echo(
        f"projctld: share link {share_id} shows project {project}, read-only, to whoever has "
        f"it, until {_when(record.expires_at)}. It is not shown again; `projctld hub share "
        f"revoke {share_id}` ends it." + ("" if base_url else " Put the hub's address in "
                                          "front of the path (or pass --url)."), err=True)


def _echo_table(rows: list[tuple[str, ...]]) -> None:
    """Print rows (the first one the heading) in columns as wide as their widest cell."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                       strict=True)).rstrip())


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


@hub_share.command("list")
@_database_option
def hub_share_list(database: str) -> None:
    """List the share links: id, project, when created, until when, whether revoked."""
    records = _on_storage(database, lambda storage: storage.list_shares())
    if not records:
        click.echo("no share links yet; create one with: projctld hub share create --project "
                   "PROJECT", err=True)
        return
    now = time.time()
    rows = [("ID", "PROJECT", "CREATED", "EXPIRES", "STATE")] + [
        (r.id, r.project, _when(r.created_at), _when(r.expires_at),
         "revoked" if r.revoked else "live" if r.live(now) else "expired")
        for r in records
    ]
    _echo_table(rows)


@hub_share.command("revoke")
@click.argument("share_id", metavar="ID")
@_database_option
def hub_share_revoke(share_id: str, database: str) -> None:
    """Revoke a share link: it, and every page opened through it, stops working at once."""
    if not _on_storage(database, lambda storage: storage.revoke_share(share_id)):
        _fail(ProjctlError(f"no share link has the id {share_id!r}",
                           suggestions=["projctld hub share list  # shows the ids"]))
    click.echo(f"projctld: share link {share_id} revoked", err=True)


@hub.group("user")
def hub_user() -> None:
    """Hub users' names upstream (GitHub login, GitLab username, Jira account id), by which
    each device picks out its own change requests, CI and tickets from the team's."""


@hub_user.command("set")
@click.argument("user", callback=_check_user)
@click.option("--github", metavar="LOGIN", help="The user's GitHub login.")
@click.option("--gitlab", metavar="USERNAME", help="The user's GitLab username.")
@click.option("--jira", metavar="ACCOUNT", help="The user's Jira account id (Cloud) or user "
              "name (Data Center).")
@_database_option
def hub_user_set(user: str, github: str | None, gitlab: str | None, jira: str | None,
                 database: str) -> None:
    """Map USER (as in `hub token create --user`) to their upstream names; an empty value
    ("") forgets one."""
    given = {kind: value for kind, value in (("github", github), ("gitlab", gitlab),
                                             ("jira", jira)) if value is not None}
    if not given:
        raise click.UsageError("name at least one of --github, --gitlab, --jira")
    for kind, value in given.items():
        if value and (len(value) > 256 or not value.isprintable() or value != value.strip()):
            raise click.BadParameter(f"{value!r} is not a {kind} name", param_hint=f"--{kind}")

    async def store(storage: HubStorage) -> None:
        for kind, value in given.items():
            await storage.set_identity(user, kind, value or None)

    _on_storage(database, store)
    click.echo(f"projctld: {user} is " + ", ".join(
        f"{kind} {value}" if value else f"no one on {kind}" for kind, value in given.items()),
        err=True)


@hub_user.command("list")
@_database_option
def hub_user_list(database: str) -> None:
    """List each user's upstream names."""
    found = _on_storage(database, lambda storage: storage.identities())
    if not found:
        click.echo("no user is mapped yet; map one with: projctld hub user set USER "
                   "--github LOGIN", err=True)
        return
    rows = [("USER", "GITHUB", "GITLAB", "JIRA")] + [
        (user, names.get("github", "-"), names.get("gitlab", "-"), names.get("jira", "-"))
        for user, names in sorted(found.items())]
    _echo_table(rows)


@hub_user.command("remove")
@click.argument("user", callback=_check_user)
@_database_option
def hub_user_remove(user: str, database: str) -> None:
    """Forget every upstream name of USER."""
    async def forget(storage: HubStorage) -> None:
        for kind in ("github", "gitlab", "jira"):
            await storage.set_identity(user, kind, None)

    _on_storage(database, forget)
    click.echo(f"projctld: {user} has no upstream names now", err=True)


if __name__ == "__main__":
    main()
