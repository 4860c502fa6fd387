"""The chart on a real node: ``helm install`` runs the operator as a Deployment of two
replicas, Ready through their probes; the leader's Pod deleted, the other takes over
within the Lease's timing and no session is lost (docs/node.md).

A client Pod keeps a session alive with ``session-operator heartbeat`` and its projected
token, through the chart's Service over TLS; ``helm upgrade`` keeps the CA; ``helm
uninstall`` leaves the CRD and the sessions. The tests share one release and run in
the order written (uninstall last).

The admission webhook is off: the apiserver runs on the machine's loopback and cannot
reach a Service of the node (docs/node.md, the network).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.engine import DockerEngine
from tests.e2e.conftest import REPO, Cluster, fresh_namespace, wait_for
from tests.e2e.heartbeats import bind_heartbeat_role
from tests.e2e.node import cluster_with_node, pod_logs
from tests.e2e.sessions import create_session, read_session, status_time, wait_for_state

pytestmark = pytest.mark.e2e

CHART = REPO / "helm" / "session-lease-operator"
RELEASE = "slo"
FULLNAME = f"{RELEASE}-session-lease-operator"
API_SERVICE = f"{FULLNAME}-api"
CA_CONFIGMAP = f"{FULLNAME}-ca"
TLS_SECRET = f"{FULLNAME}-tls"
LEADER_LEASE = "session-lease-operator"
# client-go's timings, which the operator keeps: a Lease of 15 s, retried every 2 s.
RETRY_SECONDS = 2
RELEASE_SECONDS = 5
"""From the deletion of the leader's Pod until the Lease is free: the kubelet's SIGTERM,
the operator's stop, the release's write."""
CLIENT_TTL_SECONDS = 30


@dataclass(frozen=True)
class Release:
    """The chart installed on the node's cluster."""

    cluster: Cluster
    namespace: str
    helm: Path
    values: tuple[str, ...]

    def helm_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``helm ARGS`` in the release's namespace; fails the test on a non-zero exit."""
        argv = [
            str(self.helm),
            *args,
            "-n",
            self.namespace,
            f"--kubeconfig={self.cluster.kubeconfig}",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"helm {args[0]} failed: {done.stderr}"
        return done

    def pods(self) -> list[dict[str, Any]]:
        """The operator's Pods."""
        found = self.cluster.kubectl(
            "get", "pods", "-n", self.namespace, "-l", "app.kubernetes.io/instance=" + RELEASE,
            "-o", "json",
        )  # fmt: skip
        items: list[dict[str, Any]] = json.loads(found.stdout)["items"]
        return items

    def ready_pods(self) -> list[str]:
        """Names of the operator's Pods that are Ready and not being deleted."""
        return [
            pod["metadata"]["name"]
            for pod in self.pods()
            if "deletionTimestamp" not in pod["metadata"]
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod.get("status", {}).get("conditions", [])
            )
        ]

    def leader(self) -> str:
        """The Pod holding the leader Lease ('' when nobody holds it)."""
        lease = self.cluster.kubectl(
            "get", "lease", LEADER_LEASE, "-n", self.namespace,
            "-o", "jsonpath={.spec.holderIdentity}", check=False,
        )  # fmt: skip
        return lease.stdout.strip().split("_", 1)[0]

    def logs(self) -> str:
        """The operator Pods' logs' ends, for a failure's message."""
        return "\n".join(
            pod_logs(self.cluster, self.namespace, pod["metadata"]["name"]) for pod in self.pods()
        )


@pytest.fixture(scope="module")
def chart_cluster(
    docker_engine: DockerEngine, operator_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A control plane of this module's own with a Ready node."""
    with cluster_with_node(docker_engine, operator_image, tmp_path_factory.mktemp("node")) as found:
        yield found


@pytest.fixture(scope="module")
def release(chart_cluster: Cluster, helm: Path, operator_image: str) -> Iterator[Release]:
    """``helm install`` of the chart with two replicas, waited for by helm itself."""
    repository, tag = operator_image.rsplit(":", 1)
    values = (
        f"--set=image.repository={repository}", f"--set=image.tag={tag}",
        "--set=image.pullPolicy=Never", "--set=replicaCount=2",
        "--set=admissionWebhook.enabled=false", "--set=config.expiryCheckInterval=2s",
        "--set=config.logFormat=text",
    )  # fmt: skip
    with fresh_namespace(chart_cluster) as namespace:
        installed = Release(chart_cluster, namespace, helm, values)
        installed.helm_run("install", RELEASE, str(CHART), *values, "--wait", "--timeout=4m")
        yield installed


def test_helm_install_runs_two_replicas_ready_through_their_probes(release: Release) -> None:
    assert wait_for(lambda: len(release.ready_pods()) == 2, timeout=120), release.logs()
    for pod in release.pods():
        container = pod["spec"]["containers"][0]
        assert "readinessProbe" in container
        assert "livenessProbe" in container
        assert pod["spec"]["nodeName"] == "xg2g-node"
    # In-cluster configuration through the kubernetes Service: one replica holds the Lease.
    assert wait_for(lambda: release.leader() in release.ready_pods(), timeout=60), release.logs()


def test_deleting_the_leader_pod_fails_over_and_loses_no_session(release: Release) -> None:
    cluster = release.cluster
    assert wait_for(lambda: release.leader() in release.ready_pods(), timeout=60), release.logs()
    old_leader = release.leader()
    with fresh_namespace(cluster) as namespace:
        long_lease = {"lease": {"ttlSeconds": 600, "heartbeatIntervalSeconds": 5}}
        names = [f"kept-{index}" for index in range(5)]
        for name in names:
            create_session(cluster, namespace, name, long_lease)
        for name in names:
            wait_for_state(cluster, namespace, name, {"ready"}, timeout=30)
        deleted = time.monotonic()
        cluster.kubectl("delete", "pod", old_leader, "-n", release.namespace, "--wait=false")
        phases = {}
        while release.leader() in ("", old_leader) and time.monotonic() - deleted < 45:
            if release.leader() == "" and "released" not in phases:
                phases["released"] = time.monotonic() - deleted
            time.sleep(0.1)
        failover = time.monotonic() - deleted
        phases["taken over"] = failover
        timeline = ", ".join(f"{phase} after {at:.1f}s" for phase, at in phases.items())
        print(f"failover: {timeline}")
        assert release.leader() not in ("", old_leader), release.logs()
        # The new leader works: a session created now expires on time.
        create_session(
            cluster, namespace, "after", {"lease": {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}}
        )
        body, _ = wait_for_state(cluster, namespace, "after", {"stopped"}, timeout=30)
        assert body["status"]["stopReason"] == "LEASE_EXPIRED"
        for name in names:
            assert read_session(cluster, namespace, name)["status"]["state"] == "ready"
    # The deleted leader got SIGTERM and gave the Lease up (a few seconds: the kubelet's
    # kill, kopf's stop, one write), and the standby took it at its next try: nobody waits
    # out the Lease's 15 s, which only a leader that dies without a word costs.
    assert failover <= RELEASE_SECONDS + RETRY_SECONDS + 1, timeline


def heartbeat_client_pod(release: Release, namespace: str, session: str, image: str) -> str:
    """A Pod in *namespace* beating for *session* through the chart's Service over TLS,
    with a projected token for the operator's audience; the Service's name resolves to its
    ClusterIP through the Pod's /etc/hosts (the node has no DNS: docs/node.md)."""
    cluster = release.cluster
    service = json.loads(
        cluster.kubectl("get", "service", API_SERVICE, "-n", release.namespace, "-o", "json").stdout
    )
    host = f"{API_SERVICE}.{release.namespace}.svc"
    port = service["spec"]["ports"][0]["port"]
    ca = cluster.kubectl(
        "get", "configmap", CA_CONFIGMAP, "-n", release.namespace, "-o", "jsonpath={.data.ca\\.crt}"
    ).stdout
    cluster.kubectl("create", "configmap", "api-ca", "-n", namespace, f"--from-literal=ca.crt={ca}")
    cluster.kubectl("create", "serviceaccount", "player", "-n", namespace)
    bind_heartbeat_role(cluster, namespace, namespace, "player")
    token = {"path": "token", "audience": "session-lease-operator", "expirationSeconds": 600}
    container = {
        "name": "heartbeat",
        "image": image,
        "imagePullPolicy": "Never",
        "args": [
            "heartbeat", session, "-n", namespace, "--url", f"https://{host}:{port}",
            "--ca-file", "/etc/api-ca/ca.crt", "-v",
        ],
        "volumeMounts": [
            {"name": "token", "mountPath": "/var/run/secrets/heartbeat", "readOnly": True},
            {"name": "api-ca", "mountPath": "/etc/api-ca", "readOnly": True},
        ],
    }  # fmt: skip
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "player", "namespace": namespace},
        "spec": {
            "serviceAccountName": "player",
            "hostAliases": [{"ip": service["spec"]["clusterIP"], "hostnames": [host]}],
            "containers": [container],
            "terminationGracePeriodSeconds": 1,
            "volumes": [
                {"name": "token", "projected": {"sources": [{"serviceAccountToken": token}]}},
                {"name": "api-ca", "configMap": {"name": "api-ca"}},
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps(pod))
    return "player"


def test_a_client_pod_keeps_its_session_alive_through_the_service_until_it_is_deleted(
    release: Release, operator_image: str
) -> None:
    cluster = release.cluster
    with fresh_namespace(cluster) as namespace:
        # The TTL leaves room for the client Pod to start on a busy machine.
        lease = {"lease": {"ttlSeconds": CLIENT_TTL_SECONDS, "heartbeatIntervalSeconds": 2}}
        create_session(cluster, namespace, "game", lease)
        body, _ = wait_for_state(cluster, namespace, "game", {"ready"}, timeout=30)
        first_expiry = status_time(body, "leaseExpiresAt")
        client = heartbeat_client_pod(release, namespace, "game", operator_image)

        def beaten() -> bool:
            return "lastHeartbeat" in read_session(cluster, namespace, "game")["status"]

        def client_log() -> str:
            return pod_logs(cluster, namespace, client)

        assert wait_for(beaten, timeout=CLIENT_TTL_SECONDS), client_log() + release.logs()
        # Alive past the lease it was created with: the beats moved it.
        past_first_expiry = (first_expiry - datetime.now(UTC)).total_seconds() + 3
        time.sleep(max(0.0, past_first_expiry))
        status = read_session(cluster, namespace, "game")["status"]
        assert status["state"] == "ready", client_log()
        assert status_time({"status": status}, "leaseExpiresAt") > first_expiry
        cluster.kubectl("delete", "pod", client, "-n", namespace, "--wait=true")
        body, _ = wait_for_state(
            cluster, namespace, "game", {"stopped"}, timeout=CLIENT_TTL_SECONDS + 10
        )
        assert body["status"]["stopReason"] == "LEASE_EXPIRED"


def test_helm_upgrade_keeps_the_ca(release: Release) -> None:
    def ca() -> str:
        return release.cluster.kubectl(
            "get", "secret", TLS_SECRET, "-n", release.namespace, "-o", "jsonpath={.data.ca\\.crt}"
        ).stdout

    before = ca()
    assert before
    release.helm_run(
        "upgrade", RELEASE, str(CHART), *release.values, "--set=config.logLevel=DEBUG",
        "--wait", "--timeout=4m",
    )  # fmt: skip
    assert ca() == before
    assert wait_for(lambda: len(release.ready_pods()) == 2, timeout=120), release.logs()


def test_helm_uninstall_leaves_the_crd_and_the_sessions(release: Release) -> None:
    cluster = release.cluster
    with fresh_namespace(cluster) as namespace:
        create_session(
            cluster,
            namespace,
            "kept",
            {"lease": {"ttlSeconds": 600, "heartbeatIntervalSeconds": 5}},
        )
        wait_for_state(cluster, namespace, "kept", {"ready"}, timeout=30)
        release.helm_run("uninstall", RELEASE, "--wait", "--timeout=2m")
        assert cluster.kubectl("get", "crd", "sessions.xg2g.io", check=False).returncode == 0
        assert read_session(cluster, namespace, "kept")["status"]["state"] == "ready"
