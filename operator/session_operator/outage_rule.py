"""Lease rule 8 (docs/outages.md): the system's own outage is not charged to clients (pure).

An outage is a window in which heartbeats could not be accepted: the apiserver could not
be reached, or no replica held the leader Lease. An overloaded apiserver fails some calls
and answers others, so its outage comes as many short windows a few seconds apart (a
*brownout*): windows closer than :data:`BROWNOUT_GAP` are recorded as one, and, for a
lease, windows closer than ``GRACE_INTERVALS`` of its intervals count as one. A lease that
lapsed inside such a window, or within ``GRACE_INTERVALS`` heartbeat intervals after it
ended, is not expired if its client was alive when the window opened (its last accepted
heartbeat, or the session's creation or late first lease, at most ``GRACE_INTERVALS``
intervals before the start). Such a session is given a grace: its lease runs until the
window's end plus ``GRACE_INTERVALS`` intervals, time for the client to beat again, but
never past the session's maximum lifetime. A client that had gone before the outage gets
nothing.

Time is passed in; the outage record itself comes from the I/O layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from session_operator.lease import (
    GRACE_INTERVALS,
    LIVE_STATES,
    Lease,
    beats_accepted_from,
    lease_end,
    lease_expired,
)
from session_operator.timestamps import format_timestamp

FUTURE_TOLERANCE = timedelta(minutes=1)
"""How far in the future a recorded window may end and still count: replicas' clocks
may disagree by that much. A window that ends later was observed by nobody (a forged
record): it grants nothing, so no grace runs further than this beyond now."""


BROWNOUT_GAP = timedelta(seconds=10)
"""Recorded windows closer than this are one outage (two of the default 5 s intervals: a
client whose every beat fails meets a failure at least that often)."""


@dataclass(frozen=True, order=True)
class OutageWindow:
    """A span ``[start, end]`` in which heartbeats could not be accepted; an *ongoing*
    one has not ended yet and ends, so far, at the instant it was observed."""

    start: datetime
    end: datetime
    ongoing: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        return f"{format_timestamp(self.start)}..{format_timestamp(self.end)}"


@dataclass(frozen=True)
class LeaseGrace:
    """The lease lapsed because of *outage*: it now runs until *expires_at*."""

    outage: OutageWindow
    expires_at: datetime


def outage_grace(
    now: datetime, lease: Lease, created_at: datetime, outages: Iterable[OutageWindow]
) -> LeaseGrace | None:
    """The grace a live session whose lease has expired at *now* is owed, or ``None``.

    Windows less than ``2 x interval`` apart are first joined into one: a client beating
    every interval into a brownout could not have had a beat accepted in between, or its
    lease would not have lapsed. For a window ``[start, end]``, a grace until
    ``end + 2 x interval`` is owed when all of these hold:

    * the lease lapsed in ``[start, end + 2 x interval)``, during the outage or so soon
      after it that the client had no fair chance to beat again;
    * the client was alive when the outage began: ``start - last <= 2 x interval``, where
      *last* is the last accepted heartbeat, else *created_at* (or, for a first lease
      initialised late, its initialisation: heartbeats were refused until then);
    * the grace still lies ahead (``now < end + 2 x interval``): a grace that has run out
      is an ordinary lapse, and a lease never moves back;
    * the window ends no later than :data:`FUTURE_TOLERANCE` from *now*.

    A grace never runs past the end of the session's maximum lifetime: a lease that ran
    until that end is owed nothing, as no heartbeat could have extended it. A session that
    is not live, or whose lease has not expired, is owed nothing either.
    """
    ran_out = lease_end(lease)  # the end of a hold, if later than the expiry
    if lease.state not in LIVE_STATES or not lease_expired(now, ran_out):
        return None
    grace = lease.heartbeat_interval * GRACE_INTERVALS
    last_seen = lease.last_heartbeat or beats_accepted_from(lease, created_at)
    observed = [window for window in outages if window.end <= now + FUTURE_TOLERANCE]
    # Joined windows lie more than a grace apart, so a lapse falls in at most one.
    for window in joined(observed, grace):
        grace_end = window.end + grace
        if lease.lifetime_ends_at is not None:
            grace_end = min(grace_end, lease.lifetime_ends_at)
        lapsed_in_window = window.start <= ran_out < grace_end
        alive_at_start = window.start - last_seen <= grace
        if lapsed_in_window and alive_at_start and now < grace_end:
            return LeaseGrace(window, grace_end)
    return None


KEPT_OUTAGES = 32
"""How many windows the shared record keeps: the latest, enough for any lease still live."""


def joined(windows: Iterable[OutageWindow], gap: timedelta) -> list[OutageWindow]:
    """*windows* sorted, those that overlap or lie at most *gap* apart joined into one
    (ongoing if any part of it is)."""
    spans: list[OutageWindow] = []
    for window in sorted(windows):
        if spans and window.start - spans[-1].end <= gap:
            last = spans[-1]
            spans[-1] = OutageWindow(
                last.start, max(last.end, window.end), ongoing=last.ongoing or window.ongoing
            )
        else:
            spans.append(window)
    return spans


def recorded_outages(
    known: Iterable[OutageWindow], new: OutageWindow, keep: int = KEPT_OUTAGES
) -> list[OutageWindow]:
    """The record after *new* is added to *known*: sorted, windows that overlap or lie
    less than :data:`BROWNOUT_GAP` apart joined into one, only the latest *keep* kept
    (replicas that saw the same outage report overlapping windows, a brownout reports
    many; the record stays bounded).

    A window is recorded as going on (*ongoing*) while the replica that sees it writes it
    as far as it has gone; a joined one is going on only if the window that ends it is
    (a replica that saw the outage end wrote an end at least as late)."""
    spans: list[OutageWindow] = []
    for window in sorted([*known, new]):
        if spans and window.start - spans[-1].end <= BROWNOUT_GAP:
            last = spans[-1]
            if window.end > last.end:
                spans[-1] = OutageWindow(last.start, window.end, ongoing=window.ongoing)
            elif window.end == last.end and not window.ongoing:
                spans[-1] = OutageWindow(last.start, last.end)
        else:
            spans.append(window)
    return spans[-keep:]
