"""One list-watch of a collection into a :class:`Sink` (client-go's Reflector): LIST, then
WATCH from the listed version, LIST again when the watch cannot resume.

A LIST (at the start, and after a watch that cannot resume) replaces what the sink holds,
so an object deleted while the watch was down is forgotten too. Each restart of the watch
is counted, and the time of the last event is served as
``xg2g_watch_last_event_timestamp_seconds{resource=...}`` (``metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from session_operator import metrics
from session_operator.config import format_duration
from session_operator.k8s.errors import (
    ApiUnavailable,
    Invalid,
    KubernetesError,
    ResourceVersionExpired,
)
from session_operator.k8s.watch import ListWatch, WatchEvent, ends_initial_events

RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0

T = TypeVar("T")
K = TypeVar("K")
T_contra = TypeVar("T_contra", contravariant=True)
K_contra = TypeVar("K_contra", contravariant=True)

logger = logging.getLogger(__name__)


class Sink(Protocol[T_contra, K_contra]):
    """What a watch tells, of objects decoded as ``T`` and known by their key ``K``."""

    def update(self, item: T_contra) -> object:
        """An object was added or changed."""

    def remove(self, key: K_contra) -> None:
        """An object is gone."""

    def replace_all(self, items: Iterable[T_contra]) -> None:
        """A fresh listing: exactly these objects exist."""

    def mark_synced(self) -> None:
        """Every object has been listed."""


class Reflector(Generic[T, K]):
    """Lists and watches one collection into *sink*: each object as *decode* reads it
    (``None``: skipped), removed by its *key*. *resource* names it in logs and metrics."""

    def __init__(
        self,
        list_watch: ListWatch,
        sink: Sink[T, K],
        decode: Callable[[Mapping[str, Any]], T | None],
        key: Callable[[T], K],
        resource: str,
    ) -> None:
        self._list_watch = list_watch
        self._sink = sink
        self._decode = decode
        self._key = key
        self._resource = resource
        self._resource_version: str | None = None
        # Since when (the loop's clock) the apiserver has not answered; None while it does.
        self._failing_since: float | None = None
        # Unix time of the last event or listing: a float set per event, read when scraped.
        self._last_event_at = 0.0
        metrics.WATCH_LAST_EVENT.labels(resource=resource).set_function(lambda: self._last_event_at)
        self._restarts = metrics.WATCH_RESTARTS.labels(resource=resource)
        # Whether to list by a streaming list; off for good once the apiserver refuses one.
        self._streaming = True

    async def run(self) -> None:
        """LIST, then WATCH from the listed version, forever; LIST again on 410 Gone. The
        LIST is a streaming list where the apiserver serves one, else pages.

        Failures are retried with a capped exponential backoff, an unexpected one from a
        new LIST; the sink keeps what it knows meanwhile. Every pass after the first is a
        restart of the watch, whatever ended the one before.
        """
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                if not (
                    self._resource_version is None and self._streaming and await self._watch_list()
                ):
                    if self._resource_version is None:
                        await self._relist()
                    await self._watch()
                delay = RETRY_FIRST_SECONDS
            except ResourceVersionExpired:
                self._answered()
                self._resource_version = None
            except KubernetesError as error:
                self._failed(error, delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_SECONDS, delay * 2)
            except Exception:
                # Whatever broke, a replica must not stay Ready behind a watch that ended:
                # start again from a LIST, as what happened meanwhile is unknown.
                logger.exception(
                    "%s watch: it failed; listing again in %.1fs", self._resource, delay
                )
                self._resource_version = None
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_SECONDS, delay * 2)
            self._restarts.inc()

    def _failed(self, error: KubernetesError, delay: float) -> None:
        """Tell a failed LIST or WATCH: at WARNING the first of an outage, then at DEBUG."""
        first = self._failing_since is None
        if first:
            self._failing_since = asyncio.get_running_loop().time()
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "%s watch: %s; retrying in %s",
            self._resource,
            _failure_reason(error),
            format_duration(timedelta(seconds=delay)),
        )

    def _answered(self) -> None:
        """The apiserver answered: tell the end of an outage, if one was going on."""
        if self._failing_since is None:
            return
        lasted = asyncio.get_running_loop().time() - self._failing_since
        self._failing_since = None
        # Whole seconds; a blip shorter than half a second in milliseconds.
        shown = timedelta(seconds=round(lasted)) or timedelta(milliseconds=round(lasted * 1000))
        logger.info(
            "%s watch: the apiserver answers again, after %s",
            self._resource,
            format_duration(shown),
        )

    async def _relist(self) -> None:
        listing = await self._list_watch.list(self._decode)
        self._answered()
        self._listed(listing.items, listing.resource_version)

    def _listed(self, items: list[T], resource_version: str) -> None:
        """A whole listing: exactly *items* exist, as of *resource_version*."""
        self._sink.replace_all(items)
        self._resource_version = resource_version
        self._sink.mark_synced()
        self._last_event_at = time.time()

    async def _watch_list(self) -> bool:
        """A streaming list, then its watch: the initial events are gathered and handed
        over whole at the bookmark that ends them, as a LIST's items are; what follows is
        applied as a watch's events. ``False`` if the apiserver found it invalid: it is
        listed in pages from then on."""
        initial: list[T] | None = []
        try:
            async for event in self._list_watch.watch_list():
                self._answered()
                if initial is None:
                    self._apply(event)
                elif ends_initial_events(event):
                    version = (event.object.get("metadata") or {}).get("resourceVersion")
                    self._listed(initial, str(version or ""))
                    initial = None
                elif event.type == "ADDED" and (item := self._decode(event.object)) is not None:
                    initial.append(item)
        except Invalid as refusal:
            logger.info("%s watch: the apiserver does not stream lists (%s); listing in pages",
                        self._resource, refusal)  # fmt: skip
            self._streaming = False
            return False
        self._answered()  # the server ended the watch
        if initial is not None:
            raise ApiUnavailable("the streaming list ended before its initial events did")
        return True

    async def _watch(self) -> None:
        assert self._resource_version is not None
        async for event in self._list_watch.watch(self._resource_version):
            self._answered()
            self._apply(event)
        self._answered()  # the server ended the watch

    def _apply(self, event: WatchEvent) -> None:
        self._last_event_at = time.time()
        version = (event.object.get("metadata") or {}).get("resourceVersion")
        item = None if event.type == "BOOKMARK" else self._decode(event.object)
        if item is not None and event.type in ("ADDED", "MODIFIED"):
            self._sink.update(item)
        elif item is not None and event.type == "DELETED":
            self._sink.remove(self._key(item))
        if version:
            self._resource_version = str(version)


def _failure_reason(error: KubernetesError) -> str:
    """Why a call failed, in a few words: for an apiserver that cannot be reached, its
    address and the system's reason (``cannot reach the apiserver at 10.96.0.1:443:
    connection refused``) rather than the client's exception with its connection key."""
    cause = error.__cause__
    if isinstance(cause, aiohttp.ClientConnectorError):
        return f"cannot reach the apiserver at {cause.host}:{cause.port}: {_os_reason(cause)}"
    if isinstance(cause, TimeoutError):
        return "the apiserver did not answer in time"
    return str(error)


def _os_reason(error: aiohttp.ClientConnectorError) -> str:
    os_error = error.os_error
    if isinstance(error, aiohttp.ClientSSLError):
        return f"TLS failed: {os_error}"
    if isinstance(os_error, socket.gaierror):
        return f"name not resolved ({os_error.strerror})"
    if os_error.errno:
        return os.strerror(os_error.errno).lower()
    return str(os_error) or type(os_error).__name__
