"""The one contract of HubStorage, run against SQLite and a real PostgreSQL alike."""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
import msgspec
import psycopg
import pytest
from psycopg import sql

from projctld.errors import ConfigError, StoreError
from projctld.hub.storage import postgres
from projctld.hub.storage import sqlite as sqlite_hub
from projctld.hub.storage.backends import open_storage
from projctld.hub.storage.interface import (
    DeviceMark,
    DeviceTaken,
    HubStorage,
    PushOutcome,
    SeqConflict,
    SessionRecord,
    ShareRecord,
    Timeline,
    TokenRecord,
    hash_token,
    new_share,
    new_token,
)
from projctld.hub.storage.postgres import PostgresStorage
from projctld.hub.storage.sqlite import SqliteStorage
from projctld.team.sync.events import Event, PulledEvent, uuid7

DSN_VARIABLE = "PROJCTL_TEST_POSTGRES_DSN"
DSN = os.environ.get(DSN_VARIABLE, "postgresql://postgres@127.0.0.1:5432/test")

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Backend:
    """Where one test's hub data lives, and how to get a (not yet opened) store on it."""

    kind: str
    make: Callable[[], HubStorage]
    schema: str = ""  # PostgreSQL only


async def require_postgres() -> None:
    try:
        conn = await psycopg.AsyncConnection.connect(DSN, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {DSN}: {str(exc).strip()}\n"
            "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main"
            f" start\nor set {DSN_VARIABLE} to the DSN of a database where you may create"
            " schemas.",
            pytrace=False,
        )
    await conn.close()


async def postgres_execute(query: sql.Composable | str, params: tuple = ()) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        cursor = await conn.execute(query, params)
        return await cursor.fetchall() if cursor.description else []


@contextlib.asynccontextmanager
async def throwaway_schema() -> AsyncIterator[Backend]:
    await require_postgres()
    schema = f"t_{uuid.uuid4().hex}"
    try:
        yield Backend("postgresql", lambda: PostgresStorage(DSN, schema=schema), schema)
    finally:
        await postgres_execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path: os.PathLike) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        path = os.path.join(tmp_path, "hub.db")
        yield Backend("sqlite", lambda: SqliteStorage(path))
        return
    async with throwaway_schema() as postgres_backend:
        yield postgres_backend


@pytest.fixture
async def storage(backend: Backend) -> AsyncIterator[HubStorage]:
    store = backend.make()
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def pg_backend() -> AsyncIterator[Backend]:
    """For what only PostgreSQL promises."""
    async with throwaway_schema() as postgres_backend:
        yield postgres_backend


def event(device: str = "dev-a", seq: int = 1, project: str = "web", **changes: object) -> Event:
    fields: dict[str, object] = {
        "id": uuid7(), "device": device, "seq": seq, "hlc": 1_700_000_000_000 << 16 | seq,
        "project": project, "actor": "ann", "type": "note.added",
        "payload": {"note": uuid7(), "text": f"note {seq}"}, "created_at": 1_700_000_000.25,
    }
    fields.update(changes)
    return Event(**fields)  # type: ignore[arg-type]


def batch(device: str, first: int, count: int, project: str = "web") -> list[Event]:
    return [event(device, seq, project) for seq in range(first, first + count)]


def unstamped(pulled: PulledEvent) -> Event:
    fields = msgspec.structs.asdict(pulled)
    del fields["hub_seq"], fields["user"]
    return Event(**fields)


def counted(accepted: int, duplicates: int) -> Callable[[PushOutcome], bool]:
    """Matches an outcome that accepted and counted as duplicates that many events."""
    class Counted:
        def __eq__(self, outcome: object) -> bool:
            return isinstance(outcome, PushOutcome) and \
                (outcome.accepted, outcome.duplicates) == (accepted, duplicates)

        def __repr__(self) -> str:
            return f"accepted={accepted}, duplicates={duplicates}"
    return Counted()  # type: ignore[return-value]


async def pull_all(store: HubStorage, project: str, after: int = 0) -> list[PulledEvent]:
    found: list[PulledEvent] = []
    while page := (await store.pull(project, after, 1000)).events:
        found.extend(page)
        after = page[-1].hub_seq
    return found


async def test_round_trip_keeps_every_field(storage: HubStorage) -> None:
    odd = event(
        "dev-odd_1", 2**62, hlc=2**63 - 1, actor="Zoë 🚀 O'Brien", type="custom.thing_v2",
        created_at=1_712_345_678.123456,
        payload={"nested": {"list": [1, -2**62, 2.5, None, True, False, "ñ"], "empty": {}},
                 "text": "naïve — ✓ 漢字 🚀", "bytes": b"\x00\xff", "zero": 0},
    )
    pushed = [event("dev-a", 1), odd, event("dev-a", 2, "api")]

    assert await storage.push("ann", pushed) == counted(3, 0)

    web = (await storage.pull("web", 0, 100)).events
    assert [unstamped(p) for p in web] == pushed[:2]
    assert web[1].payload == odd.payload and web[1].actor == "Zoë 🚀 O'Brien"
    assert 1 <= web[0].hub_seq < web[1].hub_seq
    (api,) = (await storage.pull("api", 0, 100)).events
    assert unstamped(api) == pushed[2]


async def test_a_repeated_push_counts_duplicates_and_stores_nothing_twice(
        storage: HubStorage) -> None:
    first = batch("dev-a", 1, 5)
    assert await storage.push("ann", first) == counted(5, 0)
    retried = [*first, *batch("dev-a", 6, 2)]

    assert await storage.push("ann", retried) == counted(2, 5)
    assert await storage.push("ann", retried) == counted(0, 7)

    stored = await pull_all(storage, "web")
    assert [unstamped(p) for p in stored] == retried


async def test_a_seq_conflict_stores_nothing_of_its_batch(storage: HubStorage) -> None:
    held = event("dev-a", 1)
    await storage.push("ann", [held])
    rewritten = event("dev-a", 1)  # same (device, seq), another id: a restored old log
    doomed = [event("dev-a", 2), event("dev-new", 1), rewritten, event("dev-a", 3)]

    with pytest.raises(SeqConflict) as caught:
        await storage.push("ann", doomed)

    assert (caught.value.device, caught.value.seq) == ("dev-a", 1)
    assert [unstamped(p) for p in await pull_all(storage, "web")] == [held]
    # The refused batch did not claim its new device either.
    assert await storage.push("bob", [event("dev-new", 1)]) == counted(1, 0)


async def test_a_batch_may_repeat_an_event_but_not_change_it(storage: HubStorage) -> None:
    once = event("dev-a", 1)
    assert await storage.push("ann", [once, event("dev-a", 2), once]) == counted(2, 1)

    with pytest.raises(SeqConflict) as caught:
        await storage.push("ann", [event("dev-b", 1), event("dev-b", 2), event("dev-b", 2)])
    assert (caught.value.device, caught.value.seq) == ("dev-b", 2)

    assert [(p.device, p.seq) for p in await pull_all(storage, "web")] == [
        ("dev-a", 1), ("dev-a", 2)]


async def test_an_event_id_cannot_be_reused_for_another_seq(storage: HubStorage) -> None:
    held = event("dev-a", 1)
    await storage.push("ann", [held])

    with pytest.raises(SeqConflict):
        await storage.push("ann", [event("dev-a", 2), event("dev-a", 3, id=held.id)])
    with pytest.raises(SeqConflict):
        twin = event("dev-b", 1)
        await storage.push("ann", [twin, event("dev-b", 2, id=twin.id)])

    assert [unstamped(p) for p in await pull_all(storage, "web")] == [held]


async def test_a_device_belongs_to_the_user_who_pushed_it_first(storage: HubStorage) -> None:
    await storage.push("ann", [event("dev-a", 1)])

    with pytest.raises(DeviceTaken) as caught:
        await storage.push("bob", [event("dev-b", 1), event("dev-a", 2)])

    assert caught.value.device == "dev-a"
    assert [(p.device, p.seq) for p in await pull_all(storage, "web")] == [("dev-a", 1)]
    assert await storage.push("ann", [event("dev-a", 2), event("dev-a", 3)]) == counted(2, 0)
    assert await storage.push("bob", [event("dev-b", 1)]) == counted(1, 0)


async def test_pulls_page_by_cursor_within_one_project(storage: HubStorage) -> None:
    first = [event("dev-a", seq, "web" if seq % 3 else "api") for seq in range(1, 13)]
    second = [event("dev-b", seq, "api" if seq % 2 else "web") for seq in range(1, 7)]
    await storage.push("ann", first)
    await storage.push("ann", second)

    pages: list[list[PulledEvent]] = []
    after = 0
    while page := (await storage.pull("web", after, 3)).events:
        pages.append(page)
        after = page[-1].hub_seq

    assert [len(page) for page in pages] == [3, 3, 3, 2]
    web = [p for page in pages for p in page]
    assert [unstamped(p) for p in web] == [e for e in first + second if e.project == "web"]
    api = await pull_all(storage, "api")
    assert [unstamped(p) for p in api] == [e for e in first + second if e.project == "api"]
    # One global counter: the projects' positions interleave and never collide.
    assert not {p.hub_seq for p in web} & {p.hub_seq for p in api}
    assert max(p.hub_seq for p in web) > min(p.hub_seq for p in api)
    assert (await storage.pull("web", after, 3)).events == []
    assert (await storage.pull("nobody", 0, 100)).events == []
    assert [p.seq for p in (await storage.pull("api", api[1].hub_seq, 2)).events] == [
        p.seq for p in api[2:4]]


async def test_a_waiter_wakes_when_events_arrive(storage: HubStorage) -> None:
    await storage.push("ann", [event("dev-a", 1)])
    (held,) = (await storage.pull("web", 0, 10)).events
    woken: list[int] = []

    async def wait(index: int) -> None:
        await storage.wait_for_events("web", held.hub_seq, 60)
        woken.append(index)

    with anyio.fail_after(20):  # well before the waiters' own 60 s
        await storage.wait_for_events("web", 0, 60)  # already there: returns at once
        async with anyio.create_task_group() as tg:
            for index in range(50):
                tg.start_soon(wait, index)
            await anyio.sleep(0.3)
            assert woken == []
            await storage.push("ann", [event("dev-a", 2, "api")])  # another project
            await anyio.sleep(0.3)
            assert woken == []
            await storage.push("ann", [event("dev-a", 3)])

    assert sorted(woken) == list(range(50))


async def test_a_waiter_returns_after_its_timeout_when_nothing_arrives(
        storage: HubStorage) -> None:
    await storage.push("ann", [event("dev-a", 1)])
    (held,) = (await storage.pull("web", 0, 10)).events

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(storage.wait_for_events, "web", held.hub_seq, 0.5)
            tg.start_soon(storage.wait_for_events, "web", held.hub_seq, 0)
            await storage.push("ann", [event("dev-b", 1, "api")])

    assert (await storage.pull("web", held.hub_seq, 10)).events == []


async def test_stop_waiting_ends_every_wait_now_and_any_later_one(storage: HubStorage) -> None:
    woken: list[str] = []

    async def wait(project: str) -> None:
        await storage.wait_for_events(project, 0, 600)
        woken.append(project)

    with anyio.fail_after(20):  # the waits' own 600 s would trip it
        async with anyio.create_task_group() as tg:
            for project in ("web", "api", "web"):
                tg.start_soon(wait, project)
            await anyio.sleep(0.3)
            assert woken == []
            storage.stop_waiting()
        await storage.wait_for_events("web", 0, 600)  # the hub is stopping: no wait at all
    assert sorted(woken) == ["api", "web", "web"]
    assert (await storage.pull("web", 0, 10)).events == []  # they returned with nothing to read


async def test_a_cancelled_waiter_leaves_the_store_usable(storage: HubStorage) -> None:
    with anyio.move_on_after(0.2) as scope:
        await storage.wait_for_events("web", 0, 30)
    assert scope.cancelled_caught

    await storage.push("ann", [event("dev-a", 1)])
    with anyio.fail_after(20):
        await storage.wait_for_events("web", 0, 30)
    assert len((await storage.pull("web", 0, 10)).events) == 1


async def test_tokens_are_added_found_listed_and_revoked(storage: HubStorage) -> None:
    token, token_hash, token_id = new_token()
    reader = TokenRecord(id=token_id, user="ann", projects=["web", "api"], write=False,
                         created_at=1_700_000_000.5)
    writer = TokenRecord(id="w1", user="bob", projects=["*"], write=True,
                         created_at=1_700_000_001.0)
    await storage.add_token(token_hash, reader)
    await storage.add_token(hash_token("pjh_other"), writer)

    assert await storage.find_token(hash_token(token)) == reader
    assert await storage.find_token(hash_token("pjh_unknown")) is None
    assert await storage.list_tokens() == [reader, writer]

    assert await storage.revoke_token(token_id) is True
    assert await storage.revoke_token("nope") is False
    revoked = await storage.find_token(token_hash)
    assert revoked is not None and revoked.revoked
    assert not revoked.can_read("web")
    assert [t.revoked for t in await storage.list_tokens()] == [True, False]
    found = await storage.find_token(hash_token("pjh_other"))
    assert found is not None and found.can_write("anything")


async def test_data_survives_close_and_reopen(backend: Backend) -> None:
    first = backend.make()
    await first.open()
    pushed = batch("dev-a", 1, 4)
    await first.push("ann", pushed)
    _, token_hash, token_id = new_token()
    record = TokenRecord(id=token_id, user="ann", projects=["web"], write=True, created_at=1.0)
    await first.add_token(token_hash, record)
    before = await pull_all(first, "web")
    await first.close()

    again = backend.make()
    await again.open()
    try:
        assert await pull_all(again, "web") == before
        assert await again.find_token(token_hash) == record
        assert await again.push("ann", [*pushed, event("dev-a", 5)]) == counted(1, 4)
        with pytest.raises(DeviceTaken):
            await again.push("bob", [event("dev-a", 6)])
        (newest,) = (await again.pull("web", before[-1].hub_seq, 10)).events
        assert newest.seq == 5 and newest.hub_seq > before[-1].hub_seq
    finally:
        await again.close()


async def concurrent_pushes_and_a_reader(pushers: list[HubStorage], reader: HubStorage,
                                         tasks: int, batches: int, size: int) -> None:
    """Every event pushed, seen by a reader that pulled all along: once each, in hub_seq order."""
    pushed: set[str] = set()
    seen: list[PulledEvent] = []
    done = anyio.Event()

    async def push(task: int) -> None:
        store = pushers[task % len(pushers)]
        for number in range(batches):
            events = batch(f"dev-{task}", number * size + 1, size, "load")
            pushed.update(e.id for e in events)
            await store.push(f"user-{task}", events)
            await anyio.sleep(0)

    async def read() -> None:
        after = 0
        while True:
            finished = done.is_set()  # looked at before the pull, so the last pull is complete
            page = (await reader.pull("load", after, 97)).events
            seen.extend(page)
            if page:
                after = page[-1].hub_seq
            elif finished:
                return
            else:
                await anyio.sleep(0.001)

    with anyio.fail_after(40):
        async with anyio.create_task_group() as outer:
            outer.start_soon(read)
            async with anyio.create_task_group() as tg:
                for task in range(tasks):
                    tg.start_soon(push, task)
            done.set()

    assert len(pushed) == tasks * batches * size
    assert len(seen) == len(pushed) and {p.id for p in seen} == pushed
    assert all(a.hub_seq < b.hub_seq for a, b in itertools.pairwise(seen))


async def test_concurrent_pushers_never_make_a_reader_miss_an_event(
        storage: HubStorage) -> None:
    await concurrent_pushes_and_a_reader([storage], storage, tasks=8, batches=20, size=25)


async def test_a_newer_schema_is_refused(backend: Backend, tmp_path: os.PathLike) -> None:
    store = backend.make()
    await store.open()
    await store.close()
    if backend.kind == "sqlite":
        conn = sqlite3.connect(os.path.join(tmp_path, "hub.db"))
        conn.execute("PRAGMA user_version = 99")
        conn.close()
    else:
        await postgres_execute(sql.SQL("INSERT INTO {}.schema_version VALUES (99)").format(
            sql.Identifier(backend.schema)))

    with pytest.raises(StoreError) as caught:
        await backend.make().open()
    assert "99" in caught.value.message and caught.value.suggestions


async def test_an_unusable_sqlite_path_is_a_store_error(tmp_path: os.PathLike) -> None:
    with pytest.raises(StoreError) as caught:
        await SqliteStorage(os.fspath(tmp_path)).open()  # a directory
    assert os.fspath(tmp_path) in caught.value.message and caught.value.suggestions


async def test_an_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        await PostgresStorage("postgresql://hub:hunter2@127.0.0.1:1/hub").open()
    assert "127.0.0.1" in caught.value.message
    assert "hunter2" not in caught.value.message
    assert any("PostgreSQL runs" in text for text in caught.value.suggestions)


async def test_two_hub_processes_share_one_postgres_schema(
        pg_backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = pg_backend.make(), pg_backend.make()
    async with anyio.create_task_group() as tg:  # both create the schema at once
        tg.start_soon(first.open)
        tg.start_soon(second.open)
    try:
        pushed = batch("dev-a", 1, 3)
        await first.push("ann", pushed)
        assert [unstamped(p) for p in await pull_all(second, "web")] == pushed
        with pytest.raises(DeviceTaken):
            await second.push("bob", [event("dev-a", 4)])

        # Without its periodic re-check, only a notification from `first` can wake `second`.
        monkeypatch.setattr(postgres, "_RECHECK_INTERVAL", 3600.0)
        after = (await pull_all(second, "web"))[-1].hub_seq
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(second.wait_for_events, "web", after, 60)
                await anyio.sleep(0.3)
                await first.push("ann", [event("dev-a", 4)])
        monkeypatch.undo()

        await concurrent_pushes_and_a_reader([first, second], second, tasks=8, batches=15,
                                             size=40)
    finally:
        await first.close()
        await second.close()


async def test_the_postgres_listener_reconnects(
        pg_backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    waiting, pushing = pg_backend.make(), pg_backend.make()
    await waiting.open()
    await pushing.open()
    try:
        monkeypatch.setattr(postgres, "_RECHECK_INTERVAL", 3600.0)
        name = f"projctl-hub-listen:{pg_backend.schema}"
        # Both stores' listeners: the waiting one must come back by itself to be woken.
        killed = await postgres_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,))
        assert killed == [(True,), (True,)]

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiting.wait_for_events, "web", 0, 60)
                await anyio.sleep(0.3)
                await pushing.push("ann", [event("dev-a", 1)])
            while len(await postgres_execute(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = %s", (name,))) < 2:
                await anyio.sleep(0.05)
        assert len((await waiting.pull("web", 0, 10)).events) == 1
    finally:
        await waiting.close()
        await pushing.close()


def test_open_storage_understands_sqlite_and_postgres_urls(tmp_path: os.PathLike) -> None:
    absolute = os.path.join(tmp_path, "hub.db")
    cases = {
        f"sqlite://{absolute}": absolute,
        "sqlite:data/hub.db": "data/hub.db",
        absolute: absolute,
        "hub.db": "hub.db",
    }
    for url, path in cases.items():
        store = open_storage(url)
        assert isinstance(store, SqliteStorage) and store.path == path, url
    for url in ("postgresql://hub:pw@db.example.com:5432/hub", "postgres://db/hub"):
        store = open_storage(url)
        assert isinstance(store, PostgresStorage) and store.dsn == url
        assert store.kind == "postgresql"

    for url in ("mysql://hub:hunter2@db/hub", "", "sqlite://host/hub.db"):
        with pytest.raises(ConfigError) as caught:
            open_storage(url)
        assert "hunter2" not in caught.value.message
        assert any(s.startswith("sqlite:///") for s in caught.value.suggestions)
        assert any(s.startswith("postgresql://") for s in caught.value.suggestions)


def test_the_token_helpers_hash_what_they_hand_out() -> None:
    token, token_hash, _ = new_token()
    assert token.startswith("pjh_")
    assert hash_token(token) == token_hash != hash_token(token + "x")


def test_a_token_id_reveals_nothing_of_its_secret() -> None:
    made = [new_token() for _ in range(200)]
    for token, _, token_id in made:
        # Ids of older tokens were the secret's first 8 digits: these are drawn apart.
        assert token_id[:8] not in token
        assert len(token_id) == 12
    assert len({token_id for _, _, token_id in made}) == len(made)


async def take_snapshot(backend: Backend, tmp_path: os.PathLike) -> Callable[[], Awaitable[None]]:
    """Copy the hub's database aside now; the returned coroutine puts that copy back, as an
    operator restoring a backup would (the store must be closed around both)."""
    if backend.kind == "sqlite":
        path = os.path.join(tmp_path, "hub.db")
        with sqlite3.connect(path) as live, sqlite3.connect(path + ".bak") as copy:
            live.backup(copy)

        async def restore_file() -> None:
            with sqlite3.connect(path + ".bak") as copy, sqlite3.connect(path) as live:
                copy.backup(live)

        return restore_file
    schema = sql.Identifier(backend.schema)
    tables = ("events", "devices", "tokens", "hub")
    for table in tables:
        await postgres_execute(sql.SQL("CREATE TABLE {}.{} AS TABLE {}.{}").format(
            schema, sql.Identifier(f"backup_{table}"), schema, sql.Identifier(table)))

    async def restore_tables() -> None:
        for table in tables:
            await postgres_execute(sql.SQL("DELETE FROM {}.{}").format(
                schema, sql.Identifier(table)))
            await postgres_execute(sql.SQL("INSERT INTO {}.{} TABLE {}.{}").format(
                schema, sql.Identifier(table), schema, sql.Identifier(f"backup_{table}")))

    return restore_tables


async def test_each_database_has_its_own_identity_which_lasts(backend: Backend,
                                                              tmp_path: os.PathLike) -> None:
    store = backend.make()
    await store.open()
    identity = store.hub_id
    await store.close()
    again = backend.make()
    await again.open()
    await again.close()
    assert len(identity) == 16 and again.hub_id == identity
    other = SqliteStorage(os.path.join(tmp_path, "other.db"))
    await other.open()
    await other.close()
    assert other.hub_id != identity


async def test_the_hub_says_what_it_holds_of_each_device(storage: HubStorage) -> None:
    assert await storage.device_mark("dev-a") == DeviceMark()
    first = batch("dev-a", 1, 3)
    outcome = await storage.push("ann", [*first, *batch("dev-b", 1, 2)])
    assert outcome.marks == {"dev-a": DeviceMark(user="ann", seq=3, events=3),
                             "dev-b": DeviceMark(user="ann", seq=2, events=2)}
    await storage.push("ann", first)  # duplicates count once
    await storage.push("ann", [event("dev-a", 7)])  # seqs 4 to 6 set aside on the device
    assert await storage.device_mark("dev-a") == DeviceMark(user="ann", seq=7, events=4)
    assert await storage.device_mark("dev-b") == DeviceMark(user="ann", seq=2, events=2)


async def test_a_restored_database_numbers_above_what_it_handed_out_before(
        backend: Backend, tmp_path: os.PathLike) -> None:
    store = backend.make()
    await store.open()
    await store.push("ann", batch("dev-a", 1, 3))
    await store.close()
    restore = await take_snapshot(backend, tmp_path)
    store = backend.make()
    await store.open()
    lost = batch("dev-a", 4, 3)
    await store.push("ann", lost)
    handed_out = await pull_all(store, "web")
    cursor = handed_out[-1]
    assert await store.holds("web", cursor.hub_seq, cursor.id)
    await store.close()

    await restore()
    store = backend.make()
    await store.open()
    try:
        # The device whose events were lost learns it from the mark, and one that had pulled
        # them from its cursor's check.
        assert await store.device_mark("dev-a") == DeviceMark(user="ann", seq=3, events=3)
        assert not await store.holds("web", cursor.hub_seq, cursor.id)
        assert await store.holds("web", handed_out[2].hub_seq, handed_out[2].id)
        await store.push("bob", [event("dev-b", 1)])
        (new,) = (await store.pull("web", cursor.hub_seq, 10)).events
        assert new.device == "dev-b" and new.user == "bob"
        assert await store.push("ann", lost) == counted(3, 0)
    finally:
        await store.close()


async def test_a_partial_push_stores_what_it_can_and_names_the_rest(
        storage: HubStorage) -> None:
    await storage.push("bob", [event("dev-bob", 1)])
    held = event("dev-a", 2)
    await storage.push("ann", [held])
    reused = event("dev-a", 9, id=held.id)
    pushed = [event("dev-a", 1), event("dev-a", 2), event("dev-bob", 2), event("dev-a", 3),
              reused, held]

    outcome = await storage.push("ann", pushed, partial=True)

    assert (outcome.accepted, outcome.duplicates) == (2, 1)
    assert sorted(outcome.conflicts) == [("dev-a", 2), ("dev-a", 9)]
    assert outcome.taken == ["dev-bob"]
    assert outcome.marks == {"dev-a": DeviceMark(user="ann", seq=3, events=3)}
    stored = await pull_all(storage, "web")
    assert [(p.device, p.seq) for p in stored] == [
        ("dev-bob", 1), ("dev-a", 2), ("dev-a", 1), ("dev-a", 3)]
    assert {p.id for p in stored if p.device == "dev-a"} == {
        held.id, pushed[0].id, pushed[3].id}


async def test_a_page_ends_at_its_byte_budget(storage: HubStorage) -> None:
    big = [event("dev-a", seq, payload={"blob": "x" * 10_000}) for seq in range(1, 6)]
    await storage.push("ann", [*big, event("dev-a", 6)])

    page = await storage.pull("web", 0, 100, max_bytes=25_000)
    assert [p.seq for p in page.events] == [1, 2, 3] and page.more
    one = await storage.pull("web", 0, 100, max_bytes=1)  # the first event always comes
    assert [p.seq for p in one.events] == [1] and one.more
    rest = await storage.pull("web", page.events[-1].hub_seq, 100, max_bytes=10**9)
    assert [p.seq for p in rest.events] == [4, 5, 6] and not rest.more
    by_count = await storage.pull("web", 0, 6, max_bytes=10**9)
    assert len(by_count.events) == 6 and not by_count.more
    assert (await storage.pull("web", 0, 5, max_bytes=10**9)).more


async def test_pulled_events_name_the_user_who_pushed_them(storage: HubStorage) -> None:
    await storage.push("ann", [event("dev-a", 1, actor="bob")])
    (pulled,) = (await storage.pull("web", 0, 10)).events
    assert (pulled.actor, pulled.user) == ("bob", "ann")


async def test_a_database_copies_into_another_of_either_kind(storage: HubStorage,
                                                              tmp_path: os.PathLike) -> None:
    await storage.push("ann", [*batch("dev-a", 1, 4), *batch("dev-a", 5, 2, "api")])
    await storage.push("bob", [*batch("dev-b", 1, 3), *deployment("dev-b", 4, "production")])
    secret, share_hash, share_id = new_share()
    await storage.add_share(share_hash, ShareRecord(id=share_id, project="web", created_at=1.0,
                                                    expires_at=2e9))
    token, token_hash, token_id = new_token()
    record = TokenRecord(id=token_id, user="ann", projects=["web"], write=True, created_at=1.0)
    await storage.add_token(token_hash, record)
    async with throwaway_schema() as postgres_target:
        for target in (SqliteStorage(os.path.join(tmp_path, "copy.db")), postgres_target.make()):
            await target.open()
            try:
                after = 0
                while rows := await storage.export_events(after, 4):
                    await target.import_events(rows)
                    after = rows[-1].hub_seq
                await target.import_devices(await storage.export_devices())
                for token_hash_, token_record in await storage.export_tokens():
                    await target.add_token(token_hash_, token_record)
                for share_hash_, share_record in await storage.export_shares():
                    await target.add_share(share_hash_, share_record)

                assert target.hub_id != storage.hub_id
                for project in ("web", "api"):
                    assert await pull_all(target, project) == await pull_all(storage, project)
                assert await target.device_mark("dev-b") == await storage.device_mark("dev-b")
                assert await target.find_token(hash_token(token)) == record
                assert await target.find_share(hash_token(secret)) == \
                    await storage.share(share_id)
                assert await target.deployment_rows("web", 0) == \
                    await storage.deployment_rows("web", 0)
                await target.push("ann", [event("dev-a", 7)])
                (newest,) = (await target.pull("web", after, 10)).events
                assert newest.hub_seq > after
            finally:
                await target.close()


async def test_a_database_of_the_first_schema_is_brought_up_to_date(
        backend: Backend, tmp_path: os.PathLike) -> None:
    old = event("dev-a", 1, type="deployment.started",
                payload={"deployment": uuid7(), "environment": "production"})
    row = (old.id, old.device, old.seq, old.hlc, old.project, old.actor, old.type,
           msgspec.msgpack.encode(old.payload), old.created_at, "ann", 1.0)
    if backend.kind == "sqlite":
        conn = sqlite3.connect(os.path.join(tmp_path, "hub.db"))
        conn.executescript(sqlite_hub._MIGRATIONS[0] + "PRAGMA user_version = 1;")
        conn.execute("INSERT INTO events (id, device, seq, hlc, project, actor, type, payload,"
                     " created_at, pushed_by, received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)
        conn.execute("INSERT INTO devices VALUES ('dev-a', 'ann', 1.0)")
        conn.commit()
        conn.close()
    else:
        schema = sql.Identifier(backend.schema)
        await postgres_execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
            await conn.execute(sql.SQL("SET search_path TO {}").format(schema))
            await conn.execute(postgres._MIGRATIONS[0])
            await conn.execute("CREATE TABLE schema_version (version integer NOT NULL);"
                               "INSERT INTO schema_version VALUES (1)")
            await conn.execute("INSERT INTO events (id, device, seq, hlc, project, actor, type,"
                               " payload, created_at, pushed_by, received_at) VALUES"
                               " (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", row)
            await conn.execute("INSERT INTO devices VALUES ('dev-a', 'ann', 1.0)")
    store = backend.make()
    await store.open()
    try:
        assert store.hub_id
        assert await store.device_mark("dev-a") == DeviceMark(user="ann", seq=1, events=1)
        (pulled,) = (await store.pull("web", 0, 10, max_bytes=1)).events
        assert (unstamped(pulled), pulled.user) == (old, "ann")
        await store.push("ann", [event("dev-a", 2)])
        assert [p.seq for p in await pull_all(store, "web")] == [1, 2]
        # The deployment event taken before the hub kept them aside is found by the pages.
        assert await store.environments("web", 10) == ["production"]
        assert [r[:3] for r in await store.deployment_rows("web", 0)] == [
            ("deployment.started", "dev-a", 1)]
    finally:
        await store.close()


def deployment(device: str, seq: int, environment: str, *, project: str = "web",
               ok: bool = True, hlc: int | None = None) -> list[Event]:
    """A deployment's start and end, as events `seq` and `seq + 1` of `device`."""
    ident = uuid7()
    base = hlc if hlc is not None else 1_700_000_000_000 << 16 | seq
    return [
        event(device, seq, project, type="deployment.started", hlc=base,
              payload={"deployment": ident, "environment": environment, "commit": "abc"}),
        event(device, seq + 1, project, type="deployment.completed" if ok else
              "deployment.failed", hlc=base + 1,
              payload={"deployment": ident, "environment": environment, "duration": 3.0}),
    ]


async def test_deployment_events_are_found_by_environment_and_deployment(
        storage: HubStorage) -> None:
    first = deployment("dev-a", 1, "production", hlc=100 << 16)
    second = deployment("dev-a", 3, "staging", hlc=200 << 16, ok=False)
    third = deployment("dev-a", 5, "production", hlc=300 << 16)
    other = deployment("dev-a", 7, "production", project="api", hlc=400 << 16)
    await storage.push("ann", [*first, event("dev-a", 9, hlc=150 << 16), *second, *third,
                               *other])
    await storage.push("bob", [event("dev-b", 1, type="deployment.marked", hlc=500 << 16,
                                     payload={"deployment": first[0].payload["deployment"],
                                              "environment": "production"})])

    rows = await storage.deployment_rows("web", 0)
    assert sorted((r[0], r[1], r[2], r[5]) for r in rows) == sorted(
        [(e.type, e.device, e.seq, "ann") for e in (*first, *second, *third)]
        + [("deployment.marked", "dev-b", 1, "bob")])
    assert {msgspec.msgpack.decode(r[6])["environment"] for r in rows} == {"production",
                                                                           "staging"}
    assert [r[3] for r in await storage.deployment_rows("web", 300 << 16)] == sorted(
        [300 << 16, (300 << 16) + 1, 500 << 16])
    assert await storage.environments("web", 10) == ["production", "staging"]
    assert await storage.environments("web", 1) == ["production"]
    # By their newest event: the first was marked last.
    newest = [first[0].payload["deployment"], third[0].payload["deployment"]]
    assert await storage.recent_deployments("web", "production", 10) == newest
    assert await storage.recent_deployments("web", "production", 1) == newest[:1]
    assert await storage.recent_deployments("web", "production", 1, completed=True) == \
        newest[1:]
    assert await storage.recent_deployments("web", "staging", 10, completed=True) == []
    rows = await storage.rows_of_deployments("web", newest[:1])
    assert sorted((r[1], r[2]) for r in rows) == [("dev-a", 1), ("dev-a", 2), ("dev-b", 1)]
    assert await storage.rows_of_deployments("web", []) == []


async def test_a_refused_deployment_event_is_not_kept_aside(storage: HubStorage) -> None:
    await storage.push("ann", [event("dev-a", 1)])
    taken = deployment("dev-a", 1, "production")  # dev-a's seq 1 holds another event
    outcome = await storage.push("ann", [taken[0], *deployment("dev-a", 5, "staging")],
                                 partial=True)
    assert outcome.conflicts == [("dev-a", 1)]
    assert await storage.environments("web", 10) == ["staging"]


async def test_the_timeline_is_newest_first_with_its_filters(storage: HubStorage) -> None:
    notes = [event("dev-a", seq, hlc=seq << 16) for seq in range(1, 6)]
    deployed = deployment("dev-b", 1, "production", hlc=10 << 16)
    staged = deployment("dev-b", 3, "staging", hlc=20 << 16)
    await storage.push("ann", notes)
    await storage.push("bob", [*deployed, *staged])
    await storage.push("ann", [event("dev-c", 1, "api", hlc=30 << 16)])

    def keys(found: list[PulledEvent]) -> list[tuple[str, int]]:
        return [(e.device, e.seq) for e in found]

    everything = await storage.timeline("web", Timeline())
    assert keys(everything) == [("dev-b", 4), ("dev-b", 3), ("dev-b", 2), ("dev-b", 1),
                                *[("dev-a", seq) for seq in range(5, 0, -1)]]
    assert everything[0].user == "bob" and everything[-1].user == "ann"
    page = await storage.timeline("web", Timeline(limit=3))
    last = page[-1]
    rest = await storage.timeline("web", Timeline(before=(last.hlc, last.device, last.seq)))
    assert keys(page + rest) == keys(everything)
    assert keys(await storage.timeline("web", Timeline(types=("deployment",)))) == \
        keys(everything)[:4]
    assert keys(await storage.timeline("web", Timeline(types=("deployment.completed",
                                                               "note.added"), limit=3))) == \
        [("dev-b", 4), ("dev-b", 2), ("dev-a", 5)]
    assert keys(await storage.timeline("web", Timeline(user="ann"))) == keys(everything)[4:]
    assert keys(await storage.timeline("web", Timeline(environment="staging"))) == \
        [("dev-b", 4), ("dev-b", 3)]
    assert keys(await storage.timeline("web", Timeline(since_hlc=4 << 16))) == \
        keys(everything)[:6]
    assert await storage.timeline("web", Timeline(user="nobody")) == []
    assert await storage.projects() == ["api", "web"]
    assert await storage.last_hub_seq("web") == max(e.hub_seq for e in everything)
    assert await storage.last_hub_seq("none") == 0


async def test_share_links_are_added_found_listed_and_revoked(storage: HubStorage) -> None:
    secret, share_hash, share_id = new_share()
    assert secret.startswith("pjs_") and share_hash == hash_token(secret)
    record = ShareRecord(id=share_id, project="web", created_at=10.0, expires_at=20.0)
    await storage.add_share(share_hash, record)

    assert await storage.find_share(share_hash) == record
    assert await storage.share(share_id) == record
    assert await storage.find_share(hash_token("pjs_other")) is None
    assert await storage.list_shares() == [record]
    assert record.live(19.0) and not record.live(20.0)
    assert await storage.revoke_share(share_id)
    assert not await storage.revoke_share("nope")
    revoked = await storage.find_share(share_hash)
    assert revoked is not None and revoked.revoked and not revoked.live(11.0)
    assert await storage.export_shares() == [(share_hash, revoked)]


async def test_sessions_are_kept_found_ended_and_dropped_once_expired(
        storage: HubStorage) -> None:
    now = time.time()
    live = SessionRecord(user="ann", csrf="c1", created_at=now, expires_at=now + 60,
                         token_hash="t" * 64)
    shared = SessionRecord(user="", csrf="c2", created_at=now, expires_at=now + 60,
                           share_id="s1")
    stale = SessionRecord(user="ann", csrf="c3", created_at=now - 90, expires_at=now - 30,
                          token_hash="t" * 64)
    await storage.add_session("h-stale", stale)
    await storage.add_session("h-live", live)
    await storage.add_session("h-shared", shared)

    assert await storage.find_session("h-live") == live
    assert await storage.find_session("h-shared") == shared
    assert await storage.find_session("h-stale") is None  # dropped when another was added
    await storage.delete_session("h-live")
    assert await storage.find_session("h-live") is None


# The hub as the team's intermediary for upstream state (schema version 4).

def upstream_state(project: str = "web", upstream: str = "github", **changes: object):
    from projctld.hub.storage.interface import UpstreamState
    fields: dict[str, object] = {"project": project, "upstream": upstream, "kind": "github",
                                 "host": "api.github.com", "data": b"\x80",
                                 "fetched_at": 1_700_000_000.5, "attempted_at": 1_700_000_001.0}
    fields.update(changes)
    return UpstreamState(**fields)  # type: ignore[arg-type]


async def test_upstream_state_is_versioned_per_save_and_read_after_a_version(
        storage: HubStorage) -> None:
    first = await storage.save_upstream(upstream_state())
    other = await storage.save_upstream(upstream_state("api"))
    second = await storage.save_upstream(upstream_state(data=b"\x81", error=b"\xa1x"))

    assert first < other < second
    (held,) = await storage.upstream_states("web")
    assert (held.data, held.error, held.version, held.host) == (b"\x81", b"\xa1x", second,
                                                                 "api.github.com")
    assert await storage.upstream_states("web", after=second) == []
    assert [s.project for s in await storage.upstream_states("api", after=first)] == ["api"]


async def test_a_waiter_wakes_when_its_projects_upstream_state_changes(
        storage: HubStorage) -> None:
    version = await storage.save_upstream(upstream_state())
    woke_at: list[float] = []

    async def wait() -> None:
        await storage.wait_for_upstream("web", version, 10.0)
        woke_at.append(time.monotonic())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(wait)
        await anyio.sleep(0.2)
        await storage.save_upstream(upstream_state("api"))  # another project: no wake-up
        await anyio.sleep(0.2)
        assert woke_at == []
        saved_at = time.monotonic()
        await storage.save_upstream(upstream_state(data=b"\x90"))
    assert woke_at and woke_at[0] - saved_at < 5.0


async def test_identities_map_users_to_their_upstream_names(storage: HubStorage) -> None:
    await storage.set_identity("ann", "github", "ann-gh")
    await storage.set_identity("ann", "jira", "5b10ac8d82e05b22cc7d4ef5")
    await storage.set_identity("bob", "gitlab", "bob")
    await storage.set_identity("ann", "github", "ann-octo")
    await storage.set_identity("bob", "gitlab", None)

    assert await storage.identities() == {
        "ann": {"github": "ann-octo", "jira": "5b10ac8d82e05b22cc7d4ef5"}}


async def test_a_webhook_delivery_is_taken_once(storage: HubStorage) -> None:
    now = time.time()
    assert await storage.first_delivery("github", "72d3162e-cc78-11e3-81ab-4c9367dc0958", now)
    assert not await storage.first_delivery("github", "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                                            now + 1)
    assert await storage.first_delivery("gitlab", "72d3162e-cc78-11e3-81ab-4c9367dc0958", now)


async def test_one_holder_at_a_time_takes_the_pollers_lease(storage: HubStorage) -> None:
    now = 1_700_000_000.0
    assert await storage.take_lease("poller", "hub-a", 10.0, now)
    assert not await storage.take_lease("poller", "hub-b", 10.0, now + 5)
    assert await storage.take_lease("poller", "hub-a", 10.0, now + 5)  # renewed
    assert not await storage.take_lease("poller", "hub-b", 10.0, now + 14)
    assert await storage.take_lease("poller", "hub-b", 10.0, now + 16)  # hub-a's ran out
    assert not await storage.take_lease("poller", "hub-a", 10.0, now + 17)


async def test_concurrent_callers_share_one_call_but_never_an_earlier_one() -> None:
    from projctld.hub.storage.interface import SingleFlight

    flight = SingleFlight()
    calls: list[int] = []
    release = anyio.Event()

    async def call() -> int:
        calls.append(len(calls) + 1)
        number = len(calls)
        await release.wait()
        return number

    results: list[int] = []

    async def ask() -> None:
        results.append(await flight.run("web", call))

    async with anyio.create_task_group() as tasks:
        for _ in range(50):  # woken together: one call
            tasks.start_soon(ask)
        await anyio.sleep(0.05)
        assert calls == [1]
        for _ in range(20):  # came while it ran: they share the next call, not that one
            tasks.start_soon(ask)
        await anyio.sleep(0.05)
        release.set()
    assert calls == [1, 2]
    assert sorted(results) == [1] * 50 + [2] * 20


async def test_a_copy_keeps_the_users_upstream_names(storage: HubStorage,
                                                     tmp_path: os.PathLike) -> None:
    from projctld.hub.storage.copy import copy_hub

    await storage.set_identity("ann", "github", "ann-octo")
    await storage.save_upstream(upstream_state())
    target = SqliteStorage(os.path.join(tmp_path, "copy.db"))
    await target.open()
    try:
        await copy_hub(storage, target)
        assert await target.identities() == {"ann": {"github": "ann-octo"}}
        assert await target.upstream_states("web") == []  # polled afresh by the new hub
    finally:
        await target.close()
