"""The limits of a session on the real control plane (docs/lease-rules.md): a maximum
lifetime no heartbeat passes, and a start timeout that fails a workload nothing can start."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from session_operator.timestamps import parse_timestamp
from tests.e2e.conftest import Cluster, OperatorProcess, operator_instead
from tests.e2e.heartbeats import call, heartbeat_path, service_account
from tests.e2e.sessions import (
    create_session,
    event_reasons,
    pods_of,
    read_session,
    session_events,
    status_time,
    wait_for_state,
)

# A Pod no node can take: the e2e control plane has no node, and no node has this label.
UNSCHEDULABLE_POD = {
    "spec": {
        "nodeSelector": {"xg2g.io/e2e": "no-such-node"},
        "containers": [{"name": "main", "image": "registry.invalid/app:1"}],
    }
}


def created_at(body: dict[str, Any]) -> datetime:
    return parse_timestamp(body["metadata"]["creationTimestamp"])


def condition_reasons(body: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["reason"] for c in body["status"]["conditions"]}


def test_heartbeats_never_carry_a_session_past_its_maximum_lifetime(
    cluster: Cluster, operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    lease = {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1, "maxLifetimeSeconds": 6}
    create_session(cluster, namespace, "capped", {"lease": lease})
    body, _ = wait_for_state(cluster, namespace, "capped", {"ready"}, timeout=5)
    lifetime_ends = status_time(body, "lifetimeEndsAt")
    assert lifetime_ends == created_at(body) + timedelta(seconds=6)
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    url = operator.url + heartbeat_path(namespace, "capped")

    # Beat faster than the interval until the heartbeat is refused: every acknowledged
    # expiry, and every stored one, stays at or before the end of the lifetime.
    acknowledged: list[str] = []
    deadline = time.monotonic() + 15
    while (reply := call("POST", url, token)).status == 200:
        acknowledged.append(reply.body["lease_expires_at"])
        stored = read_session(cluster, namespace, "capped")["status"]["leaseExpiresAt"]
        assert parse_timestamp(stored) <= lifetime_ends
        assert time.monotonic() < deadline, "the heartbeat was never refused"
        time.sleep(0.5)
    assert reply.status == 410, reply.body
    assert acknowledged, "no heartbeat was accepted"
    assert all(parse_timestamp(expiry) <= lifetime_ends for expiry in acknowledged)
    # The heartbeats did extend the lease beyond its first TTL, up to the end exactly.
    assert parse_timestamp(acknowledged[-1]) == lifetime_ends

    body, _ = wait_for_state(cluster, namespace, "capped", {"stopped"}, timeout=5)
    status = body["status"]
    assert status["stopReason"] == "LEASE_EXPIRED"
    assert status_time(body, "leaseExpiresAt") == lifetime_ends
    lag = status_time(body, "stoppedAt") - lifetime_ends
    assert timedelta(0) <= lag <= timedelta(seconds=1), f"stopped {lag} after the end"
    assert condition_reasons(body) == {
        "Ready": "MaxLifetimeReached",
        "LeaseValid": "MaxLifetimeReached",
    }
    reasons = event_reasons(cluster, namespace, "capped")
    assert reasons.count("MaxLifetimeReached") == 1, reasons
    assert "LeaseExpired" not in reasons
    assert call("POST", url, token).status == 410


def test_a_pod_nothing_can_schedule_fails_its_session_at_the_start_timeout(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    spec = {
        "lease": {"ttlSeconds": 600, "heartbeatIntervalSeconds": 5},
        "template": UNSCHEDULABLE_POD,
        "startTimeoutSeconds": 3,
    }
    create_session(cluster, namespace, "stuck", spec)
    body, _ = wait_for_state(cluster, namespace, "stuck", {"starting"}, timeout=5)
    start_deadline = status_time(body, "startDeadline")
    assert start_deadline == created_at(body) + timedelta(seconds=3)
    assert pods_of(cluster, namespace, "stuck") == ["pod/stuck"]

    body, _ = wait_for_state(cluster, namespace, "stuck", {"failed"}, timeout=10)
    status = body["status"]
    assert status["stopReason"] == "FAILED"
    lag = status_time(body, "stoppedAt") - start_deadline
    assert timedelta(0) <= lag <= timedelta(seconds=1), f"failed {lag} after the deadline"
    assert condition_reasons(body) == {"Ready": "StartTimeout", "LeaseValid": "StartTimeout"}
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "Pending" in ready["message"]
    assert pods_of(cluster, namespace, "stuck") == []
    # The Pod no node ran is gone with its DELETE: one Event, a Warning, tells the stop.
    timeouts = [
        event
        for event in session_events(cluster, namespace, "stuck")
        if event["reason"] == "StartTimeout"
    ]
    assert [event["type"] for event in timeouts] == ["Warning"]
    assert "Failed" not in event_reasons(cluster, namespace, "stuck")


@pytest.fixture
def bounded_operator(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator for one namespace whose sessions live 8 s at most and get 2 s to start."""
    env = {
        "XG2G_SESSION_NAMESPACE": namespace,
        "XG2G_SESSION_LEASE_TTL": "3s",
        "XG2G_SESSION_HEARTBEAT_INTERVAL": "1s",
        "XG2G_SESSION_MAX_LIFETIME_BOUND": "8s",
        "XG2G_SESSION_START_TIMEOUT": "2s",
    }
    with operator_instead(cluster, operator, tmp_path / "operator.log", env) as special:
        yield special


def test_the_operator_bounds_the_lifetime_and_times_the_start_by_its_configuration(
    cluster: Cluster, bounded_operator: OperatorProcess, namespace: str
) -> None:
    create_session(cluster, namespace, "greedy", {"lease": {"maxLifetimeSeconds": 3600}})
    create_session(cluster, namespace, "plain", {"template": UNSCHEDULABLE_POD})

    # Unbeaten, it lapses after the 3 s TTL; its status keeps the end it was given.
    greedy, _ = wait_for_state(cluster, namespace, "greedy", {"ready", "stopped"}, timeout=5)
    assert status_time(greedy, "lifetimeEndsAt") == created_at(greedy) + timedelta(seconds=8)
    lease_valid = next(c for c in greedy["status"]["conditions"] if c["type"] == "LeaseValid")
    assert "spec.lease.maxLifetimeSeconds asked for 1h" in lease_valid["message"]
    assert "maxLifetimeBound" in lease_valid["message"]

    plain, _ = wait_for_state(cluster, namespace, "plain", {"failed"}, timeout=10)
    assert status_time(plain, "startDeadline") == created_at(plain) + timedelta(seconds=2)
    assert condition_reasons(plain)["Ready"] == "StartTimeout"
    assert pods_of(cluster, namespace, "plain") == []
