"""ServiceAccounts allowed to beat Sessions, and their tokens, as a cluster admin grants them.

What the chart's ClusterRole ``session-heartbeat`` grants, made here so that the benchmark
does not depend on where the manifests live.
"""

from __future__ import annotations

from bench.load import bounded_gather
from harness.kube import ApiServer
from session_operator.config import DEFAULT_TOKEN_AUDIENCE

RBAC = "/apis/rbac.authorization.k8s.io/v1"
GRANT_CONCURRENCY = 32


async def create_namespaces(api: ApiServer, names: list[str]) -> None:
    """Create the namespaces *names*."""
    for name in names:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        await api.expect("POST", "/api/v1/namespaces", body)


async def create_heartbeat_role(api: ApiServer, role: str) -> None:
    """The ClusterRole *role*: ``create`` on ``sessions/heartbeat``, nothing else."""
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": role},
        "rules": [{"apiGroups": ["xg2g.io"], "resources": ["sessions/heartbeat"],
                   "verbs": ["create"]}],
    }  # fmt: skip
    await api.expect("POST", f"{RBAC}/clusterroles", body)


async def grant_account(api: ApiServer, namespace: str, name: str, role: str) -> None:
    """A ServiceAccount *name* in *namespace*, bound there to the ClusterRole *role*."""
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
    await api.expect("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", account)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{name}-heartbeat"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }  # fmt: skip
    await api.expect("POST", f"{RBAC}/namespaces/{namespace}/rolebindings", binding)


async def grant_accounts(api: ApiServer, role: str, accounts: list[tuple[str, str]]) -> None:
    """:func:`grant_account` for each (namespace, name) of *accounts*."""

    async def grant(item: tuple[str, str]) -> None:
        await grant_account(api, *item, role)

    await bounded_gather(accounts, grant, GRANT_CONCURRENCY)


async def mint_token(api: ApiServer, namespace: str, account: str, seconds: int) -> str:
    """A new token of *account* for the operator's audience, valid *seconds* (what a
    projected token volume holds)."""
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": seconds, "audiences": [DEFAULT_TOKEN_AUDIENCE]},
    }
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"
    answer = await api.expect("POST", path, request)
    return str(answer["status"]["token"])
