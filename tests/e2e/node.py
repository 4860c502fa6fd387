"""A private control plane with a real node (kubelet, containerd, CNI) for the node tier.

The images the node runs are the operator image (``make image``) and the pause image,
both made on the harness's Docker engine and loaded into the node's containerd. Where the
machine cannot host a node, the tests skip saying exactly why (and fail in CI).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import LocalControlPlane, ensure_built, toolchain
from harness.engine import DockerEngine
from harness.netns import NamespaceError
from harness.node import LocalNode, NodeError, node_unavailable_reason
from harness.node_images import NodeImageError, build_pause_image, save_images
from tests.e2e.conftest import REPO, Cluster, unavailable

READY_ON_HTTP = {
    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
}


@contextmanager
def cluster_with_node(engine: DockerEngine, operator_image: str, files: Path) -> Iterator[Cluster]:
    """A control plane of its own with CRDs and one Ready node that holds *operator_image*."""
    chain = ensure_built(toolchain(repo_root=REPO), REPO, node=True)
    reason = node_unavailable_reason(chain)
    if reason:
        unavailable(f"this machine cannot host a node: {reason}")
    archive = save_images(
        engine, [build_pause_image(engine, REPO), operator_image], files / "images.tar"
    )
    with LocalControlPlane(chain) as control_plane:
        cluster = Cluster(control_plane.kubeconfig, control_plane.kubectl, control_plane)
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "crd/sessions.xg2g.io"
        )
        try:
            node = LocalNode(control_plane, images=archive)
            node.start()
        except (NodeError, NamespaceError, NodeImageError) as error:
            unavailable(f"the node did not start: {error}")
        try:
            print(f"node Ready in {node.started_seconds:.1f}s")
            yield cluster
        finally:
            node.stop()


def web_pod_template(image: str) -> dict[str, Any]:
    """A Pod template running *image* as a small web server, Ready through an HTTP probe
    the kubelet makes."""
    container = {
        "name": "web",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python3", "-m", "http.server", "8080", "--directory", "/tmp"],
        **READY_ON_HTTP,
    }
    return {"spec": {"containers": [container], "terminationGracePeriodSeconds": 2}}


def pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    """The Pod as stored now; None once it is gone."""
    found = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return None
    body: dict[str, Any] = json.loads(found.stdout)
    return body


def pod_logs(cluster: Cluster, namespace: str, pod_name: str, tail: int = 40) -> str:
    """The ends of the logs of Pod *namespace*/*pod_name*'s containers, read from the node's
    log directory (``kubectl logs`` cannot reach this node's kubelet: docs/node.md), with
    the Pod's status."""
    assert cluster.control_plane is not None
    assert cluster.control_plane.workdir is not None
    logs = Path(cluster.control_plane.workdir) / "node" / "pod-logs"
    shown = [json.dumps((pod(cluster, namespace, pod_name) or {}).get("status", {}))]
    for log in sorted(logs.glob(f"{namespace}_{pod_name}_*/*/*.log")):
        lines = log.read_text(errors="replace").splitlines()[-tail:]
        shown += [f"--- {log.relative_to(logs)} ---", *lines]
    return "\n".join(shown)
