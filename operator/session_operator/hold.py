"""The hold of docs/lease-rules.md (pure): a user keeps a live session until a given time
without heartbeats (``spec.hold.until``), within the maximum hold and the session's
maximum lifetime.

Two checks of one bound. Admission refuses a hold further ahead than now plus the maximum
hold (:func:`hold_beyond_bound`); the operator, which may see a hold that admission did
not (no webhook installed, a webhook that failed open), cuts it where it takes it up
(:func:`hold_in_force`). Time is an argument, never read inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from session_operator.config import format_duration
from session_operator.timestamps import format_timestamp

MAX_HOLD_SETTING = "the operator's maxHold"
"""How a refusal names the operator-wide bound (a SessionPolicy names its own)."""


def hold_beyond_bound(
    until: datetime, now: datetime, max_hold: timedelta, bound: str = MAX_HOLD_SETTING
) -> str | None:
    """The one sentence refusing a hold until *until* asked for at *now*, or ``None`` when
    *until* is at most *max_hold* ahead. *bound* names where *max_hold* comes from, for
    the sentence; a *max_hold* of zero refuses every hold."""
    if max_hold <= timedelta(0):
        return f"spec.hold is refused: {bound} is 0, so no Session may be held"
    latest = now + max_hold
    if until <= latest:
        return None
    return (
        f"spec.hold.until {format_timestamp(until)} is more than {format_duration(max_hold)}"
        f" ahead, the longest hold {bound} allows: hold until {format_timestamp(latest)}"
        " at the latest"
    )


@dataclass(frozen=True)
class HoldInForce:
    """A hold as the operator takes it up: when it ends, and what cut it, if anything."""

    until: datetime
    cut_by: str | None = None
    """``maxHold`` or ``lifetimeEndsAt`` when the requested end was later than that
    allows; ``None`` when the hold ends as requested."""


def hold_in_force(
    requested: datetime,
    now: datetime,
    max_hold: timedelta,
    lifetime_ends_at: datetime | None,
) -> HoldInForce:
    """The end of a hold until *requested* that the operator takes up at *now*: never past
    *now* plus *max_hold*, nor past the end of the session's maximum lifetime.

    The cut is made once, at *now*: the operator records the result and does not cut the
    same request again, so a hold's end does not move with each look at it.
    """
    until, cut_by = requested, None
    if until > now + max_hold:
        until, cut_by = now + max_hold, "maxHold"
    if lifetime_ends_at is not None and until > lifetime_ends_at:
        until, cut_by = lifetime_ends_at, "lifetimeEndsAt"
    return HoldInForce(until, cut_by)
