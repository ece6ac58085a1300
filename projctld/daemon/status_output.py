"""The status view written out as the client asked (`projctl status`, `--short`, `--json`),
so that the client writes bytes: decoding a large view in pure Python and laying it out cost
it more than the rest of the command (bench/upstream_polling.py)."""

from __future__ import annotations

import difflib
import re

import msgspec

from projctl_client import status_text
from projctl_client.frames import MAX_FRAME
from projctl_client.protocol import ConfigProblem, Status, StatusOutput, StatusView
from projctld.errors import ProjctlError

# The room a reply needs around its text in a frame.
_ENVELOPE = 4096
# How the JSON of a StatusView opens.
_TAGGED = b'{"type":"status",'
# Projects named in the error for an unknown one; more are counted.
_NAMED = 20
# What status_text must make harmless, as it shows in JSON: control characters (escaped by
# JSON, or DEL and C1 as UTF-8) and direction overrides (U+202A-U+202E, U+2066-U+2069).
_UNPRINTABLE = re.compile(rb"\\u00|\\[bfnrt]|\x7f|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]"
                          rb"|\xe2\x81[\xa6-\xa9]")


def check_project(project: str | None, configured: list[str], config_path: str) -> None:
    """Refuse a project the config does not have, naming those it has."""
    if project is None or project in configured:
        return
    listed = ", ".join(configured[:_NAMED]) or "none yet"
    if len(configured) > _NAMED:
        listed += f" and {len(configured) - _NAMED} more"
    close = difflib.get_close_matches(project, configured, n=1)
    suggestions = [f"projctl status --project {close[0]}"] if close else []
    suggestions += ["projctl status  # every project"] if configured else \
        [f"add [projects.{project}] to {config_path}"]
    raise ProjctlError(f"no project named {project!r} (configured: {listed})",
                       code="unknown_project", suggestions=suggestions)


def only(view: StatusView, project: str | None) -> StatusView:
    """The view with only `project`'s project (all of them when None)."""
    if project is None:
        return view
    return msgspec.structs.replace(view, projects=[p for p in view.projects
                                                   if p.name == project])


def key(request: Status, config_error: ConfigProblem | None) -> tuple:
    """What the output depends on besides the view: the same key, the same bytes."""
    problem = None if config_error is None else msgspec.json.encode(config_error)
    return (request.project, request.output, request.width, request.colours, request.links,
            request.home, request.client, problem)


def write(view: StatusView, request: Status,
          config_error: ConfigProblem | None) -> StatusOutput | StatusView:
    """The output the request asks for; the view itself (for the client to write out) when
    that output would not fit in a frame."""
    chosen = only(view, request.project)
    if request.output == "json":
        # As `json.dumps(indent=2, ensure_ascii=False)` writes the view without its type,
        # config_error last (msgspec puts the keyword-only fields of _Reply last).
        raw = msgspec.json.encode(msgspec.structs.replace(chosen, config_error=config_error))
        assert raw.startswith(_TAGGED), raw[:40]
        output = msgspec.json.format(b"{" + raw[len(_TAGGED):], indent=2) + b"\n"
    else:
        data = msgspec.to_builtins(chosen)
        del data["type"]
        # Looking through the view's JSON at once spares looking at each of its strings.
        printable = not _UNPRINTABLE.search(msgspec.json.encode(chosen))
        options = status_text.Options(
            width=request.width, colours=request.colours, links=request.links,
            short=request.output == "short", home=request.home or None, client=request.client,
            printable=printable)
        output = (status_text.screen(data, options) + "\n").encode()
    if len(output) > MAX_FRAME - _ENVELOPE:
        return chosen
    return StatusOutput(output=output)
