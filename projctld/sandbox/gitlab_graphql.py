"""The fake GitLab's GraphQL API: GitLab's schema (gitlab_schema.graphql) run by graphql-core over
the dataset, with GitLab's error shapes, complexity limit and paging.

What GitLab documents, and where:
- the endpoint is /api/graphql; a token in `Authorization: Bearer` (or PRIVATE-TOKEN) that is
  not valid answers 401 `{"errors":[{"message":"Invalid token"}]}`; without a token the query
  runs as for an anonymous visitor, for whom `currentUser` is null
  (docs.gitlab.com/api/graphql/#authentication);
- limits: 100 nodes per page, complexity at most 250 (200 without a token), 10,000 characters
  per query (docs.gitlab.com/api/graphql/#limits); a query over the complexity limit is
  refused before it runs with graphql-ruby's words, "Query has complexity of N, which exceeds
  max complexity of 250" (GitLab's own specs, spec/requests/api/graphql_spec.rb);
- complexity is scored as app/graphql/types/base_field.rb and resolvers/base_resolver.rb do:
  each field 1, plus 1 if it calls Gitaly, or the constant its definition gives; a list with a
  resolver adds the resolver's own (1, +1 for `sort`, which always has a default), then 1% of
  itself per node it may return (`first`, at most 100). Children are summed, nothing is
  multiplied by the page size;
- an error beside partial data has message, locations and path, as GitLab's documented spam
  and "resource not available" errors do; a refused query has no data.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
import traceback
from collections.abc import Iterable
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLInt,
    GraphQLSchema,
    build_schema,
    execute,
    get_named_type,
)
from graphql.language import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.utilities import value_from_ast

from projctld.sandbox import fake_graphql
from projctld.sandbox.fakehttp import Reply
from projctld.sandbox.gitlab_resolvers import MAX_PAGE_SIZE, GitLabFieldError, Request, bind

MAX_COMPLEXITY = 250  # GitlabSchema::AUTHENTICATED_MAX_COMPLEXITY
ANONYMOUS_MAX_COMPLEXITY = 200  # GitlabSchema::DEFAULT_MAX_COMPLEXITY
MAX_QUERY_SIZE = 10_000
# What GitLab answers for a resolver that failed in an unforeseen way; the fake prints the
# exception on stderr too.
INTERNAL = "Internal server error"

# Fields whose definition gives their complexity (merge_request_type.rb: complexity: 5).
CONSTANT = {"MergeRequest.assignees": 5, "MergeRequest.reviewers": 5}
# Fields defined with `calls_gitaly: true` (merge_request_type.rb and its EE extension).
CALLS_GITALY = {"MergeRequest.approved", "MergeRequest.approvalsLeft",
                "MergeRequest.approvalsRequired", "MergeRequest.detailedMergeStatus"}
# Lists with a resolver (MergeRequestsResolver, a BaseResolver; Project.mergeRequests:
# ProjectMergeRequestsResolver, one of them), scored as resolvers are.
RESOLVED = {"CurrentUser.authoredMergeRequests", "CurrentUser.assignedMergeRequests",
            "CurrentUser.reviewRequestedMergeRequests", "Project.mergeRequests"}

SDL = importlib.resources.files("projctld.sandbox").joinpath("gitlab_schema.graphql").read_text()


@functools.lru_cache(maxsize=16)
def schema(without: frozenset[str] = frozenset()) -> GraphQLSchema:
    """GitLab's schema, or that of an older instance that lacks the fields `without` names
    ("MergeRequest.approvalsLeft"): a query naming one is refused as an undefined field."""
    text = SDL
    for name in without:
        kind, _, field = name.partition(".")
        block = re.search(rf"\ntype {kind} {{\n(.*?)\n}}", text, re.S)
        if block is None:
            raise ValueError(f"gitlab_schema.graphql has no type {kind}")
        kept = "\n".join(line for line in block[1].split("\n")
                         if not re.match(rf"  {field}\W", line))
        text = text.replace(block[1], kept)
    built = build_schema(text)
    bind(built)
    return built


def answer(body: bytes, state: Request, *, without: frozenset[str] = frozenset(),
           max_complexity: int | None = None) -> Reply:
    """GitLab's answer to one POST /api/graphql."""
    try:
        request = json.loads(body)
    except ValueError:
        request = None
    query = request.get("query") if isinstance(request, dict) else None
    if not isinstance(query, str) or not query.strip():
        return _errors({"message": "No query string was present"})
    if len(query) > MAX_QUERY_SIZE:
        return _errors({"message": "Query too large"})
    values = request.get("variables") or {}
    if not isinstance(values, dict):
        return _errors({"message": "Variables must be a JSON object"})
    served = schema(without)
    prepared = fake_graphql.prepare(served, query)
    if isinstance(prepared, list):
        return _errors(*prepared)
    operation = fake_graphql.pick(prepared, request.get("operationName"))
    if isinstance(operation, dict):
        return _errors(operation)
    coerced = fake_graphql.variables(served, operation, values)
    if isinstance(coerced, list):
        return _errors(*coerced)
    limit = max_complexity if max_complexity is not None else (
        MAX_COMPLEXITY if state.user else ANONYMOUS_MAX_COMPLEXITY)
    score = complexity(served, prepared.document, operation, coerced)
    if score > limit:
        return _errors({"message": f"Query has complexity of {score}, which exceeds max "
                                   f"complexity of {limit}"})
    result = execute(served, prepared.document, context_value=state, variable_values=values,
                     operation_name=operation.name.value if operation.name else None,
                     is_awaitable=_never)  # every resolver is synchronous: spare the checks
    reply: dict[str, Any] = {}
    if result.errors:
        reply["errors"] = [_error(e) for e in result.errors]
    reply["data"] = result.data
    return Reply(200, reply)


def _never(_value: Any) -> bool:
    return False


def _errors(*errors: dict[str, Any]) -> Reply:
    return Reply(200, {"errors": list(errors)})


def _error(error: GraphQLError) -> dict[str, Any]:
    """An execution error as GitLab writes it: message, locations, path."""
    original = error.original_error
    if original is not None and not isinstance(original, GitLabFieldError):
        traceback.print_exception(original)  # a fault of the fake itself: say so loudly
        message = INTERNAL
    else:
        message = error.message
    out: dict[str, Any] = {"message": message, "locations": fake_graphql.locations(error)}
    if error.path is not None:
        out["path"] = list(error.path)
    return out


# -- complexity (app/graphql/types/base_field.rb, app/graphql/resolvers/base_resolver.rb)


def complexity(served: GraphQLSchema, document: Any, operation: OperationDefinitionNode,
               values: dict[str, Any]) -> int:
    """The operation's complexity score, as GitLab works it out before running it."""
    fragments = {d.name.value: d for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}
    return _selections(served, [operation.selection_set], served.query_type, fragments, values)


def _selections(served: GraphQLSchema, selection_sets: Iterable[SelectionSetNode], parent: Any,
                fragments: dict[str, FragmentDefinitionNode], values: dict[str, Any]) -> int:
    """The sum over the fields of these selection sets, fields of one response key merged
    (graphql-ruby scores a field once however often it is selected)."""
    by_key: dict[str, list[FieldNode]] = {}
    for selection_set in selection_sets:
        _collect(served, selection_set, fragments, by_key, set())
    total = 0
    for nodes in by_key.values():
        name = nodes[0].name.value
        definition = parent.fields.get(name) if hasattr(parent, "fields") else None
        if definition is None:  # __typename
            continue
        children = [node.selection_set for node in nodes if node.selection_set]
        child = _selections(served, children, get_named_type(definition.type), fragments,
                            values) if children else 0
        total += _field(f"{parent.name}.{name}", nodes[0], child, values)
    return total


def _field(qualified: str, node: FieldNode, child: int, values: dict[str, Any]) -> int:
    if qualified in RESOLVED:
        arguments = {a.name.value: a for a in node.arguments or ()}
        score = float(child + 1 + 1)  # the resolver's own 1, +1 for `sort` (it has a default)
        if "search" in arguments:
            score += 5
        sizes = [size for key in ("first", "last") if key in arguments
                 and isinstance(size := value_from_ast(arguments[key].value, GraphQLInt,
                                                       values), int)]
        limit = min([*sizes, MAX_PAGE_SIZE])
        score += score * limit * 0.01
        return int(score)
    if qualified in CONSTANT:
        return CONSTANT[qualified] + child
    return 1 + (1 if qualified in CALLS_GITALY else 0) + child


def _collect(served: GraphQLSchema, selection_set: SelectionSetNode,
             fragments: dict[str, FragmentDefinitionNode],
             by_key: dict[str, list[FieldNode]], spread: set[str]) -> None:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            by_key.setdefault((selection.alias or selection.name).value, []).append(selection)
        elif isinstance(selection, InlineFragmentNode):
            _collect(served, selection.selection_set, fragments, by_key, spread)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in spread:
            _collect(served, fragments[selection.name.value].selection_set, fragments, by_key,
                     spread | {selection.name.value})
