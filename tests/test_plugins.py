"""Plugins in real daemons: discovery, every hook, isolation of failing and hanging plugins."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sandbox
from test_sync_e2e import SYNC, call, join, wait_for

from projctl_client import render

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "projctl-plugin-example")
EVERY_DAY = '["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]'

PROJECT = """
[sync]
actor = "ann"

[projects.web]
paths = ["~/web"]
environments = ["staging", "production"]
"""


@pytest.fixture(scope="session")
def example_site() -> Iterator[str]:
    """The example package installed for real (pip, from a copy: pip builds in the source
    tree) into a directory that daemons get on their PYTHONPATH."""
    root = tempfile.mkdtemp(prefix="pjplugin")
    source = shutil.copytree(EXAMPLE, os.path.join(root, "source"))
    site = os.path.join(root, "site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", site, source], check=True, capture_output=True, timeout=300)
    yield site
    shutil.rmtree(root, ignore_errors=True)


def on_path(box: Sandbox, directory: str) -> None:
    box.env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [directory, box.env.get("PYTHONPATH", "")]))


def with_plugins(box: Sandbox, config: str, **modules: str) -> None:
    """Write plugin modules beside the sandbox, put them on the daemon's path, and the config."""
    directory = os.path.join(box.root, "plugins")
    os.makedirs(directory, exist_ok=True)
    for name, source in modules.items():
        with open(os.path.join(directory, f"{name}.py"), "w") as handle:
            handle.write(textwrap.dedent(source))
    on_path(box, directory)
    box.write_config(config)


def projctl(box: Sandbox, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = box.client(*args)
    assert result.returncode == code, (result.stdout, result.stderr)
    return result


def plugin_views(box: Sandbox) -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(projctl(box, "plugins", "--json").stdout)["plugins"]}


def event_types(box: Sandbox) -> list[str]:
    return [e["type"] for e in call(box, "log", project="web")["events"]]


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def test_the_example_package_is_found_by_its_entry_point(sandbox, example_site) -> None:
    on_path(sandbox, example_site)
    sandbox.write_config(PROJECT + f"\n[plugins.settings.example]\ndays = {EVERY_DAY}\n")
    daemon = sandbox.start_daemon()

    example = plugin_views(sandbox)["example"]
    assert (example["version"], example["source"], example["target"], example["loaded"]) == \
        ("0.1.0", "entry point", "projctl_plugin_example:DeployFreeze", True)
    assert example["hooks"] == ["projctl_configure", "projctl_request", "projctl_status_view",
                                "projctl_validate_deployment"]
    assert example["errors"] == 0
    assert "example 0.1.0  loaded" in projctl(sandbox, "plugins").stdout

    view = json.loads(projctl(sandbox, "status", "--json").stdout)
    (notice,) = view["notices"]
    assert notice.startswith("deploy freeze today (") and "production" in notice
    assert f"Notice    {notice}" in projctl(sandbox, "status").stdout

    refused = projctl(sandbox, "deploy", "production", "--project", "web", code=1)
    assert "refused by plugin example:\n  - no deployments to production on a " in refused.stderr
    assert "PROJCTL_DEPLOY_FREEZE=off projctl daemon restart" in refused.stderr
    assert "nothing was recorded or run" in refused.stderr
    projctl(sandbox, "deploy", "production", "--project", "web", "--dry-run", code=1)
    assert event_types(sandbox) == []
    projctl(sandbox, "deploy", "staging", "--project", "web")
    assert event_types(sandbox) == ["deployment.started", "deployment.completed"]

    assert stop(daemon) == 0
    sandbox.env["PROJCTL_DEPLOY_FREEZE"] = "off"
    daemon = sandbox.start_daemon()
    assert json.loads(projctl(sandbox, "status", "--json").stdout)["notices"] == []
    projctl(sandbox, "deploy", "production", "--project", "web")
    assert stop(daemon) == 0


def test_module_plugins_load_or_say_why_not(sandbox) -> None:
    with_plugins(sandbox, PROJECT + """
[plugins]
modules = ["plain", "stateful:Counter", "off", "nowhere.to.be.found", "typo", "unmarked"]
disabled = ["off"]
""", plain="""
        from projctld.plugins import hookimpl

        @hookimpl
        def projctl_before_request(request):
            pass
        """, stateful="""
        from projctld.plugins import hookimpl

        class Counter:
            def __init__(self):
                self.seen = 0

            @hookimpl
            def projctl_before_request(self, request):
                self.seen += 1
        """, off="raise RuntimeError('a disabled plugin is never imported')\n", typo="""
        from projctld.plugins import hookimpl

        @hookimpl
        def projctl_status(view):
            pass
        """, unmarked="""
        def projctl_status_view(view):
            return None
        """)
    sandbox.start_daemon()
    views = plugin_views(sandbox)
    assert list(views) == ["plain", "stateful:Counter", "off", "nowhere.to.be.found", "typo",
                           "unmarked"]
    assert views["plain"]["loaded"] and views["plain"]["version"] == "-"
    assert views["plain"]["hooks"] == ["projctl_before_request"]
    assert views["plain"]["source"] == "module"
    assert views["stateful:Counter"]["loaded"]
    assert views["off"]["disabled"] and not views["off"]["loaded"]
    assert views["off"]["last_error"] is None
    missing = views["nowhere.to.be.found"]
    assert not missing["loaded"]
    assert missing["last_error"] == "load: ModuleNotFoundError: No module named 'nowhere'"
    assert "projctl_status is not a projctl hook" in views["typo"]["last_error"]
    assert "projctl_status_view is not marked with @hookimpl" in views["unmarked"]["last_error"]
    text = projctl(sandbox, "plugins").stdout
    assert "nowhere.to.be.found -  failed to load" in text
    assert "  last error  load: ModuleNotFoundError" in text
    assert "off -  disabled" in text


BOOM = """
    from projctld.plugins import hookimpl

    @hookimpl
    def projctl_configure(config):
        raise RuntimeError("boom in configure")

    @hookimpl
    def projctl_before_request(request):
        raise RuntimeError("boom before")

    @hookimpl
    def projctl_after_request(request, reply):
        raise RuntimeError("boom after")

    @hookimpl
    def projctl_validate_deployment(project):
        raise RuntimeError("boom validate")

    @hookimpl
    def projctl_event(event):
        raise SystemExit(3)  # would end a thread quietly; must not end the daemon

    @hookimpl
    def projctl_status_view(view):
        raise RuntimeError("boom status")

    @hookimpl
    def projctl_upstreams(config):
        raise RuntimeError("boom upstreams")
    """

GOOD = """
    from projctld.plugins import hookimpl

    @hookimpl
    def projctl_validate_deployment(environment):
        return ["staging is being rebuilt"] if environment == "staging" else None

    @hookimpl
    def projctl_status_view(view):
        view.notices.append("good was here")
        return view
    """


def test_a_plugin_raising_in_every_hook_costs_nothing_but_its_own_answers(sandbox) -> None:
    with_plugins(sandbox, PROJECT + '\n[plugins]\nmodules = ["boom", "good"]\n',
                 boom=BOOM, good=GOOD)
    daemon = sandbox.start_daemon()

    assert json.loads(projctl(sandbox, "status", "--json").stdout)["notices"] == ["good was here"]
    projctl(sandbox, "note", "still", "works", "--project", "web")
    refused = projctl(sandbox, "deploy", "staging", "--project", "web", code=1)
    assert "refused by plugin good:\n  - staging is being rebuilt\n" in refused.stderr
    projctl(sandbox, "deploy", "production", "--project", "web")
    assert event_types(sandbox) == ["note.added", "deployment.started", "deployment.completed"]

    boom = plugin_views(sandbox)["boom"]
    assert boom["loaded"]
    assert len(boom["hooks"]) == 7
    # configure, upstreams, status; before, after and validate of each command; 3 events.
    assert wait_for(lambda: plugin_views(sandbox)["boom"]["errors"] >= 20)
    assert plugin_views(sandbox)["good"]["errors"] == 0
    projctl(sandbox, "ping")
    assert stop(daemon) == 0
    logged = [json.loads(line) for line in daemon.stderr.read().decode().splitlines()
              if line.startswith("{")]
    failures = {(line["hook"], line["error"]) for line in logged
                if line["event"] == "plugin_failed"}
    assert {("projctl_configure", "RuntimeError: boom in configure"),
            ("projctl_upstreams", "RuntimeError: boom upstreams"),
            ("projctl_status_view", "RuntimeError: boom status"),
            ("projctl_validate_deployment", "RuntimeError: boom validate"),
            ("projctl_before_request", "RuntimeError: boom before"),
            ("projctl_after_request", "RuntimeError: boom after"),
            ("projctl_event", "RuntimeError: SystemExit: 3")} == failures


def test_a_hanging_hook_is_abandoned_and_reported(sandbox) -> None:
    with_plugins(sandbox, PROJECT + '\n[plugins]\nmodules = ["hang"]\ntimeout = 0.3\n', hang="""
        import threading

        from projctld.plugins import hookimpl

        forever = threading.Event()

        @hookimpl
        def projctl_status_view(view):
            forever.wait()

        @hookimpl
        def projctl_validate_deployment(project):
            forever.wait()
        """)
    daemon = sandbox.start_daemon()
    first = json.loads(projctl(sandbox, "status", "--json").stdout)
    assert first["projects"][0]["name"] == "web"
    hang = plugin_views(sandbox)["hang"]
    assert hang["last_error"] == "projctl_status_view: did not return within 0.3 s " \
                                 "(plugins.timeout); abandoned"
    projctl(sandbox, "status")
    hang = plugin_views(sandbox)["hang"]
    assert hang["errors"] == 2
    assert hang["last_error"] == "projctl_status_view: skipped: a call that timed out " \
                                 "earlier has not returned yet"
    projctl(sandbox, "deploy", "production", "--project", "web")
    assert event_types(sandbox) == ["deployment.started", "deployment.completed"]
    # Threads stuck in plugins do not hold up an orderly exit.
    assert stop(daemon) == 0


def test_an_after_hook_can_replace_the_reply(sandbox) -> None:
    with_plugins(sandbox, PROJECT + '\n[plugins]\nmodules = ["advice"]\n', advice="""
        import msgspec

        from projctl_client.protocol import Error, SyncReport
        from projctld.plugins import hookimpl

        @hookimpl
        def projctl_after_request(request, reply):
            if isinstance(reply, Error) and reply.code == "unknown_project":
                return msgspec.structs.replace(
                    reply, suggestions=[*reply.suggestions, "ask #platform which exist"])
            if isinstance(reply, SyncReport):
                return {"type": "sync", "sync": "not a view"}
            return None
        """)
    sandbox.start_daemon()
    refused = projctl(sandbox, "log", "nosuch", code=1)
    assert refused.stderr.splitlines()[-1] == "  try: ask #platform which exist"
    assert "no hub configured" in projctl(sandbox, "sync").stdout
    advice = plugin_views(sandbox)["advice"]
    assert advice["errors"] == 1
    assert advice["last_error"].startswith(
        "projctl_after_request: returned dict that is not a reply: Expected `object`")


def test_a_plugin_upstream_takes_part_in_polling_and_status(sandbox) -> None:
    with_plugins(sandbox, PROJECT + '\n[plugins]\nmodules = ["gerrit"]\n', gerrit="""
        from projctld.errors import UpstreamError
        from projctld.plugins import Upstream, hookimpl

        def changes(project):
            return {"change_requests": [{
                "upstream": "gerrit", "repo": "acme/web", "number": 7, "ref": "gerrit#7",
                "title": "Plugin change", "url": "https://gerrit.example/7", "author": "ann",
                "source_branch": "feature", "target_branch": "main", "mine": True,
                "updated_at": 1700000000.0}]}

        def refuses(project):
            raise UpstreamError("the tracker said no", code="auth",
                                suggestions=["check the tracker's token"])

        @hookimpl
        def projctl_upstreams(config):
            return [Upstream("gerrit", changes, projects=["web"], interval=60),
                    Upstream("tracker", refuses, interval=60),
                    Upstream("github", changes)]
        """)
    sandbox.start_daemon()
    refreshed = projctl(sandbox, "refresh", code=1)
    assert "the tracker said no" in refreshed.stdout

    (web,) = json.loads(projctl(sandbox, "status", "--json").stdout)["projects"]
    (change,) = web["change_requests"]
    assert (change["ref"], change["title"], change["upstream"]) == \
        ("gerrit#7", "Plugin change", "gerrit")
    sources = {s["upstream"]: s for s in web["sources"]}
    assert sources["gerrit"]["error"] is None and sources["gerrit"]["fetched_at"]
    assert sources["tracker"]["error"] == {"code": "auth", "message": "the tracker said no",
                                           "suggestions": ["check the tracker's token"]}
    text = projctl(sandbox, "status").stdout
    assert "  Change requests  gerrit " in text
    assert "gerrit#7" in text and "Plugin change" in text
    assert "! tracker: the tracker said no" in text
    gerrit = plugin_views(sandbox)["gerrit"]
    assert gerrit["last_error"] == "projctl_upstreams: upstream name 'github' is taken"


RECORDER = """
    from projctld.plugins import hookimpl

    path = None

    @hookimpl
    def projctl_configure(settings):
        global path
        path = settings["file"]

    @hookimpl
    def projctl_event(event, origin):
        with open(path, "a") as handle:
            handle.write(f"{origin} {event.type} {event.actor}\\n")
    """


def test_events_reach_plugins_when_recorded_and_when_received(sandbox, more_sandboxes,
                                                              hub_server) -> None:
    hub = hub_server()
    ann, bob = join(sandbox, hub, "ann"), more_sandboxes()
    seen = os.path.join(bob.root, "seen.txt")
    with_plugins(bob, SYNC.format(url=hub.url, actor="bob") + f"""
[plugins]
modules = ["recorder"]

[plugins.settings.recorder]
file = "{seen}"
""", recorder=RECORDER)
    bob.env["PROJCTL_HUB_TOKEN"] = hub.token("bob", "web")
    bob.start_daemon()

    call(ann, "note", project="web", text="from ann")
    call(bob, "note", project="web", text="from bob")

    def lines() -> list[str]:
        try:
            with open(seen) as handle:
                return handle.read().splitlines()
        except FileNotFoundError:
            return []

    assert wait_for(lambda: {"received note.added ann", "recorded note.added bob"}
                    <= set(lines()))
    assert "received note.added bob" not in lines()  # its own event, pulled back, is not new


class _Webhook:
    """A Slack-like webhook on loopback that fails the first post with a 500."""

    def __init__(self) -> None:
        import http.server
        import threading

        posts: list[tuple[int, dict]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if not posts else 200
                posts.append((status, json.loads(body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.posts = posts
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0/B0/secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_notifier_posts_chosen_deployments_and_retries_after_a_500(sandbox) -> None:
    webhook = _Webhook()
    try:
        sandbox.write_config(PROJECT + f"""
[notify]
webhook = "{webhook.url}"
environments = ["production"]
backoff = 0.05
""")
        sandbox.start_daemon()
        projctl(sandbox, "deploy", "staging", "--project", "web")
        projctl(sandbox, "deploy", "production", "--project", "web")
        assert wait_for(lambda: len(webhook.posts) >= 2)
        # Posts go in order, so a post for staging would have come first.
        text = "ann deployed web to production in 0 s"
        assert webhook.posts == [(500, {"text": text}), (200, {"text": text})]
        notify = plugin_views(sandbox)["notify"]
        assert (notify["source"], notify["loaded"], notify["hooks"], notify["errors"]) == \
            ("built-in", True, ["projctl_event"], 0)
    finally:
        webhook.close()


def test_projctl_plugins_without_plugins_says_how_to_add_one(sandbox) -> None:
    sandbox.start_daemon()
    text = projctl(sandbox, "plugins").stdout
    assert text.startswith("Daemon plugins (projctld)\nno plugins loaded\n  to add one: "
                           "install a package with a `projctl.plugins` entry point")
    assert render.plugins([]) in text
    assert text.endswith("\n\nCommands (projctl NAME)\n  none: put an executable projctl-NAME "
                         "in a directory on PATH, or install a package with a "
                         "`projctl.commands` entry point\n")


def test_the_imports_the_readme_gives_plugin_authors_work() -> None:
    # The docs name these paths; moving a module inside projctld must not break a plugin.
    readme = (Path(__file__).parent.parent / "docs" / "workflows-and-plugins.md").read_text()
    assert "`from projctld.plugins import hookimpl, Upstream, Snapshot, RequestRefused`" in readme
    assert "`projctld.errors.UpstreamError`" in readme
    assert "`projctld.plugins.RequestRefused(message, suggestions=[...])`" in readme
    from projctld.errors import UpstreamError
    from projctld.plugins import RequestRefused, Snapshot, Upstream, hookimpl

    snapshot = Snapshot(change_requests=[])
    assert snapshot.tickets == [] and callable(hookimpl) and Upstream.__name__ == "Upstream"
    assert issubclass(UpstreamError, Exception)
    assert RequestRefused("no", suggestions=["x"]).code == "plugin_refused"
