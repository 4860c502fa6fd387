"""A min-heap of one time per key, where setting a key's time again replaces it.

Superseded entries stay in the heap until they surface and are skipped then; the heap is
rebuilt when they outnumber the live ones. Setting and removing are O(log n) and O(1);
reading the earliest entries costs O(k log n) for k of them.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterable, Iterator
from datetime import datetime
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

_REBUILD_ABOVE = 64


class KeyedHeap(Generic[K]):
    """Keys ordered by the time last set for each."""

    def __init__(self) -> None:
        self._times: dict[K, datetime] = {}
        self._heap: list[tuple[datetime, int, K]] = []
        self._order = itertools.count()

    def set(self, key: K, when: datetime) -> bool:
        """Order *key* at *when*; True when that makes it the earliest key."""
        if self._times.get(key) == when:
            return False
        self._times[key] = when
        heapq.heappush(self._heap, (when, next(self._order), key))
        if len(self._heap) > _REBUILD_ABOVE and len(self._heap) > 4 * len(self._times):
            self._heap = [entry for entry in self._heap if self._times.get(entry[2]) == entry[0]]
            heapq.heapify(self._heap)
        return self._heap[0][2] == key

    def set_many(self, entries: Iterable[tuple[K, datetime]]) -> None:
        """Order each key at its time, as :meth:`set` does one by one, in O(n) for n keys
        in all (one heapify, not a push each)."""
        for key, when in entries:
            if self._times.get(key) != when:
                self._times[key] = when
                self._heap.append((when, next(self._order), key))
        if len(self._heap) > _REBUILD_ABOVE and len(self._heap) > 4 * len(self._times):
            self._heap = [entry for entry in self._heap if self._times.get(entry[2]) == entry[0]]
        heapq.heapify(self._heap)

    def items(self) -> list[tuple[K, datetime]]:
        """Every key with its time, in no order."""
        return list(self._times.items())

    def discard(self, key: K) -> None:
        """Forget *key*."""
        self._times.pop(key, None)

    def earliest(self) -> tuple[K, datetime] | None:
        """The key with the earliest time, and that time; ``None`` when empty."""
        self._drop_superseded()
        if not self._heap:
            return None
        when, _, key = self._heap[0]
        return key, when

    def pop(self) -> K:
        """Remove and return the earliest key (the heap must not be empty)."""
        self._drop_superseded()
        _, _, key = heapq.heappop(self._heap)
        del self._times[key]
        return key

    def due(self, now: datetime) -> Iterator[K]:
        """The keys whose time is at or before *now*, earliest first; they stay in the heap."""
        popped: list[tuple[datetime, int, K]] = []
        try:
            while self._heap and self._heap[0][0] <= now:
                entry = heapq.heappop(self._heap)
                if self._times.get(entry[2]) == entry[0]:
                    popped.append(entry)
        finally:
            for entry in popped:
                heapq.heappush(self._heap, entry)
        return iter([key for _, _, key in popped])

    def __len__(self) -> int:
        return len(self._times)

    def _drop_superseded(self) -> None:
        while self._heap and self._times.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)
