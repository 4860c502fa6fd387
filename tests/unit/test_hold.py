"""The hold of docs/lease-rules.md, boundary by boundary: its bound at admission, where the
operator cuts it, and the lease of a held session."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from session_operator.hold import MAX_HOLD_SETTING, hold_beyond_bound, hold_in_force
from session_operator.lease import (
    HeartbeatExtend,
    HeartbeatGone,
    HeartbeatNoop,
    Lease,
    SessionState,
    StopCause,
    StopReason,
    decide_heartbeat,
    expiry_cause,
    lease_end,
    next_deadline,
    observed_state,
    should_expire,
)
from session_operator.outage_rule import OutageWindow, outage_grace
from tests.unit.test_lease import INTERVAL, MS, T0, TTL, make_lease

pytestmark = pytest.mark.unit

EIGHT_HOURS = timedelta(hours=8)
HOLD_END = T0 + timedelta(hours=2)
"""A hold well past the lease, which heartbeats granted until T0 + TTL."""


def held_lease(
    hold_until: datetime | None = HOLD_END,
    *,
    state: SessionState = SessionState.READY,
    start_deadline: datetime | None = None,
    lifetime_ends_at: datetime | None = None,
) -> Lease:
    lease = make_lease(state, lifetime_ends_at=lifetime_ends_at, start_deadline=start_deadline)
    return dataclasses.replace(lease, hold_until=hold_until)


# --- the bound, at admission ---------------------------------------------------------------


def test_a_hold_up_to_the_bound_is_allowed() -> None:
    assert hold_beyond_bound(T0 + EIGHT_HOURS, T0, EIGHT_HOURS) is None
    assert hold_beyond_bound(T0 + MS, T0, EIGHT_HOURS) is None


def test_a_hold_in_the_past_is_no_matter_of_the_bound() -> None:
    assert hold_beyond_bound(T0 - timedelta(hours=1), T0, EIGHT_HOURS) is None


def test_a_hold_one_millisecond_past_the_bound_is_refused_naming_the_bound() -> None:
    sentence = hold_beyond_bound(T0 + EIGHT_HOURS + MS, T0, EIGHT_HOURS)
    assert sentence == (
        "spec.hold.until 2026-11-23T18:00:00.001Z is more than 8h ahead, the longest hold"
        " the operator's maxHold allows: hold until 2026-11-23T18:00:00.000Z at the latest"
    )


def test_the_bound_is_named_as_the_caller_says() -> None:
    sentence = hold_beyond_bound(T0 + timedelta(hours=3), T0, timedelta(hours=2), "policy x")
    assert sentence is not None
    assert "more than 2h ahead, the longest hold policy x allows" in sentence
    assert MAX_HOLD_SETTING not in sentence


def test_a_max_hold_of_zero_refuses_every_hold() -> None:
    assert hold_beyond_bound(T0 + MS, T0, timedelta(0)) == (
        "spec.hold is refused: the operator's maxHold is 0, so no Session may be held"
    )


# --- where the operator cuts it ------------------------------------------------------------


def test_a_hold_within_both_limits_is_in_force_as_asked() -> None:
    assert hold_in_force(HOLD_END, T0, EIGHT_HOURS, None) == hold_in_force(
        HOLD_END, T0, EIGHT_HOURS, HOLD_END
    )
    kept = hold_in_force(HOLD_END, T0, EIGHT_HOURS, HOLD_END)
    assert (kept.until, kept.cut_by) == (HOLD_END, None)


def test_a_hold_the_webhook_did_not_see_is_cut_to_max_hold_from_when_it_is_taken_up() -> None:
    taken_up = T0 + timedelta(minutes=5)
    cut = hold_in_force(T0 + timedelta(days=3), taken_up, EIGHT_HOURS, None)
    assert (cut.until, cut.cut_by) == (taken_up + EIGHT_HOURS, "maxHold")


def test_a_hold_never_passes_the_end_of_the_maximum_lifetime() -> None:
    lifetime_end = T0 + timedelta(hours=1)
    cut = hold_in_force(HOLD_END, T0, EIGHT_HOURS, lifetime_end)
    assert (cut.until, cut.cut_by) == (lifetime_end, "lifetimeEndsAt")
    # Both cut it: the earlier end wins.
    both = hold_in_force(T0 + timedelta(days=3), T0, EIGHT_HOURS, lifetime_end)
    assert (both.until, both.cut_by) == (lifetime_end, "lifetimeEndsAt")


def test_a_max_hold_of_zero_leaves_nothing_ahead() -> None:
    cut = hold_in_force(HOLD_END, T0, timedelta(0), None)
    assert (cut.until, cut.cut_by) == (T0, "maxHold")


# --- the lease of a held session -------------------------------------------------------------


def test_a_held_lease_ends_at_the_later_of_its_expiry_and_its_hold() -> None:
    assert lease_end(held_lease()) == HOLD_END
    assert lease_end(held_lease(T0 + timedelta(seconds=10))) == T0 + TTL
    assert lease_end(held_lease(None)) == T0 + TTL


def test_a_held_session_does_not_expire_before_its_hold_ends() -> None:
    lease = held_lease()
    after_the_ttl = T0 + TTL + timedelta(minutes=30)
    assert not should_expire(after_the_ttl, lease)
    assert not should_expire(HOLD_END - MS, lease)
    assert observed_state(HOLD_END - MS, lease) == (SessionState.READY, None)


def test_without_heartbeats_a_held_session_expires_at_the_end_of_its_hold() -> None:
    lease = held_lease()
    assert should_expire(HOLD_END, lease)
    assert observed_state(HOLD_END, lease) == (SessionState.STOPPING, StopReason.LEASE_EXPIRED)
    assert expiry_cause(lease) is StopCause.LEASE_EXPIRED


def test_a_hold_to_the_end_of_the_lifetime_ends_it_as_the_lifetime() -> None:
    lease = held_lease(HOLD_END, lifetime_ends_at=HOLD_END)
    assert expiry_cause(lease) is StopCause.MAX_LIFETIME_REACHED


def test_a_heartbeat_during_a_hold_extends_what_heartbeats_granted_not_the_hold() -> None:
    lease = held_lease()
    now = T0 + timedelta(minutes=30)  # the lease heartbeats granted has passed
    decision = decide_heartbeat(now, lease)
    assert decision == HeartbeatExtend(last_heartbeat=now, expires_at=now + TTL)


def test_a_heartbeat_within_the_interval_is_answered_with_the_end_of_the_hold() -> None:
    assert decide_heartbeat(T0 + MS, held_lease()) == HeartbeatNoop(expires_at=HOLD_END)


def test_a_heartbeat_after_the_hold_and_the_lease_ended_is_gone() -> None:
    decision = decide_heartbeat(HOLD_END, held_lease())
    assert decision == HeartbeatGone(SessionState.STOPPING, StopReason.LEASE_EXPIRED)


def test_a_held_session_is_looked_at_again_when_its_hold_ends() -> None:
    # Even with the lease beyond it: the hold's end is a change to tell (HoldEnded).
    assert next_deadline(held_lease(T0 + timedelta(seconds=10))) == T0 + timedelta(seconds=10)
    assert next_deadline(held_lease()) == HOLD_END
    starting = held_lease(state=SessionState.STARTING, start_deadline=T0 + timedelta(minutes=10))
    assert next_deadline(starting) == T0 + timedelta(minutes=10)


def test_an_outage_grace_counts_from_the_end_of_the_hold() -> None:
    # The client beat until the outage began, and the hold ended inside it.
    beat = T0 + timedelta(minutes=1, seconds=58)
    lease = dataclasses.replace(held_lease(T0 + timedelta(minutes=2)), last_heartbeat=beat)
    outage = OutageWindow(T0 + timedelta(minutes=2) - MS, T0 + timedelta(minutes=3))
    now = T0 + timedelta(minutes=3, seconds=1)
    grace = outage_grace(now, lease, T0, [outage])
    assert grace is not None
    assert grace.expires_at == outage.end + 2 * INTERVAL
