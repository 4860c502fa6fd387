"""The local control plane behaves like a real cluster: version, tokens, garbage collection;
and takes no unauthenticated client, at etcd or at the apiserver."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.cluster import LocalControlPlane, free_port
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


def make_run(**env: str) -> subprocess.Popen[str]:
    """``python -m harness run`` (what ``make run`` runs) with no
    KUBECONFIG, so on a local control plane of its own."""
    base = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**base, **env},
        preexec_fn=as_from_a_terminal,
    )


def try_it_commands() -> list[str]:
    """The shell commands of the README's "Try it", in order."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```sh\n")[1:]
    return [line for block in blocks for line in block.split("```", 1)[0].splitlines() if line]


def test_make_run_prints_its_lines_once_listening_and_the_readme_try_it_works(
    cluster: Cluster, tmp_path: Path
) -> None:
    port = free_port()
    run = make_run(XG2G_SESSION_API_PORT=str(port))
    assert run.stdout is not None
    printed: list[str] = []
    try:
        for line in run.stdout:
            printed.append(line.rstrip("\n"))
            if line.startswith("A Session with spec.template stays"):
                break
        # By the time the lines are printed, the API they name answers.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200
        text = "\n".join(printed)
        assert f"heartbeat living-room -n default --url http://127.0.0.1:{port}" in text
        exports = [line.strip() for line in printed if "export KUBECONFIG=" in line]
        kubeconfig = exports[0].split("=", 1)[1]

        # The README's commands, word for word but for the paths make run printed and the
        # port this test chose; `get -w` watches until it is stopped.
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "kubectl").symlink_to(cluster.kubectl.binary)
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        script = [f"export KUBECONFIG={kubeconfig}"]
        for command in try_it_commands():
            command = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            if command.startswith("export KUBECONFIG="):
                continue
            if command.endswith(" -w") or command.endswith(" -v"):
                command = f"timeout 4 {command} || test $? -eq 124"
            elif "--once" in command:
                command = f"until {command}; do sleep 1; done"  # until the session has a lease
            script.append(command)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, (script, done.stdout, done.stderr)
        assert "living-room" in done.stdout
        assert '"acknowledged":true' in done.stdout
        assert "default/living-room: lease until " in done.stdout
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)


def test_make_run_on_a_taken_port_says_so_in_one_line_and_prints_no_usage(
    cluster: Cluster,
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = make_run(XG2G_SESSION_API_PORT=str(port))
        out, err = run.communicate(timeout=120)
    assert run.returncode == 1, err
    assert "curl" not in out
    assert f"cannot listen on 127.0.0.1 port {port}: already in use" in err
    assert "Traceback" not in err
    assert "was never awaited" not in err
