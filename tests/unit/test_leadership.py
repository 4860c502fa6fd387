"""Leader election rules (client-go's): who may take the Lease, and for how long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from session_operator.leadership import (
    LEASE_DURATION,
    RENEW_DEADLINE,
    LeaseRecord,
    claimed,
    may_acquire,
    released,
    still_leading,
    unheld_window,
)
from session_operator.outage import OutageWindow

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


def held_by(holder: str | None, renewed_at: datetime = NOW) -> LeaseRecord:
    return LeaseRecord(holder, NOW - timedelta(minutes=5), renewed_at, LEASE_DURATION, 3)


def test_a_missing_or_free_lease_may_be_taken() -> None:
    assert may_acquire(NOW, None, "me")
    assert may_acquire(NOW, held_by(None), "me")


def test_our_own_lease_may_be_renewed() -> None:
    assert may_acquire(NOW, held_by("me"), "me")


def test_another_holders_lease_is_respected_until_a_whole_duration_passed() -> None:
    record = held_by("other", renewed_at=NOW)
    assert not may_acquire(NOW + LEASE_DURATION - timedelta(milliseconds=1), record, "me")
    assert may_acquire(NOW + LEASE_DURATION, record, "me")


def test_taking_over_counts_a_transition_and_resets_the_acquire_time() -> None:
    taken = claimed(NOW, held_by("other"), "me")
    assert (taken.holder, taken.acquired_at, taken.renewed_at) == ("me", NOW, NOW)
    assert taken.transitions == 4


def test_renewing_keeps_the_acquire_time_and_the_transition_count() -> None:
    record = held_by("me")
    renewed = claimed(NOW + timedelta(seconds=2), record, "me")
    assert renewed.acquired_at == record.acquired_at
    assert renewed.renewed_at == NOW + timedelta(seconds=2)
    assert renewed.transitions == 3


def test_a_released_lease_is_free_for_the_next_replica() -> None:
    free = released(held_by("me"))
    assert free.holder is None
    assert may_acquire(NOW, free, "other")


def test_a_leader_stops_acting_at_the_renew_deadline() -> None:
    assert still_leading(NOW + RENEW_DEADLINE - timedelta(milliseconds=1), NOW)
    assert not still_leading(NOW + RENEW_DEADLINE, NOW)


def test_lease_unheld_for_longer_than_a_duration_is_an_outage_from_its_last_renewal() -> None:
    record = held_by("other", renewed_at=NOW)
    later = NOW + LEASE_DURATION + timedelta(milliseconds=1)
    assert unheld_window(later, record, "me") == OutageWindow(NOW, later)
    assert unheld_window(NOW + LEASE_DURATION, record, "me") is None


def test_lease_released_on_shutdown_is_an_outage_only_after_a_whole_duration() -> None:
    record = released(held_by("other", renewed_at=NOW))
    assert unheld_window(NOW + timedelta(seconds=3), record, "me") is None
    later = NOW + timedelta(minutes=1)
    assert unheld_window(later, record, "me") == OutageWindow(NOW, later)


def test_renewing_our_own_lease_or_a_fresh_one_is_no_outage() -> None:
    assert unheld_window(NOW + timedelta(minutes=1), held_by("me"), "me") is None
    assert unheld_window(NOW, None, "me") is None
