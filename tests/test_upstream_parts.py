"""End to end: a real projctld tells "not fetched", "partly fetched" and "none" apart, and one
bad repository, project or host costs only itself; Jira Data Center works as documented."""

from __future__ import annotations

import contextlib
import json
import os

from test_providers import github_roles, move_repo
from test_upstream_status import configure, git_checkout

from projctld.sandbox.dataset import generate
from projctld.sandbox.demo import TOKEN, Upstreams, start_fakes
from projctld.sandbox.fake_github import FakeGitHub


def instance_config(up: Upstreams, *, github: list[str] = (), gitlab: list[str] = (),
                    jql: str = "", paths: list[str] = (), extra: str = "",
                    jira_email: bool = True) -> str:
    email = f'email = "{up.data.jira_email}"' if jira_email else ""
    lines = [f"[projects.web]\npaths = {json.dumps(list(paths))}",
             f"github = {json.dumps(list(github))}", f"gitlab = {json.dumps(list(gitlab))}"]
    if jql:
        lines.append(f"jira = {json.dumps(jql)}")
    return f"""
[github]
api_url = "{up.github_url}"
token_env = ""
token = "{TOKEN}"

[gitlab]
url = "{up.gitlab_url}"
token_env = ""
token = "{TOKEN}"

[jira]
url = "{up.jira_url}"
{email}
token_env = ""
token = "{TOKEN}"
{extra}
""" + "\n".join(lines) + "\n"


def status(sandbox, *args: str, cwd: str | None = None) -> dict:
    shown = sandbox.client("status", "--json", *args, cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_one_bad_gitlab_project_costs_only_itself(sandbox, upstreams) -> None:
    # GitLab answers 404 {"message": "404 Project Not Found"} for a path it does not know or
    # the token cannot see (docs.gitlab.com/api/rest/troubleshooting): that project is named
    # with its fix, and every other project's merge requests still show.
    good = upstreams.data.gitlab_projects
    configure(sandbox, instance_config(upstreams, gitlab=[*good, "acme/typo"]))

    refreshed = sandbox.client("refresh", "web")
    assert refreshed.returncode == 1, refreshed.stdout  # something failed: scripts can tell
    assert "gitlab  partly" in refreshed.stdout
    assert "! acme/typo: GitLab answered 404 Not Found for project acme/typo" in \
        refreshed.stdout

    web = status(sandbox)["projects"][0]
    (source,) = web["sources"]
    assert source["error"] is None and source["fetched_at"]
    (problem,) = source["problems"]
    assert (problem["part"], problem["code"]) == ("acme/typo", "not_found")
    assert any("under `gitlab`" in fix for fix in problem["suggestions"])
    assert web["known"]["change_requests"] == "partial"
    mine = [cr for cr in web["change_requests"] if cr["mine"] or cr["review_requested"]]
    assert mine and {cr["repo"] for cr in mine} <= set(good)

    text = sandbox.client("status").stdout
    assert "partly fetched" in text
    assert "! gitlab: acme/typo: GitLab answered 404 Not Found for project acme/typo" in text
    assert "none open for you" not in text


def test_never_fetched_is_not_none(sandbox, upstreams) -> None:
    # No token at all: nothing was ever fetched, so nothing may read as "none".
    pull_branch = next(pr.head_ref for prs in upstreams.data.pulls.values() for pr in prs
                       if pr.author == upstreams.data.github_login)
    checkout = git_checkout(os.path.join(sandbox.root, "web"), pull_branch)
    text = instance_config(upstreams, github=upstreams.data.github_repos,
                           jql=f"project = {upstreams.data.jira_projects[0]}",
                           paths=[checkout]).replace(f'token = "{TOKEN}"', "")
    configure(sandbox, text)
    assert sandbox.client("refresh", "web").returncode == 1

    view = status(sandbox, cwd=checkout)
    web = view["projects"][0]
    assert web["known"] == {"change_requests": "unknown", "pipelines": "unknown",
                            "tickets": "unknown"}
    assert all(s["fetched_at"] is None and s["error"]["code"] == "token"
               for s in web["sources"])
    assert view["branch"]["change_request"] is None and view["branch"]["known"] == "unknown"

    shown = sandbox.client("status", cwd=checkout, env={"COLUMNS": "200"}).stdout
    assert "none open for you" not in shown
    assert "no open change request" not in shown
    assert "not fetched yet" in shown
    assert f"change request for {pull_branch}: not known yet" in shown
    assert "    none\n" not in shown  # the tickets' "none" is not said either
    # The prompt says "not known" too, never an absent change request as a fact.
    prompt = sandbox.client("prompt", cwd=checkout)
    assert prompt.stdout.split()[0] == "?", prompt.stdout


def test_jira_data_center_end_to_end(sandbox) -> None:
    # A Data Center site: REST v2 only, a personal access token as Bearer, flavour found by
    # /rest/api/2/serverInfo (deploymentType "DataCenter").
    data = generate(github_repos=1, gitlab_projects=1, changes_per_repo=2, tickets=40,
                    jira_projects=1)
    with contextlib.ExitStack() as stack:
        up = start_fakes(stack, data, jira_flavour="data-center")
        configure(sandbox, instance_config(up, jql=f"project = {data.jira_projects[0]}",
                                           jira_email=False))
        refreshed = sandbox.client("refresh", "web")
        assert refreshed.returncode == 0, refreshed.stdout
        web = status(sandbox)["projects"][0]
        assert web["known"] == {"tickets": "complete"}
        expected = [t for t in data.tickets if t.project_key == data.jira_projects[0]]
        assert sum(web["ticket_counts"].values()) == len(expected)
        assert {t["key"] for t in web["tickets"]} == {t.key for t in expected}
        assert any(t["sprint"] for t in web["tickets"])
        assert {r.path for r in up.jira.requests} >= {"/rest/api/2/serverInfo",
                                                     "/rest/api/2/field"}
        assert not [r for r in up.jira.requests if "/rest/api/3/" in r.path]


def test_two_github_hosts_in_one_project(sandbox) -> None:
    # github.com beside a GitHub Enterprise Server (REST at /api/v3, GraphQL at /api/graphql),
    # each with its own token: one project uses a repository of each, and the same name on
    # both hosts stays two repositories.
    dotcom_data = generate(github_repos=1, gitlab_projects=1, changes_per_repo=5, tickets=1)
    ghe_data = generate(github_repos=1, gitlab_projects=1, changes_per_repo=5, tickets=1,
                        seed=1)
    with contextlib.ExitStack() as stack:
        up = start_fakes(stack, dotcom_data)
        ghe = FakeGitHub(ghe_data, token="ghe-token", prefix="/api/v3")
        ghe_url = ghe.start()
        stack.callback(ghe.stop)
        configure(sandbox, instance_config(up, github=["acme/web-0", "ghe:acme/web-0"], extra=f"""
[github.ghe]
api_url = "{ghe_url}"
token_env = ""
token = "ghe-token"
"""))
        refreshed = sandbox.client("refresh", "web")
        assert refreshed.returncode == 0, refreshed.stdout
        assert "web          ghe     ok" in refreshed.stdout

        web = status(sandbox)["projects"][0]
        sources = {s["upstream"]: s for s in web["sources"]}
        assert set(sources) == {"github", "ghe"}
        assert sources["ghe"]["kind"] == "github" and sources["ghe"]["host"] == "127.0.0.1"
        assert all(s["fetched_at"] and not s["problems"] for s in sources.values())
        by_host = {name: {cr["url"] for cr in web["change_requests"] if cr["upstream"] == name}
                   for name in sources}

        def expected(data) -> set[str]:
            me = data.github_login
            return {f"https://github.com/{pr.repo}/pull/{pr.number}"
                    for pr in data.pulls["acme/web-0"] if pr.state == "open"
                    and any(github_roles(pr, me))}

        assert by_host["github"] == expected(dotcom_data) and by_host["github"]
        assert by_host["ghe"] == expected(ghe_data) and by_host["ghe"]
        # Each host saw only its own token.
        assert {r.headers["authorization"] for r in ghe.requests} == {"Bearer ghe-token"}
        assert "Bearer ghe-token" not in {r.headers["authorization"]
                                          for r in up.github.requests}

        text = sandbox.client("status").stdout
        assert "github " in text and " · ghe " in text
        doctor = json.loads(sandbox.client("doctor", "--json").stdout)
        check = next(c for c in doctor if c["name"] == "ghe")
        assert check["status"] == "ok" and check["detail"].startswith("127.0.0.1: token from")
        metrics = json.loads(sandbox.client("metrics", "--json").stdout)
        assert {"GitHub", "GitHub ghe"} <= {m["upstream"] for m in metrics["upstreams"]}


def test_saml_hides_one_organisation_and_the_rest_shows(sandbox) -> None:
    # GitHub answers 200 with data and errors side by side: each pull request of an
    # organisation enforcing SAML SSO (token not authorised) is a null node with a FORBIDDEN
    # error carrying extensions.saml_failure; X-GitHub-SSO says where to authorise the token.
    data = generate(github_repos=3, gitlab_projects=1, changes_per_repo=6, tickets=1)
    move_repo(data, "acme/web-1", "secure/web-1")
    data.saml_orgs.add("secure")
    with contextlib.ExitStack() as stack:
        up = start_fakes(stack, data)
        configure(sandbox, instance_config(up, github=data.github_repos))
        refreshed = sandbox.client("refresh", "web")
        assert refreshed.returncode == 1 and "github  partly" in refreshed.stdout

        web = status(sandbox)["projects"][0]
        (source,) = web["sources"]
        (problem,) = source["problems"]
        assert (problem["part"], problem["code"]) == ("secure/web-1", "saml")
        assert any("/orgs/secure/sso" in fix for fix in problem["suggestions"])
        assert {cr["repo"] for cr in web["change_requests"]} == {"acme/web-0", "acme/web-2"}
        text = sandbox.client("status").stdout
        assert "! github: secure/web-1: the secure organisation enforces SAML single sign-on" \
            in text
        assert "authorise the token for secure" in text


def test_rate_limited_keeps_the_last_data_and_says_when(sandbox, upstreams) -> None:
    # RATE_LIMITED in a 200 (docs.github.com: rate limits for the GraphQL API) is a rate
    # limit, not a bad repository name: the last good data stays, with when polling resumes.
    configure(sandbox, instance_config(upstreams, github=upstreams.data.github_repos))
    assert sandbox.client("refresh", "web").returncode == 0
    before = status(sandbox)["projects"][0]["change_requests"]
    upstreams.github.graphql_rate_limited(times=5)

    refreshed = sandbox.client("refresh", "web")
    assert refreshed.returncode == 1
    web = status(sandbox)["projects"][0]
    (source,) = web["sources"]
    assert source["error"]["code"] == "rate_limited", source["error"]
    assert "GraphQL budget is spent" in source["error"]["message"]
    assert web["change_requests"] == before and web["known"]["change_requests"] == "complete"
    assert "showing data from" in sandbox.client("status").stdout


def test_thirty_checks_are_counted_and_the_27th_failure_named(sandbox, upstreams) -> None:
    many = next(pr for prs in upstreams.data.pulls.values() for pr in prs
                if len(pr.checks) >= 30)
    failing = [c.name for c in many.checks if c.conclusion == "failure"]
    configure(sandbox, instance_config(upstreams, github=upstreams.data.github_repos))
    assert sandbox.client("refresh", "web").returncode == 0

    web = status(sandbox)["projects"][0]
    cr = next(cr for cr in web["change_requests"] if cr["url"].endswith(f"/{many.number}")
              and cr["repo"] == many.repo)
    assert cr["ci"]["state"] == "failure" and cr["ci"]["failing"] == failing
    assert (cr["ci"]["passed"], cr["ci"]["failed"]) == (len(many.checks) - 1, 1)
    wide = sandbox.client("status", env={"COLUMNS": "200"}).stdout
    assert f"✗ 1 failing: {failing[0]}" in wide
