"""Connect to the apiserver: in-cluster ServiceAccount credentials, else the kubeconfig."""

from __future__ import annotations

import os

from kubernetes_asyncio import client, config

from session_operator import __version__

CONNECTION_POOL_SIZE = 64


async def connect(kubeconfig: str | None = None) -> client.ApiClient:
    """An API client for *kubeconfig*, else the cluster this process runs in, else
    the one of ``KUBECONFIG`` (or ``~/.kube/config``)."""
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    api_client = client.ApiClient(configuration)
    # Also the field manager name that `kubectl get -o yaml --show-managed-fields` shows.
    api_client.user_agent = f"session-lease-operator/{__version__}"
    return api_client
