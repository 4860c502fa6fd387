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
    StopReason,
    can_transition,
    decide_heartbeat,
    extended_lease_expiry,
    initial_lease_expiry,
    lease_expired,
    observed_state,
    should_expire,
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
) -> Lease:
    return Lease(
        state=state,
        expires_at=expires_at,
        last_heartbeat=last_heartbeat,
        ttl=TTL,
        heartbeat_interval=INTERVAL,
        stop_reason=stop_reason,
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
    assert initial_lease_expiry(T0, TTL) == T0 + timedelta(seconds=60)


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
