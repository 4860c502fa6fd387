"""Lease rule 8 (docs/outages.md) against a stalled kube-apiserver: the system's outage is
not charged to clients that were alive, and a client gone before it is stopped as usual."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tests.e2e.conftest import Cluster, OperatorProcess, wait_for
from tests.e2e.heartbeats import Reply, call, heartbeat_path, ready_session, service_account
from tests.e2e.sessions import read_session, session_events, wait_for_state

TTL, INTERVAL = 9, 3
LEASE = {"lease": {"ttlSeconds": TTL, "heartbeatIntervalSeconds": INTERVAL}}
STALL_SECONDS = TTL + 6  # every lease beaten before the stall lapses inside it
GONE_BEFORE_STALL = 3 * INTERVAL - 1  # more than the two intervals that count as alive


def lease_valid(body: dict[str, Any]) -> dict[str, Any]:
    conditions = body.get("status", {}).get("conditions", [])
    return next(c for c in conditions if c["type"] == "LeaseValid")


def events(cluster: Cluster, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in session_events(cluster, namespace, name) if e["reason"] == reason]


def beat_once_answered(url: str, token: str) -> Reply:
    """Beat until the answer is not 503 (the apiserver is waking up): that answer."""
    deadline = time.monotonic() + 10
    reply = call("POST", url, token)
    while reply.status == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
        reply = call("POST", url, token)
    return reply


def test_stalled_apiserver_is_not_charged_to_live_clients_but_gone_ones_are_stopped(
    cluster: Cluster, operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    assert cluster.control_plane is not None, "needs the local control plane to pause"
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    names = ("beating", "quiet", "gone")
    for name in names:
        ready_session(cluster, namespace, name, LEASE)
    urls = {name: operator.url + heartbeat_path(namespace, name) for name in names}

    # "gone" beats once, then its client dies well before the stall; the others beat on.
    assert call("POST", urls["gone"], token).status == 200
    gone_at = time.monotonic()
    while time.monotonic() - gone_at < GONE_BEFORE_STALL:
        for name in ("beating", "quiet"):
            assert call("POST", urls[name], token).status == 200
        time.sleep(0.5)

    apiserver = cluster.control_plane.component("kube-apiserver")
    os.kill(apiserver.pid, signal.SIGSTOP)
    try:
        time.sleep(STALL_SECONDS)
    finally:
        os.kill(apiserver.pid, signal.SIGCONT)

    # The client that beats right after the outage gets its lease back, not 410.
    reply = beat_once_answered(urls["beating"], token)
    assert reply.status == 200, reply
    # "gone" had stopped beating before the outage: it is stopped as usual.
    stopped, _ = wait_for_state(cluster, namespace, "gone", {"stopped"}, timeout=10)
    assert stopped["status"]["stopReason"] == "LEASE_EXPIRED"

    # "quiet" was alive when the outage began: the expirer grants it a grace, not a stop.
    assert wait_for(
        lambda: (
            lease_valid(read_session(cluster, namespace, "quiet"))["reason"] == "LeaseGraceGranted"
        ),
        timeout=5,
    )
    quiet = read_session(cluster, namespace, "quiet")
    assert quiet["status"]["state"] == "ready"
    assert "outage" in lease_valid(quiet)["message"]
    grace_events = events(cluster, namespace, "quiet", "LeaseGraceGranted")
    assert len(grace_events) == 1, grace_events
    assert ".." in grace_events[0]["note"], "the Event names the outage window"
    # The log tells the outage and the grace, one line each.
    log = operator.log_path.read_text().splitlines()
    assert any("heartbeats could not be accepted during" in line for line in log), log[-20:]
    told = [line for line in log if f"LeaseGraceGranted {namespace}/quiet (" in line]
    assert len(told) == 1, log[-20:]

    # The beating client keeps its session for longer than the grace.
    until = time.monotonic() + 2 * INTERVAL + 2
    while time.monotonic() < until:
        assert call("POST", urls["beating"], token).status == 200
        time.sleep(1)
    assert read_session(cluster, namespace, "beating")["status"]["state"] == "ready"
    # The quiet client never came back: its grace ran out and it is stopped after all.
    stopped, _ = wait_for_state(cluster, namespace, "quiet", {"stopped"}, timeout=5)
    assert stopped["status"]["stopReason"] == "LEASE_EXPIRED"
    assert not events(cluster, namespace, "beating", "LeaseExpired")
