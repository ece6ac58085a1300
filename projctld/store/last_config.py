"""The last config that loaded, kept in the state database for a start with a broken one.

A daemon that must start while the config file is broken (after a crash, at login, on the
first `projctl note` of the day) still serves the team's event log: it needs the projects (for
a checkout's project, its environments) and the hub. It runs the last config that loaded, from
here. Token values and the notifier's webhook URL (a secret too) are blanked before it is
stored: they stay in the config file, the environment file or a command, never in the database.
"""

from __future__ import annotations

import msgspec

from projctld.config import KINDS, Config
from projctld.errors import StoreError
from projctld.logging import get_logger
from projctld.store.database import Database

log = get_logger(__name__)
_KEY = "last_good_config"


def save(db: Database, config: Config) -> None:
    blanked = msgspec.structs.replace(config, **{
        section: msgspec.structs.replace(getattr(config, section), token="")
        for section in (*KINDS, "sync") if getattr(config, section).token})
    blanked = msgspec.structs.replace(blanked, extra_instances={
        name: msgspec.structs.replace(
            instance, section=msgspec.structs.replace(instance.section, token=""))
        for name, instance in config.extra_instances.items()})
    blanked = msgspec.structs.replace(
        blanked, notify=msgspec.structs.replace(blanked.notify, webhook=""))
    try:
        db.write_many("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                      [(_KEY, msgspec.json.encode(blanked).decode())])
    except StoreError as exc:  # only the next broken start would miss it
        log.warning("last_config_not_saved", error=exc.message)


def load(db: Database) -> Config | None:
    """The last config that loaded (with no token values), or None before the first."""
    rows = db.read("SELECT value FROM meta WHERE key = ?", (_KEY,))
    if not rows:
        return None
    try:
        return msgspec.json.decode(rows[0][0], type=Config)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:  # written by another version
        log.warning("last_config_unreadable", error=str(exc))
        return None
