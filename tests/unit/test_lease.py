"""The lease rules of docs/lease-rules.md, boundary by boundary."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from session_operator.lease import (
    LIVE_STATES,
    TERMINAL_STATES,
    HeartbeatExtend,
    HeartbeatGone,
    HeartbeatNoop,
    Lease,
    SessionState,
    StopCause,
    StopReason,
    can_transition,
    decide_heartbeat,
    expiry_cause,
    extended_lease_expiry,
    initial_lease_expiry,
    lease_expired,
    next_deadline,
    observed_state,
    should_expire,
    start_timed_out,
    terminal_state_for,
    within_heartbeat_interval,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
TTL = timedelta(seconds=60)
INTERVAL = timedelta(seconds=5)

NEW, STARTING, READY = SessionState.NEW, SessionState.STARTING, SessionState.READY
STOPPING, STOPPED, FAILED = SessionState.STOPPING, SessionState.STOPPED, SessionState.FAILED

# The state diagram of docs/lease-rules.md, written out edge by edge.
SPEC_TRANSITIONS = {
    (NEW, STARTING),
    (NEW, READY),  # no template
    (STARTING, READY),
    (NEW, STOPPING),
    (STARTING, STOPPING),
    (READY, STOPPING),
    (NEW, STOPPED),  # created with stop: true, or nothing to release
    (STARTING, STOPPED),
    (READY, STOPPED),
    (NEW, FAILED),
    (STARTING, FAILED),
    (READY, FAILED),
    (STOPPING, STOPPED),
    (STOPPING, FAILED),
}


def make_lease(
    state: SessionState = READY,
    expires_at: datetime = T0 + TTL,
    last_heartbeat: datetime | None = T0,
    stop_reason: StopReason | None = None,
    lifetime_ends_at: datetime | None = None,
    start_deadline: datetime | None = None,
) -> Lease:
    return Lease(
        state=state,
        expires_at=expires_at,
        last_heartbeat=last_heartbeat,
        ttl=TTL,
        heartbeat_interval=INTERVAL,
        stop_reason=stop_reason,
        lifetime_ends_at=lifetime_ends_at,
        start_deadline=start_deadline,
    )


# --- states --------------------------------------------------------------------------------


def test_state_values_are_the_status_strings() -> None:
    assert [s.value for s in SessionState] == [
        "new",
        "starting",
        "ready",
        "stopping",
        "stopped",
        "failed",
    ]


def test_stop_reason_values_are_the_status_strings() -> None:
    assert {r.value for r in StopReason} == {"USER_STOPPED", "LEASE_EXPIRED", "FAILED", "CLEANUP"}


def test_live_states_are_new_starting_ready() -> None:
    assert frozenset({NEW, STARTING, READY}) == LIVE_STATES


def test_terminal_states_are_stopped_and_failed() -> None:
    assert frozenset({STOPPED, FAILED}) == TERMINAL_STATES


def test_stopping_is_neither_live_nor_terminal() -> None:
    assert STOPPING not in LIVE_STATES
    assert STOPPING not in TERMINAL_STATES


# --- transitions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "target"), list(itertools.product(SessionState, SessionState)))
def test_transition_is_allowed_exactly_when_the_spec_diagram_has_the_edge(
    current: SessionState, target: SessionState
) -> None:
    assert can_transition(current, target) is ((current, target) in SPEC_TRANSITIONS)


@pytest.mark.parametrize("state", list(SessionState))
def test_staying_in_a_state_is_not_a_transition(state: SessionState) -> None:
    assert can_transition(state, state) is False


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_never_change_again(terminal: SessionState) -> None:
    assert not any(can_transition(terminal, target) for target in SessionState)


def test_stopping_never_returns_to_a_live_state() -> None:
    assert not any(can_transition(STOPPING, live) for live in LIVE_STATES)


@pytest.mark.parametrize("live", sorted(LIVE_STATES))
def test_live_state_may_stop_directly_when_nothing_is_to_be_released(
    live: SessionState,
) -> None:
    assert can_transition(live, STOPPING)
    assert can_transition(live, STOPPED)
    assert can_transition(live, FAILED)


def test_lifecycle_never_moves_backwards() -> None:
    assert not can_transition(READY, STARTING)
    assert not can_transition(READY, NEW)
    assert not can_transition(STARTING, NEW)


@pytest.mark.parametrize(
    ("reason", "terminal"),
    [
        (StopReason.USER_STOPPED, STOPPED),
        (StopReason.LEASE_EXPIRED, STOPPED),
        (StopReason.CLEANUP, STOPPED),
        (StopReason.FAILED, FAILED),
    ],
)
def test_terminal_state_for_reason(reason: StopReason, terminal: SessionState) -> None:
    assert terminal_state_for(reason) is terminal


# --- expiry predicate ----------------------------------------------------------------------


def test_lease_is_expired_at_the_exact_expiry_instant() -> None:
    assert lease_expired(T0, T0) is True


def test_lease_is_not_expired_one_millisecond_before() -> None:
    assert lease_expired(T0 - MS, T0) is False


def test_lease_is_expired_after_the_expiry() -> None:
    assert lease_expired(T0 + MS, T0) is True


def test_initial_expiry_is_creation_plus_ttl() -> None:
    assert initial_lease_expiry(T0, T0 + MS, TTL, INTERVAL) == T0 + timedelta(seconds=60)


def test_initial_expiry_is_creation_plus_ttl_when_initialised_within_two_intervals() -> None:
    initialised = T0 + 2 * INTERVAL
    assert initial_lease_expiry(T0, initialised, TTL, INTERVAL) == T0 + TTL


def test_a_late_initialisation_takes_at_most_two_intervals_from_the_first_lease() -> None:
    # Heartbeats were refused (409) until the lease was initialised, 57 s after creation.
    initialised = T0 + timedelta(seconds=57)
    expected = initialised + TTL - 2 * INTERVAL
    assert initial_lease_expiry(T0, initialised, TTL, INTERVAL) == expected


# --- extension -----------------------------------------------------------------------------


def test_extension_moves_expiry_to_now_plus_ttl() -> None:
    now = T0 + timedelta(seconds=30)
    assert extended_lease_expiry(T0 + TTL, now, TTL) == now + TTL


def test_extension_never_shrinks_the_lease() -> None:
    current = T0 + timedelta(hours=1)
    assert extended_lease_expiry(current, T0, TTL) == current


def test_extension_keeps_expiry_when_now_plus_ttl_equals_it() -> None:
    assert extended_lease_expiry(T0 + TTL, T0, TTL) == T0 + TTL


# --- idempotency window --------------------------------------------------------------------


def test_no_heartbeat_yet_is_never_within_the_interval() -> None:
    assert within_heartbeat_interval(T0, None, INTERVAL) is False


def test_heartbeat_one_millisecond_before_the_interval_is_within() -> None:
    assert within_heartbeat_interval(T0 + INTERVAL - MS, T0, INTERVAL) is True


def test_heartbeat_exactly_one_interval_later_is_not_within() -> None:
    assert within_heartbeat_interval(T0 + INTERVAL, T0, INTERVAL) is False


def test_heartbeat_at_the_same_instant_is_within() -> None:
    assert within_heartbeat_interval(T0, T0, INTERVAL) is True


# --- expiry decision -----------------------------------------------------------------------


@pytest.mark.parametrize("live", sorted(LIVE_STATES))
def test_live_session_expires_at_its_expiry(live: SessionState) -> None:
    assert should_expire(T0 + TTL, make_lease(state=live)) is True


@pytest.mark.parametrize("live", sorted(LIVE_STATES))
def test_live_session_does_not_expire_one_millisecond_before(live: SessionState) -> None:
    assert should_expire(T0 + TTL - MS, make_lease(state=live)) is False


@pytest.mark.parametrize("state", [STOPPING, STOPPED, FAILED])
def test_session_that_is_not_live_never_expires(state: SessionState) -> None:
    lease = make_lease(state=state, stop_reason=StopReason.USER_STOPPED)
    assert should_expire(T0 + TTL + timedelta(hours=1), lease) is False


# --- what the API reports ------------------------------------------------------------------


@pytest.mark.parametrize("live", sorted(LIVE_STATES))
def test_lapsed_live_session_is_reported_as_stopping_lease_expired(live: SessionState) -> None:
    assert observed_state(T0 + TTL, make_lease(state=live)) == (
        STOPPING,
        StopReason.LEASE_EXPIRED,
    )


def test_live_session_is_reported_as_stored_before_its_expiry() -> None:
    assert observed_state(T0 + TTL - MS, make_lease(state=STARTING)) == (STARTING, None)


def test_lapsed_live_session_keeps_an_already_recorded_reason() -> None:
    lease = make_lease(state=READY, stop_reason=StopReason.USER_STOPPED)
    assert observed_state(T0 + TTL, lease) == (STOPPING, StopReason.USER_STOPPED)


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (STOPPING, StopReason.USER_STOPPED),
        (STOPPED, StopReason.CLEANUP),
        (FAILED, StopReason.FAILED),
    ],
)
def test_session_that_is_not_live_is_reported_as_stored(
    state: SessionState, reason: StopReason
) -> None:
    lease = make_lease(state=state, stop_reason=reason)
    assert observed_state(T0 + TTL + timedelta(hours=1), lease) == (state, reason)


# --- heartbeat decision --------------------------------------------------------------------


def test_first_heartbeat_extends_the_lease() -> None:
    now = T0 + timedelta(seconds=1)
    decision = decide_heartbeat(now, make_lease(state=NEW, last_heartbeat=None))
    assert decision == HeartbeatExtend(last_heartbeat=now, expires_at=now + TTL)


def test_heartbeat_after_the_interval_extends_the_lease() -> None:
    now = T0 + INTERVAL
    decision = decide_heartbeat(now, make_lease())
    assert decision == HeartbeatExtend(last_heartbeat=now, expires_at=now + TTL)


def test_heartbeat_within_interval_writes_nothing() -> None:
    decision = decide_heartbeat(T0 + INTERVAL - MS, make_lease())
    assert decision == HeartbeatNoop(expires_at=T0 + TTL)


def test_heartbeat_extension_never_shrinks_the_lease() -> None:
    far = T0 + timedelta(hours=2)
    now = T0 + INTERVAL
    decision = decide_heartbeat(now, make_lease(expires_at=far))
    assert decision == HeartbeatExtend(last_heartbeat=now, expires_at=far)


def test_heartbeat_at_the_exact_expiry_is_gone() -> None:
    lease = make_lease(last_heartbeat=T0 + TTL - INTERVAL)
    assert decide_heartbeat(T0 + TTL, lease) == HeartbeatGone(
        state=STOPPING, stop_reason=StopReason.LEASE_EXPIRED
    )


def test_heartbeat_one_millisecond_before_expiry_is_accepted() -> None:
    now = T0 + TTL - MS
    decision = decide_heartbeat(now, make_lease(last_heartbeat=T0))
    assert decision == HeartbeatExtend(last_heartbeat=now, expires_at=now + TTL)


def test_gone_is_checked_before_the_idempotency_window() -> None:
    # Expired, yet the last heartbeat is only a millisecond old: gone wins over noop.
    lease = make_lease(expires_at=T0, last_heartbeat=T0 - MS)
    assert decide_heartbeat(T0, lease) == HeartbeatGone(
        state=STOPPING, stop_reason=StopReason.LEASE_EXPIRED
    )


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (STOPPING, StopReason.USER_STOPPED),
        (STOPPED, StopReason.LEASE_EXPIRED),
        (FAILED, StopReason.FAILED),
    ],
)
def test_heartbeat_never_revives_a_session_that_is_not_live(
    state: SessionState, reason: StopReason
) -> None:
    # The lease is unexpired and the heartbeat is within the interval: still gone.
    lease = make_lease(state=state, stop_reason=reason)
    assert decide_heartbeat(T0 + MS, lease) == HeartbeatGone(state=state, stop_reason=reason)


@pytest.mark.parametrize("live", sorted(LIVE_STATES))
def test_heartbeat_is_accepted_in_every_live_state(live: SessionState) -> None:
    decision = decide_heartbeat(T0 + INTERVAL, make_lease(state=live))
    assert isinstance(decision, HeartbeatExtend)


def test_heartbeat_agrees_with_the_expiry_decision_at_every_boundary() -> None:
    lease = make_lease(last_heartbeat=None)
    for now in (T0 + TTL - MS, T0 + TTL, T0 + TTL + MS):
        gone = isinstance(decide_heartbeat(now, lease), HeartbeatGone)
        assert gone is should_expire(now, lease)


def test_lease_record_is_immutable() -> None:
    lease = make_lease()
    with pytest.raises(dataclasses.FrozenInstanceError):
        lease.state = STOPPED  # type: ignore[misc]


# --- maximum lifetime ----------------------------------------------------------------------

# A session created at T0 with a maximum lifetime of 10 minutes.
LIFETIME_END = T0 + timedelta(minutes=10)


def test_initial_expiry_is_creation_plus_ttl_when_the_lifetime_ends_later() -> None:
    assert initial_lease_expiry(T0, T0, TTL, INTERVAL, LIFETIME_END) == T0 + TTL


def test_initial_expiry_is_the_lifetime_end_when_it_comes_before_one_ttl() -> None:
    assert initial_lease_expiry(T0, T0, TTL, INTERVAL, T0 + TTL - MS) == T0 + TTL - MS


def test_a_late_initialisation_never_passes_the_end_of_the_lifetime() -> None:
    late = LIFETIME_END - MS
    assert initial_lease_expiry(T0, late, TTL, INTERVAL, LIFETIME_END) == LIFETIME_END


def test_extension_stops_at_the_end_of_the_lifetime() -> None:
    now = LIFETIME_END - timedelta(seconds=30)
    assert extended_lease_expiry(now, now, TTL, LIFETIME_END) == LIFETIME_END


def test_extension_one_ttl_before_the_end_reaches_it_exactly() -> None:
    now = LIFETIME_END - TTL
    assert extended_lease_expiry(now, now, TTL, LIFETIME_END) == LIFETIME_END


def test_extension_well_before_the_end_is_now_plus_ttl() -> None:
    now = T0 + timedelta(minutes=1)
    assert extended_lease_expiry(now, now, TTL, LIFETIME_END) == now + TTL


def test_heartbeat_just_before_the_end_extends_the_lease_to_the_end() -> None:
    now = LIFETIME_END - 2 * MS
    lease = make_lease(
        expires_at=LIFETIME_END - MS, last_heartbeat=now - INTERVAL, lifetime_ends_at=LIFETIME_END
    )
    assert decide_heartbeat(now, lease) == HeartbeatExtend(
        last_heartbeat=now, expires_at=LIFETIME_END
    )


def test_heartbeat_at_the_end_of_the_lifetime_is_gone() -> None:
    lease = make_lease(
        expires_at=LIFETIME_END,
        last_heartbeat=LIFETIME_END - INTERVAL,
        lifetime_ends_at=LIFETIME_END,
    )
    assert decide_heartbeat(LIFETIME_END, lease) == HeartbeatGone(
        state=STOPPING, stop_reason=StopReason.LEASE_EXPIRED
    )


def test_heartbeat_to_a_lease_already_at_the_end_records_the_beat_and_keeps_the_end() -> None:
    now = LIFETIME_END - MS
    lease = make_lease(
        expires_at=LIFETIME_END, last_heartbeat=now - INTERVAL, lifetime_ends_at=LIFETIME_END
    )
    assert decide_heartbeat(now, lease) == HeartbeatExtend(
        last_heartbeat=now, expires_at=LIFETIME_END
    )


def test_no_heartbeat_moves_the_lease_past_the_end_of_the_lifetime() -> None:
    lease = make_lease(expires_at=T0 + TTL, last_heartbeat=None, lifetime_ends_at=LIFETIME_END)
    now = T0
    while not isinstance(decision := decide_heartbeat(now, lease), HeartbeatGone):
        if isinstance(decision, HeartbeatExtend):
            assert decision.expires_at <= LIFETIME_END
            lease = dataclasses.replace(
                lease, expires_at=decision.expires_at, last_heartbeat=decision.last_heartbeat
            )
        now += INTERVAL
    assert lease.expires_at == LIFETIME_END
    assert now >= LIFETIME_END
    assert should_expire(now, lease)


def test_lease_that_ran_until_the_end_of_the_lifetime_expires_as_max_lifetime_reached() -> None:
    lease = make_lease(expires_at=LIFETIME_END, lifetime_ends_at=LIFETIME_END)
    assert should_expire(LIFETIME_END, lease)
    assert not should_expire(LIFETIME_END - MS, lease)
    assert expiry_cause(lease) is StopCause.MAX_LIFETIME_REACHED
    assert observed_state(LIFETIME_END, lease) == (STOPPING, StopReason.LEASE_EXPIRED)


def test_lease_that_lapsed_before_the_end_of_the_lifetime_expires_as_lease_expired() -> None:
    lease = make_lease(expires_at=LIFETIME_END - MS, lifetime_ends_at=LIFETIME_END)
    assert expiry_cause(lease) is StopCause.LEASE_EXPIRED


def test_lease_without_a_maximum_lifetime_expires_as_lease_expired() -> None:
    assert expiry_cause(make_lease()) is StopCause.LEASE_EXPIRED


@pytest.mark.parametrize("cause", list(StopCause))
def test_every_stop_cause_records_one_of_the_four_stop_reasons(cause: StopCause) -> None:
    assert cause.stop_reason in set(StopReason)


@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        (StopCause.MAX_LIFETIME_REACHED, StopReason.LEASE_EXPIRED),
        (StopCause.START_TIMEOUT, StopReason.FAILED),
    ],
)
def test_the_new_causes_stop_with_the_seed_reasons(cause: StopCause, reason: StopReason) -> None:
    assert cause.stop_reason is reason


@pytest.mark.parametrize("reason", list(StopReason))
def test_the_plain_cause_of_a_reason_is_its_camel_case_name(reason: StopReason) -> None:
    cause = StopCause.plain(reason)
    assert cause.stop_reason is reason
    assert cause.value == "".join(part.capitalize() for part in reason.value.split("_"))


# --- start deadline ------------------------------------------------------------------------

START_DEADLINE = T0 + timedelta(minutes=10)


@pytest.mark.parametrize("state", [NEW, STARTING])
def test_start_times_out_at_the_exact_deadline(state: SessionState) -> None:
    lease = make_lease(state=state, start_deadline=START_DEADLINE)
    assert start_timed_out(START_DEADLINE, lease) is True
    assert start_timed_out(START_DEADLINE + MS, lease) is True


@pytest.mark.parametrize("state", [NEW, STARTING])
def test_start_has_not_timed_out_one_millisecond_before(state: SessionState) -> None:
    lease = make_lease(state=state, start_deadline=START_DEADLINE)
    assert start_timed_out(START_DEADLINE - MS, lease) is False


@pytest.mark.parametrize("state", [READY, STOPPING, STOPPED, FAILED])
def test_start_deadline_no_longer_applies_once_ready_or_stopping(state: SessionState) -> None:
    lease = make_lease(state=state, start_deadline=START_DEADLINE)
    assert start_timed_out(START_DEADLINE + timedelta(hours=1), lease) is False


def test_session_without_a_start_deadline_never_times_out() -> None:
    lease = make_lease(state=STARTING)
    assert start_timed_out(T0 + timedelta(days=1), lease) is False


def test_next_deadline_of_a_starting_session_is_its_start_deadline_when_earlier() -> None:
    lease = make_lease(state=STARTING, expires_at=T0 + TTL, start_deadline=T0 + TTL - MS)
    assert next_deadline(lease) == T0 + TTL - MS


def test_next_deadline_of_a_starting_session_is_its_expiry_when_earlier() -> None:
    lease = make_lease(state=NEW, expires_at=T0 + TTL, start_deadline=START_DEADLINE)
    assert next_deadline(lease) == T0 + TTL


def test_next_deadline_of_a_ready_session_is_its_expiry_whatever_its_start_deadline() -> None:
    lease = make_lease(state=READY, expires_at=T0 + TTL, start_deadline=T0)
    assert next_deadline(lease) == T0 + TTL


def test_next_deadline_without_a_start_deadline_is_the_expiry() -> None:
    assert next_deadline(make_lease(state=STARTING)) == T0 + TTL
