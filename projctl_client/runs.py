"""Following a workflow run that the daemon executes, and showing its progress as it comes."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from projctl_client import render
from projctl_client.connection import Connection, request

# Each follow request waits this long for news, so a quiet step costs a request per second.
FOLLOW_WAIT = 1.0


def follow(conn: Connection, run: str, out: TextIO | None = None) -> bool | None:
    """Print the run's events from the first until it ends; its success (None: unknown)."""
    out = out or sys.stdout
    style = render.Style(out)
    after = 0
    while True:
        progress = conn.call(request("run_follow", run=run, after=after, wait=FOLLOW_WAIT))
        for event in progress["events"]:
            line = describe(event, style)
            if line is not None:
                out.write(line + "\n")
        out.flush()
        after = progress["next"]
        if not progress["running"] and after >= progress["total"]:
            return progress["success"]


def describe(event: dict, style: render.Style) -> str | None:
    """One line (or a few) for a progress event."""
    kind = event.get("event")
    step = event.get("step", "")
    if kind == "workflow.started":
        stages = " → ".join(" + ".join(stage) for stage in event["stages"])
        params = " ".join(f"{k}={v}" for k, v in event["params"].items())
        return style.paint("bold", f"▶ {event['workflow']}") + f"  {stages}" + \
            (style.paint("dim", f"  ({params})") if params else "")
    if kind == "step.started":
        attempt = f" (attempt {event['attempt']}/{event['attempts']})" \
            if event["attempt"] > 1 else ""
        return f"● {step}{attempt}  " + style.paint("dim", " ".join(event["command"]))
    if kind == "step.output":
        return style.paint("dim", f"  {step} │ ") + event["line"]
    if kind == "step.retried":
        return style.paint("yellow", f"↻ {step} failed ({event['reason']}); again in "
                                     f"{event['delay']:g} s")
    if kind == "step.skipped":
        return style.paint("dim", f"- {step} skipped: {event['reason']}")
    if kind == "step.finished":
        took = f"{event['duration']:.1f} s"
        if event["success"]:
            return style.paint("green", f"✓ {step}") + style.paint("dim", f"  {took}")
        tries = f" after {event['attempts']} attempts" if event["attempts"] > 1 else ""
        carried_on = "; the workflow goes on" if event.get("continued") else ""
        return style.paint("red", f"✗ {step}") + f"  {event['reason']}{tries}, {took}" \
            + carried_on
    if kind == "workflow.finished":
        took = f"{event['duration']:.1f} s"
        if event["success"]:
            return style.paint("green", f"✓ {event['workflow']} succeeded") + f" in {took}"
        failed = ", ".join(event.get("failed") or [])
        return style.paint("red", f"✗ {event['workflow']} failed") + \
            (f" ({failed})" if failed else "") + f" after {took}"
    if kind == "workflow.failed":
        lines = [style.paint("red", f"✗ {event['workflow']}: {event['message']}")]
        lines += [f"  try: {hint}" for hint in event.get("suggestions") or []]
        return "\n".join(lines)
    if kind == "output.dropped":
        return style.paint("dim", f"({event['lines']} output lines were not kept)")
    return None


def plan(view: dict, style: render.Style) -> str:
    """The dry run: what each step would do."""
    lines = [style.paint("bold", f"{view['workflow']}") + style.paint(
        "dim", f"  from {render.home(view['source'])}, dry run: nothing runs")]
    for step in view["steps"]:
        command = " ".join(step["command"]) if step["command"] is not None else step["problem"]
        if step["would_run"] is False:
            lines.append(style.paint("dim", f"- {step['name']} would be skipped: "
                                            f"{step['reason']}"))
            continue
        mark = "●" if step["would_run"] else "?"
        why = "" if step["would_run"] else style.paint("dim", f"  (may run: {step['reason']})")
        lines.append(f"{mark} {step['name']}  {command}{why}")
    return "\n".join(lines)


def table(runs: list[dict], style: render.Style, now: float | None = None) -> str:
    """`projctl runs`: newest first."""
    if not runs:
        return "No workflow runs yet. Start one with `projctl run WORKFLOW`."
    now = now or time.time()
    rows = []
    for run in runs:
        state, colour = _state(run)
        ended = run["finished_at"] or now
        rows.append(f"{run['id'][-render.SHORT_ID:]}  {style.paint(colour, f'{state:<11}')}"
                    f"{run['workflow']:<16} {run['project']:<12} "
                    f"{render.age(now - run['started_at'])}, "
                    f"took {render.span(ended - run['started_at'])}")
    return "\n".join(rows)


def _state(run: dict) -> tuple[str, str]:
    if run["running"]:
        return "running", "yellow"
    if run["success"] is None:
        return "interrupted", "dim"
    return ("succeeded", "green") if run["success"] else ("failed", "red")
