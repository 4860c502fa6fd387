"""Find the Session a request names: in the process's watch-fed store.

By namespace/name, a cache miss is not yet a 404: the Session may be younger than the
watch, and one GET (made after the caller was authorised for that namespace) decides. By
sessionID no GET can address the Session, and a LIST per unknown id would let any caller
with a token make the API read every Session in the cluster: a sessionID the synced cache
does not know is 404 at once, and 503 before the cache has synced. Objects read here refresh
the cache only where it already knows them, so a Session the watch reported deleted is never
brought back.
"""

from __future__ import annotations

from session_operator.api.errors import CacheNotSynced, SessionNotFound
from session_operator.informer.session_store import SessionStore
from session_operator.k8s.sessions import SessionApi
from session_operator.models import Session, SessionRef


class SessionLookup:
    """Sessions for the heartbeat API, limited to *namespace* when one is configured."""

    def __init__(
        self,
        store: SessionStore,
        sessions: SessionApi,
        namespace: str | None,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._namespace = namespace

    async def by_ref(self, ref: SessionRef) -> Session:
        """The Session at *ref*; :class:`SessionNotFound` if there is none."""
        if self._namespace is not None and ref.namespace != self._namespace:
            raise SessionNotFound(f"no session {ref} (this API serves namespace {self._namespace})")
        cached = self._store.get(ref)
        if cached is not None:
            return cached
        return await self.reread(ref)

    def by_id(self, session_id: str) -> Session:
        """The Session whose ``status.sessionID`` is *session_id*, from the cache alone.

        Raises :class:`SessionNotFound` when the synced cache does not know it, and
        :class:`CacheNotSynced` before the first listing has been loaded.
        """
        cached = self._store.by_id(session_id)
        if cached is not None:
            return cached
        if not self._store.synced:
            raise CacheNotSynced("the session cache is still loading; retry in a second")
        raise SessionNotFound(f"no session with sessionID {session_id}")

    async def reread(self, ref: SessionRef) -> Session:
        """The Session at *ref* as stored now (one GET); :class:`SessionNotFound` if gone."""
        session = await self._sessions.get(ref)
        if session is None:
            raise SessionNotFound(f"no session {ref}")
        self._store.refresh(session)
        return session

    def remember(self, session: Session) -> None:
        """Take a version this API has just written."""
        self._store.refresh(session)
