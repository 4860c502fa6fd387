"""kopf's one handler: its login, with the credentials of the operator's own client.

kopf runs the process's lifecycle (signals, its ready flag) and watches nothing: Sessions
and their workload Pods come through the operator's own watches (``informer/``).
"""

from __future__ import annotations

from typing import Any

import kopf


def register_login(registry: kopf.OperatorRegistry) -> None:
    """Register kopf's login in *registry*."""

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as the operator's own client (kubeconfig or in-cluster).
        return await kopf.login_via_async_client(**kwargs)
