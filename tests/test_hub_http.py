"""The hub over real HTTP: uvicorn on a free port, SQLite on a temporary file, httpx as client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest
import structlog
import uvicorn
from conftest import Sandbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projctld import __version__
from projctld.errors import StoreError
from projctld.hub.app import create_app
from projctld.hub.storage.interface import PullPage, TokenRecord, hash_token, new_token
from projctld.hub.storage.sqlite import SqliteStorage
from projctld.team.sync.events import Event, PulledEvent, new_device_id, uuid7
from projctld.team.sync.hlc import pack
from projctld.team.sync.wire import (
    DEVICE_HEADER,
    DEVICE_TIME_HEADER,
    HUB_CLOCK_HEADER,
    HUB_ID_HEADER,
    JSON,
    LATEST_VERSION_HEADER,
    MAX_BATCH,
    MAX_BODY,
    MAX_EVENT,
    MAX_PAGE_BYTES,
    MIN_VERSION_HEADER,
    MSGPACK,
    Health,
    HubError,
    Mark,
    PullReply,
    PushReply,
    PushRequest,
)

T = TypeVar("T")
MIN_VERSION = "0.1.0"
ENCODE = {MSGPACK: msgspec.msgpack.encode, JSON: msgspec.json.encode}
# A hang guard for calls into the server's loop, far above what they need.
GUARD = 30


@dataclass
class Hub:
    """A hub serving in a thread of this process, with ways to reach into its storage."""

    url: str
    storage: SqliteStorage
    loop: asyncio.AbstractEventLoop

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(GUARD)

    def token(self, user: str = "ann", projects: tuple[str, ...] = ("*",), *,
              write: bool = True) -> str:
        token, token_hash, token_id = new_token()
        self.call(self.storage.add_token(token_hash, TokenRecord(
            id=token_id, user=user, projects=list(projects), write=write,
            created_at=time.time())))
        return token


@contextlib.contextmanager
def serving(storage: Any) -> Iterator[Hub]:
    """Run create_app(storage) under uvicorn on 127.0.0.1 with a free port."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    hub = Hub(f"http://127.0.0.1:{sock.getsockname()[1]}", storage, loop)
    hub.call(storage.open())
    server = uvicorn.Server(uvicorn.Config(create_app(storage, min_client_version=MIN_VERSION),
                                           log_config=None, lifespan="on"))
    served = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), loop)
    deadline = time.monotonic() + GUARD
    while not server.started:
        assert not served.done(), served.exception()
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield hub
    finally:
        server.should_exit = True
        served.result(GUARD)
        hub.call(storage.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(GUARD)
        loop.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    path = str(tmp_path_factory.mktemp("hub") / "hub.db")
    with serving(SqliteStorage(path)) as running:
        yield running


@pytest.fixture
def client(hub: Hub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, timeout=GUARD) as http:
        yield http


def project() -> str:
    """A project of this test alone: the module's tests share one hub."""
    return f"p{uuid.uuid4().hex[:12]}"


def event(project: str, device: str, seq: int, *, ahead: float = 0.0, **fields: Any) -> Event:
    now = time.time()
    values: dict[str, Any] = {
        "id": uuid7(), "device": device, "seq": seq, "hlc": pack(int((now + ahead) * 1000)),
        "project": project, "actor": "ann", "type": "note.added",
        "payload": {"note": uuid7(), "text": f"note number {seq}"}, "created_at": now,
    } | fields
    return Event(**values)


def events(project: str, count: int, device: str | None = None) -> list[Event]:
    device = device or new_device_id()
    return [event(project, device, seq) for seq in range(1, count + 1)]


def push(client: httpx.Client, token: str | None, batch: list[Event], *,
         encoding: str = MSGPACK, headers: dict[str, str] | None = None) -> httpx.Response:
    sent = {"content-type": encoding, "accept": encoding, **(headers or {})}
    if token:
        sent["authorization"] = f"Bearer {token}"
    return client.post("/v1/events", content=ENCODE[encoding](PushRequest(events=batch)),
                       headers=sent)


def pull(client: httpx.Client, token: str | None, project: str, *, encoding: str = MSGPACK,
         **params: Any) -> httpx.Response:
    headers = {"accept": encoding}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return client.get("/v1/events", params={"project": project, **params}, headers=headers)


def body(response: httpx.Response, kind: type[T]) -> T:
    """The reply decoded as `kind`, in the encoding its Content-Type names."""
    media_type = response.headers["content-type"].split(";")[0]
    decode = msgspec.msgpack.decode if media_type == MSGPACK else msgspec.json.decode
    return decode(response.content, type=kind)


def refusal(response: httpx.Response, status: int, code: str) -> HubError:
    assert response.status_code == status, response.text
    error = body(response, HubError)
    assert error.code == code, error
    assert "Traceback" not in response.text
    return error


def as_pushed(pulled: list[PulledEvent]) -> list[Event]:
    return [Event(**{name: getattr(e, name) for name in Event.__struct_fields__})
            for e in pulled]


# Round trips


@pytest.mark.parametrize(("push_encoding", "pull_encoding"),
                         [(MSGPACK, MSGPACK), (JSON, JSON), (JSON, MSGPACK), (MSGPACK, JSON)])
def test_pushed_events_come_back_unchanged(hub: Hub, client: httpx.Client, push_encoding: str,
                                           pull_encoding: str) -> None:
    token, name = hub.token(), project()
    batch = events(name, 3)
    batch.append(event(name, batch[0].device, 4, type="team.custom_thing",
                       payload={"nested": {"list": [1, 2.5, None, True, "x"]}}))

    pushed = push(client, token, batch, encoding=push_encoding)

    assert pushed.status_code == 200
    assert pushed.headers["content-type"].startswith(push_encoding)
    assert body(pushed, PushReply) == PushReply(accepted=4, duplicates=0, user="ann")
    pulled = pull(client, token, name, encoding=pull_encoding)
    assert pulled.status_code == 200
    assert pulled.headers["content-type"].startswith(pull_encoding)
    reply = body(pulled, PullReply)
    assert as_pushed(reply.events) == batch
    assert [e.hub_seq for e in reply.events] == sorted({e.hub_seq for e in reply.events})
    assert reply.next_after == reply.events[-1].hub_seq
    assert reply.more is False


def test_a_repeated_push_is_counted_as_duplicates_and_stored_once(hub: Hub,
                                                                  client: httpx.Client) -> None:
    token, name = hub.token(), project()
    batch = events(name, 3)
    assert body(push(client, token, batch[:2]), PushReply) == PushReply(user="ann", accepted=2,
                                                                         duplicates=0)

    again = push(client, token, batch, encoding=JSON)

    assert body(again, PushReply) == PushReply(accepted=1, duplicates=2, user="ann")
    assert as_pushed(body(pull(client, token, name), PullReply).events) == batch


def test_pages_follow_the_cursor_until_no_more(hub: Hub, client: httpx.Client) -> None:
    token, name = hub.token(), project()
    batch = events(name, 5)
    push(client, token, batch)

    seen: list[Event] = []
    after, pages = 0, []
    while True:
        reply = body(pull(client, token, name, after=after, limit=2), PullReply)
        pages.append((len(reply.events), reply.more))
        seen += as_pushed(reply.events)
        assert reply.next_after == (reply.events[-1].hub_seq if reply.events else after)
        after = reply.next_after
        if not reply.more:
            break

    assert pages == [(2, True), (2, True), (1, False)]
    assert seen == batch
    empty = body(pull(client, token, name, after=after), PullReply)
    assert empty == PullReply(events=[], next_after=after, more=False, user="ann")


def test_health_needs_no_token(hub: Hub, client: httpx.Client) -> None:
    reply = client.get("/v1/health")
    assert reply.status_code == 200
    assert body(reply, Health) == Health(status="ok", version=__version__,
                                         min_client_version=MIN_VERSION, storage="sqlite",
                                         hub_id=hub.storage.hub_id)


# Tokens and rights


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer pjh_0123456789abcdef",
                                           "Basic YW5uOnNlY3JldA==", "revoked"])
def test_no_live_token_is_401(hub: Hub, client: httpx.Client, authorization: str | None) -> None:
    headers = {}
    if authorization == "revoked":
        token = hub.token()
        record = hub.call(hub.storage.find_token(hash_token(token)))
        assert record is not None
        token_id = record.id
        assert hub.call(hub.storage.revoke_token(token_id))
        authorization = f"Bearer {token}"
    if authorization:
        headers["authorization"] = authorization
    name = project()

    for reply in (client.get("/v1/events", params={"project": name}, headers=headers),
                  client.post("/v1/events", content=msgspec.json.encode(PushRequest(
                      events=events(name, 1))), headers={**headers, "content-type": JSON})):
        error = refusal(reply, 401, "unauthorized")
        assert reply.headers["www-authenticate"] == "Bearer"
        assert any("projctld hub token create" in s for s in error.suggestions)


def test_a_token_reads_only_its_projects(hub: Hub, client: httpx.Client) -> None:
    mine, theirs = project(), project()
    writer = hub.token("bob", (theirs,))
    push(client, writer, events(theirs, 1))
    token = hub.token("ann", (mine,), write=False)

    assert pull(client, token, mine).status_code == 200
    error = refusal(pull(client, token, theirs), 403, "forbidden")
    assert theirs in error.message


def test_a_token_writes_only_its_projects_and_a_refused_batch_stores_nothing(
        hub: Hub, client: httpx.Client) -> None:
    mine, theirs = project(), project()
    token = hub.token("ann", (mine,))
    device = new_device_id()

    error = refusal(push(client, token, [event(mine, device, 1), event(theirs, device, 2)]),
                    403, "forbidden")

    assert theirs in error.message and mine not in error.message
    assert body(pull(client, token, mine), PullReply).events == []


def test_a_read_only_token_cannot_push(hub: Hub, client: httpx.Client) -> None:
    name = project()
    token = hub.token("ann", (name,), write=False)
    error = refusal(push(client, token, events(name, 1)), 403, "forbidden")
    assert name in error.message and "read-only" in error.message
    assert any("--write" in s for s in error.suggestions)


def test_a_device_belongs_to_the_user_who_first_pushed_from_it(hub: Hub,
                                                               client: httpx.Client) -> None:
    name, device = project(), new_device_id()
    assert push(client, hub.token("ann"), [event(name, device, 1)]).status_code == 200
    refusal(push(client, hub.token("bob"), [event(name, device, 2)]), 403, "device_taken")


# Limits


def raw_request(hub: Hub, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as they are and read the whole reply: (status, reply bytes)."""
    port = int(hub.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received:
                headers, _, rest = received.partition(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in headers.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                if len(rest) >= length:
                    break
    return int(received.split(b" ", 2)[1]), received


def test_a_declared_oversized_body_is_refused_before_it_is_read(hub: Hub) -> None:
    head = ("POST /v1/events HTTP/1.1\nHost: hub\nContent-Type: application/json\n"
            f"Authorization: Bearer {hub.token()}\nContent-Length: {{}}\n")
    content = msgspec.json.encode(PushRequest(events=[]))
    assert raw_request(hub, head.format(len(content)), content)[0] == 200

    status, reply = raw_request(hub, head.format(MAX_BODY + 1))

    assert status == 413
    assert b'"code":"too_large"' in reply
    assert f"{MIN_VERSION_HEADER}: {MIN_VERSION}".encode() in reply


def test_a_streamed_body_is_cut_off_at_the_limit(hub: Hub, client: httpx.Client) -> None:
    chunk = b" " * (1 << 20)  # JSON whitespace: only the size can be wrong

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // len(chunk) + 1):
            yield chunk

    reply = client.post("/v1/events", content=chunks(), headers={
        "content-type": JSON, "authorization": f"Bearer {hub.token()}"})

    assert "content-length" not in reply.request.headers
    error = refusal(reply, 413, "too_large")
    assert str(MAX_BODY) in error.message


def test_a_batch_over_the_limit_is_413(hub: Hub, client: httpx.Client) -> None:
    name = project()
    token = hub.token()
    error = refusal(push(client, token, events(name, MAX_BATCH + 1)), 413, "too_large")
    assert str(MAX_BATCH) in error.message
    assert body(pull(client, token, name), PullReply).events == []


# Malformed requests


def test_malformed_bodies_are_400_naming_what_is_wrong(hub: Hub, client: httpx.Client) -> None:
    token, name = hub.token(), project()
    good = msgspec.to_builtins(event(name, new_device_id(), 1))
    cases = [
        (MSGPACK, b"\xc1", "msgpack"),
        (MSGPACK, b"\xa3\xed\xa0\x80", "msgpack"),  # a string that is not UTF-8
        (JSON, b'{"events": [', "truncated"),
        (JSON, b"[]", "Expected `object`"),
        (JSON, msgspec.json.encode({"events": [good | {"seq": "one"}]}), "$.events[0].seq"),
        (JSON, msgspec.json.encode({"events": [good | {"project": "no spaces"}]}),
         "$.events[0].project"),
        (JSON, msgspec.json.encode({"events": [good | {"device": good["device"] + "\n"}]}),
         "$.events[0].device"),
        (MSGPACK, msgspec.msgpack.encode({"events": [{k: v for k, v in good.items()
                                                      if k != "hlc"}]}), "`hlc`"),
        (JSON, msgspec.json.encode({"events": [good | {"payload": {"deep": "NEST"}}]})
         .replace(b'"NEST"', b"[" * 5000 + b"]" * 5000), "nested too deeply"),
    ]
    for media_type, content, expected in cases:
        reply = client.post("/v1/events", content=content, headers={
            "content-type": media_type, "authorization": f"Bearer {token}"})
        error = refusal(reply, 400, "invalid_body")
        assert expected in error.message, (content[:40], error.message)


def test_events_with_invalid_payloads_are_400_naming_the_event(hub: Hub,
                                                               client: httpx.Client) -> None:
    token, name, device = hub.token(), project(), new_device_id()
    wrong_type = event(name, device, 1, payload={"note": uuid7(), "text": 5})
    error = refusal(push(client, token, [wrong_type]), 400, "invalid_event")
    assert wrong_type.id in error.message and "text" in error.message

    huge = event(name, device, 1, type="team.custom", payload={"n": 2**70})
    error = refusal(push(client, token, [huge], encoding=JSON), 400, "invalid_event")
    assert huge.id in error.message

    binary = event(name, device, 1, type="team.custom", payload={"blob": b"\x00\x01"})
    refusal(push(client, token, [binary]), 400, "invalid_event")

    # msgpack carries them, but JSON has none: a JSON pull would turn them into null.
    for number in (float("nan"), float("inf")):
        odd = event(name, device, 1, type="team.custom", payload={"n": [1.5, number]})
        error = refusal(push(client, token, [odd]), 400, "invalid_event")
        assert "NaN" in error.message
    assert body(pull(client, token, name), PullReply).events == []


@pytest.mark.parametrize(("query", "parameter"), [
    ({}, "project"),
    ({"project": "web", "after": "-1"}, "after"),
    ({"project": "web", "after": "x"}, "after"),
    ({"project": "web", "after": str(2**64)}, "after"),
    ({"project": "web", "limit": "0"}, "limit"),
    ({"project": "web", "limit": "1001"}, "limit"),
    ({"project": "web", "wait": "61"}, "wait"),
    ({"project": "web", "wait": "soon"}, "wait"),
    # No event carries such a name, and PostgreSQL cannot even compare one holding NUL.
    ({"project": "a\x00b"}, "project"),
    ({"project": "web\n"}, "project"),
    ({"project": "-web"}, "project"),
])
def test_bad_query_parameters_are_400_naming_the_parameter(
        hub: Hub, client: httpx.Client, query: dict[str, str], parameter: str) -> None:
    reply = client.get("/v1/events", params=query,
                       headers={"authorization": f"Bearer {hub.token()}"})
    error = refusal(reply, 400, "invalid_parameter")
    assert parameter in error.message


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          None])
def test_other_body_types_are_415(hub: Hub, client: httpx.Client,
                                  content_type: str | None) -> None:
    headers = {"authorization": f"Bearer {hub.token()}"}
    if content_type:
        headers["content-type"] = content_type
    reply = client.post("/v1/events", content=b'{"events": []}', headers=headers)
    error = refusal(reply, 415, "unsupported_media_type")
    assert any(MSGPACK in s and JSON in s for s in error.suggestions)


# Versions, clocks and headers


def test_an_old_client_is_told_exactly_how_to_upgrade(hub: Hub, client: httpx.Client) -> None:
    name = project()
    for reply in (client.get("/v1/events", params={"project": name},
                             headers={"x-projctl-version": "0.0.9"}),
                  client.get("/v1/health", headers={"x-projctl-version": "0.0.9"})):
        error = refusal(reply, 426, "upgrade_required")
        assert "0.0.9" in error.message and MIN_VERSION in error.message
        assert error.suggestions == [f"pip install --upgrade 'projctl>={MIN_VERSION}'",
                                     "projctl daemon restart"]

    assert client.get("/v1/health", headers={"x-projctl-version": "0.1.0"}).status_code == 200
    assert client.get("/v1/health", headers={"x-projctl-version": "0.10.0rc1"}).status_code \
        == 200
    # Too many digits for int() is no version either, rather than a failed request.
    for sent in ("latest", "9" * 5000, "1." + "9" * 5000):
        refusal(client.get("/v1/health", headers={"x-projctl-version": sent}), 400,
                "invalid_version")


def test_every_reply_names_the_versions_and_the_hub_clock(hub: Hub,
                                                          client: httpx.Client) -> None:
    token, name = hub.token(), project()
    replies = {
        "health": client.get("/v1/health"),
        "openapi": client.get("/v1/openapi.json"),
        "push": push(client, token, events(name, 1)),
        "pull": pull(client, token, name),
        "400": pull(client, token, name, limit=0),
        "401": pull(client, None, name),
        "403": pull(client, hub.token(projects=("other",)), name),
        "404": client.get("/v2/nothing"),
        "405": client.delete("/v1/events"),
        "415": client.post("/v1/events", content=b"x", headers={
            "authorization": f"Bearer {token}", "content-type": "text/plain"}),
        "426": client.get("/v1/health", headers={"x-projctl-version": "0.0.1"}),
    }
    clocks = []
    for what, reply in replies.items():
        assert reply.headers[MIN_VERSION_HEADER] == MIN_VERSION, what
        assert reply.headers[LATEST_VERSION_HEADER] == __version__, what
        clocks.append(int(reply.headers[HUB_CLOCK_HEADER]))
        if reply.status_code >= 400:
            assert reply.status_code == int(what), what
            assert body(reply, HubError).message, what
    assert clocks == sorted(set(clocks)), "the hub clock moves forward with every reply"
    assert abs(clocks[0] / 65536 / 1000 - time.time()) < 60


def test_msgpack_is_sent_only_to_who_prefers_it(client: httpx.Client) -> None:
    cases = {MSGPACK: MSGPACK, f"{JSON};q=0.5, {MSGPACK}": MSGPACK,
             f"{MSGPACK};q=0.5, {JSON}": JSON, "*/*": JSON, "text/html": JSON}
    for accept, expected in cases.items():
        reply = client.get("/v1/nowhere", headers={"accept": accept})
        assert reply.headers["content-type"].startswith(expected), accept
        assert body(reply, HubError).code == "not_found"


def test_events_stamped_too_far_ahead_are_refused_with_the_clock_fix(
        hub: Hub, client: httpx.Client) -> None:
    token, name = hub.token(), project()
    late = event(name, new_device_id(), 1, ahead=3600)

    error = refusal(push(client, token, [late]), 400, "clock_ahead")

    assert late.id in error.message and "3600 s" in error.message
    assert any("timedatectl set-ntp true" in s for s in error.suggestions)
    assert any("stamps the event again with the hub's clock" in s for s in error.suggestions)
    assert body(pull(client, token, name), PullReply).events == []


def test_the_hub_clock_moves_past_pushed_events(hub: Hub, client: httpx.Client) -> None:
    ahead = event(project(), new_device_id(), 1, ahead=120)
    reply = push(client, hub.token(), [ahead])
    assert reply.status_code == 200
    assert int(client.get("/v1/health").headers[HUB_CLOCK_HEADER]) > ahead.hlc


def test_a_different_event_under_a_pushed_seq_is_a_409(hub: Hub, client: httpx.Client) -> None:
    token, name, device = hub.token(), project(), new_device_id()
    original = event(name, device, 1)
    assert push(client, token, [original]).status_code == 200

    error = refusal(push(client, token, [event(name, device, 1)]), 409, "seq_conflict")

    assert device in error.message and "restored" in error.message
    assert any("state database" in s and "new id" in s for s in error.suggestions)
    assert as_pushed(body(pull(client, token, name), PullReply).events) == [original]


# Long polls


def test_a_waiting_pull_returns_as_soon_as_an_event_arrives(hub: Hub,
                                                            client: httpx.Client) -> None:
    token, name = hub.token(), project()
    batch = events(name, 1)
    outcome: dict[str, Any] = {}

    def wait_for_it() -> None:
        with httpx.Client(base_url=hub.url, timeout=GUARD) as other:
            outcome["reply"] = pull(other, token, name, wait=20)
            outcome["returned_at"] = time.monotonic()

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    time.sleep(0.3)
    assert "reply" not in outcome, "the pull should still be waiting"
    pushed_at = time.monotonic()
    assert push(client, token, batch).status_code == 200
    waiter.join(GUARD)

    assert as_pushed(body(outcome["reply"], PullReply).events) == batch
    # Well before the 20 s it was willing to wait.
    assert pushed_at < outcome["returned_at"] < pushed_at + 5


def test_a_waiting_pull_returns_empty_after_the_wait(hub: Hub, client: httpx.Client) -> None:
    started = time.monotonic()
    reply = pull(client, hub.token(), project(), after=7, wait=0.5)
    took = time.monotonic() - started
    assert body(reply, PullReply) == PullReply(events=[], next_after=7, more=False, user="ann")
    assert 0.5 <= took < 5


# What a device learns, and what one refused event costs the others


def test_a_partial_push_takes_what_it_can_and_says_why_for_each_other(
        hub: Hub, client: httpx.Client) -> None:
    name, device = project(), new_device_id()
    token = hub.token(projects=(name,))
    held = event(name, device, 1)
    assert push(client, token, [held]).status_code == 200
    batch = [
        event(name, device, 2),
        event("elsewhere", device, 3),  # a project the token may not write
        event(name, device, 4, type="team.attachment", payload={"blob": "x" * MAX_EVENT}),
        event(name, device, 5, actor="\u202ebob"),
        event(name, device, 6, ahead=3600),
        event(name, device, 1),  # another event under a seq the hub holds
        event(name, device, 7),
    ]
    sent = {"content-type": MSGPACK, "accept": MSGPACK, "authorization": f"Bearer {token}",
            DEVICE_HEADER: device}
    reply = client.post("/v1/events", headers=sent, content=msgspec.msgpack.encode(
        PushRequest(events=batch, partial=True)))

    assert reply.status_code == 200
    pushed = body(reply, PushReply)
    assert (pushed.accepted, pushed.duplicates, pushed.user) == (2, 0, "ann")
    assert {(r.seq, r.code) for r in pushed.refused} == {
        (3, "forbidden"), (4, "too_large"), (5, "invalid_event"), (6, "clock_ahead"),
        (1, "seq_conflict")}
    assert all(r.message and r.suggestions for r in pushed.refused)
    assert pushed.mark == Mark(seq=7, events=3)
    pulled = body(pull(client, token, name), PullReply).events
    assert [(e.seq, e.user) for e in pulled] == [(1, "ann"), (2, "ann"), (7, "ann")]
    # Without `partial` (an older projctl), one refused event refuses the batch, as before.
    error = refusal(push(client, token, [event(name, device, 8), batch[2]]), 413, "too_large")
    assert batch[2].id in error.message and str(MAX_EVENT) in error.message


def test_a_page_ends_at_its_byte_bound(hub: Hub, client: httpx.Client) -> None:
    token, name, device = hub.token(), project(), new_device_id()
    bulky = [event(name, device, seq, type="team.attachment", payload={"blob": "x" * 60_000})
             for seq in range(1, 81)]  # 4.8 MB: more than two pages' worth
    for start in range(0, 80, 20):
        assert push(client, token, bulky[start:start + 20]).status_code == 200
    pages, after = [], 0
    while True:
        page = body(pull(client, token, name, after=after, limit=1000), PullReply)
        pages.append(len(page.events))
        after = page.next_after
        if not page.more:
            break
    assert sum(pages) == 80 and len(pages) == 3
    assert max(pages) * 60_000 <= MAX_PAGE_BYTES + 60_000


def test_a_cursor_the_hub_does_not_hold_is_said_so(hub: Hub, client: httpx.Client) -> None:
    token, name = hub.token(), project()
    assert push(client, token, events(name, 2)).status_code == 200
    first, second = body(pull(client, token, name), PullReply).events
    fine = body(pull(client, token, name, after=first.hub_seq, after_id=first.id), PullReply)
    assert [e.id for e in fine.events] == [second.id] and not fine.cursor_unknown
    elsewhere = body(pull(client, token, name, after=first.hub_seq, after_id=second.id),
                     PullReply)
    assert elsewhere.cursor_unknown and elsewhere.events == [] and elsewhere.next_after == 0


def test_the_hub_tells_a_device_what_it_holds_of_its_log_and_only_its_own(
        hub: Hub, client: httpx.Client) -> None:
    name, device = project(), new_device_id()
    ann, bob = hub.token("ann"), hub.token("bob")
    assert push(client, ann, events(name, 3, device)).status_code == 200
    asked = {DEVICE_HEADER: device, DEVICE_TIME_HEADER: str(time.time())}
    mine = body(client.get("/v1/events", params={"project": name}, headers={
        "authorization": f"Bearer {ann}", **asked}), PullReply)
    assert mine.mark == Mark(seq=3, events=3) and mine.user == "ann"
    theirs = body(client.get("/v1/events", params={"project": name}, headers={
        "authorization": f"Bearer {bob}", **asked}), PullReply)
    assert theirs.mark is None  # another user's device: nothing said of it
    bad = client.get("/v1/events", params={"project": name}, headers={
        "authorization": f"Bearer {ann}", DEVICE_HEADER: "not a device!"})
    refusal(bad, 400, "invalid_header")


def test_no_client_can_grow_the_metrics(hub: Hub, client: httpx.Client) -> None:
    def series() -> set[str]:
        return {line.rsplit(" ", 1)[0] for line in client.get("/metrics").text.splitlines()
                if not line.startswith("#")}

    client.request("M0", "/v1/health")
    client.request("M1", "/v1/nowhere")
    series()
    before = series()  # the scrapes themselves counted too
    for number in range(2, 42):
        client.request(f"M{number}", "/v1/health" if number % 2 else f"/v1/nowhere/{number}")
    assert series() == before  # 40 more methods and paths: not one more series
    assert any('method="OTHER"' in line for line in before)
    assert not any("M17" in line or "nowhere" in line for line in before)


# The description and faults


def test_the_openapi_description_describes_the_bodies(client: httpx.Client) -> None:
    reply = client.get("/v1/openapi.json")
    assert reply.status_code == 200
    spec = reply.json()
    events_path = spec["paths"]["/v1/events"]
    schemas = spec["components"]["schemas"]
    assert {"PushRequest", "Event", "PushReply", "PullReply", "PulledEvent",
            "HubError", "Health"} <= set(schemas)
    assert schemas["PushRequest"]["properties"]["events"]["maxItems"] == MAX_BATCH
    request_body = events_path["post"]["requestBody"]["content"]
    for media_type in (MSGPACK, JSON):
        assert request_body[media_type]["schema"]["$ref"] == "#/components/schemas/PushRequest"
        assert events_path["post"]["responses"]["200"]["content"][media_type]["schema"][
            "$ref"] == "#/components/schemas/PushReply"
        assert events_path["get"]["responses"]["200"]["content"][media_type]["schema"][
            "$ref"] == "#/components/schemas/PullReply"
    for status in ("400", "401", "403", "409", "413", "415", "426"):
        assert events_path["post"]["responses"][status]["content"][JSON]["schema"][
            "$ref"] == "#/components/schemas/HubError"
    assert {p["name"] for p in events_path["get"]["parameters"]} == {
        "project", "after", "after_id", "limit", "wait", "x-projctl-version",
        "x-projctl-device", "x-projctl-device-time"}
    # Exact, though Litestar writes bounds as floats (in which 2**63 - 1 is 2**63).
    after = next(p for p in events_path["get"]["parameters"] if p["name"] == "after")
    assert after["schema"]["maximum"] == 2**63 - 1
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert events_path["get"]["security"] == events_path["post"]["security"] == [{"bearer": []}]
    health = spec["paths"]["/v1/health"]["get"]["responses"]["200"]
    assert set(health["content"]) == {JSON, MSGPACK}
    for header in (MIN_VERSION_HEADER, LATEST_VERSION_HEADER, HUB_CLOCK_HEADER, HUB_ID_HEADER):
        assert health["headers"][header]["required"] is True
    assert "WWW-Authenticate" in events_path["post"]["responses"]["401"]["headers"]


class BrokenStorage(SqliteStorage):
    """Fails every pull the way `failure` says."""

    def __init__(self, path: str, failure: Exception) -> None:
        super().__init__(path)
        self.failure = failure

    async def pull(self, project: str, after: int, limit: int, *,
                   max_bytes: int = 0) -> PullPage:
        raise self.failure


@pytest.mark.parametrize(("failure", "status", "code"), [
    (RuntimeError("a bug in the hub at /srv/secret/path"), 500, "internal"),
    (StoreError("the hub database /srv/secret/path cannot be used: disk I/O error"), 503,
     "unavailable"),
])
def test_faults_are_logged_and_answered_without_details(
        tmp_path: Path, failure: Exception, status: int, code: str) -> None:
    with serving(BrokenStorage(str(tmp_path / "hub.db"), failure)) as broken, \
            structlog.testing.capture_logs() as logs, \
            httpx.Client(base_url=broken.url, timeout=GUARD) as http:
        reply = pull(http, broken.token(), "web", encoding=JSON)

    refusal(reply, status, code)
    assert "/srv/secret" not in reply.text
    failed = [entry for entry in logs if entry["log_level"] == "error"]
    assert failed and "/srv/secret/path" in str(failed[0])


# Whatever comes in, the hub answers without a 5xx

@pytest.fixture(scope="module")
def fuzz(hub: Hub) -> Iterator[tuple[httpx.Client, str]]:
    """A client and a token kept across Hypothesis' examples."""
    with httpx.Client(base_url=hub.url, timeout=GUARD) as http:
        yield http, hub.token("fuzz")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_event_like = st.fixed_dictionaries({}, optional={
    name: _json | st.sampled_from([uuid7(), "web", "note.added", 1, 2**62, time.time()])
    for name in Event.__struct_fields__
})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.one_of(
    st.tuples(st.sampled_from([MSGPACK, JSON]), st.binary(max_size=300)),
    st.tuples(st.just(JSON), _json.map(msgspec.json.encode)),
    st.tuples(st.sampled_from([MSGPACK, JSON]),
              st.lists(_event_like, max_size=3).map(lambda e: {"events": e})
              .map(msgspec.to_builtins)),
))
def test_no_body_makes_the_hub_fail(hub: Hub, fuzz: tuple[httpx.Client, str],
                                    case: tuple[str, Any]) -> None:
    media_type, content = case
    if not isinstance(content, bytes):
        try:
            content = ENCODE[media_type](content)
        except OverflowError:
            # An integer beyond msgpack's 64 bits: JSON can still carry it to the hub.
            media_type, content = JSON, msgspec.json.encode(content)
    http, token = fuzz
    reply = http.post("/v1/events", content=content, headers={
        "content-type": media_type, "authorization": f"Bearer {token}"})
    assert reply.status_code < 500, reply.text
    assert reply.status_code in (200, 400, 403, 413), reply.text


# The command line


def projctld(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "projctld", "hub", *args], env=env,
                          capture_output=True, text=True, timeout=GUARD)


def test_tokens_are_created_listed_and_revoked_from_the_command_line(sandbox: Sandbox) -> None:
    created = projctld(sandbox.env, "token", "create", "--user", "ann", "--project", "web",
                       "--project", "api", "--write")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("pjh_") and len(created.stdout.splitlines()) == 1
    assert "not shown again" in created.stderr and "PROJCTL_HUB_TOKEN" in created.stderr
    assert token not in created.stderr
    # Without --database, the hub's SQLite file lives in the state directory.
    assert os.path.exists(os.path.join(sandbox.state_dir, "hub.db"))
    reader = projctld(sandbox.env, "token", "create", "--user", "bob", "--project", "*")
    assert reader.returncode == 0, reader.stderr

    listed = projctld(sandbox.env, "token", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "USER", "RIGHTS", "PROJECTS", "CREATED", "REVOKED"]
    assert [row.split()[1:4] + row.split()[-1:] for row in rows] == [
        ["ann", "read+write", "api,web", "no"], ["bob", "read", "*", "no"]]
    assert token not in listed.stdout and token[4:] not in listed.stdout
    ann_id = rows[0].split()[0]

    revoked = projctld(sandbox.env, "token", "revoke", ann_id)
    assert revoked.returncode == 0, revoked.stderr
    assert projctld(sandbox.env, "token", "list").stdout.splitlines()[1].split()[-1] == "yes"
    unknown = projctld(sandbox.env, "token", "revoke", "nosuchid")
    assert unknown.returncode == 1
    assert "nosuchid" in unknown.stderr and "token list" in unknown.stderr
    bad = projctld(sandbox.env, "token", "create", "--user", "ann", "--project", "a b")
    assert bad.returncode == 2 and "project name" in bad.stderr


def test_hub_serve_answers_until_sigterm(sandbox: Sandbox) -> None:
    database = f"sqlite://{sandbox.root}/team.db"
    env = {**sandbox.env, "PROJCTL_HUB_DATABASE": database}
    token = projctld(env, "token", "create", "--user", "ann", "--project", "web",
                     "--write").stdout.strip()
    process = subprocess.Popen(
        [sys.executable, "-m", "projctld", "hub", "serve", "--port", "0",
         "--min-client-version", "0.1.0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("projctl hub listening on http://127.0.0.1:"), \
            line + process.stderr.read() if process.poll() is not None else line
        assert line.rstrip().endswith("(storage: sqlite)")
        url = line.split()[4]
        assert not url.endswith(":0")
        with httpx.Client(base_url=url, timeout=GUARD) as http:
            batch = events("web", 2)
            assert body(push(http, token, batch), PushReply).accepted == 2
            assert as_pushed(body(pull(http, token, "web"), PullReply).events) == batch
            assert body(http.get("/v1/health"), Health).storage == "sqlite"

        process.send_signal(signal.SIGTERM)
        assert process.wait(GUARD) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_hub_serve_says_when_the_port_is_taken(sandbox: Sandbox) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = projctld(sandbox.env, "serve", "--port", str(port))
    assert result.returncode == 1
    assert f"port {port}" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr
