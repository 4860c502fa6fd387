"""kopf handlers: the login, and the workload Pods' events.

``@kopf.on.event`` adds no finalizer and writes nothing; it feeds the controller, which
owns every decision and every write. Sessions come through the operator's own watch
(``informer.session_cache.SessionCache``), not through kopf.
"""

from __future__ import annotations

from typing import Any

import kopf

from session_operator.controller.loop import SessionController
from session_operator.models import SESSION_LABEL


def register_pod_handlers(registry: kopf.OperatorRegistry, controller: SessionController) -> None:
    """Register the login and the workload Pod handler of *controller* in *registry*."""

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as the operator's own client (kubeconfig or in-cluster).
        return await kopf.login_via_async_client(**kwargs)

    @kopf.on.event("", "v1", "pods", labels={SESSION_LABEL: kopf.PRESENT}, registry=registry)
    async def workload_event(event: kopf.RawEvent, **_: Any) -> None:
        controller.observe_pod(event["type"], event["object"])
