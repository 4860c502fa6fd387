"""Connect to the apiserver: in-cluster ServiceAccount credentials, else the kubeconfig."""

from __future__ import annotations

import os

from kubernetes_asyncio import client, config

CONNECTION_POOL_SIZE = 64


async def connect() -> client.ApiClient:
    """An API client for the cluster this process runs in, or the one of ``KUBECONFIG``."""
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    return client.ApiClient(configuration)
