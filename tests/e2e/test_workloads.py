"""Workloads and every stop path: the session's Pod comes and, whatever happens, goes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, OperatorProcess, operator_instead, wait_for
from tests.e2e.sessions import (
    create_session,
    event_reasons,
    forbid_pods,
    pods_of,
    read_session,
    status_time,
    wait_for_state,
)

UNSCHEDULED_POD = {"spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]}}
LONG_LEASE = {"lease": {"ttlSeconds": 600, "heartbeatIntervalSeconds": 5}}
SHORT_LEASE = {"lease": {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}}


def set_pod_status(cluster: Cluster, namespace: str, pod: str, status: dict[str, object]) -> None:
    """Play the kubelet: write the Pod's status."""
    cluster.kubectl(
        "patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


READY_POD_STATUS = {
    "phase": "Running",
    "conditions": [{"type": "Ready", "status": "True"}],
}


def start_ready_session(
    cluster: Cluster, namespace: str, name: str, lease: dict[str, object]
) -> None:
    """A session whose Pod the test made Ready."""
    create_session(cluster, namespace, name, {**lease, "template": UNSCHEDULED_POD})
    wait_for_state(cluster, namespace, name, {"starting"}, timeout=5)
    set_pod_status(cluster, namespace, name, READY_POD_STATUS)
    wait_for_state(cluster, namespace, name, {"ready"}, timeout=5)


def test_template_session_is_starting_until_its_pod_is_ready(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    create_session(cluster, namespace, "player", {**LONG_LEASE, "template": UNSCHEDULED_POD})
    body, _ = wait_for_state(cluster, namespace, "player", {"starting"}, timeout=5)
    pod = json.loads(cluster.kubectl("get", "pod", "player", "-n", namespace, "-o", "json").stdout)
    assert pod["metadata"]["labels"]["xg2g.io/session"] == "player"
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "Session",
        body["metadata"]["uid"],
        True,
    )

    set_pod_status(cluster, namespace, "player", READY_POD_STATUS)
    body, _ = wait_for_state(cluster, namespace, "player", {"ready"}, timeout=5)
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "WorkloadReady")


@pytest.mark.parametrize("state", ["new", "starting", "ready"])
def test_lease_expiry_in_every_live_state_stops_the_session_and_deletes_its_pod(
    cluster: Cluster, operator: OperatorProcess, namespace: str, state: str
) -> None:
    if state == "new":
        forbid_pods(cluster, namespace)  # the Pod is refused: the session stays new
        create_session(cluster, namespace, "s", {**SHORT_LEASE, "template": UNSCHEDULED_POD})
        wait_for_state(cluster, namespace, "s", {"new"}, timeout=5)
    elif state == "starting":
        create_session(cluster, namespace, "s", {**SHORT_LEASE, "template": UNSCHEDULED_POD})
        wait_for_state(cluster, namespace, "s", {"starting"}, timeout=5)
        assert pods_of(cluster, namespace, "s") == ["pod/s"]
    else:
        lease = {"lease": {"ttlSeconds": 6, "heartbeatIntervalSeconds": 2}}
        start_ready_session(cluster, namespace, "s", lease)
        assert pods_of(cluster, namespace, "s") == ["pod/s"]

    body, _ = wait_for_state(cluster, namespace, "s", {"stopped"}, timeout=15)
    assert body["status"]["stopReason"] == "LEASE_EXPIRED"
    lag = status_time(body, "stoppedAt") - status_time(body, "leaseExpiresAt")
    assert lag <= timedelta(seconds=1), f"stopped {lag} after the lease ran out"
    assert pods_of(cluster, namespace, "s") == []
    # No node runs the Pod: its DELETE ends it at once, so one Event tells the whole stop.
    reasons = event_reasons(cluster, namespace, "s")
    assert reasons[-1] == "LeaseExpired"
    assert "Stopped" not in reasons


def test_spec_stop_stops_the_session_and_deletes_its_pod(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    start_ready_session(cluster, namespace, "s", LONG_LEASE)
    cluster.kubectl(
        "patch", "session", "s", "-n", namespace, "--type=merge", "-p", '{"spec":{"stop":true}}'
    )
    body, _ = wait_for_state(cluster, namespace, "s", {"stopped"}, timeout=10)
    assert body["status"]["stopReason"] == "USER_STOPPED"
    assert pods_of(cluster, namespace, "s") == []
    assert event_reasons(cluster, namespace, "s")[-1] == "Stopped"
    assert "Stopping" not in event_reasons(cluster, namespace, "s")


def test_session_created_stopped_never_starts(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    create_session(cluster, namespace, "s", {"stop": True, "template": UNSCHEDULED_POD})
    body, _ = wait_for_state(cluster, namespace, "s", {"stopped"}, timeout=5)
    assert body["status"]["stopReason"] == "USER_STOPPED"
    assert pods_of(cluster, namespace, "s") == []


def test_failed_pod_fails_the_session_for_good(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    start_ready_session(cluster, namespace, "s", LONG_LEASE)
    set_pod_status(cluster, namespace, "s", {"phase": "Failed", "reason": "OOMKilled"})
    body, _ = wait_for_state(cluster, namespace, "s", {"failed"}, timeout=10)
    assert body["status"]["stopReason"] == "FAILED"
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
    assert "OOMKilled" in ready["message"] or "Failed" in ready["message"]
    assert pods_of(cluster, namespace, "s") == []

    # Whatever happens next, the session never returns to a live state.
    refused = cluster.kubectl(
        "patch", "session", "s", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", '{"status":{"state":"ready"}}', check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert read_session(cluster, namespace, "s")["status"]["state"] == "failed"


def test_vanished_pod_fails_the_session(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    start_ready_session(cluster, namespace, "s", LONG_LEASE)
    cluster.kubectl("delete", "pod", "s", "-n", namespace, "--wait=true")
    body, _ = wait_for_state(cluster, namespace, "s", {"failed"}, timeout=10)
    assert body["status"]["stopReason"] == "FAILED"


def test_release_deletes_only_pods_the_session_controls_and_gc_takes_the_rest(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    start_ready_session(cluster, namespace, "s", LONG_LEASE)
    uid = read_session(cluster, namespace, "s")["metadata"]["uid"]
    labels = {"xg2g.io/session": "s"}
    controller = [
        {"apiVersion": "xg2g.io/v1alpha1", "kind": "Session", "name": "s", "uid": uid,
         "controller": True},
    ]  # fmt: skip
    container = {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]}

    def labelled(kind: str, name: str, owners: list[dict[str, Any]]) -> dict[str, Any]:
        metadata = {"name": name, "namespace": namespace, "labels": labels}
        body: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": metadata}
        if owners:
            metadata["ownerReferences"] = owners
        if kind == "Pod":
            body["spec"] = container
        return body

    for body in (
        labelled("Pod", "owned", controller),
        labelled("Pod", "foreign", []),
        labelled("ConfigMap", "owned", controller),
        labelled("ConfigMap", "foreign", []),
    ):
        cluster.kubectl("create", "-f", "-", input_text=json.dumps(body))

    def names(kind: str) -> list[str]:
        listed = cluster.kubectl("get", kind, "-n", namespace, "-l", "xg2g.io/session=s",
                                 "-o", "name")  # fmt: skip
        return sorted(listed.stdout.split())

    cluster.kubectl(
        "patch", "session", "s", "-n", namespace, "--type=merge", "-p", '{"spec":{"stop":true}}'
    )
    wait_for_state(cluster, namespace, "s", {"stopped"}, timeout=10)
    # The stop releases Pods only (setting releasedKinds), and only those it controls.
    assert wait_for(lambda: names("pods") == ["pod/foreign"], timeout=10)
    assert names("configmaps") == ["configmap/foreign", "configmap/owned"]
    # Deleting the Session leaves the rest of what it owns to the garbage collector.
    cluster.kubectl("delete", "session", "s", "-n", namespace, "--timeout=30s")
    assert wait_for(lambda: names("configmaps") == ["configmap/foreign"], timeout=30)
    assert names("pods") == ["pod/foreign"]


def test_deleting_a_live_session_releases_its_pod_then_lets_it_go(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    start_ready_session(cluster, namespace, "s", LONG_LEASE)
    cluster.kubectl("delete", "session", "s", "-n", namespace, "--timeout=30s")
    assert cluster.kubectl("get", "session", "s", "-n", namespace, check=False).returncode != 0
    assert wait_for(lambda: pods_of(cluster, namespace, "s") == [], timeout=10)
    notes = cluster.kubectl(
        "get", "events.events.k8s.io", "-n", namespace, "-o", "jsonpath={.items[*].note}"
    ).stdout
    assert "CLEANUP" in notes


def test_describe_tells_the_story_in_order(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    lease = {"lease": {"ttlSeconds": 6, "heartbeatIntervalSeconds": 2}}
    start_ready_session(cluster, namespace, "s", lease)
    wait_for_state(cluster, namespace, "s", {"stopped"}, timeout=15)
    described = cluster.kubectl("describe", "session", "s", "-n", namespace).stdout
    events = described[described.index("Events:") :]
    positions = [
        events.index(reason) for reason in ("Created", "Starting", "Ready", "LeaseExpired")
    ]
    assert positions == sorted(positions), events


@pytest.fixture
def short_timers_operator(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator for one namespace with a 3 s stop timeout and 3 s retention."""
    env = {
        "XG2G_SESSION_NAMESPACE": namespace,
        "XG2G_SESSION_STOP_TIMEOUT": "3s",
        "XG2G_SESSION_RETENTION": "3s",
    }
    with operator_instead(cluster, operator, tmp_path / "operator.log", env) as special:
        yield special


def test_stop_blocked_by_a_finalizer_is_forced_after_the_stop_timeout(
    cluster: Cluster, short_timers_operator: OperatorProcess, namespace: str
) -> None:
    start_ready_session(cluster, namespace, "s", LONG_LEASE)
    cluster.kubectl(
        "patch", "pod", "s", "-n", namespace, "--type=merge",
        "-p", '{"metadata":{"finalizers":["example.com/never"]}}',
    )  # fmt: skip
    try:
        cluster.kubectl(
            "patch", "session", "s", "-n", namespace, "--type=merge", "-p", '{"spec":{"stop":true}}'
        )
        wait_for_state(cluster, namespace, "s", {"stopping"}, timeout=5)
        body, _ = wait_for_state(cluster, namespace, "s", {"stopped"}, timeout=10)
        assert body["status"]["stopReason"] == "USER_STOPPED"
        warnings = cluster.kubectl(
            "get",
            "events.events.k8s.io",
            "-n",
            namespace,
            "-o",
            "jsonpath={.items[?(@.type=='Warning')].reason}",
        ).stdout.split()
        assert "StopTimeout" in warnings
    finally:
        cluster.kubectl(
            "patch", "pod", "s", "-n", namespace, "--type=merge",
            "-p", '{"metadata":{"finalizers":null}}', check=False,
        )  # fmt: skip


def test_retention_deletes_terminal_sessions_and_keeps_live_ones(
    cluster: Cluster, short_timers_operator: OperatorProcess, namespace: str
) -> None:
    create_session(cluster, namespace, "done", {"stop": True})
    create_session(cluster, namespace, "live", LONG_LEASE)
    wait_for_state(cluster, namespace, "done", {"stopped"}, timeout=5)

    def done_deleted() -> bool:
        return (
            cluster.kubectl("get", "session", "done", "-n", namespace, check=False).returncode != 0
        )

    assert wait_for(done_deleted, timeout=10)
    assert read_session(cluster, namespace, "live")["status"]["state"] == "ready"
