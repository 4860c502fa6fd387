"""What the operator does next for a Session (pure): decide a step from what it observed.

The data path reads top to bottom here. A new Session gets its status and lease
(``InitialiseStatus``); a template starts a Pod (``StartWorkload``) and the session is
``ready`` when the Pod is (``MarkReady``); the ``xg2g.io/state`` label follows the state
(``WriteMetadata``). A lease that lapsed because of the system's own outage is given a
grace instead (``GrantGrace``, lease rule 8). Any other lapsed lease, ``spec.stop`` or a
failed Pod stops the session
(``StopSession``): straight to its terminal state when it runs no workload, else to
``stopping`` while its objects are released (``ReleaseObjects``, then its ``finish`` transition),
forced after ``stopTimeout`` (the reconciler releases at once, and what is gone at once
ends the stop in the same pass). Terminal sessions are deleted after ``retention``
(``DeleteSession``); until then the operator waits (``WaitUntil``). The label write also
holds the operator's finalizer (``WriteMetadata``); a deleted session is stopped
(``CLEANUP``) and released like any other, then its finalizer goes (``RemoveFinalizer``).

Each step carries the exact write to make, compare-and-set included; ``k8s/`` applies it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from session_operator.conditions import LEASE_VALID, READY, Condition, merged_conditions
from session_operator.lease import (
    LIVE_STATES,
    TERMINAL_STATES,
    SessionState,
    StopReason,
    can_transition,
    initial_lease_expiry,
    should_expire,
    terminal_state_for,
)
from session_operator.models import FINALIZER, STATE_LABEL, Session
from session_operator.outage_rule import LeaseGrace, OutageWindow, outage_grace
from session_operator.timestamps import format_timestamp, parse_timestamp
from session_operator.workload import Workload

JsonPatch: TypeAlias = list[dict[str, Any]]

# How often a stop that waits for objects to go away looks again (Pod events also wake it).
RELEASE_POLL = timedelta(seconds=1)

# How often a lease that lapsed in an outage still going on is looked at again.
OUTAGE_POLL = timedelta(seconds=1)


class InvalidTransition(ValueError):
    """A step would write a state change the state machine does not allow (a bug)."""


@dataclass(frozen=True)
class LifecycleSettings:
    """The configured values the lifecycle needs (from ``Settings``)."""

    lease_ttl: timedelta
    heartbeat_interval: timedelta
    stop_timeout: timedelta
    retention: timedelta


LEASE_EXPIRED_EVENT = "LeaseExpired"
"""The reason of the one Event an expiry posts."""


@dataclass(frozen=True)
class Transition:
    """A compare-and-set status write and the one Event it deserves."""

    patch: JsonPatch
    event_reason: str
    event_note: str
    warning: bool = False


@dataclass(frozen=True)
class InitialiseStatus:
    """Write the first status (state, sessionID, lease) if the object is still unchanged."""

    status: dict[str, Any]
    event_reason: str
    event_note: str


@dataclass(frozen=True)
class StartWorkload:
    """Create the session's Pod, then apply *transition* (``new → starting``)."""

    transition: Transition


@dataclass(frozen=True)
class MarkReady:
    """The Pod is Ready: ``starting → ready``."""

    transition: Transition


@dataclass(frozen=True)
class StopSession:
    """Stop a live session for *reason* (to ``stopping``, or straight to the end)."""

    reason: StopReason
    previous_state: SessionState
    transition: Transition
    lease_expires_at: datetime | None = None


@dataclass(frozen=True)
class GrantGrace:
    """The lease lapsed in an outage of the system: move it to *grace*'s expiry."""

    grace: LeaseGrace
    transition: Transition


@dataclass(frozen=True)
class ReleaseObjects:
    """Delete what the stopping session controls; then ``finish`` (or wait, or force)."""

    reason: StopReason
    finish: Transition
    force: Transition
    stop_deadline: datetime


@dataclass(frozen=True)
class WriteMetadata:
    """Set the ``xg2g.io/state`` label to the stored state and hold the operator's
    finalizer, with one JSON patch of the object's metadata."""

    state: SessionState
    patch: JsonPatch


@dataclass(frozen=True)
class RemoveFinalizer:
    """The deleted session is stopped and released: let the object go."""

    patch: JsonPatch


@dataclass(frozen=True)
class DeleteSession:
    """The terminal session has been kept for ``retention``: delete it."""


@dataclass(frozen=True)
class WaitUntil:
    """Nothing to do now; look again at *deadline* (``None``: only on the next change)."""

    deadline: datetime | None


Step: TypeAlias = (
    InitialiseStatus
    | StartWorkload
    | MarkReady
    | StopSession
    | GrantGrace
    | ReleaseObjects
    | WriteMetadata
    | DeleteSession
    | RemoveFinalizer
    | WaitUntil
)


def next_step(
    session: Session,
    now: datetime,
    settings: LifecycleSettings,
    workload: Workload | None,
    outages: Sequence[OutageWindow] = (),
) -> Step:
    """The one thing to do next for *session* at *now*.

    *workload* is the observed Pod of a session with a template (``None`` when the
    caller did not look: sessions without a template, or states that do not need it).
    *outages* are the windows in which heartbeats could not be accepted.
    """
    if session.deleting:
        return _clean_up(session, now, settings)
    lease = session.lease()
    if lease is None:
        return _initialise(session, now, settings)
    state = lease.state
    if should_expire(now, lease):
        grace = outage_grace(now, lease, session.created_at, outages)
        if grace is not None and grace.outage.ongoing:
            # Owed a grace, but from an end not known yet (and no write gets through).
            return WaitUntil(now + OUTAGE_POLL)
        if grace is not None:
            return GrantGrace(grace, _grace(session, now, grace))
        return stop_session(session, now, StopReason.LEASE_EXPIRED)
    if state in LIVE_STATES and session.spec.stop:
        return stop_session(session, now, StopReason.USER_STOPPED)
    failure = _workload_failure(state, workload)
    if failure is not None:
        return stop_session(session, now, StopReason.FAILED, failure)
    if session.state_label != state or session.finalizer_index is None:
        return WriteMetadata(state, _metadata_patch(session, state))
    if state is SessionState.NEW and session.spec.has_template:
        return StartWorkload(_start(session, now))
    if state is SessionState.STARTING and workload is not None and _pod_ready(workload):
        return MarkReady(_ready(session, now))
    if state is SessionState.STOPPING:
        return release_step(session, now, settings)
    if state in LIVE_STATES:
        return WaitUntil(lease.expires_at)
    return _retain(session, now, settings)


def _clean_up(session: Session, now: datetime, settings: LifecycleSettings) -> Step:
    """A deleted session: stop it if live (``CLEANUP``), release what it holds, then
    remove the finalizer."""
    state = session.status.state
    if state in LIVE_STATES:
        return stop_session(session, now, StopReason.CLEANUP)
    if state is SessionState.STOPPING:
        return release_step(session, now, settings)
    if session.finalizer_index is not None:
        path = f"/metadata/finalizers/{session.finalizer_index}"
        return RemoveFinalizer([
            {"op": "test", "path": path, "value": FINALIZER},
            {"op": "remove", "path": path},
        ])  # fmt: skip
    return WaitUntil(None)  # someone else's finalizer holds it


def _metadata_patch(session: Session, state: SessionState) -> JsonPatch:
    """Mirror *state* into the label; add the finalizer where it is missing, tested against
    the object's version so that nobody else's is dropped (the version, not the list: the
    model keeps no finalizer list, which a user may make long)."""
    if session.has_labels:
        patch: JsonPatch = [
            {"op": "add", "path": f"/metadata/labels/{_pointer(STATE_LABEL)}", "value": state.value}
        ]
    else:
        patch = [{"op": "add", "path": "/metadata/labels", "value": {STATE_LABEL: state.value}}]
    if session.finalizer_index is not None:
        return patch
    version = session.resource_version
    test = {"op": "test", "path": "/metadata/resourceVersion", "value": version}
    add: dict[str, Any] = (
        {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}
        if session.has_finalizers
        else {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
    )
    return [test, *patch, add]


def _pointer(key: str) -> str:
    """*key* escaped as one JSON-pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def stop_session(
    session: Session, now: datetime, reason: StopReason, detail: str = ""
) -> StopSession:
    """Stop a live *session*: to ``stopping`` when it may own objects, else to the end."""
    previous = session.status.state
    assert previous in LIVE_STATES, f"only a live session can be stopped, not {previous}"
    message = _stop_message(session, reason, detail)
    releases = session.spec.has_template
    target = SessionState.STOPPING if releases else terminal_state_for(reason)
    extra: dict[str, Any] = {"stopReason": reason.value}
    if not releases:
        extra["stoppedAt"] = format_timestamp(now)
    expires_at = session.status.lease_expires_at
    if expires_at is not None and now < expires_at:
        # A stop ends the lease: EXPIRES shows when, not a time that will never come.
        extra["leaseExpiresAt"] = format_timestamp(now)
    conditions = [
        Condition(READY, False, _camel(reason), message),
        # LeaseValid turns False exactly when a stop begins: its lastTransitionTime is
        # where the stop timeout counts from.
        Condition(LEASE_VALID, False, _camel(reason), message),
    ]
    patch = _transition_patch(
        session,
        target,
        now,
        conditions,
        extra,
        # An expiry must lose against a heartbeat that extended the lease meanwhile.
        test_expiry=reason is StopReason.LEASE_EXPIRED,
    )
    if reason is StopReason.LEASE_EXPIRED:
        event_reason = LEASE_EXPIRED_EVENT
    elif releases:
        event_reason = "Stopping"  # "Stopped" or "Failed" follows once released
    else:
        event_reason = "Failed" if reason is StopReason.FAILED else "Stopped"
    note = f"{message}; {previous.value} -> {target.value} ({reason.value})"
    transition = Transition(patch, event_reason, note, warning=reason is StopReason.FAILED)
    expires_at = session.status.lease_expires_at if reason is StopReason.LEASE_EXPIRED else None
    return StopSession(reason, previous, transition, expires_at)


def _initialise(session: Session, now: datetime, settings: LifecycleSettings) -> InitialiseStatus:
    spec = session.spec
    if spec.lease is not None:
        ttl_seconds = spec.lease.ttl_seconds
        interval_seconds = spec.lease.heartbeat_interval_seconds
    else:
        ttl_seconds = math.ceil(settings.lease_ttl.total_seconds())
        interval_seconds = math.ceil(settings.heartbeat_interval.total_seconds())
    expires_at = initial_lease_expiry(session.created_at, timedelta(seconds=ttl_seconds))
    status: dict[str, Any] = {
        "sessionID": session.uid,
        "leaseTTLSeconds": ttl_seconds,
        "heartbeatInterval": interval_seconds,
        "leaseExpiresAt": format_timestamp(expires_at),
        "observedGeneration": session.generation,
    }
    lease_valid = Condition(
        LEASE_VALID, True, "LeaseGranted", "heartbeats keep the lease; see status.leaseExpiresAt"
    )
    if spec.stop:
        status |= {
            "state": SessionState.STOPPED,
            "stopReason": StopReason.USER_STOPPED,
            "stoppedAt": format_timestamp(now),
        }
        ready = Condition(READY, False, "Stopped", "created with spec.stop: true")
        lease_valid = Condition(LEASE_VALID, False, "Stopped", "the session was never started")
        reason, note = "Stopped", "created with spec.stop: true; stopped (USER_STOPPED)"
    elif not spec.has_template:
        status["state"] = SessionState.READY
        ready = Condition(READY, True, "NoWorkload", "the session runs no workload")
        reason, note = "Ready", f"session ready, lease expires at {status['leaseExpiresAt']}"
    else:
        status["state"] = SessionState.NEW
        ready = Condition(READY, False, "WorkloadPending", "the workload is not created yet")
        reason, note = "Created", f"lease initialised, expires at {status['leaseExpiresAt']}"
    status["conditions"] = merged_conditions((), [ready, lease_valid], now, session.generation)
    return InitialiseStatus(status, reason, note)


def _grace(session: Session, now: datetime, grace: LeaseGrace) -> Transition:
    raw = session.raw_status
    expires_at = format_timestamp(grace.expires_at)
    message = (
        f"the lease lapsed at {raw['leaseExpiresAt']} during an outage of the system"
        f" ({grace.outage}); grace until {expires_at}"
    )
    lease_valid = Condition(LEASE_VALID, True, "LeaseGraceGranted", message)
    merged = merged_conditions(raw.get("conditions", ()), [lease_valid], now, session.generation)
    patch: JsonPatch = [
        {"op": "test", "path": "/status/state", "value": raw["state"]},
        # A heartbeat that extended the lease meanwhile wins; decide again then.
        {"op": "test", "path": "/status/leaseExpiresAt", "value": raw["leaseExpiresAt"]},
        {"op": "replace", "path": "/status/leaseExpiresAt", "value": expires_at},
        {"op": "add", "path": "/status/conditions", "value": merged},
    ]
    return Transition(patch, "LeaseGraceGranted", message)


def _start(session: Session, now: datetime) -> Transition:
    ready = Condition(READY, False, "WorkloadStarting", "the workload Pod is not Ready yet")
    patch = _transition_patch(session, SessionState.STARTING, now, [ready], {})
    note = f"workload Pod {session.ref.name} created; waiting for it to become Ready"
    return Transition(patch, "Starting", note)


def _ready(session: Session, now: datetime) -> Transition:
    ready = Condition(READY, True, "WorkloadReady", f"workload Pod {session.ref.name} is Ready")
    patch = _transition_patch(session, SessionState.READY, now, [ready], {})
    return Transition(patch, "Ready", f"workload Pod {session.ref.name} is Ready")


def release_step(session: Session, now: datetime, settings: LifecycleSettings) -> ReleaseObjects:
    """How a ``stopping`` session ends: *finish* once released, *force* at the deadline."""
    reason = session.status.stop_reason or StopReason.CLEANUP
    target = terminal_state_for(reason)
    stopped_at = {"stoppedAt": format_timestamp(now)}
    # The conditions already say why the session stopped; finishing keeps that message.
    finish = Transition(
        _transition_patch(session, target, now, [], stopped_at),
        "Failed" if target is SessionState.FAILED else "Stopped",
        f"objects released; stopping -> {target.value} ({reason.value})",
        warning=target is SessionState.FAILED,
    )
    why = _condition_message(session, READY)
    timed_out = Condition(
        READY,
        False,
        "StopTimeout",
        f"{why}; stop forced: objects still present after {settings.stop_timeout}",
    )
    force = Transition(
        _transition_patch(session, target, now, [timed_out], stopped_at),
        "StopTimeout",
        f"objects not released within {settings.stop_timeout}; forced to {target.value}"
        f" ({reason.value})",
        warning=True,
    )
    return ReleaseObjects(reason, finish, force, _stop_began(session) + settings.stop_timeout)


def _retain(session: Session, now: datetime, settings: LifecycleSettings) -> Step:
    stopped_at = session.status.stopped_at
    if session.status.state not in TERMINAL_STATES or stopped_at is None:
        return WaitUntil(None)
    delete_at = stopped_at + settings.retention
    return DeleteSession() if now >= delete_at else WaitUntil(delete_at)


def _workload_failure(state: SessionState, workload: Workload | None) -> str | None:
    if workload is None or state not in LIVE_STATES:
        return None
    pod = workload.pod
    if pod is None:
        if state is SessionState.NEW:
            return None  # not created yet
        return "the workload Pod vanished"
    if pod.failed:
        detail = f": {pod.message}" if pod.message else ""
        return f"the workload Pod {pod.name} ended (phase {pod.phase}){detail}"
    return None


def _pod_ready(workload: Workload) -> bool:
    return workload.pod is not None and workload.pod.ready


def _condition_message(session: Session, condition_type: str) -> str:
    for condition in session.conditions:
        if condition.get("type") == condition_type:
            return str(condition.get("message") or "")
    return ""


def _stop_began(session: Session) -> datetime:
    for condition in session.conditions:
        if condition.get("type") == LEASE_VALID and condition.get("status") == "False":
            return parse_timestamp(str(condition["lastTransitionTime"]))
    # A status edited by hand without the condition: count from the last status write
    # we know of rather than from now, so the stop is still forced in the end.
    return session.status.lease_expires_at or session.created_at


def _stop_message(session: Session, reason: StopReason, detail: str) -> str:
    if reason is StopReason.LEASE_EXPIRED:
        return f"no heartbeat renewed the lease by {session.raw_status['leaseExpiresAt']}"
    if reason is StopReason.USER_STOPPED:
        return "spec.stop was set"
    if reason is StopReason.CLEANUP:
        return "the Session is being deleted"
    return detail or "the workload failed"


def _transition_patch(
    session: Session,
    target: SessionState,
    now: datetime,
    conditions: list[Condition],
    extra: Mapping[str, Any],
    test_expiry: bool = False,
) -> JsonPatch:
    current = session.status.state
    if current is None or not can_transition(current, target):
        raise InvalidTransition(f"{session.ref}: {current} -> {target.value} is not a transition")
    raw = session.raw_status
    patch: JsonPatch = [{"op": "test", "path": "/status/state", "value": raw["state"]}]
    if test_expiry:
        patch.append(
            {"op": "test", "path": "/status/leaseExpiresAt", "value": raw["leaseExpiresAt"]}
        )
    patch.append({"op": "replace", "path": "/status/state", "value": target.value})
    for key, value in extra.items():
        patch.append({"op": "add", "path": f"/status/{key}", "value": value})
    merged = merged_conditions(raw.get("conditions", ()), conditions, now, session.generation)
    patch.append({"op": "add", "path": "/status/conditions", "value": merged})
    patch.append({"op": "add", "path": "/status/observedGeneration", "value": session.generation})
    return patch


def _camel(reason: StopReason) -> str:
    return "".join(part.capitalize() for part in reason.value.split("_"))
