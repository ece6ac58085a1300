"""Entry point of `projctl`: the hot commands skip click entirely, and so does a plugin's
executable (commands.py); the rest go through click."""

from __future__ import annotations

import sys

# The commands of cli.py (tests/test_plugin_commands.py holds the two together). Any other first
# argument may name a plugin's command, which is looked for only then: the built-ins, the hot
# ones first of all, pay one set lookup for plugins.
BUILT_IN = frozenset({
    "branch", "call", "config", "daemon", "demo", "deploy", "doctor", "log", "mark-failed",
    "metrics", "note", "open", "ping", "plugins", "prompt", "refresh", "report", "run", "runs",
    "shell-init", "status", "sync", "watch", "wait", "inbox", "notifications",
})


def main() -> int:
    args = sys.argv[1:]
    if args and args[0] not in BUILT_IN and not args[0].startswith("-"):
        from projctl_client import commands

        status = commands.run_executable(args)  # returns only when no executable runs
        if status is not None:
            return status
    from projctl_client import connection, hotpath

    if args and not args[0].startswith("-"):
        connection.command = args[0][:64]

    if hotpath.is_hot(args):
        return hotpath.run(args)
    from projctl_client.cli import cli

    return cli.main(args=args, prog_name="projctl")


if __name__ == "__main__":
    sys.exit(main())
