"""A small cache of authentication and authorization decisions, each kept for a short TTL.

A value may be kept for less than the TTL, never for more: *lifetime* says how long each
value may live (a token verdict until the token expires, a refusal only briefly), and a
value whose lifetime is already over is not cached at all.

Concurrent requests for the same key share one lookup, so a burst of heartbeats with a
new token makes one TokenReview, not one each. A lookup that fails is not cached: the
next request asks again. Refusals are kept in a smaller pool of their own, so that a
flood of garbage tokens cannot push the decisions of real clients out of the cache.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_REFUSALS = 1_000


def _never_refused(value: object) -> bool:
    return False


def _no_limit_of_its_own(value: object) -> float:
    return math.inf


class DecisionCache(Generic[K, V]):
    """Values by key for *ttl* seconds, or the fewer seconds *lifetime* gives a value (none
    when it gives zero or less): at most *max_entries* accepted ones and, apart, at most
    *max_refusals* for which *is_refusal* holds (oldest dropped in each pool)."""

    def __init__(
        self,
        ttl: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        *,
        is_refusal: Callable[[V], bool] = _never_refused,
        max_refusals: int = DEFAULT_MAX_REFUSALS,
        lifetime: Callable[[V], float] = _no_limit_of_its_own,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._is_refusal = is_refusal
        self._lifetime = lifetime
        self._accepted: _Pool[K, V] = _Pool(max_entries)
        self._refused: _Pool[K, V] = _Pool(max_refusals)
        self._pending: dict[K, asyncio.Task[V]] = {}

    def get(self, key: K) -> V | None:
        """The cached value of *key*, or ``None`` when absent or expired."""
        now = self._clock()
        found = self._accepted.get(key, now)
        return found if found is not None else self._refused.get(key, now)

    def put(self, key: K, value: V) -> None:
        """Cache *value* for *key* for the TTL or its own shorter lifetime; forget *key*
        when that lifetime is already over."""
        pool, other = (
            (self._refused, self._accepted)
            if self._is_refusal(value)
            else (self._accepted, self._refused)
        )
        other.discard(key)
        seconds = min(self._ttl, self._lifetime(value))
        if seconds > 0:
            pool.put(key, value, self._clock() + seconds)
        else:
            pool.discard(key)

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
        return len(self._accepted) + len(self._refused)


class _Pool(Generic[K, V]):
    """Entries with their expiry, at most *max_entries*, the oldest dropped first."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, now: float) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if now >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V, expires: float) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (expires, value)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


def _consume_failure(task: asyncio.Task[V]) -> None:
    if not task.cancelled():
        task.exception()
