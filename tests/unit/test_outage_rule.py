"""Lease rule 8 (docs/outages.md): an outage of the system is not charged to live clients,
edge by edge."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from session_operator.lease import Lease, SessionState, initial_lease_expiry
from session_operator.outage_rule import (
    FUTURE_TOLERANCE,
    KEPT_OUTAGES,
    LeaseGrace,
    OutageWindow,
    outage_grace,
    recorded_outages,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
S = timedelta(seconds=1)
TTL = 30 * S
INTERVAL = 5 * S
GRACE = 2 * INTERVAL

# A 40 s outage from T0; its grace runs until T0 + 40 s + 2 intervals.
OUTAGE = OutageWindow(T0, T0 + 40 * S)
GRACE_END = OUTAGE.end + GRACE
CREATED = T0 - timedelta(hours=1)


def lease_of(
    last_heartbeat: datetime | None,
    expires_at: datetime | None = None,
    state: SessionState = SessionState.READY,
) -> Lease:
    if expires_at is None:
        assert last_heartbeat is not None
        expires_at = last_heartbeat + TTL
    return Lease(
        state=state,
        expires_at=expires_at,
        last_heartbeat=last_heartbeat,
        ttl=TTL,
        heartbeat_interval=INTERVAL,
    )


def grace(
    lease: Lease,
    now: datetime,
    outages: list[OutageWindow] | None = None,
    created_at: datetime = CREATED,
) -> LeaseGrace | None:
    return outage_grace(now, lease, created_at, [OUTAGE] if outages is None else outages)


def test_client_beating_until_the_outage_gets_a_grace_after_it() -> None:
    lease = lease_of(T0 - 1 * S)  # lapses at T0 + 29 s, inside the outage
    assert grace(lease, OUTAGE.end) == LeaseGrace(OUTAGE, GRACE_END)


def test_grace_is_the_outage_end_plus_two_intervals() -> None:
    owed = grace(lease_of(T0), OUTAGE.end + 1 * S)
    assert owed is not None
    assert owed.expires_at == OUTAGE.end + 2 * INTERVAL


@pytest.mark.parametrize(
    ("last_beat", "owed"),
    [
        (T0, True),  # beat at the very start
        (T0 - GRACE + MS, True),
        (T0 - GRACE, True),  # exactly two intervals before: still alive
        (T0 - GRACE - MS, False),  # one millisecond more: gone before the outage
        (T0 - 5 * INTERVAL, False),
    ],
)
def test_client_must_have_beaten_within_two_intervals_before_the_start(
    last_beat: datetime, owed: bool
) -> None:
    # The lease lapses inside the outage in every case.
    lease = lease_of(last_beat, expires_at=T0 + 10 * S)
    assert (grace(lease, OUTAGE.end) is not None) is owed


@pytest.mark.parametrize(
    ("expires_at", "owed"),
    [
        (T0 - MS, False),  # lapsed just before the outage: an ordinary expiry
        (T0, True),  # lapsed as the outage began
        (OUTAGE.end, True),  # lapsed as it ended
        (GRACE_END - MS, True),  # lapsed before the client could beat again
        (GRACE_END, False),  # the grace would not move it: an ordinary expiry
    ],
)
def test_lease_must_lapse_in_the_outage_or_two_intervals_after_it(
    expires_at: datetime, owed: bool
) -> None:
    lease = lease_of(T0 - 1 * S, expires_at=expires_at)
    now = max(expires_at, OUTAGE.end)
    if now >= GRACE_END:
        now = GRACE_END - MS if expires_at < GRACE_END else expires_at
    assert (grace(lease, now) is not None) is owed


def test_grace_that_has_run_out_is_not_owed_again() -> None:
    lease = lease_of(T0 - 1 * S)
    assert grace(lease, GRACE_END - MS) is not None
    assert grace(lease, GRACE_END) is None


def test_lease_not_yet_expired_needs_no_grace() -> None:
    lease = lease_of(T0 - 1 * S)
    assert grace(lease, lease.expires_at - MS) is None
    assert grace(lease, lease.expires_at) is not None


def test_session_never_beaten_counts_from_its_creation() -> None:
    for created, owed in ((T0 - GRACE, True), (T0 - GRACE - MS, False)):
        never_beaten = lease_of(
            None, expires_at=initial_lease_expiry(created, created, TTL, INTERVAL)
        )
        assert (grace(never_beaten, OUTAGE.end, created_at=created) is not None) is owed


def late_first_lease(initialised: datetime) -> Lease:
    """A Session created three minutes before the outage, never beaten, whose first lease
    was initialised at *initialised* (heartbeats were refused until then)."""
    created = T0 - timedelta(minutes=3)
    return lease_of(None, expires_at=initial_lease_expiry(created, initialised, TTL, INTERVAL))


def test_session_never_beaten_with_a_late_first_lease_counts_from_its_initialisation() -> None:
    created = T0 - timedelta(minutes=3)
    assert grace(late_first_lease(T0 + 5 * S), OUTAGE.end, created_at=created) is not None
    assert grace(late_first_lease(T0 - GRACE), OUTAGE.end, created_at=created) is not None
    assert grace(late_first_lease(T0 - GRACE - MS), OUTAGE.end, created_at=created) is None


@pytest.mark.parametrize(
    "state", [SessionState.STOPPING, SessionState.STOPPED, SessionState.FAILED]
)
def test_session_no_longer_live_gets_no_grace(state: SessionState) -> None:
    assert grace(lease_of(T0 - 1 * S, state=state), OUTAGE.end) is None


@pytest.mark.parametrize("state", [SessionState.NEW, SessionState.STARTING, SessionState.READY])
def test_every_live_state_gets_the_grace(state: SessionState) -> None:
    assert grace(lease_of(T0 - 1 * S, state=state), OUTAGE.end) is not None


def test_no_outage_no_grace() -> None:
    assert grace(lease_of(T0 - 1 * S), OUTAGE.end, outages=[]) is None


def test_an_earlier_unrelated_outage_does_not_excuse_a_later_lapse() -> None:
    earlier = OutageWindow(T0 - timedelta(hours=1), T0 - timedelta(minutes=59))
    lease = lease_of(T0 - 1 * S)
    assert grace(lease, OUTAGE.end, outages=[earlier]) is None
    assert grace(lease, OUTAGE.end, outages=[earlier, OUTAGE]) == LeaseGrace(OUTAGE, GRACE_END)


def test_windows_of_one_outage_seen_by_two_replicas_are_one() -> None:
    seen_later = OutageWindow(T0 + 2 * S, OUTAGE.end + 3 * S)
    owed = grace(lease_of(T0 - 1 * S), OUTAGE.end + 3 * S, outages=[seen_later, OUTAGE])
    assert owed == LeaseGrace(OutageWindow(T0, seen_later.end), seen_later.end + GRACE)


def test_a_client_silent_since_an_earlier_outage_is_not_excused_by_the_next() -> None:
    # Its grace after the first outage ran out before a second one began.
    second = OutageWindow(GRACE_END + 1 * S, GRACE_END + 20 * S)
    lease = lease_of(T0 - 1 * S, expires_at=GRACE_END)
    assert grace(lease, second.end, outages=[OUTAGE, second]) is None


def test_a_client_that_beat_between_two_outages_is_excused_by_the_second() -> None:
    beat = OUTAGE.end + 2 * S
    second = OutageWindow(OUTAGE.end + GRACE + 1 * S, beat + 40 * S)
    owed = grace(lease_of(beat), second.end, outages=[OUTAGE, second])
    assert owed == LeaseGrace(second, second.end + GRACE)


def test_outages_less_than_two_intervals_apart_are_one_for_the_lease() -> None:
    # The client could not have had a beat accepted in the 3 s between them.
    second = OutageWindow(OUTAGE.end + 3 * S, OUTAGE.end + 20 * S)
    lease = lease_of(T0 - 1 * S, expires_at=GRACE_END)
    owed = grace(lease, second.end, outages=[OUTAGE, second])
    assert owed == LeaseGrace(OutageWindow(T0, second.end), second.end + GRACE)


def brownout(
    first: datetime, every: timedelta, failing: timedelta, count: int
) -> list[OutageWindow]:
    """An overloaded apiserver: a call fails every *every*, answered ones close each."""
    return [OutageWindow(first + n * every, first + n * every + failing) for n in range(count)]


def test_a_client_beating_into_a_brownout_is_not_charged() -> None:
    # Every beat after the last accepted one failed, and other calls were answered between.
    last_accepted = T0 - 1 * S
    windows = brownout(T0, INTERVAL, 2 * S, 10)  # failures until T0 + 47 s
    record: list[OutageWindow] = []
    for window in windows:
        record = recorded_outages(record, window)
    assert record == [OutageWindow(T0, windows[-1].end)]
    owed = grace(lease_of(last_accepted), windows[-1].end, outages=record)
    assert owed == LeaseGrace(record[0], windows[-1].end + GRACE)


def test_a_brownout_seen_by_a_long_interval_lease_is_one_outage() -> None:
    # Failures 30 s apart are separate in the record, one outage for a 30 s interval.
    interval = 30 * S
    windows = brownout(T0, interval, 2 * S, 12)
    record: list[OutageWindow] = []
    for window in windows:
        record = recorded_outages(record, window)
    assert record == windows
    lease = dataclasses.replace(
        lease_of(T0 - 1 * S, expires_at=T0 + 300 * S), ttl=300 * S, heartbeat_interval=interval
    )
    owed = grace(lease, windows[-1].end, outages=record)
    assert owed == LeaseGrace(OutageWindow(T0, windows[-1].end), windows[-1].end + 2 * interval)


def test_a_client_gone_before_a_brownout_is_not_excused() -> None:
    windows = brownout(T0, INTERVAL, 2 * S, 10)
    lease = lease_of(T0 - GRACE - 1 * S)
    assert grace(lease, windows[-1].end, outages=windows) is None


def test_an_outage_still_going_on_is_a_window_ending_now() -> None:
    now = T0 + 31 * S
    ongoing = OutageWindow(T0, now)
    owed = grace(lease_of(T0 - 1 * S), now, outages=[ongoing])
    assert owed == LeaseGrace(ongoing, now + GRACE)


def test_outage_window_names_its_span() -> None:
    assert str(OUTAGE) == "2026-11-23T10:00:00.000Z..2026-11-23T10:00:40.000Z"


def test_record_merges_overlapping_and_touching_windows() -> None:
    a = OutageWindow(T0, T0 + 10 * S)
    overlapping = OutageWindow(T0 + 5 * S, T0 + 20 * S)
    touching = OutageWindow(T0 + 20 * S, T0 + 25 * S)
    assert recorded_outages([a, overlapping], touching) == [OutageWindow(T0, T0 + 25 * S)]


def test_record_keeps_separate_windows_sorted() -> None:
    late = OutageWindow(T0 + 60 * S, T0 + 70 * S)
    early = OutageWindow(T0, T0 + 10 * S)
    assert recorded_outages([late], early) == [early, late]


def test_record_contained_window_changes_nothing() -> None:
    outer = OutageWindow(T0, T0 + 60 * S)
    assert recorded_outages([outer], OutageWindow(T0 + 5 * S, T0 + 6 * S)) == [outer]


def test_record_is_bounded_to_the_latest_windows() -> None:
    windows = brownout(T0, 20 * S, 1 * S, KEPT_OUTAGES + 10)
    record: list[OutageWindow] = []
    for window in windows:
        record = recorded_outages(record, window)
    assert record == windows[-KEPT_OUTAGES:]


def test_a_recorded_window_that_ends_beyond_the_clock_tolerance_grants_nothing() -> None:
    lease = lease_of(T0 - 1 * S)
    now = T0 + 35 * S
    forged = OutageWindow(T0, now + FUTURE_TOLERANCE + 1 * S)  # "ends" in the future
    assert grace(lease, now, [forged]) is None
    skewed = OutageWindow(T0, now + FUTURE_TOLERANCE)  # a replica whose clock runs ahead
    assert grace(lease, now, [skewed]) == LeaseGrace(skewed, skewed.end + GRACE)


# --- the maximum lifetime ------------------------------------------------------------------


def with_lifetime_end(lease: Lease, ends_at: datetime) -> Lease:
    return dataclasses.replace(lease, lifetime_ends_at=ends_at)


def test_grace_never_runs_past_the_end_of_the_lifetime() -> None:
    ends_at = GRACE_END - MS
    lease = with_lifetime_end(lease_of(T0 - 1 * S), ends_at)
    assert grace(lease, OUTAGE.end) == LeaseGrace(OUTAGE, ends_at)


def test_grace_that_ends_before_the_end_of_the_lifetime_is_whole() -> None:
    lease = with_lifetime_end(lease_of(T0 - 1 * S), GRACE_END)
    assert grace(lease, OUTAGE.end) == LeaseGrace(OUTAGE, GRACE_END)


def test_lease_that_ran_until_the_end_of_the_lifetime_is_owed_no_grace() -> None:
    # It lapsed inside the outage, its client alive: yet no heartbeat could have extended it.
    ends_at = T0 + 20 * S
    lease = with_lifetime_end(lease_of(T0 - 1 * S, expires_at=ends_at), ends_at)
    assert grace(lease, OUTAGE.end) is None


def test_a_recorded_outage_goes_on_until_a_window_ends_it_at_least_as_late() -> None:
    going_on = OutageWindow(T0, T0 + 10 * S, ongoing=True)
    (record,) = recorded_outages([OutageWindow(T0 - 5 * S, T0 + 2 * S)], going_on)
    assert record == OutageWindow(T0 - 5 * S, T0 + 10 * S)
    assert record.ongoing
    # Written further as it goes on, then closed by the replica that saw it end.
    (record,) = recorded_outages([record], OutageWindow(T0, T0 + 14 * S, ongoing=True))
    assert record.ongoing
    (record,) = recorded_outages([record], OutageWindow(T0, T0 + 14 * S))
    assert record == OutageWindow(T0 - 5 * S, T0 + 14 * S)
    assert not record.ongoing
    # Another replica's shorter window closed meanwhile does not end it.
    (record,) = recorded_outages([going_on], OutageWindow(T0 + 1 * S, T0 + 3 * S))
    assert record.ongoing
