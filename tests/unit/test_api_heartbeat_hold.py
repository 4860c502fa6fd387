"""The heartbeat API and a held session (docs/lease-rules.md, Hold): heartbeats still work
during a hold, they extend what heartbeats granted, and answers tell the lease's end."""

from __future__ import annotations

from datetime import datetime, timedelta

from session_operator.lease import SessionState
from session_operator.models import Session
from session_operator.timestamps import format_timestamp
from tests.unit.test_api_heartbeat import CALLER, NOW, REF, make_session, service

HOLD_END = NOW + timedelta(hours=2)


def held(session: Session, until: datetime = HOLD_END) -> Session:
    """*session* with a hold in force until *until*."""
    metadata = {
        "namespace": REF.namespace,
        "name": REF.name,
        "uid": session.uid,
        "resourceVersion": session.resource_version,
        "creationTimestamp": "2026-11-23T09:59:00Z",
    }
    status = {**session.raw_status, "holdUntil": format_timestamp(until)}
    return Session.from_body({"metadata": metadata, "spec": {}, "status": status})


async def test_a_heartbeat_to_a_held_session_whose_lease_passed_is_accepted() -> None:
    lapsed = held(make_session(expires=NOW - timedelta(minutes=5)))
    written = held(make_session(expires=NOW + timedelta(seconds=60), last=NOW, version=2))
    beats, sessions, _ = service(lapsed, outcomes=[written])
    ack = await beats.beat(CALLER, REF)
    (patch,) = sessions.patches
    # What heartbeats granted moves from now, as always; the hold stays as it is.
    assert {"op": "replace", "path": "/status/leaseExpiresAt",
            "value": format_timestamp(NOW + timedelta(seconds=60))} in patch  # fmt: skip
    assert not any(operation["path"] == "/status/holdUntil" for operation in patch)
    assert (ack.extended, ack.lease_expires_at) == (True, HOLD_END)


async def test_a_heartbeat_within_the_interval_is_answered_with_the_end_of_the_hold() -> None:
    beats, sessions, _ = service(held(make_session(last=NOW - timedelta(seconds=1))))
    ack = await beats.beat(CALLER, REF)
    assert sessions.patches == []
    assert (ack.extended, ack.lease_expires_at) == (False, HOLD_END)


async def test_a_read_reports_a_held_session_live_until_the_end_of_its_hold() -> None:
    beats, _, _ = service(held(make_session(expires=NOW - timedelta(minutes=5))))
    view = await beats.read(CALLER, REF)
    assert (view.state, view.lease_expires_at) == (SessionState.READY, HOLD_END)


async def test_once_the_hold_has_ended_an_expired_lease_is_gone() -> None:
    ended = held(make_session(expires=NOW - timedelta(minutes=5)), until=NOW)
    beats, _, _ = service(ended)
    view = await beats.read(CALLER, REF)
    assert view.state is SessionState.STOPPING
