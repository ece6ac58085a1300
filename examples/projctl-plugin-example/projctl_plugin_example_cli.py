"""The example's command, `projctl freeze`: asks the daemon plugin (projctl_plugin_example.py)
whether deployments are frozen today. It runs in the `projctl` process, so it imports only click
and projctl_client (projctl's plugin interface, projctl_client/api.py), never projctld."""

from __future__ import annotations

import json
import sys

import click

from projctl_client import api


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the daemon plugin's answer as JSON.")
def freeze(as_json: bool) -> None:
    """Say whether deployments are frozen today, and on which days and environments, as the
    example plugin in projctld sees it (its [plugins.settings.example])."""
    try:
        answer = api.plugin_request("example", "freeze")["reply"]
    except api.CallError as exc:
        click.echo(f"projctl freeze: {exc.message}", err=True)
        for suggestion in exc.suggestions:
            click.echo(f"  try: {suggestion}", err=True)
        sys.exit(exc.exit_code)
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        return
    where = ", ".join(answer["environments"])
    if answer["frozen_today"]:
        click.echo(f"deployments to {where} are frozen today ({answer['frozen_today']})")
    else:
        click.echo(f"no freeze today; deployments to {where} freeze on "
                   f"{', '.join(answer['days']) or 'no day'}")
