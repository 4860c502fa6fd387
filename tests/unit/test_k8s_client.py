"""The apiserver client does not consult proxy variables or ~/.netrc on every request."""

from __future__ import annotations

from pathlib import Path

import yaml

from session_operator.k8s.client import connect


async def test_the_apiserver_client_ignores_the_environment(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    api_client = await connect(str(kubeconfig))
    try:
        session = api_client.rest_client.pool_manager
        assert session.trust_env is False
        assert session.connector is not None
        assert not session.closed
    finally:
        await api_client.close()
