"""The operator image, run as the chart's Pod would run it, against a real apiserver.

The chart is installed on an apiserver of this module's own (its ClusterRoles must not leak
into the shared one), with the heartbeat API's certificate from a Secret of ours
(``tls.existingSecret``; the certificate names 127.0.0.1, where the container listens), the
API on a free loopback port, and no admission webhook (nothing in the cluster can reach a
container on loopback). Then the Pod of its Deployment runs as a container on the harness's
Docker engine, the way a kubelet would run it (``tests/e2e/pods.py``): as the chart's
ServiceAccount, in-cluster configuration, uid 65532, read-only root filesystem.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.certificates import self_signed_certificate
from harness.cluster import free_port
from harness.engine import DockerEngine
from tests.e2e.conftest import Cluster, fresh_namespace, wait_for
from tests.e2e.heartbeats import call, heartbeat_path, service_account
from tests.e2e.pods import PodContainer, probe_url, run_pod
from tests.e2e.sessions import create_session, wait_for_state

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "session-lease-operator"
RELEASE = "slo"
FULLNAME = f"{RELEASE}-session-lease-operator"
TLS_SECRET = "heartbeat-api-tls"
LEADER_LEASE = "session-lease-operator"
# What the kubelet grants a Pod between SIGTERM and SIGKILL, by default.
TERMINATION_GRACE_SECONDS = 30


@dataclass(frozen=True)
class OperatorPod:
    """The operator's Pod running in its container, and how to reach it."""

    container: PodContainer
    deployment: dict[str, Any]
    namespace: str
    tls: ssl.SSLContext
    """Trusts the CA of the mounted certificate, and nothing else."""

    @property
    def api(self) -> str:
        """The heartbeat API's base URL (HTTPS: the chart's TLS is on)."""
        (container,) = self.deployment["spec"]["template"]["spec"]["containers"]
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == "api")
        return f"https://127.0.0.1:{port}"

    def probe(self, kind: str) -> int:
        """The HTTP status of the container's *kind* probe; 0 if nothing answers."""
        try:
            url = probe_url(self.deployment, kind)
            with urllib.request.urlopen(url, timeout=3, context=self.tls) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    def wait_until_ready(self) -> None:
        """Wait for the readiness probe to pass; fail with the container's log if it does
        not, or if the container stops."""

        def settled() -> bool:
            return self.container.exit_code() is not None or self.ready()

        wait_for(settled, timeout=90, interval=0.5)
        assert self.ready(), (
            f"the Pod is not ready (exit code {self.container.exit_code()}):\n"
            f"{self.container.logs()[-4000:]}"
        )

    def ready(self) -> bool:
        """Whether the readiness probe passes."""
        return self.probe("readinessProbe") == 200


@pytest.fixture(scope="module")
def operator_pod(
    docker_engine: DockerEngine,
    operator_image: str,
    private_cluster: Cluster,
    helm: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorPod]:
    """The chart installed, and its operator Pod started in a container."""
    cluster, files = private_cluster, tmp_path_factory.mktemp("pod")
    namespace = f"slo-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    cert_file, key_file = self_signed_certificate(files)
    cluster.kubectl(
        "create", "secret", "generic", TLS_SECRET, "-n", namespace, "--type=kubernetes.io/tls",
        f"--from-file=tls.crt={cert_file}", f"--from-file=tls.key={key_file}",
        f"--from-file=ca.crt={cert_file}",
    )  # fmt: skip
    repository, tag = operator_image.rsplit(":", 1)
    install = [
        "install", RELEASE, str(CHART), "-n", namespace, f"--kubeconfig={cluster.kubeconfig}",
        f"--set=image.repository={repository}", f"--set=image.tag={tag}",
        "--set=image.pullPolicy=Never", "--set=replicaCount=1",
        f"--set=tls.existingSecret={TLS_SECRET}", "--set=admissionWebhook.enabled=false",
        "--set=config.apiHost=127.0.0.1", f"--set=config.apiPort={free_port()}",
        f"--set=config.probePort={free_port()}",
        "--set=config.expiryCheckInterval=2s", "--set=config.logFormat=text",
    ]  # fmt: skip
    installed = subprocess.run(
        [str(helm), *install], capture_output=True, text=True, timeout=300, check=False
    )
    assert installed.returncode == 0, f"helm install failed: {installed.stderr}"
    deployment = json.loads(
        cluster.kubectl("get", "deployment", FULLNAME, "-n", namespace, "-o", "json").stdout
    )
    pod = f"{FULLNAME}-{uuid.uuid4().hex[:5]}"
    container = run_pod(docker_engine, cluster, deployment, pod, files)
    tls = ssl.create_default_context(cafile=str(cert_file))
    yield OperatorPod(container, deployment, namespace, tls)
    container.remove()


def leader_of(cluster: Cluster, namespace: str) -> str:
    """The holder of the operator's leader Lease in *namespace* ('' when nobody holds it)."""
    lease = cluster.kubectl(
        "get", "lease", LEADER_LEASE, "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}",
        check=False,
    )  # fmt: skip
    return lease.stdout.strip()


def test_session_operator_help_runs_in_the_image(
    docker_engine: DockerEngine, operator_image: str
) -> None:
    shown = docker_engine.docker(
        "run", "--rm", "--network=none", "--read-only", operator_image, "--help"
    )  # fmt: skip
    assert shown.stdout.startswith("usage: session-operator")
    assert "{run,serve-api,heartbeat}" in shown.stdout
    config = json.loads(
        docker_engine.docker("image", "inspect", "--format={{json .Config}}", operator_image).stdout
    )
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["session-operator"]
    assert config["Cmd"] == ["run"]


def test_the_pod_becomes_ready_through_its_readiness_probe(
    operator_pod: OperatorPod, private_cluster: Cluster
) -> None:
    operator_pod.wait_until_ready()
    assert operator_pod.probe("livenessProbe") == 200
    # In-cluster configuration, as its ServiceAccount: it holds the leader Lease it may write.
    pod = operator_pod.container.name
    assert wait_for(
        lambda: leader_of(private_cluster, operator_pod.namespace).startswith(f"{pod}_"),
        timeout=30,
    ), operator_pod.container.logs()[-4000:]


def test_a_heartbeat_over_tls_with_the_certificate_of_the_mounted_secret(
    operator_pod: OperatorPod, private_cluster: Cluster
) -> None:
    operator_pod.wait_until_ready()
    assert operator_pod.api.startswith("https://127.0.0.1:")
    lease = {"lease": {"ttlSeconds": 600, "heartbeatIntervalSeconds": 1}}
    with fresh_namespace(private_cluster) as namespace:
        create_session(private_cluster, namespace, "living-room", lease)
        wait_for_state(private_cluster, namespace, "living-room", {"ready"}, timeout=30)
        token = service_account(private_cluster, namespace, "player", bind_in=namespace)
        url = operator_pod.api + heartbeat_path(namespace, "living-room")
        reply = call("POST", url, token, tls=operator_pod.tls)
    assert reply.status == 200, (reply.body, operator_pod.container.logs()[-4000:])
    assert reply.body["acknowledged"] is True


def test_a_session_whose_client_stops_beating_expires(
    operator_pod: OperatorPod, private_cluster: Cluster
) -> None:
    operator_pod.wait_until_ready()
    lease = {"lease": {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}}
    with fresh_namespace(private_cluster) as namespace:
        create_session(private_cluster, namespace, "forgotten", lease)
        body, _ = wait_for_state(
            private_cluster, namespace, "forgotten", {"stopped"}, timeout=30
        )  # fmt: skip
    assert body["status"]["stopReason"] == "LEASE_EXPIRED"


def test_sigterm_stops_the_operator_cleanly_and_promptly(
    operator_pod: OperatorPod, private_cluster: Cluster
) -> None:
    # The module's last test: the Pod does not run after it.
    operator_pod.wait_until_ready()
    started = time.monotonic()
    operator_pod.container.send_signal("TERM")
    code = operator_pod.container.wait_for_exit(timeout=TERMINATION_GRACE_SECONDS)
    seconds = time.monotonic() - started
    logs = operator_pod.container.logs()
    assert code == 0, logs[-4000:]
    assert seconds < 10, f"took {seconds:.1f}s to stop"
    assert "Traceback" not in logs
    assert leader_of(private_cluster, operator_pod.namespace) == ""  # released on the way out
