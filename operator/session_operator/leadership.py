"""Leader election over a ``coordination.k8s.io`` Lease (pure, client-go's rules).

One replica holds the Lease and writes lifecycle changes; the others stand by. A holder
renews every ``RETRY_PERIOD``; it stops acting as leader when it could not renew for
``RENEW_DEADLINE``; another replica may take the Lease once ``LEASE_DURATION`` passed
without renewal. Time is passed in.

As in client-go, a replica never compares the holder's ``renewTime`` with its own clock:
it notes, on its own clock, when it first saw the record as it now stands
(:class:`Observation`), and the Lease is free once it has not changed for a lease duration
since then. Clocks that disagree by any amount cannot make a replica take a live leader's
Lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from session_operator.outage_rule import OutageWindow

LEASE_DURATION = timedelta(seconds=15)
RENEW_DEADLINE = timedelta(seconds=10)
RETRY_PERIOD = timedelta(seconds=2)


@dataclass(frozen=True)
class LeaseRecord:
    """The holder fields of a Lease (``spec``)."""

    holder: str | None
    acquired_at: datetime | None
    renewed_at: datetime | None
    duration: timedelta
    transitions: int


@dataclass(frozen=True)
class Observation:
    """A Lease record as this replica read it, and when (on this replica's clock) it first
    read the record in this form."""

    record: LeaseRecord
    seen_at: datetime


def observe(now: datetime, previous: Observation | None, record: LeaseRecord) -> Observation:
    """The observation after reading *record* at *now*: the previous one while the record
    is unchanged, else a new one seen at *now*."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def may_acquire(now: datetime, observed: Observation | None, identity: str) -> bool:
    """Whether *identity* may take or keep the Lease at *now*, given what it *observed*.

    Free (no record, no holder), already ours, or the record has not changed for a whole
    lease duration since this replica first saw it.
    """
    if observed is None:
        return True
    record = observed.record
    if not record.holder or record.holder == identity:
        return True
    return now >= observed.seen_at + record.duration


def claimed(now: datetime, record: LeaseRecord | None, identity: str) -> LeaseRecord:
    """The record after *identity* acquires or renews the Lease at *now*."""
    ours = record is not None and record.holder == identity
    transitions = record.transitions if record is not None else 0
    return LeaseRecord(
        holder=identity,
        acquired_at=record.acquired_at if ours and record is not None else now,
        renewed_at=now,
        duration=LEASE_DURATION,
        transitions=transitions if ours or record is None or not record.holder else transitions + 1,
    )


def released(record: LeaseRecord) -> LeaseRecord:
    """The record after its holder gives the Lease up on shutdown (others take it at once)."""
    return LeaseRecord(
        holder=None,
        acquired_at=record.acquired_at,
        renewed_at=record.renewed_at,
        duration=timedelta(seconds=1),
        transitions=record.transitions,
    )


def still_leading(now: datetime, last_renewal: datetime) -> bool:
    """A leader that last renewed at *last_renewal* may keep acting until the deadline."""
    return now - last_renewal < RENEW_DEADLINE


def unheld_window(now: datetime, record: LeaseRecord | None, identity: str) -> OutageWindow | None:
    """The span nobody held the Lease, as *identity* takes it over at *now*: from the
    previous holder's last renewal to now, when that is longer than a lease duration
    (no replica ran the operator, lease rule 8); else ``None``, as on a renewal."""
    if record is None or record.renewed_at is None or record.holder == identity:
        return None
    if now - record.renewed_at <= LEASE_DURATION:
        return None
    return OutageWindow(record.renewed_at, now)
