"""A config edit never takes the offline log down: a restart checks the config first, a reload
applies it live or changes nothing, and a daemon that must start with a broken config still
records, shows and syncs the team's events, saying in every reply that the config is broken.
Real daemons, a real hub, real fake upstreams."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from conftest import free_port
from test_sync_e2e import wait_for
from test_upstream_status import config_text, configure, git_checkout, my_pull

BROKEN = "[projects.web]\n[daemon]\nlog_level = 'loud'\n"
PROBLEM = "`daemon.log_level`: expected one of debug, info, warning, error ('loud')"


def pid(sandbox) -> int:
    result = sandbox.client("status", "--json")
    return json.loads(result.stdout)["daemon"]["pid"]


def test_a_restart_with_a_broken_config_is_refused_and_the_daemon_stays(sandbox) -> None:
    sandbox.write_config("[projects.web]\n")
    assert sandbox.client("note", "-p", "web", "one").returncode == 0
    before = pid(sandbox)
    sandbox.write_config(BROKEN)

    restart = sandbox.client("daemon", "restart")
    assert restart.returncode == 2
    assert PROBLEM in restart.stderr and "not restarting" in restart.stderr
    reload = sandbox.client("daemon", "reload")
    assert reload.returncode == 2
    assert PROBLEM in reload.stderr and "projctld keeps running the config it has" in reload.stderr

    assert pid(sandbox) == before  # still the same daemon, on the config it had
    note = sandbox.client("note", "-p", "web", "two")
    assert note.returncode == 0 and note.stderr == ""
    check = subprocess.run([sys.executable, "-m", "projctld", "config", "check"],
                           env=sandbox.env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 2 and PROBLEM in check.stderr


def test_a_daemon_started_with_a_broken_config_serves_the_event_log(sandbox,
                                                                     hub_server) -> None:
    hub = hub_server()
    good = f'[sync]\nhub = "{hub.url}"\nactor = "ann"\n\n[projects.web]\npaths = ["~/web"]\n'
    sandbox.write_config(good)
    sandbox.env["PROJCTL_HUB_TOKEN"] = hub.token("ann", "web")
    checkout = git_checkout(os.path.join(sandbox.root, "web"), "main")
    assert sandbox.client("note", "one", cwd=checkout).returncode == 0
    os.kill(pid(sandbox), signal.SIGKILL)  # a crash; then an edit with a mistake
    sandbox.write_config(good + "[[[\n")

    # The first command of the day starts a daemon, which cannot read the config.
    note = sandbox.client("note", "two", cwd=checkout)
    assert note.returncode == 0, note.stderr
    assert f"warning: the config does not load: {sandbox.config_path} is not valid TOML" \
        in note.stderr
    assert "projctld runs the last config that loaded (web), and polls nothing" in note.stderr
    deploy = sandbox.client("deploy", "staging", cwd=checkout)
    assert deploy.returncode == 0, deploy.stderr
    synced = sandbox.client("sync", "--now")
    assert synced.returncode == 0, synced.stderr
    log = json.loads(sandbox.client("log", "web", "--json").stdout)
    assert [e["type"] for e in log["events"]] == ["note.added", "note.added",
                                                  "deployment.started", "deployment.completed"]
    assert log["sync"]["waiting"] == 0  # on the hub, through the last config's [sync]

    # Every reply says so: the status view, an error, a ping; a prompt prints nothing of it.
    view = json.loads(sandbox.client("status", "--json").stdout)
    assert view["config_error"]["path"] == sandbox.config_path
    assert "is not valid TOML" in view["config_error"]["message"]
    refresh = sandbox.client("refresh")
    assert refresh.returncode == 2 and "polling is paused" in refresh.stderr
    assert sandbox.client("ping").returncode == 2
    assert sandbox.client("daemon", "status").returncode == 2
    prompt = sandbox.client("prompt", "--timeout", "5000", cwd=checkout)
    assert prompt.returncode == 0 and prompt.stderr == ""
    doctor = json.loads(sandbox.client("doctor", "--json", timeout=90).stdout)
    (config,) = [check for check in doctor if check["name"] == "config"]
    assert config["status"] == "fail" and "projctld started without it" in config["detail"]

    # Mended: a reload, and the daemon runs it, with no restart.
    before = pid(sandbox)
    sandbox.write_config(good)
    reload = sandbox.client("daemon", "reload")
    assert reload.returncode == 0, reload.stderr
    assert sandbox.client("ping").returncode == 0
    view = json.loads(sandbox.client("status", "--json").stdout)
    assert view["config_error"] is None and view["daemon"]["pid"] == before


def test_a_reload_applies_live_and_names_what_needs_a_restart(sandbox, upstreams) -> None:
    checkout = git_checkout(os.path.join(sandbox.root, "web"), my_pull(upstreams).head_ref)
    base = config_text(upstreams, paths=[checkout])
    configure(sandbox, base)
    assert sandbox.client("refresh").returncode == 0
    before = pid(sandbox)
    api = os.path.join(sandbox.root, "api")
    os.makedirs(api)
    configure(sandbox, base + f'''
[projects.api]
paths = ["{api}"]
environments = ["prod"]

[prompt]
stale_marker = "STALE"

[daemon]
log_level = "debug"
max_connections = 10
metrics_listen = "{free_port()}"
''')
    reload = sandbox.client("daemon", "reload")
    assert reload.returncode == 0, reload.stderr
    assert "applied daemon, prompt, projects" in reload.stdout
    assert "applied only by a restart: daemon.max_connections, daemon.metrics_listen" \
        in reload.stdout

    # The new project is there at once, with its own environments, and nothing restarted.
    assert sandbox.client("note", "-p", "api", "hello").returncode == 0
    deploy = sandbox.client("deploy", "prod", "-p", "api", "--dry-run")
    assert deploy.returncode == 0, deploy.stderr
    view = json.loads(sandbox.client("status", "--json").stdout)
    assert [p["name"] for p in view["projects"]] == ["web", "api"]
    assert view["daemon"]["pid"] == before
    doctor = json.loads(sandbox.client("doctor", "--json", timeout=90).stdout)
    (config,) = [check for check in doctor if check["name"] == "config"]
    assert config["status"] == "warn" and config["fix"] == "projctl daemon restart"
    assert "daemon.max_connections, daemon.metrics_listen, which only a restart applies" \
        in config["detail"]

    # SIGHUP does the same; the project leaves again.
    configure(sandbox, base)
    os.kill(before, signal.SIGHUP)
    wait_for(lambda: [p["name"] for p in json.loads(
        sandbox.client("status", "--json").stdout)["projects"]] == ["web"])
    refused = sandbox.client("note", "-p", "api", "gone")
    assert refused.returncode == 1 and "no project named 'api'" in refused.stderr
    assert sandbox.client("refresh").returncode == 0  # polling goes on, on the kept sources
