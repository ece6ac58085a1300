"""Entry point of `projctl`: the hot commands skip click entirely; the rest go through it."""

from __future__ import annotations

import sys


def main() -> int:
    args = sys.argv[1:]
    from projctl_client import connection, hotpath

    if args and not args[0].startswith("-"):
        connection.command = args[0][:64]

    if hotpath.is_hot(args):
        return hotpath.run(args)
    from projctl_client.cli import cli

    return cli.main(args=args, prog_name="projctl")


if __name__ == "__main__":
    sys.exit(main())
