"""Builds the status view from the config and what the daemon knows."""

from __future__ import annotations

import time

from projctl_client.protocol import Checkout, CheckoutView, ProjectView, StateInfo, StatusView
from projctld.context import DaemonContext
from projctld.store.checkouts import CheckoutRow


def build_status(ctx: DaemonContext, here: Checkout | None) -> StatusView:
    now = time.time()
    knowledge = ctx.knowledge
    current = _view(knowledge.observe(here, now), knowledge.project_of(here.root)) if here else None
    by_project: dict[str, list[CheckoutView]] = {name: [] for name in ctx.config.projects}
    known = knowledge.checkouts()
    for row in known:
        project = knowledge.project_of(row.root)
        if project is not None:
            by_project[project].append(_view(row, project))
    return StatusView(
        generated_at=now,
        daemon=ctx.info(),
        checkout=current,
        projects=[
            ProjectView(name=name, paths=project.paths, checkouts=by_project[name])
            for name, project in ctx.config.projects.items()
        ],
        state=StateInfo(
            path=ctx.db.path,
            schema_version=ctx.db.schema_version,
            created_at=ctx.db.created_at,
            checkouts_known=len(known),
            last_error=knowledge.last_error,
        ),
    )


def _view(row: CheckoutRow, project: str | None) -> CheckoutView:
    return CheckoutView(root=row.root, branch=row.branch, head=row.head, project=project,
                        first_seen_at=row.first_seen_at, last_seen_at=row.last_seen_at)
