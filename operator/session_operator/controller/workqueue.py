"""A keyed work queue: each key queued once, never processed by two workers at once."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Deduplicating queue of keys (client-go's workqueue, without rate limiting).

    A key added while a worker holds it is processed again after :meth:`done`; a key
    added several times while waiting is processed once.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()

    def add(self, key: K) -> None:
        """Queue *key* unless it is already waiting."""
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Queue *key* after *delay* seconds (retries with backoff)."""
        asyncio.get_running_loop().call_later(delay, self.add, key)

    async def get(self) -> K:
        """Wait for a key; the caller must call :meth:`done` with it when finished."""
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: K) -> None:
        """Release *key*; requeue it if it was added meanwhile."""
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def __len__(self) -> int:
        return self._queue.qsize()
