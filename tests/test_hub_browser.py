"""The team pages in a real Chromium (the distribution's, driven by Playwright): sign in, see
the environments, the timeline and the metrics with their charts at desktop and phone widths,
with no console error; a teammate's event shows without a reload. Screenshots are saved in the
test's output directory for a person to look at."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from conftest import HubProcess
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from projctld.team.sync.events import Event, uuid7
from projctld.team.sync.hlc import pack

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing reaching beyond this machine (.ci/run installs the package).
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
DAY = 86400.0


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)",
                    pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                             headless=True)
        yield browser
        browser.close()


def push(hub: HubProcess, token: str, events: list[Event]) -> None:
    reply = httpx.post(f"{hub.url}/v1/events", content=msgspec.json.encode({"events": events}),
                       headers={"Authorization": f"Bearer {token}",
                                "Content-Type": "application/json"}, timeout=30)
    assert reply.status_code == 200, reply.text


def team_history(device: str, now: float) -> list[Event]:
    """Three weeks of a team: deployments to production and staging, a failure and its
    restore, notes (one trying a script), a branch and a workflow run."""
    events: list[Event] = []

    def add(kind: str, at: float, payload: dict, actor: str = "ann") -> None:
        events.append(Event(id=uuid7(at), device=device, seq=len(events) + 1,
                            hlc=pack(int(at * 1000)), project="web", actor=actor, type=kind,
                            payload=payload, created_at=at))

    for day in range(21):
        for environment in ("production", "staging") if day % 2 else ("staging",):
            end = now - day * DAY - 3 * 3600
            ident = uuid7(end)
            add("deployment.started", end - 95, {
                "deployment": ident, "environment": environment, "branch": "main",
                "commit": uuid.uuid4().hex + "abcd1234", "commit_time": end - (day % 5 + 1) * 3600})
            ok = day % 6 != 3
            add("deployment.completed" if ok else "deployment.failed", end, {
                "deployment": ident, "environment": environment, "duration": 95.0,
                "exit_status": 0 if ok else 2, "reason": "" if ok else "smoke test failed"})
    add("note.added", now - 7200, {"note": uuid7(), "text": "<script>alert(1)</script> is text"},
        actor="<b>bold</b>")
    add("branch.created", now - 5000, {"name": "fix-login", "base": "main"})
    run = uuid7()
    add("workflow.started", now - 4000, {"run": run, "workflow": "release"})
    add("workflow.completed", now - 3900, {"run": run, "workflow": "release", "success": True,
                                           "duration": 100.0})
    return events


@pytest.fixture
def hub(hub_server) -> tuple[HubProcess, str, str]:
    """A hub with the team's history: (hub, a writer's token, a reader's token)."""
    hub = hub_server()
    writer = hub.token("ann", "web")
    push(hub, writer, team_history(f"dev-{uuid.uuid4().hex}", time.time()))
    return hub, writer, hub.token("viewer", "web", write=False)


def watch(page: Page) -> list[str]:
    """Every console error and uncaught exception of `page`, as they come."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return problems


@pytest.mark.parametrize("size", list(SIZES))
def test_sign_in_and_see_environments_timeline_and_metrics(
        chromium: Browser, hub, size: str, tmp_path: Path) -> None:
    server, _, token = hub
    width, height = SIZES[size]
    context = chromium.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    problems = watch(page)

    page.goto(f"{server.url}/p/web")
    expect(page).to_have_url(f"{server.url}/signin")
    page.get_by_label("Hub token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/projects")
    page.get_by_role("link", name="web", exact=True).first.click()

    expect(page.get_by_role("heading", name="What is deployed where")).to_be_visible()
    for environment in ("production", "staging"):
        expect(page.get_by_role("heading", name=environment)).to_be_visible()
    expect(page.locator(".environment .deployed").first).to_contain_text("main")
    page.screenshot(path=tmp_path / f"{size}-project.png", full_page=True)

    page.get_by_role("link", name="Timeline").first.click()
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    expect(page.get_by_text("<script>alert(1)</script> is text")).to_be_visible()
    assert page.evaluate("window.__xss === undefined && document.querySelectorAll("
                         "'main script').length === 0")
    page.get_by_label("Type").select_option("deployment")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"type=deployment"))
    assert page.locator(".event.note").count() == 0 and page.locator(".event").count() == 50
    page.screenshot(path=tmp_path / f"{size}-timeline.png", full_page=True)

    page.get_by_role("link", name="Delivery metrics").first.click()
    expect(page.get_by_role("heading", name="Delivery metrics")).to_be_visible()
    charts = page.get_by_role("img")
    expect(charts).to_have_count(4)
    for title in ("Deployments per day", "Lead time (median) per day",
                  "Change failure rate per day", "Time to restore (median) per day"):
        expect(page.get_by_role("img", name=title)).to_be_visible()
    assert page.locator("svg.chart rect").count() > 5
    expect(page.get_by_role("table").first).to_contain_text("Deployment frequency")
    page.get_by_label("Period").select_option("90")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("img", name="Deployments per week")).to_be_visible()
    page.screenshot(path=tmp_path / f"{size}-metrics.png", full_page=True)

    if size == "phone":  # nothing wider than the screen but the tables, which scroll
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
    assert problems == [], problems
    context.close()


def test_a_teammates_event_shows_without_a_reload(chromium: Browser, hub,
                                                  tmp_path: Path) -> None:
    server, writer, token = hub
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{server.url}/signin")
    page.get_by_label("Hub token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{server.url}/p/web/timeline")
    marker = page.evaluate("document.title = 'kept'; 'kept'")  # gone if the page reloads

    push(server, writer, [Event(
        id=uuid7(), device=f"dev-{uuid.uuid4().hex}", seq=1, hlc=pack(int(time.time() * 1000)),
        project="web", actor="bob", type="note.added",
        payload={"note": uuid7(), "text": "hotfix is live"}, created_at=time.time())])

    expect(page.get_by_text("hotfix is live")).to_be_visible(timeout=20_000)
    expect(page.locator(".live-status")).to_contain_text("new events")
    assert page.title() == marker
    page.screenshot(path=tmp_path / "live-update.png", full_page=True)
    assert problems == [], problems
    context.close()
