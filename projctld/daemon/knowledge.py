"""What the daemon knows between requests: checkouts it has seen, in memory, saved on change."""

from __future__ import annotations

from projctl_client.protocol import Checkout
from projctld.config import Config
from projctld.errors import StoreError
from projctld.logging import get_logger
from projctld.store.checkouts import CheckoutRow, CheckoutTable

log = get_logger(__name__)

# A client could invent checkouts without end; the oldest-seen beyond this are forgotten.
MAX_CHECKOUTS = 1000
# Seeing the same checkout again only refreshes last_seen_at; write that at most this often.
PERSIST_INTERVAL = 60.0


class Knowledge:
    """Answers from memory; the table behind it is written only when something changed."""

    def __init__(self, table: CheckoutTable, config: Config) -> None:
        self._table = table
        # Counts the changes a status view shows (a checkout found, forgotten, or on another
        # branch or commit, or the projects' paths); last_seen_at alone does not count.
        self.version = 0
        self.configure(config)
        self._checkouts = {row.root: row for row in table.all()}
        self._persisted_at = {root: row.last_seen_at for root, row in self._checkouts.items()}
        self.last_error: str | None = None

    def configure(self, config: Config) -> None:
        """Take the projects' paths of `config` (at start and at a reload)."""
        # Most specific path first, so a project nested inside another's directory wins.
        self._project_paths = sorted(
            ((path, name) for name, project in config.projects.items() for path in project.paths),
            key=lambda item: len(item[0]),
            reverse=True,
        )
        self.version += 1

    def project_of(self, root: str) -> str | None:
        for path, name in self._project_paths:
            if root == path or root.startswith(path.rstrip("/") + "/"):
                return name
        return None

    def row(self, root: str) -> CheckoutRow:
        return self._checkouts[root]

    def checkouts(self) -> list[CheckoutRow]:
        """Every known checkout, most recently seen first."""
        return sorted(self._checkouts.values(), key=lambda row: row.last_seen_at, reverse=True)

    def observe(self, checkout: Checkout, now: float) -> CheckoutRow:
        """Record that the user is in `checkout` now."""
        row = self._checkouts.get(checkout.root)
        if row is None:
            row = CheckoutRow(root=checkout.root, branch=checkout.branch, head=checkout.head,
                              first_seen_at=now, last_seen_at=now)
            self._checkouts[row.root] = row
            self._forget_oldest()
            changed = True
        else:
            changed = (row.branch, row.head) != (checkout.branch, checkout.head)
            row.branch, row.head, row.last_seen_at = checkout.branch, checkout.head, now
        self.version += changed
        if changed or now - self._persisted_at.get(row.root, 0.0) >= PERSIST_INTERVAL:
            self._save([row])
        return row

    def flush(self) -> None:
        """Write every last_seen_at not yet written; called at shutdown."""
        self._save([row for root, row in self._checkouts.items()
                    if self._persisted_at.get(root) != row.last_seen_at])

    def _save(self, rows: list[CheckoutRow]) -> None:
        try:
            self._table.save(rows)
        except StoreError as exc:
            # Keep answering from memory; the status view shows the error until a save works.
            self.last_error = exc.message
            log.warning("store_write_failed", error=exc.message)
            return
        self.last_error = None
        for row in rows:
            self._persisted_at[row.root] = row.last_seen_at

    def _forget_oldest(self) -> None:
        excess = len(self._checkouts) - MAX_CHECKOUTS
        if excess <= 0:
            return
        oldest = sorted(self._checkouts.values(), key=lambda row: row.last_seen_at)[:excess]
        roots = [row.root for row in oldest]
        for root in roots:
            del self._checkouts[root]
            self._persisted_at.pop(root, None)
        try:
            self._table.delete(roots)
        except StoreError as exc:
            self.last_error = exc.message

