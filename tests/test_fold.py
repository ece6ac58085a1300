"""The fold's rules: state depends on the set of events only, never on their arrival order."""

from __future__ import annotations

import os
import tempfile

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from projctld.store.database import Database
from projctld.store.events import EventStore
from projctld.team.sync import events as ev

DEPLOYMENTS = [f"0190000{i}-0000-7000-8000-000000000000" for i in range(3)]
NOTES = [f"0190001{i}-0000-7000-8000-000000000000" for i in range(3)]


def _payload(kind: str, target: int, value: int) -> tuple[str, object]:
    match kind:
        case "started":
            return "deployment.started", ev.DeploymentStarted(
                deployment=DEPLOYMENTS[target], environment=("staging", "production")[value % 2],
                branch=f"b{value}")
        case "completed" | "failed":
            return f"deployment.{kind}", ev.DeploymentFinished(
                deployment=DEPLOYMENTS[target], environment="production", duration=value,
                exit_status=0 if kind == "completed" else 1)
        case "added" | "edited":
            return f"note.{kind}", ev.NoteAdded(note=NOTES[target], text=f"text {value}")
        case _:
            return "branch.created", ev.BranchCreated(name=f"feature-{target}", commit=str(value))


@st.composite
def event_sets(draw: st.DrawFn) -> list[ev.Event]:
    """Events from three devices about a few shared deployments, notes and branches, with
    keys in any order: concurrent finishes, edits racing adds, doubled starts."""
    count = draw(st.integers(1, 25))
    seqs = {device: 0 for device in ("a", "b", "c")}
    found = []
    for _ in range(count):
        device = draw(st.sampled_from(sorted(seqs)))
        seqs[device] += 1
        kind = draw(st.sampled_from(
            ["started", "completed", "failed", "added", "edited", "branch"]))
        type_, payload = _payload(kind, draw(st.integers(0, 2)), draw(st.integers(0, 9)))
        found.append(ev.Event(
            id=ev.uuid7(), device=device, seq=seqs[device],
            hlc=draw(st.integers(1, 40)) << 16, project="web", actor=f"actor-{device}",
            type=type_, payload=_builtins(payload),
            created_at=1.0))
    return found


def _builtins(payload: object) -> dict:
    return msgspec.to_builtins(payload)


def _state(root: str, name: str, events: list[ev.Event]) -> str:
    store = EventStore(Database(os.path.join(root, name, "state.db")))
    for event in events:  # one page per event: arrival order is exactly this list's order
        store.store_pulled("web", [event], 0)
    return store.digest()


@settings(max_examples=100, deadline=None)
@given(events=event_sets(), order=st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_state_of_key_order(events: list[ev.Event], order) -> None:
    shuffled = list(events)
    order.shuffle(shuffled)
    in_key_order = sorted(events, key=ev.Event.order_key)
    with tempfile.TemporaryDirectory(prefix="pjfold") as root:
        assert _state(root, "shuffled", shuffled) == _state(root, "sorted", in_key_order)


def test_the_first_final_event_in_key_order_decides_a_deployment(tmp_path) -> None:
    started = _event("a", 1, 10, "started", 0)
    failed = _event("b", 1, 20, "failed", 0)
    completed = _event("c", 1, 30, "completed", 0)
    store = EventStore(Database(str(tmp_path / "state.db")))
    store.store_pulled("web", [completed, started, failed], 0)
    (row,) = store.deployments("web", 5)
    assert (row.state, row.exit_status, row.actor) == ("failed", 1, "actor-a")


def test_the_last_writer_by_key_wins_a_note_and_the_adder_stays_its_author(tmp_path) -> None:
    added = _event("a", 1, 10, "added", 1)
    late_edit = _event("b", 1, 30, "edited", 3)
    early_edit = _event("c", 1, 20, "edited", 2)
    store = EventStore(Database(str(tmp_path / "state.db")))
    store.store_pulled("web", [late_edit, early_edit, added], 0)
    text, author, edited_by = store._db.read("SELECT text, author, edited_by FROM notes")[0]
    assert (text, author, edited_by) == ("text 3", "actor-a", "actor-b")


def _event(device: str, seq: int, hlc: int, kind: str, value: int) -> ev.Event:
    type_, payload = _payload(kind, 0, value)
    return ev.Event(id=ev.uuid7(), device=device, seq=seq, hlc=hlc << 16, project="web",
                    actor=f"actor-{device}", type=type_, payload=_builtins(payload),
                    created_at=1.0)


def test_a_plugin_type_is_kept_but_never_folded(tmp_path) -> None:
    added = _event("a", 1, 10, "added", 1)
    started = _event("a", 2, 11, "started", 0)
    # Plugins' events shaped exactly like a note's edit and a deployment's end: their type,
    # not their payload, decides, and x.* is no type the fold knows.
    mimics = [msgspec.structs.replace(_event("b", 1, 20, "edited", 9), type="x.notes.edited"),
              msgspec.structs.replace(_event("b", 2, 21, "failed", 0),
                                      type="x.deploy.deployment.failed")]
    plain = EventStore(Database(str(tmp_path / "plain.db")))
    plain.store_pulled("web", [added, started], 0)
    mixed = EventStore(Database(str(tmp_path / "mixed.db")))
    mixed.store_pulled("web", [mimics[0], added, mimics[1], started], 0)
    for table in ("deployments", "deployment_finals", "notes", "branches"):
        query = f"SELECT * FROM {table}"
        assert mixed._db.read(query) == plain._db.read(query), table
    kept, _, _ = mixed.history("web", types=["x.notes", "x.deploy"])
    assert [e.type for e in kept] == ["x.notes.edited", "x.deploy.deployment.failed"]
    mixed.refold()
    assert mixed._db.read("SELECT text FROM notes") == [("text 1",)]
