"""`projctl status`, `ping`, `note TEXT` and `prompt` without click or msgspec: what prompts,
scripts and hands run often.

__main__ sends the argument lists that `is_hot` accepts here before anything heavier is imported;
the click commands of the same names call these functions too, so there is one implementation.
"""

from __future__ import annotations

import os
import sys
import time

from projctl_client import git, jsonout, render
from projctl_client.connection import (
    ClientError,
    DaemonError,
    connect,
    request,
)
from projctl_client.daemonctl import connect_or_start

HOT = (["status"], ["status", "--json"], ["ping"])
# The daemon's limits on a note, checked here so that a mistake reads as one, not as a
# malformed request.
NOTE_MAX = 4000
NOTE_ID_MIN, NOTE_ID_MAX = 4, 36
PROMPT_STYLES = ("plain", "ansi", "bash", "zsh")
PROMPT_TIMEOUT_MS = 50.0


def is_hot(args: list[str]) -> bool:
    """Exactly a hot command; `note TEXT` only when TEXT cannot be an option for click."""
    return args in HOT or (len(args) == 2 and args[0] == "note" and not args[1].startswith("-")) \
        or (args[:1] == ["prompt"] and "--help" not in args and "-h" not in args)


def run(args: list[str]) -> int:
    if args[0] == "note":
        return note(args[1])
    if args[0] == "prompt":
        return prompt_command(args[1:])
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
    # Every reply has it, first on the wire; the documented view lists it last.
    view["config_error"] = view.pop("config_error", None)
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
    return 2 if reply.get("config_error") else 0  # it answers, but without its config


def note(text: str, project: str | None = None, edit: str | None = None) -> int:
    """Record a note (or, with `edit`, replace the text of one) and say where it went."""
    problem = _note_problem(text, edit)
    if problem:
        print(f"projctl: {problem}", file=sys.stderr)
        return 2
    try:
        with connect_or_start() as conn:
            reply = conn.call(request("note", checkout=current_checkout(), project=project,
                                      text=text, edit=edit))
    except ClientError as exc:
        print(render.error(exc), file=sys.stderr)
        return exc.exit_code
    print(render.noted(reply))
    return 0


def _note_problem(text: str, edit: str | None) -> str:
    if not text.strip():
        return "a note needs some text, e.g. projctl note \"rolled back the cache change\""
    if len(text) > NOTE_MAX:
        return f"a note holds at most {NOTE_MAX} characters; this one has {len(text)}"
    if edit is not None and not NOTE_ID_MIN <= len(edit) <= NOTE_ID_MAX:
        return (f"--edit takes a note id or {NOTE_ID_MIN} or more of its characters "
                "(`projctl log --type note` shows them)")
    return ""


def prompt_command(args: list[str]) -> int:
    """`projctl prompt [--format F] [--style S] [--timeout MS]`, parsed by hand: no click."""
    options: dict[str, str] = {}
    rest = list(args)
    while rest:
        name, _, value = rest.pop(0).partition("=")
        if name not in ("--format", "--style", "--timeout"):
            print(f"projctl prompt: unknown option {name!r} (see projctl prompt --help)",
                  file=sys.stderr)
            return 2
        if not value:
            if not rest:
                print(f"projctl prompt: {name} needs a value", file=sys.stderr)
                return 2
            value = rest.pop(0)
        options[name[2:]] = value
    style = options.get("style", "plain")
    if style not in PROMPT_STYLES:
        print(f"projctl prompt: --style is one of {', '.join(PROMPT_STYLES)}", file=sys.stderr)
        return 2
    try:
        timeout_ms = float(options.get("timeout", PROMPT_TIMEOUT_MS))
    except ValueError:
        timeout_ms = -1.0
    if not 0 < timeout_ms <= 10_000:
        print("projctl prompt: --timeout is in milliseconds, from 1 to 10000", file=sys.stderr)
        return 2
    return prompt(options.get("format"), style, timeout_ms / 1000)


def prompt(fmt: str | None, style: str, timeout: float) -> int:
    """Print the prompt segment for the current checkout.

    A prompt must never be slow or broken: this never starts the daemon, gives up after
    `timeout` seconds in all, and prints nothing (exit 0) when there is no answer. Only a
    mistake in `fmt` is reported, since only the user who wrote it can fix it.
    """
    checkout = current_checkout()
    if checkout is None:
        return 0
    try:
        with connect(deadline=time.monotonic() + timeout) as conn:
            conn.warn_config = False
            reply = conn.call(request("prompt", checkout=checkout, format=fmt, style=style))
    except DaemonError as exc:
        if exc.code == "bad_prompt_format":
            print(render.error(exc), file=sys.stderr)
            return 2
        return 0
    except ClientError:
        return 0
    text = reply.get("text")
    if isinstance(text, str) and text:
        sys.stdout.write(text + "\n")
    return 0
