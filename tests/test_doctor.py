"""`projctl doctor`: real daemons, fake upstreams and a real hub; never a token in the output."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import msgspec
import pytest

from projctl_client import frames
from projctl_client.connection import DaemonUnavailable
from projctl_client.protocol import PROTOCOL_VERSION, DaemonInfo, Error, Pong
from projctld.ops.doctor import parse_show, systemd_verdict
from projctld.sandbox.dataset import generate
from projctld.sandbox.demo import Upstreams, start_fakes

TOKEN = "pj-doctor-" + secrets.token_hex(12)
NAMES = ["config file", "socket", "daemon", "config", "github", "gitlab", "jira", "hub",
         "state database", "systemd", "plugin commands"]


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    with contextlib.ExitStack() as stack:
        yield start_fakes(stack, generate(github_repos=2, gitlab_projects=1, changes_per_repo=2,
                                          tickets=5, jira_projects=1), token=TOKEN)


def configure(sandbox, up: Upstreams, *, hub: str = "", github_env: str = "PJ_GH") -> None:
    data = up.data
    sandbox.write_config(f"""
[github]
api_url = "{up.github_url}"
token_env = "{github_env}"

[gitlab]
url = "{up.gitlab_url}"
token_env = "PJ_GL"

[jira]
url = "{up.jira_url}"
email = "{data.jira_email}"
token_env = "PJ_JIRA"

[sync]
hub = "{hub}"

[projects.web]
github = {json.dumps(data.github_repos)}
gitlab = {json.dumps(data.gitlab_projects)}
jira = "project = {data.jira_projects[0]}"
""")
    sandbox.env.update(PJ_GH=TOKEN, PJ_GL=TOKEN, PJ_JIRA=TOKEN)


def doctor(sandbox, *, text: bool = False
           ) -> tuple[subprocess.CompletedProcess[str], dict[str, dict]]:
    """`projctl doctor --json` and its checks by name; with `text`, the text form too."""
    result = sandbox.client("doctor", "--json", timeout=90)
    checks = json.loads(result.stdout)
    assert [check["name"] for check in checks] == NAMES
    assert all(set(check) == {"name", "status", "detail", "fix"} for check in checks)
    assert all(check["status"] in ("ok", "warn", "fail", "skip") for check in checks)
    assert all((check["fix"] is None) == (check["status"] in ("ok", "skip")) for check in checks)
    shown = result.stdout + result.stderr
    if text:
        human = sandbox.client("doctor", timeout=90)
        assert human.returncode == result.returncode
        shown += human.stdout + human.stderr
    for secret in (TOKEN, sandbox.env.get("PROJCTL_HUB_TOKEN")):
        assert not secret or secret not in shown
    return result, {check["name"]: check for check in checks}


def start(sandbox) -> None:
    started = sandbox.client("daemon", "start")
    assert started.returncode == 0, started.stderr


def test_a_healthy_setup_passes_every_check(hub_server, sandbox, upstreams) -> None:
    hub = hub_server()
    sandbox.env["PROJCTL_HUB_TOKEN"] = hub.token("ann", "web")
    configure(sandbox, upstreams, hub=hub.url)
    start(sandbox)

    result, checks = doctor(sandbox)
    assert result.returncode == 0, result.stdout
    assert {name for name, check in checks.items() if check["status"] != "ok"} <= {"systemd"}
    # Where the running daemon's token came from: here, the shell that started it.
    assert "token from $PJ_GH (inherited when projctld started) works for @octo-me" in \
        checks["github"]["detail"]
    assert "classic token with scopes read:org, repo" in checks["github"]["detail"]
    assert "has scopes read_api" in checks["gitlab"]["detail"]
    assert "Jira lists no token's permissions" in checks["jira"]["detail"]
    assert f"{hub.url} answers: hub 0.1.0 (sqlite)" in checks["hub"]["detail"]
    assert "reads web" in checks["hub"]["detail"]
    assert "integrity ok" in checks["state database"]["detail"]
    assert "the same as this projctl" in checks["daemon"]["detail"]

    text = sandbox.client("doctor").stdout
    assert "✓ github " in text and "✓ state database " in text
    assert TOKEN not in text and sandbox.env["PROJCTL_HUB_TOKEN"] not in text
    assert text.rstrip().endswith(("10 ok", "10 ok, 1 skipped"))


def test_a_missing_token_fails_and_names_the_variable(sandbox, upstreams) -> None:
    configure(sandbox, upstreams, github_env="PJ_NOWHERE")
    start(sandbox)
    result, checks = doctor(sandbox, text=True)
    assert result.returncode == 1
    github = checks["github"]
    assert github["status"] == "fail"
    assert "$PJ_NOWHERE is set neither in ~/config/projctl/environment nor in the environment " \
        "projctld was started with, and [github] has no token_command or token" in github["detail"]
    assert github["fix"] == "put PJ_NOWHERE=<the token> in ~/config/projctl/environment " \
        "(chmod 600), then projctl daemon reload; or export PJ_NOWHERE=<the token> and run " \
        "projctl daemon restart from that shell"
    assert checks["gitlab"]["status"] == "ok"

    configure(sandbox, upstreams)  # fixed in the file, but the daemon runs what it read
    _, checks = doctor(sandbox)
    assert checks["config"]["status"] == "warn"
    assert "is valid but changed since projctld read it" in checks["config"]["detail"]
    assert checks["config"]["fix"].startswith("projctl daemon reload")
    assert checks["github"]["status"] == "fail"
    # The fix, as doctor gives it: applied without a restart.
    assert sandbox.client("daemon", "reload").returncode == 0
    _, checks = doctor(sandbox)
    assert checks["config"]["status"] == "ok" and checks["github"]["status"] == "ok"


def test_a_refused_token_names_where_it_came_from_not_what_it_is(sandbox, upstreams) -> None:
    configure(sandbox, upstreams)
    sandbox.env["PJ_GH"] = wrong = "ghp_" + secrets.token_hex(16)
    start(sandbox)
    result, checks = doctor(sandbox)
    assert result.returncode == 1
    assert checks["github"]["detail"] == \
        "GitHub refused the token from $PJ_GH (inherited when projctld started) (401 " \
        "Unauthorized)"
    assert "/settings/tokens/new?scopes=repo" in checks["github"]["fix"]
    assert "put PJ_GH=<the token> in ~/config/projctl/environment" in checks["github"]["fix"]
    assert wrong not in result.stdout + sandbox.client("doctor").stdout


def test_scopes_as_each_api_tells_them(sandbox, upstreams) -> None:
    upstreams.gitlab.scopes = ["read_user"]
    upstreams.github.scopes = None  # a fine-grained token: GitHub lists nothing
    configure(sandbox, upstreams)
    start(sandbox)
    result, checks = doctor(sandbox)
    assert result.returncode == 1
    gitlab = checks["gitlab"]
    assert gitlab["status"] == "fail"
    assert "token from $PJ_GL (inherited when projctld started) has scopes read_user: projctl " \
        "needs read_api" in gitlab["detail"]
    assert f"{upstreams.gitlab_url}/-/user_settings/personal_access_tokens?name=projctl" \
        "&scopes=read_api" in gitlab["fix"]
    assert checks["github"]["status"] == "ok"
    assert "fine-grained" in checks["github"]["detail"]
    assert "the inbox (GitHub notifications, `projctl inbox done`) needs a classic token" in \
        checks["github"]["detail"]

    upstreams.gitlab.scopes = ["read_api"]
    upstreams.gitlab.expires_at = str(datetime.date.today() + datetime.timedelta(days=2))
    upstreams.github.scopes = ["read:org"]
    _, checks = doctor(sandbox)
    assert checks["gitlab"]["status"] == "warn"
    assert f"expires on {upstreams.gitlab.expires_at} (in 2 days)" in checks["gitlab"]["detail"]
    assert checks["github"]["status"] == "warn"
    assert "without `repo` the pull requests and CI of private repositories" in \
        checks["github"]["detail"]
    # The inbox: GitHub's notifications API takes classic tokens with `notifications` or
    # `repo` (docs.github.com/rest/activity/notifications); GitLab's mark_as_done writes, so
    # it needs `api` (docs.gitlab.com/api/todos).
    assert "nor can it read the inbox or mark it done (`notifications` or `repo`)" in \
        checks["github"]["detail"]
    assert "`projctl inbox done` needs the api scope" in checks["gitlab"]["detail"]
    upstreams.gitlab.scopes = ["api"]
    upstreams.github.scopes = ["notifications"]
    _, checks = doctor(sandbox)
    assert "inbox" not in checks["gitlab"]["detail"] + checks["github"]["detail"]


def test_a_damaged_state_database_fails_with_the_way_out(sandbox, upstreams) -> None:
    configure(sandbox, upstreams)
    start(sandbox)
    assert sandbox.client("daemon", "stop").returncode == 0
    database = os.path.join(sandbox.state_dir, "state.db")
    # An index whose schema row is gone leaves its pages owned by nothing.
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("CREATE INDEX doomed ON snapshots(project)")
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("DELETE FROM sqlite_master WHERE name = 'doomed'")
    conn.close()
    start(sandbox)

    result, checks = doctor(sandbox)
    assert result.returncode == 1
    state = checks["state database"]
    assert state["status"] == "fail"
    assert state["detail"].startswith(f"{database} is damaged: Page ")
    assert "is never used" in state["detail"]
    # tests/test_state_loss.py runs this advice and finds every note after it.
    assert state["fix"].startswith("projctl daemon stop && projctld db recover && "
                                   "projctl daemon start")


def test_loose_socket_permissions_fail(sandbox, upstreams) -> None:
    configure(sandbox, upstreams)
    start(sandbox)
    directory = os.path.dirname(sandbox.socket_path)
    os.chmod(directory, 0o755)
    os.chmod(sandbox.socket_path, 0o666)
    result, checks = doctor(sandbox)
    assert result.returncode == 1
    assert checks["socket"]["status"] == "fail"
    assert f"{directory} has mode 755, not 700" in checks["socket"]["detail"]
    assert checks["socket"]["fix"] == \
        f"chmod 700 {directory} && chmod 600 {sandbox.socket_path}"
    assert checks["daemon"]["status"] == "ok"


def test_a_daemon_of_another_version_is_told_to_restart(sandbox, upstreams) -> None:
    configure(sandbox, upstreams)
    # A real projctld that calls itself 0.0.9, as one left running by an upgrade would.
    old = subprocess.Popen(
        [sys.executable, "-c", "import sys, projctl_client; projctl_client.__version__ = "
         "'0.0.9'; from projctld.__main__ import main; sys.argv[1:] = ['run']; main()"],
        env=sandbox.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:  # (`projctl ping` would start a daemon of its own)
            assert old.poll() is None, old.stderr.read()
            with contextlib.suppress(DaemonUnavailable):
                sandbox.connect().close()
                break
            time.sleep(0.05)
        result, checks = doctor(sandbox)
    finally:
        old.terminate()
        old.wait(15)
    daemon = checks["daemon"]
    assert daemon["status"] == "warn"
    assert "projctld 0.0.9 (protocol 1)" in daemon["detail"]
    assert "but this projctl is 0.1.0" in daemon["detail"]
    assert daemon["fix"] == "projctl daemon restart  # runs the installed projctld"
    assert checks["github"]["status"] == "ok"  # the old daemon ran its checks itself
    assert result.returncode == 0


def test_a_daemon_that_does_not_know_doctor_gets_the_checks_run_without_it(sandbox) -> None:
    """An older daemon answers ping but refuses the unknown request, as a real one would."""
    os.makedirs(os.path.dirname(sandbox.socket_path), mode=0o700)
    info = DaemonInfo(version="0.0.5", protocol=PROTOCOL_VERSION, pid=os.getpid(),
                      started_at=time.time(), config_path=sandbox.config_path,
                      config_loaded_at=time.time(), socket_path=sandbox.socket_path,
                      state_path=os.path.join(sandbox.state_dir, "state.db"))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(sandbox.socket_path)
        os.chmod(sandbox.socket_path, 0o600)
        server.listen()

        def serve() -> None:
            for _ in range(2):  # the ping, then the doctor request
                conn, _ = server.accept()
                with conn:
                    header = conn.recv(4, socket.MSG_WAITALL)
                    body = conn.recv(frames.body_length(header), socket.MSG_WAITALL)
                    kind = msgspec.msgpack.decode(body)["type"]
                    reply = Pong(daemon=info) if kind == "ping" else Error(
                        code="bad_request", message=f"malformed request: unknown type {kind!r}")
                    conn.sendall(frames.frame(msgspec.msgpack.encode(reply)))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        result, checks = doctor(sandbox)
        thread.join(10)
    daemon = checks["daemon"]
    assert daemon["status"] == "warn"
    assert "projctld 0.0.5 (protocol 1)" in daemon["detail"]
    assert daemon["detail"].endswith("it could not run its checks (malformed request: unknown "
                                     "type 'doctor'), so they ran without it")
    assert daemon["fix"] == "projctl daemon restart  # runs the installed projctld"
    assert checks["config"]["status"] == "ok"  # from `projctld doctor`, run by the client
    assert result.returncode == 0, result.stdout


def test_an_unreachable_hub_fails(sandbox, upstreams) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    sandbox.env["PROJCTL_HUB_TOKEN"] = TOKEN
    configure(sandbox, upstreams, hub=url)
    start(sandbox)
    result, checks = doctor(sandbox)
    assert result.returncode == 1
    hub = checks["hub"]
    assert hub["status"] == "fail"
    assert hub["detail"].startswith(f"cannot reach the hub at {url}")
    assert hub["fix"] == f"curl {url}/v1/health  # must answer; else fix hub in [sync] of " \
                         f"{sandbox.config_path}"


def test_a_hub_token_without_the_project(hub_server, sandbox, upstreams) -> None:
    hub = hub_server()
    sandbox.env["PROJCTL_HUB_TOKEN"] = hub.token("ann", "other")
    configure(sandbox, upstreams, hub=hub.url)
    result, checks = doctor(sandbox)  # with the daemon down, as it runs offline
    assert result.returncode == 1
    assert "may not read project web" in checks["hub"]["detail"]
    assert "projctld hub token create --user ann --project web" in checks["hub"]["fix"]


def test_with_the_daemon_down_the_checks_run_without_it(sandbox, upstreams) -> None:
    configure(sandbox, upstreams)
    result, checks = doctor(sandbox)
    assert result.returncode == 0  # a warning: the next projctl command starts it
    assert checks["daemon"]["status"] == "warn"
    assert checks["daemon"]["detail"].startswith("projctld is not running")
    assert checks["daemon"]["fix"] == "projctl daemon start"
    assert all(checks[name]["status"] == "ok" for name in ("config", "github", "gitlab", "jira"))
    assert checks["state database"]["status"] == "skip"
    assert not os.path.exists(sandbox.socket_path)  # doctor never starts the daemon


def test_a_broken_config_is_shown_with_its_line(sandbox) -> None:
    sandbox.write_config("[daemon]\nlog_level = \n")
    result, checks = doctor(sandbox)
    assert result.returncode == 1
    assert checks["config"]["status"] == "fail"
    assert "is not valid TOML" in checks["config"]["detail"]
    assert "line 2" in checks["config"]["detail"]
    assert checks["config"]["fix"] == f"fix the line it names in {sandbox.config_path}"
    assert checks["github"]["status"] == "skip"


SOCKET_ON = """Id=projctld.socket
LoadState=loaded
UnitFileState=enabled
ActiveState=active
SubState=listening

Id=projctld.service
LoadState=loaded
UnitFileState=disabled
ActiveState={service}
SubState={sub}
"""


@pytest.mark.parametrize(("service", "sub", "status", "fix"), [
    ("inactive", "dead", "ok", None),
    ("active", "running", "ok", None),
    ("failed", "exit-code", "fail", "journalctl --user -u projctld.service -n 50  # says why; "
     "then: systemctl --user restart projctld.socket projctld.service"),
])
def test_systemd_unit_states(service: str, sub: str, status: str, fix: str | None) -> None:
    outcome = systemd_verdict(parse_show(SOCKET_ON.format(service=service, sub=sub)))
    assert (outcome.status, outcome.fix) == (status, fix)


def test_systemd_units_not_installed_or_not_enabled() -> None:
    missing = "Id=projctld.socket\nLoadState=not-found\n\nId=projctld.service\n" \
              "LoadState=not-found\n"
    assert systemd_verdict(parse_show(missing)).status == "skip"
    disabled = SOCKET_ON.format(service="inactive", sub="dead").replace(
        "UnitFileState=enabled", "UnitFileState=disabled")
    outcome = systemd_verdict(parse_show(disabled))
    assert (outcome.status, outcome.fix) == ("warn",
                                             "systemctl --user enable --now projctld.socket")
