"""The docs cannot rot: every command line in them parses, the safe ones run, every config loads."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from projctl_client.cli import cli
from projctld.__main__ import main as daemon_cli
from projctld.config import Config, load_config
from projctld.errors import ConfigError

REPO = Path(__file__).parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
# Commands run for real, in a sandbox: they change nothing and need no daemon.
SAFE = (("config", "example"), ("config", "path"), ("shell-init",))


def blocks(language: tuple[str, ...]) -> list[tuple[str, int, str]]:
    """(page, line, text) of each fenced block in one of `language`."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match[1] in language:
                line = text.count("\n", 0, match.start()) + 1
                found.append((page.relative_to(REPO).as_posix(), line, match[2]))
    return found


def command_lines(text: str, console: bool = False) -> list[list[str]]:
    """Each projctl, projctld or bench invocation in a shell block, as argv: continuation lines
    joined, prompts, comments and `[optional]` brackets dropped, chains and $(...) split. In a
    console block only the lines after a `$ ` prompt are commands (the rest is their output)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        if console and not line.startswith("$ "):
            continue
        line = line.strip().removeprefix("$ ")
        pieces = [*re.findall(r"\$\(([^)]*)\)", line), re.sub(r'"?\$\([^)]*\)"?', "X", line)]
        for piece in pieces:
            try:
                words = shlex.split(piece, comments=True)
            except ValueError:
                continue
            command: list[str] = []
            for word in [*words, "&&"]:
                if word in ("&&", "||", "|", ";", "&"):
                    argv = _program(command)
                    if argv:
                        found.append(argv)
                    command = []
                else:
                    command.append(word)
    return found


def _program(words: list[str]) -> list[str] | None:
    """The projctl, projctld or bench part of a command, wherever it starts (after `sudo`,
    VAR=value, `systemd-run ...`, a path)."""
    for index, word in enumerate(words):
        name = os.path.basename(word)
        if name in ("projctl", "projctld"):
            return [name, *[w for w in words[index + 1:] if w not in ("[", "]")]]
        if name.startswith("python") and words[index + 1:][:1] and \
                words[index + 1].startswith("bench/"):
            return ["bench", *[w.strip("[]") for w in words[index + 1:] if w.strip("[]")]]
    return None


def parse(group: click.Group, argv: list[str]) -> None:
    """Parse argv as the real command line would, invoking nothing: every command and option
    must exist and take the value given."""
    ctx = group.make_context(group.name or "projctl", list(argv), resilient_parsing=False)
    command: click.Command = group
    while isinstance(command, click.Group) and ctx._protected_args + ctx.args:
        name, sub, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert sub is not None, f"no command {name!r}"
        ctx = sub.make_context(name or "", rest, parent=ctx, resilient_parsing=False)
        command = sub


def synopses() -> list[tuple[str, int, list[str]]]:
    """Each `projctl ...` / `projctld ...` synopsis in the docs' tables, as words: brackets
    dropped, the first of `a \\| b` alternatives, and `x` / `y` forms as separate lines."""
    found = []
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), start=1):
            if not line.startswith("|"):
                continue
            cell = line.split(" | ")[0].lstrip("| ")
            base: list[str] = []
            for code in re.findall(r"`([^`]*)`", cell):
                code = re.sub(r"(\S+)\\\|\S+", r"\1", code.replace(" \\| ", " | "))
                words = [w for w in re.sub(r"[\[\]]|\.\.\.", " ", code).split() if w != "|"]
                if words[:1] in (["projctl"], ["projctld"]):
                    # Its command path: the words before the first option or placeholder.
                    base = list(itertools.takewhile(
                        lambda w: not w.startswith("-") and not w[:1].isupper(), words))
                elif len(base) > 2 and len(words) == 1:
                    # `daemon start` / `stop`: the same command, another subcommand
                    words = [*base[:-1], *words]
                else:
                    continue
                found.append((page.relative_to(REPO).as_posix(), number, words))
    return found


def check_names(group: click.Group, words: list[str]) -> str | None:
    """Whether each subcommand and option of a synopsis exists (its values are placeholders:
    PROJECT, S, NAME=VALUE); the problem, or None."""
    command: click.Command = group
    ctx = click.Context(group)
    takes_value = False
    for word in words:
        if takes_value:
            takes_value = False
            continue
        if word.startswith("-"):
            name = word.split("=")[0]
            options = {opt: param for param in command.params
                       for opt in (*param.opts, *param.secondary_opts)}
            if name not in options and name != "--help":
                return f"{' '.join(words)}: no option {name}"
            param = options.get(name)
            takes_value = "=" not in word and isinstance(param, click.Option) \
                and not param.is_flag and not param.count
        elif isinstance(command, click.Group):
            sub = command.get_command(ctx, word)
            if sub is None:
                return f"{' '.join(words)}: no command {word!r}"
            command = sub
    return None


SYNOPSES = synopses()


def test_the_docs_tables_show_synopses_to_check() -> None:
    assert len(SYNOPSES) >= 30
    assert ["projctl", "daemon", "stop"] in [w for _, _, w in SYNOPSES]


@pytest.mark.parametrize(("page", "line", "words"), SYNOPSES,
                         ids=[f"{p}:{n}:{' '.join(w)[:40]}" for p, n, w in SYNOPSES])
def test_each_command_in_the_docs_tables_exists(page: str, line: int, words: list[str]) -> None:
    if words[1:2] == ["NAME"]:
        return  # `projctl NAME [ARGS...]`: a plugin's command, by definition not projctl's
    group = cli if words[0] == "projctl" else daemon_cli
    problem = check_names(group, words[1:])
    assert problem is None, f"{page}:{line}: {problem}"


SHELL = blocks(("sh", "bash")) + [(page, line, "\x00" + text)
                                  for page, line, text in blocks(("console",))]
COMMANDS = [(page, line, argv) for page, line, text in SHELL
            for argv in command_lines(text.lstrip("\x00"), console=text.startswith("\x00"))]
# Commands the example plugins add (examples/): the docs show them in use.
EXAMPLE_COMMANDS = {path.name.removeprefix("projctl-")
                    for path in (REPO / "examples").rglob("projctl-*") if path.is_file()} | {
    name.strip() for toml in (REPO / "examples").rglob("pyproject.toml")
    for name in tomllib.loads(toml.read_text()).get("project", {}).get(
        "entry-points", {}).get("projctl.commands", {})}


def test_the_docs_show_commands_to_check() -> None:
    # Guard the extraction itself: the README's install command and a hub command are seen.
    names = {" ".join(argv[:3]) for _, _, argv in COMMANDS}
    assert "projctl status" in names and "projctld hub token" in names, names
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize(("page", "line", "argv"), COMMANDS,
                         ids=[f"{p}:{n}:{' '.join(a)[:40]}" for p, n, a in COMMANDS])
def test_each_command_in_the_docs_parses(page: str, line: int, argv: list[str]) -> None:
    program, args = argv[0], argv[1:]
    if program == "bench":
        script = REPO / args[0]
        assert script.exists(), f"{page}:{line}: no {args[0]}"
        shown = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                               text=True, timeout=60)
        for option in (a.split("=")[0] for a in args[1:] if a.startswith("--")):
            assert option in shown.stdout, f"{page}:{line}: {args[0]} has no {option}"
        return
    group = cli if program == "projctl" else daemon_cli
    if program == "projctl" and args and args[0] in EXAMPLE_COMMANDS:
        return  # a plugin's command, shown by the docs on plugins: not projctl's to parse
    try:
        parse(group, args)
    except click.exceptions.Exit:
        pass  # --help and the like
    except click.ClickException as exc:
        pytest.fail(f"{page}:{line}: `{' '.join(argv)}`: {exc.format_message()}")


@pytest.mark.parametrize("argv", sorted({tuple(a) for _, _, a in COMMANDS
                                         if tuple(a[1:len(a)]) and any(
                                             tuple(a[1:1 + len(s)]) == s for s in SAFE)}))
def test_the_safe_commands_in_the_docs_run(sandbox, argv: tuple[str, ...]) -> None:
    done = sandbox.client(*argv[1:])
    assert done.returncode == 0, (argv, done.stderr)
    assert done.stdout


TOML = blocks(("toml",))


@pytest.mark.parametrize(("page", "line", "text"), TOML,
                         ids=[f"{p}:{n}" for p, n, _ in TOML])
def test_each_config_in_the_docs_loads(tmp_path: Path, page: str, line: int, text: str) -> None:
    raw = tomllib.loads(text)  # a TOML mistake fails here
    if text.startswith("# hub.toml"):  # the hub's config (docs/hub.md), its own loader
        from projctld.hub.upstream.config import load_hub_config

        path = tmp_path / "hub.toml"
        path.write_text(text)
        names = {v: "x" for v in re.findall(r'webhook_secret_env = "(\w+)"', text)}
        try:
            load_hub_config(str(path), names)
        except ConfigError as exc:
            pytest.fail(f"{page}:{line}: {exc.message}")
        return
    if not raw or not set(raw) <= set(Config.__struct_fields__):
        return  # not a daemon config (a workflow file, say): valid TOML is what it owes
    path = tmp_path / "config.toml"
    # Paths in examples point at the reader's machine; only their spelling is checked here.
    path.write_text(text)
    os.chmod(path, 0o600)
    try:
        load_config(str(path))
    except ConfigError as exc:
        pytest.fail(f"{page}:{line}: {exc.message}")
