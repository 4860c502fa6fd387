"""Closed-loop load: *c* workers, each sending its next request when the last one answered.

Workers take their targets from a :class:`Rotation`: a target is never in flight twice at
once, and (for heartbeats that must write) is not sent again before *gap* seconds after its
last answer, so that every beat falls outside the session's heartbeat interval.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Latency:
    """Latency percentiles of a set of requests, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        """Summarise request durations given in seconds (nearest-rank percentiles)."""
        if not seconds:
            return cls(0, math.nan, math.nan, math.nan)
        ordered = sorted(seconds)
        return cls(
            len(ordered),
            percentile(ordered, 50) * 1000,
            percentile(ordered, 99) * 1000,
            ordered[-1] * 1000,
        )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """The nearest-rank *pct* percentile of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class LoadResult:
    """What one closed-loop run did: how many requests, how fast, how they were answered."""

    concurrency: int
    seconds: float
    latency: Latency
    statuses: Counter[int] = field(default_factory=Counter)
    gated_seconds: float = 0.0
    """Worker time spent waiting for a target to leave its interval (0: never bound)."""

    @property
    def ok(self) -> int:
        """Requests answered 2xx."""
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)

    @property
    def throughput(self) -> float:
        """2xx answers per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def failures(self) -> dict[int, int]:
        """Counts of non-2xx answers by status (0: no answer at all)."""
        return {status: n for status, n in self.statuses.items() if not 200 <= status < 300}


class Rotation(Generic[T]):
    """Targets handed out in turn; each one rests *gap* seconds after its answer."""

    def __init__(self, targets: Iterable[T], gap: float = 0.0, not_before: float = 0.0) -> None:
        """*not_before* is a ``time.perf_counter()`` instant before which no target is sent."""
        self._ready: deque[tuple[float, T]] = deque((not_before, target) for target in targets)
        self._gap = gap
        self._returned = asyncio.Event()
        self.gated_seconds = 0.0

    def __len__(self) -> int:
        return len(self._ready)

    async def take(self, end: float) -> T | None:
        """The next target, waiting until it may be sent; ``None`` once *end* has passed."""
        while not self._ready:
            # Fewer targets than workers: wait for one to come back.
            self._returned.clear()
            remaining = end - time.perf_counter()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    await self._returned.wait()
            except TimeoutError:
                return None
        ready_at, target = self._ready.popleft()
        wait = ready_at - time.perf_counter()
        if wait > 0:
            if time.perf_counter() + wait >= end:
                self._ready.appendleft((ready_at, target))
                return None
            self.gated_seconds += wait
            await asyncio.sleep(wait)
        return target

    def give_back(self, target: T, answered_at: float) -> None:
        """Return *target*; it may be sent again *gap* seconds after *answered_at*."""
        self._ready.append((answered_at + self._gap, target))
        self._returned.set()


async def closed_loop(
    rotation: Rotation[T],
    send: Callable[[T], Awaitable[int]],
    concurrency: int,
    duration: float,
    on_tick: Callable[[float], None] | None = None,
    stop: asyncio.Event | None = None,
) -> LoadResult:
    """Run *concurrency* workers for *duration* seconds, each calling ``send(target)``.

    *send* returns the HTTP status (0 when there was no answer). Latency is measured
    around each call; throughput counts 2xx answers over the time from the start to the
    last answer. *on_tick* is called with the elapsed fraction about twice a second.
    Setting *stop* ends the run early: each worker finishes the request it has in flight.
    """
    durations: list[float] = []
    statuses: Counter[int] = Counter()
    start = time.perf_counter()
    end = start + duration
    last_answer = start

    async def worker() -> None:
        nonlocal last_answer
        while True:
            target = await rotation.take(end)
            if target is None:
                return
            sent = time.perf_counter()
            status = await send(target)
            answered = time.perf_counter()
            durations.append(answered - sent)
            statuses[status] += 1
            last_answer = max(last_answer, answered)
            rotation.give_back(target, answered)
            if answered >= end or (stop is not None and stop.is_set()):
                return

    async def ticker() -> None:
        while on_tick is not None:
            on_tick(min(1.0, (time.perf_counter() - start) / duration))
            await asyncio.sleep(0.5)

    ticking = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        ticking.cancel()
    return LoadResult(
        concurrency=concurrency,
        seconds=last_answer - start,
        latency=Latency.of(durations),
        statuses=statuses,
        gated_seconds=rotation.gated_seconds,
    )


async def bounded_gather(
    items: Sequence[T],
    action: Callable[[T], Awaitable[object]],
    concurrency: int,
    on_done: Callable[[int], None] | None = None,
) -> None:
    """Apply *action* to every item, at most *concurrency* at a time; report progress."""
    queue: deque[T] = deque(items)
    done = 0

    async def worker() -> None:
        nonlocal done
        while queue:
            await action(queue.popleft())
            done += 1
            if on_done is not None:
                on_done(done)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(items)) or 1)))
