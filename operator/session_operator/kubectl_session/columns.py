"""What a table says of one Session: its state, time left, last heartbeat, reason, limit.

Pure: the Session is the JSON object the apiserver returns, ``now`` is passed in. A field
that is missing or malformed shows as ``-``, never as an error: a table of many sessions
must not fail because of one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from session_operator.kubectl_session.durations import human_duration
from session_operator.lease import LIVE_STATES, lease_expired
from session_operator.timestamps import instant_or_none as timestamp

NONE = "-"
EXPIRED = "expired"
"""Time left of a live session whose lease has passed: the operator is about to stop it
(the heartbeat API already answers 410 for it)."""


def state(session: Mapping[str, Any]) -> str:
    """``status.state``, or ``-`` before the operator has written a status."""
    return str(_status(session).get("state") or NONE)


def time_left(session: Mapping[str, Any], now: datetime) -> str:
    """How long the lease still runs (``42s``), until the end of a hold if that is later;
    ``expired`` once it has passed while the session is still live; ``-`` when the
    session holds no lease (not live, or no lease yet)."""
    status = _status(session)
    expires_at = lease_end(session)
    if status.get("state") not in LIVE_STATES or expires_at is None:
        return NONE
    if lease_expired(now, expires_at):
        return EXPIRED
    return human_duration(expires_at - now)


def lease_end(session: Mapping[str, Any]) -> datetime | None:
    """When the session's lease runs out: ``status.leaseExpiresAt``, or the end of its hold
    (``status.holdUntil``) if that is later (docs/lease-rules.md, Hold); ``None`` before
    the operator wrote a lease."""
    status = _status(session)
    expires_at = timestamp(status.get("leaseExpiresAt"))
    hold_until = timestamp(status.get("holdUntil"))
    if expires_at is None or hold_until is None:
        return expires_at
    return max(expires_at, hold_until)


def last_heartbeat_age(session: Mapping[str, Any], now: datetime) -> str:
    """How long ago the last heartbeat was accepted (``3s``); ``-`` before the first."""
    return _age(timestamp(_status(session).get("lastHeartbeat")), now)


def reason(session: Mapping[str, Any]) -> str:
    """``status.stopReason``, or ``-`` while the session has not stopped."""
    return str(_status(session).get("stopReason") or NONE)


def age(session: Mapping[str, Any], now: datetime) -> str:
    """How long ago the Session was created."""
    return _age(timestamp((session.get("metadata") or {}).get("creationTimestamp")), now)


def limit(session: Mapping[str, Any], now: datetime) -> str | None:
    """The hold or the lifetime cap of a session, as the time until it ends: ``hold 5m``
    while a hold is in force, else ``cap 1h55m``; ``-`` for a session that is no longer
    live; ``None`` when the Session sets neither (the table then has no such column).

    The cap is ``status.lifetimeEndsAt``, the end the operator put in force (the spec's
    ``maxLifetimeSeconds``, else the configured default, cut to the configured bound).
    The hold is ``status.holdUntil``, the end in force: ``spec.hold.until`` as the
    operator took it up, cut to its maxHold and to the lifetime's end.
    """
    hold_until = timestamp(_status(session).get("holdUntil"))
    cap_end = timestamp(_status(session).get("lifetimeEndsAt"))
    if hold_until is None and cap_end is None:
        return None
    if _status(session).get("state") not in LIVE_STATES:
        return NONE
    if hold_until is not None and hold_until > now:
        return f"hold {human_duration(hold_until - now)}"
    if cap_end is not None:
        return f"cap {human_duration(cap_end - now)}"
    return NONE


def _age(then: datetime | None, now: datetime) -> str:
    return NONE if then is None else human_duration(now - then)


def _status(session: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(session.get("status"))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
