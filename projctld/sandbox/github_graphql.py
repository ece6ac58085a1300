"""The fake GitHub's GraphQL API: GitHub's schema (github_schema.graphql) run by graphql-core over
the dataset, with GitHub's error shapes, point cost and limits.

What GitHub documents or has been seen answering, and where it says so:
- cost and limits: https://docs.github.com/graphql/overview/rate-limits-and-query-limits-for-the-graphql-api
  (points = requests to fill every connection / 100, rounded, at least 1; at most 500,000 nodes);
- errors beside partial data, with GitHub's `type` at the top level of each error and
  `extensions` only where GitHub has them (octokit/graphql.js README: INVALID_CURSOR_ARGUMENTS;
  fwouts/prmonitor#1042: FORBIDDEN with saml_failure);
- first/last are checked when the connection is resolved, so the error has a path and nulls the
  field like any other (MISSING_PAGINATION_BOUNDARIES, EXCESSIVE_PAGINATION);
- the node limit is checked before anything runs (MAX_NODE_LIMIT_EXCEEDED, no data:
  semantic-release/github#911).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import traceback
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLInt,
    build_schema,
    execute,
    get_named_type,
)
from graphql.language import (
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
)
from graphql.utilities import value_from_ast

from projctld.sandbox import fake_graphql
from projctld.sandbox.dataset import Dataset
from projctld.sandbox.fakehttp import RateLimit, Reply
from projctld.sandbox.github_resolvers import GitHubError, Request, bind, sso_header

NODE_LIMIT = 500_000
# What GitHub answers for a resolver that failed; the fake prints the exception on stderr too.
BROKEN = ("Something went wrong while executing your query. This may be the result of a timeout, "
          "or it could be a GitHub bug.")
DOCS = "https://docs.github.com/graphql"

SCHEMA = build_schema(
    importlib.resources.files("projctld.sandbox").joinpath("github_schema.graphql").read_text()
)
bind(SCHEMA)


# -- the endpoint


def answer(body: bytes, data: Dataset, rate: RateLimit) -> Reply | None:
    """GitHub's answer to one POST /graphql; None when the points it costs are not left."""
    try:
        request = json.loads(body)
    except ValueError:
        return Reply(400, {"message": "Problems parsing JSON", "documentation_url": DOCS,
                           "status": "400"})
    query = request.get("query") if isinstance(request, dict) else None
    if not isinstance(query, str):
        return _errors({"message": "A query attribute must be specified and must be a string."})
    variables = request.get("variables") or {}
    if not isinstance(variables, dict):
        return _errors({"message": "Variables must be a JSON object."})
    prepared = _prepare(query)
    if isinstance(prepared, list):
        return _errors(*prepared)
    operation = fake_graphql.pick(prepared, request.get("operationName"))
    if isinstance(operation, dict):
        return _errors(operation)
    coerced = fake_graphql.variables(SCHEMA, operation, variables)
    if isinstance(coerced, list):
        return _errors(*coerced)
    requests, nodes = _count(prepared.connections[id(operation)], coerced)
    if nodes > NODE_LIMIT:
        return _errors({"type": "MAX_NODE_LIMIT_EXCEEDED",
                        "message": f"This query requests up to {nodes:,} possible nodes which "
                                   f"exceeds the maximum limit of {NODE_LIMIT:,}."})
    cost = max(1, math.floor(requests / 100 + 0.5))
    document = prepared.document
    dry = _dry_run(operation, coerced)
    if dry:  # the cost is reported, neither charged nor anything else evaluated
        document = DocumentNode(definitions=(_only(operation, dry),))
    elif not rate.take(cost):
        return None
    state = Request(data, rate, cost, nodes)
    result = execute(SCHEMA, document, context_value=state, variable_values=variables,
                     operation_name=operation.name.value if operation.name else None,
                     is_awaitable=_never)  # every resolver is synchronous: spare the checks
    reply: dict[str, Any] = {"data": result.data}
    if result.errors:
        reply["errors"] = [_error(e) for e in result.errors]
    headers = {"X-GitHub-SSO": sso_header(state.saml_orgs[0])} if state.saml_orgs else {}
    return Reply(200, reply, headers)


def _never(_value: Any) -> bool:
    return False


def _errors(*errors: dict[str, Any]) -> Reply:
    return Reply(200, {"errors": list(errors)})


def _error(error: GraphQLError) -> dict[str, Any]:
    """An execution error as GitHub writes it: type, path, extensions, locations, message."""
    original = error.original_error
    github = original if isinstance(original, GitHubError) else None
    out: dict[str, Any] = {}
    if github is not None:
        out["type"] = github.kind
    if error.path is not None:
        out["path"] = list(error.path)
    if github is not None and github.extensions:
        out["extensions"] = github.extensions
    if error.locations:
        out["locations"] = fake_graphql.locations(error)
    if original is not None and github is None:
        traceback.print_exception(original)  # a fault of the fake itself: say so loudly
        out["message"] = BROKEN
    else:
        out["message"] = error.message
    return out


# -- parsing, validation and the connections of a query (cached: clients repeat their queries)


@dataclass
class _Connection:
    """A connection field of a query: its page size and the connections below it."""

    first: ValueNode | None
    last: ValueNode | None
    children: list[_Connection]


@dataclass
class _Prepared(fake_graphql.Prepared):
    connections: dict[int, list[_Connection]]  # id(operation) -> its connections


@functools.lru_cache(maxsize=256)
def _prepare(query: str) -> _Prepared | list[dict[str, Any]]:
    """The parsed and validated query and its connections, or GitHub's errors for it (callers
    must not change it)."""
    prepared = fake_graphql.prepare(SCHEMA, query)
    if isinstance(prepared, list):
        return prepared
    document = prepared.document
    fragments = {d.name.value: d for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}
    roots = {"query": SCHEMA.query_type}
    return _Prepared(document, prepared.operations, {
        id(op): _connections([op.selection_set], roots.get(op.operation.value), fragments)
        for op in prepared.operations.values()
    })


def _connections(selections: list[SelectionSetNode], parent: Any,
                 fragments: dict[str, FragmentDefinitionNode]) -> list[_Connection]:
    """The connections under these selection sets, fields of one response key merged."""
    by_key: dict[str, list[tuple[FieldNode, Any]]] = {}
    for selection_set in selections:
        _collect(selection_set, parent, fragments, by_key, set())
    found: list[_Connection] = []
    for entries in by_key.values():
        node, owner = entries[0]
        definition = getattr(owner, "fields", {}).get(node.name.value)
        if definition is None:  # __typename
            continue
        below = _connections([n.selection_set for n, _ in entries if n.selection_set],
                             get_named_type(definition.type), fragments)
        if get_named_type(definition.type).name.endswith("Connection") \
                and "first" in definition.args:
            arguments = {a.name.value: a.value for a in node.arguments or ()}
            found.append(_Connection(arguments.get("first"), arguments.get("last"), below))
        else:
            found += below
    return found


def _collect(selection_set: SelectionSetNode, parent: Any,
             fragments: dict[str, FragmentDefinitionNode],
             by_key: dict[str, list[tuple[FieldNode, Any]]], spread: set[str]) -> None:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            key = (selection.alias or selection.name).value
            by_key.setdefault(key, []).append((selection, parent))
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            kind = SCHEMA.get_type(condition.name.value) if condition else parent
            _collect(selection.selection_set, kind, fragments, by_key, spread)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in spread:
            fragment = fragments[selection.name.value]
            _collect(fragment.selection_set, SCHEMA.get_type(fragment.type_condition.name.value),
                     fragments, by_key, spread | {selection.name.value})


def _count(connections: list[_Connection], variables: dict[str, Any],
           parents: int = 1) -> tuple[int, int]:
    """(requests, nodes) as GitHub counts them: each connection is one request per parent item,
    and may return up to first/last nodes per parent item."""
    requests = nodes = 0
    for connection in connections:
        size = _size(connection.first, variables)
        if size is None:
            size = _size(connection.last, variables) or 0
        requests += parents
        nodes += parents * size
        more_requests, more_nodes = _count(connection.children, variables, parents * size)
        requests += more_requests
        nodes += more_nodes
    return requests, nodes


def _size(value: ValueNode | None, variables: dict[str, Any]) -> int | None:
    if value is None:
        return None
    size = value_from_ast(value, GraphQLInt, variables)
    return max(0, size) if isinstance(size, int) else None


def _dry_run(operation: OperationDefinitionNode,
             variables: dict[str, Any]) -> list[FieldNode]:
    """The rateLimit(dryRun: true) fields of the operation, if it asks for a dry run."""
    fields = [s for s in operation.selection_set.selections
              if isinstance(s, FieldNode) and s.name.value == "rateLimit"]
    for node in fields:
        for argument in node.arguments or ():
            if argument.name.value == "dryRun" and _true(argument.value, variables):
                return fields
    return []


def _true(value: ValueNode, variables: dict[str, Any]) -> bool:
    if isinstance(value, VariableNode):
        return variables.get(value.name.value) is True
    return isinstance(value, BooleanValueNode) and value.value


def _only(operation: OperationDefinitionNode,
          fields: list[FieldNode]) -> OperationDefinitionNode:
    return OperationDefinitionNode(
        operation=operation.operation, name=operation.name,
        variable_definitions=operation.variable_definitions, directives=operation.directives,
        selection_set=SelectionSetNode(selections=tuple(fields)),
    )
