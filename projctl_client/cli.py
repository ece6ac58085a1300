"""The `projctl` commands (click), one small function each; views are rendered by render.py."""

from __future__ import annotations

import sys

import click

from projctl_client import __version__, daemonctl, hotpath, paths, render
from projctl_client.connection import (
    ClientError,
    NotRunning,
    connect,
    connect_or_start,
    request,
)

EXIT_CODES = """\b
Exit codes: 0 success · 1 projctld refused the request · 2 bad usage
            3 projctld not running and could not be started"""


def _fail(exc: ClientError) -> None:
    click.echo(render.error(exc), err=True)
    sys.exit(exc.exit_code)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES,
)
@click.version_option(__version__, "-V", "--version", prog_name="projctl")
def cli() -> None:
    """Where does my work stand? Instant answers from projctld, the per-user daemon.

    projctl never waits on the network: projctld keeps the state warm and answers over a
    Unix socket. The first command starts the daemon if it is not running (set
    PROJCTL_NO_AUTOSTART=1 to prevent that).

    \b
    Files (XDG base directories):
      config  $PROJCTL_CONFIG or $XDG_CONFIG_HOME/projctl/config.toml
      state   $XDG_STATE_HOME/projctl/ (state.db, projctld.log)
      socket  $PROJCTL_SOCKET or $XDG_RUNTIME_DIR/projctl/projctld.sock
    """


@cli.command(short_help="Show where your work stands, from the daemon's warm state.")
@click.option("--json", "as_json", is_flag=True, help="Print the view as JSON (see README).")
def status(as_json: bool) -> None:
    """Show the current checkout, the configured projects and what the daemon knows.

    Every line says how old its data is. The JSON form is stable: fields are only ever
    added, and times are Unix epoch seconds.
    """
    sys.exit(hotpath.status(as_json))


@cli.command()
def ping() -> None:
    """Print the daemon's version and the round-trip time of one request."""
    sys.exit(hotpath.ping())


@cli.command(short_help="Poll GitHub, GitLab and Jira now and wait for the result.")
@click.argument("project", required=False)
@click.option("--wait", type=click.FloatRange(0, 600), default=30.0, show_default=True,
              metavar="SECONDS",
              help="How long to wait; polls still running then finish in the background.")
def refresh(project: str | None, wait: float) -> None:
    """Poll the upstreams of PROJECT (or of every project) now, instead of on schedule.

    Prints what each poll brought or why it failed; exits 1 if any failed. The daemon keeps
    showing the last good data of a failed upstream, marked with its age.
    """
    try:
        with connect_or_start(timeout=wait + 10) as conn:
            reply = conn.call(request("refresh", project=project, wait=wait))
    except ClientError as exc:
        _fail(exc)
    results = reply["results"]
    click.echo(render.refresh(results))
    sys.exit(1 if any(r["outcome"] == "error" for r in results) else 0)


@cli.command(short_help="See a full status from built-in demo data: no tokens, no network.")
@click.option("--stop", is_flag=True, help="Stop the demo daemon.")
def demo(stop: bool) -> None:
    """Show what projctl does, against built-in fake GitHub, GitLab and Jira servers.

    A separate sandbox daemon serves the demo (its own socket and state); your real daemon and
    config are not touched. Everything it shows is labelled as sandbox data.
    """
    socket = paths.sandbox_socket_path()
    if stop:
        _stop(quiet_if_stopped=False, socket=socket)
        return
    try:
        with connect_or_start(socket, timeout=40, sandbox=True) as conn:
            conn.call(request("refresh", wait=30.0))
            view = conn.call(request("status", checkout=hotpath.current_checkout()))
    except ClientError as exc:
        _fail(exc)
    click.echo(render.status(view))
    click.echo(f"\nExplore it: PROJCTL_SOCKET={socket} projctl status --json\n"
               "Stop it:    projctl demo --stop")


@cli.group(short_help="Start, stop, restart or inspect projctld.")
def daemon() -> None:
    """Start, stop and inspect projctld (`projctld run` runs it in the foreground)."""


@daemon.command("start")
def daemon_start() -> None:
    """Start projctld in the background unless it is already running."""
    try:
        info = _running_daemon()
    except ClientError as exc:
        _fail(exc)
    if info:
        click.echo(f"projctld is already running (pid {info['pid']})")
        return
    _start()


@daemon.command("stop", short_help="Stop projctld in order.")
def daemon_stop() -> None:
    """Stop projctld: it finishes requests in flight, closes its state and removes its socket."""
    _stop(quiet_if_stopped=False)


@daemon.command("restart")
def daemon_restart() -> None:
    """Stop projctld if it runs, then start the installed version."""
    _stop(quiet_if_stopped=True)
    _start()


@daemon.command("status", short_help="Say whether projctld runs, and its pid, version, paths.")
def daemon_status() -> None:
    """Say whether projctld runs, with its pid, version, uptime and paths (exit 3 if not)."""
    try:
        info = _running_daemon()
    except ClientError as exc:
        _fail(exc)
    if not info:
        click.echo(f"projctld is not running (socket {render.home(paths.socket_path())})")
        click.echo("  try: projctl daemon start")
        sys.exit(3)
    click.echo(render.daemon_info(info))


def _running_daemon() -> dict | None:
    """The running daemon's info from a ping, or None when none listens on the socket."""
    try:
        with connect() as conn:
            return conn.call(request("ping"))["daemon"]  # type: ignore[return-value]
    except NotRunning:
        return None


def _start() -> None:
    try:
        daemonctl.start()
        info = _running_daemon()
    except ClientError as exc:
        _fail(exc)
    if info is None:  # it stopped again at once; its log says why
        _fail(ClientError("projctld started but stopped again", [f"less {paths.log_path()}"]))
    click.echo(f"started projctld (pid {info['pid']}) on {render.home(paths.socket_path())}")


def _stop(*, quiet_if_stopped: bool, socket: str | None = None) -> None:
    try:
        with connect(socket) as conn:
            info = conn.call(request("ping"))["daemon"]
            conn.call(request("shutdown"))
    except NotRunning:
        if not quiet_if_stopped:
            click.echo("projctld is not running")
        return
    except ClientError as exc:
        _fail(exc)
    if not daemonctl.wait_until_stopped(socket):
        click.echo(
            f"projctl: projctld (pid {info['pid']}) did not stop in time\n"
            f"  try: kill {info['pid']}",
            err=True,
        )
        sys.exit(1)
    click.echo(f"stopped projctld (pid {info['pid']})")
