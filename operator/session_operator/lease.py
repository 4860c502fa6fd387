"""The lease rules of docs/lease-rules.md: states, transitions, expiry and heartbeat decisions.

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


LIVE_STATES: frozenset[SessionState] = frozenset(
    {SessionState.NEW, SessionState.STARTING, SessionState.READY}
)
"""States that hold a lease and can expire."""

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


def lease_expired(now: datetime, expires_at: datetime) -> bool:
    """Tell whether a lease that runs until ``expires_at`` has expired at ``now``.

    Expired means ``now >= expires_at`` (lease rule 1): at the very instant of expiry the
    lease is gone. This is the one predicate the heartbeat, expiry and read paths share.
    """
    return now >= expires_at


def initial_lease_expiry(created_at: datetime, ttl: timedelta) -> datetime:
    """Return the expiry of a new session's lease: its creation time plus the TTL."""
    return created_at + ttl


def extended_lease_expiry(current_expiry: datetime, now: datetime, ttl: timedelta) -> datetime:
    """Return the expiry after a heartbeat accepted at ``now``: ``max(current, now + ttl)``.

    A lease never shrinks, even if the TTL would put the new expiry before the current one.
    """
    return max(current_expiry, now + ttl)


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

    A live session whose lease has passed but which the operator has not stopped yet is
    reported as ``stopping`` (lease rule 1), so no client sees a live state while its
    heartbeat is refused. Its reason is ``LEASE_EXPIRED`` unless a reason was already
    recorded, because the first reason written stays. Every other session is reported as
    stored.
    """
    if lease.state in LIVE_STATES and lease_expired(now, lease.expires_at):
        return SessionState.STOPPING, lease.stop_reason or StopReason.LEASE_EXPIRED
    return lease.state, lease.stop_reason


def should_expire(now: datetime, lease: Lease) -> bool:
    """Tell whether the operator must stop the session at ``now`` for ``LEASE_EXPIRED``.

    Only live states hold a lease; a session already stopping or terminal is left alone.
    """
    return lease.state in LIVE_STATES and lease_expired(now, lease.expires_at)


@dataclass(frozen=True)
class HeartbeatGone:
    """Refuse the heartbeat (HTTP 410): the session is stopping, terminal or expired.

    ``state`` and ``stop_reason`` are what the API reports (see :func:`observed_state`).
    """

    state: SessionState
    stop_reason: StopReason | None


@dataclass(frozen=True)
class HeartbeatNoop:
    """Acknowledge the heartbeat with the current expiry and write nothing."""

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

    1. the session is not live, or its lease has expired → :class:`HeartbeatGone` (a
       heartbeat never revives a session);
    2. the last accepted heartbeat is less than one interval old → :class:`HeartbeatNoop`
       with the current expiry;
    3. otherwise → :class:`HeartbeatExtend` with ``last_heartbeat = now`` and the expiry
       moved to ``max(current, now + ttl)``.
    """
    if lease.state not in LIVE_STATES or lease_expired(now, lease.expires_at):
        state, reason = observed_state(now, lease)
        return HeartbeatGone(state=state, stop_reason=reason)
    if within_heartbeat_interval(now, lease.last_heartbeat, lease.heartbeat_interval):
        return HeartbeatNoop(expires_at=lease.expires_at)
    return HeartbeatExtend(
        last_heartbeat=now,
        expires_at=extended_lease_expiry(lease.expires_at, now, lease.ttl),
    )
