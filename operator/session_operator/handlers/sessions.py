"""kopf handlers: Session and workload Pod events, and deletion.

``@kopf.on.event`` adds no finalizer and writes nothing; it feeds the controller,
which owns every decision and every write (its expiry backstop included: one task for
the operator, not a kopf timer per Session). ``@kopf.on.delete`` holds kopf's finalizer
while a deleted Session is stopped (``CLEANUP``) and its objects are released.
"""

from __future__ import annotations

from typing import Any

import kopf

from session_operator.controller.loop import NotLeading, SessionController
from session_operator.k8s.errors import ApiUnavailable
from session_operator.models import GROUP, PLURAL, SESSION_LABEL, VERSION

RETRY_SECONDS = 2.0
"""How soon a deletion whose clean-up could not finish is tried again."""


def register_session_handlers(
    registry: kopf.OperatorRegistry, controller: SessionController
) -> None:
    """Register the Session handlers of *controller* in *registry*."""

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as the operator's own client (kubeconfig or in-cluster).
        return await kopf.login_via_async_client(**kwargs)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def session_event(event: kopf.RawEvent, **_: Any) -> None:
        controller.observe(event["type"], event["object"])

    @kopf.on.event("", "v1", "pods", labels={SESSION_LABEL: kopf.PRESENT}, registry=registry)
    async def workload_event(event: kopf.RawEvent, **_: Any) -> None:
        controller.observe_pod(event["type"], event["object"])

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, backoff=RETRY_SECONDS)
    async def session_deleted(body: kopf.Body, **_: Any) -> None:
        # kopf holds its finalizer until this returns: CLEANUP, then the objects go.
        try:
            remaining = await controller.clean_up(body)
        except NotLeading as standby:
            raise kopf.TemporaryError(str(standby), delay=RETRY_SECONDS) from standby
        except ApiUnavailable as unavailable:
            # kopf's own retry of a failed handler waits a minute; the apiserver may be
            # back in a second, and the user who deleted the session waits meanwhile.
            raise kopf.TemporaryError(str(unavailable), delay=RETRY_SECONDS) from unavailable
        if remaining:
            raise kopf.TemporaryError(f"waiting for {remaining} owned objects to go", delay=1)
