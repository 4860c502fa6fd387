"""The keyed work queue: each key queued once, never held by two workers at once."""

from __future__ import annotations

import asyncio

import pytest

from session_operator.controller.workqueue import WorkQueue

pytestmark = pytest.mark.unit

QUIET = 0.05


async def nothing_queued(queue: WorkQueue[str]) -> bool:
    """True when no key arrives within a short wait."""
    try:
        await asyncio.wait_for(queue.get(), QUIET)
    except TimeoutError:
        return True
    return False


async def test_key_added_while_queued_is_processed_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("b")
    queue.add("a")

    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    assert await nothing_queued(queue)


async def test_key_can_be_queued_again_once_taken() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.done("a")
    queue.add("a")

    assert len(queue) == 1
    assert await queue.get() == "a"


async def test_key_added_while_active_is_not_handed_to_another_worker() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")

    assert len(queue) == 0
    assert await nothing_queued(queue)


async def test_key_added_while_active_is_processed_again_after_done_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    queue.add("a")
    queue.done("a")

    assert len(queue) == 1
    assert await queue.get() == "a"
    queue.done("a")
    assert await nothing_queued(queue)


async def test_done_without_a_new_add_does_not_requeue() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.done("a")

    assert len(queue) == 0
    assert await nothing_queued(queue)


async def test_other_keys_are_served_while_one_is_active() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    queue.add("b")

    assert await asyncio.wait_for(queue.get(), 1) == "b"


async def test_add_after_queues_the_key_only_after_the_delay() -> None:
    loop = asyncio.get_running_loop()
    queue: WorkQueue[str] = WorkQueue()
    started = loop.time()
    queue.add_after("a", 0.1)

    assert len(queue) == 0
    await asyncio.sleep(0.05)
    assert len(queue) == 0
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    assert loop.time() - started >= 0.099


async def test_add_after_of_a_queued_key_does_not_queue_it_twice() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add_after("a", 0.01)
    await asyncio.sleep(0.05)

    assert len(queue) == 1


async def test_due_keys_go_first_then_follow_ups_then_routine_ones_each_in_order() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("routine-1")
    queue.add_follow_up("release-1")
    queue.add_due("due-1")
    queue.add("routine-2")
    queue.add_follow_up("release-2")
    queue.add_due("due-2")

    served = [await queue.get() for _ in range(6)]
    assert served == ["due-1", "due-2", "release-1", "release-2", "routine-1", "routine-2"]
    assert queue.due_waiting() is False
    assert await nothing_queued(queue)


async def test_a_key_moves_up_a_tier_but_never_down() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add_follow_up("b")
    queue.add_follow_up("a")
    queue.add_due("b")
    queue.add_follow_up("b")
    queue.add("b")

    assert queue.due_waiting() is True
    assert len(queue) == 2
    assert [await queue.get() for _ in range(2)] == ["b", "a"]
    assert await nothing_queued(queue)


@pytest.mark.parametrize(
    ("raise_to", "order"),
    [("add_due", ["a", "f", "r"]), ("add_follow_up", ["f", "a", "r"])],
)
async def test_a_key_raised_while_active_returns_in_the_highest_tier_asked(
    raise_to: str, order: list[str]
) -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add_follow_up("f")
    queue.add("r")
    queue.add("a")
    getattr(queue, raise_to)("a")
    queue.add("a")
    queue.done("a")

    assert len(queue) == 3
    assert [await queue.get() for _ in range(3)] == order


async def test_each_key_wakes_one_waiting_worker() -> None:
    queue: WorkQueue[str] = WorkQueue()
    workers = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    queue.add("a")
    queue.add_due("b")
    done, pending = await asyncio.wait(workers, timeout=QUIET)

    assert sorted(task.result() for task in done) == ["a", "b"]
    assert len(pending) == 1
    for task in pending:
        task.cancel()


async def test_adding_all_queues_each_routine_key_once_and_moves_none_down() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("held")
    assert await queue.get() == "held"
    queue.add_due("due")
    queue.add_all(["r1", "due", "r2", "r1", "held"])

    assert len(queue) == 3
    assert [await queue.get() for _ in range(3)] == ["due", "r1", "r2"]
    queue.done("held")  # added while held: queued again once done
    assert await queue.get() == "held"
    assert await nothing_queued(queue)
