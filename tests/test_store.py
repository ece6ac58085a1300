"""The state database: WAL, numbered migrations applied whole, and what the daemon knows kept."""

from __future__ import annotations

import sqlite3

import pytest

from projctl_client.protocol import Checkout
from projctld.config import Config, ProjectConfig
from projctld.daemon import knowledge as knowledge_module
from projctld.daemon.knowledge import Knowledge
from projctld.errors import StoreError
from projctld.store import database
from projctld.store.checkouts import CheckoutTable
from projctld.store.database import Database


def test_a_new_database_is_in_wal_mode_and_fully_migrated(tmp_path) -> None:
    db = Database(str(tmp_path / "state" / "state.db"))
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.schema_version == len(database.migrations())
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == db.schema_version
    created = db.created_at
    db.close()
    again = Database(str(tmp_path / "state" / "state.db"))
    assert again.created_at == created


def test_a_failing_migration_is_not_half_applied(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "state.db")
    Database(path).close()
    current = database.migrations()
    broken = "CREATE TABLE half (x INTEGER);\nINSERT INTO no_such_table VALUES (1);"
    monkeypatch.setattr(database, "migrations", lambda: [*current, (len(current) + 1, broken)])
    with pytest.raises(StoreError, match="no such table"):
        Database(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(current)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0


def test_a_database_from_a_newer_projctld_is_refused(tmp_path) -> None:
    path = str(tmp_path / "state.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema 99, newer than this projctld") as caught:
        Database(path)
    assert "pip install --upgrade projctl" in caught.value.suggestions


def test_migrations_are_numbered_without_gaps() -> None:
    numbers = [number for number, _ in database.migrations()]
    assert numbers == list(range(1, len(numbers) + 1))


@pytest.fixture
def db(tmp_path):
    db = Database(str(tmp_path / "state.db"))
    yield db
    db.close()


def config_with(path: str) -> Config:
    return Config(projects={"outer": ProjectConfig(paths=[path]),
                            "inner": ProjectConfig(paths=[f"{path}/libs/inner"])})


def test_checkouts_are_matched_to_the_most_specific_project(db) -> None:
    known = Knowledge(CheckoutTable(db), config_with("/src"))
    assert known.project_of("/src") == "outer"
    assert known.project_of("/src/app") == "outer"
    assert known.project_of("/src/libs/inner/x") == "inner"
    assert known.project_of("/srcx") is None


def test_a_changed_branch_is_saved_at_once_and_a_revisit_at_most_each_interval(db) -> None:
    table = CheckoutTable(db)
    known = Knowledge(table, Config())
    known.observe(Checkout("/r", "main", "a" * 40), now=100.0)
    known.observe(Checkout("/r", "main", "a" * 40), now=110.0)
    assert [(r.branch, r.last_seen_at) for r in table.all()] == [("main", 100.0)]
    known.observe(Checkout("/r", "dev", "b" * 40), now=120.0)
    assert [(r.branch, r.first_seen_at, r.last_seen_at) for r in table.all()] == [
        ("dev", 100.0, 120.0)
    ]
    known.observe(Checkout("/r", "dev", "b" * 40), now=130.0)
    known.flush()
    assert table.all()[0].last_seen_at == 130.0


def test_the_number_of_checkouts_kept_is_bounded(db, monkeypatch) -> None:
    monkeypatch.setattr(knowledge_module, "MAX_CHECKOUTS", 3)
    table = CheckoutTable(db)
    known = Knowledge(table, Config())
    for index in range(5):
        known.observe(Checkout(f"/r{index}"), now=float(index))
    assert [row.root for row in known.checkouts()] == ["/r4", "/r3", "/r2"]
    assert sorted(row.root for row in table.all()) == ["/r2", "/r3", "/r4"]


def test_a_failed_save_keeps_answering_and_says_so(db) -> None:
    db.conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON checkouts "
        "BEGIN SELECT RAISE(ABORT, 'simulated full disk'); END"
    )
    known = Knowledge(CheckoutTable(db), Config())
    row = known.observe(Checkout("/r", "main"), now=1.0)
    assert row.branch == "main"
    assert "simulated full disk" in (known.last_error or "")
    assert [r.root for r in known.checkouts()] == ["/r"]
    db.conn.execute("DROP TRIGGER refuse")
    known.observe(Checkout("/r", "dev"), now=2.0)
    assert known.last_error is None
