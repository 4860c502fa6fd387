"""The heartbeat's order of checks and its decisions (docs/API_CONTRACT.md), with in-memory
fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from session_operator.api.auth import Caller, HeartbeatAuthorizer
from session_operator.api.errors import (
    Forbidden,
    LeaseNotInitialised,
    SessionGone,
    SessionNotFound,
    WriteContention,
)
from session_operator.api.heartbeat import HeartbeatService, heartbeat_patch
from session_operator.api.lookup import SessionLookup
from session_operator.k8s.errors import ApiUnavailable, NotFound, PreconditionFailed
from session_operator.k8s.sessions import JsonPatch, SessionApi
from session_operator.lease import HeartbeatExtend, SessionState, StopReason
from session_operator.models import Session, SessionRef
from session_operator.outage_rule import OutageWindow
from session_operator.timestamps import format_timestamp

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
REF = SessionRef(namespace="media", name="living-room")
CALLER = Caller(username="system:serviceaccount:media:player")


def make_session(
    state: str | None = "ready",
    expires: datetime | None = NOW + timedelta(seconds=30),
    last: datetime | None = None,
    version: int = 1,
    stop_reason: str | None = None,
    uid: str = "uid-1",
    lifetime_ends_at: datetime | None = None,
    lease_valid: str | None = None,
) -> Session:
    status: dict[str, Any] = {}
    if state is not None and expires is not None:
        status = {
            "state": state,
            "sessionID": uid,
            "leaseTTLSeconds": 60,
            "heartbeatInterval": 5,
            "leaseExpiresAt": format_timestamp(expires),
        }
    if last is not None:
        status["lastHeartbeat"] = format_timestamp(last)
    if stop_reason is not None:
        status["stopReason"] = stop_reason
    if lifetime_ends_at is not None:
        status["lifetimeEndsAt"] = format_timestamp(lifetime_ends_at)
    if lease_valid is not None:
        status["conditions"] = [
            {"type": "Ready", "status": "True", "reason": "NoWorkload", "message": "",
             "lastTransitionTime": "2026-11-23T09:59:00Z"},
            {"type": "LeaseValid", "status": "True", "reason": lease_valid, "message": "",
             "lastTransitionTime": "2026-11-23T09:59:00Z"},
        ]  # fmt: skip
    return Session.from_body(
        {
            "metadata": {
                "namespace": REF.namespace,
                "name": REF.name,
                "uid": uid,
                "resourceVersion": str(version),
                "creationTimestamp": "2026-11-23T09:59:00Z",
            },
            "spec": {},
            "status": status,
        }
    )


class FakeLookup(SessionLookup):
    """The cache holds *cached*; each re-read returns the next of *fresh*."""

    def __init__(self, log: list[str], cached: Session | None, fresh: list[Session]) -> None:
        self._log = log
        self._cached = cached
        self._fresh = fresh
        self.remembered: list[Session] = []

    async def by_ref(self, ref: SessionRef) -> Session:
        self._log.append("lookup")
        if self._cached is None:
            raise SessionNotFound(str(ref))
        return self._cached

    def by_id(self, session_id: str) -> Session:
        self._log.append("lookup")
        if self._cached is None or self._cached.status.session_id != session_id:
            raise SessionNotFound(session_id)
        return self._cached

    async def reread(self, ref: SessionRef) -> Session:
        self._log.append("reread")
        return self._fresh.pop(0)

    def remember(self, session: Session) -> None:
        self.remembered.append(session)


class FakeAuthorizer(HeartbeatAuthorizer):
    def __init__(self, log: list[str], allowed: bool) -> None:
        self._log = log
        self._allowed = allowed

    async def authorize(self, caller: Caller, ref: SessionRef) -> None:
        self._log.append("authorize")
        if not self._allowed:
            raise Forbidden(str(ref))


class FakeSessions(SessionApi):
    """Answers each patch with the next outcome: an exception, or the written version."""

    def __init__(self, outcomes: list[Exception | Session] | None = None) -> None:
        self.patches: list[JsonPatch] = []
        self._outcomes = outcomes or []

    async def patch_status(self, ref: SessionRef, operations: JsonPatch) -> Session:
        self.patches.append(operations)
        outcome = self._outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def service(
    cached: Session | None,
    *,
    allowed: bool = True,
    fresh: list[Session] | None = None,
    outcomes: list[Exception | Session] | None = None,
    log: list[str] | None = None,
    outages: list[OutageWindow] | None = None,
    expiry_warning: timedelta = timedelta(0),
) -> tuple[HeartbeatService, FakeSessions, FakeLookup]:
    log = [] if log is None else log
    lookup = FakeLookup(log, cached, fresh or [])
    sessions = FakeSessions(outcomes)
    known = outages or []
    return (
        HeartbeatService(
            lookup,
            FakeAuthorizer(log, allowed),
            sessions,
            lambda: NOW,
            lambda: known,
            expiry_warning=expiry_warning,
        ),
        sessions,
        lookup,
    )


async def test_name_path_checks_access_before_existence() -> None:
    log: list[str] = []
    beats, _, _ = service(None, allowed=False, log=log)
    with pytest.raises(Forbidden):
        await beats.beat(CALLER, REF)
    assert log == ["authorize"]


async def test_session_id_path_checks_existence_before_access() -> None:
    log: list[str] = []
    beats, _, _ = service(None, allowed=False, log=log)
    with pytest.raises(SessionNotFound):
        await beats.beat(CALLER, "uid-1")
    assert log == ["lookup"]


async def test_session_id_path_refuses_a_caller_without_access_to_its_namespace() -> None:
    log: list[str] = []
    beats, sessions, _ = service(make_session(), allowed=False, log=log)
    with pytest.raises(Forbidden):
        await beats.beat(CALLER, "uid-1")
    assert log == ["lookup", "authorize"]
    assert sessions.patches == []


async def test_session_without_a_lease_is_not_initialised() -> None:
    beats, sessions, _ = service(make_session(state=None, expires=None))
    with pytest.raises(LeaseNotInitialised):
        await beats.beat(CALLER, REF)
    with pytest.raises(LeaseNotInitialised):
        await beats.read(CALLER, REF)
    assert sessions.patches == []


@pytest.mark.parametrize(
    ("state", "reason"),
    [("stopping", "USER_STOPPED"), ("stopped", "LEASE_EXPIRED"), ("failed", "FAILED")],
)
async def test_ended_session_is_gone_without_a_write(state: str, reason: str) -> None:
    beats, sessions, _ = service(make_session(state=state, stop_reason=reason))
    with pytest.raises(SessionGone) as gone:
        await beats.beat(CALLER, REF)
    assert (gone.value.state, gone.value.stop_reason) == (SessionState(state), StopReason(reason))
    assert sessions.patches == []


async def test_expired_live_session_is_gone_as_stopping_after_one_fresh_read() -> None:
    lapsed = make_session(expires=NOW)
    log: list[str] = []
    beats, sessions, _ = service(lapsed, fresh=[lapsed], log=log)
    with pytest.raises(SessionGone) as gone:
        await beats.beat(CALLER, REF)
    assert gone.value.state is SessionState.STOPPING
    assert gone.value.stop_reason is StopReason.LEASE_EXPIRED
    assert log.count("reread") == 1
    assert sessions.patches == []


async def test_session_extended_since_the_cached_copy_expired_is_acknowledged() -> None:
    extended = make_session(expires=NOW + timedelta(seconds=3), last=NOW - timedelta(seconds=1))
    beats, sessions, _ = service(make_session(expires=NOW), fresh=[extended])
    ack = await beats.beat(CALLER, REF)
    assert (ack.extended, ack.lease_expires_at) == (False, NOW + timedelta(seconds=3))
    assert sessions.patches == []


async def test_heartbeat_within_the_interval_writes_nothing() -> None:
    beaten = make_session(last=NOW - timedelta(seconds=4, milliseconds=999))
    beats, sessions, _ = service(beaten)
    ack = await beats.beat(CALLER, REF)
    assert ack.extended is False
    assert ack.lease_expires_at == NOW + timedelta(seconds=30)
    assert (ack.session_id, ack.heartbeat_interval) == ("uid-1", 5)
    assert sessions.patches == []


async def test_heartbeat_after_the_interval_writes_once_and_remembers_the_result() -> None:
    beaten = make_session(last=NOW - timedelta(seconds=5))
    written = make_session(expires=NOW + timedelta(seconds=60), last=NOW, version=2)
    beats, sessions, lookup = service(beaten, outcomes=[written])
    ack = await beats.beat(CALLER, REF)
    assert (ack.extended, ack.lease_expires_at) == (True, NOW + timedelta(seconds=60))
    assert len(sessions.patches) == 1
    assert lookup.remembered == [written]


async def test_heartbeat_near_the_end_of_the_lifetime_writes_the_end_as_the_expiry() -> None:
    ends_at = NOW + timedelta(seconds=40)
    beaten = make_session(last=NOW - timedelta(seconds=5), lifetime_ends_at=ends_at)
    written = make_session(expires=ends_at, last=NOW, version=2, lifetime_ends_at=ends_at)
    beats, sessions, _ = service(beaten, outcomes=[written])
    ack = await beats.beat(CALLER, REF)
    assert (ack.extended, ack.lease_expires_at) == (True, ends_at)
    (patch,) = sessions.patches
    assert {
        "op": "replace",
        "path": "/status/leaseExpiresAt",
        "value": format_timestamp(ends_at),
    } in patch


async def test_heartbeat_at_the_end_of_the_lifetime_is_gone_even_in_an_outage() -> None:
    at_end = make_session(expires=NOW, last=NOW - timedelta(seconds=5), lifetime_ends_at=NOW)
    outage = OutageWindow(NOW - timedelta(seconds=20), NOW - timedelta(seconds=1))
    beats, sessions, _ = service(at_end, fresh=[at_end], outages=[outage])
    with pytest.raises(SessionGone) as gone:
        await beats.beat(CALLER, REF)
    assert (gone.value.state, gone.value.stop_reason) == (
        SessionState.STOPPING,
        StopReason.LEASE_EXPIRED,
    )
    assert sessions.patches == []


async def test_lost_write_never_revives_a_session_stopped_meanwhile() -> None:
    stopped = make_session(state="stopped", stop_reason="LEASE_EXPIRED", version=2)
    beats, sessions, _ = service(make_session(), fresh=[stopped], outcomes=[PreconditionFailed()])
    with pytest.raises(SessionGone) as gone:
        await beats.beat(CALLER, REF)
    assert gone.value.state is SessionState.STOPPED
    assert len(sessions.patches) == 1


async def test_lost_write_to_a_concurrent_heartbeat_is_acknowledged_without_a_write() -> None:
    concurrent = make_session(expires=NOW + timedelta(seconds=60), last=NOW, version=2)
    beats, sessions, _ = service(
        make_session(), fresh=[concurrent], outcomes=[PreconditionFailed()]
    )
    ack = await beats.beat(CALLER, REF)
    assert (ack.extended, ack.lease_expires_at) == (False, NOW + timedelta(seconds=60))
    assert len(sessions.patches) == 1


async def test_write_that_keeps_losing_is_contention() -> None:
    session = make_session()
    beats, _, _ = service(
        session, fresh=[session] * 4, outcomes=[PreconditionFailed() for _ in range(4)]
    )
    with pytest.raises(WriteContention):
        await beats.beat(CALLER, REF)


async def test_lost_write_to_a_session_created_again_under_its_name_is_not_found() -> None:
    successor = make_session(uid="uid-2", version=3)
    beats, sessions, _ = service(make_session(), fresh=[successor], outcomes=[PreconditionFailed()])
    with pytest.raises(SessionNotFound):
        await beats.beat(CALLER, REF)
    assert len(sessions.patches) == 1


async def test_write_to_a_deleted_session_is_not_found() -> None:
    beats, _, _ = service(make_session(), outcomes=[NotFound()])
    with pytest.raises(SessionNotFound):
        await beats.beat(CALLER, REF)


async def test_read_reports_an_expired_live_session_as_stopping_lease_expired() -> None:
    beats, _, _ = service(make_session(expires=NOW, last=NOW - timedelta(seconds=60)))
    view = await beats.read(CALLER, REF)
    assert (view.state, view.stop_reason) == (SessionState.STOPPING, StopReason.LEASE_EXPIRED)
    assert view.last_heartbeat == NOW - timedelta(seconds=60)
    assert (view.session_id, view.ref, view.heartbeat_interval) == ("uid-1", REF, 5)


def test_first_heartbeat_patch_tests_state_and_expiry_then_sets_both_times() -> None:
    session = make_session()
    decision = HeartbeatExtend(last_heartbeat=NOW, expires_at=NOW + timedelta(seconds=60))
    assert heartbeat_patch(session.raw_status, decision) == [
        {"op": "test", "path": "/status/state", "value": "ready"},
        {"op": "test", "path": "/status/leaseExpiresAt", "value": "2026-11-23T10:00:30.000Z"},
        {"op": "add", "path": "/status/lastHeartbeat", "value": "2026-11-23T10:00:00.000Z"},
        {"op": "replace", "path": "/status/leaseExpiresAt", "value": "2026-11-23T10:01:00.000Z"},
    ]


def test_later_heartbeat_patch_also_tests_the_last_heartbeat_as_stored() -> None:
    session = make_session(last=NOW - timedelta(seconds=5))
    decision = HeartbeatExtend(last_heartbeat=NOW, expires_at=NOW + timedelta(seconds=60))
    tests = [op for op in heartbeat_patch(session.raw_status, decision) if op["op"] == "test"]
    assert tests[-1] == {
        "op": "test",
        "path": "/status/lastHeartbeat",
        "value": session.raw_status["lastHeartbeat"],
    }
    assert len(tests) == 3


# Lease rule 8: a 40 s outage that ended 1 s ago, with the client beating until it began.
OUTAGE = OutageWindow(NOW - timedelta(seconds=41), NOW - timedelta(seconds=1))
LAPSED_IN_OUTAGE = make_session(
    expires=NOW - timedelta(seconds=10), last=OUTAGE.start - timedelta(seconds=2)
)


async def test_heartbeat_after_an_outage_gets_the_lease_back_not_410() -> None:
    written = make_session(expires=NOW + timedelta(seconds=60), last=NOW, version=2)
    beats, sessions, _ = service(LAPSED_IN_OUTAGE, outcomes=[written], outages=[OUTAGE])
    ack = await beats.beat(CALLER, REF)
    assert (ack.extended, ack.lease_expires_at) == (True, NOW + timedelta(seconds=60))
    tests = [op for op in sessions.patches[0] if op["op"] == "test"]
    assert {
        "op": "test",
        "path": "/status/leaseExpiresAt",
        "value": format_timestamp(NOW - timedelta(seconds=10)),
    } in tests


async def test_read_after_an_outage_reports_the_graced_lease_as_live() -> None:
    beats, _, _ = service(LAPSED_IN_OUTAGE, outages=[OUTAGE])
    view = await beats.read(CALLER, REF)
    assert view.state is SessionState.READY
    assert view.lease_expires_at == OUTAGE.end + timedelta(seconds=10)


async def test_client_gone_before_the_outage_is_still_gone() -> None:
    gone = make_session(
        expires=NOW - timedelta(seconds=10), last=OUTAGE.start - timedelta(seconds=11)
    )
    beats, sessions, _ = service(gone, fresh=[gone], outages=[OUTAGE])
    with pytest.raises(SessionGone):
        await beats.beat(CALLER, REF)
    assert sessions.patches == []


async def test_unknown_session_id_during_an_ongoing_outage_is_unavailable_not_not_found() -> None:
    ongoing = OutageWindow(NOW - timedelta(seconds=3), NOW, ongoing=True)
    beats, _, _ = service(None, outages=[ongoing])
    with pytest.raises(ApiUnavailable):
        await beats.beat(CALLER, "uid-unknown")
    over = OutageWindow(NOW - timedelta(seconds=30), NOW - timedelta(seconds=20))
    beats, _, _ = service(None, outages=[over])
    with pytest.raises(SessionNotFound):
        await beats.beat(CALLER, "uid-unknown")


# The expiry warning (docs/lease-rules.md): a 20 s window.
WINDOW = timedelta(seconds=20)


async def test_an_extending_heartbeat_answers_the_seconds_left_out_of_the_window() -> None:
    beaten = make_session(last=NOW - timedelta(seconds=5))
    written = make_session(expires=NOW + timedelta(seconds=60), last=NOW, version=2)
    beats, _, _ = service(beaten, outcomes=[written], expiry_warning=WINDOW)
    ack = await beats.beat(CALLER, REF)
    assert (ack.countdown.seconds_left, ack.countdown.expiring_soon) == (60.0, False)


async def test_a_heartbeat_within_the_interval_in_the_window_says_expiring_soon() -> None:
    beaten = make_session(expires=NOW + timedelta(seconds=12.5), last=NOW - timedelta(seconds=1))
    beats, sessions, _ = service(beaten, expiry_warning=WINDOW)
    ack = await beats.beat(CALLER, REF)
    assert (ack.countdown.seconds_left, ack.countdown.expiring_soon) == (12.5, True)
    assert sessions.patches == []


async def test_with_the_warning_off_no_answer_says_expiring_soon() -> None:
    beaten = make_session(expires=NOW + timedelta(seconds=1), last=NOW - timedelta(seconds=1))
    beats, _, _ = service(beaten)
    ack = await beats.beat(CALLER, REF)
    assert (ack.countdown.seconds_left, ack.countdown.expiring_soon) == (1.0, False)


async def test_a_heartbeat_takes_a_warned_lease_out_of_the_window_in_its_one_write() -> None:
    warned = make_session(last=NOW - timedelta(seconds=5), lease_valid="ExpiringSoon")
    written = make_session(expires=NOW + timedelta(seconds=60), last=NOW, version=2)
    beats, sessions, _ = service(warned, outcomes=[written], expiry_warning=WINDOW)
    await beats.beat(CALLER, REF)
    (patch,) = sessions.patches
    assert patch[:-2] == heartbeat_patch(
        warned.raw_status,
        HeartbeatExtend(last_heartbeat=NOW, expires_at=NOW + timedelta(seconds=60)),
    )
    test, replace = patch[-2:]
    assert test == {"op": "test", "path": "/status/conditions/1/reason", "value": "ExpiringSoon"}
    assert replace["op"] == "replace"
    assert replace["path"] == "/status/conditions/1"
    condition = replace["value"]
    assert (condition["type"], condition["status"]) == ("LeaseValid", "True")
    assert condition["reason"] == "LeaseGranted"
    assert condition["lastTransitionTime"] == "2026-11-23T09:59:00Z"


async def test_a_heartbeat_near_the_end_of_the_lifetime_keeps_the_lease_expiring_soon() -> None:
    ends_at = NOW + timedelta(seconds=15)
    warned = make_session(
        expires=NOW + timedelta(seconds=10),
        last=NOW - timedelta(seconds=5),
        lifetime_ends_at=ends_at,
        lease_valid="ExpiringSoon",
    )
    written = make_session(expires=ends_at, last=NOW, version=2, lifetime_ends_at=ends_at)
    beats, sessions, _ = service(warned, outcomes=[written], expiry_warning=WINDOW)
    ack = await beats.beat(CALLER, REF)
    assert (ack.countdown.seconds_left, ack.countdown.expiring_soon) == (15.0, True)
    condition = sessions.patches[0][-1]["value"]
    assert condition["reason"] == "ExpiringSoon"
    assert condition["message"] == (
        f"the session reaches its maximum lifetime at {format_timestamp(ends_at)}, in 15s; no"
        " heartbeat extends a lease past it"
    )


async def test_with_the_warning_on_a_heartbeat_tests_the_lease_valid_reason_it_read() -> None:
    granted = make_session(last=NOW - timedelta(seconds=5), lease_valid="LeaseGranted")
    written = make_session(expires=NOW + timedelta(seconds=60), last=NOW, version=2)
    beats, sessions, _ = service(granted, outcomes=[written], expiry_warning=WINDOW)
    await beats.beat(CALLER, REF)
    assert sessions.patches[0][-1] == {
        "op": "test",
        "path": "/status/conditions/1/reason",
        "value": "LeaseGranted",
    }


async def test_with_the_warning_off_a_heartbeat_writes_what_it_always_wrote() -> None:
    granted = make_session(last=NOW - timedelta(seconds=5), lease_valid="LeaseGranted")
    written = make_session(expires=NOW + timedelta(seconds=60), last=NOW, version=2)
    beats, sessions, _ = service(granted, outcomes=[written])
    await beats.beat(CALLER, REF)
    decision = HeartbeatExtend(last_heartbeat=NOW, expires_at=NOW + timedelta(seconds=60))
    assert sessions.patches == [heartbeat_patch(granted.raw_status, decision)]


async def test_a_warning_written_meanwhile_is_taken_back_by_the_heartbeat_decided_again() -> None:
    granted = make_session(last=NOW - timedelta(seconds=5), lease_valid="LeaseGranted")
    warned = make_session(last=NOW - timedelta(seconds=5), lease_valid="ExpiringSoon", version=2)
    written = make_session(expires=NOW + timedelta(seconds=60), last=NOW, version=3)
    beats, sessions, _ = service(
        granted,
        fresh=[warned],
        outcomes=[PreconditionFailed(), written],
        expiry_warning=WINDOW,
    )
    ack = await beats.beat(CALLER, REF)
    assert ack.extended is True
    first, second = sessions.patches
    assert first[-1]["value"] == "LeaseGranted"
    assert second[-1]["value"]["reason"] == "LeaseGranted"
    assert second[-2] == {
        "op": "test",
        "path": "/status/conditions/1/reason",
        "value": "ExpiringSoon",
    }


async def test_a_read_tells_the_seconds_left_of_a_live_lease() -> None:
    beats, _, _ = service(make_session(expires=NOW + timedelta(seconds=8)), expiry_warning=WINDOW)
    view = await beats.read(CALLER, REF)
    assert (view.countdown.seconds_left, view.countdown.expiring_soon) == (8.0, True)


async def test_a_read_of_a_session_without_a_live_lease_has_nothing_left() -> None:
    stopped = make_session(state="stopped", stop_reason="USER_STOPPED")
    beats, _, _ = service(stopped, expiry_warning=WINDOW)
    view = await beats.read(CALLER, REF)
    assert (view.countdown.seconds_left, view.countdown.expiring_soon) == (0.0, False)
