"""The one contract of HubStorage, run against SQLite and a real PostgreSQL alike."""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
import msgspec
import psycopg
import pytest
from psycopg import sql

from projctld.errors import ConfigError, StoreError
from projctld.hub import postgres
from projctld.hub.backends import open_storage
from projctld.hub.postgres import PostgresStorage
from projctld.hub.sqlite import SqliteStorage
from projctld.hub.storage import (
    DeviceTaken,
    HubStorage,
    PushOutcome,
    SeqConflict,
    TokenRecord,
    hash_token,
    new_token,
)
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
    del fields["hub_seq"]
    return Event(**fields)


async def pull_all(store: HubStorage, project: str, after: int = 0) -> list[PulledEvent]:
    found: list[PulledEvent] = []
    while page := await store.pull(project, after, 1000):
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

    assert await storage.push("ann", pushed) == PushOutcome(accepted=3, duplicates=0)

    web = await storage.pull("web", 0, 100)
    assert [unstamped(p) for p in web] == pushed[:2]
    assert web[1].payload == odd.payload and web[1].actor == "Zoë 🚀 O'Brien"
    assert 1 <= web[0].hub_seq < web[1].hub_seq
    (api,) = await storage.pull("api", 0, 100)
    assert unstamped(api) == pushed[2]


async def test_a_repeated_push_counts_duplicates_and_stores_nothing_twice(
        storage: HubStorage) -> None:
    first = batch("dev-a", 1, 5)
    assert await storage.push("ann", first) == PushOutcome(accepted=5, duplicates=0)
    retried = [*first, *batch("dev-a", 6, 2)]

    assert await storage.push("ann", retried) == PushOutcome(accepted=2, duplicates=5)
    assert await storage.push("ann", retried) == PushOutcome(accepted=0, duplicates=7)

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
    assert await storage.push("bob", [event("dev-new", 1)]) == PushOutcome(
        accepted=1, duplicates=0)


async def test_a_batch_may_repeat_an_event_but_not_change_it(storage: HubStorage) -> None:
    once = event("dev-a", 1)
    assert await storage.push("ann", [once, event("dev-a", 2), once]) == PushOutcome(
        accepted=2, duplicates=1)

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
    assert await storage.push("ann", [event("dev-a", 2), event("dev-a", 3)]) == PushOutcome(
        accepted=2, duplicates=0)
    assert await storage.push("bob", [event("dev-b", 1)]) == PushOutcome(
        accepted=1, duplicates=0)


async def test_pulls_page_by_cursor_within_one_project(storage: HubStorage) -> None:
    first = [event("dev-a", seq, "web" if seq % 3 else "api") for seq in range(1, 13)]
    second = [event("dev-b", seq, "api" if seq % 2 else "web") for seq in range(1, 7)]
    await storage.push("ann", first)
    await storage.push("ann", second)

    pages: list[list[PulledEvent]] = []
    after = 0
    while page := await storage.pull("web", after, 3):
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
    assert await storage.pull("web", after, 3) == []
    assert await storage.pull("nobody", 0, 100) == []
    assert [p.seq for p in await storage.pull("api", api[1].hub_seq, 2)] == [
        p.seq for p in api[2:4]]


async def test_a_waiter_wakes_when_events_arrive(storage: HubStorage) -> None:
    await storage.push("ann", [event("dev-a", 1)])
    (held,) = await storage.pull("web", 0, 10)
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
    (held,) = await storage.pull("web", 0, 10)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(storage.wait_for_events, "web", held.hub_seq, 0.5)
            tg.start_soon(storage.wait_for_events, "web", held.hub_seq, 0)
            await storage.push("ann", [event("dev-b", 1, "api")])

    assert await storage.pull("web", held.hub_seq, 10) == []


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
    assert await storage.pull("web", 0, 10) == []  # they returned with nothing to read


async def test_a_cancelled_waiter_leaves_the_store_usable(storage: HubStorage) -> None:
    with anyio.move_on_after(0.2) as scope:
        await storage.wait_for_events("web", 0, 30)
    assert scope.cancelled_caught

    await storage.push("ann", [event("dev-a", 1)])
    with anyio.fail_after(20):
        await storage.wait_for_events("web", 0, 30)
    assert len(await storage.pull("web", 0, 10)) == 1


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
        assert await again.push("ann", [*pushed, event("dev-a", 5)]) == PushOutcome(
            accepted=1, duplicates=4)
        with pytest.raises(DeviceTaken):
            await again.push("bob", [event("dev-a", 6)])
        (newest,) = await again.pull("web", before[-1].hub_seq, 10)
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
            page = await reader.pull("load", after, 97)
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
        assert len(await waiting.pull("web", 0, 10)) == 1
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
    token, token_hash, token_id = new_token()
    assert token.startswith("pjh_") and token_id in token
    assert hash_token(token) == token_hash != hash_token(token + "x")
