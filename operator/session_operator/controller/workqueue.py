"""A keyed work queue: each key queued once, never processed by two workers at once."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Deduplicating queue of keys (client-go's workqueue, without rate limiting).

    A key added while a worker holds it is processed again after :meth:`done`; a key
    added several times while waiting is processed once. Keys whose deadline has come
    (:meth:`add_due`) are handed out before those added by :meth:`add` (watch events, a
    resync), in the order they fell due: a lease that lapses is not stopped behind
    thousands of reconciles that find nothing to do.
    """

    def __init__(self) -> None:
        self._due: OrderedDict[K, None] = OrderedDict()
        self._routine: OrderedDict[K, None] = OrderedDict()
        # One permit per waiting key, so each key wakes exactly one worker.
        self._waiting = asyncio.Semaphore(0)
        self._active: set[K] = set()
        # Keys added while held, and whether one of those adds was add_due.
        self._dirty: dict[K, bool] = {}

    def add(self, key: K) -> None:
        """Queue *key* unless it is already waiting."""
        if key in self._active:
            self._dirty.setdefault(key, False)
        elif key not in self._due and key not in self._routine:
            self._routine[key] = None
            self._waiting.release()

    def add_due(self, key: K) -> None:
        """Queue *key* ahead of the keys queued by :meth:`add`, behind those already
        due; a key waiting among the former moves up."""
        if key in self._active:
            self._dirty[key] = True
        elif key in self._routine:
            del self._routine[key]
            self._due[key] = None
        elif key not in self._due:
            self._due[key] = None
            self._waiting.release()

    def add_after(self, key: K, delay: float) -> None:
        """Queue *key* after *delay* seconds (retries with backoff)."""
        asyncio.get_running_loop().call_later(delay, self.add, key)

    async def get(self) -> K:
        """Wait for a key; the caller must call :meth:`done` with it when finished."""
        await self._waiting.acquire()
        key, _ = (self._due or self._routine).popitem(last=False)
        self._active.add(key)
        return key

    def done(self, key: K) -> None:
        """Release *key*; requeue it if it was added meanwhile."""
        self._active.discard(key)
        due = self._dirty.pop(key, None)
        if due:
            self.add_due(key)
        elif due is not None:
            self.add(key)

    def __len__(self) -> int:
        return len(self._due) + len(self._routine)
