"""LIST and WATCH of a collection, the apiserver's list-watch protocol (client-go's ListWatch).

A LIST returns the objects and the collection's resourceVersion; a WATCH from that version
streams one JSON event per line (``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK``). When
the version is too old the apiserver answers ``410 Gone``, raised here as
``errors.ResourceVersionExpired``: the caller lists again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp

from session_operator.k8s.errors import ApiUnavailable, error_for_status
from session_operator.k8s.rest import Rest

LIST_PAGE_SIZE = 500

T = TypeVar("T")
WATCH_TIMEOUT_SECONDS = 300
# The server ends the watch after WATCH_TIMEOUT_SECONDS; the client gives it this much more.
WATCH_CLIENT_GRACE_SECONDS = 30
CONNECT_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class WatchEvent:
    """One event of a watch: its type and the object (a Status for ``ERROR``)."""

    type: str
    object: Mapping[str, Any]


@dataclass(frozen=True)
class Listing(Generic[T]):
    """The result of a LIST: the objects (decoded) and the resourceVersion to watch from."""

    items: list[T]
    resource_version: str


class ListWatch:
    """LIST and WATCH one collection path, like ``/apis/xg2g.io/v1alpha1/sessions``."""

    def __init__(self, rest: Rest, path: str) -> None:
        self._rest = rest
        self._path = path

    async def list(self, decode: Callable[[dict[str, Any]], T | None]) -> Listing[T]:
        """Every object of the collection, with the collection's version. Each page is
        decoded as it arrives and its raw JSON dropped before the next is read, so a
        listing of many objects is never held raw at once; *decode* may skip one (None)."""
        items: list[T] = []
        query = {"limit": str(LIST_PAGE_SIZE)}
        while True:
            page = await self._rest.request("GET", self._path, query=query)
            for raw in page.get("items") or []:
                decoded = decode(raw)
                if decoded is not None:
                    items.append(decoded)
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                return Listing(items, str(metadata.get("resourceVersion", "")))
            query = {"limit": str(LIST_PAGE_SIZE), "continue": token}

    async def watch(self, resource_version: str) -> AsyncIterator[WatchEvent]:
        """The events after *resource_version*, until the server ends the watch.

        Raises :class:`ResourceVersionExpired` when the version is too old, and
        ``ApiUnavailable`` when the apiserver cannot be reached or the stream breaks.
        """
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_TIMEOUT_SECONDS)),
        ]
        timeout = aiohttp.ClientTimeout(
            total=WATCH_TIMEOUT_SECONDS + WATCH_CLIENT_GRACE_SECONDS,
            sock_connect=CONNECT_TIMEOUT_SECONDS,
        )
        async for line in self._rest.stream(self._path, query, timeout):
            yield _decode_event(line)


def _decode_event(line: bytes) -> WatchEvent:
    try:
        raw = json.loads(line)
    except ValueError as error:
        raise ApiUnavailable(f"watch sent a line that is not JSON: {line[:200]!r}") from error
    if not isinstance(raw, dict) or not isinstance(raw.get("object"), dict):
        raise ApiUnavailable(f"watch sent an event without an object: {line[:200]!r}")
    event = WatchEvent(type=str(raw.get("type", "")), object=raw["object"])
    if event.type == "ERROR":
        code = event.object.get("code")
        raise error_for_status(
            code if isinstance(code, int) else 500, str(event.object.get("message", ""))
        )
    return event
