"""The workload of a Session: one Pod from ``spec.template``, owned and labelled."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from session_operator.k8s.errors import NotFound, PreconditionFailed
from session_operator.k8s.rest import Rest
from session_operator.models import GROUP, KIND, SESSION_LABEL, VERSION, Session
from session_operator.workload import PodSummary, summarize_pod


def workload_pod(session: Session, template: Mapping[str, Any]) -> dict[str, Any]:
    """The Pod for *session* from its *template*: named after it, labelled and controlled
    by it."""
    template = copy.deepcopy(dict(template))
    metadata = template.get("metadata") or {}
    labels = {**(metadata.get("labels") or {}), SESSION_LABEL: session.ref.name}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": session.ref.name,
            "namespace": session.ref.namespace,
            "labels": labels,
            "annotations": metadata.get("annotations") or {},
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "name": session.ref.name,
                    "uid": session.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": template.get("spec") or {},
    }


class PodApi:
    """Pod calls of the operator."""

    def __init__(self, rest: Rest) -> None:
        self._rest = rest

    async def create_workload(self, session: Session) -> None:
        """Create the session's Pod from its template, read now (no copy of a Session in
        memory holds it); an existing Pod (an earlier attempt) is fine.

        Raises ``NotFound`` when the Session is gone or was replaced by another of its name.
        """
        stored = await self._rest.request("GET", session.ref.path())
        if stored["metadata"]["uid"] != session.uid:
            raise NotFound(f"session {session.ref} was replaced")
        template = (stored.get("spec") or {}).get("template") or {}
        try:
            path = f"/api/v1/namespaces/{session.ref.namespace}/pods"
            await self._rest.request("POST", path, body=workload_pod(session, template))
        except PreconditionFailed:
            return  # 409 AlreadyExists: created by an earlier attempt.

    async def read_workload(self, session: Session) -> PodSummary | None:
        """The session's Pod as stored now (``NotFound`` when it does not exist)."""
        path = f"/api/v1/namespaces/{session.ref.namespace}/pods/{session.ref.name}"
        return summarize_pod(await self._rest.request("GET", path))
