"""The auth decision cache: a short TTL, a bound on its size, one lookup per key at a time,
renewals in the background, lifetimes spread apart."""

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
    cache: DecisionCache[str, bool] = DecisionCache(ttl=10, clock=clock, jitter=0)
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


# --- refresh ahead: renewing never makes a request wait --------------------------------------


async def let_background_run() -> None:
    """Give tasks started in the background a few turns of the event loop."""
    for _ in range(5):
        await asyncio.sleep(0)


class BlockedLoad:
    """A lookup that answers *value* once released, counting how often it was started."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.started = 0
        self.release = asyncio.Event()

    async def __call__(self) -> int:
        self.started += 1
        await self.release.wait()
        return self.value


def one_value_cached() -> tuple[DecisionCache[str, int], Clock]:
    """A cache without jitter, a TTL of 100 s refreshed ahead in its last quarter (from
    75 s), holding 1 for "k" since 0 s."""
    clock = Clock()
    cache: DecisionCache[str, int] = DecisionCache(
        ttl=100, clock=clock, jitter=0, refresh_ahead=0.25
    )
    cache.put("k", 1)
    return cache, clock


async def test_a_hit_in_the_refresh_window_answers_at_once_and_starts_one_refresh() -> None:
    cache, clock = one_value_cached()
    refresh = BlockedLoad(2)
    clock.now = 74.9
    assert await cache.get_or_load("k", refresh) == 1
    await let_background_run()
    assert refresh.started == 0
    for now in (75.0, 80.0, 99.9):
        clock.now = now
        # The refresh is blocked: a request waiting for it would time out here.
        assert await asyncio.wait_for(cache.get_or_load("k", refresh), timeout=1) == 1
        await let_background_run()
    assert refresh.started == 1
    refresh.release.set()
    await let_background_run()
    # The new value counts its TTL from its answer, at 99.9.
    clock.now = 199.8
    assert cache.get("k") == 2
    clock.now = 199.9
    assert cache.get("k") is None


async def test_a_request_after_the_end_waits_for_the_refresh_under_way() -> None:
    cache, clock = one_value_cached()
    refresh = BlockedLoad(2)
    clock.now = 90
    assert await cache.get_or_load("k", refresh) == 1
    clock.now = 100
    waiting = asyncio.ensure_future(cache.get_or_load("k", refresh))
    await let_background_run()
    assert not waiting.done()  # never answered with the value that ran out
    refresh.release.set()
    assert await waiting == 2
    assert refresh.started == 1


async def test_the_refresh_given_is_the_one_started_ahead() -> None:
    clock = Clock()
    cache: DecisionCache[str, str] = DecisionCache(
        ttl=100, clock=clock, jitter=0, refresh_ahead=0.25
    )
    cache.put("k", "cached")
    started: list[str] = []

    async def load() -> str:
        started.append("load")
        return "loaded"

    async def refresh() -> str:
        started.append("refresh")
        return "refreshed"

    clock.now = 80
    assert await cache.get_or_load("k", load, refresh) == "cached"
    await let_background_run()
    assert started == ["refresh"]
    assert cache.get("k") == "refreshed"


async def test_a_failed_refresh_leaves_the_value_until_it_runs_out() -> None:
    cache, clock = one_value_cached()
    attempts = 0

    async def fail() -> int:
        nonlocal attempts
        attempts += 1
        raise TimeoutError

    for now in (80.0, 90.0, 99.9):
        clock.now = now
        assert await cache.get_or_load("k", fail) == 1
        await let_background_run()
    assert attempts == 3  # each request in the refresh window tries again
    clock.now = 100
    assert cache.get("k") is None
    with pytest.raises(TimeoutError):
        await cache.get_or_load("k", fail)


async def test_a_refusal_is_never_refreshed_ahead() -> None:
    clock = Clock()
    cache: DecisionCache[str, int] = DecisionCache(
        ttl=100, clock=clock, is_refusal=lambda value: value == 0, jitter=0
    )
    cache.put("k", 0)
    load = BlockedLoad(1)
    clock.now = 99.9
    assert await cache.get_or_load("k", load) == 0
    await let_background_run()
    assert load.started == 0


async def test_a_value_ending_before_the_ttl_is_not_refreshed_ahead() -> None:
    # A token's verdict ends with the token: a new review would end at the same moment.
    clock = Clock()
    cache: DecisionCache[str, int] = DecisionCache(
        ttl=100, clock=clock, lifetime=lambda value: 40, jitter=0
    )
    cache.put("k", 1)
    load = BlockedLoad(2)
    clock.now = 39.9
    assert await cache.get_or_load("k", load) == 1
    await let_background_run()
    assert load.started == 0


# --- jitter: values put together run out apart ------------------------------------------------


def test_jitter_takes_off_up_to_its_share_of_the_lifetime_and_never_adds() -> None:
    clock = Clock()
    draws = iter([0.0, 0.5, 0.999_999, 0.5])
    cache: DecisionCache[str, float] = DecisionCache(
        ttl=120,
        clock=clock,
        lifetime=lambda value: value,
        jitter=0.1,
        draw=lambda: next(draws),
    )
    for key in ("none", "half", "all", "exp"):
        cache.put(key, 30 if key == "exp" else 600)
    ends = {"exp": 28.5, "all": 108.000_012, "half": 114.0, "none": 120.0}
    for key, end in sorted(ends.items(), key=lambda item: item[1]):
        clock.now = end - 0.000_01
        assert cache.get(key) is not None, key
        clock.now = end
        assert cache.get(key) is None, key


def test_jitter_leaves_refusals_their_full_lifetime() -> None:
    clock = Clock()
    cache: DecisionCache[str, bool] = DecisionCache(
        ttl=10, clock=clock, is_refusal=lambda allowed: not allowed, jitter=0.1, draw=lambda: 0.9
    )
    cache.put("k", False)
    clock.now = 9.999
    assert cache.get("k") is False


def test_values_put_together_run_out_apart_within_their_bounds() -> None:
    clock = Clock()
    cache: DecisionCache[int, int] = DecisionCache(ttl=120, clock=clock)
    keys = range(200)
    for key in keys:
        cache.put(key, key)
    clock.now = 107.99  # the default jitter takes off a tenth at most
    assert all(cache.get(key) is not None for key in keys)
    clock.now = 114
    alive = sum(cache.get(key) is not None for key in keys)
    assert 0 < alive < len(keys)
    clock.now = 120
    assert all(cache.get(key) is None for key in keys)
