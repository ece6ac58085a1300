"""The daemon's TOML config as frozen msgspec Structs; loading validates and explains errors."""

from __future__ import annotations

import os
import re
import tomllib
import typing
from typing import Annotated, Literal

import msgspec

from projctld.errors import ConfigError

S = typing.TypeVar("S", bound=msgspec.Struct)
Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class DaemonConfig(_Section):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "console", "json"] = "auto"
    shutdown_timeout: Seconds = 5.0
    idle_timeout: Seconds = 60.0
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 256


class ProjectConfig(_Section):
    paths: list[str] = []


class Config(_Section):
    daemon: DaemonConfig = DaemonConfig()
    projects: dict[str, ProjectConfig] = {}


def load_config(path: str) -> Config:
    """Read and validate the config at `path`; a missing file means all defaults."""
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        return Config()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}",
            suggestions=[f"fix the line it names in {path}"],
            context={"file": path},
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", context={"file": path}) from None
    # Projects are validated one by one so that an error can name the project it is in.
    raw_projects = raw.pop("projects", {})
    config = _convert(path, raw, Config, "")
    if not isinstance(raw_projects, dict):
        raise _error(path, "projects", f"expected a table, got {_toml_type(raw_projects)}")
    projects = {}
    for name, raw_project in raw_projects.items():
        if not _PROJECT_NAME.match(name):
            raise _error(path, f"projects.{name}", "a project name is 1-64 letters, digits, "
                         "`.`, `_` or `-`, starting with a letter or digit")
        project = _convert(path, raw_project, ProjectConfig, f"projects.{name}")
        projects[name] = msgspec.structs.replace(
            project, paths=[_resolve(p, os.path.dirname(path)) for p in project.paths]
        )
    return msgspec.structs.replace(config, projects=projects)


_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LOCATION = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")
_MSGSPEC_TYPES = {"`object`": "a table", "`array`": "an array", "`str`": "a string",
                  "`int`": "an integer", "`float`": "a number", "`bool`": "true or false"}
_TOML_TYPES = {dict: "a table", list: "an array", str: "a string", int: "an integer",
               float: "a float", bool: "a boolean"}


def _resolve(path: str, base: str) -> str:
    # Checkout roots arrive as real paths (os.getcwd resolves links), so compare real paths.
    return os.path.realpath(os.path.join(base, os.path.expanduser(path)))


def _toml_type(value: object) -> str:
    return _TOML_TYPES.get(type(value), type(value).__name__)


def _error(path: str, key: str, problem: str) -> ConfigError:
    return ConfigError(
        f"{path}: `{key}`: {problem}",
        suggestions=["see config.example.toml for every key, its type and its default"],
        context={"file": path, "key": key},
    )


def _convert(path: str, raw: object, section: type[S], prefix: str) -> S:
    """msgspec.convert, with its error rewritten to name the file and the dotted key."""
    try:
        return msgspec.convert(raw, section)
    except msgspec.ValidationError as exc:
        raise _explain(path, str(exc), section, prefix) from None


def _explain(path: str, detail: str, section: type[msgspec.Struct], prefix: str) -> ConfigError:
    match = _LOCATION.search(detail)
    location = match["path"].lstrip(".") if match else ""
    problem = detail[: match.start()] if match else detail
    key = ".".join(part for part in (prefix, location) if part)
    unknown = _UNKNOWN.match(problem)
    if unknown:
        table = _section_at(section, location)
        known = ", ".join(f.name for f in msgspec.structs.fields(table)) if table else ""
        key = ".".join(part for part in (key, unknown["field"]) if part)
        return _error(path, key, "unknown key" + (f"; known here: {known}" if known else ""))
    problem = problem.replace("Expected", "expected")
    for msgspec_name, toml_name in _MSGSPEC_TYPES.items():
        problem = problem.replace(msgspec_name, toml_name)
    choices = _choices(section, location)
    if choices:
        got = problem.split(" ", 3)[-1] if problem.startswith("Invalid enum") else problem
        problem = f"expected one of {', '.join(choices)} ({got})"
    return _error(path, key, problem)


def _section_at(section: type[msgspec.Struct], location: str) -> type[msgspec.Struct] | None:
    """The Struct for the table at a dotted location inside `section`."""
    for part in filter(None, location.split(".")):
        field_type = {f.name: f.type for f in msgspec.structs.fields(section)}.get(part)
        if not (isinstance(field_type, type) and issubclass(field_type, msgspec.Struct)):
            return None
        section = field_type
    return section


def _choices(section: type[msgspec.Struct], location: str) -> list[str]:
    """The allowed values when the key at `location` is a Literal."""
    table_path, _, name = location.rpartition(".")
    table = _section_at(section, table_path)
    if table is None:
        return []
    field_type = {f.name: f.type for f in msgspec.structs.fields(table)}.get(name)
    if typing.get_origin(field_type) is not Literal:
        return []
    return [str(value) for value in typing.get_args(field_type)]
