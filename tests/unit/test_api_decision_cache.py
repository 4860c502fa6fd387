"""The auth decision cache: a short TTL, a bound on its size, one lookup per key at a time."""

from __future__ import annotations

import asyncio

import pytest

from session_operator.api.decision_cache import DecisionCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_value_is_kept_for_the_ttl_and_not_a_moment_longer() -> None:
    clock = Clock()
    cache: DecisionCache[str, bool] = DecisionCache(ttl=10, clock=clock)
    cache.put("k", False)
    clock.now = 9.999
    assert cache.get("k") is False
    clock.now = 10.0
    assert cache.get("k") is None


def test_oldest_entries_are_dropped_beyond_the_bound() -> None:
    cache: DecisionCache[int, int] = DecisionCache(ttl=10, max_entries=3)
    for key in range(5):
        cache.put(key, key)
    assert len(cache) == 3
    assert [cache.get(key) for key in range(5)] == [None, None, 2, 3, 4]


async def test_concurrent_lookups_of_one_key_share_one_load() -> None:
    cache: DecisionCache[str, int] = DecisionCache(ttl=10)
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return 7

    assert await asyncio.gather(*(cache.get_or_load("k", load) for _ in range(10))) == [7] * 10
    assert loads == 1
    assert await cache.get_or_load("k", load) == 7
    assert loads == 1


async def test_failed_load_is_not_cached() -> None:
    cache: DecisionCache[str, int] = DecisionCache(ttl=10)

    async def fail() -> int:
        raise TimeoutError

    async def succeed() -> int:
        return 1

    with pytest.raises(TimeoutError):
        await cache.get_or_load("k", fail)
    assert await cache.get_or_load("k", succeed) == 1


async def test_a_caller_giving_up_does_not_cancel_the_shared_load() -> None:
    cache: DecisionCache[str, int] = DecisionCache(ttl=10)
    release = asyncio.Event()

    async def load() -> int:
        await release.wait()
        return 3

    impatient = asyncio.ensure_future(cache.get_or_load("k", load))
    patient = asyncio.ensure_future(cache.get_or_load("k", load))
    await asyncio.sleep(0)
    impatient.cancel()
    release.set()
    assert await patient == 3
    assert cache.get("k") == 3


def test_a_flood_of_refusals_does_not_evict_accepted_decisions() -> None:
    cache: DecisionCache[str, bool] = DecisionCache(
        ttl=10, max_entries=3, is_refusal=lambda allowed: not allowed, max_refusals=5
    )
    cache.put("valid", True)
    for number in range(10_010):
        cache.put(f"garbage-{number}", False)
    assert cache.get("valid") is True
    assert len(cache) == 1 + 5
    assert cache.get("garbage-10009") is False
    assert cache.get("garbage-0") is None


def test_a_key_lives_in_one_pool_only() -> None:
    cache: DecisionCache[str, bool] = DecisionCache(ttl=10, is_refusal=lambda ok: not ok)
    cache.put("k", False)
    cache.put("k", True)
    assert cache.get("k") is True
    assert len(cache) == 1
