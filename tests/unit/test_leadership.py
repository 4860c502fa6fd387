"""Leader election rules (client-go's): who may take the Lease, and for how long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from session_operator.leadership import (
    LEASE_DURATION,
    RENEW_DEADLINE,
    RETRY_PERIOD,
    LeaseRecord,
    Observation,
    claimed,
    lease_expires_at,
    may_acquire,
    next_attempt_in,
    observe,
    released,
    still_leading,
    unheld_window,
)
from session_operator.outage_rule import OutageWindow

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


def held_by(holder: str | None, renewed_at: datetime = NOW) -> LeaseRecord:
    return LeaseRecord(holder, NOW - timedelta(minutes=5), renewed_at, LEASE_DURATION, 3)


def seen(record: LeaseRecord, at: datetime = NOW) -> Observation:
    return Observation(record, at)


def test_a_missing_or_free_lease_may_be_taken() -> None:
    assert may_acquire(NOW, None, "me")
    assert may_acquire(NOW, seen(held_by(None)), "me")


def test_our_own_lease_may_be_renewed() -> None:
    assert may_acquire(NOW, seen(held_by("me")), "me")


def test_a_lease_runs_out_a_duration_after_its_renewal_seen_within_a_retry_period() -> None:
    renewed_at = NOW - RETRY_PERIOD + timedelta(milliseconds=1)
    observed = seen(held_by("other", renewed_at=renewed_at), at=NOW)
    assert lease_expires_at(observed) == renewed_at + LEASE_DURATION
    assert not may_acquire(renewed_at + LEASE_DURATION - timedelta(milliseconds=1), observed, "me")
    assert may_acquire(renewed_at + LEASE_DURATION, observed, "me")


def test_a_renewal_that_looks_older_than_a_retry_period_counts_from_a_period_before_sight() -> None:
    # The holder's renewTime lies an hour back on our clock: skew, or we were not reading.
    observed = seen(held_by("other", renewed_at=NOW - timedelta(hours=1)), at=NOW)
    expires_at = NOW - RETRY_PERIOD + LEASE_DURATION
    assert lease_expires_at(observed) == expires_at
    assert not may_acquire(expires_at - timedelta(milliseconds=1), observed, "me")
    assert may_acquire(expires_at, observed, "me")
    assert expires_at - NOW > RENEW_DEADLINE  # the holder has stopped acting by then


def test_a_renewal_in_the_future_is_not_taken_before_a_duration_after_it_was_seen() -> None:
    # The holder's clock runs ahead of ours: its renewTime lies ahead of our reading.
    observed = seen(held_by("other", renewed_at=NOW + timedelta(seconds=30)), at=NOW)
    assert lease_expires_at(observed) == NOW + LEASE_DURATION
    assert not may_acquire(NOW + LEASE_DURATION - timedelta(milliseconds=1), observed, "me")
    assert may_acquire(NOW + LEASE_DURATION, observed, "me")


def test_a_lease_without_a_renew_time_counts_from_its_sighting() -> None:
    observed = seen(LeaseRecord("other", None, None, LEASE_DURATION, 0), at=NOW)
    assert lease_expires_at(observed) == NOW + LEASE_DURATION


def test_a_standby_tries_again_when_the_lease_it_saw_runs_out_within_a_retry_period() -> None:
    observed = seen(held_by("other", renewed_at=NOW), at=NOW)
    expires_at = NOW + LEASE_DURATION
    assert next_attempt_in(NOW, observed, "me") == RETRY_PERIOD
    soon = expires_at - timedelta(milliseconds=700)
    assert next_attempt_in(soon, observed, "me") == timedelta(milliseconds=700)
    assert next_attempt_in(expires_at + timedelta(seconds=1), observed, "me") == timedelta(0)


def test_a_holder_or_a_replica_that_saw_no_holder_tries_again_after_a_retry_period() -> None:
    late = NOW + timedelta(minutes=5)
    assert next_attempt_in(late, seen(held_by("me")), "me") == RETRY_PERIOD
    assert next_attempt_in(late, seen(held_by(None)), "me") == RETRY_PERIOD
    assert next_attempt_in(late, None, "me") == RETRY_PERIOD


def test_an_unchanged_record_keeps_its_first_sighting_and_a_renewal_is_seen_anew() -> None:
    record = held_by("other")
    first = observe(NOW, None, record)
    assert observe(NOW + timedelta(seconds=5), first, record) is first
    renewal = held_by("other", renewed_at=NOW + timedelta(seconds=2))
    assert observe(NOW + timedelta(seconds=6), first, renewal).seen_at == NOW + timedelta(seconds=6)


@pytest.mark.parametrize(
    ("skew", "earliest", "latest"),
    [
        # In step: a lease duration after the last renewal, once the standby has seen it.
        (timedelta(0), LEASE_DURATION, LEASE_DURATION + RETRY_PERIOD),
        # Ours ahead (renewTime looks old): counted from a retry period before the sighting.
        (timedelta(seconds=30), LEASE_DURATION - RETRY_PERIOD, LEASE_DURATION),
        # Ours behind (renewTime in the future): counted from the sighting, as client-go.
        (timedelta(seconds=-30), LEASE_DURATION, LEASE_DURATION + RETRY_PERIOD),
    ],
)
def test_a_skewed_clock_never_takes_a_live_leaders_lease_and_takes_a_dead_ones(
    skew: timedelta, earliest: timedelta, latest: timedelta
) -> None:
    # A leader renews every retry period by its own (true) clock; a standby whose clock is
    # *skew* off reads the Lease every retry period by its own, just after each renewal.
    leader: LeaseRecord | None = None
    observed: Observation | None = None
    true_time = NOW
    for _ in range(30):  # a minute of renewals
        leader = claimed(true_time, leader, "leader")
        observed = observe(true_time + skew, observed, leader)
        assert not may_acquire(true_time + skew, observed, "standby")
        true_time += RETRY_PERIOD
    # The leader dies after its last renewal: the standby reads on every retry period.
    assert leader is not None
    assert leader.renewed_at is not None
    last_renewal = leader.renewed_at
    taken_at = None
    while taken_at is None:
        observed = observe(true_time + skew, observed, leader)
        if may_acquire(true_time + skew, observed, "standby"):
            taken_at = true_time
        true_time += RETRY_PERIOD
    assert earliest <= taken_at - last_renewal <= latest
    assert taken_at - last_renewal > RENEW_DEADLINE


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
    assert may_acquire(NOW, seen(free), "other")


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
