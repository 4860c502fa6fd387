"""The operator's core promise: sessions get a lease and are stopped on time when it runs out."""

from __future__ import annotations

import time
from datetime import timedelta

from tests.e2e.conftest import Cluster, OperatorProcess, wait_for
from tests.e2e.heartbeats import call, heartbeat_path, service_account
from tests.e2e.sessions import create_session, read_session, status_time, wait_for_state

SHORT_LEASE = {"lease": {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}}
# A process start of the operator (Python, kopf, first LIST) on this 2-core machine.
STARTUP_BUDGET = 3.0
UNSCHEDULED_POD = {"spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]}}


def test_session_without_template_is_ready_within_two_seconds(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    create_session(
        cluster,
        namespace,
        "living-room",
        {"lease": {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5}},
    )
    applied = time.monotonic()
    body, _ = wait_for_state(cluster, namespace, "living-room", {"ready"}, timeout=2)
    assert time.monotonic() - applied <= 2.0

    status = body["status"]
    assert status["sessionID"] == body["metadata"]["uid"]
    assert status["leaseTTLSeconds"] == 60
    assert status["heartbeatInterval"] == 5
    created = status_time({"status": {"t": body["metadata"]["creationTimestamp"]}}, "t")
    assert status_time(body, "leaseExpiresAt") == created + timedelta(seconds=60)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "LeaseValid": "True",
    }
    assert wait_for(
        lambda: (
            read_session(cluster, namespace, "living-room")["metadata"]
            .get("labels", {})
            .get("xg2g.io/state")
            == "ready"
        ),
        timeout=2,
    )

    table = cluster.kubectl("get", "sess", "-n", namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME", "STATE", "EXPIRES", "HOLD", "LAST", "HEARTBEAT", "REASON", "AGE"
    ]  # fmt: skip
    assert table[1].split()[:3] == ["living-room", "ready", status["leaseExpiresAt"]]
    by_field = cluster.kubectl(
        "get", "sess", "-n", namespace, "--field-selector", "status.state=ready", "-o", "name"
    ).stdout.split()
    by_label = cluster.kubectl(
        "get", "sess", "-n", namespace, "-l", "xg2g.io/state=ready", "-o", "name"
    ).stdout.split()
    assert by_field == by_label == ["session.xg2g.io/living-room"]


def test_unbeaten_session_is_stopped_within_one_second_of_its_lease(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    create_session(cluster, namespace, "abandoned", SHORT_LEASE)
    body, seen = wait_for_state(cluster, namespace, "abandoned", {"stopped"}, timeout=10)

    status = body["status"]
    assert status["stopReason"] == "LEASE_EXPIRED"
    lag = status_time(body, "stoppedAt") - status_time(body, "leaseExpiresAt")
    assert timedelta(0) <= lag <= timedelta(seconds=1), f"expiry lag {lag}"
    # The expiry check interval is 10 s: only the exact deadline can be this quick.
    assert seen - status_time(body, "leaseExpiresAt") <= timedelta(seconds=2)
    assert wait_for(
        lambda: (
            read_session(cluster, namespace, "abandoned")["metadata"]["labels"]["xg2g.io/state"]
            == "stopped"
        ),
        timeout=2,
    )
    described = cluster.kubectl("describe", "session", "abandoned", "-n", namespace).stdout
    assert "LeaseExpired" in described
    assert "Normal" in described


def test_restarted_operator_stops_lapsed_sessions_at_once_and_keeps_valid_leases(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    create_session(
        cluster,
        namespace,
        "gone-client",
        {"lease": {"ttlSeconds": 6, "heartbeatIntervalSeconds": 2}},
    )
    create_session(
        cluster,
        namespace,
        "live-client",
        {"lease": {"ttlSeconds": 600, "heartbeatIntervalSeconds": 5}},
    )
    wait_for_state(cluster, namespace, "gone-client", {"ready"}, timeout=3)
    live_before, _ = wait_for_state(cluster, namespace, "live-client", {"ready"}, timeout=3)

    stopping = time.monotonic()
    operator.stop()
    assert time.monotonic() - stopping < 3, "the operator should stop promptly on SIGTERM"
    try:
        time.sleep(7)  # longer than the 6 s lease
        assert read_session(cluster, namespace, "gone-client")["status"]["state"] == "ready"
    finally:
        launched = time.monotonic()
        operator.start()
    wait_for_state(cluster, namespace, "gone-client", {"stopped"}, timeout=10)
    assert time.monotonic() - launched <= 2.0 + STARTUP_BUDGET

    live_after = read_session(cluster, namespace, "live-client")
    assert live_after["status"]["state"] == "ready"
    assert live_after["status"]["leaseExpiresAt"] == live_before["status"]["leaseExpiresAt"]


def test_metrics_count_expiries_by_previous_state(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    create_session(cluster, namespace, "counted", SHORT_LEASE)
    wait_for_state(cluster, namespace, "counted", {"stopped"}, timeout=10)
    status, page = operator.get("/metrics")
    assert status == 200
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in page.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['xg2g_sessions_lease_expired_total{previous_state="ready"}'] >= 1
    assert samples["xg2g_session_expiry_lag_seconds_count"] >= 1
    assert samples['xg2g_sessions{state="stopped"}'] >= 1


def test_the_operator_log_tells_each_lifecycle_step_in_one_line_and_no_heartbeat(
    cluster: Cluster, operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    lease = {"lease": {"ttlSeconds": 6, "heartbeatIntervalSeconds": 1}}
    create_session(cluster, namespace, "told", lease)
    wait_for_state(cluster, namespace, "told", {"ready"}, timeout=5)
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    url = operator.url + heartbeat_path(namespace, "told")
    for _ in range(3):
        assert call("POST", url, token).status == 200
        time.sleep(1.1)
    wait_for_state(cluster, namespace, "told", {"stopped"}, timeout=15)

    ref = f"{namespace}/told"
    told = [line for line in operator.log_path.read_text().splitlines() if ref in line]
    steps = [
        reason
        for line in told
        for reason in ("Ready", "LeaseExpired")
        if f"] {reason} {ref} (" in line
    ]
    assert steps == ["Ready", "LeaseExpired"], told
    assert len(told) == 2, told  # nothing per heartbeat
    assert (
        "serving heartbeats, probes and metrics on http://127.0.0.1:"
        in operator.log_path.read_text()
    )
