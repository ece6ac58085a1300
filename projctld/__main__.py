"""`projctld`: the daemon's command line (`run` in the foreground; later `hub ...`)."""

from __future__ import annotations

import functools
import os
import sys
import traceback

import click

from projctl_client import paths
from projctld import __version__
from projctld.errors import ProjctlError


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
def run(ready_fd: int | None, sandbox: bool) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT.

    Reads $PROJCTL_CONFIG (or $XDG_CONFIG_HOME/projctl/config.toml), keeps its state in
    $XDG_STATE_HOME/projctl/ and listens on $PROJCTL_SOCKET (or
    $XDG_RUNTIME_DIR/projctl/projctld.sock). Exits 0 after an orderly shutdown, 2 for a bad
    config, 1 for any other start-up failure.
    """
    import anyio

    from projctld import daemon

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
        if sandbox:
            from projctld.sandbox.demo import start_sandbox

            anyio.run(functools.partial(
                daemon.serve, "(sandbox: built-in demo data)", paths.socket_path(),
                lambda: report("ready\n"), database=paths.database_path(sandbox=True),
                sandbox=start_sandbox,
            ))
        else:
            anyio.run(functools.partial(
                daemon.serve, paths.config_path(), paths.socket_path(),
                lambda: report("ready\n"), database=paths.database_path(),
            ))
    except ProjctlError as exc:
        lines = [f"error: {exc.message}", *(f"try: {s}" for s in exc.suggestions)]
        click.echo("projctld: " + "\n  ".join(lines), err=True)
        report("\n".join(lines) + "\n")
        sys.exit(exc.exit_code)
    except Exception as exc:
        traceback.print_exc()
        report(f"error: projctld failed: {type(exc).__name__}: {exc}\n"
               f"try: read {paths.log_path()}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
