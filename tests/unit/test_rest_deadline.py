"""A call past its answer deadline (``Rest(answer_within=...)``): the caller is answered
``ApiUnavailable`` in time, while the call runs on, keeping its connection, and counts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from kubernetes_asyncio import client

from session_operator.call_health import CallHealth
from session_operator.k8s import rest as rest_module
from session_operator.k8s.errors import ApiUnavailable, PreconditionFailed
from session_operator.k8s.rest import Rest

pytestmark = pytest.mark.unit


class SlowApiClient:
    """Answers every call after *delay* seconds; counts the answers and the cancelled."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.answered = 0
        self.cancelled = 0

    def call_api(self, path: str, method: str, **options: Any) -> Any:
        return self._answer()

    async def _answer(self) -> dict[str, Any]:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.answered += 1
        return {"kind": "Session"}


def slow_rest(delay: float, health: CallHealth | None = None) -> tuple[SlowApiClient, Rest]:
    api = SlowApiClient(delay)
    rest = Rest(cast(client.ApiClient, api), timeout=5, answer_within=0.05, observer=health)
    return api, rest


async def test_an_answer_within_the_deadline_is_returned() -> None:
    _, rest = slow_rest(0.0)
    assert await rest.request("GET", "/x") == {"kind": "Session"}


async def test_a_late_call_is_answered_unavailable_in_time_and_runs_on() -> None:
    api, rest = slow_rest(0.2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ApiUnavailable, match=r"no answer within 0\.05 s"):
        await rest.request("PATCH", "/x")
    assert asyncio.get_running_loop().time() - started < 0.15
    await asyncio.sleep(0.3)
    assert (api.answered, api.cancelled) == (1, 0)


async def test_a_late_call_counts_as_an_outage_until_its_answer_comes() -> None:
    health = CallHealth(lambda: datetime.now(UTC))
    _, rest = slow_rest(0.2, health)
    sent = datetime.now(UTC)
    with pytest.raises(ApiUnavailable):
        await rest.request("PATCH", "/x")
    assert health.ongoing() is not None
    await asyncio.sleep(0.3)
    answered = datetime.now(UTC)
    assert health.ongoing() is None
    [window] = health.take_closed()
    assert sent <= window.start < window.end <= answered


async def test_late_calls_beyond_the_bound_are_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rest_module, "LATE_CALLS", 2)
    api, rest = slow_rest(0.3)
    for outcome in await asyncio.gather(
        *(rest.request("PATCH", f"/x{n}") for n in range(3)), return_exceptions=True
    ):
        assert isinstance(outcome, ApiUnavailable)
    await asyncio.sleep(0.4)
    assert (api.answered, api.cancelled) == (2, 1)


async def test_a_caller_that_goes_away_leaves_its_call_to_finish() -> None:
    api, rest = slow_rest(0.02)
    caller = asyncio.create_task(rest.request("PATCH", "/x"))
    await asyncio.sleep(0.005)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0.05)
    assert (api.answered, api.cancelled) == (1, 0)


class RefusingApiClient(SlowApiClient):
    """Refuses every call (a lost compare-and-set) after *delay* seconds."""

    async def _answer(self) -> dict[str, Any]:
        await asyncio.sleep(self.delay)
        raise client.ApiException(status=409, reason="Conflict")


async def test_a_refusal_within_the_deadline_is_raised_to_the_caller() -> None:
    rest = Rest(cast(client.ApiClient, RefusingApiClient(0.0)), timeout=5, answer_within=0.05)
    with pytest.raises(PreconditionFailed):
        await rest.request("PATCH", "/x")


async def test_a_late_call_refused_leaves_no_task_ending_in_an_error() -> None:
    # kopf, as it stops, awaits the tasks started after it and raises their errors.
    rest = Rest(cast(client.ApiClient, RefusingApiClient(0.1)), timeout=5, answer_within=0.02)
    before = asyncio.all_tasks()
    with pytest.raises(ApiUnavailable):
        await rest.request("PATCH", "/x")
    [late] = asyncio.all_tasks() - before
    await asyncio.wait({late})
    assert late.exception() is None
