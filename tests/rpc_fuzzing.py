"""Frames to throw at projctld (random, mutated, in sequences) and the oracle for its replies.

Shared by tests/test_rpc_fuzz.py and bench/rpc_fuzz.py, so that the bench's long run throws
exactly what the test throws. Every stream is judged against what the server's docstring
promises: one well-formed reply per complete frame, an `Error` for anything that is not a valid
request, a closed connection only after a frame that is too large or a truncated one.
"""

from __future__ import annotations

import functools
import socket
import struct
import threading
import typing
from dataclasses import dataclass, field

import msgspec
from hypothesis import reject
from hypothesis import strategies as st

from projctl_client import protocol as p
from projctl_client.frames import HEADER_SIZE, MAX_FRAME, PROTOCOL_VERSION

_HEADER = struct.Struct(">I")
_encode = msgspec.msgpack.encode
_REQUEST = msgspec.msgpack.Decoder(p.Request)
_REPLY = msgspec.msgpack.Decoder(p.Reply)
# What msgspec raises for a body it cannot decode (see _UNDECODABLE in projctld/rpc/server.py).
_UNDECODABLE = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)
# Long enough for any reply here; only a hung daemon runs into it.
TIMEOUT = 30.0

# --------------------------------------------------------------------------------------------
# The daemon's configuration: requests naming these get past the first lookups, into real work

PROJECTS = ("demo", "other")
ENVIRONMENTS = ("staging", "production")
WORKFLOWS = ("check", "deploy")
_PARAMS = ("target", "count", "fast", "env", "deployment")
_CONFIG = """
[projects.demo]
paths = ["ROOT/demo"]
environments = ["staging", "production"]

# Nested inside demo's directory: the most specific path wins.
[projects.other]
paths = ["ROOT/demo/other"]

[workflows.check.params.target]
default = "all"
[workflows.check.params.count]
type = "int"
required = true
[workflows.check.params.fast]
type = "bool"
default = false
[[workflows.check.steps]]
name = "test"
command = ["true", "{{ params.target }}", "{{ params.count }}"]
condition = "params.fast or git.branch == 'main'"
[[workflows.check.steps]]
name = "report"
command = "echo {{ git.branch }}"
shell = true
condition = "steps.test.success and steps.test.output != ''"

[workflows.deploy.params.env]
required = true
[workflows.deploy.params.deployment]
required = true
[[workflows.deploy.steps]]
name = "ship"
command = ["true", "{{ params.env }}", "{{ params.deployment }}"]
"""


def daemon_config(root: str) -> str:
    """TOML for the fuzzed daemon's projects and workflows, to follow its [daemon] table.

    No upstream and no hub are configured, and no run is ever started (see `harmless`), so a
    Refresh, a Sync with `now` or a RunFollow with a wait is answered at once: nothing that a
    mutation could turn them into makes the daemon poll, sync or wait."""
    return _CONFIG.replace("ROOT", root)


# --------------------------------------------------------------------------------------------
# Valid requests of every type but those EXCLUDED

_ints = st.integers(-(2**63), 2**64 - 1)  # what msgpack (and msgspec's int) can carry
_short = st.text(max_size=40)


def _maybe(strategy: st.SearchStrategy[typing.Any]) -> st.SearchStrategy[typing.Any]:
    return st.none() | strategy


def _checkouts(root: str) -> st.SearchStrategy[p.Checkout]:
    # Roots mostly inside the configured projects, with the characters that paths go wrong on.
    # The tail is short enough that its `..` cannot climb out of the daemon's prompt directory,
    # where a checkout's files go under its root's path, should the daemon ever take such a
    # root again (handlers._check_checkout refuses them).
    bases = st.sampled_from([f"{root}/demo", f"{root}/demo/other", f"{root}/demo/a/b",
                             f"{root}/elsewhere", "/"])
    tail = st.text(st.sampled_from("/.a-é\x00 \n") | st.characters(codec="utf-8"), max_size=11)
    roots = st.one_of(bases, st.builds("/".join, st.tuples(bases, tail)), _short.map("/".__add__))
    return st.builds(p.Checkout, root=roots, branch=_maybe(_short), head=_maybe(_short))


def _request_strategies(root: str) -> dict[type, st.SearchStrategy[typing.Any]]:
    """One strategy per request type; `fuzzed_request_types` holds them to the union."""
    checkout = _checkouts(root)
    project = _maybe(st.sampled_from(PROJECTS) | st.text(max_size=70))
    name = _short | st.text(min_size=250, max_size=260)
    fmt = st.lists(st.sampled_from(["{", "}", "[", "]", "\\", " ", "↑", "x", "{project}",
                                    "{ref}", "{review}", "{ci}", "{waiting}", "{stale}",
                                    "{nope}"]), max_size=12).map("".join)
    params = st.dictionaries(st.sampled_from(_PARAMS) | _short,
                             st.sampled_from(["1", "yes", "no", "main", "x"]) | _short,
                             max_size=4)
    return {
        p.Ping: st.builds(p.Ping),
        p.Status: st.builds(p.Status, checkout=_maybe(checkout),
                            tickets_per_status=_maybe(st.integers(1, 2**63 - 1))),
        p.Refresh: st.builds(p.Refresh, project=project, wait=st.just(0.0)),
        p.Note: st.builds(p.Note, checkout=_maybe(checkout), project=project,
                          text=st.text(min_size=1, max_size=60) | st.just("n" * 4000),
                          edit=_maybe(st.text(min_size=4, max_size=36))),
        p.BranchCreated: st.builds(p.BranchCreated, checkout=_maybe(checkout), project=project,
                                   name=name, base=_maybe(name), commit=_maybe(name),
                                   dry_run=st.booleans()),
        p.DeployStart: st.builds(p.DeployStart, checkout=_maybe(checkout), project=project,
                                 environment=st.sampled_from(ENVIRONMENTS) | _short,
                                 branch=_maybe(name), commit=_maybe(name),
                                 dry_run=st.booleans(),
                                 commit_time=_maybe(st.floats(0, 1e11))),
        p.DeployMark: st.builds(p.DeployMark, checkout=_maybe(checkout), project=project,
                                deployment=st.text(min_size=4, max_size=36),
                                caused_failure=st.booleans(), reason=_short),
        p.Report: st.builds(p.Report, checkout=_maybe(checkout), project=project,
                            environment=_maybe(st.sampled_from(ENVIRONMENTS) | _short),
                            days=st.floats(1 / 24, 365)),
        p.DeployFinish: st.builds(p.DeployFinish, project=st.sampled_from(PROJECTS) | _short,
                                  deployment=st.text(max_size=36), exit_status=_maybe(_ints),
                                  duration=st.floats(min_value=0), reason=_short),
        p.Log: st.builds(p.Log, checkout=_maybe(checkout), project=project,
                         since=_maybe(st.floats()),
                         types=st.lists(st.sampled_from(["deployment", "note", "note.added",
                                                         "branch"]) | _short, max_size=16),
                         limit=st.integers(1, 10000)),
        p.Sync: st.builds(p.Sync, now=st.booleans(), wait=st.floats(0, 600)),
        p.Prompt: st.builds(p.Prompt, checkout=checkout, format=_maybe(fmt),
                            style=st.sampled_from(["plain", "ansi", "bash", "zsh"])),
        p.Plugins: st.builds(p.Plugins),
        p.RunStart: st.builds(p.RunStart, checkout=_maybe(checkout), project=project,
                              workflow=st.sampled_from(WORKFLOWS) | _short, params=params,
                              dry_run=st.just(True),
                              deployment=_maybe(st.text(max_size=36))),
        p.RunFollow: st.builds(p.RunFollow, run=st.text(min_size=4, max_size=36),
                               after=st.integers(0, 2**64 - 1), wait=st.just(0.0)),
        p.Runs: st.builds(p.Runs, project=project, limit=st.integers(1, 500)),
        p.Metrics: st.builds(p.Metrics),
        p.Reload: st.builds(p.Reload),  # the config file does not change: applies nothing
        # Payloads and arguments of every msgpack type: what JSON cannot carry is refused.
        p.RecordEvent: st.builds(p.RecordEvent, checkout=_maybe(checkout), project=project,
                                 event_type=st.sampled_from(["x.sentry.release", "x.a.b.c"]),
                                 payload=st.dictionaries(_short, _values, max_size=4)
                                 | st.just({"big": "x" * (65 << 10)})),
        p.PluginRequest: st.builds(p.PluginRequest, checkout=_maybe(checkout), project=project,
                                   plugin=st.sampled_from(["example", "notify"]) | _short
                                   .filter(bool), name=_short.filter(bool), args=_values),
        p.Inbox: st.builds(p.Inbox),
        p.InboxDone: st.builds(p.InboxDone, id=st.text(min_size=1, max_size=128)),
        p.Notifications: st.builds(p.Notifications, limit=st.integers(1, 1000)),
    }


# Never sent, and why.
EXCLUDED = {
    p.Shutdown: "stops the daemon",
    p.Doctor: "runs every check of `projctl doctor`, processes and network included",
    # Streams: frames go on until the client hangs up, which a one-reply-per-frame judge cannot
    # read; tests/test_notify.py and tests/test_watch.py drive them.
    p.Watch: "a stream: pushed frames until the client hangs up",
    p.Wait: "a stream: progress frames until an outcome, a timeout or a hang-up",
}


def fuzzed_request_types(root: str = "/") -> set[type]:
    return set(_request_strategies(root))


def _sent_by(request: typing.Any, client: str, command: str) -> typing.Any:
    """`request` as some client sent it: that client's version and command."""
    envelope = {"client": client, "command": command}
    return msgspec.structs.replace(request, **{name: value for name, value in envelope.items()
                                               if name in request.__struct_fields__})


# Strategies are built once per root: Hypothesis spends far longer on a new strategy object
# (its labels, its validation) than on drawing from one it knows.
@functools.cache
def requests(root: str) -> st.SearchStrategy[p.Request]:
    """A valid request of any type but those EXCLUDED, for the projects of daemon_config(root)."""
    return st.builds(_sent_by, st.one_of(*_request_strategies(root).values()), _short,
                     st.sampled_from(["", "status"]) | _short)


# --------------------------------------------------------------------------------------------
# Values of every msgpack type, to put where the protocol expects something else

# Encoded sizes around msgpack's length classes and the frame limit (the rest of a request
# takes a few hundred bytes); the text is made, not drawn, so a megabyte costs Hypothesis nothing.
_HUGE = st.sampled_from([31, 32, 255, 256, 4001, 65535, 65536, MAX_FRAME // 2, MAX_FRAME - 4096,
                         MAX_FRAME - 512, MAX_FRAME + 1])
# Nesting either well within or far beyond msgspec's recursion limit (about a thousand), so that
# this process (whose limit Hypothesis raises while it runs) and the daemon agree on what decodes.
_DEPTHS = st.sampled_from([1, 2, 63, 64, 65, 200, 10_000, 100_000])
_scalars = st.one_of(
    st.none(), st.booleans(), _ints, st.sampled_from([2**63 - 1, -(2**63), 2**64 - 1, -1, 0]),
    st.floats(), st.text(max_size=30), st.binary(max_size=30),
    st.builds(msgspec.msgpack.Ext, st.integers(-128, 127), st.binary(max_size=8)),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_short | _ints, inner,
                                                                max_size=4),
    max_leaves=12,
)


def _nested(depth: int, maps: bool) -> bytes:
    return (b"\x81\xa1k" if maps else b"\x91") * depth + b"\xc0"


def _huge_str(size: int, char: str) -> bytes:
    return _encode(char * (size // len(char.encode())))


_value_bytes = st.one_of(
    _values.map(_encode),
    # Not of NULs: read out of step (after a wrong header), each four of them are an empty
    # frame, answered with an Error, and a megabyte of them keeps the daemon busy for a minute.
    st.builds(_huge_str, _HUGE, st.sampled_from(["x", "é"])),
    st.builds(_nested, _DEPTHS, st.booleans()),
)


# --------------------------------------------------------------------------------------------
# Mutated requests

_TAGS = [cls.__struct_config__.tag for cls in typing.get_args(p.Request)
         if cls not in EXCLUDED]
_TYPE_KEY = _encode("type")
Pairs = list[tuple[bytes, bytes]]  # a map as its encoded keys and values, in order


def _map(pairs: Pairs) -> bytes:
    count = len(pairs)
    head = bytes([0x80 | count]) if count < 16 else b"\xde" + struct.pack(">H", count)
    return head + b"".join(key + value for key, value in pairs)


def _structural(draw: st.DrawFn, pairs: Pairs) -> Pairs:
    """One change to the map: a field's value of another type, a swapped type tag, an unknown,
    dropped or repeated field."""
    pairs = list(pairs)
    kind = draw(st.sampled_from(["replace", "tag", "unknown", "drop", "repeat"]))
    index = draw(_positions) % max(1, len(pairs))
    if kind == "tag":
        tag = draw(_tags)
        pairs = [(key, tag if key == _TYPE_KEY else value) for key, value in pairs]
    elif kind == "unknown":
        pairs.insert(index, (draw(_keys), draw(_value_bytes)))
    elif pairs and kind == "replace":
        pairs[index] = (pairs[index][0], draw(_value_bytes))
    elif pairs and kind == "drop":
        del pairs[index]
    elif pairs:
        pairs.insert(draw(_positions) % (len(pairs) + 1), (pairs[index][0], draw(_value_bytes)))
    return pairs


def _bytewise(draw: st.DrawFn, body: bytes) -> bytes:
    """One change to the encoded body: bit flips, a truncation or an extension."""
    kind = draw(st.sampled_from(["flip", "truncate", "extend"]))
    if kind == "extend":
        return body + draw(st.binary(min_size=1, max_size=64) | _value_bytes)
    if not body:
        return body
    if kind == "truncate":
        return body[:draw(_positions) % len(body)]
    mutable = bytearray(body)
    for position, bit in draw(_flips):
        mutable[position % len(body)] ^= 1 << bit
    return bytes(mutable)


def _framed(body: bytes, wrong: tuple[str, int] | None) -> bytes:
    """`body` behind its length, or behind a wrong one."""
    announced = len(body)
    if wrong is not None:
        how, number = wrong
        announced = number if how == "is" else min(max(announced + number, 0), 2**32 - 1)
    return _HEADER.pack(announced) + body


_positions = st.integers(0, 2**32)  # taken modulo the length of what they index
_flips = st.lists(st.tuples(_positions, st.integers(0, 7)), min_size=1, max_size=8)
_tags = st.sampled_from(_TAGS).map(_encode) | _value_bytes
_keys = _short.map(_encode) | _value_bytes
# A wrong length in a header (one time in four): off by a little, at or past the limit, or
# anything at all.
_wrong_lengths = st.one_of(
    st.integers(-16, 16).map(lambda delta: ("off by", delta)),
    st.sampled_from([MAX_FRAME, MAX_FRAME + 1, 2**31, 2**32 - 1]).map(lambda n: ("is", n)),
    st.integers(0, 2**32 - 1).map(lambda n: ("is", n)),
)
_headers = st.sampled_from([False, False, False, True]).flatmap(
    lambda wrong: _wrong_lengths if wrong else st.none())


@functools.cache
def mutated_frames(root: str) -> st.SearchStrategy[bytes]:
    """A valid request's frame, then mutated: structurally, bytewise, and in its header."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        request = draw(requests(root))
        # Through msgpack rather than to_builtins: arguments may hold extension types. A drawn
        # datetime that msgpack's timestamp cannot carry back is no request to mutate.
        try:
            fields = msgspec.msgpack.decode(_encode(request))
        except msgspec.ValidationError:
            reject()
        pairs = [(_encode(k), _encode(v)) for k, v in fields.items()]
        for _ in range(draw(st.integers(0, 3))):
            pairs = _structural(draw, pairs)
        body = _map(pairs)
        for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
            body = _bytewise(draw, body)
        return _framed(body, draw(_headers))

    return build()


@functools.cache
def valid_frames(root: str) -> st.SearchStrategy[bytes]:
    return requests(root).map(lambda request: _HEADER.pack(len(b := _encode(request))) + b)


# A random body in a frame, its header right or wrong.
random_frames = st.builds(_framed, st.binary(max_size=512), _headers)
# Random bytes as they come: their first four bytes are read as a header, mostly a huge one.
_garbage = st.binary(min_size=1, max_size=512)


def random_streams() -> st.SearchStrategy[list[bytes]]:
    """A connection's worth of random bytes, bare or in frames."""
    return st.lists(random_frames | _garbage, min_size=1, max_size=4)


@functools.cache
def sequences(root: str) -> st.SearchStrategy[list[bytes]]:
    """Several frames of every kind for one connection, maybe ending in bare garbage (anywhere
    else it would end the connection early, as a header announcing gigabytes, most times)."""
    frames = st.lists(st.one_of(valid_frames(root), mutated_frames(root), random_frames),
                      min_size=2, max_size=8)
    return st.builds(list.__add__, frames, st.lists(_garbage, max_size=1))


# --------------------------------------------------------------------------------------------
# The oracle: what the daemon must answer to a stream


# Refusals a handler may answer a valid request with (grep 'code="' under projctld/, and the
# codes of ProjctlError's subclasses). Not "internal": that is a handler that raised what
# nobody foresaw, or a reply larger than a frame, and so a bug in the daemon.
REFUSALS = frozenset({
    "bad_actor", "bad_param", "bad_prompt_format", "bad_request", "deployment_refused",
    "error", "missing_param", "no_checkout", "no_project", "no_request_handler", "not_completed",
    "not_running", "not_yours", "nothing_to_refresh", "plugin_busy", "plugin_failed",
    "plugin_refused", "plugin_timeout", "store", "too_large", "unknown_deployment",
    "unknown_environment", "unknown_note", "unknown_param", "unknown_plugin", "unknown_project",
    "unknown_run", "unknown_workflow",
    "workflow", "yaml_missing", "no_inbox", "not_found", "ambiguous",
})
# What the server itself answers to a frame that is not a valid request of this version.
MALFORMED = frozenset({"bad_request", "unsupported_protocol"})

# The replies each request may have besides an Error.
ANSWERS: dict[type, tuple[type, ...]] = {
    p.Ping: (p.Pong,), p.Status: (p.StatusView,), p.Refresh: (p.RefreshReport,),
    p.Note: (p.Recorded,), p.BranchCreated: (p.Recorded, p.Ack),
    p.DeployStart: (p.DeployPlan,), p.DeployFinish: (p.Recorded,), p.Log: (p.LogView,),
    p.Sync: (p.SyncReport,), p.Prompt: (p.PromptText,), p.Plugins: (p.PluginsReport,),
    p.RunStart: (p.RunStarted, p.RunPlanView), p.RunFollow: (p.RunProgress,),
    p.Runs: (p.RunsView,), p.Metrics: (p.MetricsReport,), p.Reload: (p.Reloaded,),
    p.RecordEvent: (p.Recorded,), p.PluginRequest: (p.PluginReply,),
    p.DeployMark: (p.Recorded,), p.Report: (p.DeliveryReport,),
    p.Inbox: (p.InboxReport,), p.InboxDone: (p.InboxReport,),
    p.Notifications: (p.NotificationsReport,),
}


@dataclass(frozen=True)
class Expected:
    """What one frame the daemon reads must be answered with."""

    request: typing.Any = None  # the Request it decodes to, if it does
    too_large: bool = False

    def problem(self, reply: p.Reply) -> str | None:
        """What is wrong with `reply` as the answer to this frame, if anything."""
        if isinstance(reply, p.Error):
            if not reply.code or not reply.message:
                return f"an Error without code or message: {reply!r}"
            if self.too_large:
                allowed: frozenset[str] = frozenset({"frame_too_large"})
            elif self.request is None:
                allowed = MALFORMED
            elif self.request.protocol != PROTOCOL_VERSION:
                allowed = frozenset({"unsupported_protocol"})
            else:
                allowed = REFUSALS
            if reply.code not in allowed:
                return (f"Error {reply.code!r} ({reply.message}) where one of "
                        f"{sorted(allowed)} was due, for {self.describe()}")
            return None
        if (self.request is not None and self.request.protocol == PROTOCOL_VERSION
                and isinstance(reply, ANSWERS[type(self.request)])):
            return None
        return f"{type(reply).__name__} answered {self.describe()}"

    def describe(self) -> str:
        if self.too_large:
            return "a frame over MAX_FRAME"
        if self.request is None:
            return "a frame that is not a request"
        return clip(repr(self.request))


@dataclass(frozen=True)
class Plan:
    """How the daemon reads a stream: the frames it answers, then how the connection ends:
    "eof" (the stream ended between frames), "too_large" or "truncated"."""

    expected: list[Expected]
    ending: str

    @property
    def harmless(self) -> bool:
        """No request that is EXCLUDED, nor one that starts a workflow run (it would outlive
        the example, and run commands)."""
        return not any(type(e.request) in EXCLUDED
                       or (isinstance(e.request, p.RunStart) and not e.request.dry_run)
                       for e in self.expected)


def plan(stream: bytes) -> Plan:
    """Split `stream` into frames as the server does, and decode each as it would."""
    view = memoryview(stream)
    expected: list[Expected] = []
    position = 0
    while True:
        if position == len(view):
            return Plan(expected, "eof")
        if len(view) - position < HEADER_SIZE:
            return Plan(expected, "truncated")
        (length,) = _HEADER.unpack_from(view, position)
        position += HEADER_SIZE
        if length > MAX_FRAME:
            expected.append(Expected(too_large=True))
            return Plan(expected, "too_large")
        if len(view) - position < length:
            return Plan(expected, "truncated")
        body = view[position:position + length]
        position += length
        try:
            expected.append(Expected(request=_REQUEST.decode(body)))
        except _UNDECODABLE:
            expected.append(Expected())


@dataclass
class Outcome:
    """What came back for one stream: a kind per reply (`pong`, `error:bad_request`), how the
    connection ended, and every way that broke the promise."""

    kinds: list[str] = field(default_factory=list)
    ending: str = "eof"
    problems: list[str] = field(default_factory=list)


def judge(expected: Plan, received: bytes) -> Outcome:
    """Hold what the daemon sent back for a stream (up to its closing) to the stream's plan."""
    outcome = Outcome(ending=expected.ending)
    replies, rest = _split(received)
    if rest:
        outcome.problems.append(f"the connection ended inside a reply: {clip(repr(rest))}")
    for index, body in enumerate(replies):
        try:
            reply = _REPLY.decode(body)
        except _UNDECODABLE as exc:
            outcome.problems.append(f"reply {index} is not a Reply ({exc}): {clip(repr(body))}")
            continue
        outcome.kinds.append(f"error:{reply.code}" if isinstance(reply, p.Error)
                             else reply.__struct_config__.tag)
        if index < len(expected.expected):
            problem = expected.expected[index].problem(reply)
            if problem:
                outcome.problems.append(f"reply {index}: {problem}")
    if len(replies) != len(expected.expected):
        outcome.problems.append(
            f"{len(replies)} replies where {len(expected.expected)} were due before the "
            f"connection ended ({expected.ending}); they answer: "
            + "; ".join(e.describe() for e in expected.expected))
    return outcome


def _split(received: bytes) -> tuple[list[bytes], bytes]:
    """The frames in what the daemon sent, and whatever incomplete frame follows them."""
    frames, position = [], 0
    while len(received) - position >= HEADER_SIZE:
        (length,) = _HEADER.unpack_from(received, position)
        if length > MAX_FRAME or len(received) - position - HEADER_SIZE < length:
            break
        frames.append(received[position + HEADER_SIZE:position + HEADER_SIZE + length])
        position += HEADER_SIZE + length
    return frames, received[position:]


def clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


# --------------------------------------------------------------------------------------------
# Talking to the daemon


def converse(path: str, stream: bytes) -> bytes:
    """Send `stream` on a new connection and end it; all that the daemon sends until it closes.

    A thread sends while this one reads: the daemon answers each frame as it reads it, and a
    client that only wrote would block both sides once the socket buffers fill up."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(path)

    def send() -> None:
        try:
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the daemon closed first, after a frame over the limit: judged from replies

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = bytearray()
    try:
        while chunk := sock.recv(1 << 16):
            received += chunk
    except ConnectionResetError:
        pass  # closed with part of the stream unread: the replies before it still arrived
    finally:
        if sender.is_alive():  # blocked in sendall on a daemon that stopped reading: wake it
            sock.shutdown(socket.SHUT_RDWR)
        sender.join()
        sock.close()
    return bytes(received)


def kib(pid: int, key: str) -> int:
    """A memory figure of a process from /proc/PID/status (VmRSS, VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise LookupError(f"no {key} in /proc/{pid}/status")
