"""Commands that plugins add, with real processes: executables on PATH (exec'd, under the safety
rules), entry-point commands, `projctl call`, and daemon plugins' own requests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import Sandbox
from test_plugins import EVERY_DAY, example_site, on_path, plugin_views, stop, with_plugins
from test_sync_e2e import call, join, wait_for

from projctl_client import api, commands
from projctl_client.__main__ import BUILT_IN
from projctl_client.cli import cli
from projctld import __version__ as DAEMON_VERSION

__all__ = ["example_site"]  # a fixture, used by name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(REPO, "examples", "executable", "projctl-release")
PROJECT = """
[sync]
actor = "ann"

[projects.web]
paths = ["~/web"]
environments = ["staging", "production"]
"""
# A plugin executable that says what it was given: its pid, each argument, projctl's
# variables, which signals it ignores, and its standard input.
HELLO = """\
#!/bin/sh
echo "pid $$"
for arg in "$@"; do echo "arg [$arg]"; done
env | grep '^PROJCTL_' | sort
grep '^SigIgn' /proc/self/status
echo "stdin [$(cat)]"
exit 7
"""


def executable(directory: str, name: str, text: str, mode: int = 0o755) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    return path


def marker_script(marker: str) -> str:
    """A plugin that leaves `marker` behind if it ever runs."""
    return f"#!/bin/sh\ntouch {marker}\n"


def use_path(box: Sandbox, *directories: str) -> str:
    """PATH for the sandbox's commands: `directories` first, then a `projctl` of this checkout
    (plugins call it), then the system's. Returns that bin directory."""
    shims = os.path.join(box.root, "shims")
    executable(shims, "projctl", f'#!/bin/sh\nexec {sys.executable} -m projctl_client "$@"\n')
    box.env["PATH"] = os.pathsep.join([*directories, shims, os.environ["PATH"]])
    return shims


def checkout(box: Sandbox) -> str:
    """The git checkout of project web (~/web)."""
    web = os.path.join(box.root, "web")
    os.makedirs(web, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", web], check=True)
    subprocess.run(["git", "-C", web, "-c", "user.name=a", "-c", "user.email=a@a", "commit",
                    "-q", "--allow-empty", "-m", "first"], check=True)
    return web


def projctl(box: Sandbox, *args: str, code: int = 0, cwd: str | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "projctl_client", *args], cwd=cwd or box.root,
                            env=box.env, input=stdin, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    return result


def called(box: Sandbox, method: str, arguments: object = None, *, code: int = 0,
           cwd: str | None = None) -> dict:
    """`projctl call METHOD JSON`: its JSON output, whatever the exit code."""
    argv = ["call", method] + ([] if arguments is None else [json.dumps(arguments)])
    return json.loads(projctl(box, *argv, code=code, cwd=cwd).stdout)


def test_the_built_in_names_that_main_knows_are_the_commands_of_cli() -> None:
    assert frozenset(cli.commands) == BUILT_IN


# Executables


def test_an_executable_becomes_the_command_with_projctl_environment(sandbox) -> None:
    plugins = os.path.join(sandbox.root, "plugins")
    executable(plugins, "projctl-hello", HELLO)
    use_path(sandbox, plugins)
    sandbox.write_config(PROJECT)

    def run() -> tuple[subprocess.Popen[str], str, dict[str, str]]:
        process = subprocess.Popen(
            [sys.executable, "-m", "projctl_client", "hello", "a b", "--json", ""],
            cwd=sandbox.root, env=sandbox.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        out, err = process.communicate("typed in", timeout=30)
        assert err == ""
        variables = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return process, out, variables

    process, out, variables = run()
    lines = out.splitlines()
    # exec: the plugin is this very process, its exit status the command's.
    assert lines[0] == f"pid {process.pid}"
    assert process.returncode == 7
    assert lines[1:4] == ["arg [a b]", "arg [--json]", "arg []"]
    assert lines[-1] == "stdin [typed in]"
    assert variables["PROJCTL_SOCKET"] == sandbox.socket_path
    assert variables["PROJCTL_CONFIG"] == sandbox.config_path
    assert variables["PROJCTL_STATE_DIR"] == sandbox.state_dir
    assert variables["PROJCTL_API_VERSION"] == str(commands.API_VERSION)
    # No daemon runs, and none is started just to fill in its version.
    assert variables["PROJCTL_DAEMON_VERSION"] == ""
    assert not os.path.exists(sandbox.socket_path)
    # Python ignores SIGPIPE; the plugin must not inherit that (bit 13 of the mask).
    ignored = int(next(line for line in lines if line.startswith("SigIgn")).split()[1], 16)
    assert not ignored & 1 << (signal.SIGPIPE - 1)

    daemon = sandbox.start_daemon()
    assert run()[2]["PROJCTL_DAEMON_VERSION"] == DAEMON_VERSION
    assert stop(daemon) == 0


def test_a_signal_that_ends_the_plugin_ends_the_command(sandbox) -> None:
    plugins = os.path.join(sandbox.root, "plugins")
    executable(plugins, "projctl-die", "#!/bin/sh\nkill -TERM $$\nsleep 5\n")
    use_path(sandbox, plugins)
    result = subprocess.run([sys.executable, "-m", "projctl_client", "die"], env=sandbox.env,
                            capture_output=True, timeout=30)
    assert result.returncode == -signal.SIGTERM


def test_a_plugin_the_system_cannot_run_is_said_so(sandbox) -> None:
    plugins = os.path.join(sandbox.root, "plugins")
    executable(plugins, "projctl-noshebang", "echo no interpreter named\n")
    executable(plugins, "projctl-gone", "#!/nonexistent/sh\n")
    use_path(sandbox, plugins)
    path = os.path.join(plugins, "projctl-noshebang")
    assert projctl(sandbox, "noshebang", code=126).stderr == (
        f"projctl: cannot run {path}: it has no #! line naming its interpreter, or is not a "
        "program for this system\n  try: projctl plugins  # says which file each command runs\n")
    assert "projctl-gone: the interpreter its #! line names is not there\n" in \
        projctl(sandbox, "gone", code=126).stderr


def test_no_plugin_runs_from_a_relative_path_entry_or_an_unsafe_place(sandbox) -> None:
    work = os.path.join(sandbox.root, "work")
    marker = os.path.join(sandbox.root, "ran")
    # Files a user may find in a directory they cd into (a cloned repository, a download).
    for where in (work, os.path.join(work, "bin")):
        executable(where, "projctl-evil", marker_script(marker))
    safe = os.path.join(sandbox.root, "safe")
    executable(safe, "projctl-wide", marker_script(marker), mode=0o757)  # anyone may change it
    executable(safe, "projctl-plain", marker_script(marker), mode=0o644)  # not executable
    shared = os.path.join(sandbox.root, "shared")
    executable(shared, "projctl-shared", marker_script(marker))
    os.chmod(shared, 0o777)  # anyone could have put it there
    use_path(sandbox, safe, shared)
    sandbox.env["PROJCTL_NO_AUTOSTART"] = "1"
    # "" and "." are the current directory, "bin" a directory under it.
    sandbox.env["PATH"] = os.pathsep.join(["bin", "", ".", sandbox.env["PATH"]])

    refused = projctl(sandbox, "evil", code=2, cwd=work)
    assert "No such command 'evil'." in refused.stderr
    assert "bin/projctl-evil was not run: its PATH entry bin is relative" in refused.stderr
    assert "./projctl-evil was not run: its PATH entry (empty: the current directory) is " \
           "relative" in refused.stderr
    for name, why in (("wide", "others may write to it (mode 757; chmod o-w "),
                      ("plain", "it is not executable (chmod +x "),
                      ("shared", f"others may write to its directory {shared} (mode 777)")):
        assert why in projctl(sandbox, name, code=2, cwd=work).stderr
    # Names that would reach outside PATH's directories are no command names.
    for name in ("../work/projctl-evil", "evil/../evil", "Evil", "_evil"):
        assert "No such command" in projctl(sandbox, name, code=2, cwd=work).stderr
    assert not os.path.exists(marker)

    listed = json.loads(projctl(sandbox, "plugins", "--json", code=3, cwd=work).stdout)
    problems = {(c["path"], c["problem"]) for c in listed["commands"]}
    for path, why in (("bin/projctl-evil", "its PATH entry bin is relative"),
                      ("./projctl-evil", "its PATH entry (empty: the current directory) is "),
                      ("./projctl-evil", "its PATH entry . is relative"),
                      (os.path.join(safe, "projctl-wide"), "others may write to it"),
                      (os.path.join(safe, "projctl-plain"), "it is not executable"),
                      (os.path.join(shared, "projctl-shared"), "others may write to its "
                                                               f"directory {shared}")):
        assert any(p == path and problem.startswith(why) for p, problem in problems), path
    assert not any(c["runs"] for c in listed["commands"])
    assert listed["plugins"] is None  # no daemon to ask, and none started


def test_a_built_in_always_wins_and_the_first_on_path_runs(sandbox) -> None:
    marker = os.path.join(sandbox.root, "ran")
    first, second = (os.path.join(sandbox.root, d) for d in ("first", "second"))
    executable(first, "projctl-status", marker_script(marker))
    executable(first, "projctl-hello", "#!/bin/sh\necho first\n")
    executable(second, "projctl-hello", "#!/bin/sh\necho second\n")
    use_path(sandbox, first, second)
    sandbox.write_config(PROJECT)
    sandbox.start_daemon()

    assert "web" in projctl(sandbox, "status").stdout
    assert not os.path.exists(marker)
    assert projctl(sandbox, "hello").stdout == "first\n"

    text = projctl(sandbox, "plugins").stdout
    assert "  hello   ~/first/projctl-hello\n" in text  # HOME is the sandbox
    assert "  hello   ~/second/projctl-hello\n" in text
    assert f"never runs: {first}/projctl-hello comes first on PATH" in text
    assert "never runs: the built-in command `projctl status` always comes first" in text
    checks = {c["name"]: c for c in json.loads(projctl(sandbox, "doctor", "--json").stdout)}
    plugin_check = checks["plugin commands"]
    assert plugin_check["status"] == "warn"
    assert plugin_check["detail"].startswith("running: hello; never run: ")
    assert "the built-in command `projctl status` always comes first" in plugin_check["detail"]
    assert plugin_check["fix"].startswith("projctl plugins")


def test_an_unknown_command_suggests_plugins_too(sandbox) -> None:
    plugins = os.path.join(sandbox.root, "plugins")
    executable(plugins, "projctl-release", "#!/bin/sh\n")
    use_path(sandbox, plugins)
    refused = projctl(sandbox, "relase", code=2)
    assert refused.stderr.endswith("Error: No such command 'relase'. Did you mean 'release'?\n")
    assert "Try 'projctl --help' for help." in refused.stderr
    assert projctl(sandbox, "stauts", code=2).stderr.endswith(
        "Error: No such command 'stauts'. Did you mean 'status'?\n")


# Entry points


def dist_info(site: str, name: str, entry_points: str, **modules: str) -> None:
    """An installed distribution as importlib.metadata finds one: its .dist-info with
    METADATA and entry_points.txt, and its modules."""
    info = os.path.join(site, f"{name}-1.0.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as handle:
        handle.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as handle:
        handle.write(f"[projctl.commands]\n{entry_points}")
    for module, source in modules.items():
        with open(os.path.join(site, f"{module}.py"), "w") as handle:
            handle.write(textwrap.dedent(source))


def test_the_example_command_asks_its_daemon_plugin(sandbox, example_site) -> None:
    on_path(sandbox, example_site)
    use_path(sandbox)
    web = checkout(sandbox)
    sandbox.write_config(PROJECT + f"\n[plugins.settings.example]\ndays = {EVERY_DAY}\n")
    daemon = sandbox.start_daemon()

    frozen = projctl(sandbox, "freeze", cwd=web).stdout
    assert frozen.startswith("deployments to production are frozen today (")
    assert json.loads(projctl(sandbox, "freeze", "--json").stdout)["days"] == \
        json.loads(EVERY_DAY)
    assert "Say whether deployments are frozen today" in projctl(sandbox, "freeze",
                                                                  "--help").stdout
    helped = projctl(sandbox, "--help").stdout
    assert helped.index("Plugin commands") > helped.index("Commands:")
    assert "  freeze  Say whether deployments are frozen today, and on which days" in helped
    # The daemon plugin's handler refuses what it does not know: the caller is told, and it is
    # not counted against the plugin.
    refused = called(sandbox, "request", {"plugin": "example", "name": "thaw"}, code=1)
    assert refused["error"] == {"code": "plugin_refused",
                                "message": "the example plugin answers `freeze`, not 'thaw'",
                                "suggestions": ["projctl freeze"]}
    assert plugin_views(sandbox)["example"]["errors"] == 0
    listed = json.loads(projctl(sandbox, "plugins", "--json").stdout)["commands"]
    assert {(c["name"], c["kind"], c["distribution"], c["target"], c["runs"]) for c in listed} \
        >= {("freeze", "entry point", "projctl-plugin-example",
             "projctl_plugin_example_cli:freeze", True)}
    assert stop(daemon) == 0

    sandbox.write_config(PROJECT + '\n[plugins]\ndisabled = ["example"]\n')
    sandbox.start_daemon()
    off = projctl(sandbox, "freeze", code=1)
    assert off.stderr.startswith("projctl freeze: no loaded plugin named 'example' (disabled "
                                 "in the config)")


def test_entry_points_that_cannot_run_say_why(sandbox) -> None:
    site = os.path.join(sandbox.root, "site")
    dist_info(site, "brokenpkg", "broken = brokenmod:command\nnotcmd = okmod:VALUE\n"
              "status = okmod:command\ntwice = okmod:command\nok = okmod:command\n",
              brokenmod="raise RuntimeError('half installed')\n", okmod="""
        import click

        print("okmod says hello as it is imported")

        VALUE = 3

        @click.command()
        def command():
            \"\"\"Say ok.\"\"\"
            click.echo("ok from an entry point")
        """)
    on_path(sandbox, site)
    plugins = os.path.join(sandbox.root, "plugins")
    executable(plugins, "projctl-twice", "#!/bin/sh\necho executable\n")
    use_path(sandbox, plugins)
    sandbox.env["PROJCTL_NO_AUTOSTART"] = "1"

    assert projctl(sandbox, "ok").stdout == \
        "okmod says hello as it is imported\nok from an entry point\n"
    assert projctl(sandbox, "twice").stdout == "executable\n"
    broken = projctl(sandbox, "broken", code=1).stderr
    assert broken.startswith("projctl: the command broken of brokenpkg cannot be used: "
                             "brokenmod:command does not import: RuntimeError: half installed")
    assert "  try: pip install --force-reinstall brokenpkg" in broken
    assert "okmod:VALUE is a int, not a click command" in projctl(sandbox, "notcmd",
                                                                 code=1).stderr
    helped = projctl(sandbox, "--help").stdout
    rows = helped[helped.index("Plugin commands"):].splitlines()
    assert [row.split()[0] for row in rows[1:] if row.startswith("  ") and "Exit" not in row
            and row.split()[0] != "3"] == ["ok", "twice"]

    listed = {(c["name"], c["kind"]): c for c in
              json.loads(projctl(sandbox, "plugins", "--json", code=3).stdout)["commands"]}
    assert listed["status", "entry point"]["problem"] == \
        "the built-in command `projctl status` always comes first"
    assert listed["twice", "entry point"]["problem"] == \
        "the executable projctl-twice on PATH comes first"
    assert listed["broken", "entry point"]["problem"].startswith("brokenmod:command does not")
    assert listed["ok", "entry point"]["runs"] and listed["ok", "entry point"]["help"] == "Say ok."


def test_the_hot_commands_never_look_for_plugins(sandbox, example_site) -> None:
    on_path(sandbox, example_site)
    plugins = os.path.join(sandbox.root, "plugins")
    for number in range(10):
        executable(plugins, f"projctl-tool{number}", "#!/bin/sh\n")
    use_path(sandbox, plugins)
    web = checkout(sandbox)
    sandbox.write_config(PROJECT)
    sandbox.start_daemon()

    def imported(*args: str) -> set[str]:
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "projctl_client",
                                 *args], cwd=web, env=sandbox.env, capture_output=True,
                                text=True, timeout=60)
        names = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                 if line.startswith("import time:") and "|" in line}
        assert "projctl_client" in names, result.stderr
        return names

    for args in (["status"], ["status", "--json"], ["ping"], ["note", "hot"], ["prompt"]):
        names = imported(*args)
        assert not names & {"importlib.metadata", "projctl_client.commands", "click"}, args
    # An executable is run before click is imported; entry points are read for --help (the
    # plugin's module is imported too, by importlib.import_module, which importtime misses).
    assert not imported("tool3") & {"importlib.metadata", "click"}
    assert "importlib.metadata" in imported("--help")


# projctl call


def test_projctl_call_reads_and_records_for_scripts(sandbox) -> None:
    use_path(sandbox)
    web = checkout(sandbox)
    sandbox.write_config(PROJECT)
    sandbox.start_daemon()

    version = called(sandbox, "version")
    assert (version["api"], version["daemon"]["version"]) == (1, DAEMON_VERSION)
    status = called(sandbox, "status", cwd=web)
    assert status == json.loads(projctl(sandbox, "status", "--json", cwd=web).stdout) | {
        "generated_at": status["generated_at"]}
    assert called(sandbox, "note", {"text": "by a script"}, cwd=web)["event"]["type"] == \
        "note.added"
    recorded = called(sandbox, "event", {"type": "x.sentry.release", "project": "web",
                                         "payload": {"version": "1.2", "n": [1, None]}})
    assert (recorded["event"]["type"], recorded["event"]["payload"]) == \
        ("x.sentry.release", {"version": "1.2", "n": [1, None]})
    called(sandbox, "event", {"type": "x.sentry.issue", "payload": {"title": "\x1b[31mred"}},
           cwd=web)
    # Arguments on stdin with `-`; `x.sentry` matches every type of that plugin.
    logged = json.loads(projctl(sandbox, "call", "log", "-", cwd=web,
                                stdin='{"types": ["x.sentry"], "limit": 5}').stdout)
    assert [e["type"] for e in logged["events"]] == ["x.sentry.release", "x.sentry.issue"]
    text = projctl(sandbox, "log", "--type", "x.sentry", cwd=web).stdout
    assert "x.sentry.release  version=1.2  (not synced yet)\n" in text
    # A teammate's payload never moves the terminal: control characters show as "?".
    assert "x.sentry.issue    title=?[31mred" in text


CALL_FAILURES = [
    (["nope"], 2, "no method 'nope'; the methods are: version, status, log, note, event, "
                  "request"),
    (["note", "[1]"], 2, "the arguments of note are a JSON object, not an array"),
    (["note", "{\"text\": "], 2, "the arguments are not JSON that projctl can send: "),
    (["note", "{\"text\": NaN}"], 2, "NaN is not a number JSON has"),
    (["log", "{\"limit\": 18446744073709551616}"], 2, "is beyond what 64 bits hold"),
    (["note", "{\"txt\": \"x\"}"], 2, "note takes no argument 'txt' (it takes: text, project)"),
    (["note", "{}"], 2, "note needs text"),
    (["log", "{\"limit\": true}"], 2, "log: limit is a number, not a boolean"),
    (["log", "{\"types\": [\"x.a\", 3]}"], 2, "log: types is an array of strings"),
    (["event", "{\"type\": \"deployment.completed\"}"], 2,
     "'deployment.completed' is not a plugin's event type: x.NAME.TYPE"),
    (["note", "{\"text\": \"x\"}"], 1, "this directory is not in a configured project"),
    (["event", "{\"type\": \"x.big.blob\", \"project\": \"web\", \"payload\": {\"b\": \"" +
      "x" * 70_000 + "\"}}"], 1, "cannot record this x.big.blob event: the event would take "),
    (["request", "{\"plugin\": \"nobody\", \"name\": \"x\"}"], 1,
     "no loaded plugin named 'nobody'; plugins that answer requests: none"),
]


def test_a_plugin_event_reaches_teammates_through_the_hub(sandbox, more_sandboxes,
                                                           hub_server) -> None:
    hub = hub_server()
    ann, bob = join(sandbox, hub, "ann"), join(more_sandboxes(), hub, "bob")
    payload = {"version": "2.0", "tags": ["blue", None], "nested": {"n": 1.5}}
    recorded = called(ann, "event", {"type": "x.sentry.release", "project": "web",
                                     "payload": payload})["event"]

    def seen() -> list[dict]:
        return called(bob, "log", {"project": "web", "types": ["x.sentry"]})["events"]

    (pulled,) = wait_for(seen)
    assert (pulled["id"], pulled["payload"], pulled["user"], pulled["mine"]) == \
        (recorded["id"], payload, "ann", False)
    assert "ann  x.sentry.release  version=2.0\n" in projctl(bob, "log", "web", "--type",
                                                             "x.sentry").stdout
    # The hub took it as it takes every event; it changed no state anywhere.
    sync = call(ann, "sync")["sync"]
    assert (sync["waiting"], sync["refused"], sync["set_aside"]) == (0, 0, [])
    (web,) = json.loads(projctl(bob, "status", "--json").stdout)["projects"]
    assert web["deployments"] == []


def test_projctl_call_fails_in_json_with_the_exit_code(sandbox) -> None:
    sandbox.write_config(PROJECT)
    sandbox.start_daemon()
    for argv, code, error in CALL_FAILURES:
        result = projctl(sandbox, "call", *argv, code=code)
        failure = json.loads(result.stdout)["error"]
        assert error in failure["message"], argv
        assert (failure["code"] == "usage") == (code == 2), argv
        assert result.stderr.startswith(f"projctl: {failure['message']}")
    assert projctl(sandbox, "log", "web").stdout == \
        "web: no events yet\n  try: projctl note \"what happened\"  # or projctl deploy ENV, " \
        "projctl branch create NAME\n"


def test_projctl_call_without_a_daemon_is_exit_3(sandbox) -> None:
    sandbox.env["PROJCTL_NO_AUTOSTART"] = "1"
    result = projctl(sandbox, "call", "status", code=3)
    assert json.loads(result.stdout)["error"]["code"] == "unavailable"
    assert json.loads(projctl(sandbox, "call", "version").stdout)["daemon"] is None


def test_the_python_interface_is_what_the_docs_say() -> None:
    with open(os.path.join(REPO, "docs", "workflows-and-plugins.md")) as handle:
        readme = handle.read()
    for signature in ("version()", "status()", "log(project=None, types=(), since=None, "
                      "limit=50)", "note(text, project=None)", "event(type, payload=None, "
                      "project=None)", "plugin_request(plugin, name, args=None, project=None)",
                      "call(method, args)"):
        assert f"`{signature}`" in readme.replace("\n", " ")
        assert callable(getattr(api, signature.split("(")[0]))
    assert list(api.METHODS) == ["version", "status", "log", "note", "event", "request"]


def test_the_python_interface_refuses_what_call_refuses() -> None:
    with pytest.raises(api.UsageError, match="no method 'delete'"):
        api.call("delete", {})
    with pytest.raises(api.UsageError, match=r"request needs plugin, name"):
        api.call("request", {})
    assert issubclass(api.UsageError, api.CallError) and api.UsageError.exit_code == 2


# A daemon plugin's request handler

ANSWERS = """
    import threading

    from projctld.plugins import RequestRefused, hookimpl

    forever = threading.Event()

    @hookimpl
    def projctl_request(name, args, project):
        if name == "echo":
            return {"args": args, "project": project, "pair": (1, 2)}
        if name == "refuse":
            raise RequestRefused("not on a Sunday", suggestions=["wait a day"])
        if name == "boom":
            raise KeyError("boom")
        if name == "bytes":
            return {"raw": b"\\x00"}
        if name == "nan":
            return [float("nan")]
        if name == "big":
            return "x" * (300 << 10)
        if name == "hang":
            forever.wait()
        return None
    """


def test_a_daemon_plugin_answers_its_own_requests_within_bounds(sandbox) -> None:
    with_plugins(sandbox, PROJECT + '\n[plugins]\nmodules = ["answers", "quiet"]\n'
                 "timeout = 0.3\n", answers=ANSWERS, quiet="""
        from projctld.plugins import hookimpl

        @hookimpl
        def projctl_before_request(request):
            pass
        """)
    use_path(sandbox)
    web = checkout(sandbox)
    daemon = sandbox.start_daemon()

    def ask(name: str, code: int = 0, **more: object) -> dict:
        return called(sandbox, "request", {"plugin": "answers", "name": name, **more},
                      code=code, cwd=web)

    assert ask("echo", args={"n": [1, "two"]}) == {
        "plugin": "answers", "name": "echo", "config_error": None,
        "reply": {"args": {"n": [1, "two"]}, "project": "web", "pair": [1, 2]}}
    assert called(sandbox, "request", {"plugin": "answers", "name": "echo"})["reply"][
        "project"] is None  # outside every project
    assert ask("refuse", code=1)["error"] == {"code": "plugin_refused",
                                              "message": "not on a Sunday",
                                              "suggestions": ["wait a day"]}
    assert plugin_views(sandbox)["answers"]["errors"] == 0
    failures = {name: ask(name, code=1)["error"] for name in ("boom", "bytes", "nan", "big")}
    assert failures["boom"]["message"] == \
        "plugin answers on request 'boom' failed: KeyError: 'boom'"
    assert "answered a value JSON cannot carry (bytes," in failures["bytes"]["message"]
    assert "answered a value JSON cannot carry" in failures["nan"]["message"]
    assert "more than the 256 KiB a reply may hold" in failures["big"]["message"]
    assert {f["code"] for f in failures.values()} == {"plugin_failed"}
    answers = plugin_views(sandbox)["answers"]
    assert answers["errors"] == 4 and answers["hooks"] == ["projctl_request"]
    assert answers["last_error"].startswith("projctl_request: request 'big': ")

    too_big = ask("echo", code=1, args="x" * (65 << 10))["error"]
    assert (too_big["code"], too_big["message"]) == (
        "too_large", "the arguments of request 'echo' to plugin answers are 66565 bytes, "
                     "more than the 64 KiB a plugin request may carry")
    binary = call_raw(sandbox, plugin="answers", name="echo", args={"b": b"\x00"})
    assert (binary["code"], binary["message"].split(" hold")[0]) == (
        "bad_request", "the arguments of request 'echo' to plugin answers")
    assert ask("x", code=1, project="nosuch")["error"]["suggestions"][1] == \
        "projctl call request '{\"project\": \"NAME\", ...}'  # one of the configured projects"
    no_handler = called(sandbox, "request", {"plugin": "quiet", "name": "x"}, code=1)["error"]
    assert (no_handler["code"], no_handler["message"]) == (
        "no_request_handler", "plugin quiet has no request handler (no projctl_request hook)")
    typo = called(sandbox, "request", {"plugin": "answer", "name": "x"}, code=1)["error"]
    assert typo["suggestions"] == ["did you mean answers?", "projctl plugins"]

    # A handler that hangs is abandoned after the timeout; it holds at most four threads, then
    # the plugin is said to be busy, and everything else goes on.
    for _ in range(4):
        assert ask("hang", code=1)["error"]["code"] == "plugin_timeout"
    busy = ask("echo", code=1)["error"]
    assert busy["code"] == "plugin_busy"
    assert "web" in projctl(sandbox, "status", cwd=web).stdout
    assert stop(daemon) == 0


def call_raw(box: Sandbox, **fields: object) -> dict:
    """A plugin request as a client of another language might send it: binary included."""
    from projctl_client.connection import DaemonError

    try:
        call(box, "plugin_request", **fields)
    except DaemonError as exc:
        return {"code": exc.code, "message": exc.message}
    raise AssertionError("the request was not refused")


# The shell example


@pytest.mark.skipif(shutil.which("jq") is None, reason="the example needs jq")
def test_the_shell_example_records_and_lists_releases(sandbox) -> None:
    plugins = os.path.join(sandbox.root, "plugins")
    os.makedirs(plugins)
    shutil.copy(RELEASE, plugins)
    use_path(sandbox, plugins)
    web = checkout(sandbox)
    head = subprocess.run(["git", "-C", web, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    sandbox.write_config(PROJECT)
    sandbox.start_daemon()

    assert projctl(sandbox, "release", "--list", cwd=web).stdout == \
        "web: no releases recorded yet\n"
    assert projctl(sandbox, "release", "1.4.0", "https://example.com/1.4.0",
                   cwd=web).stdout == "recorded release 1.4.0 of web\n"
    listed = projctl(sandbox, "release", "--list", cwd=web).stdout.splitlines()
    assert len(listed) == 1
    assert listed[0].split("  ")[1:] == ["1.4.0", "ann", head[:7], "https://example.com/1.4.0"]
    outside = projctl(sandbox, "release", "2.0", code=1)
    assert "is not in a configured project" in outside.stderr
    assert projctl(sandbox, "release", code=2).stderr.startswith("usage: projctl release")
    (event,) = called(sandbox, "log", {"types": ["x.release"], "project": "web"})["events"]
    assert event["payload"] == {"version": "1.4.0", "url": "https://example.com/1.4.0",
                                "commit": head}
