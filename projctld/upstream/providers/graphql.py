"""What the GraphQL providers (GitHub, GitLab) read alike: the reply, its errors, and the
optional fields an older server refuses.

Both GitHub and GitLab run graphql-ruby, which answers a query naming a field the server does
not have with an error before running anything (extensions.code `undefinedField`, "Field 'x'
doesn't exist on type 'Y'"). A provider lists the fields it can do without; when a refusal
names only such fields it asks again without them, and remembers, so that an older server
costs one refused request per daemon, not one per poll.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

_UNDEFINED = re.compile(r"^Field '([^']+)' doesn't exist on type '[^']+'")


class GraphQLError(msgspec.Struct):
    """One entry of `errors`: GitHub adds a top-level `type`; GitLab writes message,
    locations, path and, for a refused query, extensions."""

    message: str = ""
    type: str | None = None
    path: list[str | int] | None = None
    extensions: dict[str, Any] | None = None

    @property
    def alias(self) -> str | None:
        """The first key of `path`: the top-level field (or alias) the error is about."""
        return str(self.path[0]) if self.path else None

    @property
    def code(self) -> str | None:
        code = (self.extensions or {}).get("code")
        return code if isinstance(code, str) else None


class GraphQLReply(msgspec.Struct):
    """`data` (null when the query was refused or a non-null root failed) and `errors`,
    either, both or neither."""

    data: dict[str, msgspec.Raw] | None = None
    errors: list[GraphQLError] = []


def undefined_fields(errors: Iterable[GraphQLError]) -> set[str]:
    """The fields a server said it does not have."""
    found = set()
    for error in errors:
        name = (error.extensions or {}).get("fieldName") if error.code == "undefinedField" \
            else None
        if name is None and (match := _UNDEFINED.match(error.message)):
            name = match[1]
        if isinstance(name, str):
            found.add(name)
    return found


class OptionalFields:
    """The fields a provider's query can do without, and those this server lacks."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)
        self.omit: frozenset[str] = frozenset()

    def learn(self, errors: Iterable[GraphQLError]) -> set[str]:
        """The fields to leave out from now on, when the server refused only optional fields
        not left out yet (ask again); else nothing (the refusal stands)."""
        missing = undefined_fields(errors)
        if not missing or not missing <= self.names - self.omit:
            return set()
        self.omit |= missing
        return missing
