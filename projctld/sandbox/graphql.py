"""A small GraphQL engine: parser, validation, connection cost and execution for the fakes.

It covers the subset the providers speak: `query` operations (anonymous, or named and picked
by operationName) with variables, aliases, arguments, named and inline fragments and
`__typename`. No directives, mutations, block strings or floats. Errors are worded as GitHub's
graphql-ruby words them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

# -- syntax tree


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class EnumValue:
    name: str


@dataclass
class Field:
    name: str
    alias: str | None
    arguments: dict[str, Any]  # literals, Variable, EnumValue, lists and dicts of those
    selections: list[Selection]
    line: int
    column: int

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class InlineFragment:
    on: str | None
    selections: list[Selection]
    line: int
    column: int


@dataclass
class FragmentSpread:
    name: str
    line: int
    column: int


Selection = Field | InlineFragment | FragmentSpread


@dataclass
class Fragment:
    name: str
    on: str
    selections: list[Selection]
    line: int
    column: int


@dataclass
class Operation:
    name: str | None
    variables: dict[str, tuple[str, Any]]  # name -> (type, default or None)
    selections: list[Selection]
    line: int
    column: int

    @property
    def label(self) -> str:
        return f"query {self.name}" if self.name else "query"


@dataclass
class Document:
    operations: list[Operation]
    fragments: dict[str, Fragment]


# -- schema


@dataclass
class FieldDef:
    """A field: its type ("User", "[CheckRun]", "String"), resolver and argument types."""

    type: str
    resolve: Callable[[Any, dict[str, Any], Any], Any]  # (parent, arguments, context)
    args: dict[str, str] = field(default_factory=dict)  # name -> "String!", "[PullRequestState!]"
    connection: bool = False  # paginated with first/last; counts in the cost


@dataclass
class ObjectType:
    name: str
    fields: dict[str, FieldDef]


@dataclass
class AbstractType:
    """A union (no fields of its own) or an interface."""

    name: str
    members: tuple[str, ...]
    resolve_type: Callable[[Any], str]
    fields: dict[str, FieldDef] = field(default_factory=dict)


@dataclass
class Schema:
    """Object, union and interface types; a type named nowhere here is a leaf (scalar or enum).
    `enums` lists the values of the enums that arguments take."""

    types: dict[str, ObjectType | AbstractType]
    enums: dict[str, frozenset[str]]
    query: str = "Query"
    max_page: int = 100

    def applies(self, condition: str, type_name: str) -> bool:
        """Whether a fragment on `condition` selects from an object of `type_name`."""
        kind = self.types.get(condition)
        return condition == type_name or (
            isinstance(kind, AbstractType) and type_name in kind.members
        )


class GraphQLError(Exception):
    """The request cannot be run at all; `errors` is the response's error list."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors


class FieldError(Exception):
    """A resolver's failure: the field becomes null and the error joins the response."""

    def __init__(self, message: str, type: str | None = None) -> None:
        super().__init__(message)
        self.type = type


# -- parsing

_PUNCTUATORS = {
    "{": "LCURLY", "}": "RCURLY", "(": "LPAREN", ")": "RPAREN", "[": "LBRACKET",
    "]": "RBRACKET", ":": "COLON", "$": "VAR_SIGN", "!": "BANG", "=": "EQUALS",
    "...": "ELLIPSIS", "@": "DIR_SIGN", "|": "PIPE", "&": "AMP",
}
_TOKEN = re.compile(r"""
    (?P<skip>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<punct>\.\.\.|[{}()\[\]:$!=@|&])
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<int>-?(?:0|[1-9][0-9]*)(?![.eE_A-Za-z0-9]))
  | (?P<string>"(?:[^"\\\n\r]|\\["\\/bfnrt]|\\u[0-9A-Fa-f]{4})*")
""", re.VERBOSE)
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass
class _Token:
    kind: str  # a punctuator name, IDENTIFIER, INT, STRING or EOF
    text: str
    line: int
    column: int


def _tokens(text: str) -> Iterator[_Token]:
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        column = pos - line_start + 1
        if match is None:
            raise _parse_error(_Token("UNKNOWN_CHAR", text[pos], line, column))
        kind, value = match.lastgroup, match.group()
        if kind == "skip":
            newlines = value.count("\n")
            if newlines:
                line += newlines
                line_start = pos + value.rindex("\n") + 1
        elif kind == "punct":
            yield _Token(_PUNCTUATORS[value], value, line, column)
        else:
            yield _Token({"name": "IDENTIFIER", "int": "INT"}.get(kind or "", "STRING"), value,
                         line, column)
        pos = match.end()
    yield _Token("EOF", "", line, pos - line_start + 1)


def _parse_error(token: _Token) -> GraphQLError:
    where = "end of document" if token.kind == "EOF" else f'"{token.text}" ({token.kind})'
    return GraphQLError([{
        "message": f"Parse error on {where} at [{token.line}, {token.column}]",
        "locations": [{"line": token.line, "column": token.column}],
    }])


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = list(_tokens(text))
        self.pos = 0

    @property
    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self, kind: str, text: str | None = None) -> _Token:
        token = self.peek
        if token.kind != kind or (text is not None and token.text != text):
            raise _parse_error(token)
        self.pos += 1
        return token

    def skip(self, kind: str) -> bool:
        if self.peek.kind == kind:
            self.pos += 1
            return True
        return False

    def document(self) -> Document:
        operations, fragments = [], {}
        while self.peek.kind != "EOF":
            token = self.peek
            if token.kind == "LCURLY":
                operations.append(Operation(None, {}, self.selections(), token.line,
                                            token.column))
            elif token.text == "query":
                operations.append(self.operation())
            elif token.text == "fragment":
                fragment = self.fragment()
                fragments[fragment.name] = fragment
            else:
                raise _parse_error(token)
        if not operations and not fragments:
            raise _parse_error(self.peek)
        return Document(operations, fragments)

    def operation(self) -> Operation:
        start = self.take("IDENTIFIER", "query")
        name = self.take("IDENTIFIER").text if self.peek.kind == "IDENTIFIER" else None
        variables: dict[str, tuple[str, Any]] = {}
        if self.skip("LPAREN"):
            while not self.skip("RPAREN"):
                self.take("VAR_SIGN")
                var = self.take("IDENTIFIER").text
                self.take("COLON")
                kind = self.type_ref()
                variables[var] = (kind, self.value(const=True) if self.skip("EQUALS") else None)
        return Operation(name, variables, self.selections(), start.line, start.column)

    def type_ref(self) -> str:
        if self.skip("LBRACKET"):
            inner = self.type_ref()
            self.take("RBRACKET")
            text = f"[{inner}]"
        else:
            text = self.take("IDENTIFIER").text
        return text + "!" if self.skip("BANG") else text

    def fragment(self) -> Fragment:
        start = self.take("IDENTIFIER", "fragment")
        name = self.take("IDENTIFIER")
        if name.text == "on":
            raise _parse_error(name)
        self.take("IDENTIFIER", "on")
        on = self.take("IDENTIFIER").text
        return Fragment(name.text, on, self.selections(), start.line, start.column)

    def selections(self) -> list[Selection]:
        self.take("LCURLY")
        selections: list[Selection] = []
        while not self.skip("RCURLY"):
            selections.append(self.selection())
        if not selections:
            raise _parse_error(self.tokens[self.pos - 1])
        return selections

    def selection(self) -> Selection:
        token = self.peek
        if self.skip("ELLIPSIS"):
            if self.peek.kind == "LCURLY":
                return InlineFragment(None, self.selections(), token.line, token.column)
            if self.peek.text == "on":
                self.pos += 1
                on = self.take("IDENTIFIER").text
                return InlineFragment(on, self.selections(), token.line, token.column)
            return FragmentSpread(self.take("IDENTIFIER").text, token.line, token.column)
        name = self.take("IDENTIFIER").text
        alias = None
        if self.skip("COLON"):
            alias, name = name, self.take("IDENTIFIER").text
        arguments: dict[str, Any] = {}
        if self.skip("LPAREN"):
            while not self.skip("RPAREN"):
                arg = self.take("IDENTIFIER").text
                self.take("COLON")
                arguments[arg] = self.value(const=False)
        selections = self.selections() if self.peek.kind == "LCURLY" else []
        return Field(name, alias, arguments, selections, token.line, token.column)

    def value(self, *, const: bool) -> Any:
        token = self.peek
        self.pos += 1
        if token.kind == "VAR_SIGN" and not const:
            return Variable(self.take("IDENTIFIER").text)
        if token.kind == "INT":
            return int(token.text)
        if token.kind == "STRING":
            return _unescape(token.text[1:-1])
        if token.kind == "IDENTIFIER":
            return {"true": True, "false": False, "null": None}.get(token.text,
                                                                    EnumValue(token.text))
        if token.kind == "LBRACKET":
            items = []
            while not self.skip("RBRACKET"):
                items.append(self.value(const=const))
            return items
        if token.kind == "LCURLY":
            fields = {}
            while not self.skip("RCURLY"):
                name = self.take("IDENTIFIER").text
                self.take("COLON")
                fields[name] = self.value(const=const)
            return fields
        raise _parse_error(token)


def _unescape(text: str) -> str:
    return re.sub(
        r"\\(u[0-9A-Fa-f]{4}|.)",
        lambda m: chr(int(m[1][1:], 16)) if m[1][0] == "u" else _ESCAPES.get(m[1], m[1]),
        text,
    )


def parse(text: str) -> Document:
    return _Parser(text).document()


# -- validation, cost and execution of one request


class Request:
    """One query, parsed and checked against the schema: ready for cost and execution.

    Raises GraphQLError for anything that stops GitHub before it runs a query: a parse error,
    a validation error, missing variables, or connections without (or beyond) page sizes.
    """

    def __init__(self, schema: Schema, text: str, variables: dict[str, Any] | None = None,
                 operation_name: str | None = None) -> None:
        self.schema = schema
        self.document = parse(text)
        self.operation = self._pick(operation_name)
        self.errors: list[dict[str, Any]] = []
        self._check_fragments()
        if self.errors:  # an undefined or cyclic fragment stops everything below
            raise GraphQLError(self.errors)
        self.variables = self._variables(variables or {})
        self._validate(schema.query, self.operation.selections, [self.operation.label])
        for fragment in self.document.fragments.values():
            self._validate_fragment(fragment)
        if self.errors:
            raise GraphQLError(self.errors)
        self.requests = self._requests(schema.query, self.operation.selections, 1, [])
        if self.errors:
            raise GraphQLError(self.errors)

    def execute(self, context: Any) -> dict[str, Any]:
        """{"data": ...} in the order asked, plus "errors" when a resolver failed."""
        self.errors = []
        data = self._object(self.schema.query, None, self.operation.selections, [], context)
        return {"data": data, "errors": self.errors} if self.errors else {"data": data}

    # -- checks before running

    def _pick(self, name: str | None) -> Operation:
        operations = self.document.operations
        if name is not None:
            for operation in operations:
                if operation.name == name:
                    return operation
            raise GraphQLError([{"message": f'No operation named "{name}"'}])
        if len(operations) != 1:
            raise GraphQLError([{"message": "An operation name is required"}])
        return operations[0]

    def _check_fragments(self) -> None:
        used = {s.name for s in _walk(self.operation.selections, self.document.fragments)
                if isinstance(s, FragmentSpread)}
        for name, fragment in self.document.fragments.items():
            if name not in used:
                self._error(f"Fragment {name} was defined, but not used", fragment,
                            [f"fragment {name}"], "useAndDefineFragment")
        for name in sorted(used - self.document.fragments.keys()):
            self._error(f"Fragment {name} was used, but not defined", self.operation,
                        [self.operation.label], "useAndDefineFragment")
        for name, fragment in self.document.fragments.items():
            if any(isinstance(s, FragmentSpread) and s.name == name
                   for s in _walk(fragment.selections, self.document.fragments)):
                self._error(f"Fragment {name} contains an infinite loop", fragment,
                            [f"fragment {name}"], "infiniteLoop")

    def _variables(self, given: dict[str, Any]) -> dict[str, Any]:
        operation = self.operation
        label = operation.name or "anonymous query"
        used = {value.name for s in _walk(operation.selections, self.document.fragments)
                if isinstance(s, Field) for value in _variables_in(s.arguments)}
        values = {}
        for name, (kind, default) in operation.variables.items():
            if name not in used:
                self._error(f"Variable ${name} is declared by {label} but not used", operation,
                            [operation.label], "variableNotUsed")
            value = given[name] if name in given else self._value(default)
            if value is None and kind.endswith("!"):
                self._error(f"Variable ${name} of type {kind} was provided invalid value",
                            operation, [operation.label], "variableMismatch")
            values[name] = value
        for name in sorted(used - operation.variables.keys()):
            self._error(f"Variable ${name} is used by {label} but not declared", operation,
                        [operation.label], "variableNotDefined")
        return values

    def _validate_fragment(self, fragment: Fragment) -> None:
        path = [f"fragment {fragment.name}"]
        if fragment.on not in self.schema.types:
            self._error(f"No such type {fragment.on}, so it can't be a fragment condition",
                        fragment, path, "undefinedType")
        else:
            self._validate(fragment.on, fragment.selections, path)

    def _validate(self, type_name: str, selections: list[Selection], path: list[str]) -> None:
        kind = self.schema.types[type_name]
        for selection in selections:
            if isinstance(selection, InlineFragment | FragmentSpread):
                self._validate_spread(type_name, selection, path)
                continue
            if selection.name == "__typename":
                continue
            here = [*path, selection.key]
            if isinstance(kind, AbstractType) and not kind.fields:
                self._error(f"Selections can't be made directly on unions (see selections on "
                            f"{type_name})", selection, here, "selectionMismatch")
                continue
            definition = kind.fields.get(selection.name)
            if definition is None:
                self._error(f"Field '{selection.name}' doesn't exist on type '{type_name}'",
                            selection, here, "undefinedField")
                continue
            self._validate_arguments(selection, definition, here)
            target = definition.type.strip("[]!")
            if target in self.schema.types and not selection.selections:
                self._error(f"Field must have selections (field '{selection.name}' returns "
                            f"{target} but has no selections. Did you mean '{selection.name} "
                            "{ ... }'?)", selection, here, "selectionMismatch")
            elif target not in self.schema.types and selection.selections:
                names = ", ".join(s.name for s in selection.selections if isinstance(s, Field))
                self._error(f"Selections can't be made on scalars (field '{selection.name}' "
                            f"returns {target} but has selections [{names}])", selection, here,
                            "selectionMismatch")
            elif selection.selections:
                self._validate(target, selection.selections, here)

    def _validate_spread(self, type_name: str, spread: InlineFragment | FragmentSpread,
                         path: list[str]) -> None:
        if isinstance(spread, FragmentSpread):
            fragment = self.document.fragments.get(spread.name)
            condition = fragment.on if fragment else None
        else:
            condition = spread.on or type_name
        if condition is None or condition not in self.schema.types:
            if condition is not None:
                self._error(f"No such type {condition}, so it can't be a fragment condition",
                            spread, path, "undefinedType")
            return
        possible = _possible(self.schema, type_name) & _possible(self.schema, condition)
        if not possible:
            self._error(f"Fragment on {condition} can't be spread inside {type_name}", spread,
                        path, "cannotSpreadFragment")
        elif isinstance(spread, InlineFragment):
            self._validate(condition, spread.selections, [*path, f"... on {condition}"])

    def _validate_arguments(self, selection: Field, definition: FieldDef,
                            path: list[str]) -> None:
        for name, value in selection.arguments.items():
            kind = definition.args.get(name)
            if kind is None:
                self._error(f"Field '{selection.name}' doesn't accept argument '{name}'",
                            selection, path, "argumentNotAccepted")
            elif not self._fits(value, kind):
                self._error(f"Argument '{name}' on Field '{selection.name}' has an invalid value "
                            f"({_show(value)}). Expected type '{kind}'.", selection, path,
                            "argumentLiteralsIncompatible")
        missing = [name for name, kind in definition.args.items()
                   if kind.endswith("!") and name not in selection.arguments]
        if missing:
            self._error(f"Field '{selection.name}' is missing required arguments: "
                        f"{', '.join(missing)}", selection, path, "missingRequiredArguments")

    def _fits(self, value: Any, kind: str) -> bool:
        if isinstance(value, Variable):
            value = self.variables.get(value.name)
            if kind.strip("[]!") in self.schema.enums:
                value = _enums_from_json(value)
        if value is None:
            return not kind.endswith("!")
        kind = kind.removesuffix("!")
        if kind.startswith("["):
            items = value if isinstance(value, list) else [value]
            return all(self._fits(item, kind[1:-1]) for item in items)
        if kind in self.schema.enums:
            return isinstance(value, EnumValue) and value.name in self.schema.enums[kind]
        if kind == "Int":
            return isinstance(value, int) and not isinstance(value, bool)
        if kind == "Boolean":
            return isinstance(value, bool)
        return isinstance(value, str)

    def _requests(self, type_name: str, selections: list[Selection], factor: int,
                  path: list[str]) -> int:
        """GitHub's count of requests: each connection costs the product of the page sizes of
        the connections around it (the outermost costs 1)."""
        total = 0
        for selection, owner in self._fields(type_name, selections):
            definition = self.schema.types[owner].fields.get(selection.name)
            if definition is None or not selection.selections:
                continue
            here = [*path, selection.key]
            inner = factor
            if definition.connection:
                total += factor
                inner = factor * self._page_size(selection, here)
            total += self._requests(definition.type.strip("[]!"), selection.selections, inner,
                                    here)
        return total

    def _fields(self, type_name: str, selections: list[Selection]) -> Iterator[tuple[Field, str]]:
        """Every field in `selections` with the type it is asked of, fragments flattened."""
        for selection in selections:
            if isinstance(selection, Field):
                yield selection, type_name
            elif isinstance(selection, InlineFragment):
                yield from self._fields(selection.on or type_name, selection.selections)
            else:
                fragment = self.document.fragments[selection.name]
                yield from self._fields(fragment.on, fragment.selections)

    def _page_size(self, selection: Field, path: list[str]) -> int:
        args = self.arguments(selection)
        first, last = args.get("first"), args.get("last")
        name = selection.name
        if first is not None and last is not None:
            self._error(f"Passing both `first` and `last` to paginate the `{name}` connection "
                        "is not supported.", selection, path, type="INVALID_PAGINATION")
            return 0
        size = first if first is not None else last
        if size is None:
            self._error(f"You must provide a `first` or `last` value to properly paginate the "
                        f"`{name}` connection.", selection, path,
                        type="MISSING_PAGINATION_BOUNDARIES")
            return 0
        if size > self.schema.max_page or size < 0:
            which = "first" if first is not None else "last"
            self._error(f"Requesting {size} records on the `{name}` connection exceeds the "
                        f"`{which}` limit of {self.schema.max_page} records.", selection, path,
                        type="EXCESSIVE_PAGINATION")
            return 0
        return size

    # -- running

    def arguments(self, selection: Field) -> dict[str, Any]:
        return {name: self._value(value) for name, value in selection.arguments.items()}

    def _value(self, value: Any) -> Any:
        if isinstance(value, Variable):
            return self.variables.get(value.name)
        if isinstance(value, EnumValue):
            return value.name
        if isinstance(value, list):
            return [self._value(item) for item in value]
        if isinstance(value, dict):
            return {key: self._value(item) for key, item in value.items()}
        return value

    def _object(self, type_name: str, parent: Any, selections: list[Selection],
                path: list[str | int], context: Any) -> dict[str, Any]:
        grouped: dict[str, list[Field]] = {}
        for selection in self._collect(type_name, selections):
            grouped.setdefault(selection.key, []).append(selection)
        kind = self.schema.types[type_name]
        result: dict[str, Any] = {}
        for key, same in grouped.items():
            selection = same[0]
            if selection.name == "__typename":
                result[key] = type_name
                continue
            definition = kind.fields[selection.name]
            here = [*path, key]
            try:
                value = definition.resolve(parent, self.arguments(selection), context)
            except FieldError as exc:
                self.errors.append(_error_dict(str(exc), selection, here, exc.type))
                result[key] = None
                continue
            merged = [s for f in same for s in f.selections]
            result[key] = self._complete(definition.type, value, merged, here, context)
        return result

    def _complete(self, kind: str, value: Any, selections: list[Selection],
                  path: list[str | int], context: Any) -> Any:
        kind = kind.removesuffix("!")
        if value is None:
            return None
        if kind.startswith("["):
            return [self._complete(kind[1:-1], item, selections, [*path, i], context)
                    for i, item in enumerate(value)]
        target = self.schema.types.get(kind)
        if target is None:
            return value
        if isinstance(target, AbstractType):
            kind = target.resolve_type(value)
        return self._object(kind, value, selections, path, context)

    def _collect(self, type_name: str, selections: list[Selection]) -> Iterator[Field]:
        for selection in selections:
            if isinstance(selection, Field):
                yield selection
            elif isinstance(selection, InlineFragment):
                if selection.on is None or self.schema.applies(selection.on, type_name):
                    yield from self._collect(type_name, selection.selections)
            else:
                fragment = self.document.fragments[selection.name]
                if self.schema.applies(fragment.on, type_name):
                    yield from self._collect(type_name, fragment.selections)

    def _error(self, message: str, node: Any, path: list[str], code: str | None = None, *,
               type: str | None = None) -> None:
        error = _error_dict(message, node, path, type)
        if code is not None:
            error["extensions"] = {"code": code}
        self.errors.append(error)


def _error_dict(message: str, node: Any, path: list[str | int] | list[str],
                type: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type} if type else {}
    error.update({"path": path, "locations": [{"line": node.line, "column": node.column}],
                  "message": message})
    return error


def _possible(schema: Schema, type_name: str) -> set[str]:
    kind = schema.types[type_name]
    return set(kind.members) if isinstance(kind, AbstractType) else {type_name}


def _walk(selections: list[Selection], fragments: dict[str, Fragment],
          seen: set[str] | None = None) -> Iterator[Selection]:
    """Every selection reachable from `selections`, into named fragments once each."""
    seen = set() if seen is None else seen
    for selection in selections:
        yield selection
        if isinstance(selection, Field | InlineFragment):
            yield from _walk(selection.selections, fragments, seen)
        elif selection.name in fragments and selection.name not in seen:
            seen.add(selection.name)
            yield from _walk(fragments[selection.name].selections, fragments, seen)


def _variables_in(value: Any) -> Iterator[Variable]:
    if isinstance(value, Variable):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _variables_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _variables_in(item)


def _enums_from_json(value: Any) -> Any:
    """A variable's value as a literal: JSON has no enums, so they arrive as strings."""
    if isinstance(value, str):
        return EnumValue(value)
    if isinstance(value, list):
        return [_enums_from_json(item) for item in value]
    return value


def _show(value: Any) -> str:
    """A value as it was written in the query."""
    if isinstance(value, Variable):
        return f"${value.name}"
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, list):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_show(item)}" for key, item in value.items()) + "}"
    return json.dumps(value)
