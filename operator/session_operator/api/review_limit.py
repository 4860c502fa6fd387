"""A bound on the apiserver reviews (TokenReview, SubjectAccessReview) under way at once.

Every unknown token costs one TokenReview. Without a bound, a caller sending garbage
tokens as fast as it can would make the API send as many reviews at once, loading the
apiserver and the API's own event loop. Reviews beyond *concurrent* wait their turn; once
*waiting* are queued, further ones are answered 503 at once, so real clients retry and the
flood gains nothing.

A flood must not take every place in the queue either: each source (the caller's address
for a TokenReview, the authenticated user for an access review) may have at most
*per_source* reviews running or waiting, and is answered 503 beyond that. A client whose
cached verdict has run out then waits behind at most that many of a flood's reviews,
not behind the whole queue, and keeps its session.

A review that is not needed yet (a cached verdict refreshed ahead of its end, see
:mod:`session_operator.api.decision_cache`) does not wait: it runs only if a slot is free
at once, else it is refused at once and tried again later. It never takes a place in the
queue that a client's first review needs, after a restart say.

A review refused because the queue is full, or one that waited for a slot until its caller
had given up (:data:`GIVEN_UP_AFTER_SECONDS`), is the API's want of capacity, not its
caller's doing: *on_full* is told, so lease rule 8 counts it as an outage
(``call_health.CallHealth.heartbeat_refused``). A source refused its own share is not.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

from session_operator.api.errors import AuthenticationUnavailable

T = TypeVar("T")

MAX_CONCURRENT_REVIEWS = 16
MAX_WAITING_REVIEWS = 256
MAX_REVIEWS_PER_SOURCE = 16
GIVEN_UP_AFTER_SECONDS = 5.0
"""A review that waited this long for a slot kept its caller past the client library's
request timeout: that caller has given up, as if refused."""


class ReviewLimiter:
    """Runs reviews, at most *concurrent* at a time, with at most *waiting* queued, and at
    most *per_source* of one source's at once."""

    def __init__(
        self,
        concurrent: int = MAX_CONCURRENT_REVIEWS,
        waiting: int = MAX_WAITING_REVIEWS,
        per_source: int = MAX_REVIEWS_PER_SOURCE,
        on_full: Callable[[], None] = lambda: None,
        given_up_after: float = GIVEN_UP_AFTER_SECONDS,
    ) -> None:
        self._slots = asyncio.Semaphore(concurrent)
        self._on_full = on_full
        self._given_up_after = given_up_after
        self._max_waiting = waiting
        self._per_source = per_source
        self._waiting = 0
        self._by_source: Counter[str] = Counter()

    async def run(self, review: Callable[[], Awaitable[T]], source: str, *, wait: bool = True) -> T:
        """The result of *review* for *source*, once a slot is free;
        :class:`AuthenticationUnavailable` when the queue, or *source*'s share, is full,
        or, unless *wait*, when no slot is free now."""
        own_share_full = self._by_source[source] >= self._per_source
        queue_full = self._slots.locked() and self._waiting >= self._max_waiting
        if own_share_full or (self._slots.locked() and not wait) or queue_full:
            if queue_full and wait and not own_share_full:
                self._on_full()
            raise AuthenticationUnavailable(
                "too many token and access reviews are under way; retry in a second"
            )
        self._by_source[source] += 1
        try:
            self._waiting += 1
            queued = time.monotonic()
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
            if time.monotonic() - queued >= self._given_up_after:
                self._on_full()
            try:
                return await review()
            finally:
                self._slots.release()
        finally:
            self._by_source[source] -= 1
            if not self._by_source[source]:
                del self._by_source[source]
