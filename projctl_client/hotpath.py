"""`projctl status`, `ping`, `note TEXT` and `prompt` without click or msgspec: what prompts,
scripts and hands run often. `status` gets its text or JSON written by the daemon and only
writes the bytes out.

__main__ sends the argument lists that `is_hot` accepts here before anything heavier is imported;
the click commands of the same names call these functions too, so there is one implementation.
"""

from __future__ import annotations

import os
import sys
import time

from projctl_client import git, render, terminal
from projctl_client.connection import (
    ClientError,
    DaemonError,
    connect,
    request,
)
from projctl_client.daemonctl import connect_or_start

HOT = (["ping"],)
# The daemon's limits on a note, checked here so that a mistake reads as one, not as a
# malformed request.
NOTE_MAX = 4000
NOTE_ID_MIN, NOTE_ID_MAX = 4, 36
PROMPT_STYLES = ("plain", "ansi", "bash", "zsh")
PROMPT_TIMEOUT_MS = 50.0


def is_hot(args: list[str]) -> bool:
    """Exactly a hot command; `note TEXT` only when TEXT cannot be an option for click."""
    return args in HOT or (len(args) == 2 and args[0] == "note" and not args[1].startswith("-")) \
        or (args[:1] == ["prompt"] and "--help" not in args and "-h" not in args) \
        or status_options(args) is not None


def run(args: list[str]) -> int:
    if args[0] == "note":
        return note(args[1])
    if args[0] == "prompt":
        return prompt_command(args[1:])
    if args == ["ping"]:
        return ping()
    return status(**status_options(args))  # type: ignore[arg-type]


def status_options(args: list[str]) -> dict[str, object] | None:
    """`status [--json | --short] [--project NAME]` as keyword arguments of `status`; None
    for anything else, which click then explains."""
    if args[:1] != ["status"]:
        return None
    options: dict[str, object] = {"as_json": False, "short": False, "project": None}
    rest = args[1:]
    while rest:
        arg = rest.pop(0)
        if arg in ("--json", "--short"):
            options["as_json" if arg == "--json" else "short"] = True
        elif arg in ("--project", "-p") and rest and not rest[0].startswith("-"):
            options["project"] = rest.pop(0)
        elif arg.startswith("--project=") and len(arg) > len("--project="):
            options["project"] = arg.removeprefix("--project=")
        else:
            return None
    return None if options["as_json"] and options["short"] else options


def current_checkout() -> dict[str, object] | None:
    try:
        return git.find_checkout(os.getcwd())
    except OSError:  # the working directory was deleted under us
        return None


def status(as_json: bool, short: bool = False, project: str | None = None) -> int:
    """Print the status, as the daemon writes it for this terminal (or as JSON)."""
    out = sys.stdout
    if as_json:
        fields: dict[str, object] = {"output": "json"}
    else:
        # The text shows a few tickets per status; asking for no more keeps a big view cheap.
        fields = {"output": "short" if short else "text",
                  "tickets_per_status": render.TICKETS_PER_STATUS,
                  "width": terminal.width(out), "colours": terminal.colours(out),
                  "links": terminal.links(out), "home": os.path.expanduser("~")}
    try:
        with connect_or_start() as conn:
            reply = conn.call(request("status", checkout=current_checkout(), project=project,
                                      **fields))
        written = reply["output"] if reply["type"] == "status_output" \
            else _written_here(reply, fields, project)
    except ClientError as exc:
        print(render.error(exc), file=sys.stderr)
        return exc.exit_code
    out.flush()
    if isinstance(written, bytes) and hasattr(out, "buffer"):
        out.buffer.write(written)
    else:
        out.write(written.decode() if isinstance(written, bytes) else written)
    return 0


def _written_here(view: dict, fields: dict, project: str | None) -> str:
    """The output written out here from the view: what a daemon sends when the output would
    not fit in one frame, or when it predates outputs (it then ignored `project` too)."""
    del view["type"]
    # Every reply has it, first on the wire; the documented view lists it last.
    view["config_error"] = view.pop("config_error", None)
    if project is not None:
        names = [p["name"] for p in view["projects"]]
        if project not in names:
            raise ClientError(f"no project named {project!r} (configured: "
                              f"{', '.join(names) or 'none yet'})", ["projctl status"])
        view["projects"] = [p for p in view["projects"] if p["name"] == project]
    if fields["output"] == "json":
        from projctl_client import jsonout

        return jsonout.dumps(view) + "\n"
    from projctl_client import status_text

    options = status_text.Options(width=fields["width"], colours=fields["colours"],
                                  links=fields["links"], short=fields["output"] == "short")
    return status_text.screen(view, options) + "\n"


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
