"""Kubernetes Events (``events.k8s.io/v1``) about Sessions, one per transition.

kopf's own event posting is switched off (it would post one per handler run); these
are the Events ``kubectl describe session`` shows.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import datetime
from typing import Any

from session_operator.k8s.errors import KubernetesError
from session_operator.k8s.rest import Rest
from session_operator.models import GROUP, KIND, VERSION, Session
from session_operator.timestamps import format_micro_time

CONTROLLER = "xg2g.io/session-lease-operator"

logger = logging.getLogger(__name__)


class EventRecorder:
    """Posts Events about Sessions; a failure to post is logged, never raised."""

    def __init__(self, rest: Rest) -> None:
        self._rest = rest
        self._instance = os.environ.get("POD_NAME") or socket.gethostname()

    async def record(
        self,
        session: Session,
        reason: str,
        note: str,
        now: datetime,
        *,
        warning: bool = False,
        action: str = "Reconcile",
    ) -> None:
        """Post one Event *reason* (CamelCase) with a human-readable *note*."""
        body: dict[str, Any] = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {
                # Named like kubelet's Events (name.<hex nanoseconds>): unique, and listed
                # in the order they happened (kubectl describe keeps the list order).
                "name": f"{session.ref.name}.{time.time_ns():x}",
                "namespace": session.ref.namespace,
            },
            "eventTime": format_micro_time(now),
            "reportingController": CONTROLLER,
            "reportingInstance": self._instance,
            "action": action,
            "reason": reason,
            "note": note[:1024],
            "type": "Warning" if warning else "Normal",
            "regarding": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": session.ref.name,
                "namespace": session.ref.namespace,
                "uid": session.uid,
            },
        }
        try:
            path = f"/apis/events.k8s.io/v1/namespaces/{session.ref.namespace}/events"
            await self._rest.request("POST", path, body=body)
        except KubernetesError as error:
            logger.warning("could not post event %s for %s: %s", reason, session.ref, error)
