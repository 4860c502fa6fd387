"""The one watch of Sessions in a process: LIST, then WATCH, into a :class:`SessionSink`.

In the operator the sink is the controller, which keeps the store that its workers, its
expiry backstop and the heartbeat API read; in ``serve-api`` it is a bare store. A LIST
(at the start, and after a watch that cannot resume) replaces what the sink holds, so a
Session deleted while the watch was down is forgotten too. Every write the API makes is
compare-and-set, so a store that lags a little can delay an answer but never make a wrong
write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from kubernetes_asyncio import client

from session_operator.k8s.errors import KubernetesError, ResourceVersionExpired
from session_operator.k8s.rest import Rest
from session_operator.k8s.watch import ListWatch, WatchEvent
from session_operator.models import Session, SessionRef, sessions_path

LIST_TIMEOUT_SECONDS = 60.0
RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0

logger = logging.getLogger(__name__)


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


class SessionCache:
    """Lists and watches Sessions into *sink*."""

    def __init__(self, list_watch: ListWatch, sink: SessionSink) -> None:
        self._list_watch = list_watch
        self._sink = sink
        self._resource_version: str | None = None

    @classmethod
    def for_namespace(
        cls, api_client: client.ApiClient, namespace: str | None, sink: SessionSink
    ) -> SessionCache:
        """A watch of the Sessions in *namespace* (``None``: in all namespaces)."""
        rest = Rest(api_client, timeout=LIST_TIMEOUT_SECONDS)
        return cls(ListWatch(rest, sessions_path(namespace)), sink)

    async def run(self) -> None:
        """LIST, then WATCH from the listed version, forever; LIST again on 410 Gone.

        Failures are retried with a capped exponential backoff, an unexpected one from a
        new LIST; the cache keeps serving what it knows meanwhile.
        """
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                if self._resource_version is None:
                    await self._relist()
                await self._watch()
                delay = RETRY_FIRST_SECONDS
            except ResourceVersionExpired:
                self._resource_version = None
            except KubernetesError as error:
                logger.warning("session cache: %s; retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_SECONDS, delay * 2)
            except Exception:
                # Whatever broke, a replica must not stay Ready behind a watch that ended:
                # start again from a LIST, as what happened meanwhile is unknown.
                logger.exception("session cache: the watch failed; listing again in %.1fs", delay)
                self._resource_version = None
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_SECONDS, delay * 2)

    async def _relist(self) -> None:
        listing = await self._list_watch.list(_decode)
        self._sink.replace_all(listing.items)
        self._resource_version = listing.resource_version
        self._sink.mark_synced()

    async def _watch(self) -> None:
        assert self._resource_version is not None
        async for event in self._list_watch.watch(self._resource_version):
            self._apply(event)

    def _apply(self, event: WatchEvent) -> None:
        version = (event.object.get("metadata") or {}).get("resourceVersion")
        session = None if event.type == "BOOKMARK" else _decode(event.object)
        if session is not None and event.type in ("ADDED", "MODIFIED"):
            self._sink.update(session)
        elif session is not None and event.type == "DELETED":
            self._sink.remove(session.ref)
        if version:
            self._resource_version = str(version)


def _decode(body: Mapping[str, Any]) -> Session | None:
    # The CRD's schema makes a bad object unlikely; one must not stop the watch for all.
    try:
        return Session.from_body(body)
    except (KeyError, TypeError, ValueError) as error:  # ValidationError is a ValueError
        metadata = body.get("metadata") or {}
        logger.warning(
            "session cache: skipping %s/%s: %s",
            metadata.get("namespace"),
            metadata.get("name"),
            error,
        )
        return None
