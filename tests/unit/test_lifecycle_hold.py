"""The hold of a Session in its lifecycle (docs/lease-rules.md, Hold): taken up from
``spec.hold``, cut where it must be, ended, cleared, and how a held session stops."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest

from session_operator import metrics
from session_operator.lease import SessionState, StopCause
from session_operator.lifecycle import (
    ChangeHold,
    HoldChange,
    Step,
    StopSession,
    WaitUntil,
    next_step,
)
from session_operator.models import Session
from session_operator.timestamps import format_timestamp
from tests.unit.builders import (
    EXPIRES,
    EXPIRES_AT,
    GENERATION,
    MIDWAY,
    SETTINGS,
    PatchTestFailed,
    apply_patch,
    stored,
)
from tests.unit.test_reconciler import Owned, StoredSession, reconciler_over

pytestmark = pytest.mark.unit

MS = timedelta(milliseconds=1)
HOLD_END_AT = EXPIRES_AT + timedelta(hours=1)
HOLD_END = format_timestamp(HOLD_END_AT)


def decide(body: Mapping[str, Any], now: datetime, max_hold: timedelta | None = None) -> Step:
    settings = SETTINGS if max_hold is None else dataclasses.replace(SETTINGS, max_hold=max_hold)
    return next_step(Session.from_body(body), now, settings, None)


def asking(until: str, **status: Any) -> dict[str, Any]:
    """A ready session whose spec asks for a hold until *until*."""
    return stored(spec={"hold": {"until": until}}, **status)


def held(
    until: str = HOLD_END, *, spec_until: str | None = HOLD_END, **status: Any
) -> dict[str, Any]:
    """A ready session held until *until*, taken up from ``spec.hold.until`` *spec_until*
    (``None``: spec.hold since removed)."""
    spec = {"hold": {"until": spec_until}} if spec_until is not None else {}
    return stored(spec=spec, holdUntil=until, holdRequestedUntil=spec_until or until, **status)


def hold_change(step: Step) -> ChangeHold:
    assert isinstance(step, ChangeHold), step
    return step


def lease_valid(body: Mapping[str, Any]) -> dict[str, Any]:
    (found,) = [c for c in body["status"]["conditions"] if c["type"] == "LeaseValid"]
    return dict(found)


# --- taking a hold up ------------------------------------------------------------------------


def test_a_hold_asked_for_is_taken_up_with_its_condition_and_event() -> None:
    body = asking("2026-11-23T11:01:00.123Z")
    step = hold_change(decide(body, MIDWAY))
    assert step.change is HoldChange.SET
    after = apply_patch(body, step.transition.patch)
    status = after["status"]
    assert (status["holdUntil"], status["holdRequestedUntil"]) == (HOLD_END, HOLD_END)
    assert status["leaseExpiresAt"] == EXPIRES  # a hold never moves what heartbeats granted
    assert status["observedGeneration"] == GENERATION
    condition = lease_valid(after)
    assert (condition["status"], condition["reason"]) == ("True", "Held")
    assert condition["lastTransitionTime"] == "2026-11-23T10:00:00Z"  # still True
    assert step.transition.event_reason == "HoldSet"
    assert f"held until {HOLD_END}" in step.transition.event_note
    assert not step.transition.warning


def test_a_hold_taken_up_is_not_taken_up_again_and_the_session_waits_for_its_end() -> None:
    assert decide(held(), MIDWAY) == WaitUntil(HOLD_END_AT)


def test_a_request_finer_than_milliseconds_is_taken_up_once() -> None:
    body = asking("2026-11-23T11:01:00.123456Z")
    after = apply_patch(body, hold_change(decide(body, MIDWAY)).transition.patch)
    assert after["status"]["holdRequestedUntil"] == HOLD_END
    assert decide(after, MIDWAY) == WaitUntil(HOLD_END_AT)


def test_a_changed_request_replaces_the_hold() -> None:
    later = format_timestamp(HOLD_END_AT + timedelta(hours=1))
    body = held()
    body["spec"]["hold"]["until"] = later
    step = hold_change(decide(body, MIDWAY))
    assert step.change is HoldChange.SET
    assert apply_patch(body, step.transition.patch)["status"]["holdUntil"] == later


def test_a_hold_further_than_max_hold_is_cut_from_when_it_is_taken_up() -> None:
    body = asking("2026-11-30T00:00:00Z")
    step = hold_change(decide(body, MIDWAY, max_hold=timedelta(hours=2)))
    status = apply_patch(body, step.transition.patch)["status"]
    assert status["holdUntil"] == format_timestamp(MIDWAY + timedelta(hours=2))
    assert status["holdRequestedUntil"] == "2026-11-30T00:00:00.000Z"
    assert "asked for 2026-11-30T00:00:00.000Z, more than the operator's maxHold, 2h from" in (
        step.transition.event_note
    )


def test_a_hold_never_passes_the_end_of_the_maximum_lifetime() -> None:
    ends = format_timestamp(EXPIRES_AT + timedelta(minutes=5))
    body = asking(HOLD_END, lifetimeEndsAt=ends)
    step = hold_change(decide(body, MIDWAY))
    after = apply_patch(body, step.transition.patch)
    assert after["status"]["holdUntil"] == ends
    assert "past the end of its maximum lifetime" in lease_valid(after)["message"]


@pytest.mark.parametrize(
    ("until", "max_hold", "why"),
    [
        ("2026-11-23T09:00:00Z", None, "that time has passed"),
        (HOLD_END, timedelta(0), "the operator's maxHold is 0, so no session is held"),
    ],
)
def test_a_hold_that_would_hold_nothing_is_recorded_and_told_with_a_warning(
    until: str, max_hold: timedelta | None, why: str
) -> None:
    body = asking(until)
    step = hold_change(decide(body, MIDWAY, max_hold))
    assert step.change is HoldChange.ENDED
    status = apply_patch(body, step.transition.patch)["status"]
    assert "holdUntil" not in status
    assert "holdRequestedUntil" in status
    assert (step.transition.event_reason, step.transition.warning) == ("HoldEnded", True)
    assert why in step.transition.event_note


# --- the end of a hold -----------------------------------------------------------------------


def test_a_hold_that_ends_before_the_lease_ends_with_an_event_and_the_session_lives_on() -> None:
    ends = format_timestamp(MIDWAY + timedelta(seconds=10))
    body = held(ends, spec_until=ends)
    assert decide(body, MIDWAY + timedelta(seconds=10) - MS) == WaitUntil(
        MIDWAY + timedelta(seconds=10)
    )
    step = hold_change(decide(body, MIDWAY + timedelta(seconds=10)))
    assert step.change is HoldChange.ENDED
    after = apply_patch(body, step.transition.patch)
    assert "holdUntil" not in after["status"]
    assert after["status"]["holdRequestedUntil"] == ends  # so it is not taken up again
    assert (lease_valid(after)["reason"], step.transition.event_reason) == (
        "LeaseGranted",
        "HoldEnded",
    )
    assert f"the lease runs until {EXPIRES}" in step.transition.event_note
    assert decide(after, MIDWAY + timedelta(seconds=10)) == WaitUntil(EXPIRES_AT)


def test_without_heartbeats_a_held_session_stops_at_the_end_of_its_hold() -> None:
    body = held()
    assert isinstance(decide(body, HOLD_END_AT - MS), WaitUntil)
    step = decide(body, HOLD_END_AT)
    assert isinstance(step, StopSession)
    assert step.cause is StopCause.LEASE_EXPIRED
    assert step.lease_expires_at == HOLD_END_AT  # the expiry lag counts from the hold's end
    assert step.transition.event_reason == "LeaseExpired"
    assert f"the hold ended at {HOLD_END}" in step.transition.event_note
    status = apply_patch(body, step.transition.patch)["status"]
    assert status["holdUntil"] == HOLD_END  # it ended on its own: kept as a record


def test_a_stop_ends_a_hold_still_ahead() -> None:
    body = held()
    body["spec"]["stop"] = True
    step = decide(body, MIDWAY)
    assert isinstance(step, StopSession)
    assert step.cause is StopCause.USER_STOPPED
    assert apply_patch(body, step.transition.patch)["status"]["holdUntil"] == format_timestamp(
        MIDWAY
    )


# --- clearing a hold ---------------------------------------------------------------------------


def test_a_cleared_hold_goes_and_the_session_keeps_the_lease_heartbeats_granted() -> None:
    body = held(spec_until=None)
    step = hold_change(decide(body, MIDWAY))
    assert step.change is HoldChange.CLEARED
    after = apply_patch(body, step.transition.patch)
    assert "holdUntil" not in after["status"]
    assert "holdRequestedUntil" not in after["status"]
    assert lease_valid(after)["reason"] == "LeaseGranted"
    assert step.transition.event_reason == "HoldCleared"
    assert decide(after, MIDWAY) == WaitUntil(EXPIRES_AT)


def test_a_cleared_hold_whose_lease_had_run_out_stops_the_session_next() -> None:
    body = held(spec_until=None)
    now = EXPIRES_AT + timedelta(minutes=1)
    step = hold_change(decide(body, now))
    assert f"the lease ran out at {EXPIRES}: the session stops" in step.transition.event_note
    stop = decide(apply_patch(body, step.transition.patch), now)
    assert isinstance(stop, StopSession)
    assert stop.cause is StopCause.LEASE_EXPIRED


def test_the_record_of_an_ended_hold_goes_with_its_spec() -> None:
    body = stored(holdRequestedUntil=HOLD_END)
    step = hold_change(decide(body, MIDWAY))
    after = apply_patch(body, step.transition.patch)
    assert "holdRequestedUntil" not in after["status"]
    assert step.transition.event_note.startswith(
        "spec.hold was removed; its hold had already ended"
    )


def test_a_hold_does_nothing_to_a_stopped_session() -> None:
    body = asking(HOLD_END)
    body["status"] |= {"state": SessionState.STOPPED.value, "stopReason": "USER_STOPPED"}
    body["status"]["stoppedAt"] = "2026-11-23T10:00:20.000Z"
    body["metadata"]["labels"]["xg2g.io/state"] = "stopped"
    assert isinstance(decide(body, MIDWAY), WaitUntil)


def test_a_hold_write_loses_to_a_stop_written_meanwhile() -> None:
    body = asking(HOLD_END)
    patch = hold_change(decide(body, MIDWAY)).transition.patch
    body["status"] |= {"state": SessionState.STOPPED.value, "stopReason": "USER_STOPPED"}
    with pytest.raises(PatchTestFailed):
        apply_patch(body, patch)


def test_a_hold_the_operator_cannot_read_holds_nothing_and_breaks_nothing() -> None:
    # The CRD's format refuses it; were one stored anyway, the Session still decodes.
    body = asking("tomorrow")
    assert Session.from_body(body).spec.hold is not None
    assert decide(body, MIDWAY) == WaitUntil(EXPIRES_AT)


async def test_the_reconciler_takes_a_hold_up_tells_it_and_waits_for_its_end() -> None:
    sessions = StoredSession(asking(HOLD_END))
    reconciler, events = reconciler_over(sessions, Owned([]), MIDWAY)
    before = metrics.REGISTRY.get_sample_value("xg2g_session_holds_total", {"change": "set"})

    outcome = await reconciler.reconcile(Session.from_body(sessions.body))

    assert sessions.writes == ["status"]
    assert events.reasons == ["HoldSet"]
    assert sessions.body["status"]["holdUntil"] == HOLD_END
    assert outcome.deadline == HOLD_END_AT
    after = metrics.REGISTRY.get_sample_value("xg2g_session_holds_total", {"change": "set"})
    assert (after or 0) - (before or 0) == 1
