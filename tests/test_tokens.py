"""Token sources: the environment, then a command (cached, re-run after a 401), then the file."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

from projctld.config import GitHubConfig, GitLabConfig
from projctld.errors import UpstreamError
from projctld.upstream import tokens
from projctld.upstream.tokens import TokenSource

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def python_command(code: str) -> str:
    """A token_command that runs `code` in this Python."""
    return shlex.join([sys.executable, "-c", code])


def counting_command(counter: Path, token: str = "tok-counted") -> str:
    """A token_command that appends a line to `counter` on each run and prints `token`."""
    return python_command(
        f"import sys; open(sys.argv[1], 'a').write('run\\n'); print({token!r})"
    ) + " " + shlex.quote(str(counter))


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


async def token_error(source: TokenSource) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await source.get()
    assert caught.value.code == "token"
    return caught.value


# Which source wins.


async def test_env_wins_over_command_and_inline_token(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    config = GitHubConfig(token_command=counting_command(counter), token="tok-inline")
    source = TokenSource("GitHub", "github", config, {"GITHUB_TOKEN": "tok-env"})

    assert await source.get() == "tok-env"
    assert source.origin == "$GITHUB_TOKEN"
    assert runs(counter) == 0


async def test_env_value_is_stripped() -> None:
    source = TokenSource("GitHub", "github", GitHubConfig(), {"GITHUB_TOKEN": " tok-env\n"})

    assert await source.get() == "tok-env"


async def test_custom_env_var() -> None:
    config = GitHubConfig(token_env="WORK_GH_TOKEN")
    environ = {"GITHUB_TOKEN": "tok-default", "WORK_GH_TOKEN": "tok-work"}
    source = TokenSource("GitHub", "github", config, environ)

    assert await source.get() == "tok-work"
    assert source.origin == "$WORK_GH_TOKEN"


async def test_command_used_when_env_unset() -> None:
    command = python_command("print('tok-123')")
    config = GitHubConfig(token_command=command, token="tok-inline")
    source = TokenSource("GitHub", "github", config, {})

    assert await source.get() == "tok-123"
    assert source.origin == f"`{command}`"


async def test_empty_env_var_falls_through_to_the_command() -> None:
    config = GitHubConfig(token_command=python_command("print('tok-123')"))
    source = TokenSource("GitHub", "github", config, {"GITHUB_TOKEN": ""})

    assert await source.get() == "tok-123"


async def test_inline_token_used_last() -> None:
    source = TokenSource("GitLab", "gitlab", GitLabConfig(token="tok-inline"), {})

    assert await source.get() == "tok-inline"
    assert source.origin == "`token` in [gitlab]"


async def test_commands_output_is_cached(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    source = TokenSource("GitHub", "github",
                         GitHubConfig(token_command=counting_command(counter)), {})

    assert [await source.get() for _ in range(3)] == ["tok-counted"] * 3
    assert runs(counter) == 1


async def test_command_output_is_stripped() -> None:
    config = GitHubConfig(token_command=python_command("print('  tok-spaced  '); print()"))
    source = TokenSource("GitHub", "github", config, {})

    assert await source.get() == "tok-spaced"


# A command that fails.


async def test_failing_command(tmp_path: Path) -> None:
    command = python_command(
        "import sys; sys.stderr.write('not logged in\\nsecond line\\n'); sys.exit(3)"
    )
    source = TokenSource("GitHub", "github", GitHubConfig(token_command=command), {})

    error = await token_error(source)
    # The first stderr line, and only it, ends the message.
    assert error.message.endswith("` exited with status 3: not logged in")
    assert command in error.message
    assert "GitHub" in error.message
    assert any("gh auth login" in s for s in error.suggestions)


async def test_failing_command_without_stderr() -> None:
    source = TokenSource("GitHub", "github",
                         GitHubConfig(token_command=python_command("raise SystemExit(3)")), {})

    error = await token_error(source)
    assert error.message.endswith("exited with status 3")


async def test_failing_command_is_not_cached(tmp_path: Path) -> None:
    flag = tmp_path / "logged-in"
    command = python_command(
        "import os, sys; sys.exit(1) if not os.path.exists(sys.argv[1]) else print('tok-later')"
    ) + " " + shlex.quote(str(flag))
    source = TokenSource("GitHub", "github", GitHubConfig(token_command=command), {})

    await token_error(source)
    flag.touch()
    assert await source.get() == "tok-later"


async def test_command_printing_nothing() -> None:
    source = TokenSource("GitHub", "github",
                         GitHubConfig(token_command=python_command("pass")), {})

    error = await token_error(source)
    assert "printed nothing" in error.message


async def test_command_printing_only_whitespace_and_a_warning() -> None:
    command = python_command("import sys; print('   '); sys.stderr.write('no account\\n')")
    source = TokenSource("GitHub", "github", GitHubConfig(token_command=command), {})

    error = await token_error(source)
    assert "printed nothing: no account" in error.message


async def test_command_that_does_not_exist(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-tool")
    source = TokenSource("GitLab", "gitlab",
                         GitLabConfig(token_command=f"{missing} auth token"), {})

    error = await token_error(source)
    assert "could not run" in error.message
    assert "No such file or directory" in error.message
    assert missing in error.message


async def test_command_with_unbalanced_quotes() -> None:
    source = TokenSource("GitHub", "github", GitHubConfig(token_command="gh 'auth token"), {})

    error = await token_error(source)
    assert "could not run" in error.message


async def test_command_past_the_timeout_is_stopped(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setattr(tokens, "COMMAND_TIMEOUT", 0.3)
    pid_file = tmp_path / "pid"
    command = python_command(
        "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(30)"
    ) + " " + shlex.quote(str(pid_file))
    source = TokenSource("GitHub", "github", GitHubConfig(token_command=command), {})

    error = await token_error(source)
    assert "did not finish within 0.3 s" in error.message
    # The command was killed and reaped, not left running.
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# No source at all.


async def test_no_source_github() -> None:
    source = TokenSource("GitHub", "github", GitHubConfig(), {"GITLAB_TOKEN": "tok-other"})

    error = await token_error(source)
    assert "no GitHub token" in error.message
    assert "$GITHUB_TOKEN" in error.message
    assert any("export GITHUB_TOKEN=" in s for s in error.suggestions)
    assert any("gh auth token" in s for s in error.suggestions)
    assert source.origin == "nowhere"


async def test_no_source_gitlab() -> None:
    source = TokenSource("GitLab", "gitlab", GitLabConfig(), {})

    error = await token_error(source)
    assert "[gitlab]" in error.message
    assert any("export GITLAB_TOKEN=" in s for s in error.suggestions)
    # `gh auth token` is GitHub's; it is not suggested for GitLab.
    assert not any("gh auth token" in s for s in error.suggestions)


async def test_no_source_and_no_env_name() -> None:
    source = TokenSource("GitHub", "github", GitHubConfig(token_env=""), {})

    error = await token_error(source)
    assert any('set token_env = "NAME" in [github] and put NAME=<the token> in' in s
               for s in error.suggestions)


# After a 401: rejected().


async def test_env_token_is_not_asked_again() -> None:
    source = TokenSource("GitHub", "github", GitHubConfig(), {"GITHUB_TOKEN": "tok-env"})
    await source.get()

    assert source.rejected() is False
    assert await source.get() == "tok-env"


async def test_inline_token_is_not_asked_again() -> None:
    source = TokenSource("GitHub", "github", GitHubConfig(token="tok-inline"), {})
    await source.get()

    assert source.rejected() is False


async def test_command_not_run_yet_is_not_asked_again(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    source = TokenSource("GitHub", "github",
                         GitHubConfig(token_command=counting_command(counter)), {})

    assert source.rejected() is False
    assert runs(counter) == 0


async def test_command_token_is_asked_again_only_after_the_interval(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    source = TokenSource("GitHub", "github",
                         GitHubConfig(token_command=counting_command(counter)), {})
    assert await source.get() == "tok-counted"

    # Just after the command ran (COMMAND_RETRY_INTERVAL is a minute): keep the token.
    assert source.rejected() is False
    await source.get()
    assert runs(counter) == 1

    monkeypatch.setattr(tokens, "COMMAND_RETRY_INTERVAL", 0)
    assert source.rejected() is True
    # Nothing more to forget until the command has run again.
    assert source.rejected() is False
    assert await source.get() == "tok-counted"
    assert runs(counter) == 2
    assert await source.get() == "tok-counted"
    assert runs(counter) == 2


async def test_rotated_token_is_picked_up(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    store = tmp_path / "token"
    store.write_text("tok-old\n")
    command = python_command("import sys; print(open(sys.argv[1]).read())") + " " + \
        shlex.quote(str(store))
    source = TokenSource("GitHub", "github", GitHubConfig(token_command=command), {})
    assert await source.get() == "tok-old"

    store.write_text("tok-new\n")
    assert await source.get() == "tok-old"
    monkeypatch.setattr(tokens, "COMMAND_RETRY_INTERVAL", 0)
    assert source.rejected() is True
    assert await source.get() == "tok-new"


# origin names the source, never the token.


async def test_origin_never_contains_the_token(tmp_path: Path) -> None:
    secret = "tok-SECRET-4f9a"
    sources = [
        TokenSource("GitHub", "github", GitHubConfig(), {"GITHUB_TOKEN": secret}),
        TokenSource("GitHub", "github",
                    GitHubConfig(token_command=python_command(
                        f"print({secret[:4]!r} + {secret[4:]!r})")), {}),
        TokenSource("GitHub", "github", GitHubConfig(token=secret), {}),
    ]
    origins = []
    for source in sources:
        assert await source.get() == secret
        origins.append(source.origin)

    assert origins[0] == "$GITHUB_TOKEN"
    assert origins[1].startswith(f"`{shlex.quote(sys.executable)} -c")
    assert origins[2] == "`token` in [github]"
    for origin in origins:
        assert secret not in origin


async def test_origin_names_the_source_actually_used_when_env_is_blank() -> None:
    command = python_command("print('tok-123')")
    source = TokenSource("GitHub", "github", GitHubConfig(token_command=command),
                         {"GITHUB_TOKEN": "  "})

    assert await source.get() == "tok-123"
    assert source.origin == f"`{command}`"

