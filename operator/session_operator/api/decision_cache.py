"""A small cache of authentication and authorization decisions, each kept for a short TTL.

A value may be kept for less than the TTL, never for more: *lifetime* says how long each
value may live (a token verdict until the token expires, a refusal only briefly), and a
value whose lifetime is already over is not cached at all.

Concurrent requests for the same key share one lookup, so a burst of heartbeats with a
new token makes one TokenReview, not one each. A lookup that fails is not cached: the
next request asks again. Refusals are kept in a smaller pool of their own, so that a
flood of garbage tokens cannot push the decisions of real clients out of the cache.

Renewing an accepted value never makes a request wait, and values looked up together do
not all run out together:

* **Refresh ahead.** A request that finds an accepted value in the last
  :data:`REFRESH_AHEAD` of its life is answered with it at once and starts one lookup in
  the background, shared with any other lookup of the key. Its result replaces the value
  when it comes; a failed one leaves the value as it is until it runs out (a later request
  in that span tries again). Refusals, and values whose own lifetime ends before the TTL
  (a token's ``exp``: a new lookup could not keep them longer), are not refreshed ahead.
  A value is never answered after it ran out: a request then waits for the lookup. So a
  revocation still shows within the TTL after the last lookup that saw the value valid,
  plus the one lookup's duration that may pass before its answer replaces the value.
* **Jitter.** Each accepted value is kept for its lifetime minus a random part of up to
  :data:`LIFETIME_JITTER` of it: the keys of a burst (clients started together, or all of
  them after a restart) run out, and are refreshed, spread over a tenth of the TTL, and
  drift further apart on every renewal rather than queueing for reviews in step.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_REFUSALS = 1_000
REFRESH_AHEAD = 0.1
"""The last part of an accepted value's life in which a request refreshes it ahead: at the
default TTL (3 min) at least 16 s, three beats of a client beating every 5 s, so a refresh
that fails or finds the reviews busy is tried again before the value runs out. The price:
a value is renewed after about nine tenths of its life instead of all of it."""
LIFETIME_JITTER = 0.1
"""At most this part of an accepted value's lifetime is taken off at random."""


def _never_refused(value: object) -> bool:
    return False


def _no_limit_of_its_own(value: object) -> float:
    return math.inf


class DecisionCache(Generic[K, V]):
    """Values by key for *ttl* seconds, or the fewer seconds *lifetime* gives a value (none
    when it gives zero or less), an accepted value less a random part of up to *jitter* of
    that (*draw* gives a fraction in [0, 1)): at most *max_entries* accepted ones and, apart,
    at most *max_refusals* for which *is_refusal* holds (oldest dropped in each pool).
    :meth:`get_or_load` refreshes an accepted value in the last *refresh_ahead* of its life.
    """

    def __init__(
        self,
        ttl: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        *,
        is_refusal: Callable[[V], bool] = _never_refused,
        max_refusals: int = DEFAULT_MAX_REFUSALS,
        lifetime: Callable[[V], float] = _no_limit_of_its_own,
        refresh_ahead: float = REFRESH_AHEAD,
        jitter: float = LIFETIME_JITTER,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._is_refusal = is_refusal
        self._lifetime = lifetime
        self._refresh_ahead = refresh_ahead
        self._jitter = jitter
        self._draw = draw
        self._accepted: _Pool[K, V] = _Pool(max_entries)
        self._refused: _Pool[K, V] = _Pool(max_refusals)
        self._pending: dict[K, asyncio.Task[V]] = {}

    def get(self, key: K) -> V | None:
        """The cached value of *key*, or ``None`` when absent or expired."""
        entry = self._entry(key, self._clock())
        return entry.value if entry is not None else None

    def put(self, key: K, value: V) -> None:
        """Cache *value* for *key* for the TTL or its own shorter lifetime (an accepted
        value less its jitter); forget *key* when that lifetime is already over."""
        refused = self._is_refusal(value)
        pool, other = (
            (self._refused, self._accepted) if refused else (self._accepted, self._refused)
        )
        other.discard(key)
        own = self._lifetime(value)
        seconds = min(self._ttl, own)
        if seconds <= 0:
            pool.discard(key)
            return
        now = self._clock()
        if refused:
            pool.put(key, _Entry(value, now + seconds, math.inf))
            return
        seconds *= 1 - self._jitter * self._draw()
        refresh_from = now + seconds * (1 - self._refresh_ahead) if own > self._ttl else math.inf
        pool.put(key, _Entry(value, now + seconds, refresh_from))

    async def get_or_load(
        self,
        key: K,
        load: Callable[[], Awaitable[V]],
        refresh: Callable[[], Awaitable[V]] | None = None,
    ) -> V:
        """The cached value of *key*, else the result of *load* (cached when it succeeds).

        A value found in its last part of life is returned at once, and *refresh* (by
        default *load*) started in the background unless a lookup of *key* is under way.
        """
        now = self._clock()
        entry = self._entry(key, now)
        if entry is not None:
            if now >= entry.refresh_from and key not in self._pending:
                self._start(key, refresh or load)
            return entry.value
        pending = self._pending.get(key) or self._start(key, load)
        # Shielded: a caller that gives up does not cancel the lookup the others wait for.
        return await asyncio.shield(pending)

    def _entry(self, key: K, now: float) -> _Entry[V] | None:
        found = self._accepted.get(key, now)
        return found if found is not None else self._refused.get(key, now)

    def _start(self, key: K, load: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        pending = asyncio.ensure_future(self._load(key, load))
        # Read the failure even when no one waits for it (a refresh ahead, or every waiter
        # gone), so that none is reported as never retrieved.
        pending.add_done_callback(_consume_failure)
        self._pending[key] = pending
        return pending

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await load()
            self.put(key, value)
            return value
        finally:
            del self._pending[key]

    def __len__(self) -> int:
        return len(self._accepted) + len(self._refused)


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    expires: float
    refresh_from: float
    """From when a request refreshes it ahead (infinity: never)."""


class _Pool(Generic[K, V]):
    """Entries with their expiry, at most *max_entries*, the oldest dropped first."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()

    def get(self, key: K, now: float) -> _Entry[V] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.expires:
            del self._entries[key]
            return None
        return entry

    def put(self, key: K, entry: _Entry[V]) -> None:
        self._entries.pop(key, None)
        self._entries[key] = entry
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


def _consume_failure(task: asyncio.Task[V]) -> None:
    if not task.cancelled():
        task.exception()
