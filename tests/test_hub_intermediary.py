"""The hub as the team's intermediary, end to end with real processes: fake GitHub, GitLab and
Jira, a real `projctld hub serve` polling them with hub.toml, devices with no upstream token
reading their state from it, and webhooks as each service documents them."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from conftest import HubProcess, Sandbox
from test_upstream_status import git_checkout, my_pull

from projctl_client import paths
from projctl_client.connection import request
from projctld.sandbox import deliveries
from projctld.sandbox.dataset import Check, generate
from projctld.sandbox.demo import TOKEN, Upstreams, start_fakes

SECRETS = {"GITHUB_WEBHOOK_SECRET": "It's a Secret to Everybody",
           "GITLAB_WEBHOOK_SECRET": "gl-hook-secret", "JIRA_WEBHOOK_SECRET": "jira-secret"}
UPSTREAM_TOKENS = ("GITHUB_TOKEN", "GITLAB_TOKEN", "JIRA_API_TOKEN", "GH_TOKEN")


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    with contextlib.ExitStack() as stack:
        yield start_fakes(stack, generate(github_repos=2, gitlab_projects=1, changes_per_repo=4,
                                          tickets=6, jira_projects=1))


def hub_toml(up: Upstreams, *, interval: float = 3600) -> str:
    """The hub's config: the fakes with inline tokens, secrets from the environment, and
    project web. A long interval: only a webhook (or the first poll) moves the state."""
    return f"""
[github]
api_url = "{up.github_url}"
token_env = ""
token = "{TOKEN}"
interval = {interval}
webhook_secret_env = "GITHUB_WEBHOOK_SECRET"

[gitlab]
url = "{up.gitlab_url}"
token_env = ""
token = "{TOKEN}"
interval = {interval}
webhook_secret_env = "GITLAB_WEBHOOK_SECRET"

[jira]
url = "{up.jira_url}"
email = "{up.data.jira_email}"
token_env = ""
token = "{TOKEN}"
interval = {interval}
webhook_secret_env = "JIRA_WEBHOOK_SECRET"

[projects.web]
github = {json.dumps(up.data.github_repos)}
gitlab = {json.dumps(up.data.gitlab_projects)}
jira = "project = {up.data.jira_projects[0]} ORDER BY updated DESC"
"""


def start_hub(hub_server: Callable[..., HubProcess], up: Upstreams, root: str) -> HubProcess:
    path = os.path.join(root, "hub.toml")
    with open(path, "w") as handle:
        handle.write(hub_toml(up))
    os.chmod(path, 0o600)
    return hub_server(None, "--config", path, env={**os.environ, **SECRETS})


def hub_cli(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "projctld", "hub", *args, "--database",
                           hub.database], capture_output=True, text=True, timeout=30)


def device(box: Sandbox, hub: HubProcess, user: str, checkout: str) -> Sandbox:
    """A device that reads upstream state from the hub and holds no upstream token at all."""
    box.write_config(f"""
[sync]
hub = "{hub.url}"

[upstreams]
via = "hub"

[projects.web]
paths = ["{checkout}"]
""")
    for name in UPSTREAM_TOKENS:
        box.env.pop(name, None)
    box.env["PROJCTL_HUB_TOKEN"] = hub.token(user, "web", write=False)
    box.start_daemon()
    return box


def status(box: Sandbox, checkout: str) -> dict:
    with box.connect() as conn:
        from projctl_client import git
        return conn.call(request("status", checkout=git.find_checkout(checkout)))


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(KeyError, IndexError, TypeError, StopIteration):
            if result := condition():
                return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def first_line(path: str) -> str:
    """The plain text of a prompt file (its first line)."""
    with open(path, encoding="utf-8") as handle:
        return handle.readline()


def send(hub: HubProcess, delivery: deliveries.Delivery) -> httpx.Response:
    return httpx.post(hub.url + delivery.path, content=delivery.body, headers=delivery.headers,
                      timeout=10)


def source(view: dict, upstream: str) -> dict:
    """The view of one source of project web ({} until the device holds one)."""
    return next((s for s in view["projects"][0]["sources"] if s["upstream"] == upstream), {})


def test_two_devices_without_tokens_see_each_services_webhook_in_status_and_prompt(
        sandbox, more_sandboxes, hub_server, upstreams) -> None:
    up = upstreams
    hub = start_hub(hub_server, up, sandbox.root)
    assert hub_cli(hub, "user", "set", "ann", "--github", up.data.github_login).returncode == 0
    listed = hub_cli(hub, "user", "list").stdout
    assert "ann" in listed and up.data.github_login in listed

    pull = my_pull(up)
    ann_checkout = git_checkout(os.path.join(sandbox.root, "web"), pull.head_ref)
    ann = device(sandbox, hub, "ann", ann_checkout)
    bob_box = more_sandboxes()
    bob_checkout = git_checkout(os.path.join(bob_box.root, "web"), pull.head_ref)
    bob = device(bob_box, hub, "bob", bob_checkout)

    # The hub's first poll reaches both devices: every source fetched, with the hub's times.
    for box, checkout in ((ann, ann_checkout), (bob, bob_checkout)):
        wait_for(lambda box=box, checkout=checkout: all(
            source(status(box, checkout), u).get("fetched_at")
            for u in ("github", "gitlab", "jira")), "the hub's state on a device")
    ann_view, bob_view = status(ann, ann_checkout), status(bob, bob_checkout)
    ours = ann_view["branch"]["change_request"]
    assert ours["url"].endswith(f"/{pull.number}") and ours["mine"] is True
    # The same pull request is the branch's for bob too, but not his (no identity mapped).
    assert bob_view["branch"]["change_request"]["url"] == ours["url"]
    assert bob_view["branch"]["change_request"]["mine"] is False
    # Team scope: every open pull request of the repositories, not only the hub token's.
    open_pulls = {pr.number for prs in up.data.pulls.values() for pr in prs
                  if pr.state == "open"}
    assert {cr["number"] for cr in ann_view["projects"][0]["change_requests"]
            if cr["upstream"] == "github"} == open_pulls
    assert ann_view["projects"][0]["known"]["change_requests"] == "complete"
    hub_fetched = source(ann_view, "github")["fetched_at"]
    assert source(bob_view, "github")["fetched_at"] == hub_fetched

    # GitHub: a check of the pull request's head starts (check_run created), and ann waits
    # for her CI with `projctl wait ci`, as with direct polling...
    secret = SECRETS["GITHUB_WEBHOOK_SECRET"].encode()
    # She pushed her HEAD: wait ci waits for the CI of that commit, not of the one before.
    pull.head_sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ann_checkout,
                                   capture_output=True, text=True, check=True).stdout.strip()
    pull.checks = [Check("integration", "check_run", "in_progress", None)]
    pull.updated_at = time.time()
    reply = send(hub, deliveries.github("check_run", deliveries.github_check_run(
        pull, "integration", None), secret))
    assert reply.status_code == 200 and reply.json()["status"] == "accepted"
    wait_for(lambda: status(ann, ann_checkout)["branch"]["change_request"]["ci"]["state"]
             == "running", "the running check on ann's device")
    waiting = subprocess.Popen([sys.executable, "-m", "projctl_client", "wait", "ci",
                                "--timeout", "60"], cwd=ann_checkout, env=ann.env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # ...then it fails; GitHub sends check_run (completed).
    pull.checks = [Check("integration", "check_run", "completed", "failure")]
    pull.updated_at = time.time()
    reply = send(hub, deliveries.github("check_run", deliveries.github_check_run(
        pull, "integration", "failure"), secret))
    assert reply.status_code == 200 and reply.json()["status"] == "accepted"
    assert waiting.wait(30) == 1, waiting.stderr.read()  # wait's exit status for failed CI
    assert "CI failed" in waiting.stdout.read()
    for box, checkout in ((ann, ann_checkout), (bob, bob_checkout)):
        wait_for(lambda box=box, checkout=checkout: status(box, checkout)["branch"][
            "change_request"]["ci"]["state"] == "failure", "the failed check on a device")
    prompt_file = os.path.join(paths.prompt_dir(ann.socket_path), ann_checkout.lstrip("/"),
                               ".branch", pull.head_ref)
    wait_for(lambda: "✗" in first_line(prompt_file), "the failed check in ann's prompt file")
    shown = ann.client("prompt", cwd=ann_checkout, timeout=20)
    assert "✗" in shown.stdout, shown.stdout + shown.stderr

    # GitLab: a merge request is renamed; GitLab sends a Merge Request Hook.
    mr = next(mr for mrs in up.data.merge_requests.values() for mr in mrs
              if mr.author == up.data.gitlab_username and mr.state == "opened")
    mr.title, mr.updated_at = "Renamed by a webhook", time.time()
    reply = send(hub, deliveries.gitlab("Merge Request Hook", deliveries.gitlab_merge_request(
        mr), SECRETS["GITLAB_WEBHOOK_SECRET"]))
    assert reply.status_code == 200 and reply.json()["status"] == "accepted"
    wait_for(lambda: any(cr["title"] == "Renamed by a webhook" for cr in status(
        bob, bob_checkout)["projects"][0]["change_requests"]), "the renamed merge request")

    # Jira: an issue moves; Jira sends jira:issue_updated, signed with the secret.
    ticket = next(t for t in up.data.tickets if t.project_key == up.data.jira_projects[0])
    ticket.summary, ticket.updated_at = "Moved by a webhook", time.time()
    reply = send(hub, deliveries.jira(deliveries.jira_issue_updated(ticket, up.jira_url),
                                      SECRETS["JIRA_WEBHOOK_SECRET"].encode()))
    assert reply.status_code == 200 and reply.json()["status"] == "accepted"
    wait_for(lambda: any(t["summary"] == "Moved by a webhook" for t in status(
        ann, ann_checkout)["projects"][0]["tickets"]), "the moved ticket")

    # A device's refresh asks the hub, never an upstream (it has no token for one anyway).
    asked = sum(len(fake.requests) for fake in (up.github, up.gitlab, up.jira))
    refreshed = ann.client("refresh", "web")
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    assert sum(len(fake.requests) for fake in (up.github, up.gitlab, up.jira)) == asked


def test_a_device_keeps_the_last_state_with_its_age_and_reason_when_the_hub_is_gone(
        sandbox, hub_server, upstreams) -> None:
    hub = start_hub(hub_server, upstreams, sandbox.root)
    pull = my_pull(upstreams)
    checkout = git_checkout(os.path.join(sandbox.root, "web"), pull.head_ref)
    ann = device(sandbox, hub, "ann", checkout)
    wait_for(lambda: source(status(ann, checkout), "github").get("fetched_at"), "the hub's state")
    before = source(status(ann, checkout), "github")

    hub.stop()
    gone = wait_for(lambda: (s := source(status(ann, checkout), "github"))["error"] and s,
                    "the hub's absence on the device")
    assert gone["error"]["code"] == "hub_unreachable"
    assert "cannot reach the hub" in gone["error"]["message"]
    assert gone["fetched_at"] == before["fetched_at"] and gone["stale"] is True
    view = status(ann, checkout)
    assert view["branch"]["change_request"]["number"] == pull.number  # still shown
    text = ann.client("status", cwd=checkout)
    assert text.returncode == 0 and "hub" in text.stdout

    # Restarted without the hub: the last state comes back from the state database at once.
    ann.client("daemon", "stop")
    ann.start_daemon()
    again = source(status(ann, checkout), "github")
    assert again["fetched_at"] == before["fetched_at"]
    hub.start()
    wait_for(lambda: source(status(ann, checkout), "github")["error"] is None,
             "the hub's return")


def test_a_device_sees_only_the_projects_its_token_reads(sandbox, hub_server,
                                                         upstreams) -> None:
    hub = start_hub(hub_server, upstreams, sandbox.root)
    token = hub.token("eve", "other", write=False)
    reply = httpx.get(hub.url + "/v1/upstream", params={"project": "web"},
                      headers={"authorization": f"Bearer {token}", "accept": "application/json"})
    assert reply.status_code == 403 and reply.json()["code"] == "forbidden"
    reader = hub.token("ann", "web", write=False)
    ok = wait_for(lambda: (r := httpx.get(
        hub.url + "/v1/upstream", params={"project": "web"},
        headers={"authorization": f"Bearer {reader}", "accept": "application/json"})
    ).json()["sources"] and r, "the hub's first poll")
    assert {s["upstream"] for s in ok.json()["sources"]} == {"github", "gitlab", "jira"}


def hub_state(hub: HubProcess, token: str) -> dict:
    reply = httpx.get(hub.url + "/v1/upstream", params={"project": "web"},
                      headers={"authorization": f"Bearer {token}", "accept": "application/json"})
    assert reply.status_code == 200, reply.text
    return reply.json()


def upstream_requests(up: Upstreams) -> int:
    return sum(len(fake.requests) for fake in (up.github, up.gitlab, up.jira))


def test_refused_replayed_and_unknown_deliveries_change_nothing(sandbox, hub_server,
                                                               upstreams) -> None:
    up = upstreams
    hub = start_hub(hub_server, up, sandbox.root)
    reader = hub.token("ann", "web", write=False)
    wait_for(lambda: len(hub_state(hub, reader)["sources"]) == 3, "the hub's first poll")
    pull = my_pull(up)
    secret = SECRETS["GITHUB_WEBHOOK_SECRET"].encode()
    good = deliveries.github("pull_request", deliveries.github_pull_request(pull), secret)
    other_body = deliveries.github("pull_request", deliveries.github_pull_request(
        pull, "closed"), secret)
    unknown = dict(deliveries.github_pull_request(pull))
    unknown["repository"] = {**unknown["repository"], "full_name": "evil/not-followed"}
    huge = dict(deliveries.github_pull_request(pull), padding="x" * (5 << 20))

    def without(delivery: deliveries.Delivery, header: str) -> deliveries.Delivery:
        return deliveries.Delivery(delivery.path, {k: v for k, v in delivery.headers.items()
                                                   if k != header}, delivery.body)

    cases = [
        # GitHub documents X-Hub-Signature-256 = sha256 HMAC of the raw body with the secret.
        ("no signature", without(good, "X-Hub-Signature-256"), 401, "unsigned"),
        ("another secret", deliveries.github("pull_request", deliveries.github_pull_request(
            pull), b"not the secret"), 401, "bad_signature"),
        ("a signature over another body", deliveries.Delivery(
            good.path, {**good.headers,
                        "X-Hub-Signature-256": other_body.headers["X-Hub-Signature-256"]},
            good.body), 401, "bad_signature"),
        ("a garbled signature", deliveries.github("pull_request", deliveries.github_pull_request(
            pull), secret, signature="sha256=zz"), 401, "bad_signature"),
        ("too large", deliveries.github("pull_request", huge, secret), 413, "too_large"),
        ("a named instance without a secret", deliveries.Delivery(
            "/v1/webhooks/github/ghe", good.headers, good.body), 401, "unknown_source"),
        ("a service the hub does not know", deliveries.Delivery(
            "/v1/webhooks/bitbucket", good.headers, good.body), 404, "not_found"),
        # GitLab sends the secret token itself in X-Gitlab-Token.
        ("GitLab's wrong token", deliveries.gitlab("Merge Request Hook", {
            "object_kind": "merge_request", "project": {"path_with_namespace":
                                                        up.data.gitlab_projects[0]}},
            "wrong"), 401, "bad_signature"),
        ("GitLab without a token", deliveries.gitlab("Merge Request Hook", {}, ""), 401,
         "unsigned"),
        # Jira Cloud signs admin webhooks with a secret as X-Hub-Signature: sha256=<hex>.
        ("Jira's wrong signature", deliveries.jira(deliveries.jira_issue_updated(
            up.data.tickets[0], up.jira_url), b"wrong"), 401, "bad_signature"),
    ]
    before, requests = hub_state(hub, reader), upstream_requests(up)
    for what, delivery, status_code, code in cases:
        reply = send(hub, delivery)
        assert (reply.status_code, reply.json().get("code")) == (status_code, code), what
    # A well-signed delivery for a repository no project follows: taken, and ignored.
    reply = send(hub, deliveries.github("pull_request", unknown, secret))
    assert reply.status_code == 202 and reply.json()["status"] == "ignored"
    time.sleep(1.0)  # what a refresh would have asked of the fakes has arrived by now
    assert upstream_requests(up) == requests
    assert hub_state(hub, reader) == before
    metrics = httpx.get(hub.url + "/metrics").text
    assert 'projctl_hub_webhooks_total{status="refused"} 8' in metrics  # the 401s and 400s
    assert 'projctl_hub_webhooks_total{status="ignored"} 1' in metrics

    # The good delivery moves the state once; the same delivery again (a replay, or GitHub's
    # redelivery: the same X-GitHub-Delivery) is acknowledged and does nothing.
    reply = send(hub, good)
    assert reply.status_code == 200 and reply.json()["status"] == "accepted"
    wait_for(lambda: hub_state(hub, reader)["next_after"] > before["next_after"],
             "the refresh the good delivery asked for")
    time.sleep(1.0)  # let that refresh end
    settled, requests = hub_state(hub, reader), upstream_requests(up)
    replayed = send(hub, good)
    assert replayed.status_code == 200 and replayed.json()["status"] == "duplicate"
    time.sleep(1.0)
    assert upstream_requests(up) == requests
    assert hub_state(hub, reader) == settled


def test_two_hub_processes_on_one_postgres_take_turns_polling_and_both_serve(
        sandbox, hub_server, upstreams) -> None:
    import psycopg
    from test_hub_storage import DSN

    schema = f"t_{os.urandom(8).hex()}"
    path = os.path.join(sandbox.root, "hub.toml")
    with open(path, "w") as handle:
        handle.write(hub_toml(upstreams))
    os.chmod(path, 0o600)
    url = f"{DSN}?schema={schema}"
    env = {**os.environ, **SECRETS}

    def holder() -> int | None:
        with psycopg.connect(DSN, autocommit=True) as conn:
            row = conn.execute(f"SELECT holder, expires_at FROM {schema}.leases").fetchone()
        return int(row[0].split(":")[1]) if row and row[1] > time.time() else None

    hubs: list[HubProcess] = []
    try:
        first = hub_server(url, "--config", path, env=env)
        second = hub_server(url, "--config", path, env=env)
        hubs += [first, second]
        pids = {first.process.pid: first, second.process.pid: second}
        leader = pids[wait_for(lambda: holder(), "a lease holder")]  # type: ignore[index]
        follower = second if leader is first else first
        reader = first.token("ann", "web", write=False)
        wait_for(lambda: len(hub_state(follower, reader)["sources"]) == 3,
                 "the leader's poll, served by the follower")
        assert hub_state(leader, reader) == hub_state(follower, reader)

        # A delivery to the process that does not poll is still acted on, and seen by both.
        before = hub_state(leader, reader)["next_after"]
        reply = send(follower, deliveries.github("pull_request", deliveries.github_pull_request(
            my_pull(upstreams)), SECRETS["GITHUB_WEBHOOK_SECRET"].encode()))
        assert reply.json()["status"] == "accepted"
        wait_for(lambda: hub_state(leader, reader)["next_after"] > before,
                 "the follower's refresh, seen by the leader")

        # The leader stops: the follower takes the polling over.
        leader.stop()
        assert wait_for(lambda: holder() == follower.process.pid, "the follower polling")
    finally:
        for hub in hubs:
            hub.stop()
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_a_device_with_tokens_falls_back_to_polling_directly(sandbox, upstreams) -> None:
    from conftest import free_port
    from test_upstream_status import config_text

    pull = my_pull(upstreams)
    checkout = git_checkout(os.path.join(sandbox.root, "web"), pull.head_ref)
    nowhere = f"http://127.0.0.1:{free_port()}"  # the hub is down, and stays so
    sandbox.write_config(config_text(upstreams, paths=[checkout]) + f"""
[sync]
hub = "{nowhere}"
token = "pjh_unused"

[upstreams]
via = "hub"
fallback = true
fallback_after = 5
""")
    os.chmod(sandbox.config_path, 0o600)
    sandbox.start_daemon()
    first = wait_for(lambda: (s := source(status(sandbox, checkout), "github")).get("error")
                     and s, "the hub's absence")
    assert first["error"]["code"] == "hub_unreachable" and first["fetched_at"] is None
    # After `fallback_after`, the next poll (a refresh here) reads GitHub with this token.
    def refreshed() -> dict:
        sandbox.client("refresh", "web", "--wait", "10")
        found = source(status(sandbox, checkout), "github")
        return found if found.get("fetched_at") and found["error"] is None else {}

    direct = wait_for(refreshed, "the direct poll")
    assert direct["fetched_at"] > 0
    assert status(sandbox, checkout)["branch"]["change_request"]["number"] == pull.number


def test_the_hubs_state_is_told_as_a_polls_is_never_its_first_read(tmp_path) -> None:
    """What notifications and `watch` hear of (Poller.on_read, on_polled) comes from the hub's
    state as from a poll: each change, but not the first read after a start."""
    from projctl_client.protocol import ChangeRequestView
    from projctld.config import Config, ProjectConfig
    from projctld.store.database import Database
    from projctld.store.snapshots import SnapshotTable
    from projctld.upstream.polling import Poller
    from projctld.upstream.providers.model import Snapshot

    db = Database(os.path.join(tmp_path, "state.db"))
    config = Config(projects={"web": ProjectConfig(paths=[])})
    key = ("web", "github")
    poller = Poller(config, {}, SnapshotTable(db), mirrored={key: (60.0, "github", None)})
    told: list[tuple[Snapshot, Snapshot]] = []
    polled: list[int] = []
    poller.on_read = lambda project, before, after: told.append((before, after))
    poller.on_polled = lambda: polled.append(1)

    def snapshot(title: str) -> Snapshot:
        return Snapshot(change_requests=[ChangeRequestView(
            upstream="github", repo="acme/web", number=1, ref="acme/web#1", title=title,
            url="https://github.com/acme/web/pull/1", author="ann", source_branch="b",
            target_branch="main", updated_at=1.0)])

    for title in ("first", "first", "second"):
        poller.mirror_update(key, snapshot=snapshot(title), fetched_at=time.time(),
                             attempted_at=time.time(), error=None)
    assert [(b.change_requests[0].title, a.change_requests[0].title) for b, a in told] == [
        ("first", "second")]
    assert len(polled) == 3
    (row,) = SnapshotTable(db).all()  # kept for the next start
    assert row.data is not None and row.data.change_requests[0].title == "second"
    db.close()


def gitlab_views(box: Sandbox, checkout: str) -> dict[int, dict]:
    return {cr["number"]: cr for cr in status(box, checkout)["projects"][0]["change_requests"]
            if cr["upstream"] == "gitlab"}


def test_gitlab_team_scope_each_device_picks_out_its_own_and_polls_do_not_grow_with_devices(
        sandbox, more_sandboxes, hub_server, upstreams) -> None:
    up = upstreams
    me = up.data.gitlab_username  # ann on GitLab
    path = up.data.gitlab_projects[0]
    opened = [mr for mr in up.data.merge_requests[path] if mr.state == "opened"]
    theirs = next(mr for mr in opened if mr.author != me)
    teammate = theirs.author  # bob on GitLab
    ann_own = next(mr for mr in opened if mr.author == me)
    # bob asks ann for a review of his merge request, which she has not given yet.
    theirs.reviewers = [me]
    theirs.reviewer_states.pop(me, None)
    theirs.approved_by = [u for u in theirs.approved_by if u != me]
    theirs.updated_at = time.time()

    hub = start_hub(hub_server, up, sandbox.root)
    for user, name in (("ann", me), ("bob", teammate)):
        assert hub_cli(hub, "user", "set", user, "--gitlab", name).returncode == 0
    pull = my_pull(up)
    ann_checkout = git_checkout(os.path.join(sandbox.root, "web"), pull.head_ref)
    ann = device(sandbox, hub, "ann", ann_checkout)
    wait_for(lambda: theirs.iid in gitlab_views(ann, ann_checkout), "the hub's GitLab state")

    def gitlab_requests_per_refresh(title: str, boxes: list[tuple[Sandbox, str]]) -> int:
        """GitLab's requests for one hub poll of it, moved by a Merge Request Hook (the
        GitLab webhook, its X-Gitlab-Token) and seen on every device."""
        up.gitlab.reset_log()
        theirs.title, theirs.updated_at = title, time.time()
        reply = send(hub, deliveries.gitlab("Merge Request Hook", deliveries.gitlab_merge_request(
            theirs), SECRETS["GITLAB_WEBHOOK_SECRET"]))
        assert reply.status_code == 200 and reply.json()["status"] == "accepted"
        for box, checkout in boxes:
            wait_for(lambda box=box, checkout=checkout: gitlab_views(box, checkout)[
                theirs.iid]["title"] == title, "the hub's refresh on a device")
        return len(up.gitlab.requests)

    one_device = gitlab_requests_per_refresh("Seen by one device", [(ann, ann_checkout)])
    bob_box = more_sandboxes()
    bob_checkout = git_checkout(os.path.join(bob_box.root, "web"), pull.head_ref)
    bob = device(bob_box, hub, "bob", bob_checkout)
    wait_for(lambda: theirs.iid in gitlab_views(bob, bob_checkout), "the hub's state on bob's")
    two_devices = gitlab_requests_per_refresh(
        "Seen by two devices", [(ann, ann_checkout), (bob, bob_checkout)])
    # One poll for the team: what GitLab is asked does not grow with the devices.
    assert one_device == two_devices > 0

    ann_views, bob_views = gitlab_views(ann, ann_checkout), gitlab_views(bob, bob_checkout)
    # Team scope: every open merge request of the project, on both devices.
    assert set(ann_views) == set(bob_views) == {mr.iid for mr in opened}
    # bob's merge request: his on his device only; the review he asked of ann flagged on hers.
    assert bob_views[theirs.iid]["mine"] is True and ann_views[theirs.iid]["mine"] is False
    assert ann_views[theirs.iid]["review_requested"] is True
    assert bob_views[theirs.iid]["review_requested"] is False
    # ann's own: hers on her device, not on bob's.
    assert ann_views[ann_own.iid]["mine"] is True and bob_views[ann_own.iid]["mine"] is False
    assert all(not cr["mine"] for cr in bob_views.values() if cr["author"] != teammate)


def test_a_device_works_out_its_users_flags_from_the_hubs_team_state() -> None:
    """The hub's flags are its token user's; a device sets mine, review_requested and reviewed
    for its own user (names compared as GitLab does, in any case), and none without an
    identity for that kind of upstream."""
    from projctl_client.protocol import ChangeRequestView
    from projctld.upstream.providers.model import Snapshot
    from projctld.upstream.viahub import _mine
    from projctld.upstream.wire import HubSource

    def cr(number: int, author: str, **fields: object) -> ChangeRequestView:
        return ChangeRequestView(
            upstream="gitlab", repo="acme/web", number=number, ref=f"acme/web!{number}",
            title="t", url="u", author=author, source_branch="b", target_branch="main",
            updated_at=1.0, **fields)

    source = HubSource(upstream="gitlab", kind="gitlab", version=1, snapshot=Snapshot(
        change_requests=[
            cr(1, "Ann"),
            cr(2, "bob", review_requested_from=["ann", "chen"], review_requested=True),
            cr(3, "bob", approved_by=["ann"]),
            cr(4, "ann", approved_by=["ann"]),  # her own: approved, but not "reviewed"
        ]))
    ann = {c.number: c for c in _mine(source, {"gitlab": "ann"}).change_requests}
    assert [ann[n].mine for n in (1, 2, 3, 4)] == [True, False, False, True]
    assert [ann[n].review_requested for n in (1, 2, 3, 4)] == [False, True, False, False]
    assert [ann[n].reviewed for n in (1, 2, 3, 4)] == [False, False, True, False]
    bob = {c.number: c for c in _mine(source, {"gitlab": "bob"}).change_requests}
    assert [bob[n].mine for n in (1, 2, 3, 4)] == [False, True, True, False]
    assert not any(c.review_requested or c.reviewed for c in bob.values())
    nobody = _mine(source, {"github": "ann"}).change_requests
    assert not any(c.mine or c.review_requested or c.reviewed for c in nobody)
