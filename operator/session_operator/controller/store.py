"""The latest Session objects seen on the watch, keyed by namespace/name, and which of the
live ones have lapsed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime

from session_operator.controller.keyed_heap import KeyedHeap
from session_operator.lease import LIVE_STATES
from session_operator.models import Session, SessionRef


class SessionStore:
    """Newest known version of each Session; an older version never replaces a newer one.

    It also orders the live Sessions (``new``, ``starting``, ``ready``) by their lease's
    expiry, so the expiry backstop finds the lapsed ones in O(lapsed + log n) without
    looking at the others or asking the apiserver.
    """

    def __init__(self) -> None:
        self._sessions: dict[SessionRef, Session] = {}
        self._expiries: KeyedHeap[SessionRef] = KeyedHeap()

    def update(self, session: Session) -> Session:
        """Keep *session* unless a newer version is already stored; return the kept one."""
        known = self._sessions.get(session.ref)
        if known is not None and _newer(known.resource_version, session.resource_version):
            return known
        self._sessions[session.ref] = session
        expires_at = session.status.lease_expires_at
        if session.status.state in LIVE_STATES and expires_at is not None:
            self._expiries.set(session.ref, expires_at)
        else:
            self._expiries.discard(session.ref)
        return session

    def remove(self, ref: SessionRef) -> None:
        """Forget a deleted Session."""
        self._sessions.pop(ref, None)
        self._expiries.discard(ref)

    def get(self, ref: SessionRef) -> Session | None:
        """The newest known version, if any."""
        return self._sessions.get(ref)

    def lapsed(self, now: datetime) -> list[SessionRef]:
        """The live Sessions whose lease expired at or before *now*, earliest first."""
        return list(self._expiries.due(now))

    def count_by_state(self) -> Counter[str]:
        """How many known sessions are in each state (``unknown`` before initialisation)."""
        return Counter(
            str(s.status.state) if s.status.state else "unknown" for s in self._sessions.values()
        )

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)


def _newer(first: str, second: str) -> bool:
    # resourceVersions are opaque, but etcd-backed ones are increasing integers; where
    # they are not, the most recent arrival wins.
    try:
        return int(first) > int(second)
    except ValueError:
        return False
