"""Fixtures that run the e2e suite against a real kube-apiserver backed by a real etcd.

By default the suite starts its own local control plane (etcd, kube-apiserver,
kube-controller-manager) once per test session. Set ``E2E_KUBECONFIG`` to run the
same tests against an existing cluster instead (kind, a dev cluster).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from session_operator.devcluster import Kubectl, LocalControlPlane, ensure_built, toolchain

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Cluster:
    """What a test needs of a cluster: its kubeconfig, a matching kubectl, the processes."""

    kubeconfig: Path
    kubectl: Kubectl
    control_plane: LocalControlPlane | None


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A running cluster with the CRDs installed, shared by the whole e2e session."""
    chain = ensure_built(toolchain(repo_root=REPO))
    external = os.environ.get("E2E_KUBECONFIG")
    if external:
        found = Cluster(Path(external), Kubectl(chain.kubectl, Path(external)), None)
        _install_crds(found)
        yield found
        return
    with LocalControlPlane(chain) as control_plane:
        found = Cluster(control_plane.kubeconfig, control_plane.kubectl, control_plane)
        _install_crds(found)
        yield found


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _install_crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/sessions.xg2g.io")


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll *condition* until it holds (True) or *timeout* seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
