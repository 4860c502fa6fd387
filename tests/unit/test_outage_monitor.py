"""How a replica notices an outage from its own apiserver calls (SPEC §2 rule 8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from session_operator.k8s.outages import (
    STALLED_AFTER,
    OutageMonitor,
    decode_windows,
    encode_windows,
)
from session_operator.outage import OutageWindow

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
S = timedelta(seconds=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_answered_calls_are_no_outage() -> None:
    clock = Clock()
    monitor = OutageMonitor(clock)
    token = monitor.call_started()
    clock.now += STALLED_AFTER - timedelta(milliseconds=1)
    monitor.call_ended(token, reachable=True)
    assert monitor.windows() == []


def test_failed_calls_open_an_outage_from_the_first_send_to_the_next_answer() -> None:
    clock = Clock()
    monitor = OutageMonitor(clock)
    first = monitor.call_started()
    clock.now += 2 * S
    monitor.call_ended(first, reachable=False)
    assert monitor.windows() == [OutageWindow(T0, T0 + 2 * S)]
    assert monitor.windows()[0].ongoing
    clock.now += 10 * S
    monitor.call_ended(monitor.call_started(), reachable=True)
    (window,) = monitor.windows()
    assert window == OutageWindow(T0, T0 + 12 * S)
    assert not window.ongoing


def test_a_call_hanging_longer_than_the_stall_limit_is_an_ongoing_outage() -> None:
    clock = Clock()
    monitor = OutageMonitor(clock)
    token = monitor.call_started()
    clock.now += STALLED_AFTER - timedelta(milliseconds=1)
    assert monitor.windows() == []
    clock.now += timedelta(milliseconds=1)
    assert monitor.windows() == [OutageWindow(T0, T0 + STALLED_AFTER, ongoing=True)]
    clock.now += 20 * S
    monitor.call_ended(token, reachable=True)
    assert monitor.windows() == [OutageWindow(T0, T0 + STALLED_AFTER + 20 * S)]


def test_a_cancelled_call_tells_nothing() -> None:
    clock = Clock()
    monitor = OutageMonitor(clock)
    token = monitor.call_started()
    clock.now += 10 * S
    monitor.call_abandoned(token)
    assert monitor.windows() == []


def test_record_round_trips_and_an_unreadable_one_is_empty() -> None:
    windows = [OutageWindow(T0, T0 + S), OutageWindow(T0 + 60 * S, T0 + 70 * S)]
    assert decode_windows(encode_windows(windows)) == windows
    assert decode_windows("not json") == []
    assert decode_windows('[{"start": "2026-11-23T10:00:00Z"}]') == []
