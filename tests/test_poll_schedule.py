"""When polls happen: adaptive intervals, backoff, rate-limit holds, refresh, and persistence."""

from __future__ import annotations

import functools

import anyio
import pytest

from projctl_client.protocol import ChangeRequestView, CiView, PipelineView
from projctld.config import Config, GitHubConfig, PollingConfig, ProjectConfig
from projctld.errors import UpstreamError
from projctld.store.database import Database
from projctld.store.snapshots import SnapshotTable
from projctld.upstream.polling import IDLE_FACTOR, RUNNING_CI_INTERVAL, Poller
from projctld.upstream.providers.model import Snapshot

KEY = ("web", "github")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class ScriptedProvider:
    """A provider whose next answers are given by the test: a Snapshot or an exception."""

    upstream = "github"

    def __init__(self) -> None:
        self.answers: list[Snapshot | Exception] = []
        self.polls = 0
        self.gate: anyio.Event | None = None

    async def poll(self, project: str, config: ProjectConfig, *, fresh: bool) -> Snapshot:
        self.polls += 1
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers.pop(0) if self.answers else Snapshot()
        if isinstance(answer, Exception):
            raise answer
        return answer


def config(interval: float = 60.0) -> Config:
    return Config(
        polling=PollingConfig(active_window=300.0, idle_after=1800.0, max_backoff=900.0),
        github=GitHubConfig(interval=interval),
        projects={"web": ProjectConfig(github=["acme/web"])},
    )


@pytest.fixture
def db(tmp_path):
    database = Database(str(tmp_path / "state.db"))
    yield database
    database.close()


def poller(db, provider=None, clock=None) -> tuple[Poller, ScriptedProvider, Clock]:
    provider = provider or ScriptedProvider()
    clock = clock or Clock()
    return Poller(config(), {"github": provider}, SnapshotTable(db), clock=clock), provider, clock


def within_jitter(value: float, expected: float) -> bool:
    return expected * 0.89 <= value <= expected * 1.11


def test_active_users_get_twice_the_polls_idle_ones_a_quarter(db) -> None:
    polls, _, clock = poller(db)
    source = polls.sources[KEY]
    polls.touch()
    assert within_jitter(polls.delay(source), 30.0)
    clock.now += 600  # past active_window, before idle_after
    assert within_jitter(polls.delay(source), 60.0)
    clock.now += 1800
    assert within_jitter(polls.delay(source), 60.0 * IDLE_FACTOR)


def test_running_ci_of_mine_polls_soon(db) -> None:
    polls, _, clock = poller(db)
    clock.now += 3600  # idle
    source = polls.sources[KEY]
    source.snapshot = Snapshot(pipelines=[PipelineView(
        upstream="github", repo="acme/web", branch="b", state="running",
        updated_at=clock.now - 60, started_at=clock.now - 600)])
    assert polls.delay(source) <= RUNNING_CI_INTERVAL * 1.11


def test_ci_running_longer_than_stuck_after_does_not_speed_polling(db) -> None:
    polls, _, clock = poller(db)
    clock.now += 3600  # idle
    source = polls.sources[KEY]
    # Running for days: stuck (a pipeline pending since 2016 was seen in the field).
    source.snapshot = Snapshot(pipelines=[PipelineView(
        upstream="github", repo="acme/web", branch="b", state="running",
        updated_at=clock.now - 3 * 86400, started_at=clock.now - 3 * 86400)])
    assert within_jitter(polls.delay(source), 60.0 * IDLE_FACTOR)


def test_failures_back_off_doubling_up_to_max_backoff(db) -> None:
    polls, provider, clock = poller(db)
    clock.now += 600
    delays = []
    for _ in range(6):
        provider.answers.append(UpstreamError("offline", code="unreachable", retryable=True))
        delays.append(anyio.run(polls.poll, KEY))
    expected = [120, 240, 480, 900, 900, 900]
    assert all(within_jitter(d, e) for d, e in zip(delays, expected, strict=True)), delays
    assert polls.sources[KEY].error.code == "unreachable"
    anyio.run(polls.poll, KEY)  # success resets the backoff
    assert polls.sources[KEY].failures == 0
    assert polls.sources[KEY].error is None


def test_a_rate_limit_hold_is_never_cut_short(db) -> None:
    polls, provider, _ = poller(db)
    provider.answers.append(UpstreamError("held", code="rate_limited",
                                          context={"wait_s": "1500"}))
    delay = anyio.run(polls.poll, KEY)
    assert delay >= 1500


def test_a_returning_user_pulls_far_polls_closer(db) -> None:
    polls, _, clock = poller(db)
    moved = []
    polls.on_sooner = lambda key, when: moved.append((key, when))
    clock.now += 3600  # idle for an hour
    source = polls.sources[KEY]
    source.next_poll_at = clock.now + 240
    polls.touch()
    assert moved and moved[0][0] == KEY
    assert moved[0][1] - clock.now <= 30 * 1.11
    moved.clear()
    polls.touch()  # already active: nothing moves
    assert moved == []


def test_a_provider_bug_is_recorded_and_the_last_good_data_kept(db) -> None:
    polls, provider, _ = poller(db)
    good = Snapshot(change_requests=[ChangeRequestView(
        upstream="github", repo="acme/web", number=1, ref="acme/web#1", title="t", url="u",
        author="me", source_branch="b", target_branch="main", ci=CiView(state="success"),
        updated_at=1.0)])
    provider.answers += [good, KeyError("boom")]
    anyio.run(polls.poll, KEY)
    anyio.run(polls.poll, KEY)
    source = polls.sources[KEY]
    assert source.error.code == "internal"
    assert source.snapshot == good


def test_snapshots_and_errors_survive_a_restart(db) -> None:
    polls, provider, clock = poller(db)
    good = Snapshot(pipelines=[PipelineView(upstream="github", repo="acme/web", branch="b",
                                            state="failure", updated_at=5.0)])
    provider.answers += [good, UpstreamError("bad token", code="auth")]
    anyio.run(polls.poll, KEY)
    fetched_at = polls.sources[KEY].fetched_at
    clock.now += 100
    anyio.run(polls.poll, KEY)
    again, _, _ = poller(db)
    source = again.sources[KEY]
    assert source.snapshot == good
    assert source.fetched_at == fetched_at
    assert source.attempted_at == clock.now
    assert source.error.code == "auth"


def test_a_source_removed_from_the_config_is_forgotten(db) -> None:
    polls, _, _ = poller(db)
    anyio.run(polls.poll, KEY)
    Poller(Config(), {}, SnapshotTable(db))
    assert SnapshotTable(db).all() == []


def test_refresh_reports_polls_still_running_as_pending_and_lets_them_finish(db) -> None:
    polls, provider, _ = poller(db)
    provider.gate = anyio.Event()

    async def scenario() -> tuple[list, bool]:
        async with anyio.create_task_group() as tasks:
            polls.start(tasks)
            early = await polls.refresh(None, wait=0.05)
            provider.gate.set()
            late = await polls.refresh("web", wait=5)
        return early, late

    early, late = anyio.run(scenario)
    assert [r.outcome for r in early] == ["pending"]
    assert [r.outcome for r in late] == ["ok"]
    assert provider.polls == 2


def test_a_scheduled_poll_skips_while_a_refresh_holds_the_source(db) -> None:
    polls, provider, _ = poller(db)
    provider.gate = anyio.Event()

    async def scenario() -> None:
        async with anyio.create_task_group() as tasks:
            polls.start(tasks)
            tasks.start_soon(functools.partial(polls.poll, KEY, fresh=True))
            await anyio.sleep(0.01)
            await polls.poll(KEY)  # returns at once: the refresh is polling
            assert provider.polls == 1
            provider.gate.set()

    anyio.run(scenario)
    assert provider.polls == 1
