"""The hub's team pages over real HTTP: sign-in, sessions and share links, who may see what,
CSRF on every form, escaping of what people wrote, the pages' content, and /v1/metrics."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from test_hub_http import GUARD, Hub, event, projctld, serving

from projctld.hub.storage.interface import SessionRecord, ShareRecord, hash_token, new_share
from projctld.hub.storage.sqlite import SqliteStorage
from projctld.hub.web.access import SESSION_COOKIE, SIGNIN_COOKIE
from projctld.team.sync.events import uuid7
from projctld.team.sync.wire import JSON

XSS = "<script>alert('x')</script>"
XSS_NAME = '"><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with serving(SqliteStorage(str(tmp_path_factory.mktemp("web") / "hub.db"))) as running:
        yield running


def browser(hub: Hub) -> httpx.Client:
    return httpx.Client(base_url=hub.url, timeout=GUARD)


def project() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


def push(hub: Hub, token: str, events: list) -> None:
    reply = httpx.post(f"{hub.url}/v1/events", content=msgspec.json.encode({"events": events}),
                       headers={"Authorization": f"Bearer {token}", "Content-Type": JSON},
                       timeout=GUARD)
    assert reply.status_code == 200, reply.text


def deployment(name: str, device: str, seq: int, environment: str, *, ok: bool = True,
               branch: str = "main", ago: float = 3600.0) -> list:
    ident = uuid7()
    now = time.time() - ago
    return [
        event(name, device, seq, type="deployment.started", created_at=now - 30,
              payload={"deployment": ident, "environment": environment, "branch": branch,
                       "commit": "0123456789abcdef", "commit_time": now - 7200}),
        event(name, device, seq + 1, type="deployment.completed" if ok else "deployment.failed",
              created_at=now, payload={"deployment": ident, "environment": environment,
                                       "duration": 30.0, "reason": "" if ok else "exit 3"}),
    ]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(client: httpx.Client, token: str) -> httpx.Response:
    form = client.get("/signin")
    return client.post("/signin", data={"token": token, "csrf": csrf_of(form.text)})


@pytest.fixture
def team(hub: Hub) -> tuple[str, str, str]:
    """A project with deployments and a hostile note, another project, and a reader of the
    first only: (project, other project, reader's token)."""
    name, other, device = project(), project(), f"dev-{uuid.uuid4().hex}"
    writer = hub.token("ann")
    push(hub, writer, [*deployment(name, device, 1, "production", ago=7200),
                       *deployment(name, device, 3, "production", ok=False),
                       *deployment(name, device, 5, "staging", branch=XSS),
                       event(name, device, 7, actor=XSS_NAME,
                             payload={"note": uuid7(), "text": f"look {XSS}"}),
                       event(other, device, 8, payload={"note": uuid7(),
                                                        "text": "secret of the other"})])
    return name, other, hub.token("reader", (name,), write=False)


def test_sign_in_sets_a_strict_http_only_session_that_shows_the_project(
        hub: Hub, team: tuple[str, str, str]) -> None:
    name, other, token = team
    with browser(hub) as client:
        assert client.get("/p/" + name).headers["location"] == "/signin"
        signed = sign_in(client, token)
        assert signed.status_code == 303 and signed.headers["location"] == "/projects"
        cookie = next(c for c in signed.headers.get_list("set-cookie")
                      if c.startswith(SESSION_COOKIE))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP here: Secure behind TLS, below
        assert token not in cookie

        listing = client.get("/projects")
        assert name in listing.text and other not in listing.text
        page = client.get(f"/p/{name}")
        assert page.status_code == 200
        assert "production" in page.text and "staging" in page.text
        assert "Signed in as <strong>reader</strong>" in page.text
        # What is deployed: the completed one, the failed attempt after it said apart.
        assert "since" in page.text and "Newest attempt" in page.text and "exit 3" in page.text


def test_a_session_is_secure_behind_tls(hub: Hub, team: tuple[str, str, str]) -> None:
    # As a TLS proxy on loopback says it (uvicorn trusts it from there); httpx itself keeps
    # Secure cookies from plain HTTP, so the form's is sent back by hand.
    tls = {"x-forwarded-proto": "https"}
    with browser(hub) as client:
        form = client.get("/signin", headers=tls)
        assert "Secure" in form.headers["set-cookie"]
        csrf = csrf_of(form.text)
        signed = client.post("/signin", data={"token": team[2], "csrf": csrf},
                             headers={**tls, "cookie": f"{SIGNIN_COOKIE}={csrf}"})
        assert signed.status_code == 303
        assert all("Secure" in cookie for cookie in signed.headers.get_list("set-cookie"))


def test_a_wrong_token_is_refused_and_no_token_ever_goes_in_an_address(
        hub: Hub, team: tuple[str, str, str]) -> None:
    with browser(hub) as client:
        refused = sign_in(client, "pjh_" + "0" * 48)
        assert refused.status_code == 401 and "does not know this token" in refused.text
        assert SESSION_COOKIE not in client.cookies
        signed = sign_in(client, team[2])
        for response in (*signed.history, signed):
            assert team[2] not in str(response.url)
        assert 'method="post" action="/signin"' in client.get("/signin").text


def test_another_projects_pages_are_404_and_show_nothing_of_it(
        hub: Hub, team: tuple[str, str, str]) -> None:
    name, other, token = team
    with browser(hub) as client:
        sign_in(client, token)
        for path in ("", "/timeline", "/metrics", "/deployments?environment=production",
                     "/changes?after=0"):
            page = client.get(f"/p/{other}{path}")
            assert page.status_code == 404, path
            assert "secret of the other" not in page.text
            assert page.text.count(other) <= 1  # only where it repeats what was asked
            nothing = client.get(f"/p/p{uuid.uuid4().hex[:10]}{path}")
            assert nothing.status_code == 404
        assert client.get(f"/p/{name}/timeline").status_code == 200
        with httpx.Client(base_url=hub.url) as api:
            refused = api.get("/v1/metrics", params={"project": other},
                              headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 403


def test_stored_scripts_in_notes_names_and_branches_are_shown_as_text(
        hub: Hub, team: tuple[str, str, str]) -> None:
    name, _, token = team
    with browser(hub) as client:
        sign_in(client, token)
        for path in (f"/p/{name}", f"/p/{name}/timeline",
                     f"/p/{name}/deployments?environment=staging",
                     f"/p/{name}/timeline?who={XSS}", f"/p/{name}/metrics?environment={XSS}"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
            assert page.headers["content-security-policy"].startswith("default-src 'none'")
            assert "'unsafe-inline'" not in page.headers["content-security-policy"]
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["referrer-policy"] == "same-origin"
            assert page.headers["x-frame-options"] == "DENY"
        timeline = client.get(f"/p/{name}/timeline").text
        assert "look &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in timeline
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in timeline
        assert "&lt;script&gt;" in client.get(f"/p/{name}").text  # the branch's name
        # The only scripts are the hub's own file.
        assert re.findall(r"<script[^>]*>", timeline) == [
            '<script src="/static/live.js" defer>']


def test_every_form_refuses_a_missing_or_wrong_csrf_field(
        hub: Hub, team: tuple[str, str, str]) -> None:
    token = team[2]
    with browser(hub) as client:
        client.get("/signin")
        for data in ({"token": token}, {"token": token, "csrf": "0" * 64}):
            refused = client.post("/signin", data=data)
            assert refused.status_code == 403 and "Form refused" in refused.text
        assert SESSION_COOKIE not in client.cookies
        # A form posted from another site's page (its Origin) is refused too.
        form = client.get("/signin")
        refused = client.post("/signin", data={"token": token, "csrf": csrf_of(form.text)},
                              headers={"origin": "https://evil.example"})
        assert refused.status_code == 403

        sign_in(client, token)
        page = client.get("/projects").text
        for data in ({}, {"csrf": "0" * 64}):
            assert client.post("/signout", data=data).status_code == 403
        assert client.get("/projects").status_code == 200  # still signed in
        out = client.post("/signout", data={"csrf": csrf_of(page)})
        assert out.status_code == 303 and out.headers["location"] == "/signin"
        assert client.get("/projects").headers["location"] == "/signin"


def test_every_post_form_on_every_page_carries_its_csrf_field(
        hub: Hub, team: tuple[str, str, str]) -> None:
    name, _, token = team
    with browser(hub) as client:
        pages = [client.get("/signin").text]
        sign_in(client, token)
        pages += [client.get(path).text for path in (
            "/projects", f"/p/{name}", f"/p/{name}/timeline", f"/p/{name}/metrics",
            f"/p/{name}/deployments?environment=production")]
        forms = [form for page in pages
                 for form in re.findall(r"<form[^>]*>.*?</form>", page, re.S)]
        posted = [form for form in forms if 'method="post"' in form]
        assert len(posted) == len(pages)  # sign-in, then sign-out on every page
        assert all(re.search(r'name="csrf" value="[0-9a-f]{64}"', form) for form in posted)
        assert all('method="get"' in form for form in forms if form not in posted)


def test_an_expired_session_and_a_revoked_token_end_the_sign_in(
        hub: Hub, team: tuple[str, str, str]) -> None:
    name = team[0]
    token = hub.token("carol", (name,), write=False)
    with browser(hub) as client:
        sign_in(client, token)
        assert client.get(f"/p/{name}").status_code == 200
        record = hub.call(hub.storage.list_tokens())[-1]
        assert record.user == "carol"
        hub.call(hub.storage.revoke_token(record.id))
        assert client.get(f"/p/{name}").headers["location"] == "/signin"

    reader = team[2]
    stale = "s" * 64
    now = time.time()
    hub.call(hub.storage.add_session(hash_token(stale), SessionRecord(
        user="reader", csrf="c", created_at=now - 13 * 3600, expires_at=now - 3600,
        token_hash=hash_token(reader))))
    with browser(hub) as client:
        client.cookies.set(SESSION_COOKIE, stale)
        assert client.get(f"/p/{name}").headers["location"] == "/signin"
        assert client.get("/").headers["location"] == "/signin"


def test_a_share_link_shows_one_project_read_only_until_revoked(
        hub: Hub, team: tuple[str, str, str]) -> None:
    name, other, _ = team
    secret, share_hash, share_id = new_share()
    now = time.time()
    hub.call(hub.storage.add_share(share_hash, ShareRecord(
        id=share_id, project=name, created_at=now, expires_at=now + 86400)))
    with browser(hub) as client:
        opened = client.get(f"/s/{secret}")
        assert opened.status_code == 200 and "production" in opened.text
        assert "Shared view of" in opened.text and "Sign out" not in opened.text
        cookie = next(c for c in opened.headers.get_list("set-cookie"))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        # Its pages, through the session (the secret stays in the one address).
        assert client.get(f"/p/{name}/metrics").status_code == 200
        assert client.get(f"/p/{name}/timeline").status_code == 200
        assert client.get(f"/p/{other}").status_code == 404
        assert name in client.get("/projects").text
        assert other not in client.get("/projects").text
        hub.call(hub.storage.revoke_share(share_id))
        assert client.get(f"/p/{name}").headers["location"] == "/signin"
        gone = client.get(f"/s/{secret}")
        assert gone.status_code == 404 and "production" not in gone.text


def test_an_expired_or_unknown_share_link_shows_nothing(
        hub: Hub, team: tuple[str, str, str]) -> None:
    name = team[0]
    secret, share_hash, share_id = new_share()
    now = time.time()
    hub.call(hub.storage.add_share(share_hash, ShareRecord(
        id=share_id, project=name, created_at=now - 100, expires_at=now - 1)))
    with browser(hub) as client:
        for path in (f"/s/{secret}", "/s/pjs_" + "0" * 48, "/s/" + "x" * 300):
            page = client.get(path)
            assert page.status_code == 404 and "production" not in page.text
        assert SESSION_COOKIE not in client.cookies


def test_a_share_session_ends_with_its_link(hub: Hub, team: tuple[str, str, str]) -> None:
    name = team[0]
    secret, share_hash, share_id = new_share()
    now = time.time()
    hub.call(hub.storage.add_share(share_hash, ShareRecord(
        id=share_id, project=name, created_at=now, expires_at=now + 1.5)))
    with browser(hub) as client:
        opened = client.get(f"/s/{secret}")
        assert opened.status_code == 200
        max_age = int(re.search(r"Max-Age=(\d+)", opened.headers["set-cookie"]).group(1))
        assert max_age <= 2
        deadline = time.monotonic() + GUARD
        while client.get(f"/p/{name}").status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert client.get(f"/p/{name}").headers["location"] == "/signin"


def test_the_metrics_page_shows_the_keys_charts_and_their_table(
        hub: Hub, team: tuple[str, str, str]) -> None:
    name, _, token = team
    with browser(hub) as client:
        sign_in(client, token)
        page = client.get(f"/p/{name}/metrics").text  # production by default
        assert "production, the 30 days" in page
        assert page.count('<svg class="chart"') == 4
        assert page.count("<title id=") == 4 and page.count("<desc id=") == 4
        assert 'role="img"' in page and "aria-labelledby=" in page
        assert "The numbers behind the charts" in page and page.count("<tr>") >= 30
        assert "<td>1 (0.03 a day)</td>" in page  # one completed deployment to production
        assert "50%" in page  # one failed of two that ended
        weekly = client.get(f"/p/{name}/metrics", params={"days": 90, "environment": ""}).text
        assert "Every environment, the 90 days" in weekly and "week" in weekly
        assert client.get(f"/p/{name}/metrics", params={"days": 8}).status_code == 400


def test_the_timeline_filters_by_type_environment_who_and_pages(
        hub: Hub, team: tuple[str, str, str]) -> None:
    name, _, token = team
    with browser(hub) as client:
        sign_in(client, token)

        def types(**params: str) -> list[str]:
            page = client.get(f"/p/{name}/timeline", params=params).text
            return re.findall(r'<span class="type">([a-z.]+)</span>', page)

        assert len(types()) == 7
        assert types(type="note") == ["note.added"]
        assert types(environment="staging") == ["deployment.completed", "deployment.started"]
        assert types(who="ann") == types() and types(who="nobody") == []
        assert len(types(since="1d")) == 7
        assert client.get(f"/p/{name}/timeline", params={"type": "Not a type"}
                          ).status_code == 400
        assert client.get(f"/p/{name}/timeline", params={"before": "x"}).status_code == 400


def test_the_live_poll_answers_when_an_event_arrives(
        hub: Hub, team: tuple[str, str, str]) -> None:
    name = team[0]
    with browser(hub) as client:
        sign_in(client, team[2])
        page = client.get(f"/p/{name}").text
        after = re.search(r'data-after="(\d+)"', page).group(1)
        push(hub, hub.token("ann"), [event(name, f"dev-{uuid.uuid4().hex}", 1)])
        reply = client.get(f"/p/{name}/changes", params={"after": after})
        assert reply.status_code == 200 and reply.json()["after"] > int(after)
    with browser(hub) as stranger:
        assert stranger.get(f"/p/{name}/changes").status_code == 401


def test_share_links_are_created_listed_and_revoked_from_the_command_line(
        sandbox, hub_server) -> None:
    hub = hub_server()
    database = ("--database", hub.database)
    created = projctld(sandbox.env, "share", "create", "--project", "web", "--days", "2",
                       "--url", hub.url + "/", *database)
    assert created.returncode == 0, created.stderr
    link = created.stdout.strip()
    assert link.startswith(f"{hub.url}/s/pjs_") and len(created.stdout.splitlines()) == 1
    assert "not shown again" in created.stderr and link not in created.stderr
    path_only = projctld(sandbox.env, "share", "create", "--project", "api", *database)
    assert path_only.stdout.startswith("/s/pjs_") and "--url" in path_only.stderr

    with httpx.Client(timeout=GUARD) as client:
        assert client.get(link).status_code == 200
        listed = projctld(sandbox.env, "share", "list", *database)
        header, *rows = listed.stdout.splitlines()
        assert header.split() == ["ID", "PROJECT", "CREATED", "EXPIRES", "STATE"]
        assert [(row.split()[1], row.split()[-1]) for row in rows] == [("web", "live"),
                                                                      ("api", "live")]
        assert link.rsplit("/", 1)[1] not in listed.stdout
        revoked = projctld(sandbox.env, "share", "revoke", rows[0].split()[0], *database)
        assert revoked.returncode == 0, revoked.stderr
        assert client.get(link).status_code == 404
        assert client.get(f"{hub.url}/p/web").headers["location"] == "/signin"
    assert projctld(sandbox.env, "share", "list", *database).stdout.splitlines()[1].split()[
        -1] == "revoked"
    unknown = projctld(sandbox.env, "share", "revoke", "nosuchid", *database)
    assert unknown.returncode == 1 and "share list" in unknown.stderr
    for bad in (("--project", "a b"), ("--project", "web", "--days", "0"),
                ("--project", "web", "--days", "366")):
        assert projctld(sandbox.env, "share", "create", *bad, *database).returncode == 2


def test_the_hub_checks_the_new_deployment_fields_and_takes_events_without_them(
        hub: Hub) -> None:
    name, device, token = project(), f"dev-{uuid.uuid4().hex}", hub.token("ann")
    started = {"deployment": uuid7(), "environment": "production"}
    bad = [{"commit_time": -1.0}, {"commit_time": "yesterday"}, {"change_request": 42},
           {"change_request": "x" * 300}]
    for number, fields in enumerate(bad, start=1):
        refused = httpx.post(f"{hub.url}/v1/events", timeout=GUARD, content=msgspec.json.encode(
            {"events": [event(name, device, number, type="deployment.started",
                              payload={**started, **fields})]}),
            headers={"Authorization": f"Bearer {token}", "Content-Type": JSON})
        assert refused.status_code == 400, fields
        assert refused.json()["code"] == "invalid_event"
    mark = {"deployment": started["deployment"], "environment": "production",
            "caused_failure": "yes"}
    refused = httpx.post(f"{hub.url}/v1/events", timeout=GUARD, content=msgspec.json.encode(
        {"events": [event(name, device, 1, type="deployment.marked", payload=mark)]}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": JSON})
    assert refused.status_code == 400
    # An older device's start, without them, is taken as before.
    push(hub, token, [event(name, device, 1, type="deployment.started", payload=started)])
