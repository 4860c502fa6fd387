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

from bench.access import create_heartbeat_role, grant_accounts, mint_token
from bench.context import SessionName
from harness.kube import ApiServer

HEARTBEAT_ROLE = "field-session-heartbeat"
TOKEN_SECONDS = 3600
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


async def grant_heartbeats(api: ApiServer, namespaces: Sequence[str], accounts: int) -> None:
    """The heartbeat ClusterRole, and in each namespace *accounts* ServiceAccounts bound to
    it there."""
    await create_heartbeat_role(api, HEARTBEAT_ROLE)
    items = [(namespace, f"client-{i}") for namespace in namespaces for i in range(accounts)]
    await grant_accounts(api, HEARTBEAT_ROLE, items)


async def mint_tenant_token(api: ApiServer, namespace: str, account: str) -> str:
    """A client's own token (an hour, as a projected volume's)."""
    return await mint_token(api, namespace, account, TOKEN_SECONDS)


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
