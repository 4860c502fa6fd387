"""Reviews at the apiserver are bounded: a few at a time, a queue behind them, then 503."""

from __future__ import annotations

import asyncio

import pytest

from session_operator.api.errors import AuthenticationUnavailable
from session_operator.api.review_limit import ReviewLimiter


class Gate:
    """Reviews that run until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def review(self) -> str:
        await self.release.wait()
        return "done"


async def test_reviews_beyond_the_bound_wait_and_beyond_the_queue_are_refused() -> None:
    limiter = ReviewLimiter(concurrent=2, waiting=3, per_source=100)
    release = asyncio.Event()
    running = 0
    most = 0

    async def review() -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return "done"

    queued = [asyncio.create_task(limiter.run(review, "a")) for _ in range(5)]
    await asyncio.sleep(0.01)
    with pytest.raises(AuthenticationUnavailable):
        await limiter.run(review, "a")
    release.set()
    assert await asyncio.gather(*queued) == ["done"] * 5
    assert most == 2
    assert await limiter.run(review, "a") == "done"


async def test_a_failing_review_frees_its_slot() -> None:
    limiter = ReviewLimiter(concurrent=1, waiting=0)

    async def fail() -> None:
        raise TimeoutError

    for _ in range(3):
        with pytest.raises(TimeoutError):
            await limiter.run(fail, "a")


async def test_a_flooding_source_gets_its_share_and_others_still_get_a_place() -> None:
    limiter = ReviewLimiter(concurrent=2, waiting=100, per_source=4)
    gate = Gate()

    flood = [asyncio.create_task(limiter.run(gate.review, "10.0.0.66")) for _ in range(4)]
    await asyncio.sleep(0.01)
    for _ in range(3):
        with pytest.raises(AuthenticationUnavailable):
            await limiter.run(gate.review, "10.0.0.66")
    client = asyncio.create_task(limiter.run(gate.review, "10.0.0.7"))
    await asyncio.sleep(0.01)
    assert not client.done()  # queued behind the flood's share, not refused
    gate.release.set()
    assert await client == "done"
    assert await asyncio.gather(*flood) == ["done"] * 4
    assert await limiter.run(gate.review, "10.0.0.66") == "done"  # its share is free again


async def review_now() -> str:
    return "now"


async def test_a_review_that_need_not_wait_runs_only_on_a_free_slot_and_never_queues() -> None:
    limiter = ReviewLimiter(concurrent=1, waiting=1, per_source=100)
    gate = Gate()

    assert await limiter.run(review_now, "a", wait=False) == "now"  # a slot is free
    busy = asyncio.create_task(limiter.run(gate.review, "a"))
    await asyncio.sleep(0.01)
    with pytest.raises(AuthenticationUnavailable):
        # Refused at once, not queued until the timeout.
        await asyncio.wait_for(limiter.run(review_now, "b", wait=False), timeout=1)
    # The one waiting place is still free for a review that must wait.
    queued = asyncio.create_task(limiter.run(gate.review, "c"))
    await asyncio.sleep(0.01)
    assert not queued.done()
    gate.release.set()
    assert [await busy, await queued] == ["done", "done"]


async def test_only_a_full_queue_is_told_as_want_of_capacity() -> None:
    # Lease rule 8 counts a full queue as an outage; a flooding source's own share, or a
    # background refresh that found no free slot, is no outage of the API.
    told: list[str] = []
    limiter = ReviewLimiter(
        concurrent=1, waiting=1, per_source=2, on_full=lambda: told.append("full")
    )
    gate = Gate()

    running = [asyncio.create_task(limiter.run(gate.review, "flood")) for _ in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(AuthenticationUnavailable):
        await limiter.run(gate.review, "flood")  # its own share is full
    assert told == []
    with pytest.raises(AuthenticationUnavailable):
        await limiter.run(review_now, "client", wait=False)
    assert told == []
    with pytest.raises(AuthenticationUnavailable):
        await limiter.run(gate.review, "client")  # one running, one waiting: the queue is full
    assert told == ["full"]
    gate.release.set()
    assert await asyncio.gather(*running) == ["done", "done"]


async def test_a_review_that_waited_until_its_caller_gave_up_is_told_as_want_of_capacity() -> None:
    told: list[str] = []
    limiter = ReviewLimiter(
        concurrent=1,
        waiting=10,
        per_source=10,
        on_full=lambda: told.append("full"),
        given_up_after=0.05,
    )
    gate = Gate()

    busy = asyncio.create_task(limiter.run(gate.review, "a"))
    quick = asyncio.create_task(limiter.run(review_now, "b"))
    await asyncio.sleep(0.01)
    late = asyncio.create_task(limiter.run(review_now, "c"))
    await asyncio.sleep(0.1)
    gate.release.set()
    assert [await busy, await quick, await late] == ["done", "now", "now"]
    # "b" and "c" both waited past the bound; it is told once for each, not refused.
    assert told == ["full", "full"]
    assert await limiter.run(review_now, "d") == "now"
    assert told == ["full", "full"]
