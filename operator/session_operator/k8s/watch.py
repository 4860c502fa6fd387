"""LIST and WATCH of a collection, the apiserver's list-watch protocol (client-go's ListWatch).

A LIST returns the objects and the collection's resourceVersion; a WATCH from that version
streams one JSON event per line (``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK``). When
the version is too old the apiserver answers ``410 Gone``, raised here as
``errors.ResourceVersionExpired``: the caller lists again. Where the apiserver can, a
streaming list (one watch whose first events are the list) takes the LIST's place.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, MutableSequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp

from session_operator.k8s.errors import ApiUnavailable, error_for_status
from session_operator.k8s.rest import Rest

LIST_PAGE_SIZE = 50
"""Objects per LIST page. A page is held whole while it is decoded (its bytes, its text and
the parsed objects), so its length times the largest object bounds what a listing holds
at once. Of Sessions at the 128 KiB that ``maxSessionBytes`` admits (managedFields
included) in the shortest entries, the most objects per byte, a page of 50 peaked at
56 MiB, of 100 at 111 MiB, and 500 would take 550 MiB; without the size webhook an object
may reach etcd's 1.5 MiB. The price is a request per 50: 10,000 small Sessions were listed
in 5-6 s, 3.7 s at 500 a page (docs/security.md)."""

T = TypeVar("T")
logger = logging.getLogger(__name__)
WATCH_TIMEOUT_SECONDS = 300
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
    """LIST and WATCH one collection path, like ``/apis/xg2g.io/v1alpha1/sessions``; with
    *label_selector*, only the objects it selects (the apiserver filters them)."""

    def __init__(self, rest: Rest, path: str, label_selector: str | None = None) -> None:
        self._rest = rest
        self._path = path
        self._selection = [("labelSelector", label_selector)] if label_selector else []

    async def list(self, decode: Callable[[dict[str, Any]], T | None]) -> Listing[T]:
        """Every object of the collection, with the collection's version, read page by page
        (:data:`LIST_PAGE_SIZE`): each page is decoded and its raw JSON released before the
        next is asked for, so a listing holds at most one page raw. *decode* may skip an
        object (``None``)."""
        items: list[T] = []
        token = ""
        while True:
            resource_version, token = await self._read_page(token, decode, items)
            if not token:
                return Listing(items, resource_version)

    async def _read_page(
        self, token: str, decode: Callable[[dict[str, Any]], T | None], into: MutableSequence[T]
    ) -> tuple[str, str]:
        """Read the page after *token* (``""``: the first) and append its decoded objects to
        *into*; return the collection's version and the next page's token (``""``: none).

        A function of its own so that the page is no longer referenced once it returns:
        a variable of the caller would hold it through the next page's request.
        """
        query = {"limit": str(LIST_PAGE_SIZE), **dict(self._selection)}
        if token:
            query["continue"] = token
        page = await self._rest.request("GET", self._path, query=query)
        for raw in page.get("items") or []:
            decoded = decode(raw)
            if decoded is not None:
                into.append(decoded)
        metadata = page.get("metadata") or {}
        return str(metadata.get("resourceVersion", "")), str(metadata.get("continue") or "")

    async def watch_list(self) -> AsyncIterator[WatchEvent]:
        """A streaming list (client-go's WatchList): one watch that first sends every object
        as it is now, as ``ADDED`` events from the apiserver's watch cache, then a bookmark
        that :func:`ends_initial_events`, then the changes, as :meth:`watch` does.

        Unlike a LIST in pages, it costs one request and no read of etcd, and it holds one
        object at a time. An apiserver that cannot stream lists (before Kubernetes 1.32, or
        with the ``WatchList`` feature off) refuses the request: ``Rejected``.
        """
        query = [
            ("watch", "true"),
            ("sendInitialEvents", "true"),
            # No resourceVersion: the initial events are at least as new as a quorum read.
            ("resourceVersionMatch", "NotOlderThan"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_TIMEOUT_SECONDS)),
            *self._selection,
        ]
        async for line in self._rest.stream(self._path, query, _watch_limits()):
            yield _decode_event(line)

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
            *self._selection,
        ]
        async for line in self._rest.stream(self._path, query, _watch_limits()):
            yield _decode_event(line)


INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def ends_initial_events(event: WatchEvent) -> bool:
    """The bookmark after a streaming list's initial events: the list is whole, and its
    ``resourceVersion`` is the one to resume from."""
    if event.type != "BOOKMARK":
        return False
    annotations = (event.object.get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(INITIAL_EVENTS_END) == "true")


def _watch_limits() -> aiohttp.ClientTimeout:
    # The server ends a watch after WATCH_TIMEOUT_SECONDS; the client gives it a grace.
    return aiohttp.ClientTimeout(
        total=WATCH_TIMEOUT_SECONDS + WATCH_CLIENT_GRACE_SECONDS,
        sock_connect=CONNECT_TIMEOUT_SECONDS,
    )


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


def skipping_undecodable(
    decode: Callable[[Mapping[str, Any]], T], what: str
) -> Callable[[Mapping[str, Any]], T | None]:
    """*decode* for the objects of a listing or a watch: one it cannot decode is skipped
    (``None``) with a warning that names *what* reads it and the object. The CRD's schema
    makes a bad object unlikely; one must not stop the reading of all the others."""

    def decoded(body: Mapping[str, Any]) -> T | None:
        try:
            return decode(body)
        except (KeyError, TypeError, ValueError) as error:  # ValidationError is a ValueError
            metadata = body.get("metadata") or {}
            logger.warning(
                "%s: skipping %s/%s: %s",
                what,
                metadata.get("namespace"),
                metadata.get("name"),
                error,
            )
            return None

    return decoded
