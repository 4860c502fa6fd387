"""The Helm chart, rendered without a cluster: lint, values schema, settings, RBAC, TLS,
security, and manifests/ kept in step with it."""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from harness.binaries import ensure_tool, go_tool
from session_operator.config import FILE_KEYS, load_settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "session-lease-operator"
RELEASE, NAMESPACE = "slo", "ops"
FULLNAME = "slo-session-lease-operator"
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}"

# Settings the chart sets itself rather than from config.*: the TLS files come from
# tls.*, the leader Lease lives in the release namespace (where its Role is).
CHART_OWNED_SETTINGS = {"tls_cert_file", "tls_key_file", "leader_election_namespace"}


@pytest.fixture(scope="module")
def helm() -> Path:
    """The helm binary, built into the binary cache on first use."""
    return ensure_tool(go_tool("helm", REPO), REPO).binary


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``helm ARGS`` without a cluster (no kubeconfig: lookups find nothing)."""
    return subprocess.run(
        [str(helm), *args],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(REPO), "KUBECONFIG": "/dev/null"},
    )


def render(helm: Path, *values: str) -> list[dict[str, Any]]:
    """The chart's objects for release slo in namespace ops, with ``--set`` *values*."""
    argv = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for value in values:
        argv += ["--set", value]
    result = run_helm(helm, *argv)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def refusal(helm: Path, *values: str) -> str:
    """The error of a render that must fail."""
    argv = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for value in values:
        argv += ["--set", value]
    result = run_helm(helm, *argv)
    assert result.returncode != 0, f"rendered although {values} is invalid"
    return result.stderr


def only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of *kind* (and *name*)."""
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator container of the Deployment."""
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    container: dict[str, Any] = pod["containers"][0]
    return container


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment variables that have a literal value."""
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_helm_is_the_pinned_version_stamped_with_its_kubernetes_minor(helm: Path) -> None:
    version = run_helm(helm, "version", "--template", "{{.Version}}").stdout
    assert version == go_tool("helm", REPO).version
    # Unstamped, helm assumes Kubernetes 1.20 and refuses the chart's kubeVersion (>= 1.30).
    old_cluster = run_helm(helm, "template", str(CHART), "--kube-version", "1.29.0")
    assert old_cluster.returncode != 0
    assert "chart requires kubeVersion: >=1.30.0-0" in old_cluster.stderr
    assert render(helm)  # with the stamped default (1.37) it renders


@pytest.mark.parametrize("crd", ["sessions.xg2g.io.yaml", "sessionpolicies.xg2g.io.yaml"])
def test_chart_crd_is_the_repository_crd(crd: str) -> None:
    assert (CHART / "crds" / crd).read_bytes() == (REPO / "crds" / crd).read_bytes(), (
        "the chart's CRD differs from crds/: run `make manifests`"
    )


@pytest.mark.parametrize("values", [[], ["--values", str(CHART / "ci/manifests-values.yaml")]])
def test_helm_lint_passes(helm: Path, values: list[str]) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_default_render_has_every_object_of_an_install(helm: Path) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in render(helm))
    assert kinds == sorted(
        [
            ("ClusterRole", FULLNAME),
            ("ClusterRole", f"{FULLNAME}-edit"),
            ("ClusterRole", f"{FULLNAME}-view"),
            ("ClusterRole", "session-heartbeat"),
            ("ClusterRoleBinding", FULLNAME),
            ("ConfigMap", f"{FULLNAME}-ca"),
            ("Deployment", FULLNAME),
            ("NetworkPolicy", FULLNAME),
            ("PodDisruptionBudget", FULLNAME),
            ("Role", f"{FULLNAME}-leader-election"),
            ("RoleBinding", f"{FULLNAME}-leader-election"),
            ("Secret", f"{FULLNAME}-tls"),
            ("Service", f"{FULLNAME}-api"),
            ("Service", f"{FULLNAME}-metrics"),
            ("ServiceAccount", FULLNAME),
            ("ValidatingAdmissionPolicy", f"{FULLNAME}-session-policy"),
            ("ValidatingAdmissionPolicy", f"{FULLNAME}-state-label"),
            ("ValidatingAdmissionPolicy", f"{FULLNAME}-template-needs-pods"),
            ("ValidatingAdmissionPolicyBinding", f"{FULLNAME}-session-policy"),
            ("ValidatingAdmissionPolicyBinding", f"{FULLNAME}-state-label"),
            ("ValidatingAdmissionPolicyBinding", f"{FULLNAME}-template-needs-pods"),
            ("ValidatingWebhookConfiguration", f"{FULLNAME}-session-size"),
        ]
    )


def test_size_webhook_trusts_the_generated_ca_and_calls_its_own_port(helm: Path) -> None:
    objects = render(helm)
    [webhook] = only(objects, "ValidatingWebhookConfiguration")["webhooks"]
    ca = only(objects, "Secret", f"{FULLNAME}-tls")["data"]["ca.crt"]
    assert webhook["clientConfig"]["caBundle"] == ca
    assert webhook["clientConfig"]["service"] == {
        "name": f"{FULLNAME}-api",
        "namespace": NAMESPACE,
        "path": "/admission/sessions",
        "port": 9443,
    }
    service = only(objects, "Service", f"{FULLNAME}-api")
    assert {"name": "webhook", "port": 9443, "targetPort": "webhook"}.items() <= (
        service["spec"]["ports"][1].items()
    )
    container = operator_container(objects)
    assert plain_env(container)["XG2G_SESSION_WEBHOOK_PORT"] == "9443"
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in container["ports"]
    assert webhook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert webhook["failurePolicy"] == "Fail"


def test_cert_manager_issues_the_certificate_and_injects_the_webhook_ca(helm: Path) -> None:
    objects = render(
        helm, "tls.certManager.enabled=true", "tls.certManager.issuerRef.name=internal-ca"
    )
    assert not [o for o in objects if o["kind"] == "Secret"]  # cert-manager writes it
    certificate = only(objects, "Certificate")
    assert certificate["spec"]["secretName"] == f"{FULLNAME}-tls"
    assert certificate["spec"]["issuerRef"]["name"] == "internal-ca"
    assert f"{FULLNAME}-api.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    webhook = only(objects, "ValidatingWebhookConfiguration")
    annotations = webhook["metadata"]["annotations"]
    assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{FULLNAME}-tls"
    assert "caBundle" not in webhook["webhooks"][0]["clientConfig"]
    # Nothing is generated, so every render is the same (GitOps).
    assert (
        render(helm, "tls.certManager.enabled=true", "tls.certManager.issuerRef.name=internal-ca")
        == objects
    )


def test_without_tls_there_is_no_webhook(helm: Path) -> None:
    objects = render(helm, "tls.enabled=false")
    assert not [o for o in objects if "Webhook" in o["kind"]]
    assert "XG2G_SESSION_WEBHOOK_PORT" not in plain_env(operator_container(objects))
    assert len(only(objects, "Service", f"{FULLNAME}-api")["spec"]["ports"]) == 1


def test_every_namespaced_object_is_in_the_release_namespace(helm: Path) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy"}
    cluster_scoped |= {"ValidatingAdmissionPolicyBinding", "ValidatingWebhookConfiguration"}
    for obj in render(helm):
        namespace = obj["metadata"].get("namespace")
        assert namespace == (None if obj["kind"] in cluster_scoped else NAMESPACE), obj["kind"]


def test_every_operator_setting_has_a_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    wanted = {FILE_KEYS[field] for field in FILE_KEYS if field not in CHART_OWNED_SETTINGS}
    assert set(values["config"]) == wanted


def test_empty_values_leave_the_defaults_to_the_operator(helm: Path) -> None:
    env = plain_env(operator_container(render(helm)))
    settings = {name for name in env if name.startswith("XG2G_SESSION_")}
    assert settings == {
        "XG2G_SESSION_API_PORT",
        "XG2G_SESSION_PROBE_PORT",
        "XG2G_SESSION_WEBHOOK_PORT",
        "XG2G_SESSION_TLS_CERT_FILE",
        "XG2G_SESSION_TLS_KEY_FILE",
    }


def test_every_value_reaches_the_operator_as_its_setting(
    helm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = {
        "leaseTTL": "90s",
        "heartbeatInterval": "3s",
        "expiryCheckInterval": "2s",
        "stopTimeout": "1m",
        "retention": "1h30m",
        "expiryWarning": "30s",
        "maxLifetime": "8h",
        "maxLifetimeBound": "24h",
        "startTimeout": "5m",
        "startTimeoutBound": "1h",
        "maxHold": "2h",
        "namespace": "media",
        "apiHost": "127.0.0.1",
        "apiPort": "9090",
        "apiMaxConnections": "8192",
        "probePort": "9091",
        "webhookPort": "9444",
        "authCacheTTL": "5s",
        "maxSessionBytes": "65536",
        "leaderElection": "false",
        "logLevel": "INFO",
        "logFormat": "text",
    }
    objects = render(
        helm,
        "replicaCount=1",
        *(f"config.{key}={value}" for key, value in given.items()),
        "config.tokenAudiences={aud-a,aud-b}",
    )
    container = operator_container(objects)
    env = plain_env(container)
    for name in [n for n in os.environ if n.startswith("XG2G_SESSION_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # What the Pod's downward API would fill in:
    monkeypatch.setenv("XG2G_SESSION_LEADER_ELECTION_NAMESPACE", NAMESPACE)
    settings = load_settings()

    assert settings.lease_ttl == datetime.timedelta(seconds=90)
    assert settings.heartbeat_interval == datetime.timedelta(seconds=3)
    assert settings.expiry_check_interval == datetime.timedelta(seconds=2)
    assert settings.stop_timeout == datetime.timedelta(minutes=1)
    assert settings.retention == datetime.timedelta(hours=1, minutes=30)
    assert settings.expiry_warning == datetime.timedelta(seconds=30)
    assert settings.max_lifetime == datetime.timedelta(hours=8)
    assert settings.max_lifetime_bound == datetime.timedelta(hours=24)
    assert settings.start_timeout == datetime.timedelta(minutes=5)
    assert settings.start_timeout_bound == datetime.timedelta(hours=1)
    assert settings.max_hold == datetime.timedelta(hours=2)
    assert settings.namespace == "media"
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 9090)
    assert settings.api_max_connections == 8192
    assert (settings.probe_port, settings.webhook_port) == (9091, 9444)
    assert settings.auth_cache_ttl == datetime.timedelta(seconds=5)
    assert settings.max_session_bytes == 65536
    assert settings.token_audiences == ["aud-a", "aud-b"]
    assert settings.leader_election is False
    assert (settings.log_level, settings.log_format) == ("INFO", "text")
    assert settings.tls_cert_file is not None
    assert settings.tls_key_file is not None
    assert container["ports"] == [
        {"name": name, "containerPort": port, "protocol": "TCP"}
        for name, port in [("api", 9090), ("probes", 9091), ("webhook", 9444)]
    ]


def test_pod_identity_and_lease_namespace_come_from_the_downward_api(helm: Path) -> None:
    env = {e["name"]: e for e in operator_container(render(helm))["env"]}
    for name, path in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("XG2G_SESSION_LEADER_ELECTION_NAMESPACE", "metadata.namespace"),
    ]:
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"] == path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("config.leaseTTL=-5s", "at '/config/leaseTTL': '-5s' does not match pattern"),
        ("config.leaseTTL=-5", "at '/config/leaseTTL': minimum: got -5, want 1"),
        ("config.heartbeatInterval=0s", "at '/config/heartbeatInterval': '0s' does not match"),
        ("config.retention=1d", "at '/config/retention': '1d' does not match pattern"),
        ("config.maxLifetime=0s", "at '/config/maxLifetime': '0s' does not match"),
        ("config.startTimeoutBound=1w", "at '/config/startTimeoutBound': '1w' does not match"),
        ("config.maxHold=-1h", "at '/config/maxHold': '-1h' does not match"),
        ("config.expiryWarning=-30s", "at '/config/expiryWarning': '-30s' does not match"),
        ("config.leaseTtl=60s", "additional properties 'leaseTtl' not allowed"),
        ("config.logLevel=LOUD", "at '/config/logLevel'"),
        ("replicaCount=0", "at '/replicaCount': minimum: got 0, want 1"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("config.apiPort=70000", "at '/config/apiPort': maximum: got 70,000, want 65,535"),
        ("config.apiMaxConnections=32", "at '/config/apiMaxConnections': minimum: got 32"),
    ],
)
def test_values_schema_refuses_a_bad_value_naming_it(helm: Path, value: str, expected: str) -> None:
    error = refusal(helm, value)
    assert "values don't meet the specifications of the schema" in error
    assert expected in error


def test_negative_ttl_refusal_says_what_is_expected(helm: Path) -> None:
    assert "positive_duration_like_60s_2m_1h30m" in refusal(helm, "config.leaseTTL=-5s")


@pytest.mark.parametrize("ttl", ["60", "90s", "1h30m", "1.5m", "500ms"])
def test_values_schema_accepts_durations_the_operator_accepts(helm: Path, ttl: str) -> None:
    env = plain_env(operator_container(render(helm, f"config.leaseTTL={ttl}")))
    assert env["XG2G_SESSION_LEASE_TTL"] == ttl


@pytest.mark.parametrize("window", ["0", "0s", "30s", "1m30s"])
def test_an_expiry_warning_of_zero_or_a_duration_reaches_the_operator(
    helm: Path, window: str
) -> None:
    env = plain_env(operator_container(render(helm, f"config.expiryWarning={window}")))
    assert env["XG2G_SESSION_EXPIRY_WARNING"] == window


def test_replicas_without_leader_election_are_refused(helm: Path) -> None:
    error = refusal(helm, "replicaCount=2", "config.leaderElection=false")
    assert "replicaCount > 1 needs config.leaderElection" in error


def test_operator_runs_unprivileged_with_a_read_only_root(helm: Path) -> None:
    objects = render(helm)
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(objects)
    assert container["command"] == ["session-operator"]
    assert container["args"] == ["run"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert set(container["resources"]) == {"requests", "limits"}


@pytest.mark.parametrize(
    ("tls", "scheme", "port"), [("true", "HTTPS", 8443), ("false", "HTTP", 8080)]
)
def test_the_api_service_follows_tls_and_the_probes_have_their_own_port(
    helm: Path, tls: str, scheme: str, port: int
) -> None:
    objects = render(helm, f"tls.enabled={tls}")
    container = operator_container(objects)
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        assert container[probe]["httpGet"] == {"path": path, "port": "probes", "scheme": "HTTP"}
    assert {"name": "probes", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    service = only(objects, "Service", f"{FULLNAME}-api")
    assert service["spec"]["ports"][0]["port"] == port
    assert service["spec"]["ports"][0]["targetPort"] == "api"
    assert service["spec"]["ports"][0]["name"] == scheme.lower()
    secrets = [o for o in objects if o["kind"] in ("Secret", "ConfigMap")]
    assert len(secrets) == (2 if tls == "true" else 0)


def rules(role: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, resourceName or '*', verb) of every rule."""
    return {
        (group, resource, name, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for name in rule.get("resourceNames") or ["*"]
        for verb in rule["verbs"]
    }


def grants(group: str, resources: list[str], verbs: list[str], name: str = "*") -> set[Any]:
    """The rule tuples of *verbs* on *resources*."""
    return {(group, resource, name, verb) for resource in resources for verb in verbs}


SESSION_RULES = (
    grants("xg2g.io", ["sessions"], ["get", "list", "watch", "patch", "delete"])
    | grants("xg2g.io", ["sessionpolicies"], ["list"])
    | grants("xg2g.io", ["sessions/status"], ["patch"])
    | grants("xg2g.io", ["sessions/finalizers"], ["update"])
    | grants("", ["pods"], ["get", "list", "watch", "create", "delete"])
    | grants("events.k8s.io", ["events"], ["create"])
)
CLUSTER_RULES = grants("authentication.k8s.io", ["tokenreviews"], ["create"]) | grants(
    "authorization.k8s.io", ["subjectaccessreviews"], ["create"]
)


def test_operator_role_grants_exactly_what_the_code_uses(helm: Path) -> None:
    objects = render(helm)
    # No Secrets, ConfigMaps or other kinds anywhere: a stop releases the session's Pod.
    assert rules(only(objects, "ClusterRole", FULLNAME)) == SESSION_RULES | CLUSTER_RULES
    assert rules(only(objects, "Role", f"{FULLNAME}-leader-election")) == (
        grants("coordination.k8s.io", ["leases"], ["get", "update"], "session-lease-operator")
        | grants("coordination.k8s.io", ["leases"], ["create"])
        | grants("", ["configmaps"], ["get", "update"], "session-lease-operator-outages")
        | grants("", ["configmaps"], ["create"])
    )
    binding = only(objects, "ClusterRoleBinding", FULLNAME)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]


def test_released_kinds_are_granted_list_and_delete_only_when_listed(helm: Path) -> None:
    objects = render(helm, "config.releasedKinds={secrets,services}")
    assert rules(only(objects, "ClusterRole", FULLNAME)) == (
        SESSION_RULES | CLUSTER_RULES | grants("", ["secrets", "services"], ["list", "delete"])
    )
    env = plain_env(operator_container(objects))
    assert env["XG2G_SESSION_RELEASED_KINDS"] == "secrets,services"


def test_watching_one_namespace_grants_session_rules_by_a_role_in_it(helm: Path) -> None:
    objects = render(helm, "config.namespace=media")
    # kopf's scanning is off: no namespace list or watch, even for one namespace.
    assert rules(only(objects, "ClusterRole", FULLNAME)) == CLUSTER_RULES
    role = only(objects, "Role", FULLNAME)
    assert role["metadata"]["namespace"] == "media"
    assert rules(role) == SESSION_RULES
    binding = only(objects, "RoleBinding", FULLNAME)
    assert binding["metadata"]["namespace"] == "media"
    assert binding["roleRef"]["name"] == FULLNAME
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]


def test_watching_one_namespace_scopes_the_policies(helm: Path) -> None:
    objects = render(helm, "config.namespace=media")
    unscoped = render(helm)
    for policy in ("state-label", "template-needs-pods", "session-policy"):
        binding = only(objects, "ValidatingAdmissionPolicyBinding", f"{FULLNAME}-{policy}")
        assert binding["spec"]["matchResources"]["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "media"}
        }
        everywhere = only(unscoped, "ValidatingAdmissionPolicyBinding", f"{FULLNAME}-{policy}")
        assert "matchResources" not in everywhere["spec"]


def test_client_and_aggregated_roles(helm: Path) -> None:
    objects = render(helm)
    assert rules(only(objects, "ClusterRole", "session-heartbeat")) == grants(
        "xg2g.io", ["sessions/heartbeat"], ["create"]
    )
    view = only(objects, "ClusterRole", f"{FULLNAME}-view")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert rules(view) == grants(
        "xg2g.io", ["sessions", "sessionpolicies"], ["get", "list", "watch"]
    )
    edit = only(objects, "ClusterRole", f"{FULLNAME}-edit")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    # Sessions only: a namespace's own editors and admins never write its SessionPolicies.
    assert rules(edit) == grants("xg2g.io", ["sessions"], ["create", "update", "patch", "delete"])


def test_admission_policy_exempts_only_the_operator_service_account(helm: Path) -> None:
    objects = render(helm, "serviceAccount.name=custom")
    policy = only(objects, "ValidatingAdmissionPolicy", f"{FULLNAME}-state-label")
    expression = policy["spec"]["matchConditions"][0]["expression"]
    assert expression == f'request.userInfo.username != "system:serviceaccount:{NAMESPACE}:custom"'
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == ["sessions"]
    binding = only(objects, "ValidatingAdmissionPolicyBinding", f"{FULLNAME}-state-label")
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_template_policy_asks_the_authorizer_whether_the_creator_may_create_pods(
    helm: Path,
) -> None:
    policy = only(render(helm), "ValidatingAdmissionPolicy", f"{FULLNAME}-template-needs-pods")
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == ["CREATE"]
    assert "has(object.spec.template)" in policy["spec"]["matchConditions"][0]["expression"]
    [validation] = policy["spec"]["validations"]
    assert "resource('pods')" in validation["expression"]
    assert "check('create')" in validation["expression"]


def test_session_policy_admission_bounds_every_range_of_the_session_policy_crd(
    helm: Path,
) -> None:
    objects = render(helm)
    policy = only(objects, "ValidatingAdmissionPolicy", f"{FULLNAME}-session-policy")
    assert policy["spec"]["paramKind"] == {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "SessionPolicy",
    }
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == ["CREATE"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    binding = only(objects, "ValidatingAdmissionPolicyBinding", f"{FULLNAME}-session-policy")
    # Every SessionPolicy of the Session's namespace; none admits the Session unchanged.
    assert binding["spec"]["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Allow"}
    messages = [v["messageExpression"] for v in policy["spec"]["validations"]]
    # One refusal per minimum and maximum that the SessionPolicy CRD declares, each naming
    # the Session field it bounds (the path of the range in the policy is the field's).
    crd = yaml.safe_load((REPO / "crds" / "sessionpolicies.xg2g.io.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]

    def ranges(schema: dict[str, Any], path: str) -> list[str]:
        found: list[str] = []
        for name, child in (schema.get("properties") or {}).items():
            if set(child.get("properties") or {}) == {"default", "min", "max"}:
                found.append(f"{path}.{name}")
            else:
                found += ranges(child, f"{path}.{name}")
        return found

    bounded = ranges(spec, "spec")
    assert bounded == [
        "spec.lease.ttlSeconds",
        "spec.lease.heartbeatIntervalSeconds",
        "spec.lease.maxLifetimeSeconds",
        "spec.startTimeoutSeconds",
    ]
    for field in bounded:
        for bound in ("below the minimum", "above the maximum"):
            [message] = [m for m in messages if m.startswith(f"'{field} ") and bound in m]
            assert "' set by ' + variables.policy" in message
    assert "'spec.template is not allowed by ' + variables.policy" in messages[-1]


def test_generated_certificate_is_for_the_api_service_and_signed_by_the_published_ca(
    helm: Path,
) -> None:
    objects = render(helm)
    secret = only(objects, "Secret", f"{FULLNAME}-tls")
    ca_pem = base64.b64decode(secret["data"]["ca.crt"])
    assert only(objects, "ConfigMap", f"{FULLNAME}-ca")["data"]["ca.crt"].strip() == (
        ca_pem.decode().strip()
    )
    certificate = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    service = f"{FULLNAME}-api"
    assert set(names.get_values_for_type(x509.DNSName)) == {
        service,
        f"{service}.{NAMESPACE}",
        f"{service}.{NAMESPACE}.svc",
        f"{service}.{NAMESPACE}.svc.cluster.local",
    }


def test_service_monitor_is_optional_and_trusts_the_ca(helm: Path) -> None:
    assert not [o for o in render(helm) if o["kind"] == "ServiceMonitor"]
    monitor = only(render(helm, "metrics.serviceMonitor.enabled=true"), "ServiceMonitor")
    endpoint = monitor["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["scheme"], endpoint["path"]) == (
        "https-metrics",
        "https",
        "/metrics",
    )
    assert endpoint["tlsConfig"]["ca"]["configMap"]["name"] == f"{FULLNAME}-ca"


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A copy of what ``harness.manifests`` reads and writes."""
    for part in ["crds", "manifests", "helm"]:
        shutil.copytree(REPO / part, tmp_path / part)
    return tmp_path


def check_manifests(helm: Path, repo: Path) -> subprocess.CompletedProcess[str]:
    """``python -m harness.manifests --check`` against *repo*."""
    argv = [sys.executable, "-m", "harness.manifests", "--check", "--helm", str(helm)]
    return subprocess.run([*argv, "--repo", str(repo)], capture_output=True, text=True, cwd=REPO)


def test_manifests_are_the_chart_rendered(helm: Path) -> None:
    result = check_manifests(helm, REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifest_check_fails_when_the_chart_changes(helm: Path, repo_copy: Path) -> None:
    values = repo_copy / "helm/session-lease-operator/values.yaml"
    values.write_text(values.read_text().replace("replicaCount: 2", "replicaCount: 3"))
    result = check_manifests(helm, repo_copy)
    assert result.returncode == 1
    assert "differs: manifests/deployment.yaml" in result.stderr


def test_manifest_check_fails_when_the_crd_changes(helm: Path, repo_copy: Path) -> None:
    crd = repo_copy / "crds/sessions.xg2g.io.yaml"
    crd.write_text(crd.read_text() + "# changed\n")
    result = check_manifests(helm, repo_copy)
    assert result.returncode == 1
    assert "differs: helm/session-lease-operator/crds/sessions.xg2g.io.yaml" in result.stderr
    assert "differs: manifests/sessions.xg2g.io.yaml" in result.stderr


def test_manifests_are_flat_and_start_with_the_namespace() -> None:
    files = sorted(p.name for p in (REPO / "manifests").iterdir())
    assert files[0] == "00-namespace.yaml"
    assert all((REPO / "manifests" / name).is_file() for name in files)
    documents = [
        doc
        for name in files
        for doc in yaml.safe_load_all((REPO / "manifests" / name).read_text())
        if doc
    ]
    namespaced = [d for d in documents if "namespace" in d["metadata"]]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"session-lease-operator"}


def test_metrics_on_their_own_port_are_plain_http_for_the_service_and_monitor(
    helm: Path,
) -> None:
    objects = render(helm, "config.metricsPort=9090", "metrics.serviceMonitor.enabled=true")
    container = operator_container(objects)
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    assert plain_env(container)["XG2G_SESSION_METRICS_PORT"] == "9090"
    [port] = only(objects, "Service", f"{FULLNAME}-metrics")["spec"]["ports"]
    assert (port["name"], port["targetPort"]) == ("http-metrics", "metrics")
    [endpoint] = only(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["scheme"]) == ("http-metrics", "http")
    assert "tlsConfig" not in endpoint


def test_network_policy_admits_each_port_only_from_its_callers(helm: Path) -> None:
    assert [o for o in render(helm) if o["kind"] == "NetworkPolicy"]  # on by default
    assert not [
        o for o in render(helm, "networkPolicy.enabled=false") if o["kind"] == "NetworkPolicy"
    ]
    scraper = "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=observability"
    objects = render(helm, "config.metricsPort=9090", scraper)
    policy = only(objects, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    api, probes, webhook, metrics = policy["spec"]["ingress"]
    # Clients live in any namespace: every Pod of the cluster, not the world.
    assert api == {
        "ports": [{"port": "api", "protocol": "TCP"}],
        "from": [{"namespaceSelector": {}}],
    }
    assert probes == {"ports": [{"port": "probes", "protocol": "TCP"}]}
    assert webhook == {"ports": [{"port": "webhook", "protocol": "TCP"}]}  # the apiserver
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"team": "observability"}}}]


def test_an_empty_api_from_is_refused_rather_than_read_as_anywhere(helm: Path) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--set", "networkPolicy.apiFrom=null")
    assert result.returncode != 0
    assert "networkPolicy.apiFrom" in result.stderr


def test_the_replicas_are_spread_over_nodes_where_there_are_several(helm: Path) -> None:
    deployment = only(render(helm), "Deployment")
    [spread] = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
