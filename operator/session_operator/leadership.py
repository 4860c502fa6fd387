"""Leader election over a ``coordination.k8s.io`` Lease (pure; client-go's rules but one).

One replica holds the Lease and writes lifecycle changes; the others stand by. A holder
renews every ``RETRY_PERIOD``; it stops acting as leader when it could not renew for
``RENEW_DEADLINE``; another replica may take the Lease once ``LEASE_DURATION`` passed
without renewal. Time is passed in.

The one: when a held Lease runs out (:func:`lease_expires_at`), on the standby's clock.
client-go counts a lease duration from the moment the standby first saw the record as it
now stands (:class:`Observation`), which is up to a retry period after the renewal (the
standby reads once a period), so a dead leader is replaced up to ``LEASE_DURATION +
RETRY_PERIOD`` after its last renewal. Here the duration counts from the record's own
``renewTime``, bounded to what the observation allows: never after the sighting (a
``renewTime`` in the future, on a holder's clock ahead of ours, is read as the sighting,
as client-go does), and never more than one retry period before it (the most a standby
that reads every period can lag behind a renewal; a ``renewTime`` that looks older says
that the clocks disagree or that this replica was not reading, and is not trusted
further). With agreeing clocks a dead leader is replaced a lease duration after its last
renewal. Whatever the clocks say, a standby takes over at least
``LEASE_DURATION - RETRY_PERIOD`` (13 s) after the read that first returned a renewal,
and a holder that cannot renew stops acting ``RENEW_DEADLINE`` (10 s) after it began
that renewal: 3 s of the 5 s between the two still cover a reconcile in flight and a
slow read, however far the clocks are apart (client-go: 5 s).
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

    Free (no record, no holder), already ours, or the holder's Lease has run out
    (:func:`lease_expires_at`) without the record changing.
    """
    if observed is None:
        return True
    record = observed.record
    if not record.holder or record.holder == identity:
        return True
    return now >= lease_expires_at(observed)


def lease_expires_at(observed: Observation) -> datetime:
    """When the observed holder's Lease runs out, on this replica's clock: a lease
    duration after its ``renewTime``, counted from no later than the sighting and no
    earlier than one retry period before it (see the module docstring)."""
    seen_at = observed.seen_at
    renewed_at = observed.record.renewed_at or seen_at
    counted_from = min(seen_at, max(renewed_at, seen_at - RETRY_PERIOD))
    return counted_from + observed.record.duration


def next_attempt_in(now: datetime, observed: Observation | None, identity: str) -> timedelta:
    """How long to wait after a successful read before trying again: a retry period, or
    less when another holder's Lease runs out sooner, so that a standby tries at the
    moment it may take over (never before *now*)."""
    if observed is None or not observed.record.holder or observed.record.holder == identity:
        return RETRY_PERIOD
    left = lease_expires_at(observed) - now
    return min(RETRY_PERIOD, max(timedelta(0), left))


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
