"""The heartbeat API's own Session cache, fed by a LIST then a WATCH of the apiserver.

Not kopf's memory: the API also runs on standby replicas and in ``serve-api`` alone. The
cache answers most heartbeats without a read; every write it leads to is compare-and-set,
so a cache that lags a little can delay an answer but never make a wrong write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client
from pydantic import ValidationError

from session_operator.api.session_index import SessionIndex
from session_operator.k8s.errors import KubernetesError
from session_operator.k8s.rest import Rest
from session_operator.k8s.watch import ListWatch, ResourceVersionExpired, WatchEvent
from session_operator.models import GROUP, PLURAL, VERSION, Session, SessionRef

LIST_TIMEOUT_SECONDS = 60.0
RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0

logger = logging.getLogger(__name__)


def sessions_path(namespace: str | None) -> str:
    """The Sessions collection: of one namespace, or of all when *namespace* is ``None``."""
    if namespace is None:
        return f"/apis/{GROUP}/{VERSION}/{PLURAL}"
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"


class SessionCache:
    """Sessions by sessionID and by namespace/name, kept current by a watch."""

    def __init__(self, list_watch: ListWatch) -> None:
        self._list_watch = list_watch
        self._index = SessionIndex()
        self._resource_version: str | None = None
        self._synced = False

    @classmethod
    def for_namespace(cls, api_client: client.ApiClient, namespace: str | None) -> SessionCache:
        """A cache of the Sessions in *namespace* (``None``: in all namespaces)."""
        rest = Rest(api_client, timeout=LIST_TIMEOUT_SECONDS)
        return cls(ListWatch(api_client, rest, sessions_path(namespace)))

    @property
    def synced(self) -> bool:
        """True once the first LIST has been loaded (and from then on)."""
        return self._synced

    def by_id(self, session_id: str) -> Session | None:
        """The Session whose ``status.sessionID`` is *session_id*, if the cache has it."""
        return self._index.by_id(session_id)

    def by_ref(self, ref: SessionRef) -> Session | None:
        """The Session at *ref*, if the cache has it."""
        return self._index.by_ref(ref)

    def refresh(self, session: Session) -> None:
        """Take a version read or written outside the watch, if it is not older."""
        self._index.refresh(session)

    async def run(self) -> None:
        """LIST, then WATCH from the listed version, forever; LIST again on 410 Gone.

        Failures are retried with a capped exponential backoff; the cache keeps serving
        what it knows meanwhile.
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

    async def _relist(self) -> None:
        listing = await self._list_watch.list()
        decoded = (_decode(item) for item in listing.items)
        self._index.replace_all(session for session in decoded if session is not None)
        self._resource_version = listing.resource_version
        self._synced = True

    async def _watch(self) -> None:
        assert self._resource_version is not None
        async for event in self._list_watch.watch(self._resource_version):
            self._apply(event)

    def _apply(self, event: WatchEvent) -> None:
        version = (event.object.get("metadata") or {}).get("resourceVersion")
        session = None if event.type == "BOOKMARK" else _decode(event.object)
        if session is not None and event.type in ("ADDED", "MODIFIED"):
            self._index.upsert(session)
        elif session is not None and event.type == "DELETED":
            self._index.remove(session.ref)
        if version:
            self._resource_version = str(version)


def _decode(body: Mapping[str, Any]) -> Session | None:
    # The CRD's schema makes a bad object unlikely; one must not stop the watch for all.
    try:
        return Session.from_body(body)
    except (KeyError, TypeError, ValidationError) as error:
        metadata = body.get("metadata") or {}
        logger.warning(
            "session cache: skipping %s/%s: %s",
            metadata.get("namespace"),
            metadata.get("name"),
            error,
        )
        return None
