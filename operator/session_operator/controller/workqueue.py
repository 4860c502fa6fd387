"""A keyed work queue: each key queued once, never processed by two workers at once."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from session_operator import metrics

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Deduplicating queue of keys (client-go's workqueue, without rate limiting).

    A key added while a worker holds it is processed again after :meth:`done`; a key
    added several times while waiting is processed once. Keys whose deadline has come
    (:meth:`add_due`) are handed out before those added by :meth:`add` (watch events, a
    resync), in the order they fell due: a lease that lapses is not stopped behind
    thousands of reconciles that find nothing to do.

    It counts as client-go's does, under *name* (``metrics.QueueStats``): a key entering
    the queue is an add, one queued by :meth:`add_after` a retry too.
    """

    def __init__(self, name: str = "sessions") -> None:
        self._stats = metrics.WORKQUEUES.stats(name)
        # Each waiting key with the time (monotonic) it was queued.
        self._due: OrderedDict[K, float] = OrderedDict()
        self._routine: OrderedDict[K, float] = OrderedDict()
        # One permit per waiting key, so each key wakes exactly one worker.
        self._waiting = asyncio.Semaphore(0)
        # Each key a worker holds, with the time (monotonic) it was taken.
        self._active: dict[K, float] = {}
        # Keys added while held, and whether one of those adds was add_due.
        self._dirty: dict[K, bool] = {}

    def add(self, key: K) -> None:
        """Queue *key* unless it is already waiting."""
        if key in self._active:
            self._dirty.setdefault(key, False)
        elif key not in self._due and key not in self._routine:
            self._routine[key] = self._entered()
            self._waiting.release()

    def add_due(self, key: K) -> None:
        """Queue *key* ahead of the keys queued by :meth:`add`, behind those already
        due; a key waiting among the former moves up."""
        if key in self._active:
            self._dirty[key] = True
        elif key in self._routine:
            self._due[key] = self._routine.pop(key)
        elif key not in self._due:
            self._due[key] = self._entered()
            self._waiting.release()

    def add_after(self, key: K, delay: float) -> None:
        """Queue *key* after *delay* seconds (retries with backoff)."""
        self._stats.retries += 1
        asyncio.get_running_loop().call_later(delay, self.add, key)

    async def get(self) -> K:
        """Wait for a key; the caller must call :meth:`done` with it when finished."""
        await self._waiting.acquire()
        key, queued_at = (self._due or self._routine).popitem(last=False)
        now = time.monotonic()
        self._active[key] = now
        self._stats.depth -= 1
        self._stats.queue_duration.observe(now - queued_at)
        return key

    def done(self, key: K) -> None:
        """Release *key*; requeue it if it was added meanwhile."""
        taken_at = self._active.pop(key, None)
        if taken_at is not None:
            self._stats.work_duration.observe(time.monotonic() - taken_at)
        due = self._dirty.pop(key, None)
        if due:
            self.add_due(key)
        elif due is not None:
            self.add(key)

    def __len__(self) -> int:
        return len(self._due) + len(self._routine)

    def _entered(self) -> float:
        """Count a key entering the queue; the time it did."""
        self._stats.adds += 1
        self._stats.depth += 1
        return time.monotonic()
