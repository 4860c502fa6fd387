"""Reads of SessionPolicy objects: the policies of one namespace, listed when the operator
needs them (it never writes one)."""

from __future__ import annotations

from session_operator.k8s.errors import NotFound
from session_operator.k8s.rest import Rest
from session_operator.k8s.watch import ListWatch, skipping_undecodable
from session_operator.session_policy import SessionPolicy, session_policies_path

_decode = skipping_undecodable(SessionPolicy.from_body, "session policies")


class SessionPolicyApi:
    """The SessionPolicy reads of the operator."""

    def __init__(self, rest: Rest) -> None:
        self._rest = rest

    async def list(self, namespace: str) -> list[SessionPolicy]:
        """Every SessionPolicy of *namespace*; none where the SessionPolicy CRD is not
        installed (a cluster upgraded without ``crds/``: no policy can exist there)."""
        try:
            listing = await ListWatch(self._rest, session_policies_path(namespace)).list(_decode)
        except NotFound:
            return []
        return listing.items
