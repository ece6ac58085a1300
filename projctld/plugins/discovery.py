"""Where plugins come from: the `projctl.plugins` entry points of installed packages, and the
module paths listed in `[plugins] modules`."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass

ENTRY_POINT_GROUP = "projctl.plugins"


@dataclass(frozen=True)
class Candidate:
    """A plugin found but not imported yet; `load` imports it (on a plugin thread)."""

    name: str
    source: str  # "entry point" or "module"
    target: str  # what is imported: "package.module" or "package.module:object"
    version: str
    load: Callable[[], object]


def candidates(modules: list[str]) -> list[Candidate]:
    """Installed entry points first, in the order importlib.metadata lists them, then modules."""
    found = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        version = entry.dist.version if entry.dist is not None else "-"
        found.append(Candidate(entry.name, "entry point", entry.value, version,
                               lambda entry=entry: _instance(entry.load())))
    for path in modules:
        found.append(Candidate(path, "module", path, "-", lambda path=path: load_path(path)))
    return found


def load_path(path: str) -> object:
    """Import `package.module` (or `package.module:object`) and return the plugin it names."""
    module, _, attribute = path.partition(":")
    target: object = importlib.import_module(module)
    for part in filter(None, attribute.split(".")):
        target = getattr(target, part)
    return _instance(target)


def _instance(target: object) -> object:
    # A class is a plugin with state: one instance of it is registered, as pluggy would not.
    return target() if isinstance(target, type) else target
