"""A small JQL evaluator for the fake Jira: the clauses providers send, and Jira's error words.

Clauses `field op value` joined by AND, OR, NOT and parentheses, then `ORDER BY`. Fields:
project, assignee, status, statusCategory, priority, issuetype (type), key, updated. Operators
=, !=, in, not in, is (not) EMPTY, and >, >=, <, <= on updated. Functions currentUser(), now(),
startOfDay(). Values for updated: relative ("-7d", "2w", "-4h", "30m") or dates ("2026-11-20",
"2026-11-20 10:00", in UTC).
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from projctld.sandbox.dataset import Ticket

CATEGORIES = {"to do": "new", "in progress": "indeterminate", "done": "done",
              "new": "new", "indeterminate": "indeterminate", "2": "new", "4": "indeterminate",
              "3": "done"}
PRIORITY_ORDER = ["Highest", "High", "Medium", "Low", "Lowest"]
EQUALITY = {"=", "!=", "in", "not in", "is", "is not"}
ORDERED = EQUALITY | {">", ">=", "<", "<="}
FIELDS: dict[str, tuple[Callable[[Ticket], Any], set[str]]] = {
    "project": (lambda t: t.project_key, EQUALITY),
    "assignee": (lambda t: t.assignee_account_id, EQUALITY),
    "status": (lambda t: t.status, EQUALITY),
    "statuscategory": (lambda t: t.category, EQUALITY),
    "priority": (lambda t: t.priority, EQUALITY),
    "issuetype": (lambda t: t.issue_type, EQUALITY),
    "type": (lambda t: t.issue_type, EQUALITY),
    "key": (lambda t: t.key, EQUALITY),
    "updated": (lambda t: t.updated_at, ORDERED),
}
UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
KEYWORDS = {"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc", "desc"}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>!=|!~|>=|<=|[=~<>(),])
  | (?P<word>[^\s"'=!~<>(),]+)
""", re.VERBOSE)


class JqlError(Exception):
    """The query is refused; the message is Jira's, for its errorMessages."""


@dataclass
class _Token:
    kind: str  # string, op, word or end
    text: str  # without quotes for a string
    at: int  # 1-based character, as Jira reports it


@dataclass
class _Value:
    kind: str  # string, word or function
    text: str


@dataclass
class Context:
    """What the words of a query mean for this caller at this moment."""

    me: str  # the caller's account id, for currentUser()
    projects: list[str]
    statuses: set[str]
    now: float


@dataclass
class Query:
    where: Callable[[Ticket], bool] | None  # None: unbounded
    order: list[tuple[Callable[[Ticket], Any], bool]]  # (key, descending)

    def select(self, tickets: list[Ticket]) -> list[Ticket]:
        chosen = [t for t in tickets if self.where is None or self.where(t)]
        # Sort by the last key first: Python's sort is stable, so the first key wins.
        for key, descending in reversed(self.order):
            chosen.sort(key=lambda t, key=key: _sortable(key(t)), reverse=descending)
        return chosen


def parse(text: str, context: Context) -> Query:
    return _Parser(text, context).query()


class _Parser:
    def __init__(self, text: str, context: Context) -> None:
        self.context = context
        self.tokens = list(_tokens(text))
        self.pos = 0

    @property
    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def keyword(self, *words: str) -> bool:
        """Take the next tokens if they are these keywords."""
        ahead = self.tokens[self.pos: self.pos + len(words)]
        if len(ahead) == len(words) and all(
            t.kind == "word" and t.text.lower() == w for t, w in zip(ahead, words, strict=True)
        ):
            self.pos += len(words)
            return True
        return False

    def expect(self, text: str) -> None:
        if self.peek.kind != "op" or self.peek.text != text:
            raise self.error(f"Expecting '{text}'")
        self.pos += 1

    def error(self, expecting: str) -> JqlError:
        token = self.peek
        if token.kind == "end":
            return JqlError(f"Error in the JQL Query: {expecting} before the end of the query.")
        return JqlError(f"Error in the JQL Query: {expecting} but got '{token.text}'. "
                        f"(line 1, character {token.at})")

    def query(self) -> Query:
        where = None
        if self.peek.kind != "end" and self.peek.text.lower() != "order":
            where = self.disjunction()
        order = self.order() if self.keyword("order", "by") else []
        if self.peek.kind != "end":
            raise self.error("Expecting either 'OR' or 'AND'")
        return Query(where, order or [(FIELDS["updated"][0], True)])

    def order(self) -> list[tuple[Callable[[Ticket], Any], bool]]:
        order = []
        while True:
            token = self.peek
            if token.kind not in ("word", "string"):
                raise self.error("Expecting a field name")
            self.pos += 1
            get = self.field(token)[0]
            if self.keyword("desc"):
                descending = True
            elif self.keyword("asc"):
                descending = False
            else:
                descending = token.text.lower() == "updated"  # dates list newest first
            order.append((get, descending))
            if not (self.peek.kind == "op" and self.peek.text == ","):
                return order
            self.pos += 1

    def disjunction(self) -> Callable[[Ticket], bool]:
        parts = [self.conjunction()]
        while self.keyword("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda t: any(p(t) for p in parts))

    def conjunction(self) -> Callable[[Ticket], bool]:
        parts = [self.unary()]
        while self.keyword("and"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda t: all(p(t) for p in parts))

    def unary(self) -> Callable[[Ticket], bool]:
        if self.keyword("not"):
            inner = self.unary()
            return lambda t: not inner(t)
        if self.peek.kind == "op" and self.peek.text == "(":
            self.pos += 1
            inner = self.disjunction()
            self.expect(")")
            return inner
        return self.clause()

    def clause(self) -> Callable[[Ticket], bool]:
        token = self.peek
        if token.kind not in ("word", "string") or token.text.lower() in KEYWORDS:
            raise self.error("Expecting a field name")
        self.pos += 1
        name = token.text.lower()
        get, operators = self.field(token)
        operator = self.operator()
        if operator not in operators:
            raise JqlError(f"The operator '{operator}' is not supported by the '{token.text}' "
                           "field.")
        if operator in ("is", "is not"):
            if not (self.keyword("empty") or self.keyword("null")):
                raise self.error("Expecting 'EMPTY'")
            return (lambda t: get(t) is None) if operator == "is" else (
                lambda t: get(t) is not None)
        if operator in ("in", "not in"):
            self.expect("(")
            values = [self.value()]
            while self.peek.kind == "op" and self.peek.text == ",":
                self.pos += 1
                values.append(self.value())
            self.expect(")")
        else:
            values = [self.value()]
        if name == "updated":
            return _compare_time(get, operator, self.instant(values[0]))
        wanted = {self.normalise(name, token.text, value) for value in values}
        if operator in ("=", "in"):
            return lambda t: _lower(get(t)) in wanted
        return lambda t: get(t) is not None and _lower(get(t)) not in wanted

    def field(self, token: _Token) -> tuple[Callable[[Ticket], Any], set[str]]:
        found = FIELDS.get(token.text.lower())
        if found is None:
            raise JqlError(f"Field '{token.text}' does not exist or you do not have permission "
                           "to view it.")
        return found

    def operator(self) -> str:
        token = self.peek
        if token.kind == "op" and token.text in ("=", "!=", ">", ">=", "<", "<=", "~", "!~"):
            self.pos += 1
            return token.text
        for words in (("not", "in"), ("is", "not"), ("in",), ("is",)):
            if self.keyword(*words):
                return " ".join(words)
        raise self.error("Expecting operator")

    def value(self) -> _Value:
        token = self.peek
        if token.kind == "string":
            self.pos += 1
            return _Value("string", token.text)
        if token.kind != "word" or token.text.lower() in KEYWORDS:
            raise self.error("Expecting either a value, list or function")
        self.pos += 1
        if self.peek.kind == "op" and self.peek.text == "(":
            self.pos += 1
            self.expect(")")
            return _Value("function", token.text)
        return _Value("word", token.text)

    def normalise(self, name: str, field: str, value: _Value) -> str | None:
        """The value as the field holds it (lower-cased); unknown values are Jira's 400."""
        if value.kind == "function":
            if value.text.lower() == "currentuser" and name == "assignee":
                return self.context.me.lower()
            raise JqlError(f"Unable to find JQL function '{value.text}()'.")
        text = value.text.lower()
        known: set[str] | None = None
        if name == "project":
            known = {p.lower() for p in self.context.projects}
        elif name == "status":
            known = {s.lower() for s in self.context.statuses}
        elif name == "statuscategory":
            known, text = set(CATEGORIES.values()), CATEGORIES.get(text, text)
        if known is not None and text not in known:
            raise JqlError(f"The value '{value.text}' does not exist for the field '{field}'.")
        return text

    def instant(self, value: _Value) -> float:
        if value.kind == "function":
            now = self.context.now
            if value.text.lower() == "now":
                return now
            if value.text.lower() == "startofday":
                return now - now % 86400
            raise JqlError(f"Unable to find JQL function '{value.text}()'.")
        relative = re.fullmatch(r"([-+]?)(\d+)([mhdw])", value.text)
        if relative:
            sign = -1 if relative[1] == "-" else 1
            return self.context.now + sign * int(relative[2]) * UNITS[relative[3]]
        for pattern in ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d"):
            try:
                return calendar.timegm(time.strptime(value.text, pattern))
            except ValueError:
                continue
        raise JqlError(f"Date value '{value.text}' for field 'updated' is invalid. Valid formats "
                       "include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', "
                       "'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'.")


def _tokens(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise JqlError(f"Error in the JQL Query: The quoted string starting at character "
                           f"{pos + 1} is not terminated.")
        if match.lastgroup == "string":
            body = match.group()[1:-1]
            tokens.append(_Token("string", re.sub(r"\\(.)", r"\1", body), pos + 1))
        elif match.lastgroup != "space":
            tokens.append(_Token(match.lastgroup or "", match.group(), pos + 1))
        pos = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _compare_time(get: Callable[[Ticket], Any], operator: str,
                  instant: float) -> Callable[[Ticket], bool]:
    compare: dict[str, Callable[[float], bool]] = {
        "=": lambda v: v == instant, "!=": lambda v: v != instant,
        ">": lambda v: v > instant, ">=": lambda v: v >= instant,
        "<": lambda v: v < instant, "<=": lambda v: v <= instant,
    }
    if operator not in compare:
        raise JqlError(f"The operator '{operator}' is not supported by the 'updated' field.")
    check = compare[operator]
    return lambda t: check(get(t))


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _sortable(value: Any) -> tuple[int, Any]:
    """Sort keys that never compare None with a value; priorities in their own order."""
    if value is None:
        return (0, "")
    if value in PRIORITY_ORDER:
        return (1, -PRIORITY_ORDER.index(value))
    if isinstance(value, str) and re.fullmatch(r"[A-Z][A-Z0-9]*-\d+", value):
        project, number = value.rsplit("-", 1)
        return (1, (project, int(number)))
    return (1, value)
