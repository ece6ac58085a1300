"""The hub's config (hub.toml): the daemon's upstream tables and projects, plus the hub's keys."""

from __future__ import annotations

import os

import anyio
import pytest

from projctld.errors import ConfigError, UpstreamError
from projctld.hub.upstream.config import default_path, load_hub_config
from projctld.upstream.tokens import TokenSource


def write(tmp_path, text: str, mode: int = 0o600) -> str:
    path = os.path.join(tmp_path, "hub.toml")
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    return path


def test_a_missing_config_polls_nothing(tmp_path) -> None:
    config = load_hub_config(os.path.join(tmp_path, "absent.toml"))
    assert not config.polls and config.secrets == {}


def test_it_sits_beside_a_sqlite_database() -> None:
    assert default_path("sqlite:///var/lib/hub/hub.db", "/state") == "/var/lib/hub/hub.toml"
    assert default_path("postgresql://db/x", "/state") == "/state/hub.toml"


def test_instances_tokens_secrets_and_projects_are_read(tmp_path) -> None:
    token = os.path.join(tmp_path, "app-token")
    path = write(tmp_path, f"""
[hub]
lease = 20

[github]
token_file = "{token}"
webhook_secret_env = "HOOK"

[github.ghe]
api_url = "https://ghe.example.com/api/v3"
webhook_secret = "inline"

[projects.web]
github = ["acme/Web", "ghe:platform/deploy"]
""")
    config = load_hub_config(path, {"HOOK": "from-env"})
    assert config.lease == 20 and config.polls
    assert config.secrets == {"github": b"from-env", "ghe": b"inline"}
    assert config.token_files == {"github": token}
    assert config.projects_of("github", "acme/web") == ["web"]  # as GitHub compares: any case
    assert config.projects_of("ghe", "platform/deploy") == ["web"]
    assert config.projects_of("github", "acme/other") == []


@pytest.mark.parametrize(("text", "mode", "says"), [
    ('[github]\nwebhook_secret_env = "UNSET_HOOK"\n', 0o600, "UNSET_HOOK"),
    ('[github]\nwebhook_secret = "s"\n', 0o644, "chmod 600"),
    ('[hub]\nlease = 1\n', 0o600, "hub.lease"),
    ('[hub]\npoll = true\n', 0o600, "[hub] takes only `lease`"),
    ('[github]\ntoken_file = ""\n', 0o600, "github.token_file"),
    ('[projects.web]\ngithub = ["not a repo"]\n', 0o600, "projects.web.github"),
    ('[github\n', 0o600, "not valid TOML"),
])
def test_mistakes_are_refused_with_what_to_do(tmp_path, text: str, mode: int, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_hub_config(write(tmp_path, text, mode), {})
    error = caught.value
    assert says in " ".join([error.message, *error.suggestions])
    assert error.suggestions  # and what to do about it


def test_a_token_file_is_read_at_every_request(tmp_path) -> None:
    from projctld.config import GitHubConfig

    path = os.path.join(tmp_path, "token")
    source = TokenSource("GitHub", "github", GitHubConfig(token_env=""), {}, file=path)
    with pytest.raises(UpstreamError, match="cannot read the GitHub token"):
        anyio.run(source.get)
    for token in ("ghs_first", "ghs_rotated"):  # an installation token, rotated hourly
        with open(path, "w") as handle:
            handle.write(token + "\n")
        assert anyio.run(source.get) == token
    assert source.origin == f"the file {path}"


def test_doctor_needs_no_upstream_token_on_a_device_fed_by_the_hub(tmp_path) -> None:
    import httpx

    from projctld.config import load_config
    from projctld.ops.doctor import _upstream

    path = write(tmp_path, '[sync]\nhub = "http://127.0.0.1:9"\n\n[upstreams]\nvia = "hub"\n\n'
                           '[projects.web]\ngithub = ["acme/web"]\n')
    config = load_config(path)

    async def check():  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient() as http:
            return await _upstream(config, config.instance("github"), http, path)

    outcome = anyio.run(check)
    assert outcome.status == "skip" and "read from the team's hub" in outcome.detail
