"""Fixtures that run the e2e suite against a real kube-apiserver backed by a real etcd.

By default the suite starts its own local control plane (etcd, kube-apiserver,
kube-controller-manager) once per test session. Set ``E2E_KUBECONFIG`` to run the
same tests against an existing cluster instead (kind, a dev cluster).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import yaml

from harness import Kubectl, LocalControlPlane, ensure_built, toolchain
from harness.binaries import ensure_tool, go_tool
from harness.debian_packages import PackageError
from harness.engine import DockerEngine, EngineError
from harness.image import build_operator_image
from harness.operator_process import OperatorProcess

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


@contextmanager
def fresh_namespace(cluster: Cluster) -> Iterator[str]:
    """A new namespace of *cluster*, deleted (without waiting) when the block ends."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    with fresh_namespace(cluster) as name:
        yield name


def _install_crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/sessions.xg2g.io")


def as_from_a_terminal() -> None:
    """``preexec_fn`` of a command a test interrupts as Ctrl-C would: SIGINT at its default,
    as a terminal's shell starts a foreground command. A background job of a
    non-interactive shell (CI's) starts with SIGINT ignored, and so would the command:
    Python keeps an ignored SIGINT ignored, and the interrupt would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll *condition* until it holds (True) or *timeout* seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator, running for the whole e2e session (tests may stop and restart it)."""
    yield from running_operator(cluster, tmp_path_factory, expiry_check_interval="10s")


def running_operator(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, expiry_check_interval: str
) -> Iterator[OperatorProcess]:
    """The operator as a process on the machine against *cluster*, stopped afterwards."""
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(
        cluster.kubeconfig,
        log_path,
        {"XG2G_SESSION_EXPIRY_CHECK_INTERVAL": expiry_check_interval},
    )
    process.start()
    yield process
    process.stop()


@contextmanager
def operator_instead(
    cluster: Cluster, operator: OperatorProcess, log_path: Path, env: dict[str, str]
) -> Iterator[OperatorProcess]:
    """An operator configured by *env*, run in place of the shared *operator*, which is
    started again afterwards."""
    operator.stop()
    special = OperatorProcess(cluster.kubeconfig, log_path, env)
    try:
        special.start()
        yield special
    finally:
        special.stop()
        operator.start()


HEARTBEAT_AUDIENCE = "session-heartbeat"
"""The token audience the ``heartbeat_api`` fixture is configured for."""


@pytest.fixture(scope="session")
def heartbeat_api(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """``session-operator serve-api`` alone (no kopf): tokens must have the audience
    :data:`HEARTBEAT_AUDIENCE`, and auth decisions are cached for one second only."""
    log_path = tmp_path_factory.mktemp("serve-api") / "serve-api.log"
    process = OperatorProcess(
        cluster.kubeconfig,
        log_path,
        {
            "XG2G_SESSION_TOKEN_AUDIENCES": HEARTBEAT_AUDIENCE,
            "XG2G_SESSION_AUTH_CACHE_TTL": "1s",
        },
        command="serve-api",
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def heartbeat_role(cluster: Cluster) -> str:
    """The ClusterRole ``session-heartbeat`` of manifests/ (rendered from the chart), applied;
    its name."""
    manifest = REPO / "manifests" / "session-heartbeat-clusterrole.yaml"
    cluster.kubectl("apply", "-f", str(manifest))
    return "session-heartbeat"


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary, built into the binary cache on first use."""
    return ensure_tool(go_tool("helm", REPO), REPO).binary


@contextmanager
def private_control_plane(*apiserver_args: str) -> Iterator[Cluster]:
    """A control plane of its own, without CRDs, for tests that install cluster-wide objects
    (RBAC, admission policies, an operator of their own) or start the apiserver with
    *apiserver_args*, which the shared ``cluster`` must not see. Skips the test when
    ``E2E_KUBECONFIG`` names an external cluster."""
    if os.environ.get("E2E_KUBECONFIG"):
        pytest.skip("needs an apiserver of its own; E2E_KUBECONFIG names a shared cluster")
    chain = ensure_built(toolchain(repo_root=REPO))
    with LocalControlPlane(chain, apiserver_args=apiserver_args) as control_plane:
        yield Cluster(control_plane.kubeconfig, control_plane.kubectl, control_plane)


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[Cluster]:
    """:func:`private_control_plane`, shared by the tests of one module."""
    with private_control_plane() as cluster:
        yield cluster


def kubeconfig_for_token(cluster: Cluster, token: str, path: Path) -> Path:
    """Write at *path* a kubeconfig for *cluster*'s current server that authenticates with
    the bearer *token* only (a ServiceAccount's, say); return *path*."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": server["cluster"]}],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "token", "context": {"cluster": "cluster", "user": "token"}}],
        "current-context": "token",
    }
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


def unavailable(reason: str) -> NoReturn:
    """Skip the test because this machine cannot run it, saying why; in CI (``CI`` set, as
    ``.ci/run`` does) fail it instead: there every test must run."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason} (CI is set: this test must run here)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """The harness's own Docker engine (``make engine`` installs it), shared by the session."""
    engine = DockerEngine()
    try:
        engine.start()
    except EngineError as error:
        unavailable(f"no Docker engine: {error}")
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def operator_image(docker_engine: DockerEngine) -> str:
    """The operator image, built from this checkout (quick once ``make image`` has built it:
    only what changed is built again); its tag."""
    try:
        return build_operator_image(docker_engine, repo_root=REPO).tag
    except PackageError as error:
        unavailable(f"cannot make the image's Debian base: {error}")
