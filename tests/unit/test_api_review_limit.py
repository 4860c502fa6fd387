"""Reviews at the apiserver are bounded: a few at a time, a queue behind them, then 503."""

from __future__ import annotations

import asyncio

import pytest

from session_operator.api.errors import AuthenticationUnavailable
from session_operator.api.review_limit import ReviewLimiter


async def test_reviews_beyond_the_bound_wait_and_beyond_the_queue_are_refused() -> None:
    limiter = ReviewLimiter(concurrent=2, waiting=3)
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

    queued = [asyncio.create_task(limiter.run(review)) for _ in range(5)]
    await asyncio.sleep(0.01)
    with pytest.raises(AuthenticationUnavailable):
        await limiter.run(review)
    release.set()
    assert await asyncio.gather(*queued) == ["done"] * 5
    assert most == 2
    assert await limiter.run(review) == "done"


async def test_a_failing_review_frees_its_slot() -> None:
    limiter = ReviewLimiter(concurrent=1, waiting=0)

    async def fail() -> None:
        raise TimeoutError

    for _ in range(3):
        with pytest.raises(TimeoutError):
            await limiter.run(fail)
