"""The `report` request: a project's delivery metrics from this device's log (team/delivery.py,
the computation the hub's pages use too)."""

from __future__ import annotations

import time

from projctl_client.protocol import DeliveryReport, Report
from projctld.daemon.context import DaemonContext
from projctld.team import delivery
from projctld.team.records import resolve_project


def report(ctx: DaemonContext, request: Report, *, now: float | None = None) -> DeliveryReport:
    project = resolve_project(ctx, request.project, request.checkout, "report")
    now = time.time() if now is None else now
    rows = ctx.journal.store.deployment_rows(
        project, delivery.since_hlc(now, request.days), delivery.DEPLOY_TYPES)
    return delivery.report(delivery.fold(rows), project=project, now=now, days=request.days,
                           environment=request.environment)
