"""The one in-memory store of Sessions in a process, fed by a watch.

The controller, its expiry backstop and the heartbeat API all read it: by namespace/name,
by ``status.sessionID``, and, for the live Sessions, ordered by their next deadline (the
lease's expiry, or the start deadline of one still starting if that comes first); it
also counts the live ones whose ``LeaseValid`` says their lease is expiring soon. An
older version of an object never replaces a newer one, so a write's response taken here
stays put when the watch later delivers the same or an older version. Every replica holds
every Session, so the stored form (``models.Session``) keeps only what the operator acts
on: no template, no labels but the state label, no annotations, no finalizer list; about
2 KiB per Session however large its body (docs/security.md).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime

from session_operator.expiry_warning import warned
from session_operator.informer.keyed_heap import KeyedHeap
from session_operator.lease import LIVE_STATES, next_deadline
from session_operator.models import Session, SessionRef


class SessionStore:
    """Newest known version of each Session, by ref and by sessionID, with the live ones
    ordered by their next deadline so the backstop finds the lapsed ones in
    O(lapsed + log n)."""

    def __init__(self) -> None:
        self._sessions: dict[SessionRef, Session] = {}
        self._by_id: dict[str, SessionRef] = {}
        self._expiries: KeyedHeap[SessionRef] = KeyedHeap()
        self._expiring_soon: set[SessionRef] = set()
        self._synced = asyncio.Event()

    @property
    def synced(self) -> bool:
        """True once a full listing has been loaded (and from then on): a Session it does
        not know does not exist, as far as the watch has told."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        """Return once a full listing has been loaded."""
        await self._synced.wait()

    def mark_synced(self) -> None:
        """Say that a full listing has been loaded."""
        self._synced.set()

    def update(self, session: Session) -> Session:
        """Keep *session* unless a newer version is already stored; return the kept one."""
        known = self._sessions.get(session.ref)
        if known is not None and is_newer(known.resource_version, session.resource_version):
            return known
        self._put(known, session)
        return session

    def refresh(self, session: Session) -> None:
        """Keep *session* if its ref is known and it is not older than what is known.

        For objects read or written outside the watch: a Session the watch already reported
        deleted is not brought back by a response that was in flight meanwhile.
        """
        if session.ref in self._sessions:
            self.update(session)

    def replace_all(self, sessions: Iterable[Session]) -> None:
        """Forget everything and keep *sessions* (the result of a fresh LIST)."""
        self._sessions.clear()
        self._by_id.clear()
        self._expiries = KeyedHeap()
        self._expiring_soon.clear()
        for session in sessions:
            self.update(session)

    def remove(self, ref: SessionRef) -> None:
        """Forget a deleted Session."""
        known = self._sessions.pop(ref, None)
        if known is not None and known.status.session_id:
            self._by_id.pop(known.status.session_id, None)
        self._expiries.discard(ref)
        self._expiring_soon.discard(ref)

    def get(self, ref: SessionRef) -> Session | None:
        """The newest known version, if any."""
        return self._sessions.get(ref)

    def by_id(self, session_id: str) -> Session | None:
        """The Session whose ``status.sessionID`` is *session_id*, if known."""
        ref = self._by_id.get(session_id)
        return None if ref is None else self._sessions.get(ref)

    def lapsed(self, now: datetime) -> list[SessionRef]:
        """The live Sessions whose lease expired, or whose start deadline passed, at or
        before *now*, earliest first."""
        return list(self._expiries.due(now))

    def live_deadlines(self) -> list[tuple[SessionRef, datetime]]:
        """Each live Session with its next deadline (:func:`lease.next_deadline`), in no
        order."""
        return self._expiries.items()

    def count_by_state(self) -> Counter[str]:
        """How many known sessions are in each state (``unknown`` before initialisation)."""
        return Counter(
            str(s.status.state) if s.status.state else "unknown" for s in self._sessions.values()
        )

    def count_expiring_soon(self) -> int:
        """How many live sessions were told their lease is expiring soon (``LeaseValid``
        reason ``ExpiringSoon``) and have not left the warning window since."""
        return len(self._expiring_soon)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def _put(self, known: Session | None, session: Session) -> None:
        if known is not None and known.status.session_id != session.status.session_id:
            self._by_id.pop(known.status.session_id or "", None)
        self._sessions[session.ref] = session
        if session.status.session_id:
            self._by_id[session.status.session_id] = session.ref
        lease = session.lease()
        if lease is not None and lease.state in LIVE_STATES:
            self._expiries.set(session.ref, next_deadline(lease))
        else:
            self._expiries.discard(session.ref)
        if lease is not None and lease.state in LIVE_STATES and warned(session.conditions):
            self._expiring_soon.add(session.ref)
        else:
            self._expiring_soon.discard(session.ref)


def is_newer(first: str, second: str) -> bool:
    """Tell whether resourceVersion *first* is newer than *second*.

    resourceVersions are opaque, but etcd-backed ones are increasing integers; where they
    are not, neither counts as newer and the most recent arrival wins.
    """
    try:
        return int(first) > int(second)
    except ValueError:
        return False
