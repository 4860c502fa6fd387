"""The field's tenants: namespaces, ServiceAccounts allowed to beat, one token per client,
and Sessions that run a Pod.

Each tenant namespace holds its own ServiceAccounts, bound to a ClusterRole that grants what
the chart's ``session-heartbeat`` grants. Every client gets a token of its own from the
TokenRequest API (audience ``session-lease-operator``, an hour), as a projected token
volume gives each Pod: no two clients share one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.context import SETUP_CONCURRENCY, SessionName
from bench.load import bounded_gather
from harness.kube import ApiServer
from session_operator.config import DEFAULT_TOKEN_AUDIENCE

HEARTBEAT_ROLE = "field-session-heartbeat"
TOKEN_SECONDS = 3600
RBAC = "/apis/rbac.authorization.k8s.io/v1"
POD_TEMPLATE: dict[str, Any] = {
    "spec": {
        "containers": [{"name": "main", "image": "registry.invalid/session:field"}],
        "terminationGracePeriodSeconds": 0,
    }
}
"""A Session's workload: a Pod that stays Pending (no node runs it here), which is all the
operator needs to hold it ``starting`` and release it on a stop."""


@dataclass(frozen=True)
class Tenant:
    """A client: the Session it beats, the ServiceAccount it runs as, and its own token."""

    session: SessionName
    account: str
    token: str


def tenant_namespaces(count: int) -> list[str]:
    """The names of *count* tenant namespaces."""
    return [f"field-{index}" for index in range(count)]


def account_of(index: int, namespaces: Sequence[str], accounts_per_namespace: int) -> str:
    """The ServiceAccount client *index* runs as: accounts are dealt round the namespaces."""
    return f"client-{(index // len(namespaces)) % accounts_per_namespace}"


async def create_namespaces(api: ApiServer, names: Sequence[str]) -> None:
    """Create the namespaces *names*."""
    for name in names:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        await api.expect("POST", "/api/v1/namespaces", body)


async def grant_heartbeats(api: ApiServer, namespaces: Sequence[str], accounts: int) -> None:
    """The heartbeat ClusterRole, and in each namespace *accounts* ServiceAccounts bound to
    it there."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": HEARTBEAT_ROLE},
        "rules": [{"apiGroups": ["xg2g.io"], "resources": ["sessions/heartbeat"],
                   "verbs": ["create"]}],
    }  # fmt: skip
    await api.expect("POST", f"{RBAC}/clusterroles", role)
    items = [(namespace, f"client-{i}") for namespace in namespaces for i in range(accounts)]

    async def grant(item: tuple[str, str]) -> None:
        namespace, name = item
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
        await api.expect("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", account)
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{name}-heartbeat"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": HEARTBEAT_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }  # fmt: skip
        await api.expect("POST", f"{RBAC}/namespaces/{namespace}/rolebindings", binding)

    await bounded_gather(items, grant, SETUP_CONCURRENCY)


async def mint_token(api: ApiServer, namespace: str, account: str) -> str:
    """A new token of *account* for the operator's audience (what a projected volume holds)."""
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": TOKEN_SECONDS, "audiences": [DEFAULT_TOKEN_AUDIENCE]},
    }
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"
    answer = await api.expect("POST", path, request)
    return str(answer["status"]["token"])


def workload_session(ref: SessionName, lease: dict[str, int] | None = None) -> dict[str, Any]:
    """A Session with a Pod template (and the given lease, else the operator's defaults)."""
    spec: dict[str, Any] = {"template": POD_TEMPLATE}
    if lease is not None:
        spec["lease"] = lease
    return {
        "apiVersion": "xg2g.io/v1alpha1",
        "kind": "Session",
        "metadata": {"name": ref.name, "namespace": ref.namespace},
        "spec": spec,
    }
