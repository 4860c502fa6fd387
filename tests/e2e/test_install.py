"""Installing the operator like a cluster admin does, on a real apiserver: Helm install and
upgrade, manifests/ with kubectl, RBAC that is sufficient and minimal, the aggregated roles,
the client role, and the admission policy on the ``xg2g.io/state`` label.

These tests install cluster-wide objects (ClusterRoles, an admission policy that refuses
label writes by anyone but the release's operator) and run the operator as the chart's
ServiceAccount, so they get an apiserver of their own (``private_cluster``) rather than
the suite's shared one. No kubelet runs there: the Deployment's Pods are never started, so
the tests check objects, permissions and admission, and run the operator as a local process
with the ServiceAccount's token.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import (
    Cluster,
    OperatorProcess,
    fresh_namespace,
    kubeconfig_for_token,
    private_control_plane,
    wait_for,
)
from tests.e2e.heartbeats import call, create_token, heartbeat_path, service_account
from tests.e2e.sessions import create_session, event_reasons, read_session, wait_for_state

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "session-lease-operator"
MANIFEST_VALUES = CHART / "ci" / "manifests-values.yaml"
STATE_LABEL = "xg2g.io/state"
UNSCHEDULED_POD = {"spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]}}
READY_POD_STATUS = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}


@dataclass(frozen=True)
class Helm:
    """The helm binary bound to one cluster."""

    binary: Path
    cluster: Cluster

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``helm ARGS`` against the cluster."""
        argv = [str(self.binary), f"--kubeconfig={self.cluster.kubeconfig}", *args]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}")
        return result


@dataclass(frozen=True)
class Release:
    """A Helm release of the chart, and what a test needs to know of it."""

    helm: Helm
    name: str
    namespace: str
    notes: str

    @property
    def fullname(self) -> str:
        """The chart's full name for this release (its objects' names)."""
        return f"{self.name}-session-lease-operator"

    @property
    def operator_user(self) -> str:
        """The user name of the operator's ServiceAccount."""
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"

    def objects(self) -> list[dict[str, Any]]:
        """The objects Helm installed for the release (its manifest)."""
        manifest = self.helm("get", "manifest", self.name, "-n", self.namespace).stdout
        return [doc for doc in yaml.safe_load_all(manifest) if doc]


@pytest.fixture(scope="module")
def cluster_of_its_own(private_cluster: Cluster) -> Cluster:
    """The apiserver of this module (no CRD until Helm installs it)."""
    return private_cluster


@pytest.fixture(scope="module")
def helm_cli(helm: Path, cluster_of_its_own: Cluster) -> Helm:
    """helm against the module's cluster."""
    return Helm(helm, cluster_of_its_own)


@pytest.fixture(scope="module")
def release(helm_cli: Helm) -> Iterator[Release]:
    """The chart installed with its default values as release ``slo`` in a fresh namespace,
    but one: no Pod runs here, so nothing answers the Session size webhook, whose default
    failure policy would refuse every Session; it ignores the failure instead
    (test_admission_webhook.py tests the webhook itself)."""
    namespace = f"slo-{uuid.uuid4().hex[:6]}"
    installed = helm_cli(
        "install", "slo", str(CHART), "--namespace", namespace, "--create-namespace",
        "--set", "admissionWebhook.failurePolicy=Ignore",
    )  # fmt: skip
    yield Release(helm_cli, "slo", namespace, installed.stdout)
    helm_cli("uninstall", "slo", "--namespace", namespace, check=False)


@pytest.fixture
def namespace(cluster_of_its_own: Cluster) -> Iterator[str]:
    """A fresh namespace of the module's cluster for one test."""
    with fresh_namespace(cluster_of_its_own) as name:
        yield name


def resource(obj: dict[str, Any]) -> str:
    """``kind.group`` as kubectl names the resource of *obj*."""
    group = obj["apiVersion"].rpartition("/")[0]
    return f"{obj['kind'].lower()}.{group}" if group else obj["kind"].lower()


def live(cluster: Cluster, obj: dict[str, Any]) -> dict[str, Any] | None:
    """The stored version of *obj*, or ``None``."""
    args = ["get", resource(obj), obj["metadata"]["name"], "-o", "json"]
    if obj["metadata"].get("namespace"):
        args += ["-n", obj["metadata"]["namespace"]]
    result = cluster.kubectl(*args, check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    stored: dict[str, Any] = json.loads(result.stdout)
    return stored


def can_i(
    cluster: Cluster, user: str, verb: str, what: str, namespace: str, subresource: str = ""
) -> bool:
    """``kubectl auth can-i VERB WHAT --as USER`` (WHAT: a resource, or RESOURCE/NAME)."""
    args = ["auth", "can-i", verb, what, f"--as={user}", "-n", namespace]
    if subresource:
        args.append(f"--subresource={subresource}")
    result = cluster.kubectl(*args, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def user_bound_to(cluster: Cluster, namespace: str, name: str, cluster_role: str) -> str:
    """A ServiceAccount *name* bound in *namespace* to *cluster_role*; its user name."""
    cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    cluster.kubectl(
        "create", "rolebinding", name, "-n", namespace,
        f"--clusterrole={cluster_role}", f"--serviceaccount={namespace}:{name}",
    )  # fmt: skip
    return f"system:serviceaccount:{namespace}:{name}"


def session_body(namespace: str, name: str, labels: dict[str, str] | None = None) -> str:
    """A Session manifest (JSON) with an empty spec."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = labels
    body = {"apiVersion": "xg2g.io/v1alpha1", "kind": "Session", "metadata": metadata}
    return json.dumps({**body, "spec": {}})


# --- Helm install and upgrade ----------------------------------------------------------


def test_helm_install_creates_every_object(cluster_of_its_own: Cluster, release: Release) -> None:
    objects = release.objects()
    kinds = {obj["kind"] for obj in objects}
    assert kinds == {
        "ServiceAccount", "Secret", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Role",
        "RoleBinding", "Service", "Deployment", "PodDisruptionBudget", "NetworkPolicy",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
    }  # fmt: skip
    missing = [
        f"{obj['kind']}/{obj['metadata']['name']}"
        for obj in objects
        if not live(cluster_of_its_own, obj)
    ]
    assert missing == []
    crd = cluster_of_its_own.kubectl("get", "crd", "sessions.xg2g.io", "-o", "json").stdout
    assert json.loads(crd)["spec"]["group"] == "xg2g.io"
    deployment = live(cluster_of_its_own, next(o for o in objects if o["kind"] == "Deployment"))
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2


def test_helm_install_prints_the_kubectl_and_heartbeat_lines(release: Release) -> None:
    assert "kubectl get sessions -A -w" in release.notes
    assert "--clusterrole=session-heartbeat" in release.notes
    api = f"https://{release.fullname}-api.{release.namespace}.svc:8443"
    assert f"{api}/api/v3/namespaces/default/sessions/living-room/heartbeat" in release.notes
    assert f"kubectl get configmap {release.fullname}-ca -n {release.namespace}" in release.notes
    # Clients are shown a projected token for the operator's own audience.
    assert "serviceAccountToken: {audience: session-lease-operator," in release.notes
    assert "--token-file /var/run/secrets/heartbeat/token --ca-file ca.crt" in release.notes


def test_helm_upgrade_keeps_the_ca_and_applies_new_values(
    cluster_of_its_own: Cluster, release: Release
) -> None:
    def read(kind: str, name: str) -> dict[str, Any]:
        output = cluster_of_its_own.kubectl(
            "get", kind, name, "-n", release.namespace, "-o", "json"
        )
        stored: dict[str, Any] = json.loads(output.stdout)
        return stored

    ca_before = read("configmap", f"{release.fullname}-ca")["data"]
    secret_before = read("secret", f"{release.fullname}-tls")["data"]

    release.helm(
        "upgrade", release.name, str(CHART), "--namespace", release.namespace,
        "--reuse-values", "--set", "config.leaseTTL=90s",
    )  # fmt: skip

    assert read("configmap", f"{release.fullname}-ca")["data"] == ca_before
    assert read("secret", f"{release.fullname}-tls")["data"] == secret_before
    webhook = read("validatingwebhookconfiguration", f"{release.fullname}-session-size")
    assert webhook["webhooks"][0]["clientConfig"]["caBundle"] == secret_before["ca.crt"]
    deployment = read("deployment", release.fullname)
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["XG2G_SESSION_LEASE_TTL"] == "90s"
    history = json.loads(
        release.helm("history", release.name, "-n", release.namespace, "-o", "json").stdout
    )
    assert [entry["status"] for entry in history] == ["superseded", "deployed"]
    assert all(live(cluster_of_its_own, obj) for obj in release.objects())


# --- Who may do what -------------------------------------------------------------------


def test_view_reads_sessions_edit_writes_them_only_session_heartbeat_beats(
    cluster_of_its_own: Cluster, release: Release, namespace: str
) -> None:
    cluster = cluster_of_its_own
    viewer = user_bound_to(cluster, namespace, "viewer", "view")
    editor = user_bound_to(cluster, namespace, "editor", "edit")
    beater = user_bound_to(cluster, namespace, "beater", "session-heartbeat")
    # kube-controller-manager folds the chart's roles into view and edit asynchronously.
    assert wait_for(lambda: can_i(cluster, editor, "create", "sessions.xg2g.io", namespace), 10)

    questions = [
        ("get", "sessions.xg2g.io", ""),
        ("list", "sessions.xg2g.io", ""),
        ("create", "sessions.xg2g.io", ""),
        ("delete", "sessions.xg2g.io", ""),
        ("create", "sessions.xg2g.io", "heartbeat"),
        ("patch", "sessions.xg2g.io", "status"),
    ]
    answers = {
        user: [can_i(cluster, user, verb, what, namespace, sub) for verb, what, sub in questions]
        for user in (viewer, editor, beater)
    }
    #                  get    list   create delete beat   status
    assert answers == {
        viewer: [True, True, False, False, False, False],
        editor: [True, True, True, True, False, False],
        beater: [False, False, False, False, True, False],
    }

    # And for real, not only as can-i answers:
    refused = cluster.kubectl(
        "apply", "-f", "-", f"--as={viewer}", input_text=session_body(namespace, "s"), check=False
    )
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr
    cluster.kubectl("apply", "-f", "-", f"--as={editor}", input_text=session_body(namespace, "s"))
    listed = cluster.kubectl("get", "sessions", "-n", namespace, "-o", "name", f"--as={viewer}")
    assert listed.stdout.split() == ["session.xg2g.io/s"]


def test_only_the_operator_sets_the_state_label(
    cluster_of_its_own: Cluster, release: Release, namespace: str
) -> None:
    cluster = cluster_of_its_own
    editor = user_bound_to(cluster, namespace, "editor", "edit")
    assert wait_for(lambda: can_i(cluster, editor, "create", "sessions.xg2g.io", namespace), 10)
    policy = f"ValidatingAdmissionPolicy '{release.fullname}-state-label'"

    def policy_in_force() -> bool:
        # The apiserver starts enforcing a new policy a moment after it is stored.
        forged = session_body(namespace, "probe", {STATE_LABEL: "ready"})
        probe = cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", f"--as={editor}", input_text=forged,
            check=False,
        )  # fmt: skip
        return policy in probe.stderr

    assert wait_for(policy_in_force, timeout=10)
    created = cluster.kubectl(
        "apply", "-f", "-", f"--as={editor}",
        input_text=session_body(namespace, "forged", {STATE_LABEL: "ready"}), check=False,
    )  # fmt: skip
    assert created.returncode != 0
    assert policy in created.stderr

    cluster.kubectl("apply", "-f", "-", f"--as={editor}", input_text=session_body(namespace, "s"))
    labelled = cluster.kubectl(
        "label", "session", "s", "-n", namespace, f"{STATE_LABEL}=ready", f"--as={editor}",
        check=False,
    )  # fmt: skip
    assert labelled.returncode != 0
    assert policy in labelled.stderr
    assert "only the operator" in labelled.stderr
    # Other labels are the editor's to set.
    cluster.kubectl("label", "session", "s", "-n", namespace, "team=a", f"--as={editor}")

    cluster.kubectl(
        "label", "session", "s", "-n", namespace, f"{STATE_LABEL}=ready",
        f"--as={release.operator_user}",
    )  # fmt: skip
    for change in (f"{STATE_LABEL}=stopped", f"{STATE_LABEL}-"):
        refused = cluster.kubectl(
            "label", "session", "s", "-n", namespace, change, "--overwrite", f"--as={editor}",
            check=False,
        )  # fmt: skip
        assert refused.returncode != 0, change
        assert policy in refused.stderr
    labels = read_session(cluster, namespace, "s")["metadata"]["labels"]
    assert labels == {STATE_LABEL: "ready", "team": "a"}


def test_a_session_with_a_template_needs_the_right_to_create_pods(
    cluster_of_its_own: Cluster, release: Release, namespace: str
) -> None:
    cluster = cluster_of_its_own
    cluster.kubectl(
        "create", "role", "sessions-editor", "-n", namespace, "--resource=sessions.xg2g.io",
        "--verb=get,list,watch,create,update,patch,delete",
    )  # fmt: skip
    cluster.kubectl("create", "role", "pod-creator", "-n", namespace, "--resource=pods",
                    "--verb=create")  # fmt: skip
    author = f"system:serviceaccount:{namespace}:author"
    runner = f"system:serviceaccount:{namespace}:runner"
    for role, accounts in (("sessions-editor", ["author", "runner"]), ("pod-creator", ["runner"])):
        for account in accounts:
            cluster.kubectl(
                "create", "rolebinding", f"{account}-{role}", "-n", namespace, f"--role={role}",
                f"--serviceaccount={namespace}:{account}",
            )  # fmt: skip
    policy = f"ValidatingAdmissionPolicy '{release.fullname}-template-needs-pods'"

    def with_template(name: str) -> str:
        body = json.loads(session_body(namespace, name))
        body["spec"]["template"] = UNSCHEDULED_POD
        return json.dumps(body)

    def create(user: str, body: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl(
            "create", *extra, "-f", "-", f"--as={user}", input_text=body, check=False
        )

    # The apiserver starts enforcing a new policy a moment after it is stored.
    assert wait_for(
        lambda: policy in create(author, with_template("probe"), "--dry-run=server").stderr, 10
    )
    refused = create(author, with_template("privileged"))
    assert refused.returncode != 0
    assert policy in refused.stderr
    assert f"must be allowed to create pods in namespace {namespace}" in refused.stderr
    assert author in refused.stderr
    # Without a template the session runs nothing, so editing sessions is enough.
    assert create(author, session_body(namespace, "plain")).returncode == 0
    accepted = create(runner, with_template("workload"))
    assert accepted.returncode == 0, accepted.stderr
    assert read_session(cluster, namespace, "workload")["spec"]["template"] == UNSCHEDULED_POD


def test_operator_is_granted_what_it_uses_and_no_more(
    cluster_of_its_own: Cluster, release: Release, namespace: str
) -> None:
    granted = [
        ("watch", "sessions.xg2g.io", namespace, ""),
        ("list", "sessionpolicies.xg2g.io", namespace, ""),
        ("patch", "sessions.xg2g.io", namespace, ""),
        ("delete", "sessions.xg2g.io", namespace, ""),
        ("patch", "sessions.xg2g.io", namespace, "status"),
        ("update", "sessions.xg2g.io", namespace, "finalizers"),
        ("create", "pods", namespace, ""),
        ("delete", "pods", namespace, ""),
        ("create", "events.events.k8s.io", namespace, ""),
        ("create", "tokenreviews.authentication.k8s.io", namespace, ""),
        ("create", "subjectaccessreviews.authorization.k8s.io", namespace, ""),
        ("get", "leases.coordination.k8s.io/session-lease-operator", release.namespace, ""),
        ("update", "leases.coordination.k8s.io/session-lease-operator", release.namespace, ""),
        ("create", "leases.coordination.k8s.io", release.namespace, ""),
        ("get", "configmaps/session-lease-operator-outages", release.namespace, ""),
        ("update", "configmaps/session-lease-operator-outages", release.namespace, ""),
        ("create", "configmaps", release.namespace, ""),
    ]
    not_needed = [
        ("create", "sessions.xg2g.io", namespace, ""),
        ("update", "sessions.xg2g.io", namespace, ""),
        ("update", "sessions.xg2g.io", namespace, "status"),
        ("delete", "sessions.xg2g.io", namespace, "status"),
        ("create", "sessions.xg2g.io", namespace, "heartbeat"),
        ("create", "sessionpolicies.xg2g.io", namespace, ""),
        ("update", "sessionpolicies.xg2g.io", namespace, ""),
        ("delete", "sessionpolicies.xg2g.io", namespace, ""),
        ("get", "secrets", namespace, ""),
        ("list", "secrets", namespace, ""),
        ("delete", "secrets", namespace, ""),
        ("list", "services", namespace, ""),
        ("list", "persistentvolumeclaims", namespace, ""),
        ("update", "secrets", namespace, ""),
        ("create", "secrets", namespace, ""),
        ("patch", "pods", namespace, ""),
        ("create", "services", namespace, ""),
        ("create", "deployments.apps", namespace, ""),
        ("create", "events", namespace, ""),
        ("list", "namespaces", namespace, ""),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", namespace, ""),
        ("update", "customresourcedefinitions.apiextensions.k8s.io", namespace, ""),
        ("update", "leases.coordination.k8s.io/someone-else", release.namespace, ""),
        ("get", "leases.coordination.k8s.io/session-lease-operator", namespace, ""),
        ("create", "leases.coordination.k8s.io", namespace, ""),
        ("get", "configmaps", namespace, ""),
        ("list", "configmaps", namespace, ""),
        ("create", "configmaps", namespace, ""),
        ("update", "configmaps/session-lease-operator-outages", namespace, ""),
        ("update", "configmaps/someone-elses", release.namespace, ""),
    ]
    user = release.operator_user
    assert [q for q in granted if not can_i(cluster_of_its_own, user, *q)] == []
    assert [q for q in not_needed if can_i(cluster_of_its_own, user, *q)] == []


# --- The operator on exactly these permissions -----------------------------------------


@pytest.fixture
def operator_as_its_service_account(
    cluster_of_its_own: Cluster, release: Release, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """``session-operator run`` with a token of the chart's ServiceAccount (not admin), as
    its Pod would run it: leader Lease in the release namespace."""
    # A credential for the apiserver, as the kubelet mounts it (its own audience).
    token = create_token(cluster_of_its_own, release.namespace, release.fullname, audience=None)
    kubeconfig = kubeconfig_for_token(cluster_of_its_own, token, tmp_path / "kubeconfig")
    process = OperatorProcess(
        kubeconfig,
        tmp_path / "operator.log",
        {
            "POD_NAME": "operator-0",
            "POD_NAMESPACE": release.namespace,
            "XG2G_SESSION_LEADER_ELECTION_NAMESPACE": release.namespace,
            "XG2G_SESSION_EXPIRY_CHECK_INTERVAL": "2s",
        },
    )
    process.start()
    yield process
    process.stop()
    # An RBAC refusal names the user; other 403s (a namespace being deleted) do not count.
    denials = [
        line
        for line in process.log_path.read_text().splitlines()
        if f'User "{release.operator_user}" cannot' in line
    ]
    assert denials == []


def pods_of(cluster: Cluster, namespace: str, session: str) -> list[str]:
    """Names of the Pods labelled for *session*."""
    output = cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", f"xg2g.io/session={session}", "-o", "name"
    ).stdout
    return output.split()


def test_operator_keeps_leases_with_only_the_chart_permissions(
    cluster_of_its_own: Cluster,
    release: Release,
    operator_as_its_service_account: OperatorProcess,
    namespace: str,
) -> None:
    cluster, operator = cluster_of_its_own, operator_as_its_service_account
    lease = {"lease": {"ttlSeconds": 3, "heartbeatIntervalSeconds": 1}}
    long_lease = {"lease": {"ttlSeconds": 600, "heartbeatIntervalSeconds": 5}}

    # A session with no workload becomes ready, beats with a client token, then expires.
    create_session(cluster, namespace, "plain", lease)
    wait_for_state(cluster, namespace, "plain", {"ready"}, timeout=10)

    def labelled_ready() -> bool:
        labels = read_session(cluster, namespace, "plain")["metadata"].get("labels") or {}
        return labels.get(STATE_LABEL) == "ready"

    assert wait_for(labelled_ready, timeout=5)  # the operator's label write passed the policy
    token = service_account(cluster, namespace, "player", bind_in=namespace)
    beat = call("POST", operator.url + heartbeat_path(namespace, "plain"), token)
    assert beat.status == 200, beat.body
    body, _ = wait_for_state(cluster, namespace, "plain", {"stopped"}, timeout=10)
    assert body["status"]["stopReason"] == "LEASE_EXPIRED"

    # A session with a template gets its Pod, is ready with it, and releases it on expiry.
    create_session(cluster, namespace, "player", {**lease, "template": UNSCHEDULED_POD})
    wait_for_state(cluster, namespace, "player", {"starting"}, timeout=10)
    assert pods_of(cluster, namespace, "player") == ["pod/player"]
    cluster.kubectl(
        "patch", "pod", "player", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": READY_POD_STATUS}),
    )  # fmt: skip
    body, _ = wait_for_state(cluster, namespace, "player", {"stopped"}, timeout=15)
    assert body["status"]["stopReason"] == "LEASE_EXPIRED"
    assert pods_of(cluster, namespace, "player") == []

    # A live session deleted with kubectl: the finalizer releases its Pod, then it goes.
    create_session(cluster, namespace, "doomed", {**long_lease, "template": UNSCHEDULED_POD})
    wait_for_state(cluster, namespace, "doomed", {"starting"}, timeout=10)
    cluster.kubectl("delete", "session", "doomed", "-n", namespace, "--wait=false")

    def doomed_gone() -> bool:
        found = cluster.kubectl("get", "session", "doomed", "-n", namespace, check=False)
        return found.returncode != 0 and "NotFound" in found.stderr

    assert wait_for(doomed_gone, timeout=15)
    assert pods_of(cluster, namespace, "doomed") == []

    assert "LeaseExpired" in event_reasons(cluster, namespace, "plain")
    leader = json.loads(
        cluster.kubectl(
            "get", "lease", "session-lease-operator", "-n", release.namespace, "-o", "json"
        ).stdout
    )
    assert leader["spec"]["holderIdentity"].startswith("operator-0_")


# --- manifests/ ------------------------------------------------------------------------


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """What an object is, without what the server or the installer adds."""
    metadata = obj["metadata"]
    annotations = {
        key: value
        for key, value in (metadata.get("annotations") or {}).items()
        if not key.startswith(("meta.helm.sh/", "kubectl.kubernetes.io/", "deployment.kubernetes"))
    }
    kept = {key: value for key, value in obj.items() if key not in ("metadata", "status")}
    if obj["kind"] == "Service":
        kept["spec"] = {
            key: value
            for key, value in obj["spec"].items()
            if key not in ("clusterIP", "clusterIPs")
        }
    return {
        **kept,
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata.get("namespace"),
            "labels": metadata.get("labels"),
            "annotations": annotations,
        },
    }


def manifest_objects() -> list[dict[str, Any]]:
    """Every object in manifests/."""
    return [
        doc
        for path in sorted((REPO / "manifests").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def test_manifests_install_on_a_clean_apiserver_the_same_objects_as_helm(helm: Path) -> None:
    expected = [obj for obj in manifest_objects() if obj["kind"] != "Namespace"]
    with private_control_plane() as plain, private_control_plane() as helmed:
        applied = plain.kubectl("apply", "-f", str(REPO / "manifests"))
        assert applied.returncode == 0
        Helm(helm, helmed)(
            "install", "session-lease-operator", str(CHART),
            "--namespace", "session-lease-operator", "--create-namespace",
            "--values", str(MANIFEST_VALUES),
        )  # fmt: skip
        for obj in expected:
            by_kubectl, by_helm = live(plain, obj), live(helmed, obj)
            name = f"{obj['kind']}/{obj['metadata']['name']}"
            assert by_kubectl is not None, f"kubectl apply did not create {name}"
            assert by_helm is not None, f"helm install did not create {name}"
            assert comparable(by_kubectl) == comparable(by_helm), name
        installed = Release(
            Helm(helm, helmed), "session-lease-operator", "session-lease-operator", ""
        ).objects()
        crds = {
            ("CustomResourceDefinition", "sessions.xg2g.io"),
            ("CustomResourceDefinition", "sessionpolicies.xg2g.io"),
        }
        assert {(o["kind"], o["metadata"]["name"]) for o in installed} | crds == {
            (o["kind"], o["metadata"]["name"]) for o in expected
        }
