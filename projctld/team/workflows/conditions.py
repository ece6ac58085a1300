"""The condition language: tokenized and parsed by hand, checked at load time, never eval'ed.

    condition  := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := operand [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") operand]
    operand    := STRING | INT | "true" | "false" | "null" | NAME ("." NAME)*
                | "[" [condition ("," condition)*] "]" | "(" condition ")"

Names are steps.NAME.(success | failed | skipped | exit_code | output), params.NAME and
git.(branch | commit_sha | short_sha | root). Values are strings, integers, booleans, null and
lists. `==` is strict (1 is not true, "1" is not 1); `<`-style comparisons take two integers or
two strings and are false when either side is null; `in` looks for a substring of a string or
a member of a list; `and`, `or` and `not` take truthiness (null, 0, "" and [] are false).
Comparisons of kinds that can never match (a string with an integer) are refused at load time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from projctld.team.workflows.model import GIT_FIELDS, Value

STEP_FIELDS: dict[str, frozenset[str]] = {
    "success": frozenset({"bool"}),
    "failed": frozenset({"bool"}),
    "skipped": frozenset({"bool"}),
    "exit_code": frozenset({"int", "null"}),
    "output": frozenset({"str"}),
}
GIT_KINDS = frozenset({"str", "null"})
_KIND_NAMES = {"bool": "a boolean", "int": "an integer", "str": "a string", "null": "null",
               "list": "a list"}
_ORDERED = frozenset({"int", "str"})


class ConditionError(Exception):
    """A condition that does not parse or check, or (rarely) cannot be evaluated; `column` is
    1-based within the condition."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


class _Unknown:
    """A value the dry run cannot know before running (a step's output, say)."""

    def __repr__(self) -> str:
        return "unknown"


UNKNOWN = _Unknown()


# --- tokens ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "str", "int", "name", "keyword", "op", "end"
    text: str
    value: object
    column: int


_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INT = re.compile(r"-?[0-9]+")
_OPS = ("==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",", ".")
# Spellings from other languages, with what to write instead.
_MISTAKES = {"&&": "write `and`", "||": "write `or`", "!": "write `not`", "=": "write `==`",
             "&": "write `and`", "|": "write `or`"}
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}
_MAX_DIGITS = 18


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(source):
        char = source[i]
        column = i + 1
        if char.isspace():
            i += 1
        elif char in "\"'":
            value, i = _string(source, i)
            tokens.append(_Token("str", source[column - 1:i], value, column))
        elif (match := _INT.match(source, i)) and (char != "-" or not tokens
                                                   or tokens[-1].kind in ("op", "keyword")):
            text = match.group()
            if len(text.lstrip("-")) > _MAX_DIGITS:
                raise ConditionError(f"the number {text} is too long", column)
            tokens.append(_Token("int", text, int(text), column))
            i = match.end()
        elif match := _NAME.match(source, i):
            text = match.group()
            tokens.append(_Token("keyword" if text in _KEYWORDS else "name", text, text, column))
            i = match.end()
        elif op := next((op for op in _OPS if source.startswith(op, i)), None):
            tokens.append(_Token("op", op, op, column))
            i += len(op)
        else:
            mistake = next((m for m in _MISTAKES if source.startswith(m, i)), None)
            if mistake:
                raise ConditionError(f"unexpected `{mistake}`: {_MISTAKES[mistake]}", column)
            raise ConditionError(f"unexpected character {char!r}", column)
    tokens.append(_Token("end", "", None, len(source) + 1))
    return tokens


def _string(source: str, start: int) -> tuple[str, int]:
    quote = source[start]
    chars: list[str] = []
    i = start + 1
    while i < len(source):
        char = source[i]
        if char == quote:
            return "".join(chars), i + 1
        if char == "\\":
            escaped = source[i + 1:i + 2]
            if escaped not in _ESCAPES:
                raise ConditionError(
                    f"unknown escape `\\{escaped}` in a string (known: \\\\ \\\" \\' \\n \\t)",
                    i + 1)
            chars.append(_ESCAPES[escaped])
            i += 2
        else:
            chars.append(char)
            i += 1
    raise ConditionError(f"the string starting here has no closing {quote}", start + 1)


# --- syntax tree ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Const:
    value: Value
    column: int


@dataclass(frozen=True, slots=True)
class Name:
    parts: tuple[str, ...]
    column: int

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True)
class ListOf:
    items: tuple[Expr, ...]
    column: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    column: int


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple[Expr, ...]
    column: int


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # "==", "!=", "<", "<=", ">", ">=", "in", "not in"
    left: Expr
    right: Expr
    column: int


Expr = Const | Name | ListOf | Not | BoolOp | Compare
_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.pos = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def at(self, kind: str, text: str) -> bool:
        return self.token.kind == kind and self.token.text == text

    def expect(self, kind: str, text: str, what: str) -> _Token:
        if not self.at(kind, text):
            raise self.unexpected(what)
        return self.take()

    def unexpected(self, expected: str) -> ConditionError:
        token = self.token
        if token.kind == "end":
            return ConditionError(f"the condition ends too soon: expected {expected}",
                                  token.column)
        hint = ""
        if token.text == "(" and self.pos and self.tokens[self.pos - 1].kind == "name":
            hint = " (conditions have no function calls)"
        elif token.kind in ("op", "keyword") and token.text in _COMPARISONS | {"in"} \
                and self.pos and self.tokens[self.pos - 1].kind != "op":
            hint = " (comparisons cannot be chained: join them with `and`)"
        return ConditionError(f"unexpected `{token.text}`: expected {expected}{hint}",
                              token.column)

    def parse(self) -> Expr:
        expr = self.or_()
        if self.token.kind != "end":
            raise self.unexpected("`and`, `or` or the end of the condition")
        return expr

    def or_(self) -> Expr:
        return self._chain("or", self.and_)

    def and_(self) -> Expr:
        return self._chain("and", self.not_)

    def _chain(self, op: str, operand: Callable[[], Expr]) -> Expr:
        first = operand()
        operands = [first]
        while self.at("keyword", op):
            self.take()
            operands.append(operand())
        return first if len(operands) == 1 else BoolOp(op, tuple(operands), _column(first))

    def not_(self) -> Expr:
        if self.at("keyword", "not"):
            column = self.take().column
            return Not(self.not_(), column)
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.operand()
        token = self.token
        if (token.kind == "op" and token.text in _COMPARISONS) or self.at("keyword", "in"):
            op = self.take().text
        elif self.at("keyword", "not") and self.tokens[self.pos + 1].text == "in":
            self.pos += 2
            op = "not in"
        else:
            return left
        return Compare(op, left, self.operand(), token.column)

    def operand(self) -> Expr:
        token = self.token
        if token.kind in ("str", "int"):
            self.take()
            return Const(token.value, token.column)  # type: ignore[arg-type]
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            self.take()
            return Const({"true": True, "false": False, "null": None}[token.text], token.column)
        if token.kind == "name":
            return self.name()
        if self.at("op", "("):
            self.take()
            inner = self.or_()
            self.expect("op", ")", "`)`")
            return inner
        if self.at("op", "["):
            return self.list_()
        raise self.unexpected("a value (a string, a number, true, false, null, a name, "
                              "`[` or `(`)")

    def name(self) -> Name:
        first = self.take()
        parts = [first.text]
        while self.at("op", "."):
            self.take()
            if self.token.kind not in ("name", "keyword"):
                raise self.unexpected("a name after `.`")
            parts.append(self.take().text)
        return Name(tuple(parts), first.column)

    def list_(self) -> ListOf:
        column = self.take().column
        items: list[Expr] = []
        while not self.at("op", "]"):
            items.append(self.or_())
            if not self.at("op", ","):
                break
            self.take()
        self.expect("op", "]", "`,` or `]`")
        return ListOf(tuple(items), column)


def _column(expr: Expr) -> int:
    if isinstance(expr, Compare):
        return _column(expr.left)
    return expr.column


@lru_cache(maxsize=512)
def parse(source: str) -> Expr:
    """The syntax tree of a condition; ConditionError if it is not one."""
    return _Parser(source).parse()


# --- checking -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Symbols:
    """What a condition may name: the steps that finish before it is evaluated, every other step
    (with why it cannot be used), and the declared parameters with the kinds of their values."""

    earlier: Sequence[str]
    unavailable: Mapping[str, str]
    params: Mapping[str, frozenset[str]]

    def kinds(self, name: Name) -> frozenset[str]:
        root, *rest = name.parts
        column = name.column
        if root == "steps":
            return self._step(name, rest)
        if root == "params":
            if len(rest) != 1:
                raise ConditionError(f"`{name.dotted}`: write params.NAME", column)
            if rest[0] not in self.params:
                declared = ", ".join(self.params) or "none"
                raise ConditionError(f"no parameter `{rest[0]}` is declared (declared: "
                                     f"{declared})", column)
            return self.params[rest[0]]
        if root == "git":
            if len(rest) != 1 or rest[0] not in GIT_FIELDS:
                raise ConditionError(f"unknown git fact `{name.dotted}` (known: "
                                     + ", ".join(f"git.{f}" for f in GIT_FIELDS) + ")", column)
            return GIT_KINDS
        raise ConditionError(f"unknown name `{name.dotted}`: names start with `steps.`, "
                             "`params.` or `git.`", column)

    def _step(self, name: Name, rest: list[str]) -> frozenset[str]:
        column = name.column
        if not rest:
            raise ConditionError("`steps` needs a step and a field, e.g. steps.tests.success",
                                 column)
        step = rest[0]
        if step in self.unavailable:
            raise ConditionError(f"step `{step}` {self.unavailable[step]}, so its result is "
                                 "not known when this condition is evaluated", column)
        if step not in self.earlier:
            before = ", ".join(self.earlier) or "none"
            raise ConditionError(f"no step named `{step}` (steps before this one: {before})",
                                 column)
        fields = ", ".join(STEP_FIELDS)
        if len(rest) != 2 or rest[1] not in STEP_FIELDS:
            raise ConditionError(f"`{name.dotted}`: write steps.{step}.FIELD, FIELD one of "
                                 f"{fields}", column)
        return STEP_FIELDS[rest[1]]


def check(expr: Expr, symbols: Symbols) -> frozenset[str]:
    """The kinds of value `expr` can have; ConditionError for an unknown name or a comparison
    that can never hold."""
    match expr:
        case Const(value=value):
            return frozenset({_kind(value)})
        case Name():
            return symbols.kinds(expr)
        case ListOf(items=items):
            for item in items:
                check(item, symbols)
            return frozenset({"list"})
        case Not(operand=operand):
            check(operand, symbols)
            return frozenset({"bool"})
        case BoolOp(operands=operands):
            for operand in operands:
                check(operand, symbols)
            return frozenset({"bool"})
        case Compare(op=op, left=left, right=right, column=column):
            left_kinds = check(left, symbols) - {"null"}
            right_kinds = check(right, symbols) - {"null"}
            if not left_kinds or not right_kinds:
                return frozenset({"bool"})
            if op in ("in", "not in"):
                if not right_kinds & {"str", "list"}:
                    raise ConditionError(f"`{op}` needs a string or a list on its right, not "
                                         f"{_kinds(right_kinds)}", column)
                if right_kinds == {"str"} and "str" not in left_kinds:
                    raise ConditionError(f"`{op}` on a string looks for a string, not "
                                         f"{_kinds(left_kinds)}", column)
            elif op in ("==", "!="):
                if not left_kinds & right_kinds:
                    raise ConditionError(f"`{op}` compares {_kinds(left_kinds)} with "
                                         f"{_kinds(right_kinds)}: they are never equal", column)
            elif not left_kinds & right_kinds & _ORDERED:
                raise ConditionError(f"`{op}` compares two integers or two strings, not "
                                     f"{_kinds(left_kinds)} with {_kinds(right_kinds)}", column)
            return frozenset({"bool"})
    raise AssertionError(expr)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    return "list"


def _kinds(kinds: frozenset[str]) -> str:
    return " or ".join(_KIND_NAMES[k] for k in sorted(kinds))


# --- evaluation -----------------------------------------------------------------------------

Resolver = Callable[[tuple[str, ...]], object]


def evaluate(expr: Expr, resolve: Resolver) -> object:
    """The value of `expr` with names looked up by `resolve`; UNKNOWN where the answer depends
    on a name that resolved to UNKNOWN (the dry run's three-valued logic)."""
    match expr:
        case Const(value=value):
            return value
        case Name(parts=parts):
            return resolve(parts)
        case ListOf(items=items):
            values = [evaluate(item, resolve) for item in items]
            return UNKNOWN if any(v is UNKNOWN for v in values) else values
        case Not(operand=operand):
            value = evaluate(operand, resolve)
            return UNKNOWN if value is UNKNOWN else not truthy(value)
        case BoolOp(op=op, operands=operands):
            # `and` is false as soon as one operand is false, even if another is unknown.
            decisive = op == "or"
            unknown = False
            for operand in operands:
                value = evaluate(operand, resolve)
                if value is UNKNOWN:
                    unknown = True
                elif truthy(value) == decisive:
                    return decisive
            return UNKNOWN if unknown else not decisive
        case Compare(op=op, left=left, right=right, column=column):
            a, b = evaluate(left, resolve), evaluate(right, resolve)
            if a is UNKNOWN or b is UNKNOWN:
                return UNKNOWN
            return _compare(op, a, b, column)
    raise AssertionError(expr)


def truthy(value: object) -> bool:
    return value not in (None, False, 0, "") and value != []


def _compare(op: str, a: object, b: object, column: int) -> bool:
    if op == "==":
        return _same(a, b)
    if op == "!=":
        return not _same(a, b)
    if op in ("in", "not in"):
        if b is None:
            found = False
        elif isinstance(b, str) and isinstance(a, str):
            found = a in b
        elif isinstance(b, list):
            found = any(_same(a, item) for item in b)
        else:
            raise ConditionError(f"`{op}` cannot look for {_KIND_NAMES[_kind(a)]} in "
                                 f"{_KIND_NAMES[_kind(b)]}", column)
        return found if op == "in" else not found
    if a is None or b is None:
        return False
    if not (_kind(a) == _kind(b) and _kind(a) in _ORDERED):
        raise ConditionError(f"`{op}` cannot compare {_KIND_NAMES[_kind(a)]} with "
                             f"{_KIND_NAMES[_kind(b)]}", column)
    match op:
        case "<":
            return a < b  # type: ignore[operator]
        case "<=":
            return a <= b  # type: ignore[operator]
        case ">":
            return a > b  # type: ignore[operator]
        case _:
            return a >= b  # type: ignore[operator]


def _same(a: object, b: object) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return _kind(a) == _kind(b) and a == b
