"""One timer for every lease deadline: a heap, woken by changes, firing on the dot."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class DeadlineScheduler(Generic[K]):
    """Calls ``on_due(key)`` once the clock reaches the deadline last set for *key*.

    Rescheduling and cancelling are O(log n) / O(1): superseded heap entries are skipped
    when they surface, and the heap is rebuilt when they outnumber the live ones.
    """

    def __init__(self, on_due: Callable[[K], None], clock: Callable[[], datetime]) -> None:
        self._on_due = on_due
        self._clock = clock
        self._deadlines: dict[K, datetime] = {}
        self._heap: list[tuple[datetime, int, K]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()

    def schedule(self, key: K, deadline: datetime) -> None:
        """Fire for *key* at *deadline*, replacing any earlier deadline of *key*."""
        if self._deadlines.get(key) == deadline:
            return
        self._deadlines[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._order), key))
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._deadlines):
            self._compact()
        if self._heap[0][2] == key:
            self._changed.set()

    def cancel(self, key: K) -> None:
        """Forget *key*'s deadline."""
        self._deadlines.pop(key, None)

    def __len__(self) -> int:
        return len(self._deadlines)

    async def run(self) -> None:
        """Fire deadlines until cancelled."""
        while True:
            self._drop_superseded()
            if not self._heap:
                await self._wait(None)
                continue
            deadline, _, key = self._heap[0]
            delay = (deadline - self._clock()).total_seconds()
            if delay > 0:
                await self._wait(delay)
                continue
            heapq.heappop(self._heap)
            del self._deadlines[key]
            self._on_due(key)

    async def _wait(self, seconds: float | None) -> None:
        """Sleep *seconds* (``None``: indefinitely) or until a deadline changes."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._changed.wait()

    def _drop_superseded(self) -> None:
        while self._heap:
            deadline, _, key = self._heap[0]
            if self._deadlines.get(key) == deadline:
                return
            heapq.heappop(self._heap)

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if self._deadlines.get(entry[2]) == entry[0]]
        heapq.heapify(self._heap)
