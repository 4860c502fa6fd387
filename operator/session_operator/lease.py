"""The lease rules of docs/lease-rules.md: states, transitions, expiry and heartbeat decisions,
the maximum lifetime no heartbeat passes, the start deadline, and the end of a hold.

Everything here is pure. Time is always an argument (``now``), never read inside, so the
heartbeat path, the expiry path and the read path all reach the same verdict for the same
instant, and every boundary is a one-line unit test. Callers apply the returned decisions
with compare-and-set writes; nothing here talks to Kubernetes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeAlias

GRACE_INTERVALS = 2
"""Heartbeat intervals: the span of rule 8's aliveness test and grace after an outage, and
the most a slow initialisation takes from a session's first lease."""


class SessionState(StrEnum):
    """``status.state`` of a Session."""

    NEW = "new"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class StopReason(StrEnum):
    """``status.stopReason``: why a session stopped. The first reason written stays."""

    USER_STOPPED = "USER_STOPPED"
    LEASE_EXPIRED = "LEASE_EXPIRED"
    FAILED = "FAILED"
    CLEANUP = "CLEANUP"


class StopCause(StrEnum):
    """Why a session stopped, finer than its ``stopReason``: the reason of its ``Ready``
    and ``LeaseValid`` conditions. ``status.stopReason`` keeps its four values; each cause
    belongs to one of them (:attr:`stop_reason`)."""

    USER_STOPPED = "UserStopped"
    LEASE_EXPIRED = "LeaseExpired"
    MAX_LIFETIME_REACHED = "MaxLifetimeReached"
    """The lease ran until the session's maximum lifetime, which no heartbeat passes."""
    FAILED = "Failed"
    START_TIMEOUT = "StartTimeout"
    """The workload was not ready by the session's start deadline."""
    CLEANUP = "Cleanup"

    @property
    def stop_reason(self) -> StopReason:
        """The ``stopReason`` a stop for this cause records."""
        return _STOP_REASON_OF[self]

    @classmethod
    def plain(cls, reason: StopReason) -> StopCause:
        """The cause that says no more than *reason* (``LEASE_EXPIRED``: ``LeaseExpired``)."""
        return _PLAIN_CAUSE_OF[reason]


_STOP_REASON_OF: dict[StopCause, StopReason] = {
    StopCause.USER_STOPPED: StopReason.USER_STOPPED,
    StopCause.LEASE_EXPIRED: StopReason.LEASE_EXPIRED,
    StopCause.MAX_LIFETIME_REACHED: StopReason.LEASE_EXPIRED,
    StopCause.FAILED: StopReason.FAILED,
    StopCause.START_TIMEOUT: StopReason.FAILED,
    StopCause.CLEANUP: StopReason.CLEANUP,
}
_PLAIN_CAUSE_OF: dict[StopReason, StopCause] = {
    StopReason.USER_STOPPED: StopCause.USER_STOPPED,
    StopReason.LEASE_EXPIRED: StopCause.LEASE_EXPIRED,
    StopReason.FAILED: StopCause.FAILED,
    StopReason.CLEANUP: StopCause.CLEANUP,
}


LIVE_STATES: frozenset[SessionState] = frozenset(
    {SessionState.NEW, SessionState.STARTING, SessionState.READY}
)
"""States that hold a lease and can expire."""

STARTING_STATES: frozenset[SessionState] = frozenset({SessionState.NEW, SessionState.STARTING})
"""States a start deadline applies to: the workload is not ready yet."""

TERMINAL_STATES: frozenset[SessionState] = frozenset({SessionState.STOPPED, SessionState.FAILED})
"""States that never change again."""

_ALLOWED_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    # Without a template a new session is ready at once; created with stop: true it is
    # stopped in the same write. A stop with nothing to release goes straight to its
    # terminal state, so every live state may skip `stopping`.
    SessionState.NEW: frozenset(
        {
            SessionState.STARTING,
            SessionState.READY,
            SessionState.STOPPING,
            SessionState.STOPPED,
            SessionState.FAILED,
        }
    ),
    SessionState.STARTING: frozenset(
        {SessionState.READY, SessionState.STOPPING, SessionState.STOPPED, SessionState.FAILED}
    ),
    SessionState.READY: frozenset(
        {SessionState.STOPPING, SessionState.STOPPED, SessionState.FAILED}
    ),
    SessionState.STOPPING: frozenset({SessionState.STOPPED, SessionState.FAILED}),
    SessionState.STOPPED: frozenset(),
    SessionState.FAILED: frozenset(),
}


def can_transition(current: SessionState, target: SessionState) -> bool:
    """Tell whether a status write may move a session from ``current`` to ``target``.

    The state machine only moves forward: ``new → starting → ready``, any live state to
    ``stopping`` or straight to a terminal state, ``stopping`` to a terminal state. Terminal
    states are final and ``stopping`` never returns to a live state. Staying in the same
    state is not a transition and returns ``False``.
    """
    return target in _ALLOWED_TRANSITIONS[current]


def terminal_state_for(reason: StopReason) -> SessionState:
    """Return the terminal state a stop for ``reason`` ends in: ``failed`` for ``FAILED``,
    ``stopped`` for every other reason."""
    return SessionState.FAILED if reason is StopReason.FAILED else SessionState.STOPPED


@dataclass(frozen=True)
class Lease:
    """The lease-relevant part of a Session's status, as the pure rules see it."""

    state: SessionState
    expires_at: datetime
    last_heartbeat: datetime | None
    ttl: timedelta
    heartbeat_interval: timedelta
    stop_reason: StopReason | None = None
    lifetime_ends_at: datetime | None = None
    """The end of the session's maximum lifetime: no heartbeat moves the expiry past it
    (``None``: no maximum lifetime)."""
    start_deadline: datetime | None = None
    """When a session still ``new`` or ``starting`` fails for ``StartTimeout`` (``None``:
    no workload, or no start deadline)."""
    hold_until: datetime | None = None
    """The end of the hold in force (``status.holdUntil``): until then the session lives
    without heartbeats (``None``: not held)."""


def lease_end(lease: Lease) -> datetime:
    """When *lease* runs out: its expiry, or the end of its hold if that is later.

    ``expires_at`` is what heartbeats granted and stays so: a hold never moves it, so a
    hold cleared or ended leaves the session with the lease its heartbeats earned.
    """
    if lease.hold_until is None:
        return lease.expires_at
    return max(lease.expires_at, lease.hold_until)


def lease_expired(now: datetime, expires_at: datetime) -> bool:
    """Tell whether a lease that runs until ``expires_at`` has expired at ``now``.

    Expired means ``now >= expires_at`` (lease rule 1): at the very instant of expiry the
    lease is gone. This is the one predicate the heartbeat, expiry and read paths share.
    """
    return now >= expires_at


def _capped(expiry: datetime, lifetime_ends_at: datetime | None) -> datetime:
    return expiry if lifetime_ends_at is None else min(expiry, lifetime_ends_at)


def initial_lease_expiry(
    created_at: datetime,
    initialised_at: datetime,
    ttl: timedelta,
    interval: timedelta,
    lifetime_ends_at: datetime | None = None,
) -> datetime:
    """Return the expiry of a new session's lease: its creation time plus the TTL, or the
    end of its maximum lifetime if that comes first.

    Until the operator initialises the lease, heartbeats are refused (409), so a slow
    initialisation (an apiserver past its capacity, a leader that was down) takes at most
    ``GRACE_INTERVALS`` intervals from the first lease: initialised later than that after
    the creation, it runs until ``initialised_at + ttl - GRACE_INTERVALS x interval``. The
    client then has most of a TTL to have its first beat accepted, however long the
    initialising write and the replicas' watches take to land (docs/lease-rules.md).
    """
    on_time = created_at + ttl
    late = initialised_at + ttl - interval * GRACE_INTERVALS
    return _capped(max(on_time, late), lifetime_ends_at)


def beats_accepted_from(lease: Lease, created_at: datetime) -> datetime:
    """When the session of *lease* could first have had a heartbeat accepted: its creation,
    or, where its first lease was initialised late (:func:`initial_lease_expiry`), that
    initialisation, read back from the lease (``expires_at - ttl + GRACE_INTERVALS x
    interval``). A lease that runs from later than the creation was initialised late, or
    extended by rule 8's grace, which puts the instant later still. Rule 8 takes a client
    that never beat as alive from then."""
    runs_from = lease.expires_at - lease.ttl
    if runs_from <= created_at:
        return created_at
    return runs_from + lease.heartbeat_interval * GRACE_INTERVALS


def extended_lease_expiry(
    current_expiry: datetime,
    now: datetime,
    ttl: timedelta,
    lifetime_ends_at: datetime | None = None,
) -> datetime:
    """Return the expiry after a heartbeat accepted at ``now``: ``max(current, now + ttl)``,
    where ``now + ttl`` never passes the end of the session's maximum lifetime.

    A lease never shrinks, even if the TTL would put the new expiry before the current one.
    """
    return max(current_expiry, _capped(now + ttl, lifetime_ends_at))


def expiry_cause(lease: Lease) -> StopCause:
    """Why a lease that has expired ran out: ``MaxLifetimeReached`` when it ran until the
    end of the session's maximum lifetime (no heartbeat could have extended it), else
    ``LeaseExpired``. Both stop the session with ``LEASE_EXPIRED``. A hold that ran until
    that end counts as the lease."""
    if lease.lifetime_ends_at is not None and lease_end(lease) >= lease.lifetime_ends_at:
        return StopCause.MAX_LIFETIME_REACHED
    return StopCause.LEASE_EXPIRED


def start_timed_out(now: datetime, lease: Lease) -> bool:
    """Tell whether a session's workload missed its start deadline at ``now``.

    True for a session still ``new`` or ``starting`` when ``now >= start_deadline``: at
    the very instant of the deadline the start has timed out, as a lease has expired at
    its expiry (rule 1). A session without a start deadline never times out.
    """
    return (
        lease.state in STARTING_STATES
        and lease.start_deadline is not None
        and now >= lease.start_deadline
    )


def next_deadline(lease: Lease) -> datetime:
    """The instant a live session must be looked at again: its lease's end, the end of its
    hold, or its start deadline while it is ``new`` or ``starting``, whichever comes
    first."""
    deadline = lease_end(lease)
    if lease.hold_until is not None:
        deadline = min(deadline, lease.hold_until)
    if lease.state in STARTING_STATES and lease.start_deadline is not None:
        return min(deadline, lease.start_deadline)
    return deadline


def within_heartbeat_interval(
    now: datetime, last_heartbeat: datetime | None, interval: timedelta
) -> bool:
    """Tell whether a heartbeat at ``now`` falls inside the idempotency window.

    True when a heartbeat was accepted less than ``interval`` ago (``now - last_heartbeat <
    interval``); a heartbeat exactly one interval later is outside the window. Never true
    before the first accepted heartbeat.
    """
    return last_heartbeat is not None and now - last_heartbeat < interval


def observed_state(now: datetime, lease: Lease) -> tuple[SessionState, StopReason | None]:
    """Return the state and stop reason the API reports for a session at ``now``.

    A live session whose lease has passed (its hold too, see :func:`lease_end`) but which
    the operator has not stopped yet is reported as ``stopping`` (lease rule 1), so no
    client sees a live state while its heartbeat is refused. Its reason is
    ``LEASE_EXPIRED`` unless a reason was already recorded, because the first reason
    written stays. Every other session is reported as stored.
    """
    if lease.state in LIVE_STATES and lease_expired(now, lease_end(lease)):
        return SessionState.STOPPING, lease.stop_reason or StopReason.LEASE_EXPIRED
    return lease.state, lease.stop_reason


def should_expire(now: datetime, lease: Lease) -> bool:
    """Tell whether the operator must stop the session at ``now`` for ``LEASE_EXPIRED``.

    Only live states hold a lease; a session already stopping or terminal is left alone.
    A held session expires at the end of its hold if that is later (:func:`lease_end`).
    """
    return lease.state in LIVE_STATES and lease_expired(now, lease_end(lease))


@dataclass(frozen=True)
class HeartbeatGone:
    """Refuse the heartbeat (HTTP 410): the session is stopping, terminal or expired.

    ``state`` and ``stop_reason`` are what the API reports (see :func:`observed_state`).
    """

    state: SessionState
    stop_reason: StopReason | None


@dataclass(frozen=True)
class HeartbeatNoop:
    """Acknowledge the heartbeat with the lease's current end and write nothing."""

    expires_at: datetime


@dataclass(frozen=True)
class HeartbeatExtend:
    """Accept the heartbeat: write these values with a compare-and-set patch."""

    last_heartbeat: datetime
    expires_at: datetime


HeartbeatDecision: TypeAlias = HeartbeatGone | HeartbeatNoop | HeartbeatExtend
"""What to do with one heartbeat; see :func:`decide_heartbeat`."""


def decide_heartbeat(now: datetime, lease: Lease) -> HeartbeatDecision:
    """Decide what a heartbeat arriving at ``now`` does to ``lease``.

    Checked in this order:

    1. the session is not live, or its lease has expired (its hold too) →
       :class:`HeartbeatGone` (a heartbeat never revives a session);
    2. the last accepted heartbeat is less than one interval old → :class:`HeartbeatNoop`
       with the lease's current end (:func:`lease_end`);
    3. otherwise → :class:`HeartbeatExtend` with ``last_heartbeat = now`` and the expiry
       moved to ``max(current, now + ttl)``, never past the end of the session's maximum
       lifetime. A lease that runs until that end has expired at it, so a heartbeat at or
       after the end is :class:`HeartbeatGone`. A hold does not change what a heartbeat
       writes: the expiry stays what heartbeats granted.
    """
    if lease.state not in LIVE_STATES or lease_expired(now, lease_end(lease)):
        state, reason = observed_state(now, lease)
        return HeartbeatGone(state=state, stop_reason=reason)
    if within_heartbeat_interval(now, lease.last_heartbeat, lease.heartbeat_interval):
        return HeartbeatNoop(expires_at=lease_end(lease))
    return HeartbeatExtend(
        last_heartbeat=now,
        expires_at=extended_lease_expiry(lease.expires_at, now, lease.ttl, lease.lifetime_ends_at),
    )
