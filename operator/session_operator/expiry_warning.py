"""The expiry warning of docs/lease-rules.md (pure): when a live lease enters the window
before its end, and what its ``LeaseValid`` condition says then and after.

A lease enters the window ``expiryWarning`` before its end. The end is an input of every
function here, never read from a status: the callers pass the end that lease rule 1
expires the lease at. ``leaseExpiresAt`` never passes the end of the maximum lifetime, so
the warning comes before that end as before a lapse. A window of zero turns the warning
off. Time is an argument, never read inside.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from session_operator.conditions import (
    LEASE_GRANTED,
    LEASE_GRANTED_MESSAGE,
    LEASE_VALID,
    Condition,
)
from session_operator.timestamps import format_timestamp

EXPIRING_SOON = "ExpiringSoon"
"""The reason of ``LeaseValid`` while the lease is in its warning window."""

EXPIRING_SOON_EVENT = "LeaseExpiringSoon"
"""The reason of the one Event that tells a lease entered its warning window."""


def warning_instant(end: datetime, window: timedelta) -> datetime | None:
    """When a lease that runs until *end* enters its warning *window*: *window* before
    *end*. ``None`` when the window is zero: no warning."""
    if window <= timedelta(0):
        return None
    return end - window


def in_warning_window(now: datetime, end: datetime, window: timedelta) -> bool:
    """Tell whether a lease that runs until *end* is in its warning *window* at *now*: from
    the warning instant on (that instant included), until the lease has expired at *end*
    (lease rule 1)."""
    instant = warning_instant(end, window)
    return instant is not None and instant <= now < end


def seconds_left(now: datetime, end: datetime) -> float:
    """Seconds from *now* until *end*, to the millisecond; zero once *end* has come."""
    return max(0.0, round((end - now).total_seconds(), 3))


@dataclass(frozen=True)
class Countdown:
    """What the heartbeat API tells a client of the time its lease has left."""

    seconds_left: float
    expiring_soon: bool
    """True while the lease is in its warning window."""


ENDED = Countdown(seconds_left=0.0, expiring_soon=False)
"""The countdown of a session that holds no lease (stopping or ended)."""


def countdown(now: datetime, end: datetime, window: timedelta) -> Countdown:
    """The countdown at *now* of a live lease that runs until *end*."""
    return Countdown(seconds_left(now, end), in_warning_window(now, end, window))


def expiring_soon(now: datetime, end: datetime, lifetime_ends_at: datetime | None) -> Condition:
    """``LeaseValid`` of a live lease that runs until *end*, in its warning window at
    *now*: still ``True``, reason ``ExpiringSoon``, the message naming the end and the
    seconds left (counted up: the window itself at its very start). An end at the end of
    the maximum lifetime (*lifetime_ends_at*) is told so: no heartbeat extends it."""
    at = format_timestamp(end)
    left = math.ceil((end - now).total_seconds())
    if lifetime_ends_at is not None and end >= lifetime_ends_at:
        message = (
            f"the session reaches its maximum lifetime at {at}, in {left}s; no heartbeat"
            " extends a lease past it"
        )
    else:
        message = f"the lease expires at {at}, in {left}s, unless a heartbeat renews it"
    return Condition(LEASE_VALID, True, EXPIRING_SOON, message)


def lease_granted(lifetime_ends_at: datetime | None) -> Condition:
    """``LeaseValid`` of a lease a heartbeat moved out of its warning window: the reason
    it had before the warning, ``LeaseGranted``."""
    message = LEASE_GRANTED_MESSAGE
    if lifetime_ends_at is not None:
        message += f"; never past {format_timestamp(lifetime_ends_at)}"
    return Condition(LEASE_VALID, True, LEASE_GRANTED, message)


def lease_valid_after_heartbeat(
    now: datetime, end: datetime, lifetime_ends_at: datetime | None, window: timedelta
) -> Condition:
    """``LeaseValid`` of a warned lease after a heartbeat at *now* moved its end to *end*:
    still ``ExpiringSoon`` (naming the new end) when that end is in the window too (near
    the end of the maximum lifetime), else back to ``LeaseGranted``."""
    if in_warning_window(now, end, window):
        return expiring_soon(now, end, lifetime_ends_at)
    return lease_granted(lifetime_ends_at)


def warned(conditions: Sequence[Mapping[str, Any]]) -> bool:
    """Tell whether *conditions* (a status's) say the lease is expiring soon: the warning
    was given for the lease as it stands."""
    return any(
        condition.get("type") == LEASE_VALID and condition.get("reason") == EXPIRING_SOON
        for condition in conditions
    )
