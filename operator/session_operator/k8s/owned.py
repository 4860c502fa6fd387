"""Release a Session's objects: those labelled ``xg2g.io/session=<name>`` AND controlled by it.

A labelled object that another owner controls (or nobody) is left alone, so labelling a
foreign object never gets it deleted. Only the configured kinds are released (its Pod by
default, setting ``releasedKinds``), so the operator needs no access to other kinds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from session_operator.k8s.errors import NotFound, PreconditionFailed
from session_operator.k8s.rest import Rest
from session_operator.models import SESSION_LABEL, Session


class OwnedObjects:
    """Lists and deletes the objects of *kinds* (core API collection names, like ``pods``)
    that a Session controls."""

    def __init__(self, rest: Rest, kinds: Sequence[str]) -> None:
        self._rest = rest
        self._kinds = tuple(kinds)

    async def release(self, session: Session) -> int:
        """Ask for the deletion of every controlled object; return how many still exist
        (those already going, and those whose deletion has to wait: a grace period, a
        finalizer)."""
        remaining = 0
        for kind in self._kinds:
            for item in await self._controlled(session, kind):
                if item["metadata"].get("deletionTimestamp") or not await self._delete(
                    session, kind, item
                ):
                    remaining += 1
        return remaining

    async def _controlled(self, session: Session, kind: str) -> list[Mapping[str, Any]]:
        path = f"/api/v1/namespaces/{session.ref.namespace}/{kind}"
        listing = await self._rest.request(
            "GET", path, query={"labelSelector": f"{SESSION_LABEL}={session.ref.name}"}
        )
        return [item for item in listing.get("items") or () if _controlled_by(item, session.uid)]

    async def _delete(self, session: Session, kind: str, item: Mapping[str, Any]) -> bool:
        """Delete *item*; whether it is gone already (see :func:`deletion_finished`)."""
        metadata = item["metadata"]
        path = f"/api/v1/namespaces/{session.ref.namespace}/{kind}/{metadata['name']}"
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
            "preconditions": {"uid": metadata["uid"]},
        }
        try:
            answer = await self._rest.request("DELETE", path, body=body)
        except (NotFound, PreconditionFailed):
            return True  # already gone, or replaced by another object of that name
        return deletion_finished(answer)


def deletion_finished(answer: Mapping[str, Any]) -> bool:
    """Whether the apiserver's answer to a DELETE says the object is gone, not just going.

    It answers with a ``Status``, or with the object as it was deleted; an object that is
    only going carries a grace period to wait out (a Pod a kubelet runs) or finalizers.
    A Pod no node runs is deleted at once (grace period 0).
    """
    if answer.get("kind") == "Status":
        return True
    metadata = answer.get("metadata") or {}
    return not metadata.get("finalizers") and not metadata.get("deletionGracePeriodSeconds")


def _controlled_by(item: Mapping[str, Any], uid: str) -> bool:
    references = item.get("metadata", {}).get("ownerReferences") or ()
    return any(ref.get("controller") and ref.get("uid") == uid for ref in references)
