"""What the operator does next for a Session (docs/lease-rules.md), decided from the stored
object and its observed workload Pod."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from session_operator.lease import SessionState, StopCause, StopReason
from session_operator.lifecycle import (
    DeleteSession,
    GrantGrace,
    InitialiseStatus,
    InvalidTransition,
    JsonPatch,
    LifecycleSettings,
    MarkReady,
    ReleaseObjects,
    RemoveFinalizer,
    StartWorkload,
    Step,
    StopSession,
    Transition,
    WaitUntil,
    WriteMetadata,
    next_step,
    release_step,
    stop_session,
)
from session_operator.models import FINALIZER, STATE_LABEL, Session, SessionRef
from session_operator.outage_rule import OutageWindow
from session_operator.timestamps import format_timestamp
from session_operator.workload import PodSummary, Workload
from tests.unit.builders import (
    CREATED_AT,
    EXPIRES,
    EXPIRES_AT,
    GENERATION,
    LAST_HEARTBEAT,
    MIDWAY,
    RETENTION,
    SETTINGS,
    STOP_TIMEOUT,
    TEMPLATE,
    UID,
    PatchTestFailed,
    apply_patch,
    deleting,
    live_status,
    make_body,
    stored,
    with_template,
)

pytestmark = pytest.mark.unit

MS = timedelta(milliseconds=1)
LIVE = [SessionState.NEW, SessionState.STARTING, SessionState.READY]
TERMINAL = [SessionState.STOPPED, SessionState.FAILED]


def session_of(body: Mapping[str, Any]) -> Session:
    return Session.from_body(body)


def pod(
    *, phase: str = "Running", ready: bool = False, message: str = "", name: str = "living-room"
) -> Workload:
    """The observed workload of the session: one Pod it controls."""
    return Workload(
        PodSummary(
            session=SessionRef(namespace="media", name="living-room"),
            name=name,
            controller_uid=UID,
            phase=phase,
            ready=ready,
            message=message,
        )
    )


NO_POD = Workload(None)


def decide(
    body: Mapping[str, Any],
    now: datetime,
    workload: Workload | None = None,
    settings: LifecycleSettings = SETTINGS,
) -> Step:
    return next_step(session_of(body), now, settings, workload)


def applied(body: Mapping[str, Any], transition: Transition) -> dict[str, Any]:
    """*body* after *transition*'s status write and the label mirror that follows it."""
    result = apply_patch(body, transition.patch)
    result["metadata"]["labels"][STATE_LABEL] = result["status"]["state"]
    return result


def condition(status: Mapping[str, Any], kind: str) -> dict[str, Any]:
    matches = [entry for entry in status["conditions"] if entry["type"] == kind]
    assert len(matches) == 1, status["conditions"]
    return dict(matches[0])


def ops_on(patch: JsonPatch, path: str) -> list[dict[str, Any]]:
    return [operation for operation in patch if operation["path"] == path]


def cas_tests(patch: JsonPatch) -> list[dict[str, Any]]:
    return [operation for operation in patch if operation["op"] == "test"]


# The instant a stop of a session with a template began, and where its timeout counts from:
# LeaseValid's lastTransitionTime is a metav1.Time, in whole seconds.
STOP_BEGAN = datetime(2026, 11, 23, 10, 0, 40, 700000, tzinfo=UTC)
STOP_BEGAN_CONDITION = datetime(2026, 11, 23, 10, 0, 40, tzinfo=UTC)


def stopping_body(
    reason: StopReason = StopReason.USER_STOPPED, *, template: bool = True
) -> dict[str, Any]:
    """A ready session stopped at ``STOP_BEGAN`` for *reason*, as stored afterwards."""
    body = with_template(SessionState.READY) if template else stored(SessionState.READY)
    stop = stop_session(session_of(body), STOP_BEGAN, StopCause.plain(reason))
    result = applied(body, stop.transition)
    assert result["status"]["state"] == "stopping"
    return result


STOPPED_AT = "2026-11-23T10:02:00.456Z"
STOPPED_AT_TIME = datetime(2026, 11, 23, 10, 2, 0, 456000, tzinfo=UTC)


def terminal_body(state: SessionState, **extra: Any) -> dict[str, Any]:
    reason = "FAILED" if state is SessionState.FAILED else "LEASE_EXPIRED"
    return with_template(state, stopReason=reason, stoppedAt=STOPPED_AT, **extra)


# --- a new Session gets its status and lease ------------------------------------------------


def test_uninitialised_session_without_template_is_initialised_ready() -> None:
    now = CREATED_AT + timedelta(seconds=1)
    step = decide(make_body(), now)

    assert isinstance(step, InitialiseStatus)
    assert step.status["state"] == "ready"
    assert "stopReason" not in step.status
    assert "stoppedAt" not in step.status
    assert step.event_reason == "Ready"


def test_uninitialised_session_with_template_is_initialised_new() -> None:
    body = make_body(spec={"template": TEMPLATE})
    step = decide(body, CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert step.status["state"] == "new"
    assert "stopReason" not in step.status
    assert step.event_reason == "Created"


def test_session_created_with_stop_is_initialised_stopped_user_stopped() -> None:
    now = datetime(2026, 11, 23, 10, 0, 2, 456789, tzinfo=UTC)
    body = make_body(spec={"stop": True, "template": TEMPLATE})
    step = decide(body, now)

    assert isinstance(step, InitialiseStatus)
    assert step.status["state"] == "stopped"
    assert step.status["stopReason"] == "USER_STOPPED"
    assert step.status["stoppedAt"] == "2026-11-23T10:00:02.456Z"
    assert condition(step.status, "Ready")["status"] == "False"
    assert condition(step.status, "LeaseValid")["status"] == "False"


def test_initial_lease_comes_from_spec_lease() -> None:
    body = make_body(spec={"lease": {"ttlSeconds": 30, "heartbeatIntervalSeconds": 2}})
    step = decide(body, CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert step.status["leaseTTLSeconds"] == 30
    assert step.status["heartbeatInterval"] == 2
    assert step.status["leaseExpiresAt"] == "2026-11-23T10:00:30.123Z"


def test_initial_lease_without_spec_lease_uses_the_configured_defaults() -> None:
    step = decide(make_body(), CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert step.status["leaseTTLSeconds"] == 60
    assert step.status["heartbeatInterval"] == 5
    assert step.status["leaseExpiresAt"] == "2026-11-23T10:01:00.123Z"


def test_default_lease_is_rounded_up_to_whole_seconds() -> None:
    settings = dataclasses.replace(
        SETTINGS,
        lease_ttl=timedelta(seconds=59, milliseconds=200),
        heartbeat_interval=timedelta(seconds=4, milliseconds=1),
    )
    step = decide(make_body(), CREATED_AT, settings=settings)

    assert isinstance(step, InitialiseStatus)
    assert step.status["leaseTTLSeconds"] == 60
    assert step.status["heartbeatInterval"] == 5
    assert type(step.status["leaseTTLSeconds"]) is int
    assert type(step.status["heartbeatInterval"]) is int
    assert step.status["leaseExpiresAt"] == "2026-11-23T10:01:00.123Z"


def test_initial_lease_expiry_is_creation_plus_ttl_with_milliseconds() -> None:
    body = make_body(created="2026-11-23T23:59:30Z")
    step = decide(body, CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert step.status["leaseExpiresAt"] == "2026-11-24T00:00:30.000Z"


def test_initial_lease_counts_from_creation_when_initialised_in_time() -> None:
    step = decide(make_body(), CREATED_AT + timedelta(seconds=10))

    assert isinstance(step, InitialiseStatus)
    assert step.status["leaseExpiresAt"] == "2026-11-23T10:01:00.123Z"


def test_initial_lease_initialised_late_leaves_the_client_most_of_a_ttl() -> None:
    # Until the lease is initialised, heartbeats are refused (409): a slow initialisation
    # takes at most two intervals (10 s) from the first lease of 60 s.
    now = CREATED_AT + timedelta(hours=2)
    step = decide(make_body(), now)

    assert isinstance(step, InitialiseStatus)
    assert step.status["leaseExpiresAt"] == format_timestamp(now + timedelta(seconds=50))


def test_initial_status_records_session_id_and_observed_generation() -> None:
    step = decide(make_body(), CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert step.status["sessionID"] == UID
    assert step.status["observedGeneration"] == GENERATION
    assert "lastHeartbeat" not in step.status


def test_initial_conditions_are_ready_and_lease_valid() -> None:
    now = datetime(2026, 11, 23, 10, 0, 1, 999999, tzinfo=UTC)
    step = decide(make_body(), now)

    assert isinstance(step, InitialiseStatus)
    assert sorted(entry["type"] for entry in step.status["conditions"]) == ["LeaseValid", "Ready"]
    ready = condition(step.status, "Ready")
    lease_valid = condition(step.status, "LeaseValid")
    assert ready["status"] == "True"
    assert lease_valid["status"] == "True"
    for entry in (ready, lease_valid):
        assert entry["lastTransitionTime"] == "2026-11-23T10:00:01Z"
        assert entry["observedGeneration"] == GENERATION
        assert entry["reason"]
        assert entry["reason"][0].isupper()


def test_initial_conditions_with_template_are_not_ready_yet() -> None:
    step = decide(make_body(spec={"template": TEMPLATE}), CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert condition(step.status, "Ready")["status"] == "False"
    assert condition(step.status, "LeaseValid")["status"] == "True"


@pytest.mark.parametrize(
    "status",
    [
        pytest.param({}, id="no-status"),
        pytest.param({"state": "ready"}, id="state-without-lease"),
        pytest.param({"leaseExpiresAt": EXPIRES, "leaseTTLSeconds": 60}, id="lease-without-state"),
    ],
)
def test_status_without_state_and_lease_is_initialised(status: dict[str, Any]) -> None:
    step = decide(make_body(status=status), CREATED_AT)

    assert isinstance(step, InitialiseStatus)


# --- a lease that ran out stops the session -------------------------------------------------


@pytest.mark.parametrize("state", LIVE)
def test_live_session_expires_exactly_at_lease_expires_at(state: SessionState) -> None:
    body = stored(state, spec={"template": TEMPLATE} if state is SessionState.NEW else None)
    step = decide(body, EXPIRES_AT)

    assert isinstance(step, StopSession)
    assert step.reason is StopReason.LEASE_EXPIRED
    assert step.previous_state is state
    assert step.lease_expires_at == EXPIRES_AT
    assert step.transition.event_reason == "LeaseExpired"


@pytest.mark.parametrize("state", LIVE)
def test_live_session_one_millisecond_before_expiry_is_not_stopped(state: SessionState) -> None:
    body = stored(state, spec={"template": TEMPLATE} if state is SessionState.NEW else None)
    step = decide(body, EXPIRES_AT - MS)

    assert not isinstance(step, StopSession)


@pytest.mark.parametrize(
    ("state", "workload"),
    [
        (SessionState.NEW, NO_POD),
        (SessionState.STARTING, pod(ready=False)),
        (SessionState.READY, pod(ready=True)),
    ],
)
def test_live_session_with_a_workload_expires_exactly_at_lease_expires_at(
    state: SessionState, workload: Workload
) -> None:
    step = decide(with_template(state), EXPIRES_AT, workload)

    assert isinstance(step, StopSession)
    assert step.reason is StopReason.LEASE_EXPIRED
    assert step.previous_state is state


def test_ready_session_one_millisecond_before_expiry_waits_until_expiry() -> None:
    step = decide(stored(SessionState.READY), EXPIRES_AT - MS)

    assert step == WaitUntil(EXPIRES_AT)


def test_session_one_millisecond_before_expiry_with_a_stale_label_mirrors_the_label() -> None:
    body = stored(SessionState.READY, label="new")
    step = decide(body, EXPIRES_AT - MS)

    assert isinstance(step, WriteMetadata)
    assert step.state is SessionState.READY


def test_expiry_patch_tests_state_and_expiry_with_the_raw_stored_strings() -> None:
    # Stored in a form the operator would not write itself: the test must not re-format it.
    raw_expiry = "2026-11-23T11:01:00.123000+01:00"
    body = stored(SessionState.STARTING, expires=raw_expiry)
    step = decide(body, EXPIRES_AT)

    assert isinstance(step, StopSession)
    patch = step.transition.patch
    tests = cas_tests(patch)
    assert tests == [
        {"op": "test", "path": "/status/state", "value": "starting"},
        {"op": "test", "path": "/status/leaseExpiresAt", "value": raw_expiry},
    ]
    writes = [i for i, operation in enumerate(patch) if operation["op"] != "test"]
    assert writes
    assert min(writes) == len(tests), "the tests come before every write"


def test_expiry_patch_stops_the_session_with_reason_and_time() -> None:
    now = EXPIRES_AT + timedelta(microseconds=456789)
    body = stored(SessionState.READY)
    step = decide(body, now)

    assert isinstance(step, StopSession)
    status = apply_patch(body, step.transition.patch)["status"]
    assert status["state"] == "stopped"
    assert status["stopReason"] == "LEASE_EXPIRED"
    assert status["stoppedAt"] == format_timestamp(now) == "2026-11-23T10:01:00.579Z"
    assert status["observedGeneration"] == GENERATION
    assert status["leaseExpiresAt"] == EXPIRES
    assert status["lastHeartbeat"] == LAST_HEARTBEAT


def test_expiry_patch_marks_ready_and_lease_valid_false_as_lease_expired() -> None:
    now = datetime(2026, 11, 23, 10, 1, 0, 900000, tzinfo=UTC)
    body = stored(SessionState.READY)
    step = decide(body, now)

    assert isinstance(step, StopSession)
    status = apply_patch(body, step.transition.patch)["status"]
    for kind in ("Ready", "LeaseValid"):
        entry = condition(status, kind)
        assert entry["status"] == "False"
        assert entry["reason"] == "LeaseExpired"
        assert entry["lastTransitionTime"] == "2026-11-23T10:01:00Z"
        assert entry["observedGeneration"] == GENERATION


def test_expiry_patch_loses_against_a_heartbeat_that_extended_the_lease() -> None:
    body = stored(SessionState.READY)
    step = decide(body, EXPIRES_AT)
    assert isinstance(step, StopSession)

    extended = copy.deepcopy(body)
    extended["status"]["leaseExpiresAt"] = "2026-11-23T10:02:00.000Z"
    with pytest.raises(PatchTestFailed):
        apply_patch(extended, step.transition.patch)


def test_expiry_patch_of_a_session_with_a_workload_loses_against_an_extended_lease() -> None:
    body = with_template(SessionState.READY)
    step = decide(body, EXPIRES_AT, pod(ready=True))
    assert isinstance(step, StopSession)

    extended = copy.deepcopy(body)
    extended["status"]["leaseExpiresAt"] = "2026-11-23T10:02:00.000Z"
    with pytest.raises(PatchTestFailed):
        apply_patch(extended, step.transition.patch)


def test_expiry_patch_loses_against_a_state_change() -> None:
    body = stored(SessionState.STARTING)
    step = decide(body, EXPIRES_AT)
    assert isinstance(step, StopSession)

    moved = copy.deepcopy(body)
    moved["status"]["state"] = "ready"
    with pytest.raises(PatchTestFailed):
        apply_patch(moved, step.transition.patch)


def test_expired_session_with_spec_stop_is_stopped_as_lease_expired() -> None:
    # At this instant the API already reports LEASE_EXPIRED (rule 1); the stored reason agrees.
    body = stored(SessionState.READY, spec={"stop": True})
    step = decide(body, EXPIRES_AT)

    assert isinstance(step, StopSession)
    assert step.reason is StopReason.LEASE_EXPIRED


def test_stop_of_a_session_running_a_workload_goes_to_stopping_while_it_is_released() -> None:
    body = with_template(SessionState.READY)
    step = decide(body, EXPIRES_AT, pod(ready=True))

    assert isinstance(step, StopSession)
    status = apply_patch(body, step.transition.patch)["status"]
    assert status["state"] == "stopping"
    assert status["stopReason"] == "LEASE_EXPIRED"


# --- every stop: to `stopping` when the session may own objects, else to the end -------------


@pytest.mark.parametrize("reason", list(StopReason))
@pytest.mark.parametrize("state", LIVE)
def test_stop_of_a_session_with_a_template_goes_to_stopping_without_stopped_at(
    state: SessionState, reason: StopReason
) -> None:
    body = with_template(state)
    step = stop_session(session_of(body), MIDWAY, StopCause.plain(reason))

    assert step.reason is reason
    assert step.previous_state is state
    status = apply_patch(body, step.transition.patch)["status"]
    assert status["state"] == "stopping"
    assert status["stopReason"] == reason.value
    assert "stoppedAt" not in status
    assert ops_on(step.transition.patch, "/status/stoppedAt") == []


@pytest.mark.parametrize(
    ("reason", "terminal"),
    [
        (StopReason.USER_STOPPED, "stopped"),
        (StopReason.LEASE_EXPIRED, "stopped"),
        (StopReason.CLEANUP, "stopped"),
        (StopReason.FAILED, "failed"),
    ],
)
@pytest.mark.parametrize("state", LIVE)
def test_stop_of_a_session_without_a_template_is_terminal_in_one_write(
    state: SessionState, reason: StopReason, terminal: str
) -> None:
    now = datetime(2026, 11, 23, 10, 0, 30, 456789, tzinfo=UTC)
    body = stored(state)
    step = stop_session(session_of(body), now, StopCause.plain(reason))

    status = apply_patch(body, step.transition.patch)["status"]
    assert status["state"] == terminal
    assert status["stopReason"] == reason.value
    assert status["stoppedAt"] == "2026-11-23T10:00:30.456Z"


@pytest.mark.parametrize("template", [False, True])
def test_stop_turns_lease_valid_false_at_the_moment_it_begins(template: bool) -> None:
    body = with_template(SessionState.READY) if template else stored(SessionState.READY)
    step = stop_session(session_of(body), STOP_BEGAN, StopCause.USER_STOPPED)

    status = apply_patch(body, step.transition.patch)["status"]
    lease_valid = condition(status, "LeaseValid")
    assert lease_valid["status"] == "False"
    assert lease_valid["reason"] == "UserStopped"
    assert lease_valid["lastTransitionTime"] == "2026-11-23T10:00:40Z"
    ready = condition(status, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "UserStopped"


def test_stop_keeps_the_lease_fields_it_does_not_own() -> None:
    body = with_template(SessionState.READY)
    step = stop_session(session_of(body), MIDWAY, StopCause.CLEANUP)

    status = apply_patch(body, step.transition.patch)["status"]
    assert status["lastHeartbeat"] == LAST_HEARTBEAT
    assert status["observedGeneration"] == GENERATION


@pytest.mark.parametrize("reason", [StopReason.USER_STOPPED, StopReason.CLEANUP, StopReason.FAILED])
def test_stop_for_another_reason_than_expiry_tests_only_the_state(reason: StopReason) -> None:
    step = stop_session(
        session_of(with_template(SessionState.READY)), MIDWAY, StopCause.plain(reason)
    )

    assert cas_tests(step.transition.patch) == [
        {"op": "test", "path": "/status/state", "value": "ready"}
    ]
    assert step.lease_expires_at is None


def test_cleanup_stop_names_its_reason_in_the_event() -> None:
    step = stop_session(session_of(with_template(SessionState.READY)), MIDWAY, StopCause.CLEANUP)

    assert "CLEANUP" in step.transition.event_note


# --- spec.stop stops a live session ---------------------------------------------------------


@pytest.mark.parametrize("state", LIVE)
def test_spec_stop_on_a_live_session_stops_it_user_stopped(state: SessionState) -> None:
    body = stored(state, spec={"stop": True})
    step = decide(body, MIDWAY)

    assert isinstance(step, StopSession)
    assert step.reason is StopReason.USER_STOPPED
    assert step.previous_state is state
    assert step.lease_expires_at is None
    assert step.transition.event_reason == "Stopped"


@pytest.mark.parametrize(
    ("state", "workload"),
    [
        (SessionState.NEW, NO_POD),
        (SessionState.STARTING, pod(ready=False)),
        (SessionState.READY, pod(ready=True)),
    ],
)
def test_spec_stop_on_a_session_with_a_workload_goes_to_stopping(
    state: SessionState, workload: Workload
) -> None:
    body = stored(state, spec={"stop": True, "template": TEMPLATE})
    step = decide(body, MIDWAY, workload)

    assert isinstance(step, StopSession)
    assert step.reason is StopReason.USER_STOPPED
    status = apply_patch(body, step.transition.patch)["status"]
    assert status["state"] == "stopping"
    assert status["stopReason"] == "USER_STOPPED"
    assert "stoppedAt" not in status


def test_user_stop_patch_tests_the_state_but_not_the_expiry() -> None:
    now = MIDWAY
    body = stored(SessionState.READY, spec={"stop": True})
    step = decide(body, now)

    assert isinstance(step, StopSession)
    patch = step.transition.patch
    assert cas_tests(patch) == [{"op": "test", "path": "/status/state", "value": "ready"}]
    # A heartbeat that extended the lease meanwhile does not cancel a user's stop.
    extended = copy.deepcopy(body)
    extended["status"]["leaseExpiresAt"] = "2026-11-23T10:05:00.000Z"
    status = apply_patch(extended, patch)["status"]
    assert status["state"] == "stopped"
    assert status["stopReason"] == "USER_STOPPED"
    assert status["stoppedAt"] == status["leaseExpiresAt"] == format_timestamp(now)
    assert condition(status, "Ready")["status"] == "False"
    assert condition(status, "Ready")["reason"] == "UserStopped"


# --- the workload: started, ready, failed or vanished ----------------------------------------


def test_new_session_with_template_starts_its_workload() -> None:
    now = datetime(2026, 11, 23, 10, 0, 1, 500000, tzinfo=UTC)
    body = stored(SessionState.NEW, spec={"template": TEMPLATE})
    step = decide(body, now)

    assert isinstance(step, StartWorkload)
    patch = step.transition.patch
    assert patch[0] == {"op": "test", "path": "/status/state", "value": "new"}
    status = apply_patch(body, patch)["status"]
    assert status["state"] == "starting"
    assert "stopReason" not in status
    assert status["leaseExpiresAt"] == EXPIRES
    ready = condition(status, "Ready")
    assert ready["status"] == "False"
    assert ready["lastTransitionTime"] == "2026-11-23T10:00:01Z"
    assert condition(status, "LeaseValid")["status"] == "True"


def test_new_session_whose_pod_does_not_exist_yet_starts_it_and_is_not_failed() -> None:
    step = decide(with_template(SessionState.NEW), MIDWAY, NO_POD)

    assert isinstance(step, StartWorkload)
    assert step.transition.event_reason == "Starting"


def test_start_patch_loses_when_the_session_is_no_longer_new() -> None:
    body = stored(SessionState.NEW, spec={"template": TEMPLATE})
    step = decide(body, CREATED_AT)
    assert isinstance(step, StartWorkload)

    stopped = copy.deepcopy(body)
    stopped["status"]["state"] = "stopped"
    with pytest.raises(PatchTestFailed):
        apply_patch(stopped, step.transition.patch)


def test_starting_session_whose_pod_is_ready_is_marked_ready() -> None:
    now = datetime(2026, 11, 23, 10, 0, 7, 250000, tzinfo=UTC)
    body = with_template(SessionState.STARTING)
    step = decide(body, now, pod(ready=True))

    assert isinstance(step, MarkReady)
    patch = step.transition.patch
    assert cas_tests(patch) == [{"op": "test", "path": "/status/state", "value": "starting"}]
    status = apply_patch(body, patch)["status"]
    assert status["state"] == "ready"
    assert "stopReason" not in status
    assert "stoppedAt" not in status
    assert status["leaseExpiresAt"] == EXPIRES
    assert condition(status, "LeaseValid")["status"] == "True"


def test_mark_ready_turns_the_ready_condition_true_at_that_moment() -> None:
    now = datetime(2026, 11, 23, 10, 0, 7, 250000, tzinfo=UTC)
    body = with_template(SessionState.NEW)
    start = decide(body, CREATED_AT)
    assert isinstance(start, StartWorkload)
    starting = applied(body, start.transition)

    step = decide(starting, now, pod(ready=True))

    assert isinstance(step, MarkReady)
    ready = condition(apply_patch(starting, step.transition.patch)["status"], "Ready")
    assert ready["status"] == "True"
    assert ready["reason"] == "WorkloadReady"
    assert ready["lastTransitionTime"] == "2026-11-23T10:00:07Z"


def test_mark_ready_loses_when_the_session_was_stopped_meanwhile() -> None:
    body = with_template(SessionState.STARTING)
    step = decide(body, MIDWAY, pod(ready=True))
    assert isinstance(step, MarkReady)

    stopping = copy.deepcopy(body)
    stopping["status"]["state"] = "stopping"
    with pytest.raises(PatchTestFailed):
        apply_patch(stopping, step.transition.patch)


@pytest.mark.parametrize("phase", ["Pending", "Running"])
def test_starting_session_whose_pod_is_not_ready_waits_until_expiry(phase: str) -> None:
    step = decide(with_template(SessionState.STARTING), MIDWAY, pod(phase=phase, ready=False))

    assert step == WaitUntil(EXPIRES_AT)


@pytest.mark.parametrize(
    ("state", "workload"),
    [
        pytest.param(SessionState.STARTING, pod(ready=False), id="starting"),
        pytest.param(SessionState.READY, pod(ready=True), id="ready"),
        pytest.param(SessionState.READY, pod(ready=False), id="ready-pod-unready"),
        pytest.param(SessionState.READY, None, id="ready-not-looked-at"),
    ],
)
def test_started_session_with_template_waits_until_expiry(
    state: SessionState, workload: Workload | None
) -> None:
    step = decide(with_template(state), CREATED_AT, workload)

    assert step == WaitUntil(EXPIRES_AT)


@pytest.mark.parametrize("state", [SessionState.STARTING, SessionState.READY])
def test_live_session_whose_pod_vanished_is_stopped_failed(state: SessionState) -> None:
    body = with_template(state)
    step = decide(body, MIDWAY, NO_POD)

    assert isinstance(step, StopSession)
    assert step.reason is StopReason.FAILED
    assert step.previous_state is state
    status = apply_patch(body, step.transition.patch)["status"]
    assert status["stopReason"] == "FAILED"
    assert status["state"] == "stopping"
    assert "vanished" in condition(status, "Ready")["message"]
    assert "vanished" in step.transition.event_note


@pytest.mark.parametrize("phase", ["Failed", "Succeeded"])
@pytest.mark.parametrize("state", LIVE)
def test_live_session_whose_pod_ended_is_stopped_failed_with_the_pods_message(
    state: SessionState, phase: str
) -> None:
    body = with_template(state)
    message = "container player: OOMKilled"
    step = decide(body, MIDWAY, pod(phase=phase, message=message))

    assert isinstance(step, StopSession)
    assert step.reason is StopReason.FAILED
    status = apply_patch(body, step.transition.patch)["status"]
    assert status["stopReason"] == "FAILED"
    for kind in ("Ready", "LeaseValid"):
        assert message in condition(status, kind)["message"]
        assert phase in condition(status, kind)["message"]
        assert condition(status, kind)["reason"] == "Failed"
    assert message in step.transition.event_note


def test_pod_that_ended_without_a_message_still_says_which_phase() -> None:
    step = decide(with_template(SessionState.READY), MIDWAY, pod(phase="Failed"))

    assert isinstance(step, StopSession)
    status = apply_patch(with_template(SessionState.READY), step.transition.patch)["status"]
    assert "phase Failed" in condition(status, "Ready")["message"]


def test_failed_pod_of_an_expired_session_stops_it_as_lease_expired() -> None:
    # Expiry is exact: at leaseExpiresAt the API already reports LEASE_EXPIRED.
    step = decide(with_template(SessionState.READY), EXPIRES_AT, pod(phase="Failed"))

    assert isinstance(step, StopSession)
    assert step.reason is StopReason.LEASE_EXPIRED


def test_spec_stop_wins_over_a_failed_pod() -> None:
    body = stored(SessionState.READY, spec={"stop": True, "template": TEMPLATE})
    step = decide(body, MIDWAY, pod(phase="Failed"))

    assert isinstance(step, StopSession)
    assert step.reason is StopReason.USER_STOPPED


# --- stopping: release the objects, then the terminal state, forced after stopTimeout --------


@pytest.mark.parametrize("reason", list(StopReason))
def test_stopping_session_releases_its_objects(reason: StopReason) -> None:
    body = stopping_body(reason)
    step = decide(body, STOP_BEGAN + timedelta(seconds=1))

    assert isinstance(step, ReleaseObjects)
    assert step.reason is reason


@pytest.mark.parametrize(
    ("reason", "terminal", "event_reason", "warning"),
    [
        (StopReason.USER_STOPPED, "stopped", "Stopped", False),
        (StopReason.LEASE_EXPIRED, "stopped", "Stopped", False),
        (StopReason.CLEANUP, "stopped", "Stopped", False),
        (StopReason.FAILED, "failed", "Failed", True),
    ],
)
def test_release_finish_goes_to_the_terminal_state_with_stopped_at(
    reason: StopReason, terminal: str, event_reason: str, warning: bool
) -> None:
    now = datetime(2026, 11, 23, 10, 0, 42, 345678, tzinfo=UTC)
    body = stopping_body(reason)
    step = decide(body, now)
    assert isinstance(step, ReleaseObjects)

    finish = step.finish
    assert cas_tests(finish.patch) == [{"op": "test", "path": "/status/state", "value": "stopping"}]
    assert ops_on(finish.patch, "/status/stopReason") == []
    status = apply_patch(body, finish.patch)["status"]
    assert status["state"] == terminal
    assert status["stopReason"] == reason.value
    assert status["stoppedAt"] == "2026-11-23T10:00:42.345Z"
    assert condition(status, "Ready")["status"] == "False"
    assert condition(status, "LeaseValid")["status"] == "False"
    assert finish.event_reason == event_reason
    assert finish.warning is warning


@pytest.mark.parametrize(
    ("reason", "terminal"),
    [
        (StopReason.USER_STOPPED, "stopped"),
        (StopReason.LEASE_EXPIRED, "stopped"),
        (StopReason.CLEANUP, "stopped"),
        (StopReason.FAILED, "failed"),
    ],
)
def test_release_force_is_a_warning_stop_timeout_that_keeps_the_reason(
    reason: StopReason, terminal: str
) -> None:
    now = STOP_BEGAN_CONDITION + STOP_TIMEOUT
    body = stopping_body(reason)
    step = decide(body, now)
    assert isinstance(step, ReleaseObjects)

    force = step.force
    assert force.event_reason == "StopTimeout"
    assert force.warning is True
    assert reason.value in force.event_note
    assert cas_tests(force.patch) == [{"op": "test", "path": "/status/state", "value": "stopping"}]
    assert ops_on(force.patch, "/status/stopReason") == []
    status = apply_patch(body, force.patch)["status"]
    assert status["state"] == terminal
    assert status["stopReason"] == reason.value
    assert status["stoppedAt"] == format_timestamp(now)
    assert condition(status, "Ready")["reason"] == "StopTimeout"


def test_release_loses_when_the_stop_was_already_finished() -> None:
    body = stopping_body(StopReason.USER_STOPPED)
    step = decide(body, STOP_BEGAN + timedelta(seconds=2))
    assert isinstance(step, ReleaseObjects)

    stopped = copy.deepcopy(body)
    stopped["status"]["state"] = "stopped"
    for transition in (step.finish, step.force):
        with pytest.raises(PatchTestFailed):
            apply_patch(stopped, transition.patch)


@pytest.mark.parametrize(
    "now",
    [
        STOP_BEGAN,
        STOP_BEGAN + timedelta(seconds=5),
        STOP_BEGAN_CONDITION + STOP_TIMEOUT,
        STOP_BEGAN + timedelta(hours=3),
    ],
)
def test_stop_deadline_is_lease_valid_false_transition_plus_stop_timeout(now: datetime) -> None:
    body = stopping_body(StopReason.LEASE_EXPIRED)
    assert condition(body["status"], "LeaseValid")["lastTransitionTime"] == "2026-11-23T10:00:40Z"

    step = decide(body, now)

    assert isinstance(step, ReleaseObjects)
    # Counted from when the stop began, not from whenever the operator looks.
    assert step.stop_deadline == STOP_BEGAN_CONDITION + STOP_TIMEOUT


def test_stop_deadline_follows_the_configured_stop_timeout() -> None:
    settings = dataclasses.replace(SETTINGS, stop_timeout=timedelta(seconds=7))
    step = decide(stopping_body(), STOP_BEGAN, settings=settings)

    assert isinstance(step, ReleaseObjects)
    assert step.stop_deadline == STOP_BEGAN_CONDITION + timedelta(seconds=7)


def test_release_step_matches_what_next_step_decides_for_a_stopping_session() -> None:
    body = stopping_body(StopReason.FAILED)
    now = STOP_BEGAN + timedelta(seconds=3)

    assert release_step(session_of(body), now, SETTINGS) == decide(body, now)


def test_release_step_of_a_stopping_session_without_a_reason_ends_as_cleanup() -> None:
    body = stopping_body()
    del body["status"]["stopReason"]

    step = release_step(session_of(body), STOP_BEGAN, SETTINGS)

    assert step.reason is StopReason.CLEANUP
    assert apply_patch(body, step.finish.patch)["status"]["state"] == "stopped"


@pytest.mark.parametrize("stop", [False, True])
def test_stopping_session_is_never_expired_or_stopped_again(stop: bool) -> None:
    body = stored(SessionState.STOPPING, spec={"stop": stop}, stopReason="USER_STOPPED")
    for now in (EXPIRES_AT, EXPIRES_AT + timedelta(hours=1)):
        step = decide(body, now)
        assert isinstance(step, ReleaseObjects)
        assert step.reason is StopReason.USER_STOPPED


def test_stopping_session_is_released_even_if_its_pod_vanished() -> None:
    step = decide(stopping_body(StopReason.USER_STOPPED), EXPIRES_AT, NO_POD)

    assert isinstance(step, ReleaseObjects)
    assert step.reason is StopReason.USER_STOPPED


# --- terminal sessions are kept for `retention` after stoppedAt, then deleted ----------------


@pytest.mark.parametrize("state", TERMINAL)
def test_terminal_session_waits_until_stopped_at_plus_retention(state: SessionState) -> None:
    body = terminal_body(state)
    for now in (STOPPED_AT_TIME, STOPPED_AT_TIME + RETENTION - MS):
        assert decide(body, now) == WaitUntil(STOPPED_AT_TIME + RETENTION)


@pytest.mark.parametrize("state", TERMINAL)
@pytest.mark.parametrize("after", [timedelta(0), MS, timedelta(days=3)])
def test_terminal_session_is_deleted_at_or_after_retention(
    state: SessionState, after: timedelta
) -> None:
    body = terminal_body(state)

    assert decide(body, STOPPED_AT_TIME + RETENTION + after) == DeleteSession()


def test_retention_follows_the_configured_value() -> None:
    settings = dataclasses.replace(SETTINGS, retention=timedelta(seconds=3))
    body = terminal_body(SessionState.STOPPED)

    assert decide(body, STOPPED_AT_TIME, settings=settings) == WaitUntil(
        STOPPED_AT_TIME + timedelta(seconds=3)
    )
    assert decide(body, STOPPED_AT_TIME + timedelta(seconds=3), settings=settings) == (
        DeleteSession()
    )


@pytest.mark.parametrize("state", TERMINAL)
@pytest.mark.parametrize("stop", [False, True])
def test_terminal_session_is_never_stopped_again(state: SessionState, stop: bool) -> None:
    body = stored(state, spec={"stop": stop}, stopReason="LEASE_EXPIRED", stoppedAt=STOPPED_AT)
    for now in (EXPIRES_AT - MS, EXPIRES_AT, STOPPED_AT_TIME + timedelta(hours=1)):
        step = decide(body, now, NO_POD)
        assert step == WaitUntil(STOPPED_AT_TIME + RETENTION)


@pytest.mark.parametrize("state", TERMINAL)
@pytest.mark.parametrize("stop", [False, True])
def test_terminal_session_without_stopped_at_waits_for_nothing(
    state: SessionState, stop: bool
) -> None:
    body = stored(state, spec={"stop": stop}, stopReason="LEASE_EXPIRED")
    for now in (EXPIRES_AT - MS, EXPIRES_AT, EXPIRES_AT + timedelta(days=1)):
        assert decide(body, now) == WaitUntil(None)


def test_a_step_that_would_write_a_forbidden_transition_is_refused() -> None:
    # Finishing a stop of a session that is already terminal: stopped -> stopped.
    with pytest.raises(InvalidTransition, match="stopped -> stopped"):
        release_step(session_of(terminal_body(SessionState.STOPPED)), MIDWAY, SETTINGS)


# --- a stop ends the lease -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(stored(SessionState.READY), StopReason.USER_STOPPED, id="user-no-workload"),
        pytest.param(with_template(SessionState.READY), StopReason.CLEANUP, id="cleanup-pod"),
        pytest.param(with_template(SessionState.STARTING), StopReason.FAILED, id="failed"),
    ],
)
def test_stop_before_the_lease_runs_out_moves_the_expiry_to_the_stop(
    body: dict[str, Any], reason: StopReason
) -> None:
    step = stop_session(session_of(body), MIDWAY, StopCause.plain(reason))

    assert apply_patch(body, step.transition.patch)["status"]["leaseExpiresAt"] == (
        format_timestamp(MIDWAY)
    )


def test_expiry_leaves_the_lease_where_it_ran_out() -> None:
    body = stored(SessionState.READY)
    step = decide(body, EXPIRES_AT + timedelta(seconds=1))

    assert isinstance(step, StopSession)
    assert apply_patch(body, step.transition.patch)["status"]["leaseExpiresAt"] == EXPIRES


# --- a Session being deleted is stopped (CLEANUP), released, then let go -------------------


@pytest.mark.parametrize(
    ("body", "target"),
    [
        pytest.param(stored(SessionState.READY), "stopped", id="ready-no-workload"),
        pytest.param(with_template(SessionState.STARTING), "stopping", id="starting-with-pod"),
        pytest.param(with_template(SessionState.READY), "stopping", id="ready-with-pod"),
        pytest.param(stored(SessionState.READY, spec={"stop": True}), "stopped", id="spec-stop"),
        pytest.param(stored(SessionState.READY, label="new"), "stopped", id="stale-label"),
    ],
)
def test_live_session_being_deleted_is_stopped_for_cleanup(
    body: dict[str, Any], target: str
) -> None:
    # Even with its lease run out: the deletion is why it stops.
    for now in (MIDWAY, EXPIRES_AT + timedelta(days=1)):
        step = decide(deleting(body), now, pod(ready=True))
        assert isinstance(step, StopSession)
        assert step.reason is StopReason.CLEANUP
        assert apply_patch(body, step.transition.patch)["status"]["state"] == target


def test_stopping_session_being_deleted_releases_its_objects() -> None:
    step = decide(deleting(stopping_body()), STOP_BEGAN + timedelta(seconds=1))

    assert isinstance(step, ReleaseObjects)


@pytest.mark.parametrize("state", TERMINAL)
def test_terminal_session_being_deleted_lets_go_of_the_finalizer_only(
    state: SessionState,
) -> None:
    body = deleting(terminal_body(state))
    body["metadata"]["finalizers"] = ["example.com/keep", FINALIZER]
    step = decide(body, STOPPED_AT_TIME)

    assert isinstance(step, RemoveFinalizer)
    assert apply_patch(body, step.patch)["metadata"]["finalizers"] == ["example.com/keep"]
    moved = copy.deepcopy(body)
    moved["metadata"]["finalizers"] = [FINALIZER]
    with pytest.raises(PatchTestFailed):  # another finalizer went meanwhile: decide again
        apply_patch(moved, step.patch)


def test_uninitialised_session_being_deleted_lets_go() -> None:
    body = deleting(make_body(finalizers=[FINALIZER]))

    assert isinstance(decide(body, CREATED_AT), RemoveFinalizer)


def test_deleted_session_without_the_finalizer_waits_for_nothing() -> None:
    body = deleting(terminal_body(SessionState.STOPPED))
    body["metadata"]["finalizers"] = ["example.com/keep"]

    assert decide(body, STOPPED_AT_TIME + RETENTION) == WaitUntil(None)
    assert decide(deleting(make_body()), CREATED_AT) == WaitUntil(None)


def test_deletion_timestamp_is_what_marks_a_session_deleting() -> None:
    body = stored(SessionState.READY)

    assert decide(body, EXPIRES_AT) != WaitUntil(None)
    assert session_of(deleting(body)).deleting
    assert not session_of(body).deleting


# --- the label write holds the finalizer ----------------------------------------------------


def test_first_metadata_write_adds_label_and_finalizer_at_the_read_version() -> None:
    body = make_body(status=live_status())
    step = decide(body, MIDWAY)

    assert isinstance(step, WriteMetadata)
    after = apply_patch(body, step.patch)
    assert after["metadata"]["labels"] == {STATE_LABEL: "ready"}
    assert after["metadata"]["finalizers"] == [FINALIZER]
    newer = copy.deepcopy(body)
    newer["metadata"]["resourceVersion"] = "43"
    with pytest.raises(PatchTestFailed):  # a finalizer list written meanwhile is not lost
        apply_patch(newer, step.patch)


def test_finalizer_joins_the_finalizers_of_others() -> None:
    body = make_body(status=live_status(), labels={"app": "tv"}, finalizers=["example.com/a"])
    step = decide(body, MIDWAY)

    assert isinstance(step, WriteMetadata)
    after = apply_patch(body, step.patch)
    assert after["metadata"]["finalizers"] == ["example.com/a", FINALIZER]
    assert after["metadata"]["labels"] == {"app": "tv", STATE_LABEL: "ready"}
    meanwhile = copy.deepcopy(body)
    meanwhile["metadata"]["finalizers"] = ["example.com/a", FINALIZER]
    meanwhile["metadata"]["resourceVersion"] = "43"
    with pytest.raises(PatchTestFailed):  # decided on an older list: not added twice
        apply_patch(meanwhile, step.patch)


def test_label_right_but_finalizer_missing_writes_the_finalizer() -> None:
    body = make_body(status=live_status(), labels={STATE_LABEL: "ready"})

    step = decide(body, MIDWAY)
    assert isinstance(step, WriteMetadata)
    assert apply_patch(body, step.patch)["metadata"]["finalizers"] == [FINALIZER]


def test_label_write_with_the_finalizer_present_writes_the_label_alone() -> None:
    body = stored(SessionState.READY, label="new")
    step = decide(body, MIDWAY)

    assert isinstance(step, WriteMetadata)
    assert step.patch == [
        {"op": "add", "path": "/metadata/labels/xg2g.io~1state", "value": "ready"}
    ]


# --- every transition emits one Event, its reason CamelCase ----------------------------------


def _start() -> Transition:
    step = decide(with_template(SessionState.NEW), MIDWAY, NO_POD)
    assert isinstance(step, StartWorkload)
    return step.transition


def _mark_ready() -> Transition:
    step = decide(with_template(SessionState.STARTING), MIDWAY, pod(ready=True))
    assert isinstance(step, MarkReady)
    return step.transition


def _stop(body: dict[str, Any], reason: StopReason) -> Callable[[], Transition]:
    return lambda: stop_session(session_of(body), MIDWAY, StopCause.plain(reason)).transition


def _expire(body: dict[str, Any], workload: Workload | None) -> Callable[[], Transition]:
    def transition() -> Transition:
        step = decide(body, EXPIRES_AT, workload)
        assert isinstance(step, StopSession)
        return step.transition

    return transition


def _pod_failed() -> Transition:
    step = decide(with_template(SessionState.READY), MIDWAY, pod(phase="Failed"))
    assert isinstance(step, StopSession)
    return step.transition


def _finish(reason: StopReason) -> Callable[[], Transition]:
    return lambda: release_step(session_of(stopping_body(reason)), MIDWAY, SETTINGS).finish


def _force() -> Transition:
    return release_step(session_of(stopping_body()), MIDWAY, SETTINGS).force


@pytest.mark.parametrize(
    ("make", "event_reason", "warning"),
    [
        pytest.param(_start, "Starting", False, id="new-to-starting"),
        pytest.param(_mark_ready, "Ready", False, id="starting-to-ready"),
        pytest.param(
            _expire(stored(SessionState.READY), None), "LeaseExpired", False, id="expiry-to-end"
        ),
        pytest.param(
            _expire(with_template(SessionState.READY), pod(ready=True)),
            "LeaseExpired",
            False,
            id="expiry-to-stopping",
        ),
        pytest.param(
            _stop(with_template(SessionState.READY), StopReason.USER_STOPPED),
            "Stopping",
            False,
            id="user-stop-to-stopping",
        ),
        pytest.param(
            _stop(stored(SessionState.READY), StopReason.USER_STOPPED),
            "Stopped",
            False,
            id="user-stop-to-end",
        ),
        pytest.param(
            _stop(with_template(SessionState.READY), StopReason.CLEANUP),
            "Stopping",
            False,
            id="cleanup-to-stopping",
        ),
        pytest.param(
            _stop(stored(SessionState.READY), StopReason.CLEANUP),
            "Stopped",
            False,
            id="cleanup-to-end",
        ),
        pytest.param(_pod_failed, "Stopping", True, id="pod-failed-to-stopping"),
        pytest.param(
            _stop(stored(SessionState.READY), StopReason.FAILED),
            "Failed",
            True,
            id="failed-to-end",
        ),
        pytest.param(_finish(StopReason.USER_STOPPED), "Stopped", False, id="stopping-to-stopped"),
        pytest.param(_finish(StopReason.CLEANUP), "Stopped", False, id="cleanup-to-stopped"),
        pytest.param(_finish(StopReason.FAILED), "Failed", True, id="stopping-to-failed"),
        pytest.param(_force, "StopTimeout", True, id="stop-forced"),
    ],
)
def test_every_transition_names_its_event(
    make: Callable[[], Transition], event_reason: str, warning: bool
) -> None:
    transition = make()

    assert transition.event_reason == event_reason
    assert transition.warning is warning
    assert transition.event_note
    assert transition.event_reason[0].isupper()
    assert transition.event_reason.isalnum()


@pytest.mark.parametrize(
    ("body", "event_reason"),
    [
        pytest.param(make_body(), "Ready", id="no-template"),
        pytest.param(make_body(spec={"template": TEMPLATE}), "Created", id="template"),
        pytest.param(make_body(spec={"stop": True}), "Stopped", id="created-stopped"),
    ],
)
def test_initialisation_names_its_event(body: dict[str, Any], event_reason: str) -> None:
    step = decide(body, CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert step.event_reason == event_reason
    assert step.event_note


# --- the state label follows the state ------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "label"),
    [
        (state, label)
        for state in SessionState
        for label in (None, "new", "ready", "stopping")
        if label != state.value
    ],
)
def test_label_that_differs_from_the_state_is_mirrored(
    state: SessionState, label: str | None
) -> None:
    body = stored(state, label=label)
    step = decide(body, MIDWAY)

    assert isinstance(step, WriteMetadata)
    assert step.state is state
    assert apply_patch(body, step.patch)["metadata"]["labels"] == {STATE_LABEL: state.value}


def test_label_is_mirrored_before_the_workload_starts() -> None:
    body = stored(SessionState.NEW, spec={"template": TEMPLATE}, label=None)
    step = decide(body, CREATED_AT)

    assert isinstance(step, WriteMetadata)
    assert step.state is SessionState.NEW


def test_label_is_mirrored_before_the_session_is_marked_ready() -> None:
    body = with_template(SessionState.STARTING, label="new")
    step = decide(body, MIDWAY, pod(ready=True))

    assert isinstance(step, WriteMetadata)
    assert step.state is SessionState.STARTING


def test_a_whole_session_with_a_workload_from_creation_to_deletion() -> None:
    """new → starting → ready → stopping → stopped → deleted, each step from the last write."""
    body = make_body(spec={"template": TEMPLATE})
    init = decide(body, CREATED_AT)
    assert isinstance(init, InitialiseStatus)
    body["status"] = init.status
    metadata = decide(body, CREATED_AT)
    assert isinstance(metadata, WriteMetadata)
    body = apply_patch(body, metadata.patch)
    assert body["metadata"]["labels"] == {STATE_LABEL: "new"}
    assert body["metadata"]["finalizers"] == [FINALIZER]

    start = decide(body, CREATED_AT, NO_POD)
    assert isinstance(start, StartWorkload)
    body = applied(body, start.transition)

    ready = decide(body, CREATED_AT + timedelta(seconds=2), pod(ready=True))
    assert isinstance(ready, MarkReady)
    body = applied(body, ready.transition)

    expiry = decide(body, EXPIRES_AT, pod(ready=True))
    assert isinstance(expiry, StopSession)
    body = applied(body, expiry.transition)
    assert body["status"]["state"] == "stopping"

    release = decide(body, EXPIRES_AT + timedelta(seconds=1))
    assert isinstance(release, ReleaseObjects)
    stopped_at = EXPIRES_AT + timedelta(seconds=1)
    assert release.stop_deadline == datetime(2026, 11, 23, 10, 1, 0, tzinfo=UTC) + STOP_TIMEOUT
    body = applied(body, release.finish)
    assert body["status"]["state"] == "stopped"
    assert body["status"]["stopReason"] == "LEASE_EXPIRED"

    assert decide(body, stopped_at) == WaitUntil(stopped_at + RETENTION)
    assert decide(body, stopped_at + RETENTION) == DeleteSession()


# Lease rule 8: the lease (last heartbeat 10:00:00.123, expiry 10:01:00.123) lapsed in an
# outage that began 1 s after the last heartbeat.
OUTAGE = OutageWindow(
    datetime(2026, 11, 23, 10, 0, 1, tzinfo=UTC), datetime(2026, 11, 23, 10, 1, 20, tzinfo=UTC)
)
AFTER_OUTAGE = OUTAGE.end + timedelta(seconds=1)


def test_lease_lapsed_in_an_outage_gets_a_grace_instead_of_a_stop() -> None:
    body = stored()
    step = next_step(session_of(body), AFTER_OUTAGE, SETTINGS, None, [OUTAGE])
    assert isinstance(step, GrantGrace)
    assert step.grace.expires_at == OUTAGE.end + 2 * SETTINGS.heartbeat_interval
    after = apply_patch(body, step.transition.patch)
    assert after["status"]["leaseExpiresAt"] == "2026-11-23T10:01:30.000Z"
    assert after["status"]["state"] == "ready"
    lease_valid = condition(after["status"], "LeaseValid")
    assert (lease_valid["status"], lease_valid["reason"]) == ("True", "LeaseGraceGranted")
    assert str(OUTAGE) in lease_valid["message"]
    assert step.transition.event_reason == "LeaseGraceGranted"
    assert str(OUTAGE) in step.transition.event_note


def test_grace_write_loses_to_a_heartbeat_that_moved_the_lease() -> None:
    step = next_step(session_of(stored()), AFTER_OUTAGE, SETTINGS, None, [OUTAGE])
    assert isinstance(step, GrantGrace)
    assert {(t["path"], t["value"]) for t in cas_tests(step.transition.patch)} == {
        ("/status/state", "ready"),
        ("/status/leaseExpiresAt", EXPIRES),
    }
    extended = stored(expires="2026-11-23T10:02:30.000Z")
    with pytest.raises(PatchTestFailed):
        apply_patch(extended, step.transition.patch)


def test_after_the_grace_the_session_is_stopped_as_usual() -> None:
    body = stored()
    step = next_step(session_of(body), AFTER_OUTAGE, SETTINGS, None, [OUTAGE])
    assert isinstance(step, GrantGrace)
    graced = apply_patch(body, step.transition.patch)
    assert next_step(session_of(graced), AFTER_OUTAGE, SETTINGS, None, [OUTAGE]) == WaitUntil(
        step.grace.expires_at
    )
    stop = next_step(session_of(graced), step.grace.expires_at, SETTINGS, None, [OUTAGE])
    assert isinstance(stop, StopSession)
    assert stop.reason is StopReason.LEASE_EXPIRED


def test_client_gone_before_the_outage_is_stopped_as_usual() -> None:
    late = OutageWindow(OUTAGE.start + timedelta(seconds=10), OUTAGE.end)
    step = next_step(session_of(stored()), AFTER_OUTAGE, SETTINGS, None, [late])
    assert isinstance(step, StopSession)
    assert step.reason is StopReason.LEASE_EXPIRED


def test_lease_lapsed_in_an_outage_still_going_on_waits_for_its_end() -> None:
    now = EXPIRES_AT + timedelta(seconds=2)
    ongoing = OutageWindow(OUTAGE.start, now, ongoing=True)
    step = next_step(session_of(stored()), now, SETTINGS, None, [ongoing])
    assert step == WaitUntil(now + timedelta(seconds=1))


# --- the maximum lifetime: fixed at creation, the end no heartbeat passes -------------------

# The end of a maximum lifetime of 60 s from CREATED: the lease ran until it.
LIFETIME_END = EXPIRES
LIFETIME_END_AT = EXPIRES_AT


def capped(state: SessionState = SessionState.READY, **extra: Any) -> dict[str, Any]:
    """A session whose lease ran until the end of its maximum lifetime."""
    return stored(state, lifetimeEndsAt=LIFETIME_END, **extra)


def lease_spec(**fields: int) -> dict[str, Any]:
    return {"lease": {"ttlSeconds": 30, "heartbeatIntervalSeconds": 2, **fields}}


def test_session_has_no_maximum_lifetime_by_default() -> None:
    step = decide(make_body(), CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert "lifetimeEndsAt" not in step.status


def test_spec_max_lifetime_ends_the_lifetime_at_creation_plus_it() -> None:
    step = decide(make_body(spec=lease_spec(maxLifetimeSeconds=3600)), CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert step.status["lifetimeEndsAt"] == "2026-11-23T11:00:00.123Z"
    assert step.status["leaseExpiresAt"] == "2026-11-23T10:00:30.123Z"
    lease_valid = condition(step.status, "LeaseValid")
    assert "2026-11-23T11:00:00.123Z" in lease_valid["message"]
    assert "maximum lifetime 1h" in lease_valid["message"]


def test_lifetime_shorter_than_one_ttl_is_the_first_lease_expiry() -> None:
    settings = dataclasses.replace(SETTINGS, max_lifetime=timedelta(seconds=20))
    step = decide(make_body(spec=lease_spec()), CREATED_AT, settings=settings)

    assert isinstance(step, InitialiseStatus)
    assert step.status["leaseExpiresAt"] == step.status["lifetimeEndsAt"]
    assert step.status["leaseExpiresAt"] == "2026-11-23T10:00:20.123Z"


def test_configured_max_lifetime_applies_to_a_session_that_sets_none() -> None:
    settings = dataclasses.replace(SETTINGS, max_lifetime=timedelta(hours=2))
    step = decide(make_body(), CREATED_AT, settings=settings)

    assert isinstance(step, InitialiseStatus)
    assert step.status["lifetimeEndsAt"] == "2026-11-23T12:00:00.123Z"


def test_spec_max_lifetime_wins_over_the_configured_one() -> None:
    settings = dataclasses.replace(SETTINGS, max_lifetime=timedelta(hours=2))
    step = decide(make_body(spec=lease_spec(maxLifetimeSeconds=60)), CREATED_AT, settings=settings)

    assert isinstance(step, InitialiseStatus)
    assert step.status["lifetimeEndsAt"] == "2026-11-23T10:01:00.123Z"


def test_max_lifetime_alone_keeps_the_configured_ttl_and_interval() -> None:
    body = make_body(spec={"lease": {"maxLifetimeSeconds": 600}})
    step = decide(body, CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert (step.status["leaseTTLSeconds"], step.status["heartbeatInterval"]) == (60, 5)
    assert step.status["lifetimeEndsAt"] == "2026-11-23T10:10:00.123Z"


@pytest.mark.parametrize(
    ("asked", "ends"),
    [
        (3599, "2026-11-23T10:59:59.123Z"),
        (3600, "2026-11-23T11:00:00.123Z"),  # exactly the bound: kept
    ],
)
def test_spec_max_lifetime_within_the_bound_is_kept(asked: int, ends: str) -> None:
    settings = dataclasses.replace(SETTINGS, max_lifetime_bound=timedelta(hours=1))
    step = decide(
        make_body(spec=lease_spec(maxLifetimeSeconds=asked)), CREATED_AT, settings=settings
    )

    assert isinstance(step, InitialiseStatus)
    assert step.status["lifetimeEndsAt"] == ends
    assert "asked for" not in condition(step.status, "LeaseValid")["message"]


def test_spec_max_lifetime_above_the_bound_is_cut_to_it_and_says_so() -> None:
    settings = dataclasses.replace(SETTINGS, max_lifetime_bound=timedelta(hours=1))
    step = decide(
        make_body(spec=lease_spec(maxLifetimeSeconds=3601)), CREATED_AT, settings=settings
    )

    assert isinstance(step, InitialiseStatus)
    assert step.status["lifetimeEndsAt"] == "2026-11-23T11:00:00.123Z"
    message = condition(step.status, "LeaseValid")["message"]
    assert "spec.lease.maxLifetimeSeconds asked for 1h1s" in message
    assert "maxLifetimeBound" in message
    assert "spec.lease.maxLifetimeSeconds asked for 1h1s" in step.event_note


def test_the_bound_is_the_lifetime_of_a_session_without_one() -> None:
    settings = dataclasses.replace(SETTINGS, max_lifetime_bound=timedelta(hours=1))
    step = decide(make_body(), CREATED_AT, settings=settings)

    assert isinstance(step, InitialiseStatus)
    assert step.status["lifetimeEndsAt"] == "2026-11-23T11:00:00.123Z"
    assert "asked for" not in step.event_note


def test_lease_that_ran_until_the_end_of_the_lifetime_stops_as_max_lifetime_reached() -> None:
    body = capped()
    step = decide(body, LIFETIME_END_AT)

    assert isinstance(step, StopSession)
    assert step.cause is StopCause.MAX_LIFETIME_REACHED
    assert step.reason is StopReason.LEASE_EXPIRED
    assert step.lease_expires_at == LIFETIME_END_AT
    assert step.transition.event_reason == "MaxLifetimeReached"
    assert step.transition.warning is False
    assert "maximum lifetime (1m)" in step.transition.event_note
    status = apply_patch(body, step.transition.patch)["status"]
    assert (status["state"], status["stopReason"]) == ("stopped", "LEASE_EXPIRED")
    for kind in ("Ready", "LeaseValid"):
        entry = condition(status, kind)
        assert (entry["status"], entry["reason"]) == ("False", "MaxLifetimeReached")
        assert LIFETIME_END in entry["message"]


def test_session_one_millisecond_before_the_end_of_its_lifetime_waits_for_it() -> None:
    assert decide(capped(), LIFETIME_END_AT - MS) == WaitUntil(LIFETIME_END_AT)


def test_stop_at_the_end_of_the_lifetime_loses_against_a_changed_lease() -> None:
    # The compare-and-set of an expiry holds at the end of a lifetime too.
    body = capped()
    step = decide(body, LIFETIME_END_AT)
    assert isinstance(step, StopSession)
    assert {(t["path"], t["value"]) for t in cas_tests(step.transition.patch)} == {
        ("/status/state", "ready"),
        ("/status/leaseExpiresAt", LIFETIME_END),
    }
    moved = copy.deepcopy(body)
    moved["status"]["leaseExpiresAt"] = "2026-11-23T10:00:59.000Z"
    with pytest.raises(PatchTestFailed):
        apply_patch(moved, step.transition.patch)


def test_lease_that_lapsed_before_the_end_of_the_lifetime_stops_as_lease_expired() -> None:
    body = stored(SessionState.READY, lifetimeEndsAt="2026-11-23T11:00:00.123Z")
    step = decide(body, EXPIRES_AT)

    assert isinstance(step, StopSession)
    assert step.cause is StopCause.LEASE_EXPIRED
    assert step.transition.event_reason == "LeaseExpired"


def test_end_of_the_lifetime_of_a_session_with_a_workload_goes_to_stopping() -> None:
    body = capped(spec={"template": TEMPLATE})
    step = decide(body, LIFETIME_END_AT, pod(ready=True))

    assert isinstance(step, StopSession)
    assert step.transition.event_reason == "MaxLifetimeReached"
    assert apply_patch(body, step.transition.patch)["status"]["state"] == "stopping"


def test_an_outage_grants_no_grace_past_the_end_of_the_lifetime() -> None:
    step = next_step(session_of(capped()), AFTER_OUTAGE, SETTINGS, None, [OUTAGE])

    assert isinstance(step, StopSession)
    assert step.cause is StopCause.MAX_LIFETIME_REACHED


def test_an_outage_grace_stops_at_the_end_of_the_lifetime() -> None:
    body = stored(lifetimeEndsAt="2026-11-23T10:01:25.000Z")
    step = next_step(session_of(body), AFTER_OUTAGE, SETTINGS, None, [OUTAGE])

    assert isinstance(step, GrantGrace)
    after = apply_patch(body, step.transition.patch)
    assert after["status"]["leaseExpiresAt"] == "2026-11-23T10:01:25.000Z"


# --- the start timeout: a workload not ready by the start deadline fails the session ---------

START_DEADLINE = "2026-11-23T10:00:30.123Z"
START_DEADLINE_AT = datetime(2026, 11, 23, 10, 0, 30, 123000, tzinfo=UTC)


def starting_body(state: SessionState = SessionState.STARTING, **extra: Any) -> dict[str, Any]:
    return with_template(state, startDeadline=START_DEADLINE, **extra)


def test_session_with_a_template_gets_the_configured_start_deadline() -> None:
    step = decide(make_body(spec={"template": TEMPLATE}), CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert step.status["startDeadline"] == "2026-11-23T10:10:00.123Z"
    ready = condition(step.status, "Ready")
    assert "ready by 2026-11-23T10:10:00.123Z (start timeout 10m)" in ready["message"]
    assert "2026-11-23T10:10:00.123Z" in step.event_note


def test_spec_start_timeout_sets_the_start_deadline() -> None:
    body = make_body(spec={"template": TEMPLATE, "startTimeoutSeconds": 90})
    step = decide(body, CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert step.status["startDeadline"] == "2026-11-23T10:01:30.123Z"


def test_spec_start_timeout_above_the_bound_is_cut_to_it_and_says_so() -> None:
    settings = dataclasses.replace(SETTINGS, start_timeout_bound=timedelta(minutes=30))
    body = make_body(spec={"template": TEMPLATE, "startTimeoutSeconds": 3600})
    step = decide(body, CREATED_AT, settings=settings)

    assert isinstance(step, InitialiseStatus)
    assert step.status["startDeadline"] == "2026-11-23T10:30:00.123Z"
    message = condition(step.status, "Ready")["message"]
    assert "spec.startTimeoutSeconds asked for 1h" in message
    assert "startTimeoutBound" in message


@pytest.mark.parametrize(
    "spec", [{}, {"stop": True, "template": TEMPLATE}], ids=["no-template", "created-stopped"]
)
def test_session_that_starts_no_workload_has_no_start_deadline(spec: dict[str, Any]) -> None:
    step = decide(make_body(spec=spec), CREATED_AT)

    assert isinstance(step, InitialiseStatus)
    assert "startDeadline" not in step.status


def test_starting_session_at_its_start_deadline_fails_with_start_timeout() -> None:
    body = starting_body()
    step = decide(body, START_DEADLINE_AT, pod(phase="Pending"))

    assert isinstance(step, StopSession)
    assert step.cause is StopCause.START_TIMEOUT
    assert step.reason is StopReason.FAILED
    assert step.lease_expires_at is None
    assert step.transition.event_reason == "StartTimeout"
    assert step.transition.warning is True
    assert "living-room is Pending" in step.transition.event_note
    assert cas_tests(step.transition.patch) == [
        {"op": "test", "path": "/status/state", "value": "starting"}
    ]
    status = apply_patch(body, step.transition.patch)["status"]
    assert (status["state"], status["stopReason"]) == ("stopping", "FAILED")
    for kind in ("Ready", "LeaseValid"):
        entry = condition(status, kind)
        assert (entry["status"], entry["reason"]) == ("False", "StartTimeout")
        assert "start timeout (30s)" in entry["message"]


def test_new_session_whose_pod_was_never_created_fails_at_its_start_deadline() -> None:
    step = decide(starting_body(SessionState.NEW), START_DEADLINE_AT, NO_POD)

    assert isinstance(step, StopSession)
    assert step.cause is StopCause.START_TIMEOUT
    assert "the workload Pod was not created" in step.transition.event_note


def test_starting_session_one_millisecond_before_its_start_deadline_waits_for_it() -> None:
    step = decide(starting_body(), START_DEADLINE_AT - MS, pod(phase="Pending"))

    assert step == WaitUntil(START_DEADLINE_AT)


def test_starting_session_waits_for_its_lease_expiry_when_that_comes_first() -> None:
    body = with_template(SessionState.STARTING, startDeadline="2026-11-23T10:05:00.000Z")
    step = decide(body, MIDWAY, pod(phase="Pending"))

    assert step == WaitUntil(EXPIRES_AT)


def test_ready_session_past_its_start_deadline_is_not_stopped() -> None:
    step = decide(starting_body(SessionState.READY), START_DEADLINE_AT, pod(ready=True))

    assert step == WaitUntil(EXPIRES_AT)


def test_session_initialised_without_a_start_deadline_never_times_out() -> None:
    step = decide(with_template(SessionState.STARTING), EXPIRES_AT - MS, pod(phase="Pending"))

    assert step == WaitUntil(EXPIRES_AT)


def test_lease_expiry_at_the_start_deadline_stops_as_lease_expired() -> None:
    body = with_template(SessionState.STARTING, startDeadline=EXPIRES)
    step = decide(body, EXPIRES_AT, pod(phase="Pending"))

    assert isinstance(step, StopSession)
    assert step.cause is StopCause.LEASE_EXPIRED


def test_failed_pod_at_the_start_deadline_fails_as_failed() -> None:
    step = decide(starting_body(), START_DEADLINE_AT, pod(phase="Failed", message="OOMKilled"))

    assert isinstance(step, StopSession)
    assert step.cause is StopCause.FAILED


def test_start_timeout_ends_failed_once_released() -> None:
    body = starting_body()
    stop = decide(body, START_DEADLINE_AT, pod(phase="Pending"))
    assert isinstance(stop, StopSession)
    stopping = applied(body, stop.transition)
    release = release_step(session_of(stopping), START_DEADLINE_AT, SETTINGS)

    status = apply_patch(stopping, release.finish.patch)["status"]
    assert (status["state"], status["stopReason"]) == ("failed", "FAILED")
    assert condition(status, "Ready")["reason"] == "StartTimeout"
    assert release.finish.event_reason == "Failed"
