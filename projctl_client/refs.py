"""What `projctl open REF` names in a status view: the current branch's change request, or
`#42`, `!17`, `42`, `WEB-12`, `acme/web#42`, `web#42`; ambiguous or unknown is an error that
lists the candidates.

Shells take `#42` for a comment and `!17` for their history, so the commands suggested here
quote them (`projctl open '!17'`), and a bare number is accepted.
"""

from __future__ import annotations

from typing import NamedTuple

from projctl_client.connection import ClientError

# Candidates named in an error, at most.
CANDIDATES = 8


class Target(NamedTuple):
    """What to open: its ref (`acme/web#42`, `WEB-12`), title and address."""

    ref: str
    title: str
    url: str


def resolve(view: dict, ref: str | None) -> Target:
    """The change request or ticket `ref` names (None: the current branch's change request),
    among the current project's first, then among every project's."""
    if ref is None:
        return _branch(view)
    wanted = ref.strip()
    if not wanted:
        raise ClientError("an empty REF names nothing", ["projctl open  # this branch's"])
    here = (view.get("checkout") or {}).get("project")
    projects = view.get("projects") or []
    current = [p for p in projects if p["name"] == here]
    kind = "ticket" if _is_ticket(wanted) else "change request"
    for scope in (current, projects):
        found = _matches(scope, wanted)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ClientError(f"{wanted} could be any of {len(found)} {kind}s; say which",
                              [f"projctl open {typed(t.ref)}  # {t.title}"
                               for t in found[:CANDIDATES]])
    raise ClientError(f"no {kind} {wanted} among what projctld knows"
                      + (" (yours, those asking your review, assigned to you or reviewed by "
                         "you)" if kind == "change request" else " (those your JQL finds)"),
                      _others(current + [p for p in projects if p not in current], kind))


def typed(ref: str) -> str:
    """`ref` as it is typed in a shell: quoted when it holds `#` or `!`."""
    return f"'{ref}'" if "#" in ref or "!" in ref else ref


def _is_ticket(ref: str) -> bool:
    key, dash, number = ref.rpartition("-")
    return bool(dash and key and "/" not in key and "#" not in key and "!" not in key
                and number.isdigit())


def _matches(projects: list[dict], wanted: str) -> list[Target]:
    """The change requests and tickets of `projects` that `wanted` names."""
    found = []
    for project in projects:
        for change in project.get("change_requests") or []:
            if _names(change["ref"], wanted):
                found.append(Target(change["ref"], change["title"], change["url"]))
        for ticket in project.get("tickets") or []:
            if ticket["key"].upper() == wanted.upper():
                found.append(Target(ticket["key"], ticket["summary"], ticket["url"]))
    return list(dict.fromkeys(found))  # a change request in two projects is one


def _names(ref: str, wanted: str) -> bool:
    """Whether `wanted` names change request `ref` (`acme/web#42`): whole, by its repository's
    last part (`web#42`), by number with its mark (`#42`), or by the bare number."""
    if ref == wanted or ref.endswith("/" + wanted):
        return True
    if wanted[:1] in ("#", "!"):
        return ref.endswith(wanted)  # `#42` is not the end of `#142`: the mark is in it
    if wanted.isdigit():
        return any(ref.endswith(mark + wanted) for mark in ("#", "!"))
    return False


def _others(projects: list[dict], kind: str) -> list[str]:
    """Some refs that do exist, of the kind that was asked for, as what to type."""
    if kind == "ticket":
        known = [(t["key"], t["summary"]) for p in projects for t in p.get("tickets") or []]
    else:
        known = [(c["ref"], c["title"]) for p in projects for c in p.get("change_requests") or []]
    suggestions = [f"projctl open {typed(ref)}  # {title}" for ref, title in known[:CANDIDATES]]
    if len(known) > CANDIDATES:
        suggestions.append("projctl status  # lists them all")
    return suggestions or ["projctl refresh  # fetch them now"]


def _branch(view: dict) -> Target:
    """The current branch's change request, or why there is none to open."""
    here = view.get("checkout")
    if here is None:
        raise ClientError("not in a git checkout: say which change request or ticket to open",
                          ["projctl open 'acme/web#42'", "projctl open WEB-12"])
    if here.get("project") is None:
        raise ClientError(f"{here['root']} is in no configured project: say which change "
                          "request or ticket to open", ["projctl open 'acme/web#42'"])
    branch = view.get("branch")
    if here.get("branch") is None:
        raise ClientError("HEAD is detached: no branch, so no change request of its own",
                          ["projctl open 'acme/web#42'"])
    if branch is None:
        raise ClientError(f"project {here['project']} polls no github or gitlab: there is no "
                          "change request to open", ["projctl open WEB-12"])
    change = branch.get("change_request")
    if change:
        return Target(change["ref"], change["title"], change["url"])
    known = branch.get("known", "complete")
    name = branch["branch"]
    if known == "unknown":
        raise ClientError(f"the change request of {name} is not known yet: nothing was "
                          "fetched so far", ["projctl refresh"])
    if known == "partial":
        raise ClientError(f"no open change request for {name} in what could be read (part "
                          "of the upstream could not be: projctl status says which)",
                          ["projctl status"])
    raise ClientError(f"no open change request for {name}",
                      ["projctl open 42  # another one, by its number"])
