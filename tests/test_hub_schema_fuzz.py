"""The hub against its own OpenAPI description: schemathesis sends every operation valid and
invalid requests, and each reply must be no server error and what the description promises."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from psycopg import sql
from schemathesis import APIOperation, BaseSchema, Case, GenerationMode, Response
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure
from test_hub_http import Hub, serving
from test_hub_storage import DSN, require_postgres

from projctld.hub.storage.postgres import PostgresStorage
from projctld.hub.storage.sqlite import SqliteStorage
from projctld.team.sync.wire import JSON, MAX_WAIT, MSGPACK

# No 5xx, and the status, content type, headers and body each as the description says.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
# A pull of an empty project waits as long as it is asked to (up to a minute): valid waits are
# cut to this, so that one run sends hundreds of requests rather than a dozen.
WAIT_CAP = 0.05
EXAMPLES = 60  # per storage, operation and mode: about 30 s on a slow 2-core machine


@schemathesis.serializer(MSGPACK)
def _to_msgpack(ctx: Any, value: Any) -> bytes:
    try:
        return msgspec.msgpack.encode(value)
    except OverflowError:
        # An integer beyond 64 bits: no msgpack body can carry it (the hub refuses it in JSON).
        reject()


@schemathesis.deserializer(MSGPACK)
def _from_msgpack(ctx: Any, response: Response) -> Any:
    return msgspec.msgpack.decode(response.content)


@dataclass
class Request:
    """A case and the headers a client adds to it: its token and the encoding it prefers."""

    case: Case
    headers: dict[str, str]

    def send(self) -> Response:
        return self.case.call(headers=self.headers)

    def check(self, response: Response) -> None:
        """Raise schemathesis' failures for what in `response` breaks CHECKS."""
        self.case.validate_response(response, checks=CHECKS, headers=self.headers)


def requests(operation: APIOperation, mode: GenerationMode,
             tokens: Sequence[str]) -> st.SearchStrategy[Request]:
    """Cases of `operation` sent with one of `tokens` or with the Authorization schemathesis
    made up (no token the hub knows, or none), asking for either encoding or neither."""
    return st.builds(_request, operation.as_strategy(generation_mode=mode),
                     st.sampled_from([*tokens, None]), st.sampled_from([None, JSON, MSGPACK]))


def _request(case: Case, token: str | None, accept: str | None) -> Request:
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 < wait <= MAX_WAIT:
        case.query["wait"] = min(wait, WAIT_CAP)  # type: ignore[index]
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if accept:
        headers["Accept"] = accept
    return Request(case, headers)


def load(url: str) -> BaseSchema:
    """The description the hub at `url` serves, its operations sent to that hub."""
    schema = schemathesis.openapi.from_url(f"{url}/v1/openapi.json")
    schema.config.update(base_url=url)
    return schema


def operations(schema: BaseSchema) -> Iterator[APIOperation]:
    for result in schema.get_all_operations():
        yield result.ok()


def client_tokens(hub: Hub) -> list[str]:
    """A writer of every project, and a reader of one: 200s, 403s, and 401s without either."""
    return [hub.token("fuzz"), hub.token("reader", ("demo",), write=False)]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Hub]:
    """A hub on either storage: some inputs fail only one (PostgreSQL refuses NUL in text)."""
    if request.param == "sqlite":
        with serving(SqliteStorage(str(tmp_path_factory.mktemp("fuzz") / "hub.db"))) as running:
            yield running
        return
    asyncio.run(require_postgres())
    schema = f"t_{uuid.uuid4().hex}"
    try:
        with serving(PostgresStorage(DSN, schema=schema)) as running:
            yield running
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


def exercise(operation: APIOperation, mode: GenerationMode, tokens: Sequence[str],
             statuses: Counter[tuple[str, int]]) -> None:
    """EXAMPLES requests of `operation`, each reply checked; counts them by status."""

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large])
    @given(request=requests(operation, mode, tokens))
    def keeps_to_it(request: Request) -> None:
        response = request.send()
        statuses[operation.label, response.status_code] += 1
        request.check(response)

    keeps_to_it()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda mode: mode.value)
def test_every_reply_keeps_to_the_description(hub: Hub, mode: GenerationMode) -> None:
    schema, tokens = load(hub.url), client_tokens(hub)
    failures: list[str] = []
    statuses: Counter[tuple[str, int]] = Counter()
    for operation in operations(schema):
        try:
            exercise(operation, mode, tokens, statuses)
        except* Failure as found:
            failures.append(f"{operation.label}: {found}")

    assert not failures, "\n\n".join(failures)
    if mode is GenerationMode.POSITIVE:
        # Else a broken token or fixture would leave only refusals to check.
        answered = {label for label, status in statuses if status == 200}
        assert answered == {operation.label for operation in operations(schema)}, statuses
