"""The one watch of Sessions in a process, into a :class:`SessionSink`.

In the operator the sink is the controller, which keeps the store that its workers, its
expiry backstop and the heartbeat API read; in ``serve-api`` it is a bare store. Every
write the API makes is compare-and-set, so a store that lags a little can delay an answer
but never make a wrong write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from session_operator.informer.reflector import Reflector
from session_operator.k8s.rest import Rest
from session_operator.k8s.watch import ListWatch, skipping_undecodable
from session_operator.models import Session, SessionRef, sessions_path

RESOURCE = "sessions"
"""The ``resource`` label of the watch's metrics."""


class SessionSink(Protocol):
    """What the watch tells: :class:`SessionStore` and the controller both listen."""

    def update(self, session: Session) -> object:
        """A Session was added or changed."""

    def remove(self, ref: SessionRef) -> None:
        """A Session is gone."""

    def replace_all(self, sessions: Iterable[Session]) -> None:
        """A fresh listing: exactly these Sessions exist."""

    def mark_synced(self) -> None:
        """Every Session has been listed."""


class SessionCache(Reflector[Session, SessionRef]):
    """Lists and watches Sessions into *sink*."""

    def __init__(self, list_watch: ListWatch, sink: SessionSink) -> None:
        super().__init__(list_watch, sink, _decode, _ref, RESOURCE)

    @classmethod
    def for_namespace(cls, rest: Rest, namespace: str | None, sink: SessionSink) -> SessionCache:
        """A watch through *rest* of the Sessions in *namespace* (``None``: in all
        namespaces); *rest*'s deadline bounds each LIST page."""
        return cls(ListWatch(rest, sessions_path(namespace)), sink)


def _ref(session: Session) -> SessionRef:
    return session.ref


_decode = skipping_undecodable(Session.from_body, "session cache")
