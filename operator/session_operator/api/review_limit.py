"""A bound on the apiserver reviews (TokenReview, SubjectAccessReview) under way at once.

Every unknown token costs one TokenReview. Without a bound, a caller sending garbage
tokens as fast as it can would make the API send as many reviews at once, loading the
apiserver and the API's own event loop. Reviews beyond *concurrent* wait their turn; once
*waiting* are queued, further ones are answered 503 at once, so real clients retry and the
flood gains nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from session_operator.api.errors import AuthenticationUnavailable

T = TypeVar("T")

MAX_CONCURRENT_REVIEWS = 16
MAX_WAITING_REVIEWS = 256


class ReviewLimiter:
    """Runs reviews, at most *concurrent* at a time, with at most *waiting* queued."""

    def __init__(
        self, concurrent: int = MAX_CONCURRENT_REVIEWS, waiting: int = MAX_WAITING_REVIEWS
    ) -> None:
        self._slots = asyncio.Semaphore(concurrent)
        self._max_waiting = waiting
        self._waiting = 0

    async def run(self, review: Callable[[], Awaitable[T]]) -> T:
        """The result of *review*, once a slot is free; :class:`AuthenticationUnavailable`
        when the queue is full."""
        if self._slots.locked() and self._waiting >= self._max_waiting:
            raise AuthenticationUnavailable(
                "too many token and access reviews are under way; retry in a second"
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await review()
        finally:
            self._slots.release()
