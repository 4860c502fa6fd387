"""What the process holds is put out of the garbage collector's reach once it is listed,
and as the replica takes the lead, before the resync allocates."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import cast

import pytest

from session_operator import heap
from session_operator.controller.loop import SessionController
from session_operator.informer.pod_store import PodStore
from session_operator.runtime import freeze_once_pods_listed, take_the_lead

pytestmark = pytest.mark.unit


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What :func:`heap.freeze` was called after, in order, without freezing the tests."""
    calls: list[str] = []
    monkeypatch.setattr(heap, "freeze", calls.append)
    return calls


@pytest.fixture
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_freezing_puts_what_the_process_holds_out_of_the_collectors_reach(thawed: None) -> None:
    held = [{"session": index} for index in range(1000)]
    heap.freeze("a test's listing")
    assert gc.get_freeze_count() >= len(held)


class Resyncs:
    def __init__(self, frozen: list[str]) -> None:
        self.frozen = frozen
        self.frozen_before: list[str] | None = None

    def resync(self) -> None:
        self.frozen_before = list(self.frozen)


def test_a_new_leader_freezes_the_heap_before_its_resync(frozen: list[str]) -> None:
    controller = Resyncs(frozen)
    take_the_lead(cast(SessionController, controller))()
    assert controller.frozen_before == ["winning the Lease"]


async def test_the_heap_is_frozen_once_the_pods_are_listed(frozen: list[str]) -> None:
    pods = PodStore()
    waiting = asyncio.create_task(freeze_once_pods_listed(pods))
    await asyncio.sleep(0.01)
    assert frozen == []

    pods.mark_listed()
    await asyncio.wait_for(waiting, 1)
    assert frozen == ["the Pod listing"]
