"""An example projctl plugin: no deployments to production on Fridays, and status says so; its
request handler tells the `projctl freeze` command (projctl_plugin_example_cli.py) the same."""

from __future__ import annotations

import datetime
import os
from typing import Any

from projctl_client.protocol import StatusView
from projctld.plugins import RequestRefused, hookimpl

# Set in the daemon's environment to deploy anyway: PROJCTL_DEPLOY_FREEZE=off projctl daemon
# restart (the plugin runs in projctld, not in the shell that runs `projctl deploy`).
OVERRIDE = "PROJCTL_DEPLOY_FREEZE"
# Weekday names in English whatever the locale, Monday first as date.weekday() counts.
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class DeployFreeze:
    """One instance per daemon: projctld makes it from the entry point, since it is a class."""

    def __init__(self) -> None:
        self.environments = ["production"]
        self.days = ["Friday"]

    @hookimpl
    def projctl_configure(self, settings: dict[str, Any]) -> None:
        # [plugins.settings.example] in projctl's config.toml, e.g. days = ["Thursday", "Friday"]
        self.environments = list(settings.get("environments", self.environments))
        self.days = [str(day).capitalize() for day in settings.get("days", self.days)]

    def frozen_today(self) -> str | None:
        """Today's name when deployments are frozen today, else None."""
        today = DAYS[datetime.date.today().weekday()]
        if today in self.days and os.environ.get(OVERRIDE) != "off":
            return today
        return None

    @hookimpl
    def projctl_validate_deployment(self, environment: str) -> list[str]:
        today = self.frozen_today()
        if today is None or environment not in self.environments:
            return []
        return [f"no deployments to {environment} on a {today}: deploy on another day, or lift "
                f"the freeze with `{OVERRIDE}=off projctl daemon restart`"]

    @hookimpl
    def projctl_status_view(self, view: StatusView) -> StatusView | None:
        today = self.frozen_today()
        if today is None:
            return None  # the view goes out as it is
        view.notices.append(f"deploy freeze today ({today}): no deployments to "
                            f"{', '.join(self.environments)}")
        return view

    @hookimpl
    def projctl_request(self, name: str) -> dict[str, Any]:
        # What `projctl freeze` asks (projctl_plugin_example_cli.py): the daemon's word, since
        # the freeze is the daemon's (its settings, its environment).
        if name != "freeze":
            raise RequestRefused(f"the example plugin answers `freeze`, not {name!r}",
                                 suggestions=["projctl freeze"])
        return {"frozen_today": self.frozen_today(), "days": self.days,
                "environments": self.environments}
