"""Connect to the apiserver: in-cluster ServiceAccount credentials, else the kubeconfig."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
from kubernetes_asyncio import client, config

from session_operator import __version__

CONNECTION_POOL_SIZE = 64
# A watch event carries a whole object, up to etcd's 1.5 MiB (the library's own choice).
READ_BUFFER_BYTES = 2 * 1024 * 1024


class NoCluster(Exception):
    """Neither a kubeconfig file nor a cluster around this process."""


async def connect(kubeconfig: str | None = None) -> client.ApiClient:
    """An API client for *kubeconfig*, else the cluster this process runs in, else
    the one of ``KUBECONFIG`` (or ``~/.kube/config``); :class:`NoCluster` if none is."""
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        files = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        if not _any_file(files):
            raise NoCluster(f"no kubeconfig at {files}")
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    api_client = client.ApiClient(configuration)
    _without_environment_lookups(api_client)
    # Also the field manager name that `kubectl get -o yaml --show-managed-fields` shows.
    api_client.user_agent = f"session-lease-operator/{__version__}"
    return api_client


def _any_file(paths: str) -> bool:
    # Once, at the start: a stat of each kubeconfig path KUBECONFIG lists.
    return any(Path(name).expanduser().is_file() for name in paths.split(os.pathsep))


def _without_environment_lookups(api_client: client.ApiClient) -> None:
    """Give the client an HTTP session that does not consult the environment.

    kubernetes_asyncio's session looks up proxy variables and reads ``~/.netrc`` on every
    request (aiohttp's ``trust_env``), a cost on every heartbeat's write. The apiserver is
    reached directly, or through the kubeconfig's ``proxy-url``, which is passed with each
    request and still applies.
    """
    rest = api_client.rest_client
    environment_aware: aiohttp.ClientSession = rest.pool_manager
    connector = environment_aware.connector
    environment_aware.detach()
    rest.pool_manager = aiohttp.ClientSession(
        connector=connector, trust_env=False, read_bufsize=READ_BUFFER_BYTES
    )
