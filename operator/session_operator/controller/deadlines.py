"""One timer for every lease deadline: a heap, woken by changes, firing on the dot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime
from typing import Generic, TypeVar

from session_operator.informer.keyed_heap import KeyedHeap

K = TypeVar("K", bound=Hashable)


class DeadlineScheduler(Generic[K]):
    """Calls ``on_due(key)`` once the clock reaches the deadline last set for *key*."""

    def __init__(self, on_due: Callable[[K], None], clock: Callable[[], datetime]) -> None:
        self._on_due = on_due
        self._clock = clock
        self._deadlines: KeyedHeap[K] = KeyedHeap()
        self._changed = asyncio.Event()

    def schedule(self, key: K, deadline: datetime) -> None:
        """Fire for *key* at *deadline*, replacing any earlier deadline of *key*."""
        if self._deadlines.set(key, deadline):
            self._changed.set()

    def schedule_all(self, entries: Iterable[tuple[K, datetime]]) -> None:
        """:meth:`schedule` each (key, deadline), in O(n) for n keys in all."""
        self._deadlines.set_many(entries)
        self._changed.set()

    def cancel(self, key: K) -> None:
        """Forget *key*'s deadline."""
        self._deadlines.discard(key)

    def __len__(self) -> int:
        return len(self._deadlines)

    async def run(self) -> None:
        """Fire deadlines until cancelled."""
        while True:
            earliest = self._deadlines.earliest()
            if earliest is None:
                await self._wait(None)
                continue
            delay = (earliest[1] - self._clock()).total_seconds()
            if delay > 0:
                await self._wait(delay)
                continue
            self._on_due(self._deadlines.pop())

    async def _wait(self, seconds: float | None) -> None:
        """Sleep *seconds* (``None``: indefinitely) or until a deadline changes."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._changed.wait()
