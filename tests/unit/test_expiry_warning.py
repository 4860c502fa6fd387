"""The expiry warning (docs/lease-rules.md, Expiry warning): when it is due, what the
lifecycle writes then, once, and how the store counts the sessions it holds in the window."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from session_operator.conditions import LEASE_VALID
from session_operator.controller.reconciler import Kubernetes, Reconciler
from session_operator.expiry_warning import (
    ENDED,
    EXPIRING_SOON,
    Countdown,
    countdown,
    expiring_soon,
    in_warning_window,
    lease_granted,
    lease_valid_after_heartbeat,
    seconds_left,
    warned,
    warning_instant,
)
from session_operator.informer.session_store import SessionStore
from session_operator.lease import SessionState, StopCause
from session_operator.lifecycle import StopSession, WaitUntil, WarnExpiringSoon, next_step
from session_operator.metrics import SessionsExpiringSoon
from session_operator.models import Session
from tests.unit.builders import (
    EXPIRES,
    EXPIRES_AT,
    MIDWAY,
    SETTINGS,
    PatchTestFailed,
    apply_patch,
    listed_pods,
    stored,
)
from tests.unit.test_reconciler import Events, NoPods, Owned, StoredSession

pytestmark = pytest.mark.unit

MS = timedelta(milliseconds=1)
WINDOW = timedelta(seconds=20)
WARN_AT = EXPIRES_AT - WINDOW
WARNING = dataclasses.replace(SETTINGS, expiry_warning=WINDOW)


def lease_valid(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == LEASE_VALID)


# --- when it is due -----------------------------------------------------------------------


def test_the_warning_is_due_the_window_before_the_end_of_the_lease() -> None:
    assert warning_instant(EXPIRES_AT, WINDOW) == EXPIRES_AT - timedelta(seconds=20)


def test_a_window_of_zero_turns_the_warning_off() -> None:
    assert warning_instant(EXPIRES_AT, timedelta(0)) is None
    assert not in_warning_window(EXPIRES_AT - MS, EXPIRES_AT, timedelta(0))


def test_the_window_begins_at_its_instant_and_ends_as_the_lease_expires() -> None:
    assert not in_warning_window(WARN_AT - MS, EXPIRES_AT, WINDOW)
    assert in_warning_window(WARN_AT, EXPIRES_AT, WINDOW)
    assert in_warning_window(EXPIRES_AT - MS, EXPIRES_AT, WINDOW)
    # At the end the lease has expired (rule 1): that is a stop, not a warning.
    assert not in_warning_window(EXPIRES_AT, EXPIRES_AT, WINDOW)


def test_an_extended_lease_leaves_the_window() -> None:
    now = WARN_AT + timedelta(seconds=5)
    extended = now + timedelta(seconds=60)  # a heartbeat's new expiry, TTL 60 s
    assert in_warning_window(now, EXPIRES_AT, WINDOW)
    assert not in_warning_window(now, extended, WINDOW)


def test_a_window_as_long_as_the_lease_holds_an_extended_lease_in_it() -> None:
    now = MIDWAY
    assert in_warning_window(now, now + timedelta(seconds=60), timedelta(seconds=60))


def test_seconds_left_count_to_the_millisecond_and_stop_at_zero() -> None:
    assert seconds_left(WARN_AT, EXPIRES_AT) == 20.0
    assert seconds_left(EXPIRES_AT - timedelta(milliseconds=1500), EXPIRES_AT) == 1.5
    assert seconds_left(EXPIRES_AT + timedelta(seconds=3), EXPIRES_AT) == 0.0


def test_the_countdown_says_the_seconds_left_and_whether_in_the_window() -> None:
    assert countdown(WARN_AT, EXPIRES_AT, WINDOW) == Countdown(20.0, expiring_soon=True)
    assert countdown(WARN_AT - MS, EXPIRES_AT, WINDOW) == Countdown(20.001, False)
    assert countdown(WARN_AT, EXPIRES_AT, timedelta(0)) == Countdown(20.0, False)
    assert (ENDED.seconds_left, ENDED.expiring_soon) == (0.0, False)


# --- what LeaseValid says -----------------------------------------------------------------


def test_a_lapse_is_told_with_its_instant_and_the_seconds_left() -> None:
    told = expiring_soon(WARN_AT, EXPIRES_AT, None)
    assert (told.type, told.status, told.reason) == (LEASE_VALID, True, EXPIRING_SOON)
    assert told.message == (f"the lease expires at {EXPIRES}, in 20s, unless a heartbeat renews it")


def test_the_seconds_left_are_counted_up() -> None:
    assert ", in 20s," in expiring_soon(WARN_AT + MS, EXPIRES_AT, None).message


def test_the_end_of_the_maximum_lifetime_is_told_as_such() -> None:
    told = expiring_soon(WARN_AT, EXPIRES_AT, lifetime_ends_at=EXPIRES_AT)
    assert told.message == (
        f"the session reaches its maximum lifetime at {EXPIRES}, in 20s; no heartbeat"
        " extends a lease past it"
    )
    # A lease that lapses before the lifetime ends is an ordinary lapse.
    earlier = expiring_soon(WARN_AT, EXPIRES_AT, EXPIRES_AT + timedelta(hours=1))
    assert earlier.message.startswith("the lease expires at")


def test_a_heartbeat_that_moves_the_end_out_of_the_window_grants_the_lease_again() -> None:
    now = WARN_AT + timedelta(seconds=5)
    after = lease_valid_after_heartbeat(now, now + timedelta(seconds=60), None, WINDOW)
    assert after == lease_granted(None)
    assert (after.status, after.reason) == (True, "LeaseGranted")
    assert after.message == "heartbeats keep the lease; see status.leaseExpiresAt"


def test_a_heartbeat_capped_by_the_lifetime_stays_in_the_window_with_the_new_end() -> None:
    now = WARN_AT + timedelta(seconds=5)
    ends = EXPIRES_AT + timedelta(seconds=3)
    after = lease_valid_after_heartbeat(now, ends, ends, WINDOW)
    assert after.reason == EXPIRING_SOON
    assert "maximum lifetime at 2026-11-23T10:01:03.123Z, in 18s;" in after.message
    assert lease_granted(ends).message.endswith("; never past 2026-11-23T10:01:03.123Z")


def test_warned_reads_the_lease_valid_reason() -> None:
    assert not warned(stored()["status"]["conditions"])
    assert warned([{"type": "LeaseValid", "status": "True", "reason": EXPIRING_SOON}])
    assert not warned([{"type": "Ready", "status": "True", "reason": EXPIRING_SOON}])


# --- the lifecycle: one deadline at the warning instant, one write then ------------------


def test_with_the_warning_off_a_live_session_waits_for_its_expiry() -> None:
    step = next_step(Session.from_body(stored()), MIDWAY, SETTINGS, None)
    assert step == WaitUntil(EXPIRES_AT)


def test_a_live_session_waits_for_its_warning_instant_first() -> None:
    step = next_step(Session.from_body(stored()), MIDWAY, WARNING, None)
    assert step == WaitUntil(WARN_AT)


def test_a_lease_already_inside_a_longer_window_is_warned_at_once() -> None:
    settings = dataclasses.replace(SETTINGS, expiry_warning=timedelta(minutes=5))
    step = next_step(Session.from_body(stored()), MIDWAY, settings, None)
    assert isinstance(step, WarnExpiringSoon)


def test_at_the_warning_instant_lease_valid_says_expiring_soon_with_an_event() -> None:
    body = stored()
    step = next_step(Session.from_body(body), WARN_AT, WARNING, None)
    assert isinstance(step, WarnExpiringSoon)
    transition = step.transition
    assert transition.event_reason == "LeaseExpiringSoon"
    assert transition.warning is False
    assert transition.event_note == (
        f"the lease expires at {EXPIRES}, in 20s, unless a heartbeat renews it"
    )
    written = apply_patch(body, transition.patch)
    condition = lease_valid(written)
    assert (condition["status"], condition["reason"]) == ("True", EXPIRING_SOON)
    # Still True: lastTransitionTime stays where the lease was granted.
    assert condition["lastTransitionTime"] == lease_valid(body)["lastTransitionTime"]
    assert written["status"]["state"] == "ready"
    assert written["status"]["leaseExpiresAt"] == EXPIRES


def test_once_warned_the_session_waits_for_its_expiry_without_a_second_warning() -> None:
    body = stored()
    step = next_step(Session.from_body(body), WARN_AT, WARNING, None)
    assert isinstance(step, WarnExpiringSoon)
    warned_body = apply_patch(body, step.transition.patch)
    later = WARN_AT + timedelta(seconds=10)
    assert next_step(Session.from_body(warned_body), later, WARNING, None) == WaitUntil(EXPIRES_AT)


@pytest.mark.parametrize("state", [SessionState.NEW, SessionState.STARTING, SessionState.READY])
def test_every_live_state_is_warned(state: SessionState) -> None:
    spec: dict[str, Any] | None = (
        {"template": {"spec": {}}} if state is not SessionState.READY else None
    )
    step = next_step(Session.from_body(stored(state, spec=spec)), WARN_AT, WARNING, None)
    if state is SessionState.NEW:
        assert not isinstance(step, WarnExpiringSoon)  # its Pod is created first
    else:
        assert isinstance(step, WarnExpiringSoon)


def test_the_warning_loses_to_a_heartbeat_that_moved_the_lease_meanwhile() -> None:
    body = stored()
    step = next_step(Session.from_body(body), WARN_AT, WARNING, None)
    assert isinstance(step, WarnExpiringSoon)
    body["status"]["leaseExpiresAt"] = "2026-11-23T10:01:40.123Z"
    with pytest.raises(PatchTestFailed):
        apply_patch(body, step.transition.patch)


def test_the_lifetime_cap_is_warned_as_a_lapse_is() -> None:
    body = stored(lifetimeEndsAt=EXPIRES)
    assert next_step(Session.from_body(body), MIDWAY, WARNING, None) == WaitUntil(WARN_AT)
    step = next_step(Session.from_body(body), WARN_AT, WARNING, None)
    assert isinstance(step, WarnExpiringSoon)
    assert "reaches its maximum lifetime" in step.transition.event_note


def test_an_expired_lease_is_stopped_not_warned() -> None:
    step = next_step(Session.from_body(stored()), EXPIRES_AT, WARNING, None)
    assert isinstance(step, StopSession)
    assert step.cause is StopCause.LEASE_EXPIRED


async def test_the_reconciler_writes_the_warning_once_with_one_event() -> None:
    sessions = StoredSession(stored())
    events = Events()
    kube = Kubernetes(sessions, NoPods(), Owned([]), events)
    reconciler = Reconciler(kube, listed_pods(), WARNING, lambda: WARN_AT)

    outcome = await reconciler.reconcile(Session.from_body(sessions.body))
    assert sessions.writes == ["status"]
    assert events.reasons == ["LeaseExpiringSoon"]
    assert outcome.deadline == EXPIRES_AT

    again = await reconciler.reconcile(Session.from_body(sessions.body))
    assert sessions.writes == ["status"]
    assert events.reasons == ["LeaseExpiringSoon"]
    assert again.deadline == EXPIRES_AT


# --- the store counts the sessions in the window ------------------------------------------


def warned_body(name: str, version: int, state: SessionState = SessionState.READY) -> Session:
    body = stored(state)
    body["metadata"] |= {"name": name, "uid": f"uid-{name}", "resourceVersion": str(version)}
    lease_valid(body)["reason"] = EXPIRING_SOON
    return Session.from_body(body)


def test_the_store_counts_the_live_sessions_told_they_are_expiring_soon() -> None:
    store = SessionStore()
    store.update(Session.from_body(stored()))
    store.update(warned_body("a", 1))
    store.update(warned_body("b", 1))
    assert store.count_expiring_soon() == 2

    plain = Session.from_body(stored())
    left = dataclasses.replace(plain, ref=plain.ref._replace(name="a"))
    store.update(dataclasses.replace(left, resource_version="2"))  # a heartbeat took it out
    assert store.count_expiring_soon() == 1
    store.remove(plain.ref._replace(name="b"))
    assert store.count_expiring_soon() == 0


def test_a_stopped_session_is_not_counted_and_a_relist_starts_afresh() -> None:
    store = SessionStore()
    store.update(warned_body("a", 1, SessionState.STOPPING))
    assert store.count_expiring_soon() == 0
    store.update(warned_body("b", 1))
    store.replace_all([warned_body("c", 1)])
    assert store.count_expiring_soon() == 1


def test_the_gauge_reports_what_the_store_counts() -> None:
    (family,) = SessionsExpiringSoon(lambda: 3).collect()
    assert family.name == "xg2g_sessions_expiring_soon"
    assert [sample.value for sample in family.samples] == [3]
