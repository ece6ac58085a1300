"""The upstream parts of the config: sections, project sources, inline tokens and file mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from projctld.config import (
    GitHubConfig,
    GitLabConfig,
    JiraConfig,
    ProjectConfig,
    load_config,
)
from projctld.errors import ConfigError


def write(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def refused(path: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


def shown(error: ConfigError) -> str:
    """The error as projctld prints it: the message, then each suggestion."""
    return "\n".join([f"error: {error.message}", *(f"try: {s}" for s in error.suggestions)])


# Jira needs its site.


def test_jira_query_without_jira_url_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[projects.web]\njira = "project = WEB"\n')

    error = refused(path)
    assert error.message.startswith(f"{path}: `projects.web.jira`:")
    assert "set `url` in [jira]" in error.message
    assert error.context == {"file": path, "key": "projects.web.jira"}
    assert error.exit_code == 2


def test_jira_query_with_jira_url_loads(tmp_path: Path) -> None:
    path = write(tmp_path, '[jira]\nurl = "https://acme.atlassian.net"\n'
                           '[projects.web]\njira = "project = WEB"\n')

    config = load_config(path)
    assert config.jira.url == "https://acme.atlassian.net"
    assert config.projects["web"].jira == "project = WEB"


def test_no_jira_query_needs_no_jira_url(tmp_path: Path) -> None:
    path = write(tmp_path, '[projects.web]\ngithub = ["acme/web"]\n')

    assert load_config(path).jira.url == ""


# An inline token needs a private file.


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_inline_token_in_a_readable_file_is_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, '[github]\ntoken = "ghp_secret"\n', mode=mode)

    error = refused(path)
    assert "`github.token`" in error.message
    assert f"mode {mode:o}" in error.message
    assert f"chmod 600 {path}" in error.suggestions
    assert f"try: chmod 600 {path}" in shown(error)
    assert error.context == {"file": path, "key": "github.token"}
    # The token itself is never repeated back.
    assert "ghp_secret" not in shown(error)


def test_inline_token_in_a_private_file_loads(tmp_path: Path) -> None:
    path = write(tmp_path, '[github]\ntoken = "ghp_secret"\n', mode=0o600)

    assert load_config(path).github.token == "ghp_secret"


def test_inline_token_error_names_the_section_that_has_one(tmp_path: Path) -> None:
    path = write(tmp_path, '[jira]\nurl = "https://acme.atlassian.net"\ntoken = "j"\n',
                 mode=0o644)

    error = refused(path)
    assert "`jira.token`" in error.message
    assert any("[jira]" in s for s in error.suggestions)


def test_a_readable_file_without_tokens_loads(tmp_path: Path) -> None:
    path = write(tmp_path, '[github]\ntoken_command = "gh auth token"\n', mode=0o644)

    assert load_config(path).github.token_command == "gh auth token"


# Bad sources are named by their dotted key, with what was expected in words.


@pytest.mark.parametrize(
    ("text", "key", "meaning"),
    [
        ('[projects.web]\ngithub = ["a b"]\n', "projects.web.github[0]", 'OWNER/NAME, e.g.'),
        ('[projects.web]\ngithub = ["noslash"]\n', "projects.web.github[0]", "OWNER/NAME"),
        ('[projects.web]\ngithub = ["acme/web", "acme/x/y"]\n', "projects.web.github[1]",
         "OWNER/NAME"),
        ('[projects.web]\ngitlab = ["single"]\n', "projects.web.gitlab[0]",
         "a project path with its groups"),
        ('[projects.api]\ngitlab = ["acme/api", "has space/x"]\n', "projects.api.gitlab[1]",
         "a project path with its groups"),
        ('[github]\napi_url = "ftp://ghe.example.com"\n', "github.api_url", "an http(s) URL"),
        ('[gitlab]\nurl = "gitlab.example.com"\n', "gitlab.url", "an http(s) URL"),
        ('[jira]\nurl = "acme.atlassian.net"\n', "jira.url", "an http(s) URL"),
    ],
)
def test_bad_upstream_values_are_explained(tmp_path: Path, text: str, key: str,
                                           meaning: str) -> None:
    path = write(tmp_path, text)

    error = refused(path)
    assert error.message.startswith(f"{path}: `{key}`: expected {meaning}")
    assert error.context["key"] == key
    # Described in words, not by quoting the pattern.
    assert "regex" not in error.message
    assert "^" not in error.message
    assert "[A-Za-z" not in error.message


@pytest.mark.parametrize("value", ["acme/web", "a.b/c-d_e", "A1/B2"])
def test_good_github_repos_load(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f'[projects.web]\ngithub = ["{value}"]\n')

    assert load_config(path).projects["web"].github == [value]


@pytest.mark.parametrize("value", ["acme/api", "acme/platform/api", "12345"])
def test_good_gitlab_projects_load(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f'[projects.api]\ngitlab = ["{value}"]\n')

    assert load_config(path).projects["api"].gitlab == [value]


# Poll intervals.


@pytest.mark.parametrize("section", ["github", "gitlab", "jira"])
def test_interval_below_ten_seconds_is_refused(tmp_path: Path, section: str) -> None:
    path = write(tmp_path, f"[{section}]\ninterval = 5\n")

    error = refused(path)
    assert error.message == f"{path}: `{section}.interval`: expected a number >= 10.0"


def test_interval_of_ten_seconds_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "[github]\ninterval = 10\n")

    assert load_config(path).github.interval == 10.0


# upstreams() and defaults.


def test_upstreams_are_in_display_order_and_only_configured_ones() -> None:
    assert ProjectConfig().upstreams() == []
    assert ProjectConfig(jira="project = X", github=["a/b"]).upstreams() == ["github", "jira"]
    assert ProjectConfig(jira="project = X", gitlab=["g/p"], github=["a/b"]).upstreams() == [
        "github", "gitlab", "jira"]
    assert ProjectConfig(gitlab=["g/p"], paths=["/src"]).upstreams() == ["gitlab"]


def test_upstreams_of_a_loaded_project(tmp_path: Path) -> None:
    path = write(tmp_path, '[jira]\nurl = "https://acme.atlassian.net"\n'
                           '[projects.web]\njira = "project = WEB"\ngitlab = ["acme/web"]\n')

    assert load_config(path).projects["web"].upstreams() == ["gitlab", "jira"]


def test_upstream_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))

    assert config.github == GitHubConfig()
    assert config.github.api_url == "https://api.github.com"
    assert config.github.token_env == "GITHUB_TOKEN"
    assert config.github.interval == 60.0
    assert config.github.token_command == config.github.token == ""
    assert config.gitlab == GitLabConfig()
    assert config.gitlab.url == "https://gitlab.com"
    assert config.gitlab.token_env == "GITLAB_TOKEN"
    assert config.gitlab.auth == "private-token"
    assert config.jira == JiraConfig()
    assert config.jira.interval == 300.0
    assert config.jira.token_env == "JIRA_API_TOKEN"
    assert config.jira.url == ""


def test_upstream_sections_override_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, '[github]\napi_url = "https://ghe.example.com/api/v3"\n'
                           'token_env = "GHE_TOKEN"\ninterval = 120\n'
                           '[gitlab]\nauth = "bearer"\n')

    config = load_config(path)
    assert config.github.api_url == "https://ghe.example.com/api/v3"
    assert config.github.token_env == "GHE_TOKEN"
    assert config.github.interval == 120.0
    assert config.gitlab.auth == "bearer"
    assert config.gitlab.url == "https://gitlab.com"


def test_unknown_key_in_an_upstream_section_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, '[github]\ntoken_cmd = "gh auth token"\n')

    error = refused(path)
    assert error.message.startswith(f"{path}: `github.token_cmd`: unknown key")
    assert "token_command" in error.message


# Several instances of an upstream: sub-tables of their kind, named before a part.


def test_named_instances_load_with_their_own_token_variable(tmp_path: Path) -> None:
    path = write(tmp_path, '[github.ghe]\napi_url = "https://ghe.acme.com/api/v3"\n'
                           '[gitlab.corp]\nurl = "https://gitlab.acme.com"\n'
                           '[jira]\nurl = "https://acme.atlassian.net"\n'
                           '[jira.ops]\nurl = "https://jira.acme.com"\nflavour = "data-center"\n'
                           '[projects.web]\ngithub = ["acme/web", "ghe:platform/deploy"]\n'
                           'gitlab = ["corp:infra/web"]\n'
                           'jira = {jira = "project = WEB", ops = "project = OPS"}\n')

    config = load_config(path)
    instances = config.instances()
    assert list(instances) == ["github", "gitlab", "jira", "ghe", "corp", "ops"]
    ghe = instances["ghe"]
    assert (ghe.kind, ghe.url, ghe.table, ghe.title) == (
        "github", "https://ghe.acme.com/api/v3", "github.ghe", "GitHub ghe")
    # Another host never borrows the default instance's token: $GHE_TOKEN, not $GITHUB_TOKEN.
    assert ghe.section.token_env == "GHE_TOKEN"
    assert instances["corp"].section.token_env == "CORP_TOKEN"
    assert instances["ops"].section.flavour == "data-center"
    web = config.projects["web"]
    assert web.upstreams() == ["github", "ghe", "corp", "jira", "ops"]
    assert web.parts("github") == ["acme/web"]
    assert web.parts("ghe") == ["platform/deploy"]
    assert web.parts("corp") == ["infra/web"]
    assert web.parts("gitlab") == []
    assert web.parts("ops") == ["project = OPS"]
    assert web.parts("jira") == ["project = WEB"]


def test_a_config_without_instances_is_read_as_before(tmp_path: Path) -> None:
    path = write(tmp_path, '[jira]\nurl = "https://acme.atlassian.net"\n'
                           '[projects.web]\ngithub = ["acme/web"]\njira = "project = WEB"\n')

    config = load_config(path)
    assert list(config.instances()) == ["github", "gitlab", "jira"]
    assert config.projects["web"].upstreams() == ["github", "jira"]
    assert config.projects["web"].jira == "project = WEB"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[projects.web]\ngithub = ["ghe:acme/web"]\n', "projects.web.github",
         "no github instance named 'ghe': add [github.ghe] with its URL"),
        ('[gitlab.corp]\n[projects.web]\ngithub = ["corp:acme/web"]\n', "projects.web.github",
         "no github instance named 'corp'"),
        ('[github.GHE]\n', "github.GHE", "an instance name is 1-32 lowercase letters"),
        ('[github.jira]\n', "github.jira", "not github, gitlab or jira"),
        ('[github.x]\n[gitlab.x]\n', "gitlab.x", "the name x is taken by [github.x]"),
        ('[jira.ops]\n[projects.web]\njira = {ops = "project = OPS"}\n', "projects.web.jira",
         "set `url` in [jira.ops]"),
        ('[github.ghe]\napi_url = "ghe.acme.com"\n', "github.ghe.api_url", "an http(s) URL"),
        ('[github.ghe]\ntoken_cmd = "x"\n', "github.ghe.token_cmd", "unknown key"),
    ],
)
def test_bad_instances_are_explained(tmp_path: Path, text: str, key: str, problem: str) -> None:
    error = refused(write(tmp_path, text))

    assert error.message.startswith(f"{error.context['file']}: `{key}`: ")
    assert problem in error.message
    assert error.exit_code == 2


def test_an_inline_token_of_a_named_instance_needs_a_private_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[github.ghe]\napi_url = "https://ghe.acme.com/api/v3"\n'
                           'token = "ghp_secret"\n', mode=0o644)

    error = refused(path)
    assert "`github.ghe.token`" in error.message
    assert "ghp_secret" not in shown(error)


# What people paste: URLs and `.git`, understood with a note; anything else echoed back.


def test_repository_urls_and_dot_git_are_understood_with_a_note(tmp_path: Path) -> None:
    path = write(tmp_path, '[github.ghe]\napi_url = "https://ghe.acme.com/api/v3"\n'
                           '[gitlab.corp]\nurl = "https://gitlab.acme.com"\n'
                           '[projects.web]\ngithub = ["https://github.com/acme/web",\n'
                           '  "acme/api.git", "git@github.com:acme/cli.git",\n'
                           '  "https://ghe.acme.com/platform/deploy/", "acme/plain"]\n'
                           'gitlab = ["https://gitlab.com/acme/platform/api/-/merge_requests",\n'
                           '  "git@gitlab.acme.com:infra/web.git"]\n')

    config = load_config(path)
    web = config.projects["web"]
    assert web.github == ["acme/web", "acme/api", "acme/cli", "ghe:platform/deploy",
                          "acme/plain"]
    assert web.gitlab == ["acme/platform/api", "corp:infra/web"]
    assert "projects.web.github[0]: read 'https://github.com/acme/web' as 'acme/web'" in \
        config.notes[0]
    assert len([n for n in config.notes if ".github[" in n]) == 4
    assert len([n for n in config.notes if ".gitlab[" in n]) == 2


def test_a_repository_on_an_unknown_host_is_refused_with_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, '[projects.web]\ngithub = ["https://ghe.other.com/acme/web"]\n')

    error = refused(path)
    assert error.context["key"] == "projects.web.github[0]"
    assert "(got 'https://ghe.other.com/acme/web')" in error.message


def test_a_project_path_that_does_not_exist_is_a_note(tmp_path: Path) -> None:
    (tmp_path / "there").mkdir()
    path = write(tmp_path, '[projects.web]\npaths = ["there", "~/no/such/dir"]\n')

    notes = load_config(path).notes
    assert notes == ["projects.web.paths: ~/no/such/dir does not exist (yet): no checkout "
                     "there belongs to the project until it does"]
