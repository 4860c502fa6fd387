"""Reads and compare-and-set writes of Session objects.

kopf's own handler patches are unconditional merge-patches, so every write that must
not lose a race lives here: JSON-patch ``test`` operations on ``/status`` (a failed
test is a 422, raised as :class:`PreconditionFailed`), or a ``resourceVersion``
precondition (409, the same exception).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from session_operator.k8s.errors import NotFound, PreconditionFailed
from session_operator.k8s.rest import JSON_PATCH, MERGE_PATCH, Rest
from session_operator.models import Session, SessionRef

JsonPatch = Sequence[Mapping[str, Any]]


class SessionApi:
    """The Session calls of the operator and the heartbeat API."""

    def __init__(self, rest: Rest) -> None:
        self._rest = rest

    async def get(self, ref: SessionRef) -> Session | None:
        """The Session as stored now, or ``None`` when it does not exist."""
        try:
            body = await self._rest.request("GET", ref.path())
        except NotFound:
            return None
        return Session.from_body(body)

    async def patch_status(self, ref: SessionRef, operations: JsonPatch) -> Session:
        """Apply a JSON patch (with its ``test`` operations) to ``/status``."""
        body = await self._rest.request(
            "PATCH",
            ref.path("status"),
            body=list(operations),
            content_type=JSON_PATCH,
        )
        return Session.from_body(body)

    async def write_status_at_version(
        self, ref: SessionRef, status: Mapping[str, Any], resource_version: str
    ) -> Session:
        """Merge *status* into ``/status`` if the object is still at *resource_version*."""
        patch = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        body = await self._rest.request(
            "PATCH",
            ref.path("status"),
            body=patch,
            content_type=MERGE_PATCH,
        )
        return Session.from_body(body)

    async def patch(self, ref: SessionRef, operations: JsonPatch) -> Session:
        """Apply a JSON patch (with its ``test`` operations) to the object: its metadata
        (``/status`` is written through :meth:`patch_status`)."""
        body = await self._rest.request(
            "PATCH",
            ref.path(),
            body=list(operations),
            content_type=JSON_PATCH,
        )
        return Session.from_body(body)

    async def delete(self, session: Session) -> None:
        """Delete *session* (this very object: a uid precondition); gone already is fine."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": session.uid}}
        try:
            await self._rest.request("DELETE", session.ref.path(), body=body)
        except (NotFound, PreconditionFailed):
            return
