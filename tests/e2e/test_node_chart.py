"""The chart on a real node: ``helm install`` runs the operator as a Deployment of two
replicas, Ready through their probes; the leader's Pod deleted, the other takes over
within the Lease's timing and no session is lost (docs/node.md).

The admission webhook is off: the apiserver runs on the machine's loopback and cannot
reach a Service of the node (docs/node.md, the network).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.engine import DockerEngine
from tests.e2e.conftest import Cluster, fresh_namespace, wait_for
from tests.e2e.node import cluster_with_node
from tests.e2e.sessions import create_session, read_session, wait_for_state

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "session-lease-operator"
RELEASE = "slo"
FULLNAME = f"{RELEASE}-session-lease-operator"
LEADER_LEASE = "session-lease-operator"
# client-go's timings, which the operator keeps: a Lease of 15 s, retried every 2 s.
LEASE_SECONDS = 15


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
        return self.cluster.kubectl(
            "logs", "-n", self.namespace, "-l", f"app.kubernetes.io/instance={RELEASE}",
            "--tail=40", "--prefix", check=False,
        ).stdout  # fmt: skip


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
        took_over = wait_for(
            lambda: release.leader() not in ("", old_leader), timeout=LEASE_SECONDS + 30
        )
        assert took_over, release.logs()
        failover = time.monotonic() - deleted
        print(f"failover in {failover:.1f}s")
        # The new leader works: a session created now expires on time.
        create_session(
            cluster, namespace, "after", {"lease": {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}}
        )
        body, _ = wait_for_state(cluster, namespace, "after", {"stopped"}, timeout=30)
        assert body["status"]["stopReason"] == "LEASE_EXPIRED"
        for name in names:
            assert read_session(cluster, namespace, name)["status"]["state"] == "ready"
    assert failover < LEASE_SECONDS + 20
