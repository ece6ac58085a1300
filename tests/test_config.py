"""Config loading: defaults, path resolution, and one clear message for every kind of mistake."""

from __future__ import annotations

import os
import re
import tomllib

import pytest

from projctld.config import Config, GitHubConfig, ProjectConfig, load_config
from projctld.errors import ConfigError
from projctld.team.workflows import load_table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(tmp_path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_a_missing_file_means_every_default(tmp_path) -> None:
    assert load_config(str(tmp_path / "absent.toml")) == Config()


def test_project_paths_expand_home_and_resolve_relative_to_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    config = load_config(write(tmp_path, '[projects.web]\npaths = ["~/src/web", "link"]\n'))
    assert config.projects["web"].paths == [str(tmp_path / "src" / "web"), str(tmp_path / "real")]


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("[daemon]\nlog_level = 'loud'\n", "daemon.log_level",
         "expected one of debug, info, warning, error"),
        ("[daemon]\nlog_level = 3\n", "daemon.log_level", "expected one of debug"),
        ("[daemon]\nshutdown_timeout = '5'\n", "daemon.shutdown_timeout",
         "expected a number, got a string"),
        ("[daemon]\nshutdown_timeout = -1\n", "daemon.shutdown_timeout", "expected"),
        ("[daemon]\nmax_connections = 0\n", "daemon.max_connections", ">= 1"),
        ("[daemon]\nverbose = true\n", "daemon.verbose", "unknown key; known here: log_level"),
        ("colour = true\n", "colour",
         "unknown key; known here: daemon, polling, github, gitlab, jira, sync, prompt, "
         "plugins, notify, desktop, retention, upstreams, projects"),
        ("daemon = 3\n", "daemon", "expected a table, got an integer"),
        ("projects = 3\n", "projects", "expected a table, got an integer"),
        ("[projects.web]\npaths = 'src/web'\n", "projects.web.paths",
         "expected an array, got a string"),
        ("[projects.web]\npath = ['x']\n", "projects.web.path", "unknown key; known here: paths"),
        ("[projects.'two words']\n", "projects.two words", "a project name is"),
    ],
)
def test_a_bad_value_names_the_file_the_key_and_what_was_expected(
    tmp_path, text: str, key: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.message.startswith(f"{path}: `{key}`: ")
    assert expected in caught.value.message
    assert caught.value.context == {"file": path, "key": key}
    assert caught.value.suggestions


def test_a_syntax_error_names_the_file_and_the_line(tmp_path) -> None:
    path = write(tmp_path, "[daemon]\nlog_level = \n")
    with pytest.raises(ConfigError, match=r"is not valid TOML: .*line 2") as caught:
        load_config(path)
    assert caught.value.message.startswith(path)


def test_an_unreadable_file_is_a_config_error(tmp_path) -> None:
    path = write(tmp_path, "")
    os.chmod(path, 0)
    if os.access(path, os.R_OK):  # root reads anything: use a directory instead
        path = str(tmp_path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)


def test_the_example_config_is_valid_and_documents_every_key() -> None:
    example = os.path.join(REPO, "config.example.toml")
    with open(example) as handle:
        text = handle.read()
    # Every key is present, commented out; uncommented it must load.
    setting = re.compile(r"^# (\[[\w.]+\]|\w+ = .+)$")
    uncommented = "\n".join(
        match[1] if (match := setting.match(line)) else line for line in text.splitlines()
    )
    raw = tomllib.loads(uncommented)

    defaults = Config()
    # extra_instances: the sub-tables of [github], [gitlab], [jira]; notes: what loading found
    derived = ("extra_instances", "notes")
    sections = [name for name in Config.__struct_fields__
                if name not in ("projects", "workflows", *derived)]
    assert set(raw) | set(derived) == set(Config.__struct_fields__)
    # Another instance of an upstream is a table inside its kind's, with that kind's keys.
    (extra_name,) = [key for key, value in raw["github"].items() if isinstance(value, dict)]
    extra = raw["github"].pop(extra_name)
    assert set(extra) <= set(GitHubConfig.__struct_fields__)
    for section in sections:
        assert set(raw[section]) == set(type(getattr(defaults, section)).__struct_fields__)
        for key, value in raw[section].items():
            assert getattr(getattr(defaults, section), key) == value, \
                f"example shows a wrong default for {section}.{key}"
    (project,) = raw["projects"].values()
    assert set(project) == set(ProjectConfig.__struct_fields__)
    assert list(load_table(raw["workflows"], path=example, text=uncommented)) == ["NAME"]


def test_projctld_run_reports_a_bad_config_without_a_traceback(sandbox) -> None:
    """It says what is wrong, and still serves: the event log must work whatever the config
    says (tests/test_config_reload.py)."""
    sandbox.write_config("[daemon]\nlog_level = 'loud'\n")
    process = sandbox.start_daemon()
    assert sandbox.client("ping").returncode == 2  # it serves, and says the config is broken
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert b"Traceback" not in stderr
    assert f"{sandbox.config_path}: `daemon.log_level`: expected one of".encode() in stderr


def test_the_client_shows_the_daemons_config_error(sandbox) -> None:
    sandbox.write_config("[daemon\n")
    result = sandbox.client("status")
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
    assert f"warning: the config does not load: {sandbox.config_path} is not valid TOML" \
        in result.stderr
    assert "try: fix the line it names" in result.stderr


def test_projctl_config_example_path_and_check(sandbox) -> None:
    # pip does not install config.example.toml beside the user: the client carries it.
    example = sandbox.client("config", "example")
    assert example.returncode == 0
    with open(os.path.join(REPO, "config.example.toml")) as handle:
        assert example.stdout == handle.read()
    assert sandbox.client("config", "path").stdout.startswith(sandbox.config_path)

    sandbox.write_config('[projects.web]\ngithub = ["https://github.com/acme/web.git"]\n')
    checked = sandbox.client("config", "check")
    assert checked.returncode == 0, checked.stderr
    assert "is valid: 1 project (web)" in checked.stdout
    assert "note: projects.web.github[0]: read 'https://github.com/acme/web.git' as " \
           "'acme/web'" in checked.stdout

    sandbox.write_config("[daemon]\nlog_level = 'loud'\n")
    checked = sandbox.client("config", "check")
    assert checked.returncode == 2
    assert "`daemon.log_level`: expected one of debug, info, warning, error" in checked.stderr
