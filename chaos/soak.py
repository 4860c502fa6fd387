"""The soak: sessions created, beaten, stopped, expired and deleted at a steady churn.

A few *sentinel* sessions beat from start to end (none may be stopped); every
``SPAWN_EVERY`` seconds a new session comes, lives a random while, and then its client dies,
or it is stopped, or deleted. The operator deletes terminal sessions after a short retention,
so objects come and go the whole time. At the end the invariants are judged as after a
fault, and each replica's resident memory after warm-up must not have grown.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.invariants import Intent, Verdict
from chaos.phase import Phase
from chaos.world import World

TTL, INTERVAL = 6, 2
SENTINELS = 6
SPAWN_EVERY = 2.0
LIFETIME = (4.0, 40.0)
CHURN = (Intent.DROP, Intent.USER_STOP, Intent.DELETE)
RSS_EVERY = 5.0
WARM_UP_SHARE = 1 / 3
RSS_GROWTH_ALLOWED = 0.10
"""After warm-up, resident memory may end at most this much above where it started."""
MIB = 1024 * 1024


@dataclass
class MemoryTrend:
    """One replica incarnation's resident memory after warm-up."""

    instance: str
    after_warm_up: float
    at_end: float

    @property
    def growth(self) -> float:
        """End over start, minus one."""
        return self.at_end / self.after_warm_up - 1

    @property
    def held(self) -> bool:
        """Whether memory stayed within :data:`RSS_GROWTH_ALLOWED`."""
        return self.growth <= RSS_GROWTH_ALLOWED


@dataclass
class SoakResult:
    """What the soak saw."""

    seconds: float
    verdict: Verdict
    memory: list[MemoryTrend] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """The invariants held and no replica's memory grew."""
        return self.verdict.passed and all(trend.held for trend in self.memory)


async def soak(
    world: World, duration: float, rng: random.Random, progress: Callable[[float], None]
) -> SoakResult:
    """Churn sessions for *duration* seconds, then judge; *progress* gets the share done."""
    phase = Phase(world, "soak", TTL, INTERVAL)
    await phase.open()
    started = time.monotonic()
    samples: dict[str, list[tuple[float, int]]] = {}
    sampler = asyncio.create_task(_sample_memory(world, samples, started))
    await phase.add_many([(f"sentinel-{i}", Intent.BEAT, i % 2 == 0) for i in range(SENTINELS)])
    lives: list[asyncio.Task[None]] = []
    for number in itertools.count():
        elapsed = time.monotonic() - started
        if elapsed >= duration:
            break
        progress(elapsed / duration)
        lives.append(asyncio.create_task(_live_one(phase, f"s{number:05d}", rng)))
        await asyncio.sleep(SPAWN_EVERY)
    await asyncio.gather(*lives)
    sampler.cancel()
    await phase.settle()
    verdict = await phase.verdict()
    await phase.close()
    warm_up = duration * WARM_UP_SHARE
    return SoakResult(time.monotonic() - started, verdict, _trends(samples, warm_up))


async def _live_one(phase: Phase, name: str, rng: random.Random) -> None:
    intent = rng.choice(CHURN)
    await phase.add(name, intent, workload=rng.random() < 1 / 3)
    await asyncio.sleep(rng.uniform(*LIFETIME))
    await phase.act([name])


async def _sample_memory(
    world: World, samples: dict[str, list[tuple[float, int]]], started: float
) -> None:
    while True:
        for replica in world.replicas:
            rss = replica.rss_bytes()
            if rss is not None:
                samples.setdefault(replica.instance, []).append((time.monotonic() - started, rss))
        await asyncio.sleep(RSS_EVERY)


def _trends(samples: dict[str, list[tuple[float, int]]], warm_up: float) -> list[MemoryTrend]:
    trends = []
    for instance, series in samples.items():
        settled = [rss for at, rss in series if at >= warm_up]
        if len(settled) < 6:
            continue
        start = statistics.median(settled[:3])
        end = statistics.median(settled[-3:])
        trends.append(MemoryTrend(instance, start / MIB, end / MIB))
    return trends
