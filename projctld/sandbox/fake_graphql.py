"""What the fake GitHub's and GitLab's GraphQL APIs do alike: an SDL schema bound to resolvers,
a query parsed and validated once (refused in graphql-ruby's words), its operation picked and
its variables coerced."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLSyntaxError,
    is_abstract_type,
    is_object_type,
    parse,
)
from graphql.execution.values import get_variable_values
from graphql.language import DocumentNode, OperationDefinitionNode

from projctld.sandbox import graphql_ruby

Error = dict[str, Any]
TypeOf = Callable[[Any, GraphQLResolveInfo, Any], str]


def bind(schema: GraphQLSchema, resolvers: dict[str, dict[str, Callable[..., Any]]],
         plain: set[str], type_of: TypeOf, source: str) -> None:
    """Give each field of `schema` its resolver, and refuse to start if one was left without:
    the types in `plain`, connections and edges hold plain dicts (graphql-core's default
    resolver reads them)."""
    for name, kind in schema.type_map.items():
        if is_abstract_type(kind):
            kind.resolve_type = type_of  # type: ignore[union-attr]
        if not is_object_type(kind) or name.startswith("__"):
            continue
        fields = resolvers.get(name, {})
        for field_name, definition in kind.fields.items():  # type: ignore[union-attr]
            if field_name in fields:
                definition.resolve = fields[field_name]
            elif name not in plain and not name.endswith(("Connection", "Edge")):
                raise RuntimeError(f"{source}: {name}.{field_name} has no resolver")


@dataclass
class Prepared:
    document: DocumentNode
    operations: dict[str | None, OperationDefinitionNode]


@functools.lru_cache(maxsize=512)
def prepare(schema: GraphQLSchema, query: str) -> Prepared | list[Error]:
    """The parsed and validated query, or graphql-ruby's errors for it. Cached by schema
    (schemas compare by identity, so a query valid on one never passes on another) and query,
    as clients repeat theirs; callers must not change what they get."""
    try:
        document = parse(query)
    except GraphQLSyntaxError as exc:
        return [graphql_ruby.syntax_error(exc, query)]
    errors = graphql_ruby.validation_errors(schema, document)
    if errors:
        return errors
    return Prepared(document, {
        d.name.value if d.name else None: d for d in document.definitions
        if isinstance(d, OperationDefinitionNode)})


def pick(prepared: Prepared, name: str | None) -> OperationDefinitionNode | Error:
    """The operation to run: the one named, or the only one."""
    operations = prepared.operations
    operation = operations.get(name) if name else (
        next(iter(operations.values())) if len(operations) == 1 else None)
    if operation is None:
        return {"message": f'No operation named "{name}"' if name else
                "An operation name is required"}
    return operation


def variables(schema: GraphQLSchema, operation: OperationDefinitionNode,
              values: dict[str, Any]) -> dict[str, Any] | list[Error]:
    """The operation's variables coerced to their types, or graphql-ruby's errors."""
    coerced = get_variable_values(schema, operation.variable_definitions or (), values)
    if isinstance(coerced, list):
        return [graphql_ruby.variable_error(e, values) for e in coerced]
    return getattr(coerced, "coerced", coerced)  # graphql-core 3.3 wraps them; 3.2 does not


def locations(error: GraphQLError) -> list[dict[str, int]]:
    return [{"line": loc.line, "column": loc.column} for loc in error.locations or []]
