"""Kubernetes Events (``events.k8s.io/v1``) about Sessions, one per transition.

kopf's own event posting is switched off (it would post one per handler run); these
are the Events ``kubectl describe session`` shows.

An Event is recorded at once and posted in the background, a few at a time, as client-go's
recorders do: a lease decision never waits for the write of its Event, so after a takeover
each stop of a backlog of lapsed leases is its status write alone. Each Event is named when
it is recorded, so ``kubectl describe`` lists them in the order they happened whatever
order they are posted in. An Event that finds :data:`EVENT_BACKLOG` others waiting is
dropped, with a warning; those still waiting when the process stops are not posted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import datetime
from typing import Any

from session_operator.k8s.errors import KubernetesError
from session_operator.k8s.rest import Rest
from session_operator.models import GROUP, KIND, VERSION, Session, SessionRef
from session_operator.timestamps import format_micro_time

CONTROLLER = "xg2g.io/session-lease-operator"
EVENT_BACKLOG = 4096
"""Events recorded and not yet posted, at most; another is dropped."""
EVENT_POSTERS = 4
"""Events posted at once."""

logger = logging.getLogger(__name__)


class EventRecorder:
    """Records Events about Sessions, posted by :meth:`run`; a failure to post is logged,
    never raised."""

    def __init__(self, rest: Rest, *, backlog: int = EVENT_BACKLOG) -> None:
        self._rest = rest
        self._instance = os.environ.get("POD_NAME") or socket.gethostname()
        self._waiting: asyncio.Queue[tuple[SessionRef, str, dict[str, Any]]] = asyncio.Queue(
            backlog
        )

    def record(
        self,
        session: Session,
        reason: str,
        note: str,
        now: datetime,
        *,
        warning: bool = False,
        action: str = "Reconcile",
    ) -> None:
        """Record one Event *reason* (CamelCase) with a human-readable *note*, to be posted."""
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
            self._waiting.put_nowait((session.ref, reason, body))
        except asyncio.QueueFull:
            logger.warning(
                "event %s for %s dropped: %d events wait to be posted",
                reason,
                session.ref,
                self._waiting.qsize(),
            )

    @property
    def waiting(self) -> int:
        """Events recorded and not yet posted."""
        return self._waiting.qsize()

    async def run(self, posters: int = EVENT_POSTERS) -> None:
        """Post the recorded Events, *posters* at a time, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            for _ in range(posters):
                tasks.create_task(self._post_waiting())

    async def _post_waiting(self) -> None:
        while True:
            ref, reason, body = await self._waiting.get()
            try:
                path = f"/apis/events.k8s.io/v1/namespaces/{ref.namespace}/events"
                await self._rest.request("POST", path, body=body)
            except KubernetesError as error:
                logger.warning("could not post event %s for %s: %s", reason, ref, error)
