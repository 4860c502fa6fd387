"""The heartbeat API's in-memory Sessions, found by sessionID or by namespace/name.

Pure bookkeeping: the watch loop in :mod:`session_operator.api.cache` feeds it events and
listings. An older version of an object never replaces a newer one, so a write's response
applied here stays put when the watch later delivers the same or an older version.
"""

from __future__ import annotations

from collections.abc import Iterable

from session_operator.models import Session, SessionRef


class SessionIndex:
    """Newest known version of each Session, indexed by ``status.sessionID`` and by ref."""

    def __init__(self) -> None:
        self._by_ref: dict[SessionRef, Session] = {}
        self._by_id: dict[str, SessionRef] = {}

    def replace_all(self, sessions: Iterable[Session]) -> None:
        """Forget everything and keep *sessions* (the result of a fresh LIST)."""
        self._by_ref = {session.ref: session for session in sessions}
        self._by_id = {
            session.status.session_id: session.ref
            for session in self._by_ref.values()
            if session.status.session_id
        }

    def upsert(self, session: Session) -> None:
        """Keep *session* unless a newer version of it is already known."""
        known = self._by_ref.get(session.ref)
        if known is not None and is_newer(known.resource_version, session.resource_version):
            return
        self._put(known, session)

    def refresh(self, session: Session) -> None:
        """Keep *session* if its ref is known and it is not older than what is known.

        For objects read or written outside the watch: a Session the watch already reported
        deleted is not brought back by a response that was in flight meanwhile.
        """
        known = self._by_ref.get(session.ref)
        if known is None or is_newer(known.resource_version, session.resource_version):
            return
        self._put(known, session)

    def remove(self, ref: SessionRef) -> None:
        """Forget a deleted Session."""
        known = self._by_ref.pop(ref, None)
        if known is not None and known.status.session_id:
            self._by_id.pop(known.status.session_id, None)

    def by_ref(self, ref: SessionRef) -> Session | None:
        """The Session at *ref*, if known."""
        return self._by_ref.get(ref)

    def by_id(self, session_id: str) -> Session | None:
        """The Session whose ``status.sessionID`` is *session_id*, if known."""
        ref = self._by_id.get(session_id)
        return None if ref is None else self._by_ref.get(ref)

    def __len__(self) -> int:
        return len(self._by_ref)

    def _put(self, known: Session | None, session: Session) -> None:
        if known is not None and known.status.session_id != session.status.session_id:
            self._by_id.pop(known.status.session_id or "", None)
        self._by_ref[session.ref] = session
        if session.status.session_id:
            self._by_id[session.status.session_id] = session.ref


def is_newer(first: str, second: str) -> bool:
    """Tell whether resourceVersion *first* is newer than *second*.

    resourceVersions are opaque, but etcd-backed ones are increasing integers; where they
    are not, neither counts as newer and the most recent arrival wins.
    """
    try:
        return int(first) > int(second)
    except ValueError:
        return False
