"""Replicas: one leader writes lifecycle changes, a standby takes over when it dies."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, OperatorProcess, wait_for
from tests.e2e.sessions import create_session, read_session, wait_for_state

SHORT_LEASE = {"lease": {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}}


@pytest.fixture
def replicas(
    cluster: Cluster, operator: OperatorProcess, tmp_path: Path
) -> Iterator[dict[str, OperatorProcess]]:
    """Two operator replicas (replica-a, replica-b) instead of the shared operator."""
    operator.stop()
    started: dict[str, OperatorProcess] = {}
    try:
        for name in ("replica-a", "replica-b"):
            started[name] = OperatorProcess(
                cluster.kubeconfig, tmp_path / f"{name}.log", {"POD_NAME": name}
            )
            started[name].start()
        yield started
    finally:
        for process in started.values():
            process.stop()
        operator.start()


def leader(cluster: Cluster) -> str:
    """The replica named by the leader Lease's holder."""
    holder = cluster.kubectl(
        "get", "lease", "session-lease-operator", "-n", "default",
        "-o", "jsonpath={.spec.holderIdentity}",
    ).stdout  # fmt: skip
    return holder.rsplit("_", 1)[0]


def expired_total(process: OperatorProcess) -> float:
    """Sum of xg2g_sessions_lease_expired_total over its labels, from one replica."""
    _, page = process.get("/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in page.splitlines()
        if line.startswith("xg2g_sessions_lease_expired_total{")
    )


def test_each_expiry_is_written_once_and_a_standby_takes_over_from_a_killed_leader(
    cluster: Cluster, replicas: dict[str, OperatorProcess], namespace: str
) -> None:
    assert wait_for(lambda: leader(cluster) in replicas, timeout=20)
    before = sum(expired_total(p) for p in replicas.values())
    names = [f"s{i}" for i in range(5)]
    for name in names:
        create_session(cluster, namespace, name, SHORT_LEASE)
    for name in names:
        wait_for_state(cluster, namespace, name, {"stopped"}, timeout=15)

    def expiries() -> list[str]:
        events = json.loads(
            cluster.kubectl("get", "events.events.k8s.io", "-n", namespace, "-o", "json").stdout
        )["items"]
        return sorted(e["regarding"]["name"] for e in events if e["reason"] == "LeaseExpired")

    # Events are posted a moment after the stop they tell.
    wait_for(lambda: len(expiries()) >= len(names), timeout=5)
    assert expiries() == names, "exactly one LeaseExpired Event per session"
    assert sum(expired_total(p) for p in replicas.values()) - before == len(names)
    for process in replicas.values():
        assert process.get("/readyz")[0] == 200, "every replica stays ready"

    create_session(
        cluster, namespace, "long", {"lease": {"ttlSeconds": 300, "heartbeatIntervalSeconds": 5}}
    )
    long_before = wait_for_state(cluster, namespace, "long", {"ready"}, timeout=10)[0]
    old_leader = leader(cluster)
    standby = next(name for name in replicas if name != old_leader)
    replicas[old_leader].kill()
    killed = time.monotonic()

    assert wait_for(lambda: leader(cluster) == standby, timeout=20)
    assert time.monotonic() - killed <= 15 + 2, "handover within a lease duration (+ retry)"
    create_session(cluster, namespace, "after", SHORT_LEASE)
    wait_for_state(cluster, namespace, "after", {"stopped"}, timeout=10)
    long_after = read_session(cluster, namespace, "long")
    assert long_after["status"]["leaseExpiresAt"] == long_before["status"]["leaseExpiresAt"]
    assert long_after["status"]["state"] == "ready"
    # Each replica's log says when it gained the lead, in one line.
    for name in (old_leader, standby):
        log = replicas[name].log_path.read_text()
        assert sum(" is now the leader" in line for line in log.splitlines()) == 1, log
