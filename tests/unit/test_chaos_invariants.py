"""The chaos harness's invariants (chaos/invariants.py), judged from hand-built observations."""

from __future__ import annotations

import pytest

from chaos.invariants import (
    EXPLAINED_WITHIN,
    KILLED_WRITER_WINDOW,
    ON_TIME,
    STOP_ACTED_ON_WITHIN,
    WATCH_DELAY,
    Intent,
    Observation,
    Replica,
    SessionRecord,
    Verdict,
    Window,
    deadline,
    judge,
)

T0 = 1_800_000_000.0
TTL = 30.0
INTERVAL = 5.0
GRACE = 2 * INTERVAL
STOP_TIMEOUT = 60.0

COUNTS = ("wrongful", "missed", "orphans", "revived", "reasons", "events", "rules")


# --- helpers -------------------------------------------------------------------------------


def live(
    seen: float,
    beat: float | None = None,
    expires: float | None = None,
    state: str = "ready",
) -> Observation:
    """A live state; its lease runs a TTL from *beat* unless *expires* says otherwise."""
    if expires is None and beat is not None:
        expires = beat + TTL
    return Observation(
        seen=seen, state=state, lease_expires_at=expires, last_heartbeat=beat, stop_reason=None
    )


def stopped(seen: float, reason: str | None, state: str = "stopping") -> Observation:
    return Observation(
        seen=seen, state=state, lease_expires_at=None, last_heartbeat=None, stop_reason=reason
    )


def deleted(seen: float) -> Observation:
    return Observation(
        seen=seen,
        state=None,
        lease_expires_at=None,
        last_heartbeat=None,
        stop_reason=None,
        deleted=True,
    )


def session(
    intent: Intent,
    *observations: Observation,
    name: str = "s1",
    created_at: float = T0,
    ttl: float = TTL,
    acted_at: float | None = None,
    events: int = 0,
) -> SessionRecord:
    return SessionRecord(
        name=name,
        created_at=created_at,
        ttl=ttl,
        interval=INTERVAL,
        intent=intent,
        acted_at=acted_at,
        observations=list(observations),
        lease_expired_events=events,
    )


def dropped(last_beat: float | None, created_at: float = T0) -> SessionRecord:
    """A session whose client stopped beating after *last_beat* (``None``: never beat)."""
    return session(Intent.DROP, live(created_at, beat=last_beat), created_at=created_at)


def run(
    *records: SessionRecord,
    now: float,
    faults: tuple[Window, ...] = (),
    recorded: tuple[Window, ...] = (),
    pods: dict[str, int] | None = None,
    replicas: tuple[Replica, ...] = (),
    events_by_instance: dict[str, int] | None = None,
    kills: tuple[float, ...] = (),
) -> Verdict:
    return judge(
        records,
        now=now,
        faults=faults,
        recorded_outages=recorded,
        stop_timeout=STOP_TIMEOUT,
        pods_left=pods or {},
        replicas=replicas,
        events_by_instance=events_by_instance or {},
        kills=kills,
    )


def counts(verdict: Verdict) -> dict[str, int]:
    return {name: getattr(verdict, name) for name in COUNTS}


def only(**expected: int) -> dict[str, int]:
    """Every count 0 except those given."""
    return {name: expected.get(name, 0) for name in COUNTS}


def beating(name: str = "s1", until: float = T0 + 60) -> SessionRecord:
    """A client that beat every interval from T0 until *until*, never stopped."""
    beats = [T0 + i * INTERVAL for i in range(int((until - T0) / INTERVAL) + 1)]
    return session(Intent.BEAT, *(live(b + 0.1, beat=b) for b in beats), name=name)


# --- deadline(): no outage -----------------------------------------------------------------


def test_deadline_is_the_last_heartbeat_plus_the_ttl_plus_one_second() -> None:
    assert ON_TIME == 1.0
    assert deadline(dropped(T0 + 10), []) == T0 + 10 + TTL + ON_TIME


def test_deadline_of_a_session_never_beaten_counts_from_its_creation() -> None:
    assert deadline(dropped(None), []) == T0 + TTL + ON_TIME


def test_deadline_counts_from_the_creation_when_it_is_later_than_the_heartbeat() -> None:
    record = dropped(T0 - 5, created_at=T0)
    assert deadline(record, []) == T0 + TTL + ON_TIME


def test_deadline_uses_the_latest_heartbeat_seen() -> None:
    record = session(Intent.DROP, live(T0, beat=T0), live(T0 + 20, beat=T0 + 20), live(T0 + 21))
    assert deadline(record, []) == T0 + 20 + TTL + ON_TIME


def test_deadline_ignores_an_outage_long_before_it() -> None:
    earlier = Window(T0 - 100, T0 - 90)
    assert deadline(dropped(T0 + 10), [earlier]) == T0 + 10 + TTL + ON_TIME


# --- deadline(): rule 8 --------------------------------------------------------------------
# The session beat last at T0 + 10; its lease lapses at T0 + 40.

LAST = T0 + 10
DUE = LAST + TTL


def test_lease_lapsing_in_an_outage_of_a_live_client_gets_the_grace() -> None:
    outage = Window(LAST + 5, DUE + 20)
    assert deadline(dropped(LAST), [outage]) == outage.end + GRACE + ON_TIME


@pytest.mark.parametrize(
    ("start", "graced"),
    [
        (LAST - 3, True),  # beat during the outage
        (LAST, True),  # beat as it began
        (LAST + GRACE, True),  # exactly two intervals before: still alive
        (LAST + GRACE + 0.5, False),  # more than two intervals: gone before the outage
        (LAST + 25, False),
    ],
)
def test_grace_needs_a_heartbeat_within_two_intervals_before_the_start(
    start: float, graced: bool
) -> None:
    outage = Window(start, DUE + 5)  # the lease lapses inside it in every case
    expected = outage.end + GRACE if graced else outage.end  # else: only moved to its end
    assert deadline(dropped(LAST), [outage]) == expected + ON_TIME


def test_never_beaten_session_is_alive_from_its_creation() -> None:
    record = dropped(None, created_at=T0)
    assert deadline(record, [Window(T0 + GRACE, T0 + 50)]) == T0 + 50 + GRACE + ON_TIME
    assert deadline(record, [Window(T0 + GRACE + 0.5, T0 + 50)]) == T0 + 50 + ON_TIME


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        (DUE + 15, DUE + 15 + GRACE),  # lapsed inside it
        (DUE, DUE + GRACE),  # lapsed as it ended
        (DUE - GRACE + 0.5, DUE + 0.5),  # lapsed before the client could beat again
        (DUE - GRACE, DUE),  # lapsed exactly two intervals after it: no grace
        (DUE - GRACE - 5, DUE),  # lapsed later still: unchanged
    ],
)
def test_grace_needs_the_lease_to_lapse_before_two_intervals_after_the_end(
    end: float, expected: float
) -> None:
    outage = Window(LAST + 5, end)  # the client beat 5 s before it began
    assert deadline(dropped(LAST), [outage]) == expected + ON_TIME


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (DUE - 0.5, T0 + 100),  # the due time falls inside: moved to the end
        (DUE, T0 + 100),  # it falls on the start: moved too
        (DUE + 0.5, T0 + 100),  # it began within the second a stop may take: moved too
        (DUE + ON_TIME + 0.5, DUE),  # it began after the stop was owed: unchanged
    ],
)
def test_due_time_inside_an_outage_of_a_gone_client_moves_to_its_end(
    start: float, expected: float
) -> None:
    outage = Window(start, T0 + 100)  # far more than two intervals after the last beat
    assert deadline(dropped(LAST), [outage]) == expected + ON_TIME


def test_due_time_moved_into_a_later_outage_moves_to_its_end_too() -> None:
    first = Window(LAST + 20, DUE + 10)  # the client was gone: no grace
    second = Window(DUE + 5, DUE + 30)  # overlaps the first one's end
    # Given out of order: the windows are followed in the order they began.
    assert deadline(dropped(LAST), [second, first]) == second.end + ON_TIME


def test_grace_that_ends_inside_another_outage_moves_to_its_end() -> None:
    outage = Window(LAST + 5, DUE + 5)
    later = Window(outage.end + 5, outage.end + 40)  # the grace end falls into it
    assert deadline(dropped(LAST), [outage, later]) == later.end + ON_TIME


@pytest.mark.parametrize("reverse", [False, True])
def test_of_two_windows_that_owe_a_grace_the_later_one_wins(reverse: bool) -> None:
    # A fault and the outage the operator recorded for it, a little apart.
    windows = [Window(LAST + 5, DUE - 5), Window(LAST + 8, DUE - 2)]
    if reverse:
        windows.reverse()
    assert deadline(dropped(LAST), windows) == DUE - 2 + GRACE + ON_TIME


# --- judge(): a clean run ------------------------------------------------------------------


def test_clean_run_counts_sessions_and_passes() -> None:
    expiring = session(
        Intent.DROP,
        live(T0, beat=T0),
        stopped(T0 + TTL + 0.2, "LEASE_EXPIRED"),
        stopped(T0 + TTL + 0.5, "LEASE_EXPIRED", state="stopped"),
        name="drop",
        events=1,
    )
    verdict = run(beating("a"), beating("b"), expiring, now=T0 + 60)
    assert verdict.sessions == 3
    assert counts(verdict) == only()
    assert verdict.findings == []
    assert verdict.passed


# --- judge(): wrongful ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "stop",
    [
        stopped(T0 + 30, "USER_STOPPED"),
        stopped(T0 + 30, "FAILED", state="failed"),
        stopped(T0 + 30, None, state="stopped"),
        deleted(T0 + 30),
    ],
)
def test_session_that_beat_on_time_and_was_stopped_is_wrongful(stop: Observation) -> None:
    record = session(Intent.BEAT, live(T0, beat=T0), live(T0 + 25, beat=T0 + 25), stop)
    verdict = run(record, now=T0 + 40)
    assert counts(verdict) == only(wrongful=1)
    assert not verdict.passed
    assert len(verdict.findings) == 1
    assert "s1" in verdict.findings[0]


def test_each_wrongful_stop_counts() -> None:
    records = [
        session(Intent.BEAT, live(T0, beat=T0), stopped(T0 + 10, "FAILED"), name=name)
        for name in ("a", "b")
    ]
    assert counts(run(*records, beating("c"), now=T0 + 20)) == only(wrongful=2)


# --- judge(): missed -----------------------------------------------------------------------


def drop_stopped_at(seen: float | None, events: int = 1) -> SessionRecord:
    """A client that beat last at LAST; stopped as LEASE_EXPIRED at *seen*."""
    observations = [live(T0, beat=T0), live(LAST, beat=LAST)]
    if seen is not None:
        observations.append(stopped(seen, "LEASE_EXPIRED"))
    return session(Intent.DROP, *observations, acted_at=LAST + 1, events=events)


@pytest.mark.parametrize(
    ("now", "missed"),
    [
        (DUE + ON_TIME + 0.5, 1),
        (DUE + ON_TIME, 0),  # exactly at the deadline: not yet late
        (DUE - 5, 0),
    ],
)
def test_dropped_client_still_live_past_its_deadline_is_missed(now: float, missed: int) -> None:
    verdict = run(drop_stopped_at(None), now=now)
    assert counts(verdict) == only(missed=missed)
    assert verdict.worst_lag is None


def test_dropped_client_stopped_too_late_is_missed() -> None:
    verdict = run(drop_stopped_at(DUE + ON_TIME + 0.5), now=DUE + 20)
    assert counts(verdict) == only(missed=1)
    assert verdict.worst_lag == pytest.approx(ON_TIME + 0.5)


@pytest.mark.parametrize("lag", [0.0, 0.4, ON_TIME])
def test_dropped_client_stopped_in_time_is_not_missed(lag: float) -> None:
    verdict = run(drop_stopped_at(DUE + lag), now=DUE + 20)
    assert counts(verdict) == only()
    assert verdict.worst_lag == pytest.approx(lag)
    assert verdict.passed


def test_expiry_before_the_lease_ran_out_breaks_the_rules() -> None:
    verdict = run(drop_stopped_at(DUE - 0.5), now=DUE + 20)
    assert counts(verdict) == only(rules=1)
    assert verdict.worst_lag == pytest.approx(-0.5)


def test_worst_lag_is_the_largest_over_the_sessions() -> None:
    early = drop_stopped_at(DUE + 0.2)
    late = drop_stopped_at(DUE + 0.7)
    late.name = "s2"
    assert run(early, late, now=DUE + 20).worst_lag == pytest.approx(0.7)
    assert run(late, early, now=DUE + 20).worst_lag == pytest.approx(0.7)


def test_beating_sessions_have_no_lag() -> None:
    assert run(beating(), now=T0 + 60).worst_lag is None


@pytest.mark.parametrize("excuse", ["fault", "recorded"])
def test_stop_after_an_outage_grace_is_not_missed(excuse: str) -> None:
    outage = Window(LAST + 5, DUE + 20)
    stop = outage.end + GRACE + 0.5  # long after the TTL, within the grace
    if excuse == "fault":
        faults, recorded = (outage,), ()
    else:  # a recorded outage excuses too; a fault just before it explains it
        faults, recorded = (Window(outage.start - 5, outage.start - 1),), (outage,)
    record = drop_stopped_at(stop)
    grace = live(outage.end + 1, beat=LAST, expires=outage.end + GRACE)  # the grace written
    record.observations.insert(-1, grace)
    verdict = run(record, now=stop + 10, faults=faults, recorded=recorded)
    assert counts(verdict) == only()
    assert verdict.worst_lag == pytest.approx(0.5)  # behind the lease granted, not the TTL


def test_lag_of_a_lapse_inside_an_outage_counts_from_the_lease() -> None:
    outage = Window(LAST + 5, DUE + 20)  # the client beat 5 s before it: alive, owed a grace
    stop = outage.end + 3  # stopped although the grace lay ahead: lag from the old lease
    verdict = run(drop_stopped_at(stop), now=stop + 10, faults=(outage,))
    assert counts(verdict) == only()
    assert verdict.worst_lag == pytest.approx(stop - DUE)


def test_stop_after_the_outage_grace_ran_out_is_missed() -> None:
    outage = Window(LAST + 5, DUE + 20)
    stop = outage.end + GRACE + ON_TIME + 0.5
    verdict = run(drop_stopped_at(stop), now=stop + 10, faults=(outage,))
    assert counts(verdict) == only(missed=1)


@pytest.mark.parametrize("intent", [Intent.USER_STOP, Intent.DELETE])
@pytest.mark.parametrize(
    ("waited", "missed"),
    [
        (STOP_ACTED_ON_WITHIN + 0.5, 1),
        (STOP_ACTED_ON_WITHIN, 0),  # exactly the allowance: not yet late
        (5.0, 0),
    ],
)
def test_stop_or_delete_never_acted_on_is_missed(
    intent: Intent, waited: float, missed: int
) -> None:
    acted = T0 + 20
    record = session(intent, live(T0, beat=T0), live(T0 + 15, beat=T0 + 15), acted_at=acted)
    assert counts(run(record, now=acted + waited)) == only(missed=missed)


@pytest.mark.parametrize("intent", [Intent.USER_STOP, Intent.DELETE])
def test_stop_or_delete_not_yet_done_is_not_missed(intent: Intent) -> None:
    record = session(intent, live(T0, beat=T0), acted_at=None)
    assert counts(run(record, now=T0 + 1000)) == only()


def test_stop_acted_on_is_not_missed_however_long_ago() -> None:
    acted = T0 + 20
    record = session(
        Intent.USER_STOP,
        live(T0, beat=T0),
        stopped(acted + 1, "USER_STOPPED"),
        stopped(acted + 2, "USER_STOPPED", state="stopped"),
        acted_at=acted,
    )
    assert counts(run(record, now=acted + 1000)) == only()


# --- judge(): reasons ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "reason", "wrong"),
    [
        (Intent.DROP, "LEASE_EXPIRED", 0),
        (Intent.DROP, "USER_STOPPED", 1),
        (Intent.DROP, "CLEANUP", 1),
        (Intent.USER_STOP, "USER_STOPPED", 0),
        (Intent.USER_STOP, "LEASE_EXPIRED", 1),
        (Intent.DELETE, "CLEANUP", 0),
        (Intent.DELETE, "USER_STOPPED", 1),
    ],
)
def test_stop_reason_must_be_the_one_its_cause_calls_for(
    intent: Intent, reason: str, wrong: int
) -> None:
    # Stopped in time, one LeaseExpired Event where expired: only the reason can be wrong.
    record = session(
        intent,
        live(T0, beat=T0),
        live(LAST, beat=LAST),
        stopped(DUE, reason),
        acted_at=LAST,
        events=1 if reason == "LEASE_EXPIRED" else 0,
    )
    verdict = run(record, now=DUE + 5)
    assert counts(verdict) == only(reasons=wrong)
    assert len(verdict.findings) == wrong


def test_stop_without_a_reason_is_not_a_wrong_reason() -> None:
    record = session(Intent.DROP, live(T0, beat=T0), stopped(T0 + TTL, None))
    assert counts(run(record, now=T0 + TTL + 5)) == only()


# --- judge(): revived ----------------------------------------------------------------------


@pytest.mark.parametrize("stop_state", ["stopping", "stopped", "failed"])
@pytest.mark.parametrize("live_state", ["new", "starting", "ready"])
def test_session_live_again_after_a_stop_is_revived(stop_state: str, live_state: str) -> None:
    record = session(
        Intent.DROP,
        live(T0, beat=T0),
        stopped(T0 + TTL, "LEASE_EXPIRED", state=stop_state),
        live(T0 + TTL + 2, state=live_state),
        events=1,
    )
    assert counts(run(record, now=T0 + TTL + 5)) == only(revived=1)


def test_revival_counts_once_per_session() -> None:
    record = session(
        Intent.DROP,
        live(T0, beat=T0),
        stopped(T0 + TTL, "LEASE_EXPIRED"),
        live(T0 + TTL + 1),
        stopped(T0 + TTL + 2, "LEASE_EXPIRED"),
        live(T0 + TTL + 3),
        events=1,
    )
    assert counts(run(record, now=T0 + TTL + 5)) == only(revived=1)


def test_stopping_then_stopped_then_deleted_is_no_revival() -> None:
    record = session(
        Intent.DELETE,
        live(T0, beat=T0),
        stopped(T0 + 20, "CLEANUP"),
        stopped(T0 + 21, "CLEANUP", state="stopped"),
        deleted(T0 + 22),
        acted_at=T0 + 19,
    )
    assert counts(run(record, now=T0 + 200)) == only()


# --- judge(): rules ------------------------------------------------------------------------


def test_lease_that_shrank_breaks_a_rule() -> None:
    record = session(
        Intent.BEAT,
        live(T0, beat=T0, expires=T0 + 100),
        live(T0 + 1, beat=T0, expires=T0 + 90),
    )
    verdict = run(record, now=T0 + 10)
    assert counts(verdict) == only(rules=1)
    assert "shrank" in verdict.findings[0]


def test_lease_that_grew_or_stayed_breaks_no_rule() -> None:
    record = session(
        Intent.BEAT,
        live(T0, beat=T0, expires=T0 + 30),
        live(T0 + 1, beat=T0, expires=T0 + 30),
        live(T0 + 2, beat=T0, expires=T0 + 45),  # an outage grace
        live(T0 + 5, beat=T0 + 5, expires=T0 + 45),
    )
    assert counts(run(record, now=T0 + 10)) == only()


def test_lease_of_a_stopped_session_is_not_compared() -> None:
    stop = Observation(
        seen=T0 + 31,
        state="stopping",
        lease_expires_at=T0 + 1,
        last_heartbeat=T0,
        stop_reason="LEASE_EXPIRED",
    )
    record = session(Intent.DROP, live(T0, beat=T0), stop, events=1)
    assert counts(run(record, now=T0 + 35)) == only()


@pytest.mark.parametrize(
    ("gap", "broken"),
    [
        (INTERVAL - 2, 1),
        (INTERVAL - 0.01, 1),
        (INTERVAL, 0),  # exactly one interval apart: allowed
        (INTERVAL + 3, 0),
    ],
)
def test_heartbeats_closer_than_the_interval_break_rule_3(gap: float, broken: int) -> None:
    record = session(
        Intent.BEAT,
        live(T0, beat=T0, expires=T0 + 100),
        live(T0 + gap, beat=T0 + gap, expires=T0 + 100),
    )
    assert counts(run(record, now=T0 + 20)) == only(rules=broken)


def test_same_heartbeat_seen_again_is_not_a_second_heartbeat() -> None:
    record = session(
        Intent.BEAT,
        live(T0, beat=T0),
        live(T0 + 1, beat=T0, state="starting"),
        live(T0 + 2, beat=T0),
        live(T0 + 5, beat=T0 + 5),
    )
    assert counts(run(record, now=T0 + 10)) == only()


def test_heartbeats_too_close_count_once_per_session() -> None:
    record = session(Intent.BEAT, *(live(T0 + i, beat=T0 + i) for i in range(5)))
    assert counts(run(record, now=T0 + 10)) == only(rules=1)


def test_recorded_outage_no_fault_explains_breaks_a_rule() -> None:
    fault = Window(T0 + 100, T0 + 120)
    far = Window(fault.end + EXPLAINED_WITHIN + 0.5, fault.end + 40)
    verdict = run(beating(), now=T0 + 200, faults=(fault,), recorded=(far,))
    assert counts(verdict) == only(rules=1)
    assert "no fault" in verdict.findings[0]


def test_each_unexplained_outage_counts() -> None:
    recorded = (Window(T0 + 10, T0 + 20), Window(T0 + 50, T0 + 60))
    assert counts(run(beating(), now=T0 + 100, recorded=recorded)) == only(rules=2)


@pytest.mark.parametrize(
    "recorded",
    [
        Window(T0 + 101, T0 + 119),  # inside the fault
        Window(T0 + 90, T0 + 130),  # around it
        Window(T0 + 120 + EXPLAINED_WITHIN, T0 + 140),  # begins just late enough after it
        Window(T0 + 80, T0 + 100 - EXPLAINED_WITHIN),  # ends just soon enough before it
    ],
)
def test_recorded_outage_near_a_fault_is_explained(recorded: Window) -> None:
    fault = Window(T0 + 100, T0 + 120)
    verdict = run(beating(), now=T0 + 200, faults=(fault,), recorded=(recorded,))
    assert counts(verdict) == only()


def test_recorded_outage_just_too_early_for_the_fault_is_unexplained() -> None:
    fault = Window(T0 + 100, T0 + 120)
    early = Window(T0 + 80, T0 + 100 - EXPLAINED_WITHIN - 0.5)
    assert counts(run(now=T0 + 200, faults=(fault,), recorded=(early,))) == only(rules=1)


# --- judge(): orphans ----------------------------------------------------------------------


def stopped_at(intent: Intent, seen: float, *more: Observation, name: str = "s1") -> SessionRecord:
    reason = {Intent.DROP: "LEASE_EXPIRED", Intent.USER_STOP: "USER_STOPPED"}.get(intent, "CLEANUP")
    return session(
        intent,
        live(T0, beat=T0),
        stopped(seen, reason),
        *more,
        name=name,
        acted_at=seen - 1,
        events=1 if intent is Intent.DROP else 0,
    )


@pytest.mark.parametrize("intent", [Intent.DROP, Intent.USER_STOP])
@pytest.mark.parametrize(
    ("after", "orphans"),
    [
        (STOP_TIMEOUT + 0.5, 1),
        (STOP_TIMEOUT, 0),  # exactly the stop timeout: still within it
        (5.0, 0),
    ],
)
def test_pods_left_after_the_stop_timeout_are_orphans(
    intent: Intent, after: float, orphans: int
) -> None:
    stop = T0 + TTL
    record = stopped_at(intent, stop)
    verdict = run(record, now=stop + after, pods={"s1": 2})
    assert counts(verdict) == only(orphans=orphans)


def test_no_pods_left_is_no_orphan() -> None:
    stop = T0 + TTL
    record = stopped_at(Intent.DROP, stop)
    assert counts(run(record, now=stop + 1000, pods={"s1": 0, "other": 3})) == only()


def test_pods_of_a_live_session_are_not_orphans() -> None:
    assert counts(run(beating(), now=T0 + 1000, pods={"s1": 1})) == only()


@pytest.mark.parametrize(
    ("after", "orphans"),
    [(STOP_TIMEOUT + 0.5, 1), (STOP_TIMEOUT, 0)],
)
def test_deleted_session_still_there_after_the_stop_timeout_is_an_orphan(
    after: float, orphans: int
) -> None:
    stop = T0 + 20
    record = stopped_at(Intent.DELETE, stop, stopped(stop + 1, "CLEANUP", state="stopped"))
    verdict = run(record, now=stop + after)
    assert counts(verdict) == only(orphans=orphans)


def test_deleted_session_that_is_gone_is_no_orphan() -> None:
    stop = T0 + 20
    record = stopped_at(Intent.DELETE, stop, deleted(stop + 2))
    assert counts(run(record, now=stop + 1000)) == only()


def test_deleted_session_held_with_pods_left_counts_twice() -> None:
    stop = T0 + 20
    record = stopped_at(Intent.DELETE, stop)
    assert counts(run(record, now=stop + 1000, pods={"s1": 1})) == only(orphans=2)


# --- judge(): events -----------------------------------------------------------------------


@pytest.mark.parametrize(("posted", "wrong"), [(0, 1), (1, 0), (2, 1)])
def test_expired_session_needs_exactly_one_lease_expired_event(posted: int, wrong: int) -> None:
    verdict = run(drop_stopped_at(DUE + 0.5, events=posted), now=DUE + 5)
    assert counts(verdict) == only(events=wrong)


def test_session_stopped_otherwise_needs_no_lease_expired_event() -> None:
    record = session(
        Intent.USER_STOP, live(T0, beat=T0), stopped(T0 + 10, "USER_STOPPED"), acted_at=T0 + 9
    )
    assert counts(run(record, now=T0 + 20)) == only()


@pytest.mark.parametrize(
    ("intent", "also"),
    [(Intent.BEAT, "wrongful"), (Intent.USER_STOP, "reasons"), (Intent.DELETE, "reasons")],
)
def test_any_session_stopped_as_lease_expired_needs_exactly_one_event(
    intent: Intent, also: str
) -> None:
    record = session(
        intent,
        live(T0, beat=T0),
        stopped(T0 + TTL, "LEASE_EXPIRED"),
        acted_at=T0 + 20,
        events=2,
    )
    assert counts(run(record, now=T0 + TTL + 5)) == only(events=1, **{also: 1})


@pytest.mark.parametrize(
    ("counter", "posted", "wrong"),
    [
        (3.0, 3, 0),
        (3.0, 2, 1),
        (2.0, 3, 1),
        (0.0, 0, 0),
        (1.0, 0, 1),  # counted, never posted
        (None, 5, 0),  # killed: its counter went with it
    ],
)
def test_replica_counter_must_match_its_events(
    counter: float | None, posted: int, wrong: int
) -> None:
    events = {"replica-0": posted} if posted else {}
    verdict = run(
        beating(), now=T0 + 60, replicas=(Replica("replica-0", counter),), events_by_instance=events
    )
    assert counts(verdict) == only(events=wrong)


def test_each_replica_is_checked_against_its_own_events() -> None:
    replicas = (Replica("a", 2.0), Replica("b", 1.0), Replica("c", None), Replica("d", 4.0))
    events = {"a": 1, "b": 2, "c": 7, "d": 4}
    verdict = run(now=T0, replicas=replicas, events_by_instance=events)
    assert counts(verdict) == only(events=2)
    assert sorted(f.split(":")[0] for f in verdict.findings) == ["a", "b"]


# --- Verdict.passed ------------------------------------------------------------------------


def test_empty_verdict_passes() -> None:
    assert Verdict().passed


@pytest.mark.parametrize("name", COUNTS)
def test_any_count_fails_the_verdict(name: str) -> None:
    verdict = Verdict(sessions=5, worst_lag=0.3)
    setattr(verdict, name, 1)
    assert not verdict.passed


def test_sessions_lag_and_findings_do_not_fail_the_verdict() -> None:
    verdict = Verdict(sessions=9, worst_lag=12.0, findings=["a note"])
    assert verdict.passed


@pytest.mark.parametrize(
    ("kill_after_stop", "events", "lost"),
    [
        (0.02, 0, True),  # killed between the status write and its Event: the Event is gone
        (KILLED_WRITER_WINDOW, 0, True),
        (-WATCH_DELAY, 0, True),  # the watch saw the write a little after the kill
        (KILLED_WRITER_WINDOW + 0.5, 0, False),  # the stop was long done: its Event is owed
        (-WATCH_DELAY - 0.5, 0, False),  # stopped after the kill: by another replica
        (0.02, 2, False),  # a duplicate is never excused
    ],
)
def test_lease_expired_event_may_go_with_a_replica_killed_right_after_the_stop(
    kill_after_stop: float, events: int, lost: bool
) -> None:
    record = drop_stopped_at(DUE + 0.1, events=events)
    verdict = run(record, now=DUE + 20, kills=(DUE + 0.1 + kill_after_stop,))
    assert counts(verdict) == (only() if lost else only(events=1))
    assert verdict.lost_events == (["s1"] if lost else [])
