"""The built-in notifier in-process: what it posts, which events, its bounded queue, no retry
of a refused post; and the config of plugins and the notifier."""

from __future__ import annotations

import http.server
import threading

import anyio
import httpx
import msgspec
import pytest

from projctld.config import NotifyConfig, load_config
from projctld.errors import ConfigError
from projctld.plugins.notifier import Notifier, message
from projctld.team.sync.events import Event


def event(kind: str, origin_payload: dict, actor: str = "ann") -> Event:
    return Event(id="01890a5d-ac96-774b-bcce-b302099a8057", device="dev1", seq=1, hlc=1,
                 project="web", actor=actor, type=kind, payload=origin_payload,
                 created_at=1.0)


def test_messages_read_well_and_are_escaped_for_slack() -> None:
    failed = event("deployment.failed", {"environment": "production", "duration": 185.0,
                                         "exit_status": 3, "reason": ""})
    assert message(failed) == \
        "ann's deployment of web to production failed after 3 min 5 s: exit status 3"
    started = event("deployment.started", {"environment": "staging", "branch": "main"})
    assert message(started) == "ann is deploying web main to staging"
    note = event("note.added", {"note": "x", "text": "<b> & co"})
    assert message(note) == "ann noted in web: &lt;b&gt; &amp; co"


def test_which_events_are_posted() -> None:
    async def check() -> None:
        async with httpx.AsyncClient() as client:
            notifier = Notifier(NotifyConfig(webhook="http://127.0.0.1:9/",
                                             events=["deployment", "note.added"],
                                             environments=["production"]),
                                client, lambda text, exc: None)
            production = event("deployment.completed", {"environment": "production"})
            assert notifier.wants(production, "recorded")
            assert not notifier.wants(production, "received")
            assert not notifier.wants(event("deployment.completed",
                                            {"environment": "staging"}), "recorded")
            assert notifier.wants(event("note.added", {"text": "hi"}), "recorded")
            assert not notifier.wants(event("note.edited", {"text": "hi"}), "recorded")
            assert not notifier.wants(event("deploymentx.done", {}), "recorded")

    anyio.run(check)


def test_the_queue_is_bounded_and_a_refused_post_is_not_retried() -> None:
    posts: list[bytes] = []

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    reports: list[str] = []

    async def check() -> None:
        async with httpx.AsyncClient() as client:
            config = NotifyConfig(webhook=f"http://127.0.0.1:{server.server_address[1]}/x",
                                  queue=2, retries=3, backoff=0.01)
            notifier = Notifier(config, client, lambda text, exc: reports.append(text))
            for text in ("one", "two", "three"):
                notifier._enqueue(text)
            assert notifier.dropped == 1
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(notifier.run)
                while len(reports) < 2:
                    await anyio.sleep(0.01)
                tasks.cancel_scope.cancel()

    try:
        anyio.run(check)
    finally:
        server.shutdown()
        server.server_close()
    assert [msgspec.json.decode(body) for body in posts] == [{"text": "one"}, {"text": "two"}]
    host = "127.0.0.1"
    assert reports == [f"the webhook on {host} was not reached after 1 attempt: HTTP 404"] * 2


@pytest.mark.parametrize(("text", "problem"), [
    ('[plugins]\nmodules = ["my plugin"]\n',
     '`plugins.modules[0]`: expected a module path, e.g. "mypkg.plugin"'),
    ('[plugins]\ntimeout = 0\n', "`plugins.timeout`: expected a number > 0"),
    ('[notify]\nwebhook = "hooks.slack.com/x"\n',
     '`notify.webhook`: expected a webhook URL, e.g. "https://hooks.slack.com/'),
    ('[notify]\norigins = ["mine"]\n',
     "`notify.origins[0]`: expected one of recorded, received"),
])
def test_plugin_config_mistakes_are_explained(tmp_path, text: str, problem: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert problem in caught.value.message


def test_plugin_settings_are_free_form_tables(tmp_path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[plugins.settings.example]\ndays = ["Friday"]\nlimit = 3\n')
    assert load_config(str(path)).plugins.settings == {"example": {"days": ["Friday"],
                                                                   "limit": 3}}
