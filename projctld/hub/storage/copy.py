"""Copying one hub's database into another, empty one (`projctld hub copy`): to move a team
from a SQLite hub to a PostgreSQL one, or to any new database, losing nothing.

Every event keeps its hub_seq and who pushed it; every device its owner and mark; every token
its hash, so the same tokens work. The copy is another database, with its own identity:
devices that sync with it notice, check what it holds of their logs, send again what it lacks
(what reached the old hub after the copy began) and keep their cursors where the copy holds
the events they name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from projctld.errors import ProjctlError
from projctld.hub.storage.interface import HubStorage

# Events per read and write: memory stays bounded whatever the hub holds (each <= 64 KiB,
# older ones larger, but a batch is written before the next is read).
BATCH = 500


@dataclass(frozen=True)
class Copied:
    events: int
    devices: int
    tokens: int


async def copy_hub(source: HubStorage, target: HubStorage, *,
                   progress: Callable[[int], None] = lambda events: None) -> Copied:
    """Copy `source` into `target` (both open); `target` must hold nothing yet."""
    if (await target.export_events(0, 1) or await target.export_devices()
            or await target.export_tokens()):
        raise ProjctlError(
            "the target hub database is not empty: a copy goes into a new one only",
            code="not_empty",
            suggestions=["name a new SQLite file, or an empty PostgreSQL database or schema"])
    events, after = 0, 0
    while batch := await source.export_events(after, BATCH):
        await target.import_events(batch)
        events += len(batch)
        after = batch[-1].hub_seq
        progress(events)
    devices = await source.export_devices()
    await target.import_devices(devices)
    tokens = await source.export_tokens()
    for token_hash, record in tokens:
        await target.add_token(token_hash, record)
    # Share links too, so that the links handed out work on the copy (sessions do not:
    # browsers sign in again).
    for share_hash, share in await source.export_shares():
        await target.add_share(share_hash, share)
    # Users' names upstream, by which devices pick out theirs. Upstream state is not copied:
    # the new hub polls afresh, and its devices wait a poll for it.
    for user, names in (await source.identities()).items():
        for kind, name in names.items():
            await target.set_identity(user, kind, name)
    return Copied(events=events, devices=len(devices), tokens=len(tokens))
