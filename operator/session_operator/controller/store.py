"""The latest Session objects seen on the watch, keyed by namespace/name."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from session_operator.models import Session, SessionRef


class SessionStore:
    """Newest known version of each Session; an older version never replaces a newer one."""

    def __init__(self) -> None:
        self._sessions: dict[SessionRef, Session] = {}

    def update(self, session: Session) -> Session:
        """Keep *session* unless a newer version is already stored; return the kept one."""
        known = self._sessions.get(session.ref)
        if known is not None and _newer(known.resource_version, session.resource_version):
            return known
        self._sessions[session.ref] = session
        return session

    def remove(self, ref: SessionRef) -> None:
        """Forget a deleted Session."""
        self._sessions.pop(ref, None)

    def get(self, ref: SessionRef) -> Session | None:
        """The newest known version, if any."""
        return self._sessions.get(ref)

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
