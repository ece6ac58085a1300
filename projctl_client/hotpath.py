"""`projctl status` and `projctl ping` without click or msgspec: what prompts and scripts run often.

__main__ sends the exact argument lists in HOT here before anything heavier is imported; the
click commands of the same names call these functions too, so there is one implementation.
"""

from __future__ import annotations

import os
import sys
import time

from projctl_client import git, jsonout, render
from projctl_client.connection import ClientError, connect_or_start, request

HOT = (["status"], ["status", "--json"], ["ping"])


def run(args: list[str]) -> int:
    if args == ["ping"]:
        return ping()
    return status(as_json=args[1:] == ["--json"])


def current_checkout() -> dict[str, object] | None:
    try:
        return git.find_checkout(os.getcwd())
    except OSError:  # the working directory was deleted under us
        return None


def status(as_json: bool) -> int:
    # The text shows a few tickets per status; asking for no more keeps a big view cheap.
    limit = {} if as_json else {"tickets_per_status": render.TICKETS_PER_STATUS}
    try:
        with connect_or_start() as conn:
            view = conn.call(request("status", checkout=current_checkout(), **limit))
    except ClientError as exc:
        print(render.error(exc), file=sys.stderr)
        return exc.exit_code
    del view["type"]
    if as_json:
        sys.stdout.write(jsonout.dumps(view) + "\n")
    else:
        sys.stdout.write(render.status(view) + "\n")
    return 0


def ping() -> int:
    try:
        with connect_or_start() as conn:
            started = time.perf_counter()
            reply = conn.call(request("ping"))
            elapsed = time.perf_counter() - started
    except ClientError as exc:
        print(render.error(exc), file=sys.stderr)
        return exc.exit_code
    daemon = reply["daemon"]
    print(
        f"projctld {daemon['version']} (protocol {daemon['protocol']}, pid {daemon['pid']}) "
        f"answered in {elapsed * 1000:.2f} ms"
    )
    warning = render.version_warning(daemon)
    if warning:
        print(warning, file=sys.stderr)
    return 0
