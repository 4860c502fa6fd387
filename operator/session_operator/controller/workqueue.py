"""A keyed work queue: each key queued once, never processed by two workers at once, in
three tiers of urgency."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from enum import IntEnum
from typing import Generic, TypeVar

from session_operator import metrics

K = TypeVar("K", bound=Hashable)


class Tier(IntEnum):
    """Where a key waits: a worker takes from the first tier that holds one."""

    DUE = 0
    """Its deadline has come (a lease lapsed): served in the order they fell due."""
    FOLLOW_UP = 1
    """The rest of work begun at a deadline (a stop's release, its label)."""
    ROUTINE = 2
    """A watch event, a resync: most find nothing to do."""


class WorkQueue(Generic[K]):
    """Deduplicating queue of keys (client-go's workqueue, without rate limiting).

    A key added while a worker holds it is processed again after :meth:`done`; a key
    added several times while waiting is processed once. Keys wait in three tiers
    (:class:`Tier`): those whose deadline has come (:meth:`add_due`) are handed out first,
    in the order they fell due, then the follow-ups a deadline's work left
    (:meth:`add_follow_up`), then the routine keys (:meth:`add`: watch events, a resync).
    A lease that lapses is thus not stopped behind thousands of reconciles that find
    nothing to do, nor behind the releases of the stops before it. A key added to a higher
    tier than the one it waits in moves up.

    It counts as client-go's does, under *name* (``metrics.QueueStats``): a key entering
    the queue is an add, one queued by :meth:`add_after` a retry too.
    """

    def __init__(self, name: str = "sessions") -> None:
        self._stats = metrics.WORKQUEUES.stats(name)
        # Each tier's waiting keys with the time (monotonic) each was queued.
        self._tiers: tuple[OrderedDict[K, float], ...] = tuple(OrderedDict() for _ in Tier)
        self._tier_of: dict[K, Tier] = {}
        # One permit per waiting key, so each key wakes exactly one worker.
        self._waiting = asyncio.Semaphore(0)
        # Each key a worker holds, with the time (monotonic) it was taken.
        self._active: dict[K, float] = {}
        # Keys added while held, with the highest tier asked for.
        self._dirty: dict[K, Tier] = {}

    def add(self, key: K) -> None:
        """Queue *key* among the routine keys unless it is already waiting."""
        self._add(key, Tier.ROUTINE)

    def add_all(self, keys: Iterable[K]) -> None:
        """:meth:`add` each of *keys*, all queued at one instant."""
        now = time.monotonic()
        for key in keys:
            self._add(key, Tier.ROUTINE, now)

    def add_follow_up(self, key: K) -> None:
        """Queue *key* behind the due keys, ahead of the routine ones."""
        self._add(key, Tier.FOLLOW_UP)

    def add_due(self, key: K) -> None:
        """Queue *key* ahead of the other tiers, behind the keys already due."""
        self._add(key, Tier.DUE)

    def add_after(self, key: K, delay: float) -> None:
        """Queue *key* after *delay* seconds (retries with backoff)."""
        self._stats.retries += 1
        asyncio.get_running_loop().call_later(delay, self.add, key)

    def due_waiting(self) -> bool:
        """Whether a key whose deadline has come waits for a worker."""
        return bool(self._tiers[Tier.DUE])

    async def get(self) -> K:
        """Wait for a key; the caller must call :meth:`done` with it when finished."""
        await self._waiting.acquire()
        tier = next(waiting for waiting in self._tiers if waiting)
        key, queued_at = tier.popitem(last=False)
        del self._tier_of[key]
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
        tier = self._dirty.pop(key, None)
        if tier is not None:
            self._add(key, tier)

    def __len__(self) -> int:
        return len(self._tier_of)

    def _add(self, key: K, tier: Tier, now: float | None = None) -> None:
        if key in self._active:
            self._dirty[key] = min(tier, self._dirty.get(key, tier))
            return
        waits_in = self._tier_of.get(key)
        if waits_in is None:
            self._stats.adds += 1
            self._stats.depth += 1
            self._tiers[tier][key] = time.monotonic() if now is None else now
            self._tier_of[key] = tier
            self._waiting.release()
        elif tier < waits_in:
            self._tiers[tier][key] = self._tiers[waits_in].pop(key)
            self._tier_of[key] = tier
