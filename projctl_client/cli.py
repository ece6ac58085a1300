"""The `projctl` commands (click), one small function each; views are rendered by render.py."""

from __future__ import annotations

import difflib
import itertools
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from typing import NamedTuple, NoReturn

import click

from projctl_client import (
    __version__,
    commands,
    daemonctl,
    git,
    gitcmd,
    hotpath,
    jsonout,
    paths,
    refs,
    render,
    runs,
    shellinit,
)
from projctl_client.connection import (
    ClientError,
    Connection,
    NotRunning,
    connect,
    request,
)
from projctl_client.daemonctl import connect_or_start

EXIT_CODES = """\b
Exit codes: 0 success · 1 projctld refused the request · 2 bad usage
            3 projctld not running and could not be started"""


def _fail(exc: ClientError, exit_code: int | None = None) -> NoReturn:
    click.echo(render.error(exc), err=True)
    sys.exit(exc.exit_code if exit_code is None else exit_code)


def _ask(kind: str, **fields: object) -> dict:
    """The reply to one request on a new connection (projctld is started if need be); a
    failure ends the command with its message."""
    try:
        with connect_or_start() as conn:
            return conn.call(request(kind, **fields))
    except ClientError as exc:
        _fail(exc)


class _Projctl(click.Group):
    """The built-in commands, then those that plugins add (commands.py; an executable has been
    exec'd by __main__ before click is imported). Entry points are read only for a name that is
    not built in, for --help, and to suggest a name for one that does not exist."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or not commands.valid_name(cmd_name):
            return command
        return _plugin_command(cmd_name, frozenset(self.commands))

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        if name.startswith("-") or ctx.resilient_parsing:
            return super().resolve_command(ctx, args)
        command = self.get_command(ctx, name)
        if command is None:
            raise _no_such_command(ctx, name, frozenset(self.commands))
        return name, command, args[1:]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_commands(ctx, formatter)
        found = commands.everything(frozenset(self.commands))
        # As click fits the built-ins' help: one line beside the longest name of the section
        # (write_dl pads each section to its own names).
        names = [c.name for c in found if c.problem is None] or [""]
        commands.load_all(found, formatter.width - 6 - max(map(len, names)))
        rows = commands.help_rows(found)
        if rows:
            with formatter.section("Plugin commands (projctl plugins lists them)"):
                formatter.write_dl(rows)


def _plugin_command(name: str, built_in: frozenset[str]) -> click.Command | None:
    """The click command of the entry point that `projctl NAME` runs, or None."""
    found = [c for c in commands.entry_points(built_in, set())
             if c.name == name and c.problem is None]
    if not found:
        return None
    try:
        return commands.load(found[0])  # type: ignore[return-value]
    except commands.LoadError as exc:
        dist = found[0].distribution or "its package"
        _fail(ClientError(f"the command {name} of {dist} cannot be used: {exc}",
                          [f"pip install --force-reinstall {dist}  # or uninstall it",
                           "projctl plugins  # the commands plugins add, and their problems"]))


def _no_such_command(ctx: click.Context, name: str,
                     built_in: frozenset[str]) -> click.UsageError:
    """click's "No such command ... Did you mean", the plugins' commands among the names it
    suggests, and why a file of that name was not run, if there is one."""
    found = commands.everything(built_in)
    names = [*built_in, *(c.name for c in found if c.problem is None)]
    close = sorted(difflib.get_close_matches(name, names))
    message = f"No such command {name!r}."
    if len(close) == 1:
        message += f" Did you mean {close[0]!r}?"
    elif close:
        message += f" (Did you mean one of: {', '.join(map(repr, close))}?)"
    notes = [f"{c.path or c.target} was not run: {c.problem}"
             for c in found if c.name == name and c.problem is not None]
    return click.UsageError("\n".join([message, *notes]), ctx)


@click.group(
    cls=_Projctl,
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
@click.option("--json", "as_json", is_flag=True,
              help="Print the view as JSON (its shape: docs/user-guide.md).")
@click.option("--short", is_flag=True, help="One line per project: what needs you, how fresh.")
@click.option("--project", "-p", metavar="NAME", help="Only this project.")
def status(as_json: bool, short: bool, project: str | None) -> None:
    """Show the current checkout, the configured projects and what the daemon knows: what
    needs you first (reviews asked of you, your failing CI, changes requested, conflicts).

    The text fits the terminal (COLUMNS, else its width; 80 columns in a pipe); change
    requests, pipelines and tickets are links where the terminal shows them
    (PROJCTL_LINKS=never|always|auto). Every line says how old its data is. The JSON form is
    stable: fields are only ever added, and times are Unix epoch seconds.
    """
    if as_json and short:
        raise click.UsageError("--short lays out the text; --json has the whole view")
    sys.exit(hotpath.status(as_json, short, project))


@cli.command()
def ping() -> None:
    """Print the daemon's version and the round-trip time of one request."""
    sys.exit(hotpath.ping())


@cli.command(short_help="Print a compact segment for your shell prompt; never slow, never fails.")
@click.option("--format", "fmt", metavar="FORMAT",
              help="Placeholders {project} {ref} {number} {review} {ci} {waiting} {stale}; "
              "[ ... ] drops its text when its placeholders are empty. Default: the config's "
              "[prompt] format.")
@click.option("--style", type=click.Choice(hotpath.PROMPT_STYLES), default="plain",
              show_default=True, help="Colours: ansi, or ansi marked for bash or zsh prompts.")
@click.option("--timeout", type=click.FloatRange(1, 10_000), default=hotpath.PROMPT_TIMEOUT_MS,
              show_default=True, metavar="MS", help="Give up after this many milliseconds.")
def prompt(fmt: str | None, style: str, timeout: float) -> None:
    """Print the change request, review, CI, events waiting to sync and a stale marker for the
    current checkout's branch, e.g. `#42 approved ✓ ↑2`.

    Made for prompts: it never starts the daemon, and prints nothing (exit 0) outside a
    configured project, when the daemon is not running, or when it does not answer within
    --timeout. For a prompt that spawns no process at all, see `projctl shell-init`.
    """
    sys.exit(hotpath.prompt(fmt, style, timeout / 1000))


@cli.command("shell-init", short_help="Print the snippet that puts projctl in your shell prompt.")
@click.argument("shell", type=click.Choice(shellinit.SHELLS))
def shell_init(shell: str) -> None:
    """Print the prompt snippet for SHELL; its prompts spawn no process at all.

    \b
      bash  eval "$(projctl shell-init bash)"    in ~/.bashrc
      zsh   eval "$(projctl shell-init zsh)"     in ~/.zshrc
      fish  projctl shell-init fish | source     in ~/.config/fish/config.fish

    The daemon keeps a small file per repository and branch; the snippet finds the repository
    and branch with shell built-ins and reads that file. The segment goes in front of your
    prompt, or where you put $PROJCTL_PROMPT yourself. PROJCTL_PROMPT_COLOR=0 turns colours off.
    """
    click.echo(shellinit.snippet(shell, paths.prompt_dir(paths.socket_path())), nl=False)


@cli.command(short_help="Record a note in the team's event log.")
@click.argument("text", nargs=-1, required=True)
@click.option("--project", "-p", metavar="NAME", help="The project (default: this checkout's).")
@click.option("--edit", metavar="ID",
              help="Replace the text of note ID instead (its first characters are enough).")
def note(text: tuple[str, ...], project: str | None, edit: str | None) -> None:
    """Record TEXT as a note of the project this checkout belongs to.

    The note is kept on this machine at once and reaches the team through the hub when there
    is one. `projctl log` shows notes with their ids, which --edit takes.
    """
    sys.exit(hotpath.note(" ".join(text), project, edit))


@cli.group(short_help="Create git branches and record them for the team.")
def branch() -> None:
    """Create git branches in the current checkout and record them in the team's event log."""


@branch.command("create")
@click.argument("name")
@click.option("--from", "base", metavar="REF", help="Start the branch at REF (default: HEAD).")
@click.option("--no-switch", is_flag=True, help="Create the branch but stay where you are.")
@click.option("--project", "-p", metavar="NAME", help="The project (default: this checkout's).")
def branch_create(name: str, base: str | None, no_switch: bool, project: str | None) -> None:
    """Create branch NAME with git (`git switch -c`, or `git branch` with --no-switch) and
    record it. If git refuses, its message is shown and nothing is recorded."""
    here = hotpath.current_checkout()
    if here is None:
        _fail(ClientError("not in a git checkout: `projctl branch create` makes the branch in "
                          "the checkout you are in", ["cd ~/src/PROJECT && projctl branch "
                                                      f"create {name}"]))
    # Which project it goes to is settled before git runs: a branch that cannot be recorded
    # is better not made.
    _ask("branch_created", checkout=here, project=project, name=name, dry_run=True)
    args = ["branch", name] if no_switch else ["switch", "-c", name]
    status = gitcmd.run(args + ([base] if base else []))
    if status != 0:
        _fail(ClientError(f"git {args[0]} failed (exit status {status}); nothing was recorded"))
    commit = gitcmd.commit_of(f"refs/heads/{name}")
    try:
        with connect_or_start() as conn:
            reply = conn.call(request(
                "branch_created", checkout=hotpath.current_checkout(), project=project,
                name=name, base=base or here["branch"] or here["head"], commit=commit))
    except ClientError as exc:
        _fail(ClientError(f"branch {name} exists but was not recorded: {exc.message}",
                          exc.suggestions), exit_code=1)
    at = f" at {commit[:7]}" if commit else ""
    click.echo(f"recorded branch {name}{at} in {reply['event']['project']}"
               f"{render.sync_hint(reply['sync'])}")


@cli.command(short_help="Run the project's deploy command for ENV and record the deployment.")
@click.argument("environment", metavar="ENV")
@click.option("--branch", "-b", metavar="BRANCH",
              help="Deploy BRANCH (its commit here) instead of the checkout's branch.")
@click.option("--dry-run", is_flag=True, help="Say what would run; record nothing.")
@click.option("--verbose", "-v", is_flag=True,
              help="Stream the command's output (else only a failure's last lines are shown).")
@click.option("--project", "-p", metavar="NAME", help="The project (default: this checkout's).")
def deploy(environment: str, branch: str | None, dry_run: bool, verbose: bool,
           project: str | None) -> None:
    """Deploy to ENV: run the project's `deploy` command and record how it went.

    The command comes from `deploy` in [projects.NAME] of the config and runs in the checkout
    with PROJCTL_ENVIRONMENT, PROJCTL_BRANCH, PROJCTL_COMMIT and PROJCTL_DEPLOYMENT set. Without
    one, the deployment is only recorded. Exits 1 if the command fails, 130 on Ctrl-C.
    """
    here = hotpath.current_checkout()
    branch, commit = _deploy_target(here, branch)
    commit_time = gitcmd.commit_time(commit, cwd=here["root"]) if here and commit else None
    plan = _ask("deploy_start", checkout=here, project=project, environment=environment,
                branch=branch, commit=commit, dry_run=dry_run, commit_time=commit_time)
    what = render.ref(plan["branch"], plan["commit"]) or "(no branch)"
    target = f"{what} to {plan['environment']}"
    if plan.get("workflow"):
        sys.exit(_deploy_workflow(plan, here, target, dry_run))
    if dry_run:
        click.echo(_dry_run(plan, target))
        return
    if not plan["command"]:
        reply = _finish(plan, 0, 0.0, "")
        click.echo(f"recorded a deployment of {target}: no deploy command is configured, so "
                   f"nothing ran{render.sync_hint(reply['sync'])}")
        click.echo(f"  to run one: set deploy = \"./deploy.sh\" in [projects.{plan['project']}]"
                   f" of {render.home(paths.config_path())}")
        return
    click.echo(f"deploying {target}: {shlex.join(plan['command'])}")
    outcome = _run_deploy(plan, verbose)
    reply = _finish(plan, outcome.exit_status, outcome.seconds, outcome.reason)
    took = render.span(outcome.seconds)
    if outcome.exit_status == 0:
        click.echo(f"deployed {target} in {took}{render.sync_hint(reply['sync'])}")
        return
    if outcome.output:
        heading = f"its last {_TAIL_LINES} lines of output" \
            if len(outcome.output) == _TAIL_LINES else "its output"
        click.echo(f"{heading}:\n" + "".join(outcome.output).rstrip("\n"), err=True)
    why = outcome.reason if outcome.exit_status is None else f"exit status {outcome.exit_status}"
    click.echo(f"deployment to {plan['environment']} failed ({why}) after {took}", err=True)
    if not outcome.started:
        click.echo(f"  try: fix deploy in [projects.{plan['project']}] of "
                   f"{render.home(paths.config_path())}", err=True)
    sys.exit(130 if outcome.interrupted else 1)


def _deploy_workflow(plan: dict, here: dict | None, target: str, dry_run: bool) -> int:
    """Deploy by the project's `deploy` workflow: the daemon runs it and records the outcome."""
    start = request("run_start", checkout=here, project=plan["project"], workflow=plan["workflow"],
                    params=plan["params"], dry_run=dry_run,
                    deployment=None if dry_run else plan["deployment"])
    if dry_run:
        click.echo(f"would deploy {target} by the {plan['workflow']} workflow")
    else:
        click.echo(f"deploying {target} by the {plan['workflow']} workflow")
    return _start_run(start)


def _start_run(start: dict) -> int:
    """Start (or plan) a run in the daemon and watch it; the exit code of `_watch`."""
    style = render.Style(sys.stdout)
    try:
        with connect_or_start() as conn:
            reply = conn.call(start)
            if reply["type"] == "run_plan":
                click.echo(runs.plan(reply, style))
                click.echo("nothing was run or recorded (--dry-run)")
                return 0
            return _watch(conn, reply["run"]["id"][-render.SHORT_ID:])
    except ClientError as exc:
        _fail(exc)


def _watch(conn: Connection, run: str) -> int:
    """Show a run's progress until it ends: 0 when it succeeded, 1 when it failed, 130 when
    the user stopped watching (the run goes on)."""
    try:
        return 0 if runs.follow(conn, run) else 1
    except KeyboardInterrupt:
        click.echo(f"\nstopped watching; the run goes on in projctld: projctl runs show {run}",
                   err=True)
        return 130


def _deploy_target(here: dict | None, branch: str | None) -> tuple[str | None, str | None]:
    """The branch and commit to deploy: --branch resolved by git, else the checkout's."""
    if branch is None:
        return (here["branch"], here["head"]) if here else (None, None)
    if here is None:
        raise click.BadParameter("needs a git checkout to find the branch's commit in; cd "
                                 "into one", param_hint="'--branch'")
    commit = gitcmd.commit_of(branch)
    if commit is None:
        raise click.BadParameter(f"{branch!r} names no commit in {render.home(here['root'])} "
                                 "(`git branch -a` lists branches)", param_hint="'--branch'")
    return branch, commit


def _dry_run(plan: dict, target: str) -> str:
    lines = [f"would deploy {target} (project {plan['project']})"]
    if plan["command"]:
        lines.append(f"  run  {shlex.join(plan['command'])}")
        lines.append(f"  in   {render.home(plan['cwd'] or os.getcwd())}")
    else:
        lines.append("  no deploy command configured: would only record the deployment")
    lines.append("nothing was run or recorded (--dry-run)")
    return "\n".join(lines)


# Without --verbose, a failed deployment shows this many of its last lines of output.
_TAIL_LINES = 20


class _Outcome(NamedTuple):
    """How a deploy command ended; `exit_status` is None when it did not exit by itself."""

    exit_status: int | None
    reason: str
    seconds: float
    output: tuple[str, ...] = ()
    started: bool = True
    interrupted: bool = False


def _run_deploy(plan: dict, verbose: bool) -> _Outcome:
    """Run the plan's command, with its output captured unless `verbose`."""
    env = {**os.environ, "PROJCTL_ENVIRONMENT": plan["environment"],
           "PROJCTL_BRANCH": plan["branch"] or "", "PROJCTL_COMMIT": plan["commit"] or "",
           "PROJCTL_DEPLOYMENT": plan["deployment"]}
    # Unseen output must not hide a prompt that waits forever: quiet runs get no stdin.
    quiet = {} if verbose else {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE,
                                "stderr": subprocess.STDOUT}
    started = time.monotonic()
    try:
        child = subprocess.Popen(plan["command"], cwd=plan["cwd"], env=env, **quiet)
    except OSError as exc:
        return _Outcome(None, _cannot_start(plan, exc), time.monotonic() - started,
                        started=False)
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    try:
        for line in child.stdout or ():
            tail.append(line.decode(errors="replace"))
        child.wait()
    except KeyboardInterrupt:
        _wait_after_interrupt(child)
        return _Outcome(None, "interrupted", time.monotonic() - started, tuple(tail),
                        interrupted=True)
    seconds = time.monotonic() - started
    code = child.returncode
    if code < 0:
        return _Outcome(None, f"killed by {signal.Signals(-code).name}", seconds, tuple(tail))
    return _Outcome(code, f"exited with status {code}" if code else "", seconds, tuple(tail))


def _wait_after_interrupt(child: subprocess.Popen[bytes]) -> None:
    """The command got the Ctrl-C too; let it clean up, unless Ctrl-C comes again."""
    try:
        child.wait()
    except KeyboardInterrupt:
        child.kill()
        child.wait()


def _cannot_start(plan: dict, exc: OSError) -> str:
    program = plan["command"][0]
    if exc.filename not in (None, program):  # Popen names the directory when that is missing
        return f"cannot run in {exc.filename}: {exc.strerror}"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {program}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {program}"
    return f"cannot run {program}: {exc.strerror or exc}"


def _finish(plan: dict, exit_status: int | None, seconds: float, reason: str) -> dict:
    """Record how the deployment ended; if that fails, say the deployment happened anyway."""
    try:
        # A fresh connection: the deploy may have outlasted the daemon's idle timeout.
        with connect_or_start() as conn:
            return conn.call(request("deploy_finish", project=plan["project"],
                                     deployment=plan["deployment"], exit_status=exit_status,
                                     duration=seconds, reason=reason))
    except ClientError as exc:
        outcome = "succeeded" if exit_status == 0 else f"failed ({reason})"
        _fail(ClientError(f"the deployment to {plan['environment']} {outcome} but its end was "
                          f"not recorded: {exc.message}", exc.suggestions), exit_code=1)


@cli.command("mark-failed", short_help="Mark a deployment as having caused a failure.")
@click.argument("deployment", metavar="ID")
@click.option("--reason", "-r", default="", metavar="TEXT",
              help="What failed (an incident, a rollback), for whoever reads the log.")
@click.option("--undo", is_flag=True, help="Take a mark back: it did not cause a failure.")
@click.option("--project", "-p", metavar="NAME", help="The project (default: this checkout's).")
def mark_failed(deployment: str, reason: str, undo: bool, project: str | None) -> None:
    """Record that deployment ID (the id `projctl log --type deployment` shows, or any unique
    start or end of it) caused a failure in its environment: a rollback, a hotfix, an
    incident. It then counts in the change failure rate and the time to restore of
    `projctl report` and of the hub's pages. Anyone who may write the project may mark; the
    latest mark stands, so --undo takes one back."""
    if len(reason) > 4000:
        raise click.BadParameter("at most 4000 characters", param_hint="--reason")
    reply = _ask("deploy_mark", checkout=hotpath.current_checkout(), project=project,
                 deployment=deployment, caused_failure=not undo, reason=reason)
    payload = reply["event"]["payload"]
    said = "no longer counts as a failure" if undo else "counts as a failure"
    click.echo(f"deployment {payload['deployment'][-render.SHORT_ID:]} to "
               f"{payload['environment']} {said}{render.sync_hint(reply['sync'])}")


@cli.command(short_help="Show the project's delivery metrics: DORA's four keys.")
@click.argument("project", required=False)
@click.option("--env", "environment", metavar="ENV", help="Only this environment.")
@click.option("--since", "period", default="30d", show_default=True, metavar="SPAN",
              help="The period: 7d, 30d, 90d, 2w, 12h (at most 365d); compared with the "
              "period of the same length before it.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def report(project: str | None, environment: str | None, period: str, as_json: bool) -> None:
    """Deployment frequency, lead time for changes, change failure rate and time to restore
    of PROJECT (default: this checkout's), from this device's log: the same computation as
    the hub's team page, so both say the same of the same events. docs/metrics.md defines
    each key and what projctl can and cannot see."""
    days = _period_days(period)
    reply = _ask("report", checkout=hotpath.current_checkout(), project=project,
                 environment=environment, days=days)
    del reply["type"]
    reply.pop("config_error", None)
    if as_json:
        click.echo(jsonout.dumps(reply))
    else:
        click.echo(render.delivery(reply))


def _period_days(text: str) -> float:
    number, unit = text.strip()[:-1], text.strip()[-1:]
    if unit not in ("h", "d", "w") or not number.isascii() or not number.isdigit():
        raise click.BadParameter(f"{text!r} is not a span like 7d, 30d, 90d, 2w or 12h",
                                 param_hint="--since")
    days = int(number) * {"h": 1 / 24, "d": 1, "w": 7}[unit]
    if not 1 / 24 <= days <= 365:
        raise click.BadParameter(f"{text!r}: the period is at least 1h and at most 365d",
                                 param_hint="--since")
    return days


_SINCE_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SINCE_DATES = ("%Y-%m-%d", "%Y-%m-%dT%H:%M")


def parse_since(text: str, now: float) -> float | None:
    """Unix seconds for `30m`, `2h`, `3d`, `1w` (before `now`) or a local `YYYY-MM-DD[THH:MM]`."""
    text = text.strip()
    number, unit = text[:-1], text[-1:]
    if unit in _SINCE_UNITS and number.isascii() and number.isdigit():
        return now - int(number) * _SINCE_UNITS[unit]
    for form in _SINCE_DATES:
        try:
            return datetime.strptime(text, form).timestamp()
        except ValueError:
            continue
    return None


class _Since(click.ParamType):
    name = "WHEN"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        seconds = parse_since(str(value), time.time())
        if seconds is None:
            self.fail(f"{value!r} is neither a duration (30m, 2h, 3d, 1w) nor a local date "
                      "(YYYY-MM-DD or YYYY-MM-DDTHH:MM)", param, ctx)
        return seconds


@cli.command("run", short_help="Run a workflow in the daemon and watch it.")
@click.argument("workflow")
@click.option("--param", "-P", "params", multiple=True, metavar="NAME=VALUE",
              help="A parameter of the workflow; repeat for each.")
@click.option("--project", "-p", metavar="NAME", help="The project (default: this checkout's).")
@click.option("--dry-run", is_flag=True, help="Show what would run, and run nothing.")
def run_workflow(workflow: str, params: tuple[str, ...], project: str | None,
                 dry_run: bool) -> None:
    """Run WORKFLOW, from .projctl/workflows/ of this repository or [workflows] of the config.

    projctld runs it, so it goes on if this command stops (Ctrl-C only stops watching);
    progress shows as it happens. `projctl runs` lists runs, `projctl runs show ID` replays
    one. Exits 0 when the workflow succeeded, 1 when it failed.
    """
    if project is not None and "=" in project:
        # -p is --project everywhere; it once was --param here.
        raise click.BadParameter(
            f"{project!r} is not a project name; a parameter is -P NAME=VALUE (--param)",
            param_hint="-p/--project")
    values = {}
    for param in params:
        name, sep, value = param.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{param!r} is not NAME=VALUE", param_hint="--param")
        values[name] = value
    sys.exit(_start_run(request("run_start", checkout=hotpath.current_checkout(),
                                project=project, workflow=workflow, params=values,
                                dry_run=dry_run)))


@cli.group("runs", invoke_without_command=True,
           short_help="List workflow runs; `runs show ID` replays one.")
@click.option("--project", metavar="NAME", help="Only this project's runs.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@click.pass_context
def runs_group(ctx: click.Context, project: str | None, limit: int, as_json: bool) -> None:
    """The newest workflow runs started on this machine, with their state."""
    if ctx.invoked_subcommand is not None:
        return
    view = _ask("runs", project=project, limit=limit)
    if as_json:
        click.echo(jsonout.dumps(view["runs"]))
    else:
        click.echo(runs.table(view["runs"], render.Style(sys.stdout)))


@runs_group.command("show")
@click.argument("run")
def runs_show(run: str) -> None:
    """Replay run RUN (its id, or the end of it that `projctl runs` shows); a run that is
    still going is followed until it ends."""
    try:
        with connect_or_start() as conn:
            sys.exit(_watch(conn, run))
    except ClientError as exc:
        _fail(exc)


@cli.command(short_help="Show the team's events: deployments, branches, notes.")
@click.argument("project", required=False)
@click.option("--project", "-p", "project_option", metavar="NAME",
              help="The project, as with the other commands (same as PROJECT).")
@click.option("--since", type=_Since(), help="Only events since WHEN: 30m, 2h, 3d, 1w, "
              "YYYY-MM-DD or YYYY-MM-DDTHH:MM (local time).")
@click.option("--type", "types", multiple=True, metavar="TYPE",
              help="Only this type or prefix (deployment, note, branch.created); repeatable.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True,
              metavar="N", help="Show at most the newest N events.")
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
def log(project: str | None, project_option: str | None, since: float | None,
        types: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Show the events of PROJECT (default: this checkout's), oldest first.

    Events recorded here that have not reached the hub yet are marked `(not synced yet)`.
    Each line names who pushed the event, as the hub says (its token's user). The events come
    a page at a time, so that any history fits, however large its events.
    """
    if project and project_option and project != project_option:
        raise click.UsageError(f"two projects given: {project} and --project {project_option}")
    fields = {"checkout": hotpath.current_checkout(), "project": project or project_option,
              "since": since, "types": list(types), "paged": True}
    last: dict = {}

    def pages(conn: Connection) -> Iterator[list[dict]]:
        cursor, wanted = None, limit
        while wanted > 0:
            view = conn.call(request("log", **fields, limit=wanted, cursor=cursor))
            last.update(view)
            yield view["events"]
            wanted -= len(view["events"])
            cursor = view.get("next")
            if not cursor:
                return

    lines: render.LogLines | None = None
    try:
        with connect_or_start() as conn:
            if as_json:
                stream = pages(conn)
                first = next(stream)
                jsonout.stream({"project": last["project"]}, "events",
                               itertools.chain([first], stream),
                               lambda: {"sync": last["sync"]}, sys.stdout.write)
                sys.stdout.write("\n")
                return
            for events in pages(conn):
                lines = lines or render.LogLines(last["project"])
                lines.add(events)
    except ClientError as exc:
        _fail(exc)
    assert lines is not None
    click.echo(lines.text(limit=limit, filtered=since is not None or bool(types)))


@cli.command(short_help="Show where the team sync stands; --now syncs at once.")
@click.option("--now", is_flag=True, help="Sync with the hub now and show the outcome.")
@click.option("--wait", type=click.FloatRange(0, 600), default=30.0, show_default=True,
              metavar="SECONDS", help="With --now, how long to wait for the attempt.")
def sync(now: bool, wait: float) -> None:
    """Show the hub, the events waiting to be sent and the last sync; exits 1 when --now was
    given and that attempt failed. Events always stay on this machine until the hub has them."""
    try:
        with connect_or_start(timeout=wait + 10) as conn:
            reply = conn.call(request("sync", now=now, wait=wait))
    except ClientError as exc:
        _fail(exc)
    view = reply["sync"]
    click.echo(render.sync(view, demo=paths.socket_path() == paths.sandbox_socket_path()))
    attempt_failed = view["error"] is not None \
        and (view["last_success"] or 0) < (view["last_attempt"] or 0)
    sys.exit(1 if now and attempt_failed else 0)


@cli.command(short_help="List plugins: the daemon's, and the commands they add.")
@click.option("--json", "as_json", is_flag=True, help="Print the plugins as JSON.")
def plugins(as_json: bool) -> None:
    """List the daemon's plugins (name, version, where each came from, the hooks it
    implements, whether it loaded, and its last error), then the commands plugins add: each
    `projctl NAME` with the file or entry point it runs, and every other one found with why
    it never runs. Daemon plugins come from installed packages (entry point group
    `projctl.plugins`) and `[plugins] modules` in the config; commands from `projctl-NAME`
    executables on PATH and the entry point group `projctl.commands`
    (docs/workflows-and-plugins.md, Plugins)."""
    found = commands.everything(frozenset(cli.commands))
    commands.load_all(found)
    failure, reply = None, None
    try:
        with connect_or_start() as conn:
            reply = conn.call(request("plugins"))
        del reply["type"]
    except ClientError as exc:  # the commands are listed all the same
        failure = exc
    if as_json:
        click.echo(jsonout.dumps({**(reply or {"plugins": None}),
                                  "commands": [c.view() for c in found]}))
    else:
        style = render.Style(sys.stdout)
        daemon = render.plugins(reply["plugins"]) if reply else \
            "(projctld did not answer: see below)"
        click.echo(f"{style.bold}Daemon plugins{style.reset} (projctld)\n{daemon}\n\n"
                   f"{commands.text(found, sys.stdout)}")
    if failure is not None:
        _fail(failure)


@cli.command(short_help="Talk to projctld in JSON, as plugins and scripts do.",
             epilog=EXIT_CODES)
@click.argument("method")
@click.argument("arguments", required=False, metavar="[JSON|-]")
def call(method: str, arguments: str | None) -> None:
    """Call METHOD of the plugin interface (version 1) with its arguments as a JSON object
    (given here, or `-` to read them from stdin; none: {}) and print the reply as JSON.

    \b
    Methods, with the keys of their arguments (* required) and what they answer:
      version                                 the versions of this interface, projctl, projctld
      status                                  the status view, as status --json
      log      project, types, since, limit   events, oldest first, as log --json
      note     text*, project                 record a note
      event    type*, payload, project        record a team event of type x.NAME.TYPE
      request  plugin*, name*, args, project  what a daemon plugin's request handler answers

    project is by default the current checkout's. On failure, the reply is {"error": {"code",
    "message", "suggestions"}}, the message goes to stderr too, and the exit code says which
    failure it was (below; 2 also for a method or arguments that do not fit). README, Plugins,
    has the whole interface and an example in shell with jq.
    """
    from projctl_client import api

    try:
        values = _call_arguments(arguments)
        api.check(method, values)
        if method == "log":
            head: dict = {}
            pages = api.log_pages(head, **values)
            first = next(pages)
            jsonout.stream({"project": head["project"]}, "events",
                           itertools.chain([first], pages), lambda: {"sync": head["sync"]},
                           sys.stdout.write)
            sys.stdout.write("\n")
            return
        reply = api.call(method, values)
    except ClientError as exc:
        code = getattr(exc, "code", None) or ("usage" if exc.exit_code == 2 else "unavailable")
        click.echo(jsonout.dumps({"error": {"code": code, "message": exc.message,
                                            "suggestions": exc.suggestions}}))
        _fail(exc)
    click.echo(jsonout.dumps(reply))


# What `projctl call` reads from stdin at most: more than any request may carry (MAX_FRAME).
CALL_INPUT_MAX = 1 << 20


def _call_arguments(text: str | None) -> object:
    """The JSON arguments of `projctl call`: given, read from stdin (`-`), or none ({}). Only
    what the protocol carries: UTF-8, no NaN or infinities, integers within 64 bits."""
    import json

    from projctl_client.api import UsageError

    if text == "-":
        data = sys.stdin.buffer.read(CALL_INPUT_MAX + 1)
        if len(data) > CALL_INPUT_MAX:
            raise UsageError(f"more than {CALL_INPUT_MAX // 1024} KiB of arguments on stdin")
    else:
        data = os.fsencode(text or "")  # undoes the surrogates of bytes that are not UTF-8
    if not data.strip():
        return {}
    try:
        return json.loads(data, parse_constant=_no_constant, parse_int=_int64)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"the arguments are not JSON that projctl can send: {exc}",
                         ["projctl call note '{\"text\": \"deployed by hand\"}'"]) from None


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON has")


def _int64(text: str) -> int:
    value = int(text)
    if not -(2**63) <= value < 2**64:
        raise ValueError(f"{text} is beyond what 64 bits hold")
    return value


@cli.command(short_help="Show projctld's counters: requests, upstreams, sync, memory.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def metrics(as_json: bool) -> None:
    """Show what the daemon has done since it started: requests by type and by the projctl
    command that sent them (count, errors, latency quantiles), each upstream's requests, 304s,
    errors and rate limits, the team sync, memory and clients. The same numbers are served to
    Prometheus when daemon.metrics_listen is set; docs/user-guide.md, projctl metrics."""
    reply = _ask("metrics")
    del reply["type"]
    if as_json:
        click.echo(jsonout.dumps(reply))
    else:
        from projctl_client import metricstext

        click.echo(metricstext.metrics(reply))


@cli.command(short_help="Poll GitHub, GitLab and Jira now and wait for the result.")
@click.argument("project", required=False)
@click.option("--wait", type=click.FloatRange(0, 600), default=30.0, show_default=True,
              metavar="SECONDS",
              help="How long to wait; polls still running then finish in the background.")
def refresh(project: str | None, wait: float) -> None:
    """Poll the upstreams of PROJECT (or of every project) now, instead of on schedule.

    Prints what each poll brought or why it failed; exits 1 if any failed, or read only part
    of what it should (a repository that cannot be read is named). The daemon keeps showing
    the last good data of a failed upstream or part, marked with its age.
    """
    try:
        with connect_or_start(timeout=wait + 10) as conn:
            reply = conn.call(request("refresh", project=project, wait=wait))
    except ClientError as exc:
        _fail(exc)
    results = reply["results"]
    click.echo(render.refresh(results))
    sys.exit(1 if any(r["outcome"] == "error" or r.get("problems") for r in results) else 0)


@cli.command(short_help="Check config, tokens, socket, daemon, hub, state and systemd.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(as_json: bool) -> None:
    """Check what projctl needs, one line each with the fix when one is due: the config file,
    the socket's permissions, the daemon and its version, each upstream's token and what it
    may do, the hub, the state database's integrity and the systemd units.

    It never starts the daemon: when projctld is down its checks run without it. Tokens are
    never shown. Exits 1 if a check failed.
    """
    # Imported here: no other command needs it.
    from projctl_client import doctor as checks

    sys.exit(checks.run(as_json))


@cli.command("open", short_help="Open a change request or ticket in the browser.")
@click.argument("ref", required=False)
def open_command(ref: str | None) -> None:
    """Open REF in the browser; without it, the change request of the branch you are on.

    REF is `42`, `'#42'` or `'!17'` (a pull or merge request by number; quoted, or the shell
    takes # for a comment and ! for its history), `WEB-12` (a ticket), `'acme/web#42'` or
    `'web#42'`, looked up among what projctld knows, the current project's first. An
    ambiguous or unknown REF lists the candidates. The browser is $BROWSER, else the
    system's; the address is printed as well.
    """
    view = _ask("status", checkout=hotpath.current_checkout())
    try:
        target = refs.resolve(view, ref)
    except ClientError as exc:
        _fail(exc)
    if not target.url.startswith(("https://", "http://")):
        _fail(ClientError(f"{target.ref} has no web address to open ({target.url!r})"))
    click.echo(f"opening {target.ref}: {target.url}")
    if not _browse(target.url):
        _fail(ClientError(f"no browser could be started for {target.url}",
                          [f"BROWSER=firefox projctl open {refs.typed(target.ref)}"]))


def _browse(url: str) -> bool:
    import webbrowser  # only this command needs it

    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


@cli.command(short_help="See a full status from built-in demo data: no tokens, no network.")
@click.option("--stop", is_flag=True, help="Stop the demo daemon and remove what it kept.")
@click.option("--reset", is_flag=True, help="Start the demo afresh (as after --stop).")
def demo(stop: bool, reset: bool) -> None:
    """Show what projctl does, against built-in fake GitHub, GitLab and Jira servers.

    A separate sandbox daemon serves the demo (its own socket, state and git checkout); your
    real daemon and config are not touched. Everything it shows is labelled as sandbox data.
    `--stop` stops it and removes everything it kept, so nothing of it reappears.
    """
    socket = paths.sandbox_socket_path()
    if stop or reset:
        _stop(quiet_if_stopped=True, socket=socket)
        _remove_demo_state(socket)
        if stop:
            click.echo("the demo is stopped and its state removed")
            return
    try:
        with connect_or_start(socket, timeout=40, sandbox=True) as conn:
            conn.call(request("refresh", wait=30.0))
            info = conn.call(request("status", checkout=None))
            checkouts = [root for project in info["projects"] for root in project["paths"]]
            # The demo's own checkout is `Here`, wherever this command runs.
            here = git.find_checkout(checkouts[0]) if checkouts else None
            view = conn.call(request("status", checkout=here))
    except ClientError as exc:
        _fail(exc)
    click.echo(render.status(view))
    click.echo(render.demo_guide(socket, checkouts[0] if checkouts else None,
                                 os.path.basename(os.environ.get("SHELL", "bash"))))


def _remove_demo_state(socket: str) -> None:
    """The demo's state, log, git checkout and prompt files: only the sandbox's own."""
    import shutil

    for directory in (os.path.dirname(paths.database_path(sandbox=True)),
                      paths.prompt_dir(socket)):
        shutil.rmtree(directory, ignore_errors=True)


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
        sys.exit(2 if _config_broken else 0)
    _start()


@daemon.command("stop", short_help="Stop projctld in order.")
def daemon_stop() -> None:
    """Stop projctld: it finishes requests in flight, closes its state and removes its socket."""
    _stop(quiet_if_stopped=False)


@daemon.command("restart")
def daemon_restart() -> None:
    """Check the config, then stop projctld if it runs and start the installed version.

    A config that does not load refuses the restart (exit 2) and leaves the running daemon as
    it is, so that notes, deployments and the log keep working.
    """
    _check_config()
    _stop(quiet_if_stopped=True)
    _start()


@daemon.command("reload")
def daemon_reload() -> None:
    """Apply the edited config and environment file without a restart (SIGHUP does the
    same). A config that does not load changes nothing (exit 2); keys that only a restart
    applies are named."""
    try:
        with connect() as conn:
            reply = conn.call(request("reload"))
    except NotRunning:
        click.echo("projctld is not running: the next projctl command starts it with the "
                   "config as it is")
        return
    except ClientError as exc:
        if getattr(exc, "code", "") == "config":
            exc.suggestions = [*exc.suggestions, "projctld keeps running the config it has"]
        _fail(exc)
    click.echo(render.reloaded(reply))


def _run_config_check() -> subprocess.CompletedProcess[str]:
    """Run `projctld config check` of this installation: the same code and the same environment
    that will read the config (this client cannot import projctld, and a running daemon may be
    an older version)."""
    try:
        return subprocess.run([sys.executable, "-m", "projctld", "config", "check"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _fail(ClientError(f"could not check the config with projctld: {exc}",
                          ["projctld config check"]))


def _check_config() -> None:
    """Check the config before a restart: a config that does not load refuses it."""
    checked = _run_config_check()
    if checked.returncode != 0:
        said = checked.stderr.strip() or f"projctld config check exited {checked.returncode}"
        click.echo(f"{said}\nprojctl: not restarting: the running projctld (if any) keeps "
                   "the config it has", err=True)
        sys.exit(2)


@cli.group(short_help="Show an example config, where the config is, or check it.")
def config() -> None:
    """The config file: every key with its default (example), where it is read from (path),
    and whether it loads (check)."""


@config.command("example")
def config_example() -> None:
    """Print an example config: every key, commented out, with its default and why."""
    # Read only here: importlib.resources costs the hot commands nothing this way.
    from importlib import resources

    click.echo(resources.files("projctl_client").joinpath("config.example.toml").read_text(),
               nl=False)


@config.command("path")
def config_path() -> None:
    """Print where the config is read from ($PROJCTL_CONFIG, else XDG_CONFIG_HOME)."""
    path = paths.config_path()
    click.echo(path if os.path.exists(path) else f"{path}  (no file yet: every default applies; "
                                                 "`projctl config example > FILE` starts one)")


@config.command("check")
def config_check() -> None:
    """Check the config and the environment file as projctld would read them, without
    starting it (exit 2 with the mistake when they do not load)."""
    checked = _run_config_check()
    click.echo(checked.stdout, nl=False)
    if checked.returncode != 0:
        click.echo(checked.stderr, nl=False, err=True)
        sys.exit(2)


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
    if _config_broken:
        sys.exit(2)


_config_broken = False


def _running_daemon() -> dict | None:
    """The running daemon's info from a ping, or None when none listens on the socket."""
    global _config_broken
    try:
        with connect() as conn:
            pong = conn.call(request("ping"))
    except NotRunning:
        return None
    _config_broken = bool(pong.get("config_error"))
    return pong["daemon"]  # type: ignore[return-value]


def _start() -> None:
    try:
        daemonctl.start()
        info = _running_daemon()
    except ClientError as exc:
        _fail(exc)
    if info is None:  # it stopped again at once; its log says why
        _fail(ClientError("projctld started but stopped again", [f"less {paths.log_path()}"]))
    click.echo(f"started projctld (pid {info['pid']}) on {render.home(paths.socket_path())}")
    if _config_broken:  # the warning is out already; a bad config is exit 2 everywhere
        sys.exit(2)


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


@cli.command(short_help="The status view, redrawn whenever the daemon's view changes.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per change, for scripts.")
@click.option("--short", is_flag=True, help="One line per project.")
@click.option("--project", "-p", metavar="NAME", help="Only this project.")
def watch(as_json: bool, short: bool, project: str | None) -> None:
    """Show the status and redraw it in place whenever what it shows changes: the daemon
    pushes each change over the socket (the client never polls, and nothing more is asked of
    the upstreams). `q` or Ctrl-C quits and restores the screen. With --json, one line of
    JSON (the view as `projctl status --json` has it) per change."""
    if as_json and short:
        raise click.UsageError("--short lays out the text; --json has the whole view")
    from projctl_client import live

    sys.exit(live.watch(as_json, short, project))


@cli.group(short_help="Block until CI or a review of a change request is decided.")
def wait() -> None:
    """Block until the CI or the review of the current branch's change request (or REF's)
    is decided. Exit codes: 0 passed (approved) · 1 failed (changes requested, or it was
    closed) · 124 timed out · 2 bad usage. It asks nothing of the upstream itself: the daemon
    polls that change request as often as running CI while someone waits, and answers from
    that. A daemon restart in the middle is waited through."""


def _wait_command(what: str, summary: str) -> None:
    @wait.command(what, short_help=summary)
    @click.argument("ref", required=False)
    @click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=3600.0,
                  show_default=True, metavar="S", help="Give up (exit 124) after S seconds.")
    def command(ref: str | None, timeout: float) -> None:
        from projctl_client import live

        sys.exit(live.wait(what, ref, timeout))

    command.__doc__ = f"""{summary} REF is as for `projctl open`: `42`, `'#42'`, `'!17'`,
    `'acme/web#42'`; without it, the current branch's change request (or, for CI, the
    branch's own CI when it has none)."""


_wait_command("ci", "Wait until the CI has finished: prints the outcome, the failing checks "
                    "and the links.")
_wait_command("review", "Wait until the change request is approved or changes are "
                        "requested.")


@cli.group(invoke_without_command=True,
           short_help="What needs you: GitHub notifications and GitLab to-dos.")
@click.option("--json", "as_json", is_flag=True, help="Print the inbox as JSON.")
@click.pass_context
def inbox(ctx: click.Context, as_json: bool) -> None:
    """List what needs you upstream: GitHub notifications (review requests, mentions,
    assignments, CI activity) and GitLab to-dos, newest first, as the daemon last read them.
    `projctl inbox done ID` marks one read (GitHub) or done (GitLab) upstream."""
    if ctx.invoked_subcommand is not None:
        return
    report = _ask("inbox")
    if as_json:
        click.echo(jsonout.dumps({k: v for k, v in report.items() if k != "type"}))
        return
    click.echo(render.inbox(report))


@inbox.command("done")
@click.argument("item", metavar="ID")
def inbox_done(item: str) -> None:
    """Mark inbox item ID read (GitHub) or done (GitLab) upstream. ID is as `projctl inbox`
    shows it (`github:123`), or its number alone when that is unique. The token needs the
    scope to write it: GitHub `notifications` (or `repo`), GitLab `api`."""
    report = _ask("inbox_done", id=item)
    done = report.get("done") or {}
    click.echo(f"marked {done.get('id', item)} done: {done.get('title', '')}")


@cli.command(short_help="What was notified on the desktop, when, and why.")
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
@click.option("--limit", "-n", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many, newest first.")
def notifications(as_json: bool, limit: int) -> None:
    """List the desktop notifications the daemon sent (or would have), newest first: when,
    what changed, and whether it was shown, or why not (no desktop session bus, quiet hours,
    the rate bound, a kind switched off)."""
    report = _ask("notifications", limit=limit)
    if as_json:
        click.echo(jsonout.dumps({k: v for k, v in report.items() if k != "type"}))
        return
    click.echo(render.notifications(report))
