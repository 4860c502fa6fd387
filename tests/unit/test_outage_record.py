"""How a replica notices an outage from its own apiserver calls (``CallHealth``, pure), and
what it knows of all outages (``OutageMonitor``: its own, the shared record, the ongoing)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from session_operator.call_health import REFUSALS_QUIET, STALLED_AFTER, CallHealth
from session_operator.k8s import outage_record
from session_operator.k8s.errors import ApiUnavailable
from session_operator.k8s.outage_record import (
    UNFINISHED_WITHIN,
    OutageMonitor,
    OutageRecordApi,
    decode_windows,
    encode_windows,
)
from session_operator.outage_rule import OutageWindow, recorded_outages
from tests.unit.builders import stop

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
S = timedelta(seconds=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The record polled every 10 ms, not every 2 s."""
    monkeypatch.setattr(outage_record, "POLL_INTERVAL", timedelta(milliseconds=10))


def watched_calls() -> tuple[Clock, CallHealth, OutageMonitor]:
    """A clock, the health its calls tell, and the monitor that reads it."""
    clock = Clock()
    health = CallHealth(clock)
    return clock, health, OutageMonitor(health)


def test_answered_calls_are_no_outage() -> None:
    clock, health, monitor = watched_calls()
    token = health.call_started()
    clock.now += STALLED_AFTER - timedelta(milliseconds=1)
    health.call_ended(token, reachable=True)
    assert monitor.windows() == []


def test_failed_calls_open_an_outage_from_the_first_send_to_the_next_answer() -> None:
    clock, health, monitor = watched_calls()
    first = health.call_started()
    clock.now += 2 * S
    health.call_ended(first, reachable=False)
    assert monitor.windows() == [OutageWindow(T0, T0 + 2 * S)]
    assert monitor.windows()[0].ongoing
    clock.now += 10 * S
    health.call_ended(health.call_started(), reachable=True)
    (window,) = monitor.windows()
    assert window == OutageWindow(T0, T0 + 12 * S)
    assert not window.ongoing


def test_a_call_hanging_longer_than_the_stall_limit_is_an_ongoing_outage() -> None:
    clock, health, monitor = watched_calls()
    token = health.call_started()
    clock.now += STALLED_AFTER - timedelta(milliseconds=1)
    assert monitor.windows() == []
    clock.now += timedelta(milliseconds=1)
    assert monitor.windows() == [OutageWindow(T0, T0 + STALLED_AFTER, ongoing=True)]
    clock.now += 20 * S
    health.call_ended(token, reachable=True)
    assert monitor.windows() == [OutageWindow(T0, T0 + STALLED_AFTER + 20 * S)]


def test_a_cancelled_call_tells_nothing() -> None:
    clock, health, monitor = watched_calls()
    token = health.call_started()
    clock.now += 10 * S
    health.call_abandoned(token)
    assert monitor.windows() == []


def test_heartbeats_refused_for_want_of_capacity_are_one_outage_until_they_stop() -> None:
    clock, health, monitor = watched_calls()
    health.heartbeat_refused()
    clock.now += REFUSALS_QUIET / 2
    health.heartbeat_refused()
    clock.now += REFUSALS_QUIET / 2
    health.heartbeat_refused()
    assert monitor.windows() == [OutageWindow(T0, T0 + REFUSALS_QUIET, ongoing=True)]
    assert monitor.windows()[0].ongoing
    clock.now += REFUSALS_QUIET
    (closed,) = monitor.windows()
    assert closed == OutageWindow(T0, T0 + REFUSALS_QUIET)
    assert not closed.ongoing
    clock.now += 30 * S
    health.heartbeat_refused()  # a refusal after the quiet spell starts another
    assert monitor.windows() == [
        closed,
        OutageWindow(T0 + 31 * S + REFUSALS_QUIET, T0 + 31 * S + REFUSALS_QUIET, ongoing=True),
    ]


def test_record_round_trips_and_an_unreadable_one_is_empty() -> None:
    windows = [OutageWindow(T0, T0 + S), OutageWindow(T0 + 60 * S, T0 + 70 * S, ongoing=True)]
    decoded = decode_windows(encode_windows(windows))
    assert decoded == windows
    assert [window.ongoing for window in decoded] == [False, True]
    assert decode_windows("not json") == []
    assert decode_windows('[{"start": "2026-11-23T10:00:00Z"}]') == []


class Record(OutageRecordApi):
    """The shared record in memory: what other replicas wrote, and what this one adds."""

    def __init__(self, windows: list[OutageWindow]) -> None:
        self.windows = windows
        self.added: list[OutageWindow] = []
        self.reads = 0

    async def read(self) -> tuple[list[OutageWindow], str | None]:
        self.reads += 1
        return list(self.windows), "1"

    async def add(self, new: list[OutageWindow]) -> list[OutageWindow]:
        self.added += new
        self.windows += new
        return list(self.windows)


async def test_windows_noticed_here_are_shared_and_the_record_is_read() -> None:
    clock, health, monitor = watched_calls()
    theirs = OutageWindow(T0 - 60 * S, T0 - 50 * S)
    record = Record([theirs])
    token = health.call_started()
    clock.now += 2 * S
    health.call_ended(token, reachable=False)
    health.call_ended(health.call_started(), reachable=True)
    mine = OutageWindow(T0, T0 + 2 * S)

    task = asyncio.create_task(monitor.run(record))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if record.added:
            break
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert record.added == [mine]
    assert monitor.windows() == [theirs, mine]


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")


async def test_waiting_for_the_next_poll_starts_no_task() -> None:
    # kopf waits, at its exit, for every task started after its own.
    _, _, monitor = watched_calls()
    record = Record([])
    before = asyncio.all_tasks()
    task = asyncio.create_task(monitor.run(record))
    await eventually(lambda: record.reads == 1)
    await asyncio.sleep(0.01)
    assert asyncio.all_tasks() - before == {task}
    await stop(task)


async def test_a_new_window_is_shared_at_once_not_at_the_next_poll() -> None:
    _, _, monitor = watched_calls()
    record = Record([])
    task = asyncio.create_task(monitor.run(record))
    await eventually(lambda: record.reads == 1)
    window = OutageWindow(T0, T0 + S)
    monitor.add(window)
    await eventually(lambda: record.added == [window])
    await stop(task)


async def test_the_record_is_read_again_every_poll_interval(fast_polls: None) -> None:
    _, _, monitor = watched_calls()
    record = Record([])
    task = asyncio.create_task(monitor.run(record))
    await eventually(lambda: record.reads >= 3)
    await stop(task)


async def test_windows_closed_soon_after_a_write_wait_for_the_next_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A brownout closes windows every few seconds; each replica writes once per poll.
    monkeypatch.setattr(outage_record, "POLL_INTERVAL", timedelta(milliseconds=100))
    _, _, monitor = watched_calls()
    record = Record([])
    task = asyncio.create_task(monitor.run(record))
    await eventually(lambda: record.reads == 1)
    first, second, third = (OutageWindow(T0 + n * 20 * S, T0 + (n * 20 + 1) * S) for n in range(3))
    monitor.add(first)
    await eventually(lambda: record.added == [first])
    monitor.add(second)
    monitor.add(third)
    await asyncio.sleep(0.02)
    assert record.added == [first]
    await eventually(lambda: record.added == [first, second, third])
    await stop(task)


async def test_an_outage_going_on_is_recorded_as_far_as_it_has_gone_at_every_poll(
    fast_polls: None,
) -> None:
    # A replica restarted in the middle of an outage must not take its part of it along.
    clock, health, monitor = watched_calls()
    token = health.call_started()
    health.call_ended(token, reachable=False)
    record = Record([])
    clock.now += 3 * S
    task = asyncio.create_task(monitor.run(record))
    await eventually(lambda: OutageWindow(T0, T0 + 3 * S) in record.windows)
    clock.now += 4 * S
    await eventually(lambda: record.windows[-1] == OutageWindow(T0, T0 + 7 * S))
    assert record.windows[-1].ongoing  # written as going on: its end is not known yet
    health.call_ended(health.call_started(), reachable=True)
    await eventually(lambda: record.windows[-1] == OutageWindow(T0, T0 + 7 * S))
    await eventually(lambda: not record.windows[-1].ongoing)
    await stop(task)


async def test_a_replica_started_after_an_outage_recorded_as_going_on_continues_it(
    fast_polls: None,
) -> None:
    # Both replicas stopped in an outage: nobody accepted heartbeats until one served again.
    clock, health, monitor = watched_calls()
    unfinished = OutageWindow(T0 - 30 * S, T0 - 20 * S, ongoing=True)
    record = Record([OutageWindow(T0 - 90 * S, T0 - 80 * S), unfinished])
    serving = False
    task = asyncio.create_task(monitor.run(record, lambda: serving))
    await asyncio.wait_for(monitor.loaded.wait(), timeout=5)
    # The rule reads the recorded one as ending where it was last written ...
    assert all(not window.ongoing for window in monitor.windows()[:-1])
    # ... and this replica's own view goes on from its start, answered calls or not ...
    health.call_ended(health.call_started(), reachable=True)
    clock.now += 5 * S
    assert monitor.windows()[-1] == OutageWindow(T0 - 30 * S, T0 + 5 * S, ongoing=True)
    await eventually(lambda: record.windows[-1] == OutageWindow(T0 - 30 * S, T0 + 5 * S))
    assert record.windows[-1].ongoing
    # ... until it serves heartbeats itself.
    serving = True
    await eventually(lambda: OutageWindow(T0 - 30 * S, T0 + 5 * S) in record.added)
    await eventually(lambda: not record.windows[-1].ongoing)
    clock.now += 5 * S
    assert monitor.windows()[-1] == OutageWindow(T0 - 30 * S, T0 + 5 * S)
    assert not monitor.windows()[-1].ongoing
    await stop(task)


async def test_a_replica_started_in_an_outage_of_its_own_continues_the_recorded_one_too(
    fast_polls: None,
) -> None:
    # Its first calls fail before it has read the record: its own outage must not hide the
    # recorded one, or the span between them would count as time clients could beat in.
    clock, health, monitor = watched_calls()
    health.call_ended(health.call_started(), reachable=False)
    record = Record([OutageWindow(T0 - 30 * S, T0 - 20 * S, ongoing=True)])
    task = asyncio.create_task(monitor.run(record, lambda: False))
    await asyncio.wait_for(monitor.loaded.wait(), timeout=5)
    clock.now += 2 * S
    assert monitor.windows()[-1] == OutageWindow(T0 - 30 * S, T0 + 2 * S, ongoing=True)
    await eventually(lambda: record.windows[-1].start == T0 - 30 * S)
    await stop(task)


@pytest.mark.parametrize(
    "recorded",
    [
        OutageWindow(T0 - 30 * S, T0 - 20 * S),  # seen to end
        # marked as going on, but last written long ago: its writer died in an outage
        # the others did not see
        OutageWindow(T0 - 30 * S, T0 - UNFINISHED_WITHIN - S, ongoing=True),
    ],
)
async def test_a_replica_started_after_an_outage_that_ended_continues_nothing(
    recorded: OutageWindow,
) -> None:
    _, _, monitor = watched_calls()
    record = Record([recorded])
    task = asyncio.create_task(monitor.run(record))
    await asyncio.wait_for(monitor.loaded.wait(), timeout=5)
    assert monitor.windows() == [recorded]
    assert not monitor.windows()[0].ongoing
    await stop(task)


async def test_the_monitor_is_loaded_once_the_record_was_read() -> None:
    _, _, monitor = watched_calls()
    record = Unreadable()
    task = asyncio.create_task(monitor.run(record))
    await eventually(lambda: record.reads == 1)
    assert not monitor.loaded.is_set()
    record.broken = False
    await asyncio.wait_for(monitor.loaded.wait(), timeout=5)
    await stop(task)


class Unreadable(Record):
    """A record the apiserver does not serve until *broken* is cleared."""

    def __init__(self) -> None:
        super().__init__([])
        self.broken = True

    async def read(self) -> tuple[list[OutageWindow], str | None]:
        if self.broken:
            self.reads += 1
            raise ApiUnavailable("the apiserver cannot be reached")
        return await super().read()


async def test_an_outage_of_refusals_written_as_going_on_is_recorded_as_over_once_over(
    fast_polls: None,
) -> None:
    # Refusals end at the last one, which may be earlier than the end last written.
    clock, health, monitor = watched_calls()
    health.heartbeat_refused()
    record = Record([])
    task = asyncio.create_task(monitor.run(record))
    clock.now += REFUSALS_QUIET / 2
    going_on = OutageWindow(T0, T0 + REFUSALS_QUIET / 2, ongoing=True)
    await eventually(lambda: as_merged(record.windows) == [going_on])
    assert as_merged(record.windows)[0].ongoing
    clock.now += REFUSALS_QUIET
    await eventually(lambda: not as_merged(record.windows)[-1].ongoing)
    assert as_merged(record.windows) == [OutageWindow(T0, T0 + REFUSALS_QUIET / 2)]
    await stop(task)


def as_merged(windows: list[OutageWindow]) -> list[OutageWindow]:
    """*windows* as the ConfigMap keeps them, merged."""
    merged: list[OutageWindow] = []
    for window in windows:
        merged = recorded_outages(merged, window)
    return merged
