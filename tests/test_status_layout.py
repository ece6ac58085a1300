"""`projctl status` laid out for 60, 80, 120 and 200 columns over the field dataset: no row
wider than the terminal, nothing that matters dropped, what needs me first, every honest
state (not fetched yet, partly read, stale, each problem with its fix) at every width."""

from __future__ import annotations

import copy
import re
import unicodedata

import pytest

from projctl_client import status_text, terminal
from projctl_client.status_text import Options, needs_me, screen

WIDTHS = (60, 80, 120, 200)
REVIEW_WORDS = {"approved": ("approved",), "changes_requested": ("changes requested",
                                                                 "changes wanted"),
                "review_required": ("review required", "needs review")}
CI_WORDS = {"failure": "✗", "stuck": "◌ stuck", "running": "● running", "pending": "○ pending",
            "manual": "▷ manual", "canceled": "⊘ canceled", "success": "✓ passing",
            "skipped": "- skipped", "none": "· no CI"}


def written(view: dict, width: int, **options: object) -> str:
    return screen(view, Options(width=width, **options), now=view["generated_at"] + 5)


def unwrapped(text: str) -> str:
    """The text with its line breaks and indents as single spaces: what it says, however it
    was wrapped."""
    return " ".join(text.split())


def rows_of(text: str, change: dict) -> list[str]:
    """The line of a change request's row in a project's list, found by its ref (whole or
    without its owner), and the line under it where the row takes two (narrow widths)."""
    forms = (change["ref"], change["ref"].rsplit("/", 1)[-1])
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("    ") and not line[4].isspace() and line.split()[0] in forms:
            following = lines[index + 1] if index + 1 < len(lines) else ""
            return [line, following] if following.startswith(" " * 6) else [line]
    raise AssertionError(f"no row for {change['ref']}")


@pytest.fixture(scope="module")
def view(field_status) -> dict:
    return field_status.view


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("short", [False, True])
@pytest.mark.parametrize("paint", [False, True])
def test_no_row_is_wider_than_the_terminal(view, width: int, short: bool, paint: bool) -> None:
    text = written(view, width, short=short, colours=paint, links=paint)
    too_wide = [line for line in text.splitlines() if terminal.line_width(line) > width]
    assert not too_wide, too_wide
    if paint:
        assert "\033[" in text and "\033]8;;https://" in text
    else:
        assert "\033" not in text


@pytest.mark.parametrize("width", WIDTHS)
def test_every_change_request_keeps_its_facts(view, width: int) -> None:
    text = written(view, width)
    for project in view["projects"]:
        for change in project["change_requests"]:
            row = " ".join(rows_of(text, change))
            review = REVIEW_WORDS.get(change["review"])
            if review:
                assert any(words in row for words in review), (change["ref"], row)
            state = (change.get("ci") or {}).get("state", "none")
            assert CI_WORDS[state] in row, (change["ref"], row)
            failed = max(change["ci"]["failed"], len(change["ci"]["failing"])) \
                if change.get("ci") else 0
            if failed:
                assert f"{failed} failing" in row, (change["ref"], row)
            assert ("conflicts" in row) == bool(change.get("conflicts")), (change["ref"], row)
            if change.get("draft") and not change["title"].lower().startswith("draft"):
                assert "(draft)" in row, row


@pytest.mark.parametrize("width", WIDTHS)
def test_what_needs_me_comes_before_what_is_fine(view, width: int) -> None:
    text = written(view, width)
    blocks = _project_blocks(text, view)
    for project in view["projects"]:
        block = blocks[project["name"]]
        order = [needs_me(c) for c in sorted(
            project["change_requests"], key=lambda c: block.index(rows_of(block, c)[0]))]
        waiting = [rank for rank in order if rank is not None]
        assert waiting == sorted(waiting), order
        assert order[:len(waiting)] == waiting, order  # nothing fine before what needs me
        if any(rank == 0 for rank in order):
            assert "waiting for your review" in block
        if any(rank in (1, 2, 3) for rank in order):
            assert "yours, to fix" in block
        assert block.index("Change requests") < block.index("Tickets")


def _project_blocks(text: str, view: dict) -> dict[str, str]:
    lines = text.splitlines()
    names = [p["name"] for p in view["projects"]]
    starts = [i for i, line in enumerate(lines) if line.split()[:1] and line.split()[0] in names
              and not line.startswith(" ")]
    blocks = {}
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(lines)
        blocks[lines[start].split()[0]] = "\n".join(lines[start:end])
    return blocks


@pytest.mark.parametrize("width", WIDTHS)
def test_tickets_pipelines_and_the_current_branch_are_all_there(view, width: int) -> None:
    text = written(view, width)
    lines = [line.split() for line in text.splitlines()]
    for project in view["projects"]:
        for ticket in project["tickets"]:
            assert re.search(rf"^      {ticket['key']}\s", text, re.M), ticket["key"]
        for status, total in project["ticket_counts"].items():
            assert f"{status} ({total})" in text
            if total > 5:
                assert f"… {total - 5} more (projctl status --json)" in text
        for pipeline in project["pipelines"]:
            repos = (pipeline["repo"], pipeline["repo"].rsplit("/", 1)[-1])
            shown = [cells[1].rstrip("…") for cells in lines
                     if len(cells) > 2 and cells[0] in repos]
            assert any(pipeline["branch"].startswith(branch) for branch in shown), pipeline
    change = view["branch"]["change_request"]
    here = text.split("\n\n")[0]
    assert change["ref"] in here and change["title"] in unwrapped(here)
    assert "latest CI on this branch: ✗ failing (CI)" in unwrapped(here)
    assert "CI CI" not in text


def test_titles_get_what_the_fixed_columns_leave(view) -> None:
    # At 200 columns no title of the field dataset is cut; at 120 and 80 a title is cut
    # only when its table takes the whole width (no empty columns while a title is cut).
    wide = written(view, 200)
    for project in view["projects"]:
        for change in project["change_requests"]:
            assert change["title"] in rows_of(wide, change)[0]
    for width in (80, 120):
        text = written(view, width)
        for project in view["projects"]:
            changes = project["change_requests"]
            rows = [rows_of(text, change)[0] for change in changes]
            if not any("…" in row for row in rows):
                continue
            assert max(terminal.line_width(row) for row in rows) == width, rows
            for change, row in zip(changes, rows, strict=True):
                if "…" in row:  # only a title is ever cut in these rows
                    shown = row.index("…") + 1 - row.index(change["title"][:6])
                    shown += len(" (draft)") if "(draft)" in row else 0
                    assert shown >= status_text.TITLE_MIN, row


def test_failing_checks_are_shortened_with_a_count() -> None:
    ci = {"state": "failure", "failed": 3, "failing": ["test (3.12)", "lint", "e2e"]}
    cell = status_text._ci_cell(ci)
    assert cell.forms == ("✗ 3 failing: test (3.12), lint, e2e",
                          "✗ 3 failing: test (3.12), lint, +1", "✗ 3 failing: test (3.12), +2",
                          "✗ 3 failing")
    assert cell.at(30) == ("✗ 3 failing: test (3.12), +2", 28)
    assert cell.at(5) == ("✗ 3 failing", 11)  # never cut inside: the count always shows
    unnamed = status_text._ci_cell({"state": "failure", "failed": 7, "failing": ["a"]})
    assert unnamed.forms[0] == "✗ 7 failing: a, +6"
    running = status_text._ci_cell({"state": "running", "failed": 1, "failing": ["lint"]})
    assert running.forms[0] == "● running, 1 failing: lint"


@pytest.mark.parametrize("width", WIDTHS)
def test_short_is_one_line_per_project(view, width: int) -> None:
    text = written(view, width, short=True)
    lines = text.splitlines()
    names = [project["name"] for project in view["projects"]]
    here = len(text.split("\n\n")[0].splitlines())
    # One line each where what needs me fits; at 60 columns it may go on under its label.
    assert len(lines) - here - 1 <= len(names) * (1 if width >= 80 else 2), lines
    for project in view["projects"]:
        start = next(i for i, line in enumerate(lines) if line.startswith(project["name"] + " "))
        said = unwrapped("\n".join([lines[start], *[line for line in lines[start + 1:start + 2]
                                                    if line.startswith(" " * 10)]]))
        changes = project["change_requests"]
        to_review = sum(1 for c in changes if c["review_requested"])
        failing = sum(1 for c in changes
                      if c["mine"] and (c.get("ci") or {}).get("state") == "failure")
        conflicts = sum(1 for c in changes if c["mine"] and c.get("conflicts"))
        for count, words in ((to_review, "to review"), (failing, "failing"),
                             (conflicts, "in conflict")):
            assert (f"{count} {words}" in said) == bool(count), (words, said)
    assert "Tickets" not in text and "Change requests" not in text


def broken(view: dict) -> dict:
    """The view with every honest state in it: web partly read (a repository named with its
    fix), platform never fetched (tickets too), mobile's GitLab failing and stale."""
    view = copy.deepcopy(view)
    web, platform, mobile = view["projects"][:3]
    github = next(s for s in web["sources"] if s["upstream"] == "github")
    github["problems"] = [{"part": "acme/typo", "code": "not_found",
                           "message": "GitHub has no repository acme/typo, or the token cannot "
                                      "see it",
                           "suggestions": ["check the name in your config against "
                                           "https://github.com/acme/typo"]}]
    web["known"]["change_requests"] = "partial"
    web["change_requests"] = []
    for source in platform["sources"]:
        source.update(fetched_at=None, stale=False, polling=False,
                      error={"code": "token", "message": f"no token for {source['upstream']}",
                             "suggestions": [f"set the token of [{source['upstream']}]"]})
    platform.update(change_requests=[], pipelines=[], tickets=[], ticket_counts={},
                    known={"change_requests": "unknown", "pipelines": "unknown",
                           "tickets": "unknown"})
    gitlab = next(s for s in mobile["sources"] if s["upstream"] == "gitlab")
    gitlab.update(stale=True, error={"code": "unreachable",
                                     "message": "cannot reach GitLab at gitlab.example",
                                     "suggestions": ["check the network"]})
    return view


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("short", [False, True])
def test_every_honest_state_shows_at_every_width(view, width: int, short: bool) -> None:
    text = written(broken(view), width, short=short)
    flat = unwrapped(text)
    assert max(terminal.line_width(line) for line in text.splitlines()) <= width
    assert "! github: acme/typo: GitHub has no repository acme/typo, or the token cannot " \
           "see it" in flat
    assert "try: check the name in your config against https://github.com/acme/typo" in flat
    for upstream in ("github", "gitlab", "jira"):
        assert f"! {upstream}: no token for {upstream}" in flat
        assert f"try: set the token of [{upstream}]" in flat
    assert "! gitlab: cannot reach GitLab at gitlab.example" in flat
    assert "try: check the network" in flat
    assert not re.search("none open for you(?! in what could be read)", flat)
    if short:
        assert "nothing needs you in what could be read" in flat or "web 1" in flat
        assert "partly fetched: github" in flat
        assert "change requests not fetched yet" in flat and "tickets not fetched yet" in flat
        assert "failing: gitlab" in flat
    else:
        assert "none open for you in what could be read" in flat
        assert "partly fetched" in flat
        assert "not fetched yet" in flat
        assert "gitlab stale," in flat


def test_a_view_of_nothing_yet_reads_as_such() -> None:
    now = 1_800_000_000.0
    daemon = {"version": status_text.__version__, "started_at": now, "config_loaded_at": now,
              "config_path": "/home/me/.config/projctl/config.toml"}
    view = {"generated_at": now, "daemon": daemon, "checkout": None, "projects": [],
            "state": {"checkouts_known": 0, "created_at": now}}
    text = written(view, 60)
    assert "No projects configured yet. Add one to /home/me/.config/projctl/config.toml:" \
        in unwrapped(text)
    assert "Here      not in a git repository" in text


def test_upstream_text_cannot_write_escape_codes(view) -> None:
    evil = copy.deepcopy(view)
    change = evil["projects"][0]["change_requests"][0]
    change["title"] = "Fix\033]8;;https://evil.example\033\\ it\033[2J\u202enow\nplease"
    change["url"] = "https://x.example/\033]8;;evil"
    text = written(evil, 120, colours=True, links=True)
    assert "evil.example" in text  # shown as text ...
    assert "\033]8;;https://evil" not in text and "\033[2J" not in text  # ... never obeyed
    assert "\u202e" not in text and "\033]8;;https://x.example/" not in text


def test_text_is_measured_as_the_terminal_shows_it() -> None:
    assert terminal.text_width("plain") == 5
    assert terminal.text_width("日本語") == 6
    assert terminal.text_width("é") == 1 and terminal.text_width("e\u0301") == 1
    assert terminal.text_width("🚀 ok") == 5
    assert terminal.text_width("✓ ● ◌ ✗ …") == 9
    for char in "日ｱＡ한🚀":
        assert terminal.text_width(char) == (
            2 if unicodedata.east_asian_width(char) in ("W", "F") else 1)
    assert terminal.clip("日本語のタイトル", 7) == "日本語…"
    assert terminal.line_width("\033[31mred\033[0m \033]8;;https://x\033\\link\033]8;;\033\\") \
        == 8


def test_wrapping_keeps_colours_links_and_spaces() -> None:
    red = "\033[31m"
    line = f"{red}! gitlab: acme/typo: GitLab answered 404 Not Found for acme/typo\033[0m"
    lines = terminal.wrap(line, 30, 6)
    assert [terminal.visible(part) for part in lines] == [
        "! gitlab: acme/typo: GitLab", "      answered 404 Not Found", "      for acme/typo"]
    assert all(part.count(red) == 1 and part.endswith("\033[0m") for part in lines)
    assert lines[1].startswith(f"      {red}")
    assert terminal.wrap("Here      ~/src/web  main", 20, 10) == ["Here      ~/src/web",
                                                                   "          main"]
    linked = terminal.link("https://x.example/1", "a long linked phrase")
    broken_up = terminal.wrap(linked, 10)
    assert all(part.startswith("\033]8;;https://x.example/1") for part in broken_up)
    assert all(part.endswith("\033]8;;\033\\") for part in broken_up)
    assert terminal.fit(f"{red}abcdef\033[0m", 4) == f"{red}abc…\033[0m"


@pytest.mark.parametrize(("env", "tty", "expected"), [
    ({}, True, False),
    ({"TERM_PROGRAM": "iTerm.app"}, True, True),
    ({"VTE_VERSION": "7600"}, True, True),
    ({"VTE_VERSION": "4800"}, True, False),
    ({"TERM": "xterm-kitty"}, True, True),
    ({"WT_SESSION": "1"}, True, True),
    ({"TERM_PROGRAM": "WezTerm", "TMUX": "/tmp/tmux"}, True, False),
    ({"TERM_PROGRAM": "WezTerm", "PROJCTL_LINKS": "never"}, True, False),
    ({"PROJCTL_LINKS": "always"}, True, True),
    ({"PROJCTL_LINKS": "always"}, False, False),  # never into a pipe
    ({"PROJCTL_LINKS": "always", "NO_COLOR": "1"}, True, False),
    ({"PROJCTL_LINKS": "always", "TERM": "dumb"}, True, False),
    ({"TERM_PROGRAM": "vscode"}, False, False),
])
def test_links_where_the_terminal_shows_them_and_never_into_a_pipe(
        monkeypatch, env: dict, tty: bool, expected: bool) -> None:
    for name in ("TERM_PROGRAM", "VTE_VERSION", "TERM", "WT_SESSION", "TMUX", "STY",
                 "KITTY_WINDOW_ID", "DOMTERM", "PROJCTL_LINKS", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    class Stream:
        def isatty(self) -> bool:
            return tty

    assert terminal.links(Stream()) is expected


@pytest.mark.parametrize(("columns", "expected"), [
    ("", 80), ("120", 120), ("0", 80), ("abc", 80), ("-5", 80), ("7", 20), ("99999", 1000)])
def test_the_width_is_columns_else_the_terminal_else_80(monkeypatch, columns: str,
                                                        expected: int) -> None:
    monkeypatch.setenv("COLUMNS", columns)

    class Pipe:
        def fileno(self) -> int:
            raise OSError("not a terminal")

    assert terminal.width(Pipe()) == expected


def test_whatever_changes_in_a_row_shows_at_once(view) -> None:
    # Tables without ages are laid out once for what they show; a change to any of it is a
    # new layout, never the last one again.
    changed = copy.deepcopy(view)
    before = written(changed, 200)
    web = changed["projects"][0]
    fine = next(c for c in web["change_requests"] if needs_me(c) is None and c["mine"])
    fine["title"] = "A title nobody had before"
    fine["ci"] = {"state": "failure", "failed": 1, "failing": ["brand-new-check"],
                  "url": fine["ci"]["url"] if fine.get("ci") else None}
    other = next(c for c in web["change_requests"] if c is not fine and not c["conflicts"])
    other["conflicts"] = True
    ticket = web["tickets"][0]
    ticket["summary"], ticket["priority"] = "A summary nobody had before", "Blocker"
    after = written(changed, 200)
    assert after != before
    row = rows_of(after, fine)[0]
    assert "A title nobody had before" in row and "✗ 1 failing: brand-new-check" in row
    fix = after.index("yours, to fix")
    assert fix < after.index("A title nobody had before") < after.index("    yours (")
    assert "conflicts" in rows_of(after, other)[0]
    assert re.search(rf"{ticket['key']} +A summary nobody had before +Blocker", after)
    assert written(view, 200) == before  # and the first view still reads as it did
