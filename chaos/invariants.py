"""The invariants every fault and every soak must hold, judged from what was observed (pure).

The harness records, for each Session, what its client was told to do (:class:`Intent`)
and every state of the object its watch saw (:class:`Observation`); the checks here turn
that into counts. Times are wall-clock seconds since the epoch, as the harness saw them.

* **wrongful**: a session whose client beat on time throughout was stopped;
* **missed**: a session whose client stopped beating was not stopped as ``LEASE_EXPIRED``
  by its deadline: the last accepted heartbeat (or creation) plus the TTL, moved by the
  outage grace of lease rule 8 (outage end + 2 intervals) where the rule owes one, moved to
  the end of an outage that it falls into (nothing can be stopped while the apiserver is
  down or no replica leads), plus one second;
* **orphans**: a Pod still there ``stopTimeout`` after its session stopped, or a deleted
  session still held by its finalizer;
* **revived**: a session seen live again after it was seen stopping or terminal;
* **reasons**: a ``stopReason`` other than the one its cause calls for;
* **events**: a ``LEASE_EXPIRED`` session without exactly one ``LeaseExpired`` Event (none
  is allowed when the replica was killed right after the stop: the Event went with it), or
  a replica whose expiry counter differs from the Events it posted;
* **rules**: a session expired before its lease ran out, a lease that shrank, two accepted
  heartbeats closer than the interval (rule 3), or an outage the operator recorded that no
  injected fault explains.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

LIVE = frozenset({"new", "starting", "ready"})
GRACE_INTERVALS = 2
ON_TIME = 1.0
"""Seconds a stop may come after its deadline (lease rule 5: within one second)."""
STOP_ACTED_ON_WITHIN = 30.0
"""Seconds within which ``spec.stop`` or a delete must at least start the stop."""
KILLED_WRITER_WINDOW = 1.0
"""A stop seen this long before a SIGKILL may be the killed replica's, its Event lost."""
WATCH_DELAY = 0.5
"""How much later than the write itself the harness's watch may see it."""
EXPLAINED_WITHIN = 10.0
"""A recorded outage must overlap an injected fault widened by this many seconds."""


class Intent(enum.Enum):
    """What the harness had a session's client (or its admin) do."""

    BEAT = "beat"
    """The client beats on time until the end: the session must stay live."""
    DROP = "drop"
    """The client stops beating at ``acted_at``: the lease must expire."""
    USER_STOP = "user-stop"
    """``spec.stop: true`` at ``acted_at``: stopped as ``USER_STOPPED``."""
    DELETE = "delete"
    """``kubectl delete`` at ``acted_at``: released as ``CLEANUP``, then gone."""


EXPECTED_REASON = {
    Intent.DROP: "LEASE_EXPIRED",
    Intent.USER_STOP: "USER_STOPPED",
    Intent.DELETE: "CLEANUP",
}


@dataclass(frozen=True)
class Window:
    """A span of time ``[start, end]``: an injected fault, or an outage the operator recorded."""

    start: float
    end: float


@dataclass(frozen=True)
class Observation:
    """One state of a Session object as the harness's watch saw it at ``seen``."""

    seen: float
    state: str | None
    lease_expires_at: float | None
    last_heartbeat: float | None
    stop_reason: str | None
    deleted: bool = False


@dataclass
class SessionRecord:
    """One Session under test: its lease, its intent, what was seen of it."""

    name: str
    created_at: float
    ttl: float
    interval: float
    intent: Intent
    acted_at: float | None = None
    observations: list[Observation] = field(default_factory=list)
    lease_expired_events: int = 0

    @property
    def stop(self) -> Observation | None:
        """The first observation that is not live: stopping, terminal, or deleted."""
        return next((o for o in self.observations if _stopped(o)), None)

    @property
    def stop_reason(self) -> str | None:
        """The reason recorded on the session, if any was seen."""
        return next((o.stop_reason for o in self.observations if o.stop_reason), None)

    @property
    def lease_at_stop(self) -> float | None:
        """The lease the session held when it stopped: the last one seen while live."""
        stop = self.stop
        leases = [
            o.lease_expires_at
            for o in self.observations
            if o.lease_expires_at is not None
            and not _stopped(o)
            and (stop is None or o.seen <= stop.seen)
        ]
        return leases[-1] if leases else None

    @property
    def last_heartbeat(self) -> float | None:
        """The last heartbeat the operator accepted, as the session recorded it."""
        beats = [o.last_heartbeat for o in self.observations if o.last_heartbeat is not None]
        return max(beats) if beats else None

    @property
    def gone(self) -> bool:
        """Whether the object was seen deleted last."""
        return bool(self.observations) and self.observations[-1].deleted


@dataclass(frozen=True)
class Replica:
    """One operator process: its Event ``reportingInstance`` and, if it is still running,
    how far its ``xg2g_sessions_lease_expired_total`` rose while under test (``None``: it
    was killed, its counter went with it)."""

    instance: str
    expired_counter: float | None


@dataclass
class Verdict:
    """The counts of one fault or soak; every one of them must be 0."""

    sessions: int = 0
    wrongful: int = 0
    missed: int = 0
    orphans: int = 0
    revived: int = 0
    reasons: int = 0
    events: int = 0
    rules: int = 0
    worst_lag: float | None = None
    findings: list[str] = field(default_factory=list)
    lost_events: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every invariant held."""
        counts = (self.wrongful, self.missed, self.orphans, self.revived)
        return not any((*counts, self.reasons, self.events, self.rules))

    def note(self, finding: str) -> None:
        """Remember why a count rose (printed under the table)."""
        self.findings.append(finding)

    def note_lost_event(self, session: str) -> None:
        """A stop's Event went with the replica killed right after the stop: allowed."""
        self.lost_events.append(session)


def deadline(record: SessionRecord, outages: Sequence[Window]) -> float:
    """When a session whose client stopped beating must have been stopped, at the latest."""
    last = record.last_heartbeat or record.created_at
    due = max(record.created_at, last) + record.ttl
    grace = GRACE_INTERVALS * record.interval
    for window in outages:
        lapsed_in = window.start <= due < window.end + grace
        alive_at_start = window.start - last <= grace
        if lapsed_in and alive_at_start:
            due = max(due, window.end + grace)
    for window in sorted(outages, key=lambda w: w.start):
        if window.start - ON_TIME <= due <= window.end:
            due = window.end  # a stop owed then can only happen once the outage is over
    return due + ON_TIME


def judge(
    records: Iterable[SessionRecord],
    *,
    now: float,
    faults: Sequence[Window],
    recorded_outages: Sequence[Window],
    stop_timeout: float,
    pods_left: Mapping[str, int],
    replicas: Sequence[Replica],
    events_by_instance: Mapping[str, int],
    kills: Sequence[float] = (),
) -> Verdict:
    """Check every invariant over *records* at *now*.

    *faults* are the windows the harness injected (fault start until recovery), and
    *recorded_outages* those the operator wrote down; both may excuse a late expiry.
    *pods_left* counts the Pods still labelled for each session name. *kills* are the
    instants a replica was SIGKILLed: a stop written just before one may have lost its
    Event with the process (Events are posted after the status write, as the counter is
    raised after the Event).
    """
    verdict = Verdict()
    outages = [*faults, *recorded_outages]
    for window in recorded_outages:
        if not any(_overlaps(window, fault, EXPLAINED_WITHIN) for fault in faults):
            verdict.rules += 1
            verdict.note(f"outage {window} recorded with no fault injected near it")
    for record in records:
        verdict.sessions += 1
        _check_lifecycle(record, verdict)
        _check_outcome(record, verdict, now, outages, kills)
        _check_release(record, verdict, now, stop_timeout, pods_left.get(record.name, 0))
    for replica in replicas:
        posted = events_by_instance.get(replica.instance, 0)
        if replica.expired_counter is not None and replica.expired_counter != posted:
            verdict.events += 1
            verdict.note(
                f"{replica.instance}: expiry counter {replica.expired_counter:g},"
                f" LeaseExpired Events {posted}"
            )
    return verdict


def _check_lifecycle(record: SessionRecord, verdict: Verdict) -> None:
    stopped_seen = False
    expires: float | None = None
    beats: list[float] = []
    for observation in record.observations:
        if observation.deleted:
            continue
        if _stopped(observation):
            stopped_seen = True
        elif stopped_seen:
            verdict.revived += 1
            verdict.note(f"{record.name}: {observation.state} again after a stop")
            return
        if observation.lease_expires_at is not None and observation.state in LIVE:
            if expires is not None and observation.lease_expires_at < expires:
                verdict.rules += 1
                verdict.note(f"{record.name}: lease shrank")
            expires = max(expires or observation.lease_expires_at, observation.lease_expires_at)
        beat = observation.last_heartbeat
        if beat is not None and (not beats or beat != beats[-1]):
            beats.append(beat)
    for earlier, later in itertools.pairwise(beats):
        if later - earlier < record.interval - 0.001:
            verdict.rules += 1
            verdict.note(f"{record.name}: heartbeats written {later - earlier:.3f}s apart")
            break


def _check_outcome(
    record: SessionRecord,
    verdict: Verdict,
    now: float,
    outages: Sequence[Window],
    kills: Sequence[float],
) -> None:
    stop = record.stop
    reason = record.stop_reason
    posted = record.lease_expired_events
    if reason == "LEASE_EXPIRED" and posted != 1:
        killed_meanwhile = stop is not None and any(_just_before(stop.seen, k) for k in kills)
        if posted == 0 and killed_meanwhile:
            verdict.note_lost_event(record.name)
        else:
            verdict.events += 1
            verdict.note(f"{record.name}: {posted} LeaseExpired Events")
    if record.intent is Intent.BEAT:
        if stop is not None:
            verdict.wrongful += 1
            verdict.note(f"{record.name}: client beat on time, stopped ({record.stop_reason})")
        return
    expected = EXPECTED_REASON[record.intent]
    if reason is not None and reason != expected:
        verdict.reasons += 1
        verdict.note(f"{record.name}: {record.intent.value} stopped as {reason}")
    if record.intent is not Intent.DROP:
        acted = record.acted_at
        if stop is None and acted is not None and now - acted > STOP_ACTED_ON_WITHIN:
            verdict.missed += 1
            verdict.note(f"{record.name}: {record.intent.value} not done {now - acted:.0f}s on")
        return
    due = deadline(record, outages)
    if stop is None:
        if now > due:
            verdict.missed += 1
            verdict.note(f"{record.name}: client gone, still live {now - due:.1f}s past due")
        return
    lease = record.lease_at_stop
    if lease is not None and reason == "LEASE_EXPIRED":
        lag = stop.seen - lease
        verdict.worst_lag = lag if verdict.worst_lag is None else max(verdict.worst_lag, lag)
        if lag < 0:
            verdict.rules += 1
            verdict.note(f"{record.name}: expired {-lag:.2f}s before its lease ran out")
    if stop.seen > due:
        verdict.missed += 1
        verdict.note(f"{record.name}: stopped {stop.seen - due + ON_TIME:.1f}s after due")


def _check_release(
    record: SessionRecord, verdict: Verdict, now: float, stop_timeout: float, pods: int
) -> None:
    stop = record.stop
    if stop is None or now - stop.seen <= stop_timeout:
        return
    if pods:
        verdict.orphans += 1
        verdict.note(f"{record.name}: {pods} Pod(s) left {now - stop.seen:.0f}s after the stop")
    if record.intent is Intent.DELETE and not record.gone:
        verdict.orphans += 1
        verdict.note(f"{record.name}: deleted, still held by its finalizer")


def _stopped(observation: Observation) -> bool:
    return observation.deleted or (observation.state is not None and observation.state not in LIVE)


def _just_before(seen: float, kill: float) -> bool:
    """Whether a write the watch saw at *seen* may have been the killed replica's last."""
    return kill - KILLED_WRITER_WINDOW <= seen <= kill + WATCH_DELAY


def _overlaps(a: Window, b: Window, slack: float) -> bool:
    return a.start <= b.end + slack and b.start - slack <= a.end
