"""The runtime's metrics as a scrape reads them: the work queue's (client-go's names), the
leader's status, and the Session watch's restarts and last event."""

from __future__ import annotations

import asyncio
import time

import pytest

from session_operator import metrics
from session_operator.controller.workqueue import WorkQueue
from session_operator.informer.session_cache import SessionCache
from session_operator.informer.session_store import SessionStore
from session_operator.k8s.errors import ApiUnavailable, ResourceVersionExpired
from session_operator.k8s.watch import Listing, WatchEvent
from tests.unit.builders import ScriptedListWatch, listed_body, run_cache_until

pytestmark = pytest.mark.unit


def scraped(sample: str, **labels: str) -> float:
    """The value of *sample* with *labels* as ``/metrics`` serves it (0 when absent)."""
    return metrics.REGISTRY.get_sample_value(sample, labels) or 0.0


def queue_named(name: str) -> WorkQueue[str]:
    """A queue whose numbers no other test touches."""
    return WorkQueue(name=name)


async def test_each_key_entering_the_queue_is_one_add_and_counts_in_the_depth() -> None:
    queue = queue_named("adds-and-depth")
    queue.add("a")
    queue.add("b")
    queue.add("a")  # waiting already
    queue.add_due("b")  # moves up, still one key

    assert scraped("xg2g_workqueue_adds_total", name="adds-and-depth") == 2
    assert scraped("xg2g_workqueue_depth", name="adds-and-depth") == 2

    assert await queue.get() == "b"
    assert scraped("xg2g_workqueue_depth", name="adds-and-depth") == 1


async def test_a_key_added_while_held_is_counted_once_it_is_queued_again() -> None:
    queue = queue_named("held")
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    queue.add_due("a")

    assert scraped("xg2g_workqueue_adds_total", name="held") == 1
    assert scraped("xg2g_workqueue_depth", name="held") == 0

    queue.done("a")
    assert scraped("xg2g_workqueue_adds_total", name="held") == 2
    assert scraped("xg2g_workqueue_depth", name="held") == 1


async def test_a_retry_is_counted_when_it_is_scheduled_and_queued_when_it_is_due() -> None:
    queue = queue_named("retries")
    queue.add_after("a", 0.01)

    assert scraped("xg2g_workqueue_retries_total", name="retries") == 1
    assert scraped("xg2g_workqueue_depth", name="retries") == 0

    assert await asyncio.wait_for(queue.get(), 1) == "a"
    assert scraped("xg2g_workqueue_adds_total", name="retries") == 1


async def test_the_time_a_key_waits_and_the_time_it_is_worked_on_are_observed() -> None:
    queue = queue_named("durations")
    queue.add("a")
    await asyncio.sleep(0.02)
    await queue.get()
    await asyncio.sleep(0.03)
    queue.done("a")

    for histogram, at_least in (("queue", 0.02), ("work", 0.03)):
        name = f"xg2g_workqueue_{histogram}_duration_seconds"
        assert scraped(f"{name}_count", name="durations") == 1
        assert scraped(f"{name}_sum", name="durations") >= at_least
        assert scraped(f"{name}_bucket", name="durations", le="0.01") == 0
        assert scraped(f"{name}_bucket", name="durations", le="+Inf") == 1


def test_the_leader_gauge_follows_the_flag_it_reads() -> None:
    leading = asyncio.Event()
    metrics.register_leader_gauge(leading.is_set, "test-lease")

    assert scraped("xg2g_leader_election_master_status", name="test-lease") == 0
    leading.set()
    assert scraped("xg2g_leader_election_master_status", name="test-lease") == 1


@pytest.mark.parametrize(
    "ending", [ApiUnavailable("connection reset"), ResourceVersionExpired("too old")]
)
async def test_a_watch_started_again_is_one_restart(
    ending: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("session_operator.informer.reflector.RETRY_FIRST_SECONDS", 0.001)
    script = ScriptedListWatch(
        listings=[Listing([], "10"), Listing([], "20")],
        watches=[[ending], []],
    )
    before = scraped("xg2g_watch_restarts_total", resource="sessions")

    await run_cache_until(
        SessionCache(script, SessionStore()), lambda: len(script.watched_from) == 2
    )

    assert scraped("xg2g_watch_restarts_total", resource="sessions") - before == 1


async def test_the_last_watch_event_is_served_as_a_timestamp() -> None:
    script = ScriptedListWatch(
        listings=[Listing([], "10")],
        watches=[[WatchEvent("ADDED", listed_body("a", 11, "id-a"))]],
    )
    store = SessionStore()
    cache = SessionCache(script, store)
    assert scraped("xg2g_watch_last_event_timestamp_seconds", resource="sessions") == 0
    started = time.time()

    await run_cache_until(cache, lambda: store.by_id("id-a") is not None)

    assert scraped("xg2g_watch_last_event_timestamp_seconds", resource="sessions") >= started
