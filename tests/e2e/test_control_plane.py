"""The local control plane behaves like a real cluster: version, tokens, garbage collection;
and takes no unauthenticated client, at etcd or at the apiserver."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.cluster import LocalControlPlane
from harness.etcd_certificates import write_etcd_certificates
from tests.e2e.conftest import Cluster, as_from_a_terminal, wait_for

REPO = Path(__file__).resolve().parents[2]


def test_apiserver_reports_the_pinned_kubernetes_version(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    server = version["serverVersion"]
    assert server["gitVersion"].startswith("v1.")
    assert server["gitVersion"] == version["clientVersion"]["gitVersion"]
    assert server["minor"] == server["gitVersion"].split(".")[1]


def test_service_account_token_passes_token_review(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "probe", "-n", namespace)
    token = cluster.kubectl("create", "token", "probe", "-n", namespace).stdout.strip()
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    }
    result = cluster.kubectl("create", "-o", "json", "-f", "-", input_text=json.dumps(review))
    status = json.loads(result.stdout)["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == f"system:serviceaccount:{namespace}:probe"


def test_garbage_collector_deletes_dependents_of_a_deleted_owner(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = cluster.kubectl(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}
            ],
        },
    }
    cluster.kubectl("create", "-f", "-", input_text=json.dumps(dependent))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)

    def dependent_gone() -> bool:
        found = cluster.kubectl("get", "configmap", "dependent", "-n", namespace, check=False)
        return found.returncode != 0 and "NotFound" in found.stderr

    assert wait_for(dependent_gone, timeout=30), "the garbage collector left the dependent"


def test_etcd_answers_only_a_client_with_a_certificate_of_its_own_ca(
    cluster: Cluster, tmp_path: Path
) -> None:
    plane = local_control_plane(cluster)
    health = f"{plane.etcd_url}/health"
    trusting_etcd = ssl.create_default_context(cafile=str(plane.etcd_certificates.ca))
    another_ca = write_etcd_certificates(tmp_path / "another-ca")
    with_a_stranger_certificate = ssl.create_default_context(cafile=str(plane.etcd_certificates.ca))
    with_a_stranger_certificate.load_cert_chain(
        str(another_ca.client_certificate), str(another_ca.client_key)
    )

    assert status_of(health, plane.etcd_client_context()) == 200
    assert status_of(health, trusting_etcd) == "refused"
    assert status_of(health, with_a_stranger_certificate) == "refused"
    assert status_of(health.replace("https://", "http://"), None) == "refused"


def test_the_apiserver_answers_an_anonymous_request_401(cluster: Cluster) -> None:
    plane = local_control_plane(cluster)
    trusting_the_apiserver = ssl.create_default_context(cafile=str(plane.ca_file))
    # What the apiserver shows anonymous clients when they are allowed: none is now.
    for path in ("/version", "/healthz", "/api/v1/namespaces/default/secrets"):
        assert status_of(plane.server + path, trusting_the_apiserver) == 401, path


def local_control_plane(cluster: Cluster) -> LocalControlPlane:
    """The control plane the suite started; skips the test on an external cluster."""
    if cluster.control_plane is None:
        pytest.skip("needs the local control plane; E2E_KUBECONFIG names another cluster")
    return cluster.control_plane


def status_of(url: str, context: ssl.SSLContext | None) -> int | str:
    """The HTTP status a GET of *url* with *context* gets, or "refused" when the TLS
    handshake or the connection fails."""
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ssl.SSLError, ConnectionError):
        return "refused"


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_stopping_the_harness_leaves_no_component_running(
    cluster: Cluster, stop_signal: signal.Signals
) -> None:
    script = (
        "import sys, time\n"
        "from harness import LocalControlPlane, toolchain\n"
        "with LocalControlPlane(toolchain()) as plane:\n"
        "    print(' '.join(str(c.process.pid) for c in plane.components), flush=True)\n"
        "    time.sleep(600)\n"
    )
    harness = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "operator")},
        preexec_fn=as_from_a_terminal,
    )
    assert harness.stdout is not None
    pids = [int(pid) for pid in harness.stdout.readline().split()]
    assert len(pids) == 3, "etcd, kube-apiserver and kube-controller-manager should run"
    harness.send_signal(stop_signal)
    harness.wait(timeout=60)
    assert wait_for(lambda: not any(_alive(pid) for pid in pids), timeout=30), (
        f"components still running after {stop_signal.name}: {[p for p in pids if _alive(p)]}"
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False
