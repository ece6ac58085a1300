"""graphql-ruby's words for a GraphQL request it refuses before running it (GitHub and GitLab).

graphql-core finds the faults (syntax, validation, variables); GitHub and GitLab both run
graphql-ruby, whose messages, paths and `extensions` differ, and clients show or match them.
These functions put graphql-core's findings in graphql-ruby's words, as GitHub answers them,
e.g. for an unknown field (captured from GitHub, gh api graphql):

    {"path": ["query", "repository", "issue", "noSuchField"],
     "extensions": {"code": "undefinedField", "typeName": "Issue", "fieldName": "noSuchField"},
     "locations": [{"line": 1, "column": 114}],
     "message": "Field 'noSuchField' doesn't exist on type 'Issue'"}

GitLab answers the same words for the same fault (gitlab-org/gitlab#419977: "Field 'approved'
doesn't exist on type 'MergeRequest'" from a Community Edition instance). A fault without a
known wording keeps graphql-core's message, so nothing is ever hidden.
"""

from __future__ import annotations

import json
import re
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    Undefined,
    get_named_type,
    is_enum_type,
    is_non_null_type,
    is_union_type,
    print_ast,
    specified_rules,
    validate,
)
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    Lexer,
    ListValueNode,
    NamedTypeNode,
    NameNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Source,
    TokenKind,
    ValueNode,
    VariableDefinitionNode,
    Visitor,
    visit,
)
from graphql.utilities import TypeInfo
from graphql.utilities.type_info import TypeInfoVisitor
from graphql.validation import (
    FieldsOnCorrectTypeRule,
    KnownArgumentNamesRule,
    KnownFragmentNamesRule,
    KnownTypeNamesRule,
    NoUndefinedVariablesRule,
    NoUnusedFragmentsRule,
    NoUnusedVariablesRule,
    PossibleFragmentSpreadsRule,
    ProvidedRequiredArgumentsRule,
    ScalarLeafsRule,
    ValuesOfCorrectTypeRule,
)

Error = dict[str, Any]

# graphql-ruby's names of the tokens graphql-core reports a syntax error at.
_TOKENS = {
    TokenKind.BANG: "BANG", TokenKind.DOLLAR: "VAR_SIGN", TokenKind.AMP: "AMP",
    TokenKind.PAREN_L: "LPAREN", TokenKind.PAREN_R: "RPAREN", TokenKind.SPREAD: "ELLIPSIS",
    TokenKind.COLON: "COLON", TokenKind.EQUALS: "EQUALS", TokenKind.AT: "DIR_SIGN",
    TokenKind.BRACKET_L: "LBRACKET", TokenKind.BRACKET_R: "RBRACKET",
    TokenKind.BRACE_L: "LCURLY", TokenKind.BRACE_R: "RCURLY", TokenKind.PIPE: "PIPE",
    TokenKind.NAME: "IDENTIFIER", TokenKind.INT: "INT", TokenKind.FLOAT: "FLOAT",
    TokenKind.STRING: "STRING", TokenKind.BLOCK_STRING: "STRING",
}
_KEYWORDS = {"query", "mutation", "subscription", "fragment", "on", "true", "false", "null"}


def syntax_error(error: GraphQLSyntaxError, query: str) -> Error:
    """`Parse error on "}" (RCURLY) at [1, 22]`, as graphql-ruby says it."""
    line, column = (error.locations or [None])[0] or (1, 1)
    position = (error.positions or [0])[0]
    token = _token_at(query, position)
    if token is None or token.kind == TokenKind.EOF:
        where = "end of document"
    else:
        text = token.value if token.value is not None else token.kind.value
        kind = text.upper() if token.kind == TokenKind.NAME and text in _KEYWORDS \
            else _TOKENS.get(token.kind, token.kind.name)
        where = f'"{text}" ({kind})'
    return {"message": f"Parse error on {where} at [{line}, {column}]",
            "locations": [{"line": line, "column": column}]}


def _token_at(query: str, position: int) -> Any:
    lexer = Lexer(Source(query))
    try:
        token = lexer.advance()
        while token.kind != TokenKind.EOF and token.end <= position:
            token = lexer.advance()
    except GraphQLError:
        return None
    return token


def validation_errors(schema: GraphQLSchema, document: DocumentNode) -> list[Error]:
    """The document's validation faults in graphql-ruby's words; [] when it is valid."""
    if not validate(schema, document):
        return []
    where = _Where(schema, document)
    errors: list[Error] = []
    seen: set[str] = set()
    for rule in specified_rules:
        for error in validate(schema, document, [rule]):
            worded = where.translate(rule, error)
            key = json.dumps(worded, sort_keys=True)
            if key not in seen:  # graphql-ruby reports a union or an argument once
                seen.add(key)
                errors.append(worded)
    return errors


def variable_error(error: GraphQLError, variables: dict[str, Any]) -> Error:
    """`Variable $n of type Int! was provided invalid value`, with graphql-ruby's problems."""
    definition = next((n for n in error.nodes or [] if isinstance(n, VariableDefinitionNode)),
                      None)
    if definition is None:
        return {"message": error.message}
    name = definition.variable.name.value
    kind = print_ast(definition.type)
    value = variables.get(name)
    explanation = ("Expected value to not be null" if value is None else
                   f"Could not coerce value {json.dumps(value)} to "
                   f"{print_ast(definition.type).strip('[]!')}")
    return {"extensions": {"value": value, "problems": [{"path": [],
                                                         "explanation": explanation}]},
            "locations": _locations(error),
            "message": f"Variable ${name} of type {kind} was provided invalid value"}


class _Where:
    """Where each node of a document sits: its graphql-ruby path and the types around it."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.path: dict[int, list[str]] = {}
        self.field_of: dict[int, FieldNode] = {}  # argument or value node -> its field
        self.argument_of: dict[int, Any] = {}  # value node -> its argument
        self.label: dict[int, str] = {}  # operation -> "query Name" / "anonymous query"
        self.variable_of: dict[int, str] = {}  # the named type of a variable -> the variable
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                kind = definition.operation.value
                name = definition.name.value if definition.name else None
                label = f"{kind} {name}" if name else kind
                self.label[id(definition)] = f"{kind} {name}" if name else f"anonymous {kind}"
            elif isinstance(definition, FragmentDefinitionNode):
                label = f"fragment {definition.name.value}"
            else:
                continue
            self.path[id(definition)] = [label]
            for variable in getattr(definition, "variable_definitions", None) or []:
                self.path[id(variable)] = [label]
                named = variable.type
                while not isinstance(named, NamedTypeNode):
                    named = named.type
                self.variable_of[id(named)] = variable.variable.name.value
            self._walk(definition.selection_set, [label])
        self.types = _Types(schema)
        visit(document, TypeInfoVisitor(self.types.info, self.types))

    def _walk(self, selections: SelectionSetNode, path: list[str]) -> None:
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                here = [*path, (selection.alias or selection.name).value]
                self.path[id(selection)] = here
                for argument in selection.arguments or ():
                    self.path[id(argument)] = [*here, argument.name.value]
                    self.field_of[id(argument)] = selection
                    for value in _values(argument.value):
                        self.field_of[id(value)] = selection
                        self.argument_of[id(value)] = argument
                if selection.selection_set:
                    self._walk(selection.selection_set, here)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                here = [*path, f"... on {condition.name.value}" if condition else "..."]
                self.path[id(selection)] = here
                self._walk(selection.selection_set, here)
            elif isinstance(selection, FragmentSpreadNode):
                self.path[id(selection)] = [*path, f"... {selection.name.value}"]
                self.path[id(selection.name)] = self.path[id(selection)]

    def translate(self, rule: type, error: GraphQLError) -> Error:
        node = (error.nodes or [None])[0]
        path = self.path.get(id(node)) if node is not None else None
        worded = self._words(rule, error, node)
        if worded is None:
            message, extensions = error.message, None
        else:
            message, extensions, path = worded[0], worded[1], worded[2] or path
        out: Error = {}
        if path is not None:
            out["path"] = path
        if extensions is not None:
            out["extensions"] = extensions
        out["locations"] = _locations(error)
        out["message"] = message
        return out

    def _words(self, rule: type, error: GraphQLError,
               node: Any) -> tuple[str, dict | None, list[str] | None] | None:
        if rule is FieldsOnCorrectTypeRule and isinstance(node, FieldNode):
            name = node.name.value
            parent = self.types.parent.get(id(node))
            if parent is None:
                return None
            if is_union_type(parent):
                return (f"Selections can't be made directly on unions (see selections on "
                        f"{parent.name})", {"code": "selectionMismatch", "nodeName": parent.name},
                        self.path.get(id(node), [])[:-1] or None)
            return (f"Field '{name}' doesn't exist on type '{parent.name}'",
                    {"code": "undefinedField", "typeName": parent.name, "fieldName": name}, None)
        if rule is ScalarLeafsRule and isinstance(node, FieldNode):
            name = node.name.value
            returns = self.types.returns.get(id(node))
            if returns is None:
                return None
            extensions = {"code": "selectionMismatch", "nodeName": f"field '{name}'",
                          "typeName": returns.name}
            if node.selection_set is None:
                return (f"Field must have selections (field '{name}' returns {returns.name} but "
                        f"has no selections. Did you mean '{name} {{ ... }}'?)", extensions, None)
            kind = "enums" if is_enum_type(returns) else "scalars"
            chosen = ", ".join(s.name.value for s in node.selection_set.selections
                               if isinstance(s, FieldNode))
            return (f"Selections can't be made on {kind} (field '{name}' returns "
                    f"{returns.name} but has selections [{chosen}])", extensions, None)
        if rule is KnownFragmentNamesRule and isinstance(node, FragmentSpreadNode | NameNode):
            name = node.value if isinstance(node, NameNode) else node.name.value
            return (f"Fragment {name} was used, but not defined",
                    {"code": "useAndDefineFragment", "fragmentName": name}, None)
        if rule is NoUnusedFragmentsRule and isinstance(node, FragmentDefinitionNode):
            name = node.name.value
            return (f"Fragment {name} was defined, but not used",
                    {"code": "useAndDefineFragment", "fragmentName": name}, None)
        if rule is PossibleFragmentSpreadsRule:
            types = re.findall(r"type '([^']+)'", error.message)
            if len(types) != 2:
                return None
            parent, fragment = types
            name = node.name.value if isinstance(node, FragmentSpreadNode) else None
            return (f"Fragment {name + ' ' if name else ''}on {fragment} can't be spread inside "
                    f"{parent}", {"code": "cannotSpreadFragment", "typeName": fragment,
                                  "fragmentName": name or "unknown", "parentName": parent}, None)
        if rule is ProvidedRequiredArgumentsRule and isinstance(node, FieldNode):
            missing = [a for a in self.types.required.get(id(node), [])
                       if a not in {arg.name.value for arg in node.arguments or ()}]
            field = node.name.value
            return (f"Field '{field}' is missing required arguments: {', '.join(missing)}",
                    {"code": "missingRequiredArguments", "className": "Field", "name": field,
                     "arguments": ", ".join(missing)}, None)
        if rule is ValuesOfCorrectTypeRule and id(node) in self.argument_of:
            argument = self.argument_of[id(node)]
            field = self.field_of[id(node)].name.value
            expected = self.types.argument.get(id(argument))
            return (f"Argument '{argument.name.value}' on Field '{field}' has an invalid value "
                    f"({print_ast(argument.value)}). Expected type '{expected}'.",
                    {"code": "argumentLiteralsIncompatible", "typeName": "Field",
                     "argumentName": argument.name.value}, self.path.get(id(argument)))
        if rule is KnownArgumentNamesRule and id(node) in self.field_of:
            field, name = self.field_of[id(node)].name.value, node.name.value
            return (f"Field '{field}' doesn't accept argument '{name}'",
                    {"code": "argumentNotAccepted", "name": field, "typeName": "Field",
                     "argumentName": name}, None)
        if rule is KnownTypeNamesRule and isinstance(node, NamedTypeNode):
            name = node.name.value
            if id(node) in self.variable_of:
                variable = self.variable_of[id(node)]
                return (f"{name} isn't a defined input type (on ${variable})",
                        {"code": "variableRequiresValidType", "typeName": name,
                         "variableName": variable}, None)
            return (f"No such type {name}, so it can't be a fragment condition",
                    {"code": "undefinedType", "typeName": name}, None)
        if rule is NoUndefinedVariablesRule and len(error.nodes or []) == 2:
            name = node.name.value
            return (f"Variable ${name} is used by {self.label.get(id(error.nodes[1]), 'query')} "
                    f"but not declared", {"code": "variableNotDefined", "variableName": name},
                    None)
        if rule is NoUnusedVariablesRule and isinstance(node, VariableDefinitionNode):
            name = node.variable.name.value
            operation = next((label for key, label in self.label.items()
                              if self.path.get(key) == self.path.get(id(node))), "query")
            return (f"Variable ${name} is declared by {operation} but not used",
                    {"code": "variableNotUsed", "variableName": name}, None)
        return None


class _Types(Visitor):
    """The types graphql-core's TypeInfo sees at each field and argument of a document."""

    def __init__(self, schema: GraphQLSchema) -> None:
        super().__init__()
        self.info = TypeInfo(schema)
        self.parent: dict[int, Any] = {}  # field -> the type it is selected on
        self.returns: dict[int, Any] = {}  # field -> its named return type
        self.required: dict[int, list[str]] = {}  # field -> its required arguments
        self.argument: dict[int, str] = {}  # argument -> its type, as GraphQL prints it

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        self.parent[id(node)] = self.info.get_parent_type()
        kind = self.info.get_type()
        self.returns[id(node)] = get_named_type(kind) if kind else None
        definition = self.info.get_field_def()
        if definition is not None:
            self.required[id(node)] = [
                name for name, arg in definition.args.items()
                if is_non_null_type(arg.type) and arg.default_value is Undefined
            ]

    def enter_argument(self, node: Any, *_: Any) -> None:
        kind = self.info.get_input_type()
        self.argument[id(node)] = str(kind) if kind else "?"


def _values(value: ValueNode) -> list[ValueNode]:
    """A value node and every value inside it (list items, object fields)."""
    found = [value]
    if isinstance(value, ListValueNode):
        for item in value.values:
            found += _values(item)
    elif isinstance(value, ObjectValueNode):
        for item in value.fields:
            found += _values(item.value)
    return found


def _locations(error: GraphQLError) -> list[dict[str, int]]:
    return [{"line": loc.line, "column": loc.column} for loc in (error.locations or [])[:1]]
