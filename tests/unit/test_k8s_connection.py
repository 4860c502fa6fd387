"""The apiserver client does not consult proxy variables or ~/.netrc on every request."""

from __future__ import annotations

from pathlib import Path

from session_operator.k8s.connection import connect
from tests.kubeconfigs import unreachable_kubeconfig


async def test_the_apiserver_client_ignores_the_environment(tmp_path: Path) -> None:
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    api_client = await connect(str(kubeconfig))
    try:
        session = api_client.rest_client.pool_manager
        assert session.trust_env is False
        assert session.connector is not None
        assert not session.closed
    finally:
        await api_client.close()
