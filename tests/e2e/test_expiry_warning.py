"""The expiry warning on the real control plane (docs/lease-rules.md, Expiry warning): a
lease that enters its window is told once (an Event, the LeaseValid condition, the gauge,
the API's answers), and a heartbeat that extends it takes it out in its own write."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.operator_process import OperatorProcess
from session_operator.timestamps import parse_timestamp
from tests.e2e.conftest import Cluster, operator_instead, wait_for
from tests.e2e.heartbeats import call, heartbeat_path, service_account
from tests.e2e.sessions import (
    create_session,
    read_session,
    session_events,
    status_time,
    wait_for_state,
)

WINDOW = timedelta(seconds=8)
# Long enough a lease that the checks below fit in the window before it lapses.
LEASE = {"ttlSeconds": 14, "heartbeatIntervalSeconds": 1}
# The operator's deadline fires within a second of the warning instant.
ON_TIME = timedelta(seconds=1)


@pytest.fixture
def warning_operator(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator for one namespace that warns 8 s before a lease ends."""
    env = {"XG2G_SESSION_NAMESPACE": namespace, "XG2G_SESSION_EXPIRY_WARNING": "8s"}
    with operator_instead(cluster, operator, tmp_path / "operator.log", env) as special:
        yield special


def warnings(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        event
        for event in session_events(cluster, namespace, name)
        if event["reason"] == "LeaseExpiringSoon"
    ]


def wait_for_warnings(cluster: Cluster, namespace: str, name: str, count: int) -> None:
    told = wait_for(
        lambda: len(warnings(cluster, namespace, name)) >= count, timeout=15, interval=0.2
    )
    assert told, f"{namespace}/{name}: {count} LeaseExpiringSoon Event(s) never came"


def lease_valid(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == "LeaseValid")


def expiring_soon_gauge(operator: OperatorProcess) -> float:
    status, page = operator.get("/metrics")
    assert status == 200
    (line,) = (
        line for line in page.splitlines() if line.startswith("xg2g_sessions_expiring_soon ")
    )
    return float(line.split()[1])


def event_time(event: dict[str, Any]) -> datetime:
    return parse_timestamp(event["eventTime"])


def test_a_lease_in_the_window_is_told_once_and_a_heartbeat_takes_it_out(
    cluster: Cluster, warning_operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    create_session(cluster, namespace, "soon", {"lease": LEASE})
    body, _ = wait_for_state(cluster, namespace, "soon", {"ready"}, timeout=5)
    expires = body["status"]["leaseExpiresAt"]
    warn_at = parse_timestamp(expires) - WINDOW
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    beat_url = warning_operator.url + heartbeat_path(namespace, "soon")
    read_url = warning_operator.url + f"/api/v3/namespaces/{namespace}/sessions/soon"
    assert lease_valid(body)["reason"] == "LeaseGranted"

    # The warning instant: one Event, on the dot, and the condition says so.
    wait_for_warnings(cluster, namespace, "soon", 1)
    (told,) = warnings(cluster, namespace, "soon")
    assert told["type"] == "Normal"
    assert warn_at <= event_time(told) <= warn_at + ON_TIME
    warned = read_session(cluster, namespace, "soon")
    condition = lease_valid(warned)
    assert (condition["status"], condition["reason"]) == ("True", "ExpiringSoon")
    assert condition["message"] == (
        f"the lease expires at {expires}, in 8s, unless a heartbeat renews it"
    )
    assert warned["status"]["leaseExpiresAt"] == expires
    assert expiring_soon_gauge(warning_operator) == 1
    read = call("GET", read_url, token)
    assert read.status == 200
    assert read.body["expiring_soon"] is True
    assert 0 < read.body["seconds_left"] <= WINDOW.total_seconds()

    # A heartbeat extends the lease: out of the window, in the write it makes anyway.
    beat = call("POST", beat_url, token)
    assert beat.status == 200, beat.body
    assert beat.body["expiring_soon"] is False
    assert 13 <= beat.body["seconds_left"] <= 14
    extended = read_session(cluster, namespace, "soon")
    assert extended["status"]["leaseExpiresAt"] == beat.body["lease_expires_at"]
    restored = lease_valid(extended)
    assert (restored["status"], restored["reason"]) == ("True", "LeaseGranted")
    assert restored["lastTransitionTime"] == condition["lastTransitionTime"]
    assert wait_for(lambda: expiring_soon_gauge(warning_operator) == 0, timeout=5)

    # Heartbeats on time keep it out: no Event per heartbeat.
    for _ in range(4):
        time.sleep(1.1)
        assert call("POST", beat_url, token).body["expiring_soon"] is False
    assert len(warnings(cluster, namespace, "soon")) == 1

    # Without heartbeats it enters the window again: one Event for this stretch too.
    last = read_session(cluster, namespace, "soon")["status"]["leaseExpiresAt"]
    wait_for_warnings(cluster, namespace, "soon", 2)
    again = warnings(cluster, namespace, "soon")[1]
    warn_again = parse_timestamp(last) - WINDOW
    assert warn_again <= event_time(again) <= warn_again + ON_TIME
    stopped, _ = wait_for_state(cluster, namespace, "soon", {"stopped"}, timeout=15)
    assert lease_valid(stopped)["reason"] == "LeaseExpired"
    assert len(warnings(cluster, namespace, "soon")) == 2
    assert expiring_soon_gauge(warning_operator) == 0


def test_near_the_end_of_the_lifetime_heartbeats_answer_the_seconds_left(
    cluster: Cluster, warning_operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    lease = {"ttlSeconds": 10, "heartbeatIntervalSeconds": 1, "maxLifetimeSeconds": 10}
    create_session(cluster, namespace, "capped", {"lease": lease})
    body, _ = wait_for_state(cluster, namespace, "capped", {"ready"}, timeout=5)
    ends = body["status"]["lifetimeEndsAt"]
    assert body["status"]["leaseExpiresAt"] == ends
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    beat_url = warning_operator.url + heartbeat_path(namespace, "capped")

    wait_for_warnings(cluster, namespace, "capped", 1)
    (told,) = warnings(cluster, namespace, "capped")
    warn_at = parse_timestamp(ends) - WINDOW
    assert warn_at <= event_time(told) <= warn_at + ON_TIME
    assert told["note"].startswith(f"the session reaches its maximum lifetime at {ends}")

    # No heartbeat passes the end: the answer says how long is left, and the lease stays
    # in the window (the condition names the end again, no second Event).
    beat = call("POST", beat_url, token)
    assert beat.status == 200, beat.body
    assert beat.body["expiring_soon"] is True
    assert beat.body["lease_expires_at"] == ends
    assert 0 < beat.body["seconds_left"] < WINDOW.total_seconds()
    beaten = read_session(cluster, namespace, "capped")
    assert "lastHeartbeat" in beaten["status"]
    assert lease_valid(beaten)["reason"] == "ExpiringSoon"
    assert expiring_soon_gauge(warning_operator) == 1

    stopped, _ = wait_for_state(cluster, namespace, "capped", {"stopped"}, timeout=15)
    assert lease_valid(stopped)["reason"] == "MaxLifetimeReached"
    assert status_time(stopped, "stoppedAt") - parse_timestamp(ends) <= ON_TIME
    assert len(warnings(cluster, namespace, "capped")) == 1
