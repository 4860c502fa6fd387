"""Find the Session a request names: in the API's cache, else with one read of the apiserver.

A cache miss is not yet a 404: the Session may be younger than the watch. One read decides
(a GET by namespace/name; a LIST for a sessionID, which no GET can address). Objects read
here refresh the cache only where it already knows them, so a Session the watch reported
deleted is never brought back.
"""

from __future__ import annotations

from session_operator.api.cache import SessionCache
from session_operator.api.errors import SessionNotFound
from session_operator.k8s.sessions import SessionApi
from session_operator.k8s.watch import ListWatch
from session_operator.models import Session, SessionRef


class SessionLookup:
    """Sessions for the heartbeat API, limited to *namespace* when one is configured."""

    def __init__(
        self,
        cache: SessionCache,
        sessions: SessionApi,
        all_sessions: ListWatch,
        namespace: str | None,
    ) -> None:
        self._cache = cache
        self._sessions = sessions
        self._all_sessions = all_sessions
        self._namespace = namespace

    async def by_ref(self, ref: SessionRef) -> Session:
        """The Session at *ref*; :class:`SessionNotFound` if there is none."""
        if self._namespace is not None and ref.namespace != self._namespace:
            raise SessionNotFound(f"no session {ref} (this API serves namespace {self._namespace})")
        cached = self._cache.by_ref(ref)
        if cached is not None:
            return cached
        return await self.reread(ref)

    async def by_id(self, session_id: str) -> Session:
        """The Session whose ``status.sessionID`` is *session_id*; else :class:`SessionNotFound`."""
        cached = self._cache.by_id(session_id)
        if cached is not None:
            return cached
        listing = await self._all_sessions.list()
        for item in listing.items:
            if (item.get("status") or {}).get("sessionID") == session_id:
                return Session.from_body(item)
        raise SessionNotFound(f"no session with sessionID {session_id}")

    async def reread(self, ref: SessionRef) -> Session:
        """The Session at *ref* as stored now (one GET); :class:`SessionNotFound` if gone."""
        session = await self._sessions.get(ref)
        if session is None:
            raise SessionNotFound(f"no session {ref}")
        self._cache.refresh(session)
        return session

    def remember(self, session: Session) -> None:
        """Take a version this API has just written."""
        self._cache.refresh(session)
