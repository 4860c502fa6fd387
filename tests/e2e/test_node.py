"""On a real node: a session's Pod really runs, the kubelet reports it Ready, and expiry
deletes it from the node (docs/node.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.engine import DockerEngine
from harness.operator_process import OperatorProcess
from tests.e2e.conftest import Cluster, fresh_namespace, running_operator, wait_for
from tests.e2e.node import cluster_with_node, pod, web_pod_template
from tests.e2e.sessions import create_session, read_session, wait_for_state

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node_cluster(
    docker_engine: DockerEngine, operator_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A control plane of this module's own with a Ready node."""
    with cluster_with_node(docker_engine, operator_image, tmp_path_factory.mktemp("node")) as found:
        yield found


@pytest.fixture(scope="module")
def local_operator(
    node_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator as a process on the machine, against the node's control plane."""
    yield from running_operator(node_cluster, tmp_path_factory, expiry_check_interval="2s")


@pytest.fixture
def node_namespace(node_cluster: Cluster) -> Iterator[str]:
    """A fresh namespace of the node's cluster."""
    with fresh_namespace(node_cluster) as name:
        yield name


def test_template_pod_runs_on_the_node_and_its_session_goes_starting_then_ready(
    node_cluster: Cluster, local_operator: OperatorProcess, node_namespace: str, operator_image: str
) -> None:
    template = web_pod_template(operator_image)
    lease = {"lease": {"ttlSeconds": 600, "heartbeatIntervalSeconds": 5}}
    create_session(node_cluster, node_namespace, "web", {**lease, "template": template})
    wait_for_state(node_cluster, node_namespace, "web", {"starting"}, timeout=10)
    body, _ = wait_for_state(node_cluster, node_namespace, "web", {"ready"}, timeout=90)
    assert body["status"]["state"] == "ready"
    running = pod(node_cluster, node_namespace, "web")
    assert running is not None
    assert running["spec"]["nodeName"] == "xg2g-node"
    assert running["status"]["podIP"].startswith("10.88.0.")
    statuses = running["status"]["containerStatuses"]
    assert statuses[0]["ready"] is True
    assert "running" in statuses[0]["state"]


def test_expiry_deletes_the_pod_from_the_node(
    node_cluster: Cluster, local_operator: OperatorProcess, node_namespace: str, operator_image: str
) -> None:
    template = web_pod_template(operator_image)
    lease = {"lease": {"ttlSeconds": 20, "heartbeatIntervalSeconds": 5}}
    create_session(node_cluster, node_namespace, "brief", {**lease, "template": template})
    wait_for_state(node_cluster, node_namespace, "brief", {"ready"}, timeout=90)
    assert pod(node_cluster, node_namespace, "brief") is not None
    body, _ = wait_for_state(node_cluster, node_namespace, "brief", {"stopped"}, timeout=60)
    assert body["status"]["stopReason"] == "LEASE_EXPIRED"
    # A Pod on a node is gone only once the kubelet has stopped its containers.
    assert wait_for(lambda: pod(node_cluster, node_namespace, "brief") is None, timeout=30)
    assert read_session(node_cluster, node_namespace, "brief")["status"]["state"] == "stopped"
