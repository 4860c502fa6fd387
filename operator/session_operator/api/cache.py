"""The watch that fills a :class:`SessionStore` where no operator does (``serve-api``).

``serve-api`` has no kopf: this LIST then WATCH of the apiserver keeps its store current.
In the operator process kopf's watch feeds the controller's store, which the API reads
too; there this only lists once at the start (:meth:`SessionCache.prime`), so that the
store knows when it has seen every Session (a sessionID it does not know is then 404).
Every write the API makes is compare-and-set, so a store that lags a little can delay an
answer but never make a wrong write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client
from pydantic import ValidationError

from session_operator.controller.store import SessionStore
from session_operator.k8s.errors import KubernetesError
from session_operator.k8s.rest import Rest
from session_operator.k8s.watch import ListWatch, ResourceVersionExpired, WatchEvent
from session_operator.models import GROUP, PLURAL, VERSION, Session

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
    """Lists and watches Sessions into *store*."""

    def __init__(self, list_watch: ListWatch, store: SessionStore) -> None:
        self._list_watch = list_watch
        self.store = store
        self._resource_version: str | None = None

    @classmethod
    def for_namespace(
        cls, api_client: client.ApiClient, namespace: str | None, store: SessionStore
    ) -> SessionCache:
        """A watch of the Sessions in *namespace* (``None``: in all namespaces)."""
        rest = Rest(api_client, timeout=LIST_TIMEOUT_SECONDS)
        return cls(ListWatch(api_client, rest, sessions_path(namespace)), store)

    async def prime(self) -> None:
        """LIST once, merge the listing into the store (newer versions that another watch
        delivered meanwhile stay) and mark it synced; retried until it succeeds."""
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                listing = await self._list_watch.list()
            except KubernetesError as error:
                logger.warning("session listing: %s; retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_SECONDS, delay * 2)
                continue
            for item in listing.items:
                session = _decode(item)
                if session is not None:
                    self.store.update(session)
            self.store.mark_synced()
            return

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
        self.store.replace_all(session for session in decoded if session is not None)
        self._resource_version = listing.resource_version
        self.store.mark_synced()

    async def _watch(self) -> None:
        assert self._resource_version is not None
        async for event in self._list_watch.watch(self._resource_version):
            self._apply(event)

    def _apply(self, event: WatchEvent) -> None:
        version = (event.object.get("metadata") or {}).get("resourceVersion")
        session = None if event.type == "BOOKMARK" else _decode(event.object)
        if session is not None and event.type in ("ADDED", "MODIFIED"):
            self.store.update(session)
        elif session is not None and event.type == "DELETED":
            self.store.remove(session.ref)
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
