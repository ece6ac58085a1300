"""The client stays tiny: its entry imports stdlib, msgspec and click only; the hot path less."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

DAEMON_ONLY = {"projctld", "anyio", "httpx", "structlog", "apscheduler", "sqlite3", "asyncio"}
HOT_PATH_ALSO_AVOIDS = {"click", "msgspec", "socket", "subprocess"}


def imported_modules(sandbox, *args: str) -> set[str]:
    """Top-level modules the real entry point imports, from `python -X importtime`."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "projctl_client", *args],
        cwd=sandbox.root, env=sandbox.env, capture_output=True, text=True, timeout=60,
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "projctl_client" in names, result.stderr
    return names


@pytest.mark.parametrize("args", [["--help"], ["daemon", "status"], ["status", "--help"]])
def test_click_commands_import_no_daemon_module(sandbox, args) -> None:
    names = imported_modules(sandbox, *args)
    assert "click" in names
    assert not names & DAEMON_ONLY


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["ping"],
                                  ["status", "--short", "--project", "nope"]])
def test_hot_commands_import_neither_click_nor_msgspec(sandbox, daemon, args) -> None:
    names = imported_modules(sandbox, *args)
    assert not names & (DAEMON_ONLY | HOT_PATH_ALSO_AVOIDS)


def test_status_imports_nothing_that_ping_does_not(sandbox, daemon) -> None:
    # The daemon writes status out (text or JSON): the client needs no more than a ping.
    ping = all_modules(sandbox, "ping")
    for args in (["status"], ["status", "--json"], ["status", "--short"]):
        assert all_modules(sandbox, *args) == ping, args


def all_modules(sandbox, *args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "projctl_client", *args],
        cwd=sandbox.root, env=sandbox.env, capture_output=True, text=True, timeout=60,
    )
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_no_client_module_imports_a_daemon_module_even_lazily() -> None:
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "projctl_client")
    for name in sorted(os.listdir(root)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(root, name)) as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] not in DAEMON_ONLY, f"{name} imports {module}"
