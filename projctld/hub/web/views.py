"""What the team pages show, read from the hub's storage a bounded piece at a time: each
environment's deployments, the timeline, the delivery metrics (team/delivery.py)."""

from __future__ import annotations

from dataclasses import dataclass

from projctl_client.protocol import DeliveryReport
from projctld.hub.storage.interface import HubStorage, Timeline
from projctld.team import delivery
from projctld.team.delivery import Deployment
from projctld.team.sync.events import PulledEvent

# Bounds of one page (README: the team page).
MAX_ENVIRONMENTS = 50
OVERVIEW_HISTORY = 5
ENVIRONMENT_HISTORY = 50
TIMELINE_PAGE = 50
# A deployment has a start, an end and now and then marks: this many events per deployment
# wanted are read to find the newest deployments of an environment.
_EVENTS_PER_DEPLOYMENT = 4


@dataclass
class EnvironmentView:
    """One environment: what is deployed (the newest completed deployment), the newest
    attempt when it is another (running or failed), and the newest deployments."""

    name: str
    deployed: Deployment | None
    latest: Deployment | None
    history: list[Deployment]


async def deployments_of(storage: HubStorage, project: str, environment: str,
                         count: int) -> tuple[list[Deployment], Deployment | None]:
    """The newest `count` deployments of an environment, newest first, and the one deployed
    there now (its newest completed deployment, however old)."""
    ids = (await storage.recent_deployments(project, environment,
                                            count * _EVENTS_PER_DEPLOYMENT))[:count]
    completed = await storage.recent_deployments(project, environment, 5, completed=True)
    rows = await storage.rows_of_deployments(project, list(dict.fromkeys([*ids, *completed])))
    folded = {d.deployment: d for d in delivery.fold(rows) if d.environment == environment}
    history = sorted((folded[i] for i in ids if i in folded), key=lambda d: d.key,
                     reverse=True)
    done = [d for d in folded.values() if d.state == "completed"]
    deployed = max(done, key=lambda d: (d.finished_at or 0.0, d.key), default=None)
    return history, deployed


async def environments(storage: HubStorage, project: str) -> list[EnvironmentView]:
    views = []
    for name in await storage.environments(project, MAX_ENVIRONMENTS):
        history, deployed = await deployments_of(storage, project, name, OVERVIEW_HISTORY)
        newest = history[0] if history else None
        if newest is not None and deployed is not None \
                and newest.deployment == deployed.deployment:
            newest = None  # the newest attempt is what is deployed: said once
        views.append(EnvironmentView(name=name, deployed=deployed, latest=newest,
                                     history=history))
    return views


async def timeline(storage: HubStorage, project: str, query: Timeline
                   ) -> tuple[list[PulledEvent], str | None]:
    """A page of the timeline and the cursor of the next (older) one, if any."""
    found = await storage.timeline(project, Timeline(
        since_hlc=query.since_hlc, before=query.before, types=query.types, user=query.user,
        environment=query.environment, limit=query.limit + 1))
    more = len(found) > query.limit
    found = found[:query.limit]
    cursor = f"{found[-1].hlc}:{found[-1].device}:{found[-1].seq}" if more else None
    return found, cursor


async def metrics(storage: HubStorage, project: str, *, now: float, days: float,
                  environment: str | None) -> DeliveryReport:
    """The same report `projctl report` makes, from the hub's events."""
    rows = await storage.deployment_rows(project, delivery.since_hlc(now, days))
    return delivery.report(delivery.fold(rows), project=project, now=now, days=days,
                           environment=environment)
