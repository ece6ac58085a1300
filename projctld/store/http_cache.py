"""Validators (ETag, Last-Modified) and bodies of upstream GET responses, for conditional requests.

Validators stay in memory (a few dozen short strings); bodies stay on disk and are read back only
when the upstream answers 304 Not Modified.
"""

from __future__ import annotations

from projctld.store.database import Database

# A URL not answered 200 for this long is forgotten at start-up (a repository removed from
# the config); while running, [retention] http_cache_days decides (store/compaction.py).
FORGET_AFTER = 30 * 86400.0


class HttpCache:
    def __init__(self, db: Database, now: float) -> None:
        self._db = db
        self._validators = {
            url: (etag, last_modified)
            for url, etag, last_modified in db.read(
                "SELECT url, etag, last_modified FROM http_cache"
            )
        }
        self.prune(now - FORGET_AFTER)

    def validators(self, url: str) -> tuple[str | None, str | None] | None:
        return self._validators.get(url)

    def body(self, url: str) -> bytes | None:
        rows = self._db.read("SELECT body FROM http_cache WHERE url = ?", (url,))
        return rows[0][0] if rows else None

    def store(self, url: str, etag: str | None, last_modified: str | None, body: bytes,
              now: float) -> None:
        self._db.write_many(
            "INSERT OR REPLACE INTO http_cache(url, etag, last_modified, body, stored_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(url, etag, last_modified, body, now)],
        )
        self._validators[url] = (etag, last_modified)

    def prune(self, before: float) -> int:
        """Forget every URL not answered 200 since `before`, on disk and in memory: the URLs of
        closed merge requests and of old search pages would otherwise pile up in both. A URL
        still in use only costs one unconditional GET. Returns how many were forgotten."""
        stale = self._db.read("SELECT url FROM http_cache WHERE stored_at < ?", (before,))
        self._db.write_many("DELETE FROM http_cache WHERE url = ?", stale)
        for (url,) in stale:
            self._validators.pop(url, None)
        return len(stale)

    def forget(self, url: str) -> None:
        """Drop a URL whose stored body is gone or unreadable, so the next GET is unconditional."""
        self._validators.pop(url, None)
        self._db.write_many("DELETE FROM http_cache WHERE url = ?", [(url,)])
