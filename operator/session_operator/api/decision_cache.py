"""A small cache of authentication and authorization decisions, each kept for a short TTL.

Concurrent requests for the same key share one lookup, so a burst of heartbeats with a
new token makes one TokenReview, not one each. A lookup that fails is not cached: the
next request asks again.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_MAX_ENTRIES = 10_000


class DecisionCache(Generic[K, V]):
    """Values by key for *ttl* seconds, at most *max_entries* of them (oldest dropped)."""

    def __init__(
        self,
        ttl: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._pending: dict[K, asyncio.Task[V]] = {}

    def get(self, key: K) -> V | None:
        """The cached value of *key*, or ``None`` when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        """Cache *value* for *key* for the TTL."""
        self._entries.pop(key, None)
        self._entries[key] = (self._clock() + self._ttl, value)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value of *key*, else the result of *load* (cached when it succeeds)."""
        cached = self.get(key)
        if cached is not None:
            return cached
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(key, load))
            # Read the failure even when every waiter has gone, so that none is reported
            # as never retrieved.
            pending.add_done_callback(_consume_failure)
            self._pending[key] = pending
        # Shielded: a caller that gives up does not cancel the lookup the others wait for.
        return await asyncio.shield(pending)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await load()
            self.put(key, value)
            return value
        finally:
            del self._pending[key]

    def __len__(self) -> int:
        return len(self._entries)


def _consume_failure(task: asyncio.Task[V]) -> None:
    if not task.cancelled():
        task.exception()
