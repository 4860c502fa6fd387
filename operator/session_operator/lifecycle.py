"""What the operator does next for a Session (pure): decide a step from the stored object.

The operator's data path reads top to bottom here: a new Session gets its status and
lease (``InitialiseStatus``); a template starts a workload (``StartWorkload``); the
``xg2g.io/state`` label follows the state (``MirrorStateLabel``); a lease that ran out
or a ``spec.stop`` stops the session (``StopSession``); otherwise the operator waits
for the lease deadline (``WaitUntil``). Each step carries the exact write to make,
compare-and-set included; ``k8s/`` applies it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from session_operator.conditions import LEASE_VALID, READY, Condition, merged_conditions
from session_operator.lease import (
    LIVE_STATES,
    SessionState,
    StopReason,
    initial_lease_expiry,
    should_expire,
    terminal_state_for,
)
from session_operator.models import STATE_LABEL, Session
from session_operator.timestamps import format_timestamp

JsonPatch: TypeAlias = list[dict[str, Any]]


@dataclass(frozen=True)
class LeaseDefaults:
    """The lease given to Sessions whose spec names none (from the config)."""

    ttl: timedelta
    heartbeat_interval: timedelta


@dataclass(frozen=True)
class InitialiseStatus:
    """Write the first status (state, sessionID, lease) if the object is still unchanged."""

    status: dict[str, Any]
    event_reason: str
    event_note: str


@dataclass(frozen=True)
class StartWorkload:
    """Create the session's Pod, then move ``new → starting`` with *patch*."""

    patch: JsonPatch


@dataclass(frozen=True)
class StopSession:
    """Stop a live session for *reason* with the compare-and-set *patch*."""

    reason: StopReason
    previous_state: SessionState
    patch: JsonPatch
    event_reason: str
    event_note: str
    lease_expires_at: datetime | None = None


@dataclass(frozen=True)
class MirrorStateLabel:
    """Set the ``xg2g.io/state`` label to the stored state."""

    state: SessionState


@dataclass(frozen=True)
class WaitUntil:
    """Nothing to do now; look again at *deadline* (``None``: only on the next change)."""

    deadline: datetime | None


Step: TypeAlias = InitialiseStatus | StartWorkload | StopSession | MirrorStateLabel | WaitUntil


def next_step(session: Session, now: datetime, defaults: LeaseDefaults) -> Step:
    """The one thing to do next for *session* at *now*."""
    lease = session.lease()
    if lease is None:
        return _initialise(session, now, defaults)
    if should_expire(now, lease):
        return _stop(session, now, StopReason.LEASE_EXPIRED)
    if lease.state in LIVE_STATES and session.spec.stop:
        return _stop(session, now, StopReason.USER_STOPPED)
    if session.labels.get(STATE_LABEL) != lease.state:
        return MirrorStateLabel(lease.state)
    if lease.state is SessionState.NEW and session.spec.template is not None:
        return StartWorkload(_start_patch(session, now))
    if lease.state in LIVE_STATES:
        return WaitUntil(lease.expires_at)
    return WaitUntil(None)


def _initialise(session: Session, now: datetime, defaults: LeaseDefaults) -> InitialiseStatus:
    spec = session.spec
    if spec.lease is not None:
        ttl_seconds = spec.lease.ttl_seconds
        interval_seconds = spec.lease.heartbeat_interval_seconds
    else:
        ttl_seconds = math.ceil(defaults.ttl.total_seconds())
        interval_seconds = math.ceil(defaults.heartbeat_interval.total_seconds())
    expires_at = initial_lease_expiry(session.created_at, timedelta(seconds=ttl_seconds))
    status: dict[str, Any] = {
        "sessionID": session.uid,
        "leaseTTLSeconds": ttl_seconds,
        "heartbeatInterval": interval_seconds,
        "leaseExpiresAt": format_timestamp(expires_at),
        "observedGeneration": session.generation,
    }
    lease_valid = Condition(
        LEASE_VALID, True, "LeaseGranted", f"lease runs until {status['leaseExpiresAt']}"
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
    elif spec.template is None:
        status["state"] = SessionState.READY
        ready = Condition(READY, True, "NoWorkload", "the session runs no workload")
        reason, note = "Ready", f"session ready, lease expires at {status['leaseExpiresAt']}"
    else:
        status["state"] = SessionState.NEW
        ready = Condition(READY, False, "WorkloadPending", "the workload is not created yet")
        reason, note = "Created", f"lease initialised, expires at {status['leaseExpiresAt']}"
    status["conditions"] = merged_conditions((), [ready, lease_valid], now, session.generation)
    return InitialiseStatus(status, reason, note)


def _start_patch(session: Session, now: datetime) -> JsonPatch:
    ready = Condition(READY, False, "WorkloadStarting", "the workload Pod is not Ready yet")
    return _transition_patch(session, SessionState.STARTING, now, [ready], {})


def _stop(session: Session, now: datetime, reason: StopReason) -> StopSession:
    previous = session.status.state
    assert previous is not None
    target = terminal_state_for(reason)
    if reason is StopReason.LEASE_EXPIRED:
        message = f"no heartbeat renewed the lease by {session.raw_status['leaseExpiresAt']}"
        event_reason = "LeaseExpired"
    else:
        message = "spec.stop was set"
        event_reason = "Stopped"
    conditions = [
        Condition(READY, False, _camel(reason), message),
        Condition(LEASE_VALID, False, _camel(reason), message),
    ]
    extra = {"stopReason": reason.value, "stoppedAt": format_timestamp(now)}
    patch = _transition_patch(
        session,
        target,
        now,
        conditions,
        extra,
        # An expiry must lose against a heartbeat that extended the lease meanwhile.
        test_expiry=reason is StopReason.LEASE_EXPIRED,
    )
    note = f"{message}; {previous.value} -> {target.value} ({reason.value})"
    expires_at = session.status.lease_expires_at if reason is StopReason.LEASE_EXPIRED else None
    return StopSession(reason, previous, patch, event_reason, note, expires_at)


def _transition_patch(
    session: Session,
    target: SessionState,
    now: datetime,
    conditions: list[Condition],
    extra: Mapping[str, Any],
    test_expiry: bool = False,
) -> JsonPatch:
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
