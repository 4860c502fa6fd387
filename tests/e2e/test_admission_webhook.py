"""The Session webhook on a real apiserver: the apiserver calls the operator's
``/admission/sessions`` over TLS, on the webhook's own port, and refuses a Session larger
than ``maxSessionBytes`` and a hold further ahead than ``maxHold``; the heartbeat API's
port does not serve it.

It registers a cluster-wide webhook that refuses writes while it is down, so it gets an
apiserver of its own (``private_cluster``).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness.certificates import self_signed_certificate
from harness.cluster import free_port
from tests.e2e.conftest import REPO, Cluster, OperatorProcess, fresh_namespace, wait_for
from tests.e2e.webhooks import register_size_webhook

MAX_BYTES = 16 * 1024
MAX_HOLD = "1h"
WEBHOOK = "session-size-e2e"
WEBHOOK_PORT = free_port()


@pytest.fixture(scope="module")
def webhook_api(
    private_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """``serve-api`` over TLS, registered as the Session size webhook of the cluster."""
    cluster = private_cluster
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/sessions.xg2g.io")
    directory = tmp_path_factory.mktemp("webhook")
    cert_file, key_file = self_signed_certificate(directory)
    api = OperatorProcess(
        cluster.kubeconfig,
        directory / "serve-api.log",
        {
            "XG2G_SESSION_TLS_CERT_FILE": str(cert_file),
            "XG2G_SESSION_TLS_KEY_FILE": str(key_file),
            "XG2G_SESSION_MAX_SESSION_BYTES": str(MAX_BYTES),
            "XG2G_SESSION_MAX_HOLD": MAX_HOLD,
            "XG2G_SESSION_WEBHOOK_PORT": str(WEBHOOK_PORT),
        },
        command="serve-api",
        tls=ssl.create_default_context(cafile=str(cert_file)),
    )
    api.start()
    register_size_webhook(cluster, WEBHOOK, webhook_url(), cert_file)
    yield api
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, check=False)
    api.stop()


def webhook_url() -> str:
    return f"https://127.0.0.1:{WEBHOOK_PORT}/admission/sessions"


@pytest.fixture
def namespace(private_cluster: Cluster) -> Iterator[str]:
    """A fresh namespace of the module's cluster for one test."""
    with fresh_namespace(private_cluster) as name:
        yield name


def session(namespace: str, name: str, padding: int = 0) -> dict[str, Any]:
    """A Session with a template whose Pod annotation holds *padding* bytes."""
    template = {
        "metadata": {"annotations": {"padding": "x" * padding}},
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]},
    }
    return {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "Session",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": template},
    }


def create(cluster: Cluster, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("create", "-f", "-", input_text=json.dumps(body), check=False)


def test_a_session_over_the_size_limit_is_refused_and_one_under_it_admitted(
    private_cluster: Cluster, webhook_api: OperatorProcess, namespace: str
) -> None:
    cluster = private_cluster

    def webhook_in_force() -> bool:
        probe = cluster.kubectl(
            "create", "--dry-run=server", "-f", "-",
            input_text=json.dumps(session(namespace, "probe", MAX_BYTES)), check=False,
        )  # fmt: skip
        return "session-size.xg2g.io" in probe.stderr

    assert wait_for(webhook_in_force, timeout=15)

    refused = create(cluster, session(namespace, "huge", 1024 * 1024))
    assert refused.returncode != 0
    assert "session-size.xg2g.io" in refused.stderr
    assert f"at most {MAX_BYTES} are accepted" in refused.stderr
    assert "keep large data out of spec.template" in refused.stderr
    assert cluster.kubectl("get", "session", "huge", "-n", namespace, check=False).returncode

    admitted = create(cluster, session(namespace, "small", 1024))
    assert admitted.returncode == 0, admitted.stderr

    # Growing an admitted Session past the limit (its metadata) is refused too.
    grown = cluster.kubectl(
        "annotate", "session", "small", "-n", namespace, f"padding={'y' * MAX_BYTES}",
        check=False,
    )  # fmt: skip
    assert grown.returncode != 0
    assert f"at most {MAX_BYTES} are accepted" in grown.stderr


def held_for(hours: float) -> dict[str, Any]:
    """A merge patch holding a Session *hours* from now."""
    until = (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"spec": {"hold": {"until": until}}}


def patch(
    cluster: Cluster, namespace: str, name: str, body: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "patch", "session", name, "-n", namespace, "--type=merge", "-p", json.dumps(body),
        check=False,
    )  # fmt: skip


def test_a_hold_beyond_max_hold_is_refused_with_one_sentence_naming_the_bound(
    private_cluster: Cluster, webhook_api: OperatorProcess, namespace: str
) -> None:
    cluster = private_cluster
    bound = "is more than 1h ahead, the longest hold the operator's maxHold allows: hold until"

    def created_far_hold_refused() -> bool:
        far = session(namespace, "far")
        far["spec"]["hold"] = held_for(2)["spec"]["hold"]
        probe = cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", input_text=json.dumps(far), check=False
        )
        return bound in probe.stderr

    assert wait_for(created_far_hold_refused, timeout=15)

    assert create(cluster, session(namespace, "desk")).returncode == 0
    refused = patch(cluster, namespace, "desk", held_for(2))
    assert refused.returncode != 0
    assert "session-size.xg2g.io" in refused.stderr
    assert bound in refused.stderr
    stored = cluster.kubectl("get", "session", "desk", "-n", namespace, "-o", "json").stdout
    assert "hold" not in json.loads(stored)["spec"]

    admitted = patch(cluster, namespace, "desk", held_for(0.5))
    assert admitted.returncode == 0, admitted.stderr
    # An update that leaves the hold as it is, and a release, are not checked again.
    labelled = cluster.kubectl("label", "session", "desk", "-n", namespace, "team=a", check=False)
    assert labelled.returncode == 0, labelled.stderr
    released = patch(cluster, namespace, "desk", {"spec": {"hold": None}})
    assert released.returncode == 0, released.stderr


def test_the_webhook_answers_what_is_not_a_review_with_a_problem(
    webhook_api: OperatorProcess,
) -> None:
    for url, status, detail in [
        (webhook_url(), 400, "the body is not an AdmissionReview"),
        (f"{webhook_api.url}/admission/sessions", 404, None),  # not on the API's port
    ]:
        request = urllib.request.Request(url, data=b'{"kind": "Pod"}', method="POST")
        request.add_header("Content-Type", "application/json")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5, context=webhook_api.tls)
        assert refused.value.code == status
        if detail:
            assert json.loads(refused.value.read())["detail"] == detail
