"""What the heartbeat API makes of the apiserver's TokenReview answers, on real apiservers:
a token for another audience is refused (401), and a token the apiserver could not judge,
because its authentication webhook is down, is 503 and asked about again (not cached)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.cluster import free_port
from tests.e2e.conftest import (
    REPO,
    Cluster,
    OperatorProcess,
    fresh_namespace,
    private_control_plane,
)
from tests.e2e.heartbeats import call, create_token, heartbeat_path, ready_session

LONG_LEASE = {"lease": {"ttlSeconds": 120, "heartbeatIntervalSeconds": 2}}


def test_a_token_for_the_apiservers_own_audience_is_refused(
    cluster: Cluster, operator: OperatorProcess, heartbeat_role: str, namespace: str
) -> None:
    ready_session(cluster, namespace, "s", LONG_LEASE)
    cluster.kubectl("create", "serviceaccount", "player", "-n", namespace)
    cluster.kubectl(
        "create", "rolebinding", "player", "-n", namespace, f"--clusterrole={heartbeat_role}",
        f"--serviceaccount={namespace}:player",
    )  # fmt: skip
    url = operator.url + heartbeat_path(namespace, "s")
    # The token a Pod gets by default: a credential for the apiserver, not for this API.
    apiserver_token = create_token(cluster, namespace, "player", audience=None)
    refused = call("POST", url, apiserver_token)
    assert refused.status == 401, refused
    assert call("POST", url, create_token(cluster, namespace, "player")).status == 200


@pytest.fixture(scope="module")
def cluster_with_a_dead_authenticator(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """A control plane whose token authentication webhook listens nowhere."""
    directory = tmp_path_factory.mktemp("authn")
    webhook = directory / "authn-webhook.yaml"
    server = f"https://127.0.0.1:{free_port()}/authenticate"
    webhook.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "authn", "cluster": {"server": server}}],
                "users": [{"name": "apiserver", "user": {}}],
                "contexts": [
                    {"name": "authn", "context": {"cluster": "authn", "user": "apiserver"}}
                ],
                "current-context": "authn",
            }
        )
    )
    with private_control_plane(
        f"--authentication-token-webhook-config-file={webhook}",
        "--authentication-token-webhook-cache-ttl=0s",
    ) as cluster:
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/sessions.xg2g.io")
        yield cluster


def test_a_token_the_apiserver_cannot_judge_is_503_and_not_cached(
    cluster_with_a_dead_authenticator: Cluster, tmp_path: Path
) -> None:
    cluster = cluster_with_a_dead_authenticator
    with fresh_namespace(cluster) as namespace:
        _beat_with_a_dead_authenticator(cluster, namespace, tmp_path)


def _beat_with_a_dead_authenticator(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    ready = {"lease": {"ttlSeconds": 120, "heartbeatIntervalSeconds": 2}}
    api = OperatorProcess(
        cluster.kubeconfig, tmp_path / "serve-api.log", {"XG2G_SESSION_AUTH_CACHE_TTL": "60s"},
        command="serve-api",
    )  # fmt: skip
    api.start()
    try:
        cluster.kubectl(
            "apply", "-f", "-",
            input_text=yaml.safe_dump({
                "apiVersion": "xg2g.io/v1alpha1", "kind": "Session",
                "metadata": {"name": "s", "namespace": namespace}, "spec": ready,
            }),
        )  # fmt: skip
        url = api.url + heartbeat_path(namespace, "s")
        # Not a JWT: only the (dead) webhook could say whose it is.
        for _ in range(2):
            reply = call("POST", url, "opaque-token-of-an-sso-user")
            assert reply.status == 503, reply
            assert reply.headers["Retry-After"] == "1"
            assert reply.body["type"].endswith("/authentication-unavailable")
        reviews = api.log_path.read_text()
        assert "Traceback" not in reviews
    finally:
        api.stop()
