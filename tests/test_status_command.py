"""`projctl status` as users run it over the field dataset: in a pipe, in a real 80x24
terminal (tmux), `--short`, `--project`, `--json` written by the daemon, and `projctl open`."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import time
from collections import Counter
from types import SimpleNamespace

import pytest

from projctl_client import git, hotpath, jsonout, terminal
from projctl_client.connection import request
from projctl_client.protocol import (
    ChangeRequestView,
    DaemonInfo,
    ProjectView,
    SourceView,
    StateInfo,
    Status,
    StatusOutput,
    StatusView,
)
from projctld.daemon import status, status_output


def test_a_pipe_gets_80_columns_and_no_escape_codes(field_status) -> None:
    shown = field_status.box.client("status", cwd=field_status.checkout)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(terminal.line_width(line) for line in lines) == 80
    assert "\033" not in shown.stdout
    narrow = field_status.box.client("status", cwd=field_status.checkout,
                                     env={"COLUMNS": "60"}).stdout
    assert max(terminal.line_width(line) for line in narrow.splitlines()) == 60
    assert "waiting for your review" in shown.stdout and "yours, to fix" in shown.stdout


def test_project_and_short_choose_what_is_shown(field_status) -> None:
    box, checkout = field_status.box, field_status.checkout
    names = [p["name"] for p in field_status.view["projects"]]
    only = box.client("status", "--project", "mobile", cwd=checkout)
    assert only.returncode == 0, only.stderr
    assert "\nmobile " in only.stdout and "\nweb " not in only.stdout
    assert only.stdout.startswith("Here ")  # the checkout still shows where it is
    short = box.client("status", "--short", "-p", "data", cwd=checkout).stdout
    project_lines = [line for line in short.splitlines() if line.split()[:1] == ["data"]]
    assert len(project_lines) == 1 and "to review" in project_lines[0]
    every = box.client("status", "--short", cwd=checkout).stdout
    assert [line.split()[0] for line in every.splitlines()
            if line.split()[:1] and line.split()[0] in names] == names
    as_json = json.loads(box.client("status", "--json", "--project=infra").stdout)
    assert [p["name"] for p in as_json["projects"]] == ["infra"]


def test_an_unknown_project_lists_the_known_ones(field_status) -> None:
    box = field_status.box
    wrong = box.client("status", "--project", "mobil")
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert "no project named 'mobil' (configured: web, platform, mobile, data, infra)" \
        in wrong.stderr
    assert "try: projctl status --project mobile" in wrong.stderr
    assert box.client("status", "--json", "-p", "nope").returncode == 1
    both = box.client("status", "--json", "--short")
    assert both.returncode == 2 and "--short lays out the text" in both.stderr


def test_json_is_the_view_as_the_client_wrote_it_before(field_status) -> None:
    # The daemon writes `status --json` now; it must be the bytes the client wrote from the
    # view: json.dumps(indent=2, ensure_ascii=False) order, no "type", config_error last.
    here = git.find_checkout(field_status.checkout)
    with field_status.box.connect() as conn:
        written = conn.call(request("status", checkout=here, output="json"))
        view = conn.call(request("status", checkout=here))
    assert written["type"] == "status_output"
    del view["type"]
    view["config_error"] = view.pop("config_error", None)
    assert written["output"].decode() == jsonout.dumps(view) + "\n"
    shown = field_status.box.client("status", "--json", cwd=field_status.checkout).stdout
    parsed = json.loads(shown)
    assert list(parsed)[-1] == "config_error" and "type" not in parsed
    assert sum(len(p["tickets"]) for p in parsed["projects"]) == 300  # all, not five a status


def test_a_daemon_that_sends_the_view_gets_it_written_here(field_status) -> None:
    # What a daemon from before outputs answers (it ignores `project` too), and what any
    # daemon answers when the output would not fit in a frame.
    fields = {"output": "text", "width": 80, "colours": False, "links": False}
    text = hotpath._written_here({"type": "status", **json.loads(json.dumps(
        field_status.view))}, fields, "platform")
    assert "\nplatform " in text and "\nweb " not in text
    assert max(terminal.line_width(line) for line in text.splitlines()) <= 80
    with pytest.raises(hotpath.ClientError, match="no project named 'nope'"):
        hotpath._written_here({"type": "status", **json.loads(json.dumps(
            field_status.view))}, fields, "nope")
    as_json = hotpath._written_here({"type": "status", "config_error": None,
                                     **json.loads(json.dumps(field_status.view))},
                                    {"output": "json"}, None)
    assert json.loads(as_json)["projects"][0]["name"] == "web"


def small_view(**project: object) -> StatusView:
    info = DaemonInfo(version="0.1.0", protocol=1, pid=7, started_at=1.0, config_path="/c",
                      config_loaded_at=1.0, socket_path="/s", state_path="/d")
    return StatusView(generated_at=2.0, daemon=info, checkout=None,
                      projects=[ProjectView(name="p", paths=[], checkouts=[], **project)],
                      state=StateInfo(path="/d", schema_version=1, created_at=1.0,
                                      checkouts_known=0))


def test_an_output_too_large_for_a_frame_sends_the_view_instead() -> None:
    huge = small_view(ticket_counts={f"status {i:06d} " + "x" * 200: i for i in range(5000)})
    assert isinstance(status_output.write(huge, Status(output="json"), None), StatusView)
    small = status_output.write(small_view(), Status(output="json"), None)
    assert isinstance(small, StatusOutput) and json.loads(small.output)["projects"][0]["name"] \
        == "p"


def test_outputs_are_written_once_per_view_and_options(monkeypatch) -> None:
    built = []
    monkeypatch.setattr(status, "build_status", lambda ctx, here, tickets_per_status=None:
                        built.append(here) or small_view())
    knowledge = SimpleNamespace(version=0, observe=lambda checkout, now: None)
    clock = [100.0]
    views = status.StatusViews(SimpleNamespace(knowledge=knowledge), clock=lambda: clock[0])
    writes = []

    def write(how: str):
        return lambda view: writes.append(how) or StatusOutput(output=how.encode())

    first = views.output(None, 5, "80 columns", write("80 columns"))
    assert views.output(None, 5, "80 columns", write("80 columns")) is first
    assert views.output(None, 5, "120 columns", write("120 columns")).output == b"120 columns"
    assert writes == ["80 columns", "120 columns"] and len(built) == 1
    clock[0] += status.MAX_REUSE  # the view is built again, and so its outputs
    assert views.output(None, 5, "80 columns", write("80 columns")) is not first
    views.changed()
    views.output(None, 5, "80 columns", write("80 columns"))
    knowledge.version += 1
    views.output(None, 5, "80 columns", write("80 columns"))
    assert len(built) == 4 and writes.count("80 columns") == 4


class Tmux:
    """A private tmux server: sessions of a given size running a command, read back as the
    terminal shows them."""

    def __init__(self, root: str, env: dict[str, str]) -> None:
        self.socket = os.path.join(root, "tmux.sock")
        self.env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES", "TMUX")}
        self.env["TERM"] = "xterm-256color"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", *args],
                              env=self.env, capture_output=True, text=True, check=True,
                              timeout=30).stdout

    def run(self, command: str, width: int, height: int = 24) -> tuple[list[str], list[str]]:
        """Run `command` in a new width x height terminal until it exits; its rows as the
        terminal holds them (scrolled off and visible), and those rows with the terminal's
        own wrapping joined again."""
        self("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
             f"{command}; echo '[done]'; sleep 600")
        deadline = time.monotonic() + 30
        while "[done]" not in self("capture-pane", "-p", "-t", "t", "-S", "-", "-E", "-"):
            assert time.monotonic() < deadline, "the command did not finish in 30 s"
            time.sleep(0.05)
        rows = self("capture-pane", "-p", "-t", "t", "-S", "-", "-E", "-").splitlines()
        joined = self("capture-pane", "-p", "-J", "-t", "t", "-S", "-", "-E", "-").splitlines()
        self("kill-session", "-t", "t")
        return _trimmed(rows), _trimmed(joined)

    def stop(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], env=self.env,
                       capture_output=True, timeout=30)


def _trimmed(rows: list[str]) -> list[str]:
    """The rows up to the end marker."""
    return rows[:next(i for i, row in enumerate(rows) if row.startswith("[done]"))]


@pytest.fixture
def tmux(field_status):
    terminal_ = Tmux(field_status.box.root, field_status.box.env)
    yield terminal_
    terminal_.stop()


def test_status_in_a_real_80x24_terminal(field_status, tmux) -> None:
    command = f"cd {shlex.quote(field_status.checkout)} && " \
              f"{shlex.quote(sys.executable)} -m projctl_client status"
    rows, joined = tmux.run(command, 80)
    # No row wrapped in the terminal: joining its wrapped rows changes nothing.
    assert rows == joined
    assert rows[0].startswith("Here      ") and len(rows[0]) <= 80
    assert rows[1].startswith(" " * 10)  # laid out for 80: the Here line went on below
    screen = "\n".join(rows)
    assert "waiting for your review" in screen and "CI on my branches" in screen
    # The first screen is what matters: here, then the first project's work that needs me.
    first = "\n".join(rows[:24])
    assert "web " in first and "waiting for your review" in first

    short, joined = tmux.run(f"{command} --short", 80)
    assert short == joined and len(short) <= 24  # the whole of it on one screen
    assert [row.split()[0] for row in short if row[:1].isalpha() and not row.startswith("Here")] \
        == [p["name"] for p in field_status.view["projects"]]

    wide, joined = tmux.run(command, 120)
    assert wide == joined and max(len(row) for row in wide) > 80  # the terminal's own width


def test_open_takes_the_browser_to_what_ref_names(field_status, tmp_path) -> None:
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" >> {shlex.quote(str(opened))}\n")
    browser.chmod(stat.S_IRWXU)
    box, checkout, view = field_status.box, field_status.checkout, field_status.view

    def open_(*args: str, cwd: str = checkout, code: int = 0) -> subprocess.CompletedProcess:
        result = box.client("open", *args, cwd=cwd, env={"BROWSER": str(browser)})
        assert result.returncode == code, (result.stdout, result.stderr)
        return result

    web = view["projects"][0]
    mine = view["branch"]["change_request"]
    github = next(c for c in web["change_requests"] if c["upstream"] == "github")
    gitlab = next(c for c in web["change_requests"] if c["upstream"] == "gitlab")
    ticket = web["tickets"][0]
    expected = [mine["url"], github["url"], gitlab["url"], gitlab["url"], github["url"],
                ticket["url"]]
    assert open_().stdout == f"opening {mine['ref']}: {mine['url']}\n"
    open_("#" + str(github["number"]))
    open_("!" + str(gitlab["number"]))
    open_(gitlab["ref"])
    open_(github["ref"].rsplit("/", 1)[-1])  # web-0#147, as narrow terminals show it
    open_(ticket["key"].lower())
    assert opened.read_text().splitlines() == expected

    unknown = open_("#999999", code=1)
    assert "no change request #999999 among what projctld knows" in unknown.stderr
    assert f"try: projctl open '{web['change_requests'][0]['ref']}'" in unknown.stderr
    assert "no ticket WEB-999999" in open_("WEB-999999", code=1).stderr
    outside = open_(cwd=box.root, code=1)
    assert "not in a git checkout: say which change request or ticket to open" \
        in outside.stderr
    assert opened.read_text().splitlines() == expected  # nothing more was opened


def test_an_ambiguous_ref_lists_its_candidates(field_status, tmp_path) -> None:
    everywhere = [c for p in field_status.view["projects"] for c in p["change_requests"]]
    numbers = Counter(str(c["number"]) for c in everywhere)
    here = {str(c["number"]) for c in field_status.view["projects"][0]["change_requests"]}
    number = next(n for n, count in numbers.items() if count > 1 and n not in here)
    result = field_status.box.client("open", number, cwd=field_status.checkout,
                                     env={"BROWSER": "/bin/false"})
    assert result.returncode == 1
    assert f"{number} could be any of {numbers[number]} change requests; say which" \
        in result.stderr
    for change in everywhere:
        if str(change["number"]) == number:
            assert f"try: projctl open '{change['ref']}'  # {change['title']}" in result.stderr


def test_open_says_so_when_no_browser_starts(field_status, tmp_path) -> None:
    result = field_status.box.client("open", cwd=field_status.checkout,
                                     env={"BROWSER": "/bin/false", "PATH": str(tmp_path)})
    assert result.returncode == 1
    url = field_status.view["branch"]["change_request"]["url"]
    assert f"opening {field_status.view['branch']['change_request']['ref']}: {url}" \
        in result.stdout
    assert f"no browser could be started for {url}" in result.stderr


def test_the_daemon_never_writes_escape_codes_from_upstream_text() -> None:
    view = small_view(change_requests=[ChangeRequestView(
        upstream="github", repo="acme/web", number=1, ref="acme/web#1",
        title="Fix\033]8;;https://evil.example\033\\ it\033[2J\u202e", url="https://x.example/1",
        author="me", source_branch="fix", target_branch="main", mine=True, updated_at=1.0)],
        sources=[SourceView(upstream="github", kind="github", fetched_at=1.5)],
        known={"change_requests": "complete"})
    written = status_output.write(view, Status(output="text", width=120, colours=True,
                                               links=True), None)
    assert isinstance(written, StatusOutput)
    text = written.output.decode()
    assert "Fix�]8;;https://evil.example�\\ it�[2J�" in text
    assert "\033]8;;https://evil" not in text and "\033[2J" not in text
    assert "\033]8;;https://x.example/1\033\\" in text  # its own link is made


@pytest.mark.parametrize(("args", "options"), [
    (["status"], {"as_json": False, "short": False, "project": None}),
    (["status", "-p", "web", "--short"], {"as_json": False, "short": True, "project": "web"}),
    (["status", "--project=web", "--json"], {"as_json": True, "short": False, "project": "web"}),
    (["status", "--json", "--short"], None),  # click says why
    (["status", "--project"], None),
    (["status", "--project", "--json"], None),
    (["status", "--width", "80"], None),
    (["status", "--help"], None),
])
def test_the_hot_path_takes_the_options_of_status(args: list[str], options) -> None:
    assert hotpath.status_options(args) == options
    assert hotpath.is_hot(args) is (options is not None)
