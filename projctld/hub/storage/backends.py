"""Which storage backend a hub database URL names: SQLite (a path) or PostgreSQL (a URL)."""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from projctld.errors import ConfigError
from projctld.hub.storage.interface import HubStorage

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def open_storage(url: str) -> HubStorage:
    """The store that `url` names, not yet opened: `sqlite:///ABS/PATH`, `sqlite:REL/PATH` or a
    plain path for SQLite; `postgresql://...` (or `postgres://...`) for PostgreSQL."""
    scheme = _URL_SCHEME.match(url)
    if scheme and scheme.group(1).lower() in ("postgresql", "postgres"):
        # Each backend is imported only when chosen: psycopg costs a SQLite hub (and every
        # `projctld` command that can open a hub) tens of milliseconds for nothing.
        from projctld.hub.storage.postgres import PostgresStorage

        # `?schema=NAME` keeps this hub's tables in a schema of that name (default
        # projctl_hub): several hubs in one database, or a throwaway one for a benchmark.
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schema = [value for key, value in query if key == "schema"]
        if schema:
            if not _SCHEMA.match(schema[-1]):
                raise ConfigError(f"the hub's schema {schema[-1]!r} is not a plain name",
                                  suggestions=["use letters, digits and _ (at most 63)"])
            rest = urlencode([(key, value) for key, value in query if key != "schema"])
            return PostgresStorage(urlunsplit(parts._replace(query=rest)), schema=schema[-1])
        return PostgresStorage(url)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite://"):]
    elif url.startswith("sqlite:") and not scheme:
        path = url[len("sqlite:"):]
    elif not scheme:
        path = os.path.expanduser(url)
    else:
        path = ""
    if not path:
        # Only the scheme: the rest of a URL may hold a password.
        what = f"a {scheme.group(1)}:// URL" if scheme else f"{url!r}"
        raise ConfigError(
            f"the hub's storage {what} is neither a SQLite path nor a PostgreSQL URL",
            suggestions=["sqlite:///var/lib/projctl-hub/hub.db",
                         "postgresql://projctl:PASSWORD@db.example.com:5432/projctl"],
        )
    from projctld.hub.storage.sqlite import SqliteStorage

    return SqliteStorage(path)
