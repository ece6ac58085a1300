"""Where things live: XDG defaults and overrides, and the private runtime directory."""

from __future__ import annotations

import os

import pytest

from projctl_client import paths


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("PROJCTL_CONFIG", "PROJCTL_SOCKET", "XDG_CONFIG_HOME", "XDG_STATE_HOME",
                 "XDG_RUNTIME_DIR", "TMPDIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_defaults_follow_xdg(clean_env) -> None:
    home = str(clean_env)
    assert paths.config_path() == f"{home}/.config/projctl/config.toml"
    assert paths.state_dir() == f"{home}/.local/state/projctl"
    assert paths.database_path() == f"{home}/.local/state/projctl/state.db"
    assert paths.socket_path() == f"/tmp/projctl-{os.getuid()}/projctld.sock"


def test_xdg_variables_and_projctl_overrides_win(clean_env, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/cfg")
    monkeypatch.setenv("XDG_STATE_HOME", "/st")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1")
    assert paths.config_path() == "/cfg/projctl/config.toml"
    assert paths.state_dir() == "/st/projctl"
    assert paths.socket_path() == "/run/user/1/projctl/projctld.sock"
    monkeypatch.setenv("PROJCTL_CONFIG", "~/my.toml")
    monkeypatch.setenv("PROJCTL_SOCKET", "/tmp/x.sock")
    assert paths.config_path() == f"{clean_env}/my.toml"
    assert paths.socket_path() == "/tmp/x.sock"


def test_relative_xdg_values_are_ignored_as_the_spec_says(clean_env, monkeypatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/run")
    assert paths.state_dir() == f"{clean_env}/.local/state/projctl"
    assert paths.runtime_dir() == f"/tmp/projctl-{os.getuid()}"


def test_private_dir_is_created_0700_and_only_projctls_own_are_tightened(clean_env,
                                                                         monkeypatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(clean_env / "run"))
    (clean_env / "run").mkdir()
    own = clean_env / "run" / "projctl"
    assert paths.ensure_private_dir(str(own)) is True
    assert own.stat().st_mode & 0o777 == 0o700
    own.chmod(0o755)
    assert paths.ensure_private_dir(str(own)) is False
    assert own.stat().st_mode & 0o777 == 0o700
    # The sandbox's state directory brings projctl's state directory with it, both 0700.
    sandbox = os.path.dirname(paths.database_path(sandbox=True))
    paths.ensure_private_dir(sandbox)
    assert os.stat(paths.state_dir()).st_mode & 0o777 == 0o700
    # A directory of the user's own, not projctl's: checked, never changed.
    mine = clean_env / "mine"
    mine.mkdir(mode=0o755)
    mine.chmod(0o755)
    assert paths.ensure_private_dir(str(mine)) is False
    assert mine.stat().st_mode & 0o777 == 0o755


def test_a_shared_directory_is_refused_and_left_as_it_was(tmp_path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(paths.InsecureDirectory, match="is shared: other users may write in it "
                                                      r"\(mode 1777\)"):
        paths.ensure_private_dir(str(shared))
    assert shared.stat().st_mode & 0o7777 == 0o1777


def test_private_dir_refuses_a_symlink_or_someone_elses_directory(tmp_path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(paths.InsecureDirectory, match="is a symbolic link, not a directory"):
        paths.ensure_private_dir(str(tmp_path / "link"))
    if os.geteuid() != 0:
        pytest.skip("needs root to create a directory owned by another user")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    with pytest.raises(paths.InsecureDirectory, match="belongs to uid 65534"):
        paths.ensure_private_dir(str(theirs))
