"""SessionPolicies on the real control plane (docs/lease-rules.md, "Session policies"): the
admission policy refuses a Session out of a bound with one sentence naming the bound and
the policy, a template where a policy forbids it, and admits anything where there is no
policy; the operator's webhook refuses a hold beyond the policy's maximum; the operator
gives a Session that leaves a field out the policy's default at initialise; and users
with the edit or admin role create Sessions but cannot change a policy.

Everything is installed from manifests/ (CRDs, RBAC, the admission policies), which are
cluster-wide objects, so the module has an apiserver of its own (``private_cluster``); the
operator runs as a local process with the manifests' ServiceAccount's token.
"""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.certificates import self_signed_certificate
from harness.cluster import free_port
from harness.operator_process import OperatorProcess
from session_operator.timestamps import format_timestamp, parse_timestamp
from tests.e2e.conftest import (
    REPO,
    Cluster,
    fresh_namespace,
    kubeconfig_for_token,
    wait_for,
)
from tests.e2e.heartbeats import create_token
from tests.e2e.sessions import session_events, wait_for_state
from tests.e2e.test_install import user_bound_to
from tests.e2e.webhooks import register_size_webhook

RELEASE_NAMESPACE = "session-lease-operator"
OPERATOR_USER = f"system:serviceaccount:{RELEASE_NAMESPACE}:session-lease-operator"
ADMISSION_POLICY = "session-lease-operator-session-policy"
POD_TEMPLATE = {"spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]}}
GPU_LIMITS = {
    "lease": {
        "ttlSeconds": {"default": 300, "min": 30, "max": 3600},
        "heartbeatIntervalSeconds": {"default": 10, "min": 5, "max": 60},
        "maxLifetimeSeconds": {"min": 600, "max": 86400},
    },
    "startTimeoutSeconds": {"min": 60, "max": 1800},
}


@pytest.fixture(scope="module")
def installed(private_cluster: Cluster) -> Cluster:
    """The module's apiserver with manifests/ applied (no kubelet: the Deployment's Pods
    never start; the operator runs as a process below)."""
    cluster = private_cluster
    cluster.kubectl("apply", "-f", str(REPO / "manifests"))
    for crd in ("sessions.xg2g.io", "sessionpolicies.xg2g.io"):
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd}")
    return cluster


def operator_kubeconfig(cluster: Cluster, directory: Path) -> Path:
    """A kubeconfig with a token of the manifests' ServiceAccount, nothing more."""
    token = create_token(cluster, RELEASE_NAMESPACE, "session-lease-operator", audience=None)
    return kubeconfig_for_token(cluster, token, directory / "kubeconfig")


@pytest.fixture(scope="module")
def operator_as_its_service_account(
    installed: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """The operator with the token of the manifests' ServiceAccount, nothing more."""
    directory = tmp_path_factory.mktemp("operator")
    process = OperatorProcess(
        operator_kubeconfig(installed, directory),
        directory / "operator.log",
        {
            "POD_NAME": "operator-0",
            "POD_NAMESPACE": RELEASE_NAMESPACE,
            "XG2G_SESSION_LEADER_ELECTION_NAMESPACE": RELEASE_NAMESPACE,
        },
    )
    process.start()
    yield
    process.stop()
    denials = [
        line
        for line in process.log_path.read_text().splitlines()
        if f'User "{OPERATOR_USER}" cannot' in line
    ]
    assert denials == []


@pytest.fixture
def namespace(installed: Cluster) -> Iterator[str]:
    """A fresh namespace of the module's cluster for one test."""
    with fresh_namespace(installed) as name:
        yield name


def session_body(namespace: str, name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "xg2g.io/v1alpha1",
            "kind": "Session",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def create(
    cluster: Cluster, namespace: str, name: str, spec: dict[str, Any], *extra: str
) -> subprocess.CompletedProcess[str]:
    """``kubectl create`` of a Session with *spec*, as the admin unless *extra* says."""
    body = session_body(namespace, name, spec)
    return cluster.kubectl("create", "-f", "-", *extra, input_text=body, check=False)


def refusal(cluster: Cluster, namespace: str, spec: dict[str, Any]) -> str:
    """What the admission policy says to a Session with *spec* (a server dry run); ``""``
    when it admits it."""
    result = create(cluster, namespace, "probe", spec, "--dry-run=server")
    if result.returncode == 0:
        return ""
    prefix = f"ValidatingAdmissionPolicy '{ADMISSION_POLICY}'"
    assert prefix in result.stderr, result.stderr
    return result.stderr.strip().partition(" denied request: ")[2]


def apply_policy(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    """A SessionPolicy, applied by the cluster admin."""
    body = {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "SessionPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps(body))


def in_force(cluster: Cluster, namespace: str, refused_spec: dict[str, Any]) -> None:
    """Wait until the admission policy refuses *refused_spec*: the apiserver takes a new
    policy, and a new SessionPolicy, up a moment after they are stored."""
    assert wait_for(lambda: refusal(cluster, namespace, refused_spec) != "", timeout=20)


def lease(ttl: int, interval: int, **more: int) -> dict[str, Any]:
    return {"lease": {"ttlSeconds": ttl, "heartbeatIntervalSeconds": interval, **more}}


def test_a_session_out_of_each_bound_is_refused_with_one_sentence(
    installed: Cluster, namespace: str
) -> None:
    cluster = installed
    apply_policy(cluster, namespace, "gpu-limits", GPU_LIMITS)
    in_force(cluster, namespace, lease(7200, 10))
    template = {"template": POD_TEMPLATE}
    by = f"set by SessionPolicy gpu-limits in namespace {namespace}"
    cases = [
        (lease(7200, 10), "spec.lease.ttlSeconds 7200 is above the maximum 3600"),
        (lease(15, 5), "spec.lease.ttlSeconds 15 is below the minimum 30"),
        (lease(300, 90), "spec.lease.heartbeatIntervalSeconds 90 is above the maximum 60"),
        (lease(300, 2), "spec.lease.heartbeatIntervalSeconds 2 is below the minimum 5"),
        (
            lease(300, 10, maxLifetimeSeconds=90000),
            "spec.lease.maxLifetimeSeconds 90000 is above the maximum 86400",
        ),
        (
            lease(300, 10, maxLifetimeSeconds=300),
            "spec.lease.maxLifetimeSeconds 300 is below the minimum 600",
        ),
        (
            {**template, "startTimeoutSeconds": 3600},
            "spec.startTimeoutSeconds 3600 is above the maximum 1800",
        ),
        (
            {**template, "startTimeoutSeconds": 30},
            "spec.startTimeoutSeconds 30 is below the minimum 60",
        ),
    ]
    answers = [(refusal(cluster, namespace, spec), f"{sentence} {by}") for spec, sentence in cases]
    assert [said for said, _ in answers] == [expected for _, expected in answers]

    # For real, not only a dry run: refused, and nothing is stored.
    refused = create(cluster, namespace, "greedy", lease(7200, 10))
    assert refused.returncode != 0
    assert "(Forbidden)" in refused.stderr
    assert refused.stderr.strip().endswith(
        f"denied request: spec.lease.ttlSeconds 7200 is above the maximum 3600 {by}"
    )
    assert cluster.kubectl("get", "sessions", "-n", namespace, "-o", "name").stdout == ""
    # On every bound, or a field left out (the operator's to fill): admitted.
    assert refusal(cluster, namespace, lease(3600, 60, maxLifetimeSeconds=86400)) == ""
    assert refusal(cluster, namespace, lease(30, 5, maxLifetimeSeconds=600)) == ""
    assert refusal(cluster, namespace, {**template, "startTimeoutSeconds": 60}) == ""
    assert refusal(cluster, namespace, {}) == ""


def test_every_policy_of_a_namespace_applies(installed: Cluster, namespace: str) -> None:
    cluster = installed
    apply_policy(cluster, namespace, "a-loose", {"lease": {"ttlSeconds": {"max": 7200}}})
    apply_policy(cluster, namespace, "b-tight", {"lease": {"ttlSeconds": {"max": 600}}})
    in_force(cluster, namespace, lease(900, 10))

    assert refusal(cluster, namespace, lease(900, 10)) == (
        f"spec.lease.ttlSeconds 900 is above the maximum 600 set by SessionPolicy b-tight"
        f" in namespace {namespace}"
    )
    assert refusal(cluster, namespace, lease(600, 10)) == ""


def test_a_template_is_refused_where_a_policy_does_not_allow_it(
    installed: Cluster, namespace: str
) -> None:
    cluster = installed
    apply_policy(cluster, namespace, "no-workloads", {"allowTemplate": False})
    in_force(cluster, namespace, {"template": POD_TEMPLATE})

    assert refusal(cluster, namespace, {"template": POD_TEMPLATE}) == (
        f"spec.template is not allowed by SessionPolicy no-workloads in namespace {namespace}"
        " (allowTemplate: false)"
    )
    assert refusal(cluster, namespace, {}) == ""


def test_a_policy_default_is_applied_at_initialise(
    installed: Cluster, operator_as_its_service_account: None, namespace: str
) -> None:
    cluster = installed
    apply_policy(cluster, namespace, "gpu-limits", GPU_LIMITS)
    in_force(cluster, namespace, lease(7200, 10))
    cluster.kubectl("create", "-f", "-", input_text=session_body(namespace, "plain", {}))
    explicit = lease(60, 5, maxLifetimeSeconds=3600)
    cluster.kubectl("create", "-f", "-", input_text=session_body(namespace, "own", explicit))

    body, _ = wait_for_state(cluster, namespace, "plain", {"ready"}, timeout=10)
    status = body["status"]
    # The policy's default pair, not the configuration's 60 s and 5 s.
    assert (status["leaseTTLSeconds"], status["heartbeatInterval"]) == (300, 10)
    created = parse_timestamp(body["metadata"]["creationTimestamp"])
    assert parse_timestamp(status["leaseExpiresAt"]) == created + timedelta(seconds=300)
    # No maximum lifetime asked for and none configured: the policy's maximum.
    assert parse_timestamp(status["lifetimeEndsAt"]) == created + timedelta(seconds=86400)
    [event] = session_events(cluster, namespace, "plain")
    assert event["note"].endswith("; defaults and bounds from SessionPolicy gpu-limits")

    # What a Session sets wins over the policy's default.
    own, _ = wait_for_state(cluster, namespace, "own", {"ready"}, timeout=10)
    assert (own["status"]["leaseTTLSeconds"], own["status"]["heartbeatInterval"]) == (60, 5)
    own_created = parse_timestamp(own["metadata"]["creationTimestamp"])
    ends = parse_timestamp(own["status"]["lifetimeEndsAt"])
    assert ends == own_created + timedelta(seconds=3600)


def test_without_a_policy_nothing_changes(
    installed: Cluster, operator_as_its_service_account: None, namespace: str
) -> None:
    cluster = installed
    # Another namespace's policy is no concern of this one.
    with fresh_namespace(cluster) as elsewhere:
        apply_policy(cluster, elsewhere, "strict", {"lease": {"ttlSeconds": {"max": 60}}})
        in_force(cluster, elsewhere, lease(7200, 10))

        assert refusal(cluster, namespace, lease(7200, 10)) == ""
        assert refusal(cluster, namespace, {"template": POD_TEMPLATE}) == ""
        cluster.kubectl("create", "-f", "-", input_text=session_body(namespace, "plain", {}))

        body, _ = wait_for_state(cluster, namespace, "plain", {"ready"}, timeout=10)
    # The operator's configuration, as before there were policies.
    assert (body["status"]["leaseTTLSeconds"], body["status"]["heartbeatInterval"]) == (60, 5)
    assert "lifetimeEndsAt" not in body["status"]
    [event] = session_events(cluster, namespace, "plain")
    assert "SessionPolicy" not in event["note"]


def test_editors_and_admins_create_sessions_but_cannot_change_a_policy(
    installed: Cluster, namespace: str
) -> None:
    cluster = installed
    apply_policy(cluster, namespace, "gpu-limits", GPU_LIMITS)
    editor = user_bound_to(cluster, namespace, "editor", "edit")
    admin = user_bound_to(cluster, namespace, "admin", "admin")

    def as_user(user: str, *args: str, body: str | None = None) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl(*args, "-n", namespace, f"--as={user}", input_text=body, check=False)

    # kube-controller-manager folds the chart's roles into view, edit and admin a moment later.
    assert wait_for(lambda: as_user(admin, "get", "sessionpolicies").returncode == 0, 20)
    assert wait_for(lambda: as_user(editor, "get", "sessionpolicies").returncode == 0, 20)
    lifted = {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "SessionPolicy",
        "metadata": {"name": "lifted", "namespace": namespace},
    }
    raised = '{"spec":{"lease":{"ttlSeconds":{"max":86400}}}}'
    for user in (editor, admin):
        # They read the policy that bounds them, and create Sessions within it...
        listed = as_user(user, "get", "sessionpolicies", "-o", "name")
        assert listed.stdout.split() == ["sessionpolicy.xg2g.io/gpu-limits"], listed.stderr
        name = user.rpartition(":")[2]
        made = as_user(user, "create", "-f", "-", body=session_body(namespace, name, {}))
        assert made.returncode == 0, made.stderr
        # ...but cannot create, change or delete one.
        attempts = [
            as_user(user, "create", "-f", "-", body=json.dumps(lifted)),
            as_user(user, "patch", "sessionpolicy", "gpu-limits", "--type=merge", "-p", raised),
            as_user(user, "delete", "sessionpolicy", "gpu-limits"),
        ]
        for attempt in attempts:
            assert attempt.returncode != 0
            assert "is forbidden" in attempt.stderr, attempt.stderr
            assert f'User "{user}" cannot' in attempt.stderr
    # Nor can a namespace admin grant the right to itself: RBAC refuses to give away what
    # the giver does not hold.
    escalation = as_user(
        admin, "create", "role", "policy-writer", "--resource=sessionpolicies.xg2g.io",
        "--verb=create,update,patch,delete",
    )  # fmt: skip
    assert escalation.returncode != 0
    assert "attempting to grant RBAC permissions not currently held" in escalation.stderr
    kept = cluster.kubectl("get", "sessionpolicy", "gpu-limits", "-n", namespace, "-o", "json")
    assert json.loads(kept.stdout)["spec"]["lease"] == GPU_LIMITS["lease"]


@pytest.fixture
def hold_webhook(installed: Cluster, tmp_path: Path) -> Iterator[None]:
    """``serve-api`` over TLS as the manifests' ServiceAccount, registered as the Session
    webhook of the module's cluster while one test runs (the module's last: the apiserver
    may call a webhook a moment after its registration is deleted)."""
    cert_file, key_file = self_signed_certificate(tmp_path)
    port = free_port()
    api = OperatorProcess(
        operator_kubeconfig(installed, tmp_path),
        tmp_path / "serve-api.log",
        {
            "XG2G_SESSION_TLS_CERT_FILE": str(cert_file),
            "XG2G_SESSION_TLS_KEY_FILE": str(key_file),
            "XG2G_SESSION_WEBHOOK_PORT": str(port),
            # Where its Role lets it read the outage record, as the chart sets it.
            "XG2G_SESSION_LEADER_ELECTION_NAMESPACE": RELEASE_NAMESPACE,
        },
        command="serve-api",
        tls=ssl.create_default_context(cafile=str(cert_file)),
    )
    api.start()
    url = f"https://127.0.0.1:{port}/admission/sessions"
    register_size_webhook(installed, "session-hold-e2e", url, cert_file)
    yield
    installed.kubectl("delete", "validatingwebhookconfiguration", "session-hold-e2e")
    api.stop()


def test_a_hold_beyond_the_policy_maximum_is_refused_by_the_webhook(
    installed: Cluster, hold_webhook: None, namespace: str
) -> None:
    cluster = installed
    apply_policy(cluster, namespace, "short-holds", {"maxHoldSeconds": 3600})
    now = datetime.now(UTC)
    far, near = (format_timestamp(now + timedelta(hours=hours)) for hours in (2, 0.5))
    policy = f"the maxHoldSeconds of SessionPolicy short-holds in namespace {namespace}"
    sentence = f"spec.hold.until {far} is more than 1h ahead, the longest hold {policy} allows"

    def refused_far() -> bool:
        probe = create(cluster, namespace, "probe", {"hold": {"until": far}}, "--dry-run=server")
        return sentence in probe.stderr

    assert wait_for(refused_far, timeout=20)  # the webhook is registered, the policy read
    refused = create(cluster, namespace, "held", {"hold": {"until": far}})
    assert refused.returncode != 0
    assert refused.stderr.strip().endswith(" at the latest"), refused.stderr
    assert create(cluster, namespace, "held", {"hold": {"until": near}}).returncode == 0
    # Moving the hold of an admitted Session is checked the same way.
    moved = cluster.kubectl(
        "patch", "session", "held", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"hold": {"until": far}}}), check=False,
    )  # fmt: skip
    assert moved.returncode != 0
    assert sentence in moved.stderr
