"""What the operator does next for a Session (pure): decide a step from what it observed.

The data path reads top to bottom here. A new Session gets its status and lease, with the
end of its maximum lifetime and its start deadline where they apply (``InitialiseStatus``);
a template starts a Pod (``StartWorkload``) and the session is ``ready`` when the Pod is
(``MarkReady``); the ``xg2g.io/state`` label follows the state (``WriteMetadata``). A lease
that enters its expiry warning window says so, once (``WarnExpiringSoon``). A hold
asked for in ``spec.hold`` is taken up, ended when it runs out, or cleared when the spec
drops it (``ChangeHold``); until its end the lease does not run out. A lease
that lapsed because of the system's own outage is given a grace instead (``GrantGrace``,
lease rule 8). Any other lapsed lease (at the end of the maximum lifetime too),
``spec.stop``, a failed Pod or a missed start deadline stops the session
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
from enum import StrEnum
from typing import Any, TypeAlias, assert_never

from session_operator.conditions import (
    LEASE_GRANTED,
    LEASE_GRANTED_MESSAGE,
    LEASE_VALID,
    READY,
    Condition,
    merged_conditions,
)
from session_operator.config import Settings, format_duration
from session_operator.expiry_warning import (
    EXPIRING_SOON_EVENT,
    expiring_soon,
    warned,
    warning_instant,
)
from session_operator.hold import hold_in_force
from session_operator.lease import (
    LIVE_STATES,
    TERMINAL_STATES,
    Lease,
    SessionState,
    StopCause,
    StopReason,
    can_transition,
    expiry_cause,
    initial_lease_expiry,
    lease_end,
    lease_expired,
    next_deadline,
    should_expire,
    start_timed_out,
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
    """The configured values the lifecycle needs (from ``Settings``, :meth:`of`)."""

    lease_ttl: timedelta
    heartbeat_interval: timedelta
    stop_timeout: timedelta
    retention: timedelta
    max_lifetime: timedelta | None
    max_lifetime_bound: timedelta | None
    start_timeout: timedelta
    start_timeout_bound: timedelta | None
    max_hold: timedelta
    expiry_warning: timedelta
    policies: tuple[str, ...] = ()
    """The SessionPolicies whose defaults and bounds these settings carry, by name
    (``session_policy.within_policy``); none: the configuration's alone."""

    @classmethod
    def of(cls, settings: Settings) -> LifecycleSettings:
        """The lifecycle's part of the operator's *settings*."""
        return cls(
            lease_ttl=settings.lease_ttl,
            heartbeat_interval=settings.heartbeat_interval,
            stop_timeout=settings.stop_timeout,
            retention=settings.retention,
            max_lifetime=settings.max_lifetime,
            max_lifetime_bound=settings.max_lifetime_bound,
            start_timeout=settings.start_timeout,
            start_timeout_bound=settings.start_timeout_bound,
            max_hold=settings.max_hold,
            expiry_warning=settings.expiry_warning,
        )


STOPPING_EVENT = "Stopping"
"""The reason of the Event of a stop that has begun releasing, where its cause has no
Event of its own: ``Stopped`` or ``Failed`` follows once released."""

_CAUSES_WITH_AN_EVENT = frozenset(
    {StopCause.LEASE_EXPIRED, StopCause.MAX_LIFETIME_REACHED, StopCause.START_TIMEOUT}
)
"""Stops the operator decides at a deadline: their one Event is named after the cause,
whether the stop ends at once or after its objects are released."""


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
    """Stop a live session for *cause* (to ``stopping``, or straight to the end)."""

    cause: StopCause
    previous_state: SessionState
    transition: Transition
    lease_expires_at: datetime | None = None
    """The lapsed lease's expiry, for a stop with ``LEASE_EXPIRED``."""

    @property
    def reason(self) -> StopReason:
        """The ``stopReason`` the stop records."""
        return self.cause.stop_reason


@dataclass(frozen=True)
class GrantGrace:
    """The lease lapsed in an outage of the system: move it to *grace*'s expiry."""

    grace: LeaseGrace
    transition: Transition


class HoldChange(StrEnum):
    """What a :class:`ChangeHold` does to a session's hold."""

    SET = "set"
    ENDED = "ended"
    CLEARED = "cleared"


@dataclass(frozen=True)
class ChangeHold:
    """Take up the hold ``spec.hold`` asks for, end one that ran out, or clear one that
    ``spec.hold`` no longer asks for."""

    change: HoldChange
    transition: Transition


@dataclass(frozen=True)
class WarnExpiringSoon:
    """The live lease entered its expiry warning window: ``LeaseValid`` says so, with one
    ``LeaseExpiringSoon`` Event (``ExpiringSoon`` then marks the warning as given)."""

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
    | ChangeHold
    | WarnExpiringSoon
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
        return stop_session(session, now, expiry_cause(lease))
    if state in LIVE_STATES and session.spec.stop:
        return stop_session(session, now, StopCause.USER_STOPPED)
    failure = _workload_failure(state, workload)
    if failure is not None:
        return stop_session(session, now, StopCause.FAILED, failure)
    if start_timed_out(now, lease):
        return stop_session(session, now, StopCause.START_TIMEOUT, _not_started(workload))
    if session.state_label != state or session.finalizer_index is None:
        return WriteMetadata(state, _metadata_patch(session, state))
    if state in LIVE_STATES and (hold := _hold_step(session, now, settings)) is not None:
        return hold
    if state is SessionState.NEW and session.spec.has_template:
        return StartWorkload(_start(session, now))
    if state is SessionState.STARTING and workload is not None and _pod_ready(workload):
        return MarkReady(_ready(session, now))
    if state is SessionState.STOPPING:
        return release_step(session, now, settings)
    if state in LIVE_STATES:
        return _until_next_deadline(session, now, lease, settings.expiry_warning)
    return _retain(session, now, settings)


def _until_next_deadline(
    session: Session, now: datetime, lease: Lease, window: timedelta
) -> WarnExpiringSoon | WaitUntil:
    """A live session with nothing else to do: warn that its lease ends soon once it is in
    the warning *window* (once: until a heartbeat moves it out), else wait for the next
    deadline, the warning's among them."""
    end = lease_end(lease)
    warn_at = warning_instant(end, window)
    if warn_at is None or warned(session.conditions):
        return WaitUntil(next_deadline(lease))
    if now >= warn_at:
        return WarnExpiringSoon(_warning(session, now, end, lease.lifetime_ends_at))
    return WaitUntil(min(next_deadline(lease), warn_at))


def _warning(
    session: Session, now: datetime, end: datetime, lifetime_ends_at: datetime | None
) -> Transition:
    raw = session.raw_status
    lease_valid = expiring_soon(now, end, lifetime_ends_at)
    merged = merged_conditions(raw.get("conditions", ()), [lease_valid], now, session.generation)
    patch: JsonPatch = [
        {"op": "test", "path": "/status/state", "value": raw["state"]},
        # A heartbeat that moved the lease meanwhile wins; decide again then.
        {"op": "test", "path": "/status/leaseExpiresAt", "value": raw["leaseExpiresAt"]},
        {"op": "add", "path": "/status/conditions", "value": merged},
    ]
    return Transition(patch, EXPIRING_SOON_EVENT, lease_valid.message)


def _clean_up(session: Session, now: datetime, settings: LifecycleSettings) -> Step:
    """A deleted session: stop it if live (``CLEANUP``), release what it holds, then
    remove the finalizer."""
    state = session.status.state
    if state in LIVE_STATES:
        return stop_session(session, now, StopCause.CLEANUP)
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
    session: Session, now: datetime, cause: StopCause, detail: str = ""
) -> StopSession:
    """Stop a live *session* for *cause*: to ``stopping`` when it may own objects, else to
    the end. The stop records the cause's ``stopReason``; its conditions name the cause."""
    previous = session.status.state
    assert previous in LIVE_STATES, f"only a live session can be stopped, not {previous}"
    reason = cause.stop_reason
    message = _stop_message(session, cause, detail)
    releases = session.spec.has_template
    target = SessionState.STOPPING if releases else terminal_state_for(reason)
    extra: dict[str, Any] = {"stopReason": reason.value}
    if not releases:
        extra["stoppedAt"] = format_timestamp(now)
    expires_at = session.status.lease_expires_at
    if expires_at is not None and now < expires_at:
        # A stop ends the lease: EXPIRES shows when, not a time that will never come.
        extra["leaseExpiresAt"] = format_timestamp(now)
    hold_until = session.status.hold_until
    if hold_until is not None and now < hold_until:
        extra["holdUntil"] = format_timestamp(now)  # and its hold, likewise
    conditions = [
        Condition(READY, False, cause.value, message),
        # LeaseValid turns False exactly when a stop begins: its lastTransitionTime is
        # where the stop timeout counts from.
        Condition(LEASE_VALID, False, cause.value, message),
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
    if cause in _CAUSES_WITH_AN_EVENT:
        event_reason = cause.value
    elif releases:
        event_reason = STOPPING_EVENT
    else:
        event_reason = "Failed" if reason is StopReason.FAILED else "Stopped"
    note = f"{message}; {previous.value} -> {target.value} ({reason.value})"
    transition = Transition(patch, event_reason, note, warning=reason is StopReason.FAILED)
    lease = session.lease()
    ran_out = lease_end(lease) if lease is not None and reason is StopReason.LEASE_EXPIRED else None
    return StopSession(cause, previous, transition, ran_out)


@dataclass(frozen=True)
class Bounded:
    """A per-session duration in force: asked for, else the default, within the bound."""

    value: timedelta | None
    """``None``: no limit."""
    asked: timedelta | None = None
    """What the session asked for, when the bound cut it to *value*."""


def bounded(
    asked_seconds: int | None, default: timedelta | None, bound: timedelta | None
) -> Bounded:
    """The duration in force for a session that asks for *asked_seconds* (``None``: asks
    for nothing): what it asks, else *default*, never longer than *bound* (``None`` for
    any of them: no limit). The configuration keeps the default within the bound."""
    wanted = timedelta(seconds=asked_seconds) if asked_seconds is not None else default
    if bound is None or (wanted is not None and wanted <= bound):
        return Bounded(wanted)
    return Bounded(bound, asked=wanted if asked_seconds is not None else None)


_LIFETIME_FIELD = "spec.lease.maxLifetimeSeconds"
_START_TIMEOUT_FIELD = "spec.startTimeoutSeconds"


def _initialise(session: Session, now: datetime, settings: LifecycleSettings) -> InitialiseStatus:
    spec = session.spec
    lease = spec.lease
    if (
        lease is not None
        and lease.ttl_seconds is not None
        and lease.heartbeat_interval_seconds is not None
    ):
        ttl_seconds = lease.ttl_seconds
        interval_seconds = lease.heartbeat_interval_seconds
    else:
        ttl_seconds = math.ceil(settings.lease_ttl.total_seconds())
        interval_seconds = math.ceil(settings.heartbeat_interval.total_seconds())
    lifetime = bounded(
        lease.max_lifetime_seconds if lease is not None else None,
        settings.max_lifetime,
        settings.max_lifetime_bound,
    )
    ends_at = None if lifetime.value is None else session.created_at + lifetime.value
    expires_at = initial_lease_expiry(
        session.created_at,
        now,
        timedelta(seconds=ttl_seconds),
        timedelta(seconds=interval_seconds),
        ends_at,
    )
    status: dict[str, Any] = {
        "sessionID": session.uid,
        "leaseTTLSeconds": ttl_seconds,
        "heartbeatInterval": interval_seconds,
        "leaseExpiresAt": format_timestamp(expires_at),
        "observedGeneration": session.generation,
    }
    expiry = f"lease expires at {status['leaseExpiresAt']}"
    lease_message = LEASE_GRANTED_MESSAGE
    if ends_at is not None:
        status["lifetimeEndsAt"] = format_timestamp(ends_at)
        limit = _limit_note(lifetime, "maximum lifetime", _LIFETIME_FIELD, "maxLifetimeBound")
        ceiling = f"never past {status['lifetimeEndsAt']} ({limit})"
        lease_message += f"; {ceiling}"
        expiry += f", {ceiling}"
    if settings.policies:
        expiry += f"; defaults and bounds from SessionPolicy {', '.join(settings.policies)}"
    lease_valid = Condition(LEASE_VALID, True, "LeaseGranted", lease_message)
    if spec.stop:
        status |= {
            "state": SessionState.STOPPED,
            "stopReason": StopReason.USER_STOPPED,
            "stoppedAt": format_timestamp(now),
        }
        ready = Condition(READY, False, "Stopped", "created with spec.stop: true")
        lease_valid = Condition(LEASE_VALID, False, "Stopped", "the session was never started")
        reason, note = "Stopped", "created with spec.stop: true; stopped (USER_STOPPED)"
        return _initialised(session, now, status, [ready, lease_valid], reason, note)
    if not spec.has_template:
        status["state"] = SessionState.READY
        ready = Condition(READY, True, "NoWorkload", "the session runs no workload")
        reason, note = "Ready", f"session ready, {expiry}"
        return _initialised(session, now, status, [ready, lease_valid], reason, note)
    status["state"] = SessionState.NEW
    start = bounded(
        spec.start_timeout_seconds, settings.start_timeout, settings.start_timeout_bound
    )
    assert start.value is not None, "the start timeout has a default"
    status["startDeadline"] = format_timestamp(session.created_at + start.value)
    limit = _limit_note(start, "start timeout", _START_TIMEOUT_FIELD, "startTimeoutBound")
    starting = f"the workload must be ready by {status['startDeadline']} ({limit})"
    ready = Condition(
        READY, False, "WorkloadPending", f"the workload is not created yet; {starting}"
    )
    note = f"lease initialised, {expiry}; {starting}"
    return _initialised(session, now, status, [ready, lease_valid], "Created", note)


def _initialised(
    session: Session,
    now: datetime,
    status: dict[str, Any],
    conditions: list[Condition],
    reason: str,
    note: str,
) -> InitialiseStatus:
    status["conditions"] = merged_conditions((), conditions, now, session.generation)
    return InitialiseStatus(status, reason, note)


def _limit_note(limit: Bounded, what: str, field: str, bound_setting: str) -> str:
    """How a session's *limit* came about, for its condition and Event: its length, and
    whether the operator's bound cut what *field* asked for."""
    assert limit.value is not None, "only a limit in force is told"
    length = format_duration(limit.value)
    if limit.asked is None:
        return f"{what} {length}"
    return (
        f"{what} {length}: {field} asked for {format_duration(limit.asked)}, more than the"
        f" operator's {bound_setting} allows"
    )


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


HELD = "Held"
"""The ``LeaseValid`` reason while a hold keeps the session."""


def _hold_step(session: Session, now: datetime, settings: LifecycleSettings) -> ChangeHold | None:
    """What a live *session*'s hold needs at *now*: taking up a ``spec.hold.until`` not
    taken up yet (``status.holdRequestedUntil`` records the one that was), ending a hold
    that ran out, clearing one that ``spec.hold`` no longer asks for; else nothing."""
    raw = session.raw_status
    requested = session.spec.hold.until if session.spec.hold is not None else None
    if requested is None:
        if "holdUntil" in raw or "holdRequestedUntil" in raw:
            return ChangeHold(HoldChange.CLEARED, _clear_hold(session, now))
        return None
    # Compared as the status stores it (milliseconds), or a finer request never matches.
    if format_timestamp(requested) != raw.get("holdRequestedUntil"):
        return _set_hold(session, now, requested, settings.max_hold)
    hold_until = session.status.hold_until
    if hold_until is not None and now >= hold_until:
        note = f"the hold ended at {raw['holdUntil']}"
        return ChangeHold(HoldChange.ENDED, _release_hold(session, now, "HoldEnded", note))
    return None


def _set_hold(
    session: Session, now: datetime, requested: datetime, max_hold: timedelta
) -> ChangeHold:
    """Take up a hold until *requested*, cut where the operator takes it up (hold.py)."""
    asked = format_timestamp(requested)
    record: JsonPatch = [{"op": "add", "path": "/status/holdRequestedUntil", "value": asked}]
    hold = hold_in_force(requested, now, max_hold, session.status.lifetime_ends_at)
    if hold.until <= now:
        why = (
            "the operator's maxHold is 0, so no session is held"
            if hold.cut_by == "maxHold"
            else "that time has passed"
        )
        note = f"spec.hold.until asks for {asked}, but {why}"
        release = _release_hold(session, now, "HoldEnded", note, record, warning=True)
        return ChangeHold(HoldChange.ENDED, release)
    until = format_timestamp(hold.until)
    message = f"held until {until}: the session lives without heartbeats until then"
    if hold.cut_by == "maxHold":
        message += (
            f" (spec.hold.until asked for {asked}, more than the operator's maxHold,"
            f" {format_duration(max_hold)} from {format_timestamp(now)}, allows)"
        )
    elif hold.cut_by == "lifetimeEndsAt":
        message += f" (spec.hold.until asked for {asked}, past the end of its maximum lifetime)"
    held = [*record, {"op": "add", "path": "/status/holdUntil", "value": until}]
    patch = _hold_patch(session, now, held, Condition(LEASE_VALID, True, HELD, message))
    return ChangeHold(HoldChange.SET, Transition(patch, "HoldSet", message))


def _clear_hold(session: Session, now: datetime) -> Transition:
    """``spec.hold`` is gone: forget the hold and the request it came from."""
    raw = session.raw_status
    forget: JsonPatch = (
        [{"op": "remove", "path": "/status/holdRequestedUntil"}]
        if "holdRequestedUntil" in raw
        else []
    )
    if "holdUntil" in raw:
        note = f"spec.hold was removed: the hold until {raw['holdUntil']} no longer keeps it"
    else:
        note = "spec.hold was removed; its hold had already ended"
    return _release_hold(session, now, "HoldCleared", note, forget)


def _release_hold(
    session: Session,
    now: datetime,
    reason: str,
    note: str,
    more: Sequence[dict[str, Any]] = (),
    *,
    warning: bool = False,
) -> Transition:
    """The session's lease is again only what heartbeats grant: ``status.holdUntil`` goes,
    ``LeaseValid`` says so, the Event *reason* tells *note* and where the lease ends."""
    raw = session.raw_status
    ended: JsonPatch = (
        [
            {"op": "test", "path": "/status/holdUntil", "value": raw["holdUntil"]},
            {"op": "remove", "path": "/status/holdUntil"},
        ]
        if "holdUntil" in raw
        else []
    )
    granted = Condition(LEASE_VALID, True, LEASE_GRANTED, f"{note}; {LEASE_GRANTED_MESSAGE}")
    patch = _hold_patch(session, now, [*ended, *more], granted)
    expires_at = session.status.lease_expires_at
    if expires_at is not None and lease_expired(now, expires_at):
        lease = f"the lease ran out at {raw['leaseExpiresAt']}: the session stops"
    else:
        lease = f"the lease runs until {raw['leaseExpiresAt']} unless a heartbeat extends it"
    return Transition(patch, reason, f"{note}; {lease}", warning=warning)


def _hold_patch(
    session: Session, now: datetime, changes: JsonPatch, lease_valid: Condition
) -> JsonPatch:
    """*changes* to a live session's hold, with its ``LeaseValid`` condition, tested
    against its state: a hold never changes a session that has stopped meanwhile."""
    raw = session.raw_status
    merged = merged_conditions(raw.get("conditions", ()), [lease_valid], now, session.generation)
    return [
        {"op": "test", "path": "/status/state", "value": raw["state"]},
        *changes,
        {"op": "add", "path": "/status/conditions", "value": merged},
        {"op": "add", "path": "/status/observedGeneration", "value": session.generation},
    ]


def _start(session: Session, now: datetime) -> Transition:
    message = "the workload Pod is not Ready yet"
    deadline = session.raw_status.get("startDeadline")
    if deadline:
        message += f"; it must be by {deadline} (StartTimeout)"
    ready = Condition(READY, False, "WorkloadStarting", message)
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


def _not_started(workload: Workload | None) -> str:
    """What kept the workload from being ready, as far as the operator saw it."""
    pod = workload.pod if workload is not None else None
    if pod is None:
        return "the workload Pod was not created"
    detail = f": {pod.message}" if pod.message else ""
    return f"the workload Pod {pod.name} is {pod.phase}, not Ready{detail}"


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


def _stop_message(session: Session, cause: StopCause, detail: str) -> str:
    raw = session.raw_status
    match cause:
        case StopCause.LEASE_EXPIRED:
            hold_until = session.status.hold_until
            expires_at = session.status.lease_expires_at
            if hold_until is not None and expires_at is not None and hold_until > expires_at:
                return (
                    f"the hold ended at {raw['holdUntil']}, and no heartbeat had renewed the"
                    f" lease (it ran until {raw['leaseExpiresAt']})"
                )
            return f"no heartbeat renewed the lease by {raw['leaseExpiresAt']}"
        case StopCause.MAX_LIFETIME_REACHED:
            limit = _limit_reached(session, "maximum lifetime", "lifetimeEndsAt")
            return f"the session reached its {limit}; no heartbeat extends a lease past it"
        case StopCause.START_TIMEOUT:
            limit = _limit_reached(session, "start timeout", "startDeadline")
            return f"the workload was not ready by the end of its {limit}: {detail}"
        case StopCause.USER_STOPPED:
            return "spec.stop was set"
        case StopCause.CLEANUP:
            return "the Session is being deleted"
        case StopCause.FAILED:
            return detail or "the workload failed"
        case _:
            assert_never(cause)


def _limit_reached(session: Session, what: str, end_field: str) -> str:
    """A limit of *session* that ended at ``status.<end_field>``: its length and its end."""
    end = session.raw_status[end_field]
    return f"{what} ({format_duration(parse_timestamp(end) - session.created_at)}) at {end}"


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
